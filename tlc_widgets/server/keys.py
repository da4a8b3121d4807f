"""API keys: read from `TLC_KEYS` / `TLC_KEYS_FILE`, checked, and looked up by digest.

    >>> keys = Keys.parse("sk-ada-000000001:ada:student,sk-root-00000001:root:admin")
    >>> keys.identify("Bearer sk-ada-000000001")
    Identity(user='ada', role=<Role.STUDENT: 'student'>)

Keys asked for but parsing to none, a key shorter than `MIN_KEY_LENGTH`, a key listed twice,
or an unknown table or field stop the server from starting, with a sentence naming the entry
or line (never the key itself). A keys file changed while the server runs is read again
(`keys_reload.py`): a new key works, a removed one gets 401, a changed role applies; a file
that no longer reads as good keys leaves the old ones in force.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tomllib
from pathlib import Path
from typing import Any

from ..config import Settings
from ..protocol import ErrorCode
from .api_error import ApiError
from .identity import Identity, Role
from .keys_reload import KeysWatch

__all__ = ["MIN_KEY_LENGTH", "Keys"]

log = logging.getLogger("tlc.keys")


def _digest(key: str) -> bytes:
    # Keys are looked up by their SHA-256, so the lookup's timing reveals nothing about them.
    return hashlib.sha256(key.encode()).digest()


class Keys:
    """The configured keys; empty (falsy) when there are none."""

    def __init__(
        self,
        identities: dict[str, Identity] | None = None,
        watch: KeysWatch[dict[str, Identity]] | None = None,
    ) -> None:
        self._by_digest = {_digest(k): i for k, i in (identities or {}).items()}
        self._watch = watch  #: the keys file, when there is one: read again when it changes

    def __bool__(self) -> bool:
        return bool(self._by_digest)

    def __len__(self) -> int:
        return len(self._by_digest)

    @classmethod
    def from_settings(cls, settings: Settings) -> Keys:
        """The keys of `keys_file` and `keys`. Keys asked for but none found, a key shorter
        than `MIN_KEY_LENGTH`, a key listed twice, or an unknown table: `ValueError`."""
        watch = None
        if settings.keys_file is not None:
            # Watched from before the first read: a change during that read is seen later.
            watch = KeysWatch(settings.keys_file, lambda: _load(settings))
        return cls(_load(settings), watch)

    @classmethod
    def parse(cls, text: str) -> Keys:
        return cls(_one_each(_split(text)))

    def identify(self, authorization: str | None) -> Identity:
        """The identity an `Authorization` header proves, or `ApiError(unauthorized)`."""
        if self._watch is not None and self._watch.changed():
            self._use(self._watch.reload())
        if not authorization:
            raise ApiError(
                ErrorCode.UNAUTHORIZED,
                "Send your key as 'Authorization: Bearer <key>' "
                "(QueueClient reads it from TLC_API_KEY; OpenAI clients send api_key).",
            )
        scheme, _, key = authorization.strip().partition(" ")
        identity = self._by_digest.get(_digest(key.strip())) if scheme.lower() == "bearer" else None
        if identity is None:
            raise ApiError(ErrorCode.UNAUTHORIZED, "That key is not known to this server.")
        return identity

    def _use(self, identities: dict[str, Identity] | None) -> None:
        if identities is None:  # unusable: KeysWatch has said why; the old keys stay
            return
        before = len(self._by_digest)
        self._by_digest = {_digest(k): i for k, i in identities.items()}
        log.info("keys file read again: %d keys (%d before)", len(self._by_digest), before)


def _load(settings: Settings) -> dict[str, Identity]:
    """Every key of `keys_file` and `keys`, checked (`ValueError` naming what is wrong)."""
    entries: list[_Entry] = []
    if settings.keys_file is not None:
        path = settings.keys_file
        if not path.is_file():
            raise ValueError(f"TLC_KEYS_FILE {path} is not a file.")
        found = _read_toml(path)
        if not found:
            raise ValueError(
                f'{path} holds no keys: add a [keys."KEY"] table (user, role) per person, '
                "or unset TLC_KEYS_FILE to run without keys on loopback."
            )
        entries += found
    if settings.keys is not None:
        found = _split(settings.keys.get_secret_value())
        if not found:
            raise ValueError(
                "TLC_KEYS is set but holds no keys: write key:user:role,… or remove the "
                "variable to run without keys on loopback."
            )
        entries += found
    return _one_each(entries)


#: Shorter keys can be guessed or shoulder-surfed; `secrets.token_urlsafe(24)` gives 32.
MIN_KEY_LENGTH = 16
_MAKE_ONE = "make one with: python -c 'import secrets; print(secrets.token_urlsafe(24))'"
_FIELDS = frozenset({"user", "role"})


def _identity(user: Any, role: Any, where: str) -> Identity:
    if not isinstance(user, str) or not user.strip() or len(user) > 64 or not user.isprintable():
        raise ValueError(f"{where}: user must be a name of 1 to 64 characters, not {user!r}")
    try:
        return Identity(user=user.strip(), role=Role(role))
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise ValueError(f"{where}: role must be one of {roles}, not {role!r}") from None


def _check_key(key: str, where: str) -> None:
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(
            f"{where}: a key must have at least {MIN_KEY_LENGTH} characters, this one has "
            f"{len(key)}; {_MAKE_ONE}"
        )


#: (key, identity, where it was written) — `where` names it in an error without the key
_Entry = tuple[str, Identity, str]


def _split(text: str) -> list[_Entry]:
    """`key:user:role,…` (a key may itself hold colons: the last two fields are user, role)."""
    entries = []
    for n, item in enumerate((part.strip() for part in text.split(",")), start=1):
        if not item:
            continue
        fields = item.rsplit(":", 2)
        where = f"TLC_KEYS entry {n}"
        if len(fields) != 3 or not fields[0]:
            raise ValueError(f"{where}: write it as key:user:role")
        _check_key(fields[0], where)
        entries.append((fields[0], _identity(fields[1], fields[2], where), where))
    return entries


def _line_of(text: str, needle: str) -> str:
    """' line N' of the first table header or assignment that mentions `needle`, or ''."""
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if needle in stripped and (stripped.startswith("[") or stripped.startswith(needle)):
            return f" line {n}"
    return ""


def _read_toml(path: Path) -> list[_Entry]:
    text = path.read_text("utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # a key listed twice lands here too
        # tomllib quotes the key it chokes on; an error message must not print a key.
        said = re.sub(r"'([^']{8,})'", lambda m: f"'{m[1][:4]}…'", str(exc))
        raise ValueError(f"{path}: {said}") from None
    for name in data:
        if name != "keys":
            raise ValueError(
                f"{path}{_line_of(text, name)}: unknown table or field {name!r}; a keys file "
                'holds only [keys."KEY"] tables with user and role (a typo for [keys."…"]?)'
            )
    tables = data.get("keys", {})
    if not isinstance(tables, dict):
        raise ValueError(f'{path}{_line_of(text, "keys")}: keys must be [keys."KEY"] tables')
    entries = []
    for key, table in tables.items():
        where = f'{path}{_line_of(text, key)} [keys."{key[:4]}…"]'
        if not isinstance(table, dict):
            raise ValueError(f"{where}: expected a table with user and role")
        unknown = sorted(set(table) - _FIELDS)
        if unknown:
            raise ValueError(
                f"{where}: unknown field {', '.join(map(repr, unknown))}; "
                "a key's table holds only user and role"
            )
        _check_key(key, where)
        # A key without a role gets the least one: forgetting a line must not grant more.
        identity = _identity(table.get("user"), table.get("role", "student"), where)
        entries.append((key, identity, where))
    return entries


def _one_each(entries: list[_Entry]) -> dict[str, Identity]:
    """The keys as a mapping, refusing a key listed twice (the last would win silently)."""
    seen: dict[str, str] = {}
    identities = {}
    for key, identity, where in entries:
        if key in seen:
            raise ValueError(
                f"{where} repeats the key of {seen[key]}: each key names one person; "
                "remove one of them"
            )
        seen[key], identities[key] = where, identity
    return identities
