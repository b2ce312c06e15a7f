"""Statistics helpers for the benchmark: percentiles, medians with spread, ratios.

Pure functions, no I/O, so they are unit-tested on their own (tests/bench/test_stats.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks
    (numpy's default "linear" method). None for an empty sample."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    frac = pos - lo
    return float(xs[lo] + (xs[hi] - xs[lo]) * frac)


def latency_summary(values_ms: Sequence[float]) -> dict[str, float | int | None]:
    """p50/p95/p99/max of one latency sample (milliseconds) and its size."""
    return {
        "n": len(values_ms),
        "p50_ms": _round(percentile(values_ms, 50)),
        "p95_ms": _round(percentile(values_ms, 95)),
        "p99_ms": _round(percentile(values_ms, 99)),
        "max_ms": _round(max(values_ms)) if values_ms else None,
    }


def spread(values: Iterable[float | None]) -> dict[str, Any]:
    """Median of the repetitions with min, max and the inter-quartile range; Nones dropped."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"median": None, "min": None, "max": None, "iqr": None, "n": 0, "values": []}
    return {
        "median": _round(percentile(xs, 50)),
        "min": _round(min(xs)),
        "max": _round(max(xs)),
        "iqr": _round((percentile(xs, 75) or 0) - (percentile(xs, 25) or 0)),
        "n": len(xs),
        "values": [_round(x) for x in xs],
    }


def ratio(engine: float | None, baseline: float | None) -> float | None:
    """engine / baseline, None when either is missing or the baseline is zero."""
    if engine is None or baseline is None or baseline == 0:
        return None
    return round(engine / baseline, 3)


def rate(count: int, seconds: float | None) -> float | None:
    """count / seconds, None for a non-positive or missing duration."""
    if seconds is None or seconds <= 0:
        return None
    return count / seconds


def median_of(reps: Sequence[dict[str, Any]], key: str) -> float | None:
    median: float | None = spread(r.get(key) for r in reps)["median"]
    return median


def _round(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(float(x), digits)
