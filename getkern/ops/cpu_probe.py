"""One-time speed probes for CPU dispatch: where the faster of two implementations depends on the CPU
(its vector unit, which code its BLAS picks for it), "auto" times both once per process and keeps the
answer (getkern.ops.cpu_linear, getkern.ops.cpu_attention)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def clearly_faster(
    current: Callable[[], object], candidate: Callable[[], object], min_speedup: float, rounds: int = 5
) -> bool:
    """Whether ``candidate`` runs at least ``min_speedup`` times faster than ``current``: the medians of
    ``rounds`` interleaved timings of each, after one warm-up call of each. A margin well away from 1
    keeps a noisy machine from flipping the decision where the two are about equal."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds + 1):
        for fn, record in zip((current, candidate), times):
            t0 = time.perf_counter()
            fn()
            record.append(time.perf_counter() - t0)
    current_s, candidate_s = (statistics.median(t[1:]) for t in times)
    return current_s >= min_speedup * candidate_s
