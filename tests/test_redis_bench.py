"""`python -m bench.redis_queue --smoke` and `bench.redis_ttft --smoke` run to the end and report.

No timing thresholds: the figures are what the benchmark prints, not what a test checks.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `bench` lives beside the package, not inside it
    sys.path.insert(0, str(ROOT))

from bench import redis_queue  # noqa: E402
from tests.redis_fixture import RedisServer, redis_server  # noqa: E402, F401


def test_redis_queue_bench_smoke(redis_server: RedisServer) -> None:  # noqa: F811
    result = redis_queue.main(["--smoke", "--redis", redis_server.url])
    assert set(result.data) == set(redis_queue.STEPS)
    for step, stores in result.data.items():
        for store in ("embedded", "redis"):
            figures = stores[store]
            assert figures["n"] > 0, (step, store)
            assert math.isfinite(figures["median"]) and figures["median"] > 0


def test_redis_ttft_bench_smoke(redis_server: RedisServer) -> None:  # noqa: F811
    """`python -m bench.redis_ttft --smoke`: every path measured, every request ended well."""
    from bench import redis_ttft

    result = redis_ttft.main(["--smoke", "--redis", redis_server.url])
    paths = result.data["paths"]
    assert set(paths) == {"direct", "embedded", "redis", "redis-other"}
    for name, figures in paths.items():
        assert figures["ttft"]["n"] == 5, name
        assert 0 < figures["ttft"]["median"] <= figures["total"]["median"], name
    assert [g.name for g in result.goals] == ["added TTFT, --redis"]
