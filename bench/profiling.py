"""`py-spy` on a running server, and where its CPU went.

>>> with Profiler(queue.pid, out_dir / "queue.txt"):            # doctest: +SKIP
...     run_load()
>>> print(top_frames(out_dir / "queue.txt"))                    # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.harness import table

__all__ = ["Profiler", "self_by_package", "top_frames"]


class Profiler:
    """`py-spy record` on a running server, written as collapsed stacks on exit.

    >>> with Profiler(queue.pid, out_dir / "queue.txt"):            # doctest: +SKIP
    ...     run_load()
    >>> print(top_frames(out_dir / "queue.txt"))                    # doctest: +SKIP
    """

    def __init__(self, pid: int, out: Path, rate: int = 250) -> None:
        self.out = out
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(exe).exists():
            raise SystemExit("--profile needs py-spy: pip install py-spy")
        self.argv = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
        self.argv += ["--nonblocking", "--output", str(out)]
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(0.3)  # py-spy attaches
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            self._proc.wait(20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def top_frames(collapsed: Path, top: int = 25, only: str | None = None) -> str:
    """Inclusive and self shares of the most-sampled functions in a py-spy raw profile."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text("utf-8", "replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        if only and not any(only in f for f in frames):
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    rows = [
        [f"{100 * n / total:.1f} %", f"{100 * own[name] / total:.1f} %", name]
        for name, n in inclusive.most_common(top)
    ]
    return f"{total} samples\n" + table(["inclusive", "self", "function (file:line)"], rows)


def self_by_package(collapsed: Path) -> str:
    """Self time by the package of the innermost frame: where the CPU actually went."""
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text("utf-8", "replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        total += int(count_text)
        own[_package(stack.split(";")[-1])] += int(count_text)
    rows = [[f"{100 * n / total:.1f} %", name] for name, n in own.most_common()]
    return table(["self", "package of the innermost frame"], rows)


def _package(frame: str) -> str:
    where = frame.partition(" (")[2].rstrip(")").split(":", 1)[0]
    top = where.split("/", 1)[0].removesuffix(".py")
    if not where or where.startswith("<"):
        return "stdlib (frozen)" if where.startswith("<frozen") else frame
    return f"stdlib {top}" if top in sys.stdlib_module_names else top


def _short(frame: str) -> str:
    # "handle (uvicorn/protocols/http/httptools_impl.py:123)" -> keep package-relative path
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name
