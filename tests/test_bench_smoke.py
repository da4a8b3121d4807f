"""The benchmarks (`bench/`) run to the end in `--smoke` mode and report sane structure.

No timing thresholds here: speed is what the benchmarks measure and docs/benchmarks.md
reports; these tests only check that every script still runs against the current server,
that every request finished, and that the numbers the tables print are there.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `bench` lives beside the package, not inside it
    sys.path.insert(0, str(ROOT))

from bench import fairness, hold, many_clients, overhead, saturation, startup  # noqa: E402
from bench.harness import Goal, percentile, summary, table  # noqa: E402
from bench.slotlog import busy_fraction, refills  # noqa: E402


def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _goals_sane(goals: list[Goal]) -> None:
    assert goals
    for goal in goals:
        assert goal.name and goal.target and goal.measured
        assert goal.met in (True, False, None)


# ---------------------------------------------------------------------------- pure helpers


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))
    assert summary([1.0, 3.0])["median"] == 2.0


def test_table_is_markdown() -> None:
    lines = table(["a", "bb"], [[1, 2]]).splitlines()
    assert lines[0].startswith("| a ") and set(lines[1]) <= {"|", "-"}
    assert len(lines) == 3


def test_slot_log_busy_fraction_and_refill_gaps() -> None:
    # two slots: one busy 0–10, the other 0–4 then (after a 1 s gap) 5–10
    events = [
        (0.0, "arrive", "a"),
        (0.0, "start", ""),
        (0.0, "arrive", "b"),
        (0.0, "start", ""),
        (4.0, "end", ""),
        (5.0, "arrive", "c"),
        (5.0, "start", ""),
        (10.0, "end", ""),
        (10.0, "end", ""),
    ]
    assert busy_fraction(events, 2, 0.0, 10.0) == pytest.approx(0.95)
    assert refills(events, 0.0, 10.0) == [(4.0, 5.0, 5.0)]


def test_jain_index() -> None:
    assert fairness.jain([3, 3, 3]) == pytest.approx(1.0)
    assert fairness.jain([1, 0, 0, 0]) == pytest.approx(0.25)


# ---------------------------------------------------------------------------- smoke runs


def test_overhead_smoke() -> None:
    result = overhead.main(["--smoke"])
    paths = result.data["paths"]
    assert set(paths) == {"direct", "passthrough", "queue-openai", "queue-native"}
    for name, path in paths.items():
        assert path["ttft"]["n"] == result.data["requests"], name
        assert _positive(path["ttft"]["median"]) and _positive(path["total"]["median"])
        assert path["ttft"]["median"] <= path["total"]["p99"]
        assert path["distinct_texts"] == 1, name
    # every path relays the same tokens: the proxies lose and add nothing
    assert len({p["text"] for p in paths.values()}) == 1
    _goals_sane(result.goals)


def test_saturation_smoke() -> None:
    result = saturation.main(["--smoke"])
    records = result.data["records"]
    assert records["done"] == records["requests"] == 12
    assert records["dispatch_contiguous"]
    assert records["followers_ended_with"] == {"done": 12}
    for name, phase in result.data["phases"].items():
        assert phase["upstream_requests"] == 12, name
        assert 0 < phase["busy_fraction"] <= 1.0001, name
        assert phase["gap_s"]["n"] >= 1, name
    _goals_sane(result.goals)


def test_many_clients_smoke() -> None:
    result = many_clients.main(["--smoke"])
    (size,) = result.data["sizes"].values()
    assert size["clients"] == size["done"] == 20
    assert size["lost"] == size["error_count"] == size["text_mismatches"] == 0
    assert size["tokens"] > 0 and _positive(size["server_cpu_s"])
    assert _positive(size["server_peak_rss_mb"])
    assert 0 < size["busy_fraction"] <= 1.0001
    assert isinstance(size["dispatches_measured"], int)
    assert isinstance(size["told_before_dispatch_estimate"], int)
    for label, fronts in result.data["relay"].items():
        for name, run in fronts.items():
            assert run["done"] == run["requests"], (label, name)
            assert run["tokens_received"] == run["requests"] * run["tokens_per_request"]
    _goals_sane(result.goals)


def test_hold_smoke() -> None:
    result = hold.main(["--smoke"])
    data = result.data
    n = data["clients"]
    assert data["connected"] == data["waiting"] == n == 40
    # everyone held a place, the line started in that order, and each client was told
    assert data["starts"] >= 1 and data["out_of_order"] == 0
    assert data["freshness_pairs_s"]["n"] > 0 and data["never_told"] == 0
    # every client ended once: the started ones done, the others cancelled
    assert data["terminals"] == {"1": n}
    assert data["endings"] == {"done": data["starts"], "cancelled": n - data["starts"]}
    assert all(_positive(v) for v in data["rss_mb"].values())
    assert data["events_per_client_at_resume"]["min"] >= 2  # accepted, then a place
    _goals_sane(result.goals)


def test_fairness_smoke() -> None:
    result = fairness.main(["--smoke"])
    scenarios = result.data["scenarios"]
    for name in ("staggered", "burst"):
        assert scenarios[name]["all_done"], name
        for light in scenarios[name]["lights"]:
            assert light["dispatch_no"] is not None and light["delay"] >= 1
    loop = scenarios["closed-loop"]
    assert loop["all_done"]
    assert sum(loop["dispatches"].values()) == loop["window_dispatches"]
    assert 0 < loop["jain_dispatches"] <= 1
    _goals_sane(result.goals)


def test_startup_smoke() -> None:
    result = startup.main(["--smoke"])
    medians = result.data["median_s"]
    assert len(medians) == 4 and all(_positive(v) for v in medians.values())
    _goals_sane(result.goals)


def test_hub_vs_keys_smoke() -> None:
    from bench import hub_vs_keys
    from tests.hub_fixture import require_jupyterhub

    require_jupyterhub()
    result = hub_vs_keys.main(["--smoke"])
    paths = result.data["paths"]
    assert set(paths) == {"direct", "keys", "hub", "hub-no-cache"}
    for name, path in paths.items():
        assert path["ttft"]["n"] == result.data["requests"], name
        assert _positive(path["ttft"]["median"]) and _positive(path["total"]["median"])
        assert path["distinct_texts"] == 1, name
    # every path relays the same tokens: who is identified how changes nothing of the reply
    assert len({p["text"] for p in paths.values()}) == 1
    assert result.data["hub_added_ttft_s"] == paths["hub"]["added_ttft_s"]
    assert _positive(result.data["hub_over_keys_ttft"])
    _goals_sane(result.goals)


def test_replicas_busy_smoke() -> None:
    """Three `tlc serve --redis` replicas and one embedded server in front of one upstream:
    every client ended `done`, the upstream never held more requests than its slots."""
    from bench import replicas_busy
    from tests.redis_fixture import require_redis_server

    require_redis_server()
    result = replicas_busy.main(["--smoke"])
    phases = result.data["phases"]
    assert set(phases) == {"embedded", "replicas"}
    for name, phase in phases.items():
        assert phase["endings"] == {"done": 30}, name
        assert phase["upstream_requests"] == 30, name
        assert 0 < phase["peak_in_flight"] <= 4, name
        assert 0 < phase["busy_fraction"] <= 1.0001, name
        assert phase["gap_s"]["n"] >= 1, name
    assert sorted(phases["replicas"]["cpu_s"]) == ["replica-1", "replica-2", "replica-3"]
    assert all(_positive(s) for s in phases["replicas"]["cpu_s"].values())
    _goals_sane(result.goals)


def test_memory_bounds_quick() -> None:
    """Structure only (issue 13's memory figures are in docs/reliability.md): past the
    per-request cap streams are refused with 429 `too_many_streams`, and every request —
    the held one, the big replies, the one-off users' — ended, each with its terminal event."""
    from bench import memory_bounds

    data = memory_bounds.main(["--quick"]).data
    subs = data["subscribers"]
    answered = subs["answered"]
    assert answered["200"] == 8  # TLC_MAX_STREAMS_PER_REQUEST's default
    assert answered["429 too_many_streams"] == subs["subscribers"] - 8 > 0
    assert subs["requests_ended"] == {"done": subs["rounds"]}
    assert data["big-replies"]["ended"] == {"done": data["big-replies"]["requests"]}
    users = data["one-off-users"]
    assert users["ended"] == {"done": users["users"]} and users["warm_up"] == {"done": 200}
    for scenario in data.values():
        assert all(_positive(v) for v in scenario["rss_mb"].values())
