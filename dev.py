#!/usr/bin/env python3
"""One entry point on a fresh machine (only Python 3.11 needed): `python3 dev.py lab|test|serve`.

    python3 dev.py lab          # queue server + practice model (or LM Studio) + JupyterLab
    python3 dev.py test         # ruff, mypy, import contracts, the whole pytest suite + doctests
    python3 dev.py serve ...    # any `tlc` command, e.g. `serve --practice`

It makes `.venv/` beside this file on first use and re-installs only when pyproject.toml
changed, then runs the command inside it. Standard library only, on purpose.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def ensure_env() -> None:
    if not PY.exists():
        print("dev.py: creating .venv (first run) …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".tlc-installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != want:
        print("dev.py: installing tlc_widgets and its test tools into .venv …", flush=True)
        subprocess.run([PY, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([PY, "-m", "pip", "install", "-q", "-e", f"{ROOT}[test]"], check=True)
        stamp.write_text(want)


def run(*cmd: str | Path) -> int:
    return subprocess.call([str(c) for c in cmd], cwd=ROOT)


def test(args: list[str]) -> int:
    code = [
        d for d in ("tlc_widgets", "tests", "bench", "notebooks", "dev.py") if (ROOT / d).exists()
    ]
    for step in (
        [BIN / "ruff", "check", *code],
        [BIN / "ruff", "format", "--check", *code],
        [BIN / "mypy"],
        [BIN / "lint-imports"],  # the layers (pyproject's [tool.importlinter] contracts)
    ):
        print(
            "dev.py:", " ".join(str(s.name if isinstance(s, Path) else s) for s in step), flush=True
        )
        if code := run(*step):
            return code
    return run(PY, "-m", "pytest", *args)


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    ensure_env()
    command, args = sys.argv[1], sys.argv[2:]
    if command == "test":
        return test(args)
    return run(BIN / "tlc", command, *args)


if __name__ == "__main__":
    sys.exit(main())
