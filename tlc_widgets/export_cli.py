"""`tlc export`: the class's history as JSON Lines or CSV, from the history file or a server.

    $ tlc export --format csv --since 2026-09-01 > class.csv       # the server's own file
    $ tlc export --server https://hub.example.org/services/tlc -o class.csv   # as a teacher

From a file (`--history`, default `TLC_HISTORY_PATH`) it reads the SQLite history read-only,
so it runs beside a live server. With `--server` it asks that server instead
(`GET /api/class/export`) as whoever the environment says — `TLC_API_KEY`, else inside a
JupyterHub the single-user server's own token — so a teacher on a Hub, who cannot reach the
server's disk, exports the same file; a student gets the server's 403 as a sentence.

    >>> p = argparse.ArgumentParser(); add_parser(p.add_subparsers())
    >>> p.parse_args(["export", "--server", "http://q:8000"]).server
    'http://q:8000'
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add `tlc export` to the `tlc` command's subparsers."""
    p = sub.add_parser("export", help="write the class's history as JSON Lines or CSV")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument(
        "--since", help="only requests since: a date (2026-09-01), date-time or Unix time"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--history", metavar="PATH", help="the SQLite file (default TLC_HISTORY_PATH)"
    )
    where.add_argument(
        "--server",
        metavar="URL",
        help="ask this running queue server instead, as a teacher (TLC_API_KEY or the Hub token)",
    )
    p.add_argument("--output", "-o", metavar="FILE", help="write here (default: standard output)")
    p.set_defaults(run=run)


def run(ns: argparse.Namespace) -> None:
    if ns.server:
        _from_server(ns)
    else:
        _from_file(ns)


def _from_file(ns: argparse.Namespace) -> None:
    from .config import Settings
    from .server.export import csv_lines, jsonl_lines, parse_since, read_rows

    path = Path(ns.history or Settings().history_path).expanduser()
    if not path.is_file():
        sys.exit(f"tlc export: there is no history file at {path} (see --history)")
    try:
        since = parse_since(ns.since)
    except ValueError as exc:
        sys.exit(f"tlc export: {exc}")
    rows = read_rows(path, since)
    lines = jsonl_lines(rows) if ns.format == "jsonl" else csv_lines(rows)
    out = open(ns.output, "w", encoding="utf-8", newline="") if ns.output else sys.stdout
    try:
        out.writelines(lines)
    finally:
        if ns.output:
            out.close()


def _from_server(ns: argparse.Namespace) -> None:
    import anyio

    from .client.teacher import ClassClient
    from .errors import TLCError

    async def fetch(target: Path) -> None:
        async with ClassClient(ns.server) as client:
            await client.export(ns.format, target, ns.since)

    try:
        if ns.output:
            anyio.run(fetch, Path(ns.output).expanduser())
            return
        with tempfile.TemporaryDirectory() as folder:  # the client writes whole files only
            target = Path(folder) / f"export.{ns.format}"
            anyio.run(fetch, target)
            sys.stdout.write(target.read_text(encoding="utf-8"))
    except TLCError as exc:
        sys.exit(f"tlc export: {exc.message}")
