"""Keys that were asked for but are not right stop the server from starting, with a sentence
naming the problem and where it is — never a server that runs unprotected."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tlc_widgets.config import Settings
from tlc_widgets.server.auth import MIN_KEY_LENGTH, Keys
from tlc_widgets.serving import free_port

LONG = "sk-0123456789abcdef"  # 19 characters


def keys_from(tmp_path: Path, toml: str | None = None, env: str | None = None) -> Keys:
    path = None
    if toml is not None:
        path = tmp_path / "keys.toml"
        path.write_text(toml)
    settings = Settings(_env_file=None, keys_file=path, keys=env)  # type: ignore[call-arg]
    return Keys.from_settings(settings)


@pytest.mark.parametrize(
    ("toml", "env", "named"),
    [
        (None, "", "TLC_KEYS is set but holds no keys"),
        (None, " , ,", "TLC_KEYS is set but holds no keys"),
        ("", None, "keys.toml holds no keys"),
        ("# nobody yet\n", None, "keys.toml holds no keys"),
        ("[keys]\n", None, "keys.toml holds no keys"),
        # The typo of the issue: [key."…"] parses to a table named key, and no keys.
        (f'[key."{LONG}"]\nuser = "ada"\n', None, "keys.toml line 1: unknown table or field 'key'"),
        (
            f'[keys."{LONG}"]\nuser = "ada"\n\n[roles]\nada = "admin"\n',
            None,
            "keys.toml line 4: unknown table or field 'roles'",
        ),
        (
            f'[keys."{LONG}"]\nuser = "ada"\nrol = "admin"\n',
            None,
            "keys.toml line 1 \\[keys.\"sk-0…\"\\]: unknown field 'rol'",
        ),
        ('keys = "sk-0123456789abcdef"\n', None, "keys.toml line 1: keys must be"),
        ('[keys."sk-short"]\nuser = "ada"\n', None, "at least 16 characters, this one has 8"),
        (None, f"{LONG}:ada:student,sk-bob:bob:student", "TLC_KEYS entry 2: a key must have"),
        (None, f"{LONG}:ada:student,{LONG}:eve:admin", "TLC_KEYS entry 2 repeats the key of"),
        (
            f'[keys."{LONG}"]\nuser = "ada"\n',
            f"{LONG}:eve:admin",
            'TLC_KEYS entry 1 repeats the key of .*keys.toml line 1 \\[keys."sk-0…"\\]',
        ),
        (
            f'[keys."{LONG}"]\nuser = "ada"\n[keys."{LONG}"]\nuser = "eve"\n',
            None,
            "keys.toml: Cannot declare .* twice",
        ),
        (f'[keys."{LONG}"]\nuser = "ada\\nINFO forged"\n', None, "user must be a name"),
    ],
)
def test_keys_asked_for_but_wrong_refuse_to_start(
    tmp_path: Path, toml: str | None, env: str | None, named: str
) -> None:
    with pytest.raises(ValueError, match=named) as refused:
        keys_from(tmp_path, toml, env)
    assert LONG not in str(refused.value)  # an error never prints a whole key
    print(refused.value)


def test_good_keys_still_load_and_a_missing_file_is_named(tmp_path: Path) -> None:
    keys = keys_from(
        tmp_path, f'[keys."{LONG}"]\nuser = "ada"\n', "k" * MIN_KEY_LENGTH + ":t:teacher"
    )
    assert len(keys) == 2
    with pytest.raises(ValueError, match="is not a file"):
        Keys.from_settings(Settings(_env_file=None, keys_file=tmp_path / "nope.toml"))  # type: ignore[call-arg]


def test_an_empty_tlc_keys_in_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TLC_KEYS", "")  # left empty in a shell script or a .env line
    with pytest.raises(ValueError, match="TLC_KEYS is set but holds no keys"):
        Keys.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]


def _serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`tlc serve` as a process; each case here must exit before it binds anything."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TLC_")}
    environ.update(TLC_HISTORY_PATH=":memory:", **env)
    command = [sys.executable, "-m", "tlc_widgets.cli", "serve", "--port", str(free_port())]
    return subprocess.run(
        [*command, *args], env=environ, capture_output=True, text=True, timeout=60, check=False
    )


def test_tlc_serve_refuses_a_network_bind_without_keys_and_bad_keys(tmp_path: Path) -> None:
    done = _serve("--host", "0.0.0.0")
    assert done.returncode != 0
    assert "Refusing to bind 0.0.0.0 without keys" in done.stderr
    assert "--anyone-on-the-network" in done.stderr and "Traceback" not in done.stderr
    print(done.stderr.strip())

    typo = tmp_path / "keys.toml"
    typo.write_text(f'[key."{LONG}"]\nuser = "ada"\nrole = "admin"\n')
    for args, env, named in (
        (("--keys-file", str(typo)), {}, "line 1: unknown table or field 'key'"),
        ((), {"TLC_KEYS": ""}, "TLC_KEYS is set but holds no keys"),
        (("--host", "0.0.0.0"), {"TLC_KEYS": ""}, "TLC_KEYS is set but holds no keys"),
    ):
        done = _serve(*args, **env)
        assert done.returncode != 0 and named in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_a_network_bind_needs_keys_or_the_operator_s_word(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tlc_widgets.server.guard import check_exposure

    for host in ("0.0.0.0", "::", "192.168.1.5", "teacher-pc.local"):
        with pytest.raises(ValueError, match=f"Refusing to bind {host} without keys"):
            check_exposure(Settings(_env_file=None, host=host), keyed=False)  # type: ignore[call-arg]
        check_exposure(Settings(_env_file=None, host=host), keyed=True)  # type: ignore[call-arg]
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_exposure(Settings(_env_file=None, host=host), keyed=False)  # type: ignore[call-arg]
    monkeypatch.setenv("TLC_ANYONE_ON_THE_NETWORK", "1")
    with caplog.at_level("WARNING", logger="tlc.guard"):
        check_exposure(Settings(_env_file=None, host="0.0.0.0"), keyed=False)  # type: ignore[call-arg]
    assert "anyone who can reach this machine" in caplog.text
