"""`TeacherPanel` on a real JupyterHub, configured by nothing but what the Hub gives a
single-user server: in carol's (group `teachers`) it shows the class and pauses it; in
alice's (a student) it says, in a sentence, that the view is for teachers.

The queue server is the Hub-managed service (tests/hub_fixture.py); the kernels reach it at
TLC_SERVER_URL with their server's own JUPYTERHUB_API_TOKEN, as the chat panel does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import collect
from tests.hub_fixture import SERVICE, RunningHub, require_jupyterhub, running_hub
from tests.hub_kernel import run_in_kernel

# The Hub (~10 s) and two single-user servers: minutes on a busy machine.
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(600)]

#: A teacher's cell: the view, one look at the class, a pause from it, then resume.
LOOK = """
import json
from tlc_widgets import TeacherPanel
panel = TeacherPanel(interval_s=60)
await panel.refresh()
seen = {"denied": panel.denied, "error": panel.error,
        "users": [s["user"] for s in panel.students.get("students", [])]}
if not panel.denied:
    await panel.pause("Quiz until 10:30")
    seen["mode"] = panel.klass["mode"]
print(json.dumps(seen))
panel.close()
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    require_jupyterhub()
    with running_hub(Path(tmp_path_factory.mktemp("hub"))) as running:
        yield running


async def test_carols_kernel_steers_the_class_and_alices_is_told_why_not(
    hub: RunningHub,
) -> None:
    base = f"{hub.url}/services/{SERVICE}"
    alice = httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"token {hub.token_for('alice')}"}, timeout=30
    )
    async with alice:
        asked = await alice.post("/api/requests", json={"prompt": "What is a coroutine?"})
        assert asked.status_code == 202, asked.text
        await collect(alice, asked.json()["id"])

        hub.start_server("carol")
        carol = json.loads(await run_in_kernel(hub, "carol", LOOK))
        assert (carol["denied"], carol["error"]) == (False, ""), carol
        assert "alice" in carol["users"] and carol["mode"] == "paused"
        refused = await alice.post("/api/requests", json={"prompt": "one more?"})
        assert (refused.status_code, refused.json()["error"]["code"]) == (423, "class_paused")
        assert "Quiz until 10:30" in refused.json()["error"]["message"]

        hub.start_server("alice")
        seen = json.loads(await run_in_kernel(hub, "alice", LOOK))
        assert seen["denied"] is True and seen["users"] == []
        assert seen["error"].startswith("The teacher's view is for teachers and admins")
        assert "alice, a student" in seen["error"]

        carol_http = httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"token {hub.token_for('carol')}"}
        )
        async with carol_http:
            assert (await carol_http.post("/api/class/resume")).status_code == 200
