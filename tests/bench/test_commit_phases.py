"""bench.scenarios.worker_metrics.commit_phases, and its rows in the bench table: a commit's
phases between two scrapes of the worker's histograms."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from oddsflow.bench import report
from oddsflow.bench.scenarios import worker_metrics as wm
from tests.bench.test_report import FAST, doc, row


def _scrape(commits_s: list[tuple[float, float, float, float]], waits_s: list[float]) -> wm.Sample:
    reg = CollectorRegistry()
    phases = Histogram(wm.TXN_PHASE, "phases", ["phase"], registry=reg)
    waits = Histogram(wm.EMIT_WAIT, "waits", registry=reg)
    for commit in commits_s:
        for phase, seconds in zip(wm.TXN_PHASES, commit, strict=True):
            phases.labels(phase).observe(seconds)
    for w in waits_s:
        waits.observe(w)
    return wm.parse(generate_latest(reg).decode())


def test_phases_are_averaged_over_the_commits_between_the_scrapes() -> None:
    before = _scrape([(0.5, 0.5, 0.5, 0.5)], [1.0])  # not counted: before the window
    after = _scrape(
        [(0.5, 0.5, 0.5, 0.5), (0.010, 0.004, 0.001, 0.002), (0.020, 0.006, 0.003, 0.004)],
        [1.0, 0.002, 0.004, 0.006],
    )
    assert wm.commit_phases(before, after, 0.5) == {
        "commits": 2,
        "commits_per_s": 4.0,
        "sends_acked_ms_mean": 15.0,
        "offsets_added_ms_mean": 5.0,
        "membership_checked_ms_mean": 2.0,
        "end_txn_ms_mean": 3.0,
        "commit_ms_mean": 25.0,
        "emit_wait_ms_mean": 4.0,
    }


def test_a_worker_without_the_metric_or_endpoint_is_said_so() -> None:
    assert "does not export" in wm.commit_phases({}, {}, 1.0)["why"]
    assert "did not answer" in wm.commit_phases(None, {}, 1.0)["why"]


def test_the_phases_get_their_rows_at_the_lowest_rate_and_in_the_closed_loop() -> None:
    d = doc(FAST)
    g = d["scenarios"]["bets"]["exactly_once"]
    phases = {
        "commits": 40,
        "commits_per_s": 20.0,
        "sends_acked_ms_mean": 3.5,
        "offsets_added_ms_mean": 4.25,
        "membership_checked_ms_mean": 1.5,
        "end_txn_ms_mean": 2.0,
        "commit_ms_mean": 11.25,
        "emit_wait_ms_mean": 0.5,
    }
    g["open_100"]["commit_phases"] = phases
    g.setdefault("closed_loop", {})["commit_phases"] = {**phases, "commit_ms_mean": 35.0}
    d["table"] = report.table_rows(d)
    assert row(d, "exactly_once: commits/s @100/s")["median"] == 20.0
    assert row(d, "exactly_once: commit phase @100/s: EndTxn")["median"] == 2.0
    assert (
        row(d, "exactly_once: commit phase @100/s: AddOffsetsToTxn + TxnOffsetCommit")["median"]
        == 4.25
    )
    assert row(d, "exactly_once: commit, closed loop")["median"] == 35.0
