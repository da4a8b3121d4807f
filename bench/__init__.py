"""Benchmarks of the queue server: `python -m bench.overhead`, `bench.saturation`, …

Each script starts the servers it measures as processes of their own (`bench.servers`), prints
its tables and the ratio to a baseline measured in the same run (`bench.harness`), and has
`--smoke` (a few requests, a few seconds) for `tests/test_bench_smoke.py`. Results and the
machine they ran on are in `docs/benchmarks.md`.
"""
