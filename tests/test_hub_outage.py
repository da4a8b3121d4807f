"""When the Hub goes down, the queue keeps serving the people it already knows.

A queue server run by the test as the Hub's *external* service `tlc-ext` (so it outlives the
Hub, unlike a Hub-managed one), spoken to directly on loopback. Its token cache is set to 0 s,
so every request after the Hub stops takes the hard path: the Hub cannot be asked, and only an
identity it confirmed earlier (within `hub_stale_s`) lets the request in.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import collect, practice_server, queue_server
from tests.hub_fixture import EXTERNAL, running_hub

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]  # a Hub start is part of it


async def test_the_hub_going_down_keeps_known_people_in_and_new_ones_get_503(
    tmp_path: Path,
) -> None:
    with running_hub(tmp_path / "hub") as hub:
        tokens = {name: hub.token_for(name) for name in ("alice", "bob", "carol")}
        with (
            practice_server() as practice,
            queue_server(
                practice.url + "/v1",
                hub_api_url=hub.api_url,
                hub_api_token=hub.external_token,
                hub_service_name=EXTERNAL,
                hub_cache_s=0,
            ) as queue,
        ):
            clients = {
                name: httpx.AsyncClient(
                    base_url=queue.url, headers={"Authorization": f"token {token}"}, timeout=30
                )
                for name, token in tokens.items()
            }
            alice, bob, carol = clients["alice"], clients["bob"], clients["carol"]
            try:
                # While the Hub is up, alice and carol are seen once; bob never asks.
                assert (await alice.get("/api/queue")).status_code == 200
                r = await carol.post("/api/requests", json={"prompt": "hi", "priority": 1})
                assert r.status_code == 202 and r.json()["user"] == "carol", r.text

                hub.stop()
                assert hub.process.poll() is not None

                r = await alice.post("/api/requests", json={"prompt": "still here?"})
                assert r.status_code == 202 and r.json()["user"] == "alice", r.text
                assert (await collect(alice, r.json()["id"]))[-1][1] == "done"
                r = await carol.post("/api/requests", json={"prompt": "hi", "priority": 1})
                assert r.status_code == 202, r.text  # still a teacher
                r = await bob.get("/api/queue")
                assert (r.status_code, r.json()["error"]["code"]) == (503, "hub_unavailable")
                assert "JupyterHub" in r.json()["error"]["message"]
                assert r.headers["Retry-After"] == "30"
                # No token at all is still the caller's mistake, not the Hub's: 401.
                r = await bob.get("/api/queue", headers={"Authorization": ""})
                assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")
            finally:
                for client in clients.values():
                    await client.aclose()
