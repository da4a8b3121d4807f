"""A keys file edited while the server runs: new keys work, removed ones get 401, roles
change — and a file that no longer reads as good keys leaves the old keys in force.

A real queue server started with `keys_file`; each test edits the file and polls, with a
bounded deadline, until the server shows the change (it looks at most once a second).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import httpx
import pytest

from tests.conftest import practice_server, queue_server, wait_until
from tlc_widgets.server.keys_reload import KeysWatch

pytestmark = pytest.mark.anyio

ADA, BOB, CY = "sk-ada-0001-reloadkey", "sk-bob-0002-reloadkey", "sk-cy-00003-reloadkey"
DEADLINE_S = 15  # ≥ 1 s between looks at the file, plus a busy machine


def keys_toml(*people: tuple[str, str, str]) -> str:
    return "".join(f'[keys."{k}"]\nuser = "{u}"\nrole = "{r}"\n\n' for k, u, r in people)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


#: Until `seen()` (conftest's `wait_until`, every 10 ms), failing after `DEADLINE_S`.
poll = functools.partial(wait_until, tries=DEADLINE_S * 100)


async def test_new_removed_and_changed_keys_apply_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(keys_toml((ADA, "ada", "student"), (BOB, "bob", "student")))
    with (
        practice_server() as practice,
        queue_server(practice.url + "/v1", keys_file=path) as queue,
    ):
        async with httpx.AsyncClient(base_url=queue.url, timeout=30) as http:
            assert (await http.get("/api/class", headers=auth(ADA))).status_code == 403
            assert (await http.get("/api/queue", headers=auth(CY))).status_code == 401

            # ada becomes a teacher, bob leaves, cy joins.
            path.write_text(keys_toml((ADA, "ada", "teacher"), (CY, "cy", "student")))

            async def cy_is_in() -> bool:
                return (await http.get("/api/queue", headers=auth(CY))).status_code == 200

            await poll(cy_is_in, "cy's new key")
            r = await http.get("/api/queue", headers=auth(BOB))
            assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")
            assert (await http.get("/api/class", headers=auth(ADA))).status_code == 200
            r = await http.post("/api/requests", json={"prompt": "hi"}, headers=auth(CY))
            assert r.status_code == 202 and r.json()["user"] == "cy", r.text


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ('[keys."sk-eve-0005-reloadkey"\nuser = "eve"\n', "keys.toml"),  # a syntax error
        ("# everyone left\n", "holds no keys"),
        ('[key."sk-eve-0005-reloadkey"]\nuser = "eve"\nrole = "admin"\n', "unknown table"),
        ('[keys."sk-eve-short"]\nuser = "eve"\nrole = "admin"\n', "at least 16 characters"),
        (None, "cannot be read"),  # the file deleted
    ],
)
async def test_a_file_that_no_longer_reads_as_keys_keeps_the_old_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, bad: str | None, named: str
) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(keys_toml((ADA, "ada", "teacher"), (BOB, "bob", "student")))
    with (
        caplog.at_level(logging.ERROR, logger="tlc.keys"),
        practice_server() as practice,
        queue_server(practice.url + "/v1", keys_file=path) as queue,
    ):
        async with httpx.AsyncClient(base_url=queue.url, timeout=30) as http:
            if bad is None:
                path.unlink()
            else:
                path.write_text(bad)

            async def refused() -> bool:
                await http.get("/api/queue", headers=auth(BOB))  # requests make it look
                return any(named in r.getMessage() for r in caplog.records)

            await poll(refused, f"the error line naming {named!r}")
            # Still protected, by the keys loaded before: never by no keys at all.
            assert (await http.get("/api/class", headers=auth(ADA))).status_code == 200
            assert (await http.get("/api/queue", headers=auth(BOB))).status_code == 200
            r = await http.get("/api/queue", headers=auth("sk-eve-0005-reloadkey"))
            assert r.status_code == 401
            assert (await http.get("/api/queue")).status_code == 401
            errors = [r.getMessage() for r in caplog.records if r.name == "tlc.keys"]
            assert len(errors) == 1 and "stay in force" in errors[0], errors
            assert "sk-eve-0005-reloadkey" not in errors[0]  # never a whole key in the log
            print(errors[0])

            # Fixed: the fixed file's keys apply.
            path.write_text(keys_toml((CY, "cy", "admin")))

            async def fixed() -> bool:
                return (await http.get("/api/queue", headers=auth(CY))).status_code == 200

            await poll(fixed, "the fixed file's keys")
            assert (await http.get("/api/queue", headers=auth(ADA))).status_code == 401


def test_a_bad_version_is_reported_once_not_at_every_look(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys.toml"
    path.write_text("good")
    loads: list[str] = []

    def load() -> str:
        text = path.read_text()
        loads.append(text)
        if text != "good":
            raise ValueError(f"{path}: not good")
        return text

    watch = KeysWatch(path, load, every_s=0)
    assert not watch.changed()
    path.write_text("bad")
    with caplog.at_level(logging.ERROR, logger="tlc.keys"):
        assert watch.changed() and watch.reload() is None
        assert not watch.changed() and not watch.changed()  # the same bad file: no new line
    assert len(caplog.records) == 1 and "not good" in caplog.records[0].getMessage()
    path.write_text("good")
    assert watch.changed() and watch.reload() == "good"
    assert loads == ["bad", "good"]
