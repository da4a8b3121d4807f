"""Schemathesis against `/openapi.json`: generated bodies, queries and headers, no 5xx.

The suite runs a short pass (about 200 cases); docs/reliability.md has the long run and its
command. Streams that never end (`…/events`) and the admin switches that stop the queue
(pause, drain: their 503s are the point) are left out of the generated calls.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import practice_server, queue_server

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
EXCLUDE = r"(/events$|/api/admin/(pause|drain)$)"
ADMIN_KEY = "sk-fuzz-admin-0001"


def schemathesis_args(url: str, max_examples: int, seed: int) -> list[str]:
    """The command line of a run (also the one docs/reliability.md gives)."""
    return [
        str(SCHEMATHESIS),
        "run",
        f"{url}/openapi.json",
        "--checks=not_a_server_error",
        f"--exclude-path-regex={EXCLUDE}",
        f"--max-examples={max_examples}",
        f"--seed={seed}",
        "--phases=coverage,fuzzing",
        "--request-timeout=30",
        "--generation-database=none",
        "--no-color",
        f"--header=Authorization: Bearer {ADMIN_KEY}",
    ]


@pytest.mark.skipif(not SCHEMATHESIS.exists(), reason="schemathesis is not installed")
def test_generated_requests_never_get_a_server_error(tmp_path: Path) -> None:
    keys = f"{ADMIN_KEY}:root:admin,sk-fuzz-student-01:ada:student"
    with practice_server() as practice:
        with queue_server(practice.url + "/v1", keys=keys, max_body_bytes=65_536) as queue:
            run = subprocess.run(
                schemathesis_args(queue.url, max_examples=15, seed=1),
                capture_output=True,
                text=True,
                cwd=tmp_path,  # its report directory, if any, goes there
                timeout=100,
            )
    summary = run.stdout[-3000:]
    generated = re.search(r"(\d+) generated", summary)
    assert generated is not None, summary
    assert int(generated.group(1)) >= 200, summary
    assert run.returncode == 0 and "Server error" not in run.stdout, summary
