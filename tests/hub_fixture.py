"""A real JupyterHub on loopback ports, for the Hub tests (`bench/hub.py`, with a skip).

    with running_hub(tmp_path) as hub:           # ~10 s to start here
        token = hub.token_for("alice")           # a fresh Hub token of alice's
        httpx.get(hub.url + "/services/tlc/api/queue", headers={"Authorization": f"token {token}"})

What runs (the Hub, its proxy, the Hub-managed `tlc` service, the external `tlc-ext`, the
people alice, bob, carol in group `teachers`, and admin) is described in `bench/hub.py`, which
`bench.hub_vs_keys` starts too: one Hub configuration for the tests and the figures.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `bench` lives beside the package, not inside it
    sys.path.insert(0, str(ROOT))

from bench import hub as _hub  # noqa: E402
from bench.hub import EXTERNAL, SERVICE, RunningHub  # noqa: E402

__all__ = ["EXTERNAL", "SERVICE", "RunningHub", "require_jupyterhub", "running_hub"]


def require_jupyterhub() -> None:
    """Skip, saying why, when jupyterhub is missing; fail instead when TLC_REQUIRE_HUB=1."""
    missing = _hub.missing()
    if missing:
        why = f"{', '.join(missing)} not installed (pip install -e '.[test]')"
        if os.environ.get("TLC_REQUIRE_HUB") == "1":
            pytest.fail(f"TLC_REQUIRE_HUB=1 but {why}")
        pytest.skip(why)


@contextmanager
def running_hub(directory: Path) -> Iterator[RunningHub]:
    """Start a Hub with the `tlc` service in `directory`; stop it after."""
    require_jupyterhub()
    with _hub.running_hub(directory) as hub:
        yield hub
