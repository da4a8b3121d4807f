"""A class over a term on a real JupyterHub: the teacher sees and exports everyone's work,
and a change of the Hub's groups changes roles without restarting the queue.

One Hub for the module (tests/hub_fixture.py). Carol's view and export go through the Hub's
proxy to the Hub-managed `tlc` service; the group change is watched by a queue the test runs
as the external service `tlc-ext`, with a 1 s token cache so the change shows quickly.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import collect, practice_server, queue_server, wait_until
from tests.hub_fixture import EXTERNAL, SERVICE, RunningHub, running_hub

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]  # the first test waits for the Hub

DEADLINE_S = 30  # bound on each poll below (a busy 2-core machine)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    with running_hub(Path(tmp_path_factory.mktemp("hub"))) as running:
        yield running


def client(base: str, hub: RunningHub, name: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"token {hub.token_for(name)}"}
    return httpx.AsyncClient(base_url=base, headers=headers, timeout=30, trust_env=False)


@pytest.fixture
async def people(hub: RunningHub) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """alice, bob, carol through the Hub's proxy, each with their own Hub token."""
    base = f"{hub.url}/services/{SERVICE}"
    clients = {name: client(base, hub, name) for name in ("alice", "bob", "carol")}
    yield clients
    for each in clients.values():
        await each.aclose()


#: Until `seen()` (conftest's `wait_until`, every 10 ms), failing after `DEADLINE_S`.
poll = functools.partial(wait_until, tries=DEADLINE_S * 100)


async def test_carol_sees_and_exports_alice_and_bob_and_alice_may_not(
    people: dict[str, httpx.AsyncClient],
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    # practice-small writes 30+ tokens at 20 a second: each request is live for over 1.5 s.
    ask = {"prompt": "Who is the White Rabbit?", "model": "practice-small"}
    ids = {}
    for name, person in (("alice", alice), ("bob", bob)):
        r = await person.post("/api/requests", json=ask)
        assert r.status_code == 202 and r.json()["user"] == name, r.text
        ids[name] = r.json()["id"]

    seen_live: set[str] = set()

    async def both_live() -> bool:
        r = await carol.get("/api/class/live")
        assert r.status_code == 200, r.text
        rows = r.json()["running"] + r.json()["waiting"]
        seen_live.update(row["user"] for row in rows if row["id"] in ids.values())
        return seen_live == {"alice", "bob"}

    await poll(both_live, "alice's and bob's requests in carol's live view")
    for name, person in (("alice", alice), ("bob", bob)):
        assert (await collect(person, ids[name]))[-1][1] == "done"

    r = await carol.get("/api/class/students")
    assert r.status_code == 200, r.text
    today = {row["user"]: row for row in r.json()["students"]}
    assert today["alice"]["prompts"] >= 1 and today["bob"]["prompts"] >= 1, today

    exported: dict[str, str] = {}

    async def both_exported() -> bool:
        for fmt in ("jsonl", "csv"):
            r = await carol.get("/api/class/export", params={"format": fmt})
            assert r.status_code == 200, r.text
            exported[fmt] = r.text
        return all(i in exported["jsonl"] and i in exported["csv"] for i in ids.values())

    await poll(both_exported, "both requests in carol's export")  # history is written behind
    rows = [json.loads(line) for line in exported["jsonl"].splitlines()]
    assert {row["id"]: row["user"] for row in rows if row["id"] in ids.values()} == {
        ids["alice"]: "alice",
        ids["bob"]: "bob",
    }
    table = list(csv.DictReader(io.StringIO(exported["csv"])))
    assert {row["id"]: row["user"] for row in table if row["id"] in ids.values()} == {
        ids["alice"]: "alice",
        ids["bob"]: "bob",
    }
    print(f"carol's export: {len(rows)} JSONL rows, {len(table)} CSV rows")

    for path in ("/api/class/export", "/api/class/students", "/api/class/live"):
        r = await alice.get(path, params={"format": "csv"})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden"), path


async def test_a_group_change_in_the_hub_changes_the_role_once_the_cache_expires(
    hub: RunningHub,
) -> None:
    with (
        practice_server() as practice,
        queue_server(
            practice.url + "/v1",
            hub_api_url=hub.api_url,
            hub_api_token=hub.external_token,
            hub_service_name=EXTERNAL,
            hub_cache_s=1,
        ) as queue,
        hub.api() as api,
    ):
        carol, bob = client(queue.url, hub, "carol"), client(queue.url, hub, "bob")
        try:
            assert (await carol.get("/api/class")).status_code == 200
            assert (await bob.get("/api/class")).status_code == 403

            # The Hub's admin moves the teaching from carol to bob, with the Hub's REST API.
            r = api.request("DELETE", "/groups/teachers/users", json={"users": ["carol"]})
            assert r.status_code == 200, r.text
            r = api.post("/groups/teachers/users", json={"users": ["bob"]})
            assert r.status_code == 200, r.text

            async def bob_teaches() -> bool:
                return (await bob.get("/api/class")).status_code == 200

            await poll(bob_teaches, "bob as a teacher")
            r = await carol.get("/api/class")
            assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
            r = await bob.post("/api/requests", json={"prompt": "hi", "priority": 1})
            assert r.status_code == 202 and r.json()["user"] == "bob", r.text
        finally:
            # Back as the Hub was: the module's other tests count on carol teaching.
            api.request("DELETE", "/groups/teachers/users", json={"users": ["bob"]})
            api.post("/groups/teachers/users", json={"users": ["carol"]})
            await carol.aclose()
            await bob.aclose()
