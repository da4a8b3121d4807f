"""The queue server as a service of a real JupyterHub: who asks is who the Hub says.

One Hub for the module (tests/hub_fixture.py: ~10 s to start). Every request goes through the
Hub's proxy at /services/tlc/, the way a notebook in a Hub reaches the queue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import collect
from tests.hub_fixture import SERVICE, RunningHub, running_hub
from tests.hub_kernel import run_in_kernel

# The first test also waits for the Hub to start, the kernel's for alice's server: 30 s to
# minutes on a busy machine, so more than the suite's 120 s per test is allowed.
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(400)]

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    with running_hub(Path(tmp_path_factory.mktemp("hub"))) as running:
        yield running


@pytest.fixture
async def people(hub: RunningHub) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """A client per person, each sending their own Hub token as the Hub spells it."""
    base = f"{hub.url}/services/{SERVICE}"
    clients = {
        name: httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"token {hub.token_for(name)}"}, timeout=30
        )
        for name in ("alice", "bob", "carol", "admin")
    }
    clients["nobody"] = httpx.AsyncClient(base_url=base, timeout=30)
    yield clients
    for client in clients.values():
        await client.aclose()


async def test_a_hub_token_says_who_asks_whatever_the_body_declares(
    hub: RunningHub, people: dict[str, httpx.AsyncClient]
) -> None:
    alice = people["alice"]
    before = len((await alice.get("/api/history")).json()["requests"])
    r = await alice.post("/api/requests", json={"prompt": "hi", "user": "bob"})
    assert r.status_code == 202, r.text
    assert r.json()["user"] == "alice"
    events = await collect(alice, r.json()["id"])
    assert events[-1][1] == "done"
    # `Bearer` works too: an OpenAI client with the Hub token as api_key, through the proxy.
    oa = openai.AsyncOpenAI(
        base_url=f"{hub.url}/services/{SERVICE}/v1", api_key=hub.token_for("alice"), max_retries=0
    )
    async with oa:
        reply = await oa.chat.completions.create(model="practice-fast", user="mallory", **CHAT)
    assert reply.choices[0].message.content
    mine = (await alice.get("/api/history")).json()["requests"]
    assert {row["user"] for row in mine} == {"alice"} and len(mine) == before + 2


async def test_alice_cannot_read_or_cancel_bobs_request(
    people: dict[str, httpx.AsyncClient],
) -> None:
    alice, bob = people["alice"], people["bob"]
    r = await bob.post("/api/requests", json={"prompt": "bob's own"})
    assert r.status_code == 202 and r.json()["user"] == "bob"
    bobs = r.json()["id"]
    for method, path in (
        ("GET", f"/api/requests/{bobs}"),
        ("GET", f"/api/requests/{bobs}/events"),
        ("DELETE", f"/api/requests/{bobs}"),
        ("GET", f"/api/history/{bobs}"),
    ):
        r = await alice.request(method, path)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found"), (method, path)
    assert (await collect(bob, bobs))[-1][1] == "done"  # untouched by alice's attempts
    assert (await bob.get(f"/api/requests/{bobs}")).json()["user"] == "bob"


async def test_hub_groups_and_admins_give_the_roles(people: dict[str, httpx.AsyncClient]) -> None:
    urgent = {"prompt": "urgent", "priority": 1}  # only teachers and admins may set a priority
    r = await people["alice"].post("/api/requests", json=urgent)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
    for teacher in ("carol", "admin"):
        r = await people[teacher].post("/api/requests", json=urgent)
        assert r.status_code == 202 and r.json()["user"] == teacher, r.text
    r = await people["carol"].get("/api/admin/requests")  # carol is a teacher, not an admin
    assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
    assert (await people["admin"].get("/api/admin/requests")).status_code == 200


async def test_without_a_hub_token_or_with_a_bad_one_it_is_401(
    hub: RunningHub, people: dict[str, httpx.AsyncClient]
) -> None:
    nobody = people["nobody"]
    for headers in ({}, {"Authorization": "token not-a-hub-token"}, {"Authorization": "alice"}):
        for method, path in (
            ("POST", "/api/requests"),
            ("GET", "/api/queue"),
            ("GET", "/v1/models"),
        ):
            r = await nobody.request(method, path, json={"prompt": "hi"}, headers=headers)
            assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized"), path
    assert "Authorization: token" in r.json()["error"]["message"]
    # Behind the proxy the open paths stay open, prefix and all.
    for path in ("/healthz", "/metrics", "/openapi.json"):
        assert (await nobody.get(path)).status_code == 200, path


async def test_a_token_without_access_to_the_service_is_403(
    hub: RunningHub, people: dict[str, httpx.AsyncClient]
) -> None:
    """The Hub's own rule for services: the token must hold access:services!service=tlc."""
    with hub.api() as api:
        r = api.post("/users/bob/tokens", json={"scopes": ["read:users:name!user"]})
        assert r.status_code == 201, r.text
        narrow = r.json()["token"]
    r = await people["nobody"].get("/api/queue", headers={"Authorization": f"token {narrow}"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
    assert f"access:services!service={SERVICE}" in r.json()["error"]["message"]


async def test_a_kernel_in_alices_server_is_alice_with_no_configuration(
    hub: RunningHub, people: dict[str, httpx.AsyncClient]
) -> None:
    """The server's own token (JUPYTERHUB_API_TOKEN, the `server` role) reaches the service,
    and a plain OpenAI client works from the spawner's OPENAI_BASE_URL and OPENAI_API_KEY."""
    hub.start_server("alice")
    code = """
import os, httpx, openai
token = os.environ["JUPYTERHUB_API_TOKEN"]
r = httpx.post(os.environ["TLC_SERVER_URL"] + "/api/requests", json={"prompt": "hi"},
               headers={"Authorization": "token " + token})
print(r.status_code, r.json()["user"], r.json()["id"])
reply = openai.OpenAI().chat.completions.create(
    model="practice-fast", messages=[{"role": "user", "content": "hi"}])
print(bool(reply.choices[0].message.content))
"""
    printed = await run_in_kernel(hub, "alice", code)
    status, user, request_id, replied = printed.split()
    assert (status, user, replied) == ("202", "alice", "True"), printed
    r = await people["alice"].get(f"/api/requests/{request_id}")  # hers, from her own token
    assert r.status_code == 200 and r.json()["user"] == "alice"


async def test_a_browser_logs_in_with_the_hub_and_its_cookie_then_says_who(
    hub: RunningHub,
) -> None:
    """The Services menu's link: a page request goes through the Hub's login (OAuth)."""
    service = f"/services/{SERVICE}"
    async with httpx.AsyncClient(base_url=hub.url, timeout=30) as browser:
        await browser.get("/hub/login")
        form = {"username": "carol", "password": "any", "_xsrf": browser.cookies["_xsrf"]}
        r = await browser.post("/hub/login?next=/hub/home", data=form)
        assert r.status_code == 302, r.text

        page = {"Accept": "text/html"}
        r = await browser.get(f"{service}/api/queue", headers=page)
        assert r.status_code == 302 and "/hub/api/oauth2/authorize" in r.headers["location"]
        r = await browser.get(f"{service}/api/queue", headers=page, follow_redirects=True)
        assert r.status_code == 200 and r.url.path == f"{service}/api/queue", r.text
        assert [h.url.path for h in r.history][-1] == f"{service}/oauth_callback"

        urgent = {"prompt": "from the teacher's page", "priority": 1}
        r = await browser.post(
            f"{service}/api/requests", json=urgent, headers={"Sec-Fetch-Site": "same-origin"}
        )
        assert r.status_code == 202 and r.json()["user"] == "carol", r.text
        # The same cookie on a request another site makes the browser send counts for nothing
        # (401 here; a Host/Origin guard in front of the app may refuse it first: 403).
        r = await browser.post(
            f"{service}/api/requests", json=urgent, headers={"Sec-Fetch-Site": "cross-site"}
        )
        refusals = {(401, "unauthorized"), (403, "cross_origin")}
        assert (r.status_code, r.json()["error"]["code"]) in refusals, r.text

    # A login the Hub no longer knows (expired, revoked) sends the page to log in again.
    async with httpx.AsyncClient(base_url=hub.url, timeout=30) as stale:
        stale.cookies.set("tlc-hub-token", "revoked", path=f"{service}/")
        r = await stale.get(f"{service}/api/queue", headers={"Accept": "text/html"})
        assert r.status_code == 302 and "/hub/api/oauth2/authorize" in r.headers["location"]
        r = await stale.get(f"{service}/api/queue")  # not a page: the API's plain 401
        assert r.status_code == 401
