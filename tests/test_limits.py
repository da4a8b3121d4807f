"""Input limits and rate limits: each refusal names its code, its field and its limit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import collect, hold_slot, practice_server, queue_server
from tlc_widgets.config import Settings
from tlc_widgets.server.api_error import ApiError
from tlc_widgets.server.auth import Role
from tlc_widgets.server.limits import KEYED_DEFAULTS, Rate, RateLimiter

pytestmark = pytest.mark.anyio

CHAT = "/v1/chat/completions"


def error_of(r: httpx.Response) -> tuple[int, str, str | None, str]:
    error = r.json()["error"]
    return r.status_code, error["code"], error["param"], error["message"]


async def test_body_size_counts_declared_and_streamed_bytes() -> None:
    with practice_server() as practice:
        with queue_server(practice.url + "/v1", max_body_bytes=2000) as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                fits = {"prompt": "a" * 1900}
                assert (await client.post("/api/requests", json=fits)).status_code == 202
                big = {"prompt": "a" * 3000}
                for path in ("/api/requests", CHAT):
                    status, code, param, message = error_of(await client.post(path, json=big))
                    assert (status, code, param) == (413, "payload_too_large", "body")
                    assert "2000 bytes" in message

                async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
                    yield b'{"prompt": "'
                    for _ in range(10):
                        yield b"a" * 500
                    yield b'"}'

                r = await client.post("/api/requests", content=chunks())
                assert "content-length" not in r.request.headers
                status, code, param, message = error_of(r)
                assert (status, code, param) == (413, "payload_too_large", "body")
                assert "2000 bytes" in message
                # the server is fine afterwards
                assert (await client.post("/api/requests", json=fits)).status_code == 202


async def test_huge_bodies_get_the_413_sentence_not_a_reset_connection() -> None:
    with practice_server() as practice, queue_server(practice.url + "/v1") as queue:
        async with httpx.AsyncClient(base_url=queue.url) as client:
            huge = b'{"prompt": "' + b"a" * 8_000_000 + b'"}'

            async def chunked() -> AsyncIterator[bytes]:
                for start in range(0, len(huge), 65_536):
                    yield huge[start : start + 65_536]

            for content in (huge, chunked()):
                r = await client.post("/api/requests", content=content)
                status, code, _, message = error_of(r)
                assert (status, code) == (413, "payload_too_large")
                assert "1048576 bytes (1.0 MB)" in message
            r = await client.post("/api/requests", json={"prompt": "a" * 1_000_000})
            assert r.status_code == 422 and r.json()["error"]["code"] == "prompt_too_long"


async def test_conversation_limits_name_the_field_and_the_limit() -> None:
    with practice_server() as practice:
        limits = {"max_messages": 3, "max_message_chars": 10, "max_tokens_cap": 100}
        with queue_server(practice.url + "/v1", **limits) as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                four = [{"role": "user", "content": "hi"}] * 4
                for path in ("/api/requests", CHAT):
                    bad = 422 if path == "/api/requests" else 400  # the OpenAI door: OpenAI's 400
                    status, code, param, message = error_of(
                        await client.post(path, json={"messages": four})
                    )
                    assert (status, code, param) == (bad, "invalid_request", "messages")
                    assert "at most 3 messages" in message and "has 4" in message

                    long = [
                        {"role": "system", "content": "ok"},
                        {"role": "user", "content": "x" * 11},
                    ]
                    status, code, param, message = error_of(
                        await client.post(path, json={"messages": long})
                    )
                    assert (status, code, param) == (bad, "prompt_too_long", "messages.1.content")
                    assert "11 characters" in message and "limit is 10 per message" in message

                status, code, param, message = error_of(
                    await client.post("/api/requests", json={"prompt": "x" * 11})
                )
                assert (status, code, param) == (422, "prompt_too_long", "prompt")
                status, code, param, message = error_of(
                    await client.post("/api/requests", json={"prompt": "x", "max_tokens": 101})
                )
                assert (status, code, param) == (422, "max_tokens_too_large", "max_tokens")
                assert "max_tokens" in message and "100" in message


async def test_only_allowed_models_are_offered_and_served() -> None:
    with practice_server() as practice:
        allowed = ["practice-fast", "practice-thinker"]
        with queue_server(practice.url + "/v1", allowed_models=allowed) as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                listed = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
                assert sorted(listed) == allowed
                native = [m["id"] for m in (await client.get("/api/models")).json()["models"]]
                assert sorted(native) == allowed
                for path, body in (
                    ("/api/requests", {"prompt": "hi", "model": "practice-small"}),
                    (
                        CHAT,
                        {
                            "model": "practice-small",
                            "messages": [{"role": "user", "content": "hi"}],
                        },
                    ),
                ):
                    status, code, param, message = error_of(await client.post(path, json=body))
                    assert (status, code, param) == (404, "model_not_found", "model")
                    assert "allows only: practice-fast, practice-thinker" in message
                r = await client.post("/api/requests", json={"prompt": "hi"})
                assert r.status_code == 202 and r.json()["model"] in allowed


async def test_rate_limits_answer_429_with_retry_after() -> None:
    keys = (
        "sk-ada-0001-abcdef:ada:student,sk-bob-0002-abcdef:bob:student,"
        "sk-tina-003-abcdef:tina:teacher"
    )
    with practice_server() as practice:
        limits = {"keys": keys, "rate_student_rpm": 2, "rate_teacher_tpm": 50}
        with queue_server(practice.url + "/v1", **limits) as queue:
            ada, bob, tina = (
                httpx.AsyncClient(base_url=queue.url, headers={"Authorization": f"Bearer {k}"})
                for k in ("sk-ada-0001-abcdef", "sk-bob-0002-abcdef", "sk-tina-003-abcdef")
            )
            async with ada, bob, tina:
                for _ in range(2):
                    assert (
                        await ada.post("/api/requests", json={"prompt": "hi"})
                    ).status_code == 202
                for path, body in (
                    ("/api/requests", {"prompt": "hi"}),
                    (CHAT, {"messages": [{"role": "user", "content": "hi"}]}),
                ):
                    r = await ada.post(path, json=body)
                    status, code, _, message = error_of(r)
                    assert (status, code) == (429, "rate_limited")
                    assert "2 requests per minute" in message
                    assert 1 <= int(r.headers["Retry-After"]) <= 60
                # another student has a window of their own
                assert (await bob.post("/api/requests", json={"prompt": "hi"})).status_code == 202

                # tokens: a 200-character prompt is ~50 tokens, the teacher's whole minute
                first = await tina.post("/api/requests", json={"prompt": "w" * 200})
                assert first.status_code == 202
                await collect(tina, first.json()["id"])
                r = await tina.post("/api/requests", json={"prompt": "hi"})
                status, code, _, message = error_of(r)
                assert (status, code) == (429, "rate_limited") and "50 tokens per minute" in message
                assert 1 <= int(r.headers["Retry-After"]) <= 60


async def test_without_keys_nothing_is_rate_limited() -> None:
    with practice_server(parallel=1) as practice, queue_server(practice.url + "/v1") as queue:
        async with httpx.AsyncClient(base_url=queue.url) as client:
            holder = await hold_slot(client, practice.url)
            codes = {
                (
                    await client.post("/api/requests", json={"prompt": "hi", "user": "ada"})
                ).status_code
                for _ in range(20)
            }
            assert codes == {202}  # 20 = the per-user waiting cap, not a rate
            await client.delete(f"/api/requests/{holder}")


ODD_LAST_EVENT_IDS = [
    "²",
    "-1",
    "1e3",
    "1.5",
    "９",
    "0x10",
    "١٢",
    "3 4",
    "9" * 40,
    "07",
    "9" * 4301,
]
MALFORMED_BODIES = [
    b"\xff\xfe\xfd",  # not UTF-8
    b'{"prompt": "\xff\xfe"}',  # not UTF-8 inside a string
    b'{"prompt": "\\ud800"}',  # a lone surrogate
    b'{"prompt": "hi", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",  # nested past recursion
    b"[]",
    b"null",
    b'{"messages": [{"role": "user", "content": [{"type": "image"}]}]}',
    b'{"prompt": "hi", "priority": 1e400}',
    b'{"prompt": "hi", "max_tokens": 99999999999999999999999999}',
    b'{"prompt": "hi"',  # cut off
]


async def test_odd_last_event_ids_are_422_or_resume_and_bad_bodies_are_422() -> None:
    with practice_server() as practice, queue_server(practice.url + "/v1") as queue:
        async with httpx.AsyncClient(base_url=queue.url) as client:
            r = await client.post("/api/requests", json={"prompt": "hi"})
            await collect(client, r.json()["id"])
            for value in ODD_LAST_EVENT_IDS:
                got = await client.get(
                    f"/api/requests/{r.json()['id']}/events",
                    headers={"Last-Event-ID": value.encode()},  # raw UTF-8 bytes
                )
                if value.isascii() and value.isdecimal() and len(value) <= 64:
                    assert got.status_code == 200, value
                else:
                    assert got.status_code == 422, value
                    assert got.json()["error"]["param"] == "Last-Event-ID"
            for content in MALFORMED_BODIES:
                for path in ("/api/requests", CHAT):
                    r = await client.post(
                        path, content=content, headers={"Content-Type": "application/json"}
                    )
                    assert r.status_code < 500, (path, content[:40], r.text)
                    if r.status_code not in (200, 202):
                        bad = 422 if path == "/api/requests" else 400  # OpenAI's 400 at /v1
                        assert r.status_code == bad and r.json()["error"]["param"], r.text


def test_rate_windows_slide_and_retry_after_is_when_one_more_fits() -> None:
    now = [0.0]
    rates = RateLimiter(
        {Role.STUDENT: Rate(rpm=3, tpm=100), Role.ADMIN: Rate()}, clock=lambda: now[0]
    )
    for t in (0.0, 10.0, 20.0):
        now[0] = t
        rates.admit("ada", Role.STUDENT, prompt_tokens=1)
    now[0] = 30.0
    assert rates.retry_after("ada", Role.STUDENT) == 30  # the request of t=0 leaves at t=60
    with pytest.raises(ApiError) as refused:
        rates.admit("ada", Role.STUDENT, prompt_tokens=1)
    assert (refused.value.status, refused.value.retry_after) == (429, 30)
    now[0] = 60.0
    assert rates.retry_after("ada", Role.STUDENT) is None
    rates.admit("ada", Role.STUDENT, prompt_tokens=1)

    now[0] = 61.0
    rates.spend("ada", 97)  # window tokens: t=10,20,60 → 1+1+1, t=61 → 97: exactly 100
    assert rates.retry_after("ada", Role.STUDENT) == 9  # at t=70 the t=10 token leaves: 99
    now[0] = 70.0
    assert rates.retry_after("ada", Role.STUDENT) is None
    for _ in range(50):
        rates.admit("root", Role.ADMIN, prompt_tokens=10**6)  # unlimited: never counted
    assert rates.retry_after("root", Role.ADMIN) is None


def test_keyed_defaults_apply_only_with_keys_and_settings_win() -> None:
    def build(keys_on: bool, **rates: int) -> RateLimiter:
        settings = Settings(_env_file=None, **rates)  # type: ignore[call-arg]
        return RateLimiter.from_settings(settings, keys_on)

    assert set(build(False).rates.values()) == {Rate(0, 0)}
    assert build(True).rates == KEYED_DEFAULTS
    assert build(True, rate_student_rpm=0).rates[Role.STUDENT] == Rate(0, 20_000)
    assert build(False, rate_admin_tpm=5).rates[Role.ADMIN] == Rate(0, 5)


def test_the_rate_limiter_forgets_users_idle_for_a_minute() -> None:
    """100,000 one-off users must not stay in memory: a window empty for a minute goes."""
    from tlc_widgets.server.auth import Role
    from tlc_widgets.server.limits import Rate, RateLimiter

    now = [0.0]
    limiter = RateLimiter({Role.STUDENT: Rate(rpm=10)}, clock=lambda: now[0])
    for n in range(3000):
        limiter.admit(f"one-off-{n}", Role.STUDENT, 0)
    assert len(limiter._windows) == 3000  # all within the last minute: all kept
    now[0] = 120.0  # two minutes later, new users arrive
    for n in range(1024):
        limiter.admit(f"later-{n}", Role.STUDENT, 0)
    assert len(limiter._windows) <= 1024  # the idle ones are gone
