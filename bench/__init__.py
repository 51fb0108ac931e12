"""Benchmark of the occupancy pipeline: Firestore cost, correctness under load, throughput.

`python -m bench` (or `make bench`); see bench/run.py for the steps and the
docs/benchmarks.md, for what each number means.
"""
