"""Start-up: how long until `import tlc_widgets` returns, and until `tlc serve` answers.

    $ python -m bench.startup
    $ python -m bench.startup --smoke

    import   `python -c "import tlc_widgets"` wall time, median of 10, beside `python -c pass`
             (the interpreter alone) measured in turns with it
    serve    `tlc serve --practice` from launch until `/healthz` answers 200, median of 5

With `--profile`, `python -X importtime` shows which imports the serve command spends its
start-up in.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.harness import (
    Goal,
    Result,
    base_parser,
    goal_rows,
    machine,
    machine_lines,
    save_json,
    table,
)
from bench.servers import PYTHON
from tlc_widgets.launch import free_port, spawn, stop_process, wait_ready

__all__ = ["main"]


def wall(argv: Sequence[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=_env())
    return time.perf_counter() - started


def _env(workdir: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TLC_")}
    if workdir is not None:
        env["TLC_HISTORY_PATH"] = str(workdir / "history.sqlite3")  # never the user's own
    return env


def tlc_command() -> list[str]:
    """The `tlc` script beside this Python (what users type), else `python -m`."""
    script = Path(PYTHON).parent / "tlc"
    return [str(script)] if script.exists() else [PYTHON, "-m", "tlc_widgets.cli"]


def serve_until_healthy(workdir: Path, timeout_s: float = 30.0) -> float:
    """Seconds from launching `tlc serve --practice` until `/healthz` answers 200."""
    port = free_port()
    argv = [*tlc_command(), "serve", "--practice", "--port", str(port)]
    started = time.perf_counter()
    proc = spawn(argv, workdir / "serve.log", env=_env(workdir), cwd=workdir, own_session=False)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process=proc, timeout=timeout_s, interval=0.005)
        return time.perf_counter() - started
    finally:
        stop_process(proc, grace=10.0)


def import_profile(module: str, top: int = 15) -> str:
    """The slowest imports (cumulative) of `python -X importtime -c 'import module'`."""
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|", 2)
        rows.append((int(cumulative), int(own), name.strip()))
    rows.sort(reverse=True)
    return table(
        ["cumulative ms", "self ms", "module"],
        [[f"{c / 1000:.1f}", f"{s / 1000:.1f}", n] for c, s, n in rows[:top]],
    )


def main(argv: Sequence[str] | None = None) -> Result:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--imports", type=int, default=10, help="runs of each import command")
    parser.add_argument("--serves", type=int, default=5, help="runs of tlc serve")
    ns = parser.parse_args(argv)
    if ns.smoke:
        ns.imports, ns.serves = 2, 1
    result = Result("startup", machine())
    print(machine_lines(result.machine))
    bare: list[float] = []
    package: list[float] = []
    server_module: list[float] = []
    for _ in range(ns.imports):  # in turns, so load that comes and goes hits all alike
        bare.append(wall([PYTHON, "-c", "pass"]))
        package.append(wall([PYTHON, "-c", "import tlc_widgets"]))
        server_module.append(wall([PYTHON, "-c", "import tlc_widgets.server"]))
    workdir = Path(tempfile.mkdtemp(prefix="tlc-bench-startup-"))
    try:
        serve = [serve_until_healthy(workdir) for _ in range(ns.serves)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    med = {
        "python -c pass": statistics.median(bare),
        'python -c "import tlc_widgets"': statistics.median(package),
        'python -c "import tlc_widgets.server"': statistics.median(server_module),
        "tlc serve --practice → /healthz 200": statistics.median(serve),
    }
    base = med["python -c pass"]
    rows = [
        [
            name,
            len(serve) if name.startswith("tlc") else ns.imports,
            f"{1000 * v:.0f}",
            "" if v is base else f"+{1000 * (v - base):.0f}",
            f"{v / base:.1f}×",
        ]
        for name, v in med.items()
    ]
    print(table(["command", "runs", "median ms", "over python -c pass", "÷ python -c pass"], rows))
    imported = med['python -c "import tlc_widgets"']
    healthy = med["tlc serve --practice → /healthz 200"]
    result.goals = [
        Goal("import tlc_widgets", "≤ 300 ms", f"{1000 * imported:.0f} ms", imported <= 0.3),
        Goal("tlc serve --practice until /healthz", "≤ 1.5 s", f"{healthy:.2f} s", healthy <= 1.5),
    ]
    print("\n" + goal_rows(result.goals))
    profile = None
    if ns.profile is not None:
        profile = "python -X importtime, tlc_widgets.server:\n" + import_profile(
            "tlc_widgets.server"
        )
        print("\n" + profile)
    result.data = {
        "median_s": med,
        "runs_s": {"pass": bare, "import": package, "import_server": server_module, "serve": serve},
        "profile": profile,
    }
    save_json(ns.json, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
