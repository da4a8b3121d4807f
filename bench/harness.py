"""What every benchmark's numbers share: percentiles, tables, goals, the machine, the result.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    >>> print(table(["path", "ms"], [["direct", fmt_ms(0.0012)]]))
    | path   | ms   |
    |--------|------|
    | direct | 1.20 |
    >>> Goal("gap", "≤ 1 ms", "0.8 ms", True).row()
    ['gap', '≤ 1 ms', '0.8 ms', 'met']

A benchmark's `main` parses `base_parser`'s flags, prints `machine_lines()`, measures, prints
its tables beside a baseline measured in the same run, and returns a `Result` (`--json`
writes it). Servers are started by `bench.servers`, profiles taken by `bench.profiling`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import statistics
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "PRACTICE_MODEL",
    "ROOT",
    "Goal",
    "Result",
    "base_parser",
    "fmt_ms",
    "goal_rows",
    "iter_sse",
    "machine",
    "machine_lines",
    "pct",
    "percentile",
    "save_json",
    "source_fingerprint",
    "summary",
    "table",
]

ROOT = Path(__file__).resolve().parent.parent
#: Asked for by name in every request: the practice server's default model is paced for a
#: human reader, and a benchmark wants the fast one whatever the default is.
PRACTICE_MODEL = "practice-fast"

# ---------------------------------------------------------------------------- numbers


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100), linearly interpolated between the nearest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, median, p99, mean, min, max of some samples."""
    if not values:
        return {"n": 0, "median": math.nan, "p99": math.nan, "mean": math.nan}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }


def fmt_ms(seconds: float | None, digits: int = 2) -> str:
    if seconds is None or math.isnan(seconds):
        return "–"
    return f"{seconds * 1000:.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table, its columns padded so it also reads well in a terminal."""
    cells = [[str(h) for h in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


@dataclass
class Goal:
    """One goal: what was measured against what was asked."""

    name: str
    target: str
    measured: str
    met: bool | None  #: None: not measured

    def row(self) -> list[str]:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[self.met]
        return [self.name, self.target, self.measured, verdict]


def goal_rows(goals: Sequence[Goal]) -> str:
    return table(["goal", "target", "measured", "verdict"], [g.row() for g in goals])


# ---------------------------------------------------------------------------- SSE


def iter_sse(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(event name, data) per server-sent event; unnamed events are called "message"."""
    name, data = "message", list[str]()
    for line in lines:
        if line == "":
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            name = line[6:].strip()
    if data:
        yield name, "\n".join(data)


# ---------------------------------------------------------------------------- machine


_PACKAGES = (
    "tlc_widgets",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "httpx",
    "anyio",
    "pydantic",
)


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, OS, Python, package versions and the load right now."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = math.nan
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        mem_gb = round(int(mem_kb) / 1024 / 1024, 1)
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "source": source_fingerprint(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": versions,
        "load": [round(x, 2) for x in os.getloadavg()],
    }


def source_fingerprint() -> str:
    """A short hash of the package's Python files: which server a result was measured on
    (the tree changes under a benchmark while others work; a commit id may not exist yet)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "tlc_widgets").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def machine_lines(info: dict[str, Any] | None = None) -> str:
    info = info or machine()
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    return (
        f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB, {info['os']}, "
        f"Python {info['python']}\npackages: {packages}\n"
        f"tlc_widgets source fingerprint: {info['source']}\n"
        f"load average (1/5/15 min) at start: {' / '.join(map(str, info['load']))}"
    )


def pct(x: float | None, digits: int = 2) -> str:
    """A fraction as a percentage, "–" if not measured."""
    return "–" if x is None or math.isnan(x) else f"{100 * x:.{digits}f} %"


# ---------------------------------------------------------------------------- command line


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--smoke", action="store_true", help="a handful of requests: checks that it runs"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record the queue server with py-spy into DIR and print its hottest functions",
    )
    parser.add_argument(
        "--queue-cmd",
        help="start the queue server with this command instead of `python -m tlc_widgets.cli` "
        "(`serve --upstream URL …` is appended), e.g. to compare a patched server",
    )
    parser.add_argument(
        "--queue-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment of the queue server, e.g. TLC_LOG_LEVEL=warning (repeatable)",
    )
    return parser


@dataclass
class Result:
    """What a benchmark's `main` returns (and `--json` writes)."""

    name: str
    machine: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    goals: list[Goal] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "machine": self.machine,
            "load_at_end": [round(x, 2) for x in os.getloadavg()],
            "data": self.data,
            "goals": [g.__dict__ for g in self.goals],
        }


def save_json(path: Path | None, result: Result) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result.as_dict(), indent=2, default=str) + "\n")
