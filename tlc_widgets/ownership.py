"""Which queue server is this user's: a record in the user's runtime directory.

    >>> where = Path(tempfile.mkdtemp())           # default: `runtime_dir()`
    >>> remember_server(os.getpid(), 8000, where=where)
    >>> our_server(where) is None       # this process is no `tlc serve`: the record is dropped
    True

`tlc lab` and the lesson helper note the PID and port of the queue server they start; a later
`tlc lab` reuses a server only if that PID still runs, is this user's `tlc serve`, and a queue
server answers on its port. On a shared machine, something else answering on port 8000 is
never taken for ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .launch import LOOPBACK, is_queue_server, is_tlc_serve, pid_alive

__all__ = ["forget_server", "our_server", "remember_server", "runtime_dir"]


def runtime_dir() -> Path:
    """This user's private directory for run-time state: `$TLC_RUNTIME_DIR` (tests set it),
    else `$XDG_RUNTIME_DIR/tlc`, else one in the temporary directory, only for this user."""
    if explicit := os.environ.get("TLC_RUNTIME_DIR"):
        path = Path(explicit)
    elif base := os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(base) / "tlc"
    else:
        path = Path(tempfile.gettempdir()) / f"tlc-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def remember_server(
    pid: int, port: int, log: Path | None = None, *, where: Path | None = None
) -> None:
    """Note that this user started the queue server `pid` on `port` (see `our_server`)."""
    record = {"pid": pid, "port": port, "log": str(log) if log else None}
    ((where or runtime_dir()) / "server.json").write_text(json.dumps(record))


def our_server(where: Path | None = None) -> dict[str, Any] | None:
    """The queue server this user started (`remember_server`), if it still runs and answers:
    its PID is alive and is a `tlc serve`, and a queue server answers on its port."""
    path = (where or runtime_dir()) / "server.json"
    try:
        record = json.loads(path.read_text())
        pid, port = int(record["pid"]), int(record["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid_alive(pid) and is_tlc_serve(pid) and is_queue_server(f"http://{LOOPBACK}:{port}"):
        return dict(record, url=f"http://{LOOPBACK}:{port}")
    forget_server(pid, where=where)
    return None


def forget_server(pid: int, *, where: Path | None = None) -> None:
    """Drop the record of `pid` (a record of another server is kept)."""
    path = (where or runtime_dir()) / "server.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        if int(json.loads(path.read_text())["pid"]) == pid:
            path.unlink()
