"""`KeysWatch`: a keys file edited during a term is picked up without restarting the server.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "keys.toml"
    >>> _ = path.write_text('[keys."sk-ada-0000000001"]\\nuser = "ada"\\n')
    >>> watch = KeysWatch(path, load=lambda: {"sk-ada-0000000001": "ada"}, every_s=0)
    >>> watch.changed()          # the file as it was read at start
    False
    >>> _ = path.write_text('[keys."sk-ada-0000000001"]\\nuser = "ada"\\nrole = "teacher"\\n')
    >>> watch.changed()
    True

The check runs on the request path, at most once every `every_s` (one `stat()` of the file),
not in a background task: nothing to start or stop with the app's lifespan, every worker
process sees the change by itself, and an idle server has no one to apply it to anyway. A
changed file (its size, mtime or inode: an editor that saves by renaming counts) is read
again with the same checks as at start. If it no longer reads as good keys — a syntax error,
no keys, an unknown table, a short key, the file gone — the keys loaded before stay in force
and one error line says why; the server never falls back to running without keys.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["RELOAD_EVERY_S", "KeysWatch"]

log = logging.getLogger("tlc.keys")

#: How often, at most, the keys file's size and mtime are looked at.
RELOAD_EVERY_S = 1.0

T = TypeVar("T")
_Signature = tuple[int, int, int] | None  # (inode, size, mtime in ns), None: cannot stat


def _signature(path: Path) -> _Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class KeysWatch(Generic[T]):
    """Watches `path`; `reload()` gives what `load()` now returns, or None to keep the old."""

    def __init__(
        self, path: Path, load: Callable[[], T], *, every_s: float = RELOAD_EVERY_S
    ) -> None:
        self.path, self._load, self.every_s = path, load, every_s
        self._seen = _signature(path)  # what the keys in force were read from
        self._next_check = time.monotonic() + every_s

    def changed(self) -> bool:
        """True when the file differs from what was last read (checked at most every `every_s`)."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.every_s
        return _signature(self.path) != self._seen

    def reload(self) -> T | None:
        """The keys read again, or None (logged once per change) when they cannot be used."""
        signature = _signature(self.path)
        self._seen = signature  # a bad version is reported once, not every second
        try:
            if signature is None:
                raise ValueError(f"{self.path} cannot be read (moved or deleted?)")
            loaded = self._load()
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            log.error(
                "keys file changed but cannot be used; the keys loaded before stay in force "
                "until it is fixed: %s",
                exc,
            )
            return None
        return loaded
