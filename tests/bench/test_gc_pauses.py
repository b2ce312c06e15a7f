"""bench.scenarios.worker_metrics.gc_pauses: collections and pauses between two scrapes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from oddsflow.bench.scenarios import worker_metrics as wm


def _scrape(pauses_s: dict[str, list[float]]) -> wm.Sample:
    reg = CollectorRegistry()
    h = Histogram(
        "oddsflow_gc_pause_seconds",
        "pauses",
        ["generation"],
        buckets=(0.001, 0.01, 0.05, 0.1, 1),
        registry=reg,
    )
    for g in "012":
        h.labels(g)
        for p in pauses_s.get(g, []):
            h.labels(g).observe(p)
    return wm.parse(generate_latest(reg).decode())


def test_counts_and_pauses_between_scrapes_per_generation() -> None:
    before = _scrape({"0": [0.002], "2": [0.09]})
    after = _scrape({"0": [0.002, 0.003, 0.004], "2": [0.09, 0.12, 0.02]})
    got = wm.gc_pauses(before, after)
    assert got["gen0"] == {"collections": 2, "pause_ms_total": 7.0, "pauses_50ms_or_more": 0}
    assert got["gen1"] == {"collections": 0, "pause_ms_total": 0.0, "pauses_50ms_or_more": 0}
    assert got["gen2"] == {"collections": 2, "pause_ms_total": 140.0, "pauses_50ms_or_more": 1}


def test_a_worker_without_the_metric_or_endpoint_is_said_so() -> None:
    assert "does not export" in wm.gc_pauses({}, {})["why"]
    assert "did not answer" in wm.gc_pauses(None, {})["why"]
