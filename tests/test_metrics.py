"""oddsflow.metrics: the garbage collector's pauses are timed into a histogram per generation."""

from __future__ import annotations

import gc

from oddsflow import metrics


def _count(generation: str) -> float:
    for metric in metrics.GC_PAUSE_SECONDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels["generation"] == generation:
                return sample.value
    return 0.0


def test_every_collection_is_timed_once_per_generation() -> None:
    metrics.watch_gc()
    metrics.watch_gc()  # installed once: a second call does not double-count
    full, young = _count("2"), _count("0")
    gc.collect()
    gc.collect(0)
    assert _count("2") == full + 1
    assert _count("0") == young + 1
    assert sum(1 for cb in gc.callbacks if getattr(cb, "_oddsflow", False)) == 1
