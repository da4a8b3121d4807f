"""No web page can drive the queue: foreign `Host` names and cross-site browser calls are
refused on a real server, while notebooks, curl, the openai client and the server's own
pages pass."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import collect, practice_server, queue_server
from tlc_widgets.serving import BackgroundServer

pytestmark = pytest.mark.anyio

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
EVIL = "https://evil.example"


@pytest.fixture
def servers() -> Iterator[tuple[BackgroundServer, BackgroundServer]]:
    with practice_server() as practice:
        with queue_server(practice.url + "/v1") as queue:
            yield practice, queue


async def test_a_cross_site_form_cannot_drain_or_pause_the_queue(
    servers: tuple[BackgroundServer, BackgroundServer],
) -> None:
    _, queue = servers
    # What a <form method=post action=http://127.0.0.1:8000/api/admin/drain> on another site
    # sends: no JSON, so no preflight, and the browser adds Origin and Sec-Fetch-Site.
    browsers = [
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
        {"Origin": EVIL},  # a browser without Fetch Metadata
        {"Sec-Fetch-Site": "cross-site"},  # a browser that leaves Origin out
        {"Origin": "http://localhost:8888", "Sec-Fetch-Site": "same-site"},  # another port
        {"Origin": "null"},  # a sandboxed frame or a file:// page
    ]
    async with httpx.AsyncClient(base_url=queue.url) as client:
        for headers in browsers:
            for path in ("/api/admin/drain", "/api/admin/pause"):
                r = await client.post(path, content=b"x=1", headers={**FORM, **headers})
                assert r.status_code == 403, (path, headers, r.text)
                error = r.json()["error"]
                assert error["code"] == "cross_origin" and path in error["message"]
            r = await client.post("/api/requests", json={"prompt": "hi"}, headers=headers)
            assert r.json()["error"]["code"] == "cross_origin"
            # Private reads too: an <img> or no-cors fetch of the history is refused.
            for path in ("/api/history", "/api/history/export", "/api/admin/requests"):
                r = await client.get(path, headers=headers)
                assert (r.status_code, r.json()["error"]["code"]) == (403, "cross_origin")
        snapshot = (await client.get("/api/queue")).json()
        assert snapshot["paused"] is False and snapshot["draining"] is False
        assert snapshot["waiting"] == snapshot["running"] == 0  # no request was queued
        assert (await client.get("/api/history")).json()["requests"] == []
        # No CORS unless configured: a preflight gets no Access-Control-Allow-Origin.
        r = await client.options(
            "/api/requests",
            headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in r.headers
    print(f"cross-site browser calls refused: {len(browsers) * 6}/{len(browsers) * 6}")


async def test_a_dns_rebinding_host_cannot_read_the_history(
    servers: tuple[BackgroundServer, BackgroundServer],
) -> None:
    _, queue = servers
    async with httpx.AsyncClient(base_url=queue.url) as client:
        r = await client.post("/api/requests", json={"prompt": "secret", "user": "ada"})
        await collect(client, r.json()["id"])
        # evil.example resolves to 127.0.0.1: to the browser the page is same-origin.
        rebound = f"evil.example:{queue.port}"
        same = {"Host": rebound, "Origin": f"http://{rebound}", "Sec-Fetch-Site": "same-origin"}
        for headers in ({"Host": rebound}, same):
            for path in ("/api/history", f"/api/requests/{r.json()['id']}", "/api/queue"):
                got = await client.get(path, headers=headers)
                assert got.status_code == 400, (path, got.text)
                error = got.json()["error"]
                assert error["code"] == "host_not_allowed"
                assert "'evil.example'" in error["message"] and "localhost" in error["message"]
                assert "secret" not in got.text


async def test_notebooks_curl_the_openai_client_and_same_origin_pages_pass(
    servers: tuple[BackgroundServer, BackgroundServer],
) -> None:
    _, queue = servers
    own = queue.url  # http://127.0.0.1:PORT
    same_origin = {"Origin": own, "Sec-Fetch-Site": "same-origin"}
    async with httpx.AsyncClient(base_url=queue.url) as client:
        # A kernel or curl: no Origin, no Sec-Fetch-Site.
        r = await client.post("/api/requests", json={"prompt": "hi", "user": "ada"})
        assert r.status_code == 202
        assert (await collect(client, r.json()["id"]))[-1][1] == "done"
        # The server's own pages (/docs' "Try it out"), under each loopback name.
        for host in (f"127.0.0.1:{queue.port}", f"localhost:{queue.port}", "localhost"):
            origin = f"http://{host}"
            headers = {"Host": host, "Origin": origin, "Sec-Fetch-Site": "same-origin"}
            r = await client.post("/api/requests", json={"prompt": "hi"}, headers=headers)
            assert r.status_code == 202, (host, r.text)
            await collect(client, r.json()["id"])
        assert (await client.get("/api/history", headers=same_origin)).status_code == 200
        # A typed URL or a bookmark: Sec-Fetch-Site none.
        r = await client.get("/api/history/export", headers={"Sec-Fetch-Site": "none"})
        assert r.status_code == 200
        # Public reads stay open to pages (a status badge may show the queue length).
        assert (await client.get("/api/queue", headers={"Origin": EVIL})).status_code == 200
        assert (await client.post("/api/admin/pause", headers=same_origin)).status_code == 200
        assert (await client.post("/api/admin/resume")).status_code == 200
    oa = openai.AsyncOpenAI(base_url=queue.url + "/v1", api_key="none", max_retries=0)
    async with oa:
        reply = await oa.chat.completions.create(
            model="practice-fast", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content
        chunks = await oa.chat.completions.create(
            model="practice-fast", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert [c async for c in chunks]


async def test_configured_hosts_and_cors_origins_are_let_in() -> None:
    hub = "https://hub.example.org"
    with (
        practice_server() as practice,
        queue_server(
            practice.url + "/v1", allowed_hosts="queue.example.org", cors_origins=hub
        ) as queue,
    ):
        async with httpx.AsyncClient(base_url=queue.url) as client:
            r = await client.get("/api/history", headers={"Host": "queue.example.org"})
            assert r.status_code == 200
            r = await client.get("/api/history", headers={"Host": "other.example.org"})
            assert r.json()["error"]["code"] == "host_not_allowed"
            preflight = {"Origin": hub, "Access-Control-Request-Method": "POST"}
            r = await client.options(
                "/api/requests",
                headers={**preflight, "Access-Control-Request-Headers": "authorization"},
            )
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == hub
            cross = {"Origin": hub, "Sec-Fetch-Site": "cross-site"}
            r = await client.post("/api/requests", json={"prompt": "hi"}, headers=cross)
            assert r.status_code == 202 and r.headers["access-control-allow-origin"] == hub
            await collect(client, r.json()["id"])
            r = await client.post("/api/admin/drain", headers={"Origin": EVIL})
            assert r.json()["error"]["code"] == "cross_origin"
            assert (await client.get("/api/queue")).json()["draining"] is False


def test_host_names_on_a_network_bind() -> None:
    import socket

    from tlc_widgets.config import Settings
    from tlc_widgets.server.guard import HostNames

    names = HostNames.from_settings(Settings(_env_file=None, host="0.0.0.0"))  # type: ignore[call-arg]
    machine = socket.gethostname().lower()
    # What a student on the LAN types: the address the connection arrived on, or the name.
    assert names.allows("192.168.1.5:8000", local_address="192.168.1.5")
    assert names.allows(f"{machine}:8000") and names.allows(f"{machine}.local")
    assert not names.allows("192.168.1.6:8000", local_address="192.168.1.5")
    assert not names.allows("0.0.0.0:8000") and not names.allows("evil.example")
    assert HostNames(["*"]).allows("anything.example")
    assert not HostNames(["*.example.org"]).allows("example.org")  # subdomains only
    bound = HostNames.from_settings(Settings(_env_file=None, host="queue.lan"))  # type: ignore[call-arg]
    assert bound.allows("queue.lan:8000") and bound.allows("QUEUE.LAN.")
