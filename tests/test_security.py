"""Keys and roles, from outside: every cross-user or above-your-role attempt is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import collect, hold_slot, practice_server, queue_server, wait_until
from tlc_widgets.config import Settings
from tlc_widgets.server import create_app
from tlc_widgets.server.api_error import ApiError
from tlc_widgets.server.auth import Identity, Keys, Role
from tlc_widgets.serving import BackgroundServer

pytestmark = pytest.mark.anyio

KEYS = (
    "sk-ada-0001-abcdef:ada:student,sk-bob-0002-abcdef:bob:student,"
    "sk-tina-003-abcdef:tina:teacher,sk-root-04-abcdef:root:admin"
)
ADA, BOB, TINA, ROOT = (
    {"Authorization": f"Bearer {key}"}
    for key in (
        "sk-ada-0001-abcdef",
        "sk-bob-0002-abcdef",
        "sk-tina-003-abcdef",
        "sk-root-04-abcdef",
    )
)
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def servers() -> Iterator[tuple[BackgroundServer, BackgroundServer]]:
    with practice_server(parallel=1) as practice:
        with queue_server(practice.url + "/v1", keys=KEYS, disconnect_grace_s=60) as queue:
            yield practice, queue


async def test_no_key_or_a_wrong_key_is_401_on_both_doors(
    servers: tuple[BackgroundServer, BackgroundServer],
) -> None:
    _, queue = servers
    calls = [
        ("POST", "/api/requests", {"prompt": "hi"}),
        ("GET", "/api/queue", None),
        ("GET", "/api/models", None),
        ("GET", "/api/history", None),
        ("POST", "/api/admin/pause", None),
        ("GET", "/v1/models", None),
        ("POST", "/v1/chat/completions", CHAT),
    ]
    refused = 0
    async with httpx.AsyncClient(base_url=queue.url) as client:
        for headers in (
            {},
            {"Authorization": "Bearer sk-nope"},
            {"Authorization": "sk-ada-0001-abcdef"},
        ):
            for method, path, body in calls:
                r = await client.request(method, path, json=body, headers=headers)
                assert r.json()["error"]["code"] == "unauthorized", (path, r.text)
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                refused += r.status_code == 401
        assert refused == 3 * len(calls)
        print(f"calls without a valid key refused with 401: {refused}/{3 * len(calls)}")
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
            assert (await client.get(path)).status_code == 200, path  # open without a key

    # The OpenAI client refuses to send no key at all; a wrong one is a 401 it understands.
    oa = openai.AsyncOpenAI(base_url=queue.url + "/v1", api_key="sk-nope", max_retries=0)
    async with oa:
        with pytest.raises(openai.AuthenticationError):
            await oa.chat.completions.create(model="practice-fast", **CHAT)
    # …and with a key, the OpenAI client works unchanged: api_key is the Bearer token.
    oa = openai.AsyncOpenAI(base_url=queue.url + "/v1", api_key="sk-ada-0001-abcdef", max_retries=0)
    async with oa:
        reply = await oa.chat.completions.create(model="practice-fast", user="mallory", **CHAT)
        assert reply.choices[0].message.content
        async with httpx.AsyncClient(base_url=queue.url, headers=ADA) as client:
            mine = (await client.get("/api/history")).json()["requests"]
    assert [row["user"] for row in mine] == ["ada"]  # the key said who, not `user`


async def test_every_cross_user_and_admin_attempt_by_a_student_is_refused(
    servers: tuple[BackgroundServer, BackgroundServer],
) -> None:
    practice, queue = servers
    async with (
        httpx.AsyncClient(base_url=queue.url, headers=ADA) as ada,
        httpx.AsyncClient(base_url=queue.url, headers=BOB) as bob,
        httpx.AsyncClient(base_url=queue.url, headers=TINA) as tina,
    ):
        running = await hold_slot(ada, practice.url, user="bob")  # `user` is ignored
        waiting = (await ada.post("/api/requests", json={"prompt": "mine", "user": "bob"})).json()
        assert waiting["user"] == "ada"
        done = (await bob.post("/api/requests", json={"prompt": "bob's"})).json()["id"]
        ids = [running, waiting["id"]]

        attempts: list[tuple[httpx.AsyncClient, str, str]] = []
        for request_id in ids:
            for method, path in (
                ("GET", f"/api/requests/{request_id}"),
                ("GET", f"/api/requests/{request_id}/events"),
                ("DELETE", f"/api/requests/{request_id}"),
                ("GET", f"/api/history/{request_id}"),
            ):
                attempts += [(bob, method, path), (tina, method, path)]
        for who in (bob, tina):
            attempts += [
                (who, "GET", "/api/history?user=ada"),
                (who, "GET", "/api/history/export?user=ada"),
                (who, "GET", "/api/history/export?format=md&user=ada"),
            ]
        for who in (ada, bob, tina):
            for method, path in (
                ("POST", "/api/admin/pause"),
                ("POST", "/api/admin/resume"),
                ("POST", "/api/admin/drain"),
                ("GET", "/api/admin/requests"),
            ):
                attempts.append((who, method, path))
        attempts.append((ada, "GET", f"/api/requests/{done}"))  # ada reads bob's, reversed

        refused = 0
        for who, method, path in attempts:
            r = await who.request(method, path)
            expected = (404, "not_found") if "/admin/" not in path and "user=" not in path else None
            got = (r.status_code, r.json()["error"]["code"])
            assert got == (expected or (403, "forbidden")), (method, path, got)
            refused += 1
        assert refused == len(attempts) == 35
        print(f"cross-user and above-role attempts refused: {refused}/{len(attempts)}")

        # Nothing they tried had an effect: ada's requests live on, the queue is not paused.
        for request_id in ids:
            status = (await ada.get(f"/api/requests/{request_id}")).json()
            assert status["status"] in ("queued", "running") and status["user"] == "ada"
        snapshot = (await ada.get("/api/queue")).json()
        assert snapshot["paused"] is False and snapshot["draining"] is False
        # Her own: she reads, follows and cancels them, and sees only hers in history.
        # The waiting one first: cancelling the holder first would let it start and finish.
        for request_id in reversed(ids):
            r = await ada.delete(f"/api/requests/{request_id}")
            assert r.json()["cancelled"] is True
            assert (await collect(ada, request_id))[-1][2] == {"by": "client"}
        await collect(bob, done)
        rows = (await ada.get("/api/history")).json()["requests"]
        assert {row["id"] for row in rows} == set(ids)


async def test_teachers_may_set_a_priority_and_students_may_not(
    servers: tuple[BackgroundServer, BackgroundServer],
) -> None:
    _, queue = servers
    for headers, allowed in ((ADA, False), (TINA, True), (ROOT, True)):
        async with httpx.AsyncClient(base_url=queue.url, headers=headers) as client:
            r = await client.post("/api/requests", json={"prompt": "a", "priority": 5})
            if allowed:
                assert r.status_code == 202, r.text
                assert (await collect(client, r.json()["id"]))[-1][1] == "done"
            else:
                assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
                assert r.json()["error"]["param"] == "priority"
                r = await client.post("/api/requests", json={"prompt": "a", "priority": 0})
                assert r.status_code == 202


async def test_admin_pauses_drains_resumes_and_sees_and_cancels_everyone(
    servers: tuple[BackgroundServer, BackgroundServer],
) -> None:
    practice, queue = servers
    async with (
        httpx.AsyncClient(base_url=queue.url, headers=ADA) as ada,
        httpx.AsyncClient(base_url=queue.url, headers=ROOT) as root,
    ):
        state = (await root.post("/api/admin/pause")).json()
        assert state["paused"] is True
        paused = (await ada.post("/api/requests", json={"prompt": "wait"})).json()  # accepted…
        listing = (await root.get("/api/admin/requests")).json()
        assert [(r["id"], r["user"], r["status"], r["position"]) for r in listing["requests"]] == [
            (paused["id"], "ada", "queued", 1)
        ]
        assert (await root.get("/api/queue")).json()["running"] == 0  # …but nothing starts
        await root.post("/api/admin/resume")
        assert (await collect(ada, paused["id"]))[-1][1] == "done"

        holder = await hold_slot(ada, practice.url)
        behind = (await ada.post("/api/requests", json={"prompt": "behind"})).json()
        state = (await root.post("/api/admin/drain")).json()
        assert state == {"paused": False, "draining": True, "waiting": 1, "running": 1}
        for client, path, body in (
            (ada, "/api/requests", {"prompt": "late"}),
            (root, "/v1/chat/completions", CHAT),
        ):
            r = await client.post(path, json=body)
            assert (r.status_code, r.json()["error"]["code"]) == (503, "draining")
            assert "draining" in r.json()["error"]["message"]
        # The admin sees ada's and cancels her running one; the waiting one then runs to the end.
        assert (await root.get(f"/api/requests/{holder}")).json()["user"] == "ada"
        assert (await root.delete(f"/api/requests/{holder}")).json()["cancelled"] is True
        assert (await collect(ada, holder))[-1][2] == {"by": "admin"}
        assert (await collect(ada, behind["id"]))[-1][1] == "done"

        async def idle() -> bool:
            snapshot = (await root.get("/api/queue")).json()
            return bool(snapshot["waiting"] == snapshot["running"] == 0)

        await wait_until(idle, "the drained queue to empty")
        await root.post("/api/admin/resume")
        assert (await ada.post("/api/requests", json={"prompt": "again"})).status_code == 202
        rows = (await root.get("/api/history?user=ada")).json()["requests"]
        assert len(rows) == 4 and {r["user"] for r in rows} == {"ada"}


async def test_without_keys_the_declared_user_counts_and_nothing_is_refused() -> None:
    with practice_server() as practice, queue_server(practice.url + "/v1") as queue:
        async with httpx.AsyncClient(base_url=queue.url) as client:
            body = {"prompt": "a", "user": "ada", "priority": 3}
            r = await client.post("/api/requests", json=body)
            assert r.status_code == 202 and r.json()["user"] == "ada"
            await collect(client, r.json()["id"])
            assert (await client.post("/api/admin/pause")).status_code == 200
            assert (await client.post("/api/admin/resume")).status_code == 200
            rows = (await client.get("/api/history")).json()["requests"]
            assert [row["user"] for row in rows] == ["ada"]


def test_keys_come_from_a_toml_file_and_tlc_keys_and_bad_lines_are_named(
    tmp_path: Path,
) -> None:
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text(
        '[keys."sk-file-ada-abcdef"]\nuser = "ada"\nrole = "teacher"\n'
        '[keys."sk-file-cy-abcdef"]\nuser = "cy"\n'  # no role: the least one
    )
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        keys_file=keys_file,
        keys="sk:with:colons:abcdef:bob:admin, sk-tlc-keys-ada-01:ada:student",
    )
    keys = Keys.from_settings(settings)
    assert len(keys) == 4  # a key in both the file and TLC_KEYS is refused: see test_keys.py
    assert keys.identify("Bearer sk:with:colons:abcdef") == Identity("bob", Role.ADMIN)
    assert keys.identify("bearer sk-file-ada-abcdef").role is Role.TEACHER
    assert keys.identify("bearer sk-tlc-keys-ada-01").role is Role.STUDENT
    assert keys.identify("Bearer sk-file-cy-abcdef") == Identity("cy", Role.STUDENT)
    for header in (None, "", "Bearer", "Basic sk-file-cy-abcdef", "Bearer sk-file-cy-abcde"):
        with pytest.raises(ApiError) as refused:
            keys.identify(header)
        assert refused.value.status == 401
    for bad, named in (
        ("sk-x-000000000000:ada:wizard", "role must be one of student, teacher, admin"),
        ("sk-x-000000000000:ada", "key:user:role"),
        ("sk-x-000000000000::student", "user must be"),
    ):
        with pytest.raises(ValueError, match=named):
            Keys.parse(bad)
    # …and `tlc serve` refuses to start on them rather than run unprotected.
    with pytest.raises(ValueError, match="TLC_KEYS entry 1"):
        create_app(Settings(_env_file=None, keys="sk-x-000000000000:ada:wizard"))  # type: ignore[call-arg]


async def test_a_keys_file_protects_the_openai_door(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text('[keys."sk-class-ada-abcdef"]\nuser = "ada"\nrole = "student"\n')
    with practice_server() as practice:
        with queue_server(practice.url + "/v1", keys_file=keys_file) as queue:
            for key, works in (("sk-class-ada-abcdef", True), ("sk-class-bob-abcdef", False)):
                oa = openai.AsyncOpenAI(base_url=queue.url + "/v1", api_key=key, max_retries=0)
                async with oa:
                    if works:
                        models = [m.id async for m in oa.models.list()]
                        assert "practice-fast" in models
                    else:
                        with pytest.raises(openai.AuthenticationError):
                            await oa.models.list()
