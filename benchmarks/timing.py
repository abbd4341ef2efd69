"""Wall-clock timing shared by the benchmark scripts (run as ``python benchmarks/<script>.py``)."""

from __future__ import annotations

import statistics
import time

import jax


def times_of(fn, repeats: int) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn()`` (results waited for), after one warm-up call."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return times


def median_time(fn, repeats: int) -> float:
    return statistics.median(times_of(fn, repeats))


def best_time(fn, repeats: int) -> float:
    return min(times_of(fn, repeats))
