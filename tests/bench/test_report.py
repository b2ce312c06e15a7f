"""The bench's report: every engine figure's ratio to each passthrough of the same run (librdkafka
and Faust), and "n/a" for a worker metric the run could not read. Built from a results document
written here (no services, nothing timed)."""

from __future__ import annotations

from typing import Any

import pytest

from oddsflow.bench import report
from oddsflow.bench.scenarios import worker_metrics as wm


def fig(median: float) -> dict[str, Any]:
    return {"median": median, "min": median, "max": median, "n": 1}


def passthrough(closed: float, p50_100: float, p99_1000: float) -> dict[str, Any]:
    return {
        "bets_closed_loop": {"throughput_per_s": fig(closed)},
        "bets_open_100": {"p50_ms": fig(p50_100), "p99_ms": fig(2 * p50_100)},
        "bets_open_1000": {"p50_ms": fig(p99_1000 / 2), "p99_ms": fig(p99_1000)},
        "prices_closed_loop": {"throughput_per_s": fig(closed)},
        "prices_open_5000": {"p99_ms": fig(p99_1000)},
    }


def bets(closed: float, p50_100: float, p99_1000: float, paths: dict[str, Any]) -> dict[str, Any]:
    return {
        "open_100": {"throughput_per_s": fig(100.0), "p50_ms": fig(p50_100)},
        "open_1000": {"throughput_per_s": fig(1000.0), "p99_ms": fig(p99_1000)},
        "closed_loop": {"throughput_per_s": fig(closed)},
        "decision_paths": paths,
        "market_view": {"lag_ms_p50": "n/a", "lag_ms_max": 12.5, "lag_offsets_max": "n/a"},
    }


def doc(paths: dict[str, Any], faust: bool = True) -> dict[str, Any]:
    baseline = {
        "passthrough_transactional": passthrough(50_000.0, 20.0, 100.0),
        "passthrough_plain": passthrough(100_000.0, 5.0, 10.0),
    }
    if faust:
        baseline["passthrough_faust"] = passthrough(4_000.0, 110.0, 400.0)
    scenarios = {
        "baseline": baseline,
        "bets": {
            "exactly_once": bets(1_000.0, 220.0, 800.0, paths),
            "at_least_once": bets(2_000.0, 50.0, 100.0, paths),
        },
    }
    d: dict[str, Any] = {
        "started_at": "2026-12-01T00:00:00+00:00",
        "quick": True,
        "wall_s": 1.0,
        "plan": {"reps": 1},
        "machine": {},
        "scenarios": scenarios,
        "errors": {},
    }
    d["ratios"] = report.ratios(scenarios)
    d["targets"] = report.targets(scenarios, d["ratios"])
    d["table"] = report.table_rows(d)
    return d


def row(d: dict[str, Any], metric: str) -> dict[str, Any]:
    (r,) = [r for r in d["table"] if r["metric"] == metric]
    return r


FAST = {"fast": 900, "authoritative": 100, "fast_share_pct": 90.0}
NOT_EXPORTED = {"fast": "n/a", "authoritative": "n/a", "fast_share_pct": "n/a"}


@pytest.mark.parametrize(
    ("metric", "ratio", "faust_ratio"),
    [
        ("exactly_once: max decisions/s (closed loop)", 0.02, 0.25),
        ("exactly_once: decision p50 @100/s", 11.0, 2.0),
        ("exactly_once: decision p99 @1,000/s", 8.0, 2.0),
        # the Faust passthrough runs exactly_once only: at_least_once has no Faust ratio
        ("at_least_once: max decisions/s (closed loop)", 0.02, None),
        ("at_least_once: decision p99 @1,000/s", 10.0, None),
    ],
)
def test_engine_figures_get_a_ratio_to_each_passthrough_of_the_run(metric, ratio, faust_ratio):
    r = row(doc(FAST), metric)
    assert r["ratio"] == ratio
    assert r["faust_ratio"] == faust_ratio


def test_the_faust_ratios_are_listed_under_their_own_baseline_name():
    names = {(r["metric"], r["baseline_name"]): r["ratio"] for r in doc(FAST)["ratios"]}
    assert names[("exactly_once: decision p99 @1,000/s", "passthrough_faust")] == 2.0
    assert names[("exactly_once: decision p99 @1,000/s", "passthrough_transactional")] == 8.0
    assert ("at_least_once: decision p99 @1,000/s", "passthrough_faust") not in names


def test_the_faust_passthrough_figures_are_reported_beside_the_librdkafka_ones():
    d = doc(FAST)
    assert row(d, "passthrough faust: bets copied (closed loop)")["median"] == 4_000.0
    assert row(d, "passthrough faust: bets p50 @100/s")["median"] == 110.0
    assert row(d, "passthrough transactional: bets p99 @1,000/s")["median"] == 100.0
    md = report.markdown(d, "x.json")
    assert "| faust passthrough | x faust |" in md
    assert (
        "| bets | exactly_once: decision p99 @1,000/s | 800 |  | ms | 100 | 8.000 | 400 | 2.000 |"
        in md
    )


def test_fast_path_share_is_a_figure_when_exported_and_na_when_not():
    share = "exactly_once: share of bets decided on the fast path"
    assert row(doc(FAST), share)["median"] == 90.0
    d = doc(NOT_EXPORTED)
    assert row(d, share)["median"] == "n/a"
    assert row(d, share)["ratio"] is None
    assert f"| bets | {share} | n/a |" in report.markdown(d, "x.json")
    assert any(share in line and "n/a" in line for line in report.text_table(d).splitlines())


def test_view_lag_reports_what_was_read_and_na_for_the_rest():
    d = doc(FAST)
    assert row(d, "exactly_once: market view lag max (closed loop)")["median"] == 12.5
    assert row(d, "exactly_once: market view lag p50 (closed loop)")["median"] == "n/a"


def test_a_run_without_the_faust_passthrough_renders_blank_faust_columns():
    d = doc(FAST, faust=False)
    r = row(d, "exactly_once: decision p99 @1,000/s")
    assert (r["ratio"], r["faust_baseline"], r["faust_ratio"]) == (8.0, None, None)
    assert "| 800 |  | ms | 100 | 8.000 | — |  |" in report.markdown(d, "x.json")


METRICS = """\
# TYPE oddsflow_bet_decision_paths_total counter
oddsflow_bet_decision_paths_total{path="fast"} 30.0
oddsflow_bet_decision_paths_total{path="authoritative"} 10.0
# TYPE oddsflow_market_view_lag_seconds gauge
oddsflow_market_view_lag_seconds 0.25
# TYPE oddsflow_market_view_lag_offsets gauge
oddsflow_market_view_lag_offsets{partition="0"} 3.0
oddsflow_market_view_lag_offsets{partition="1"} 7.0
# TYPE oddsflow_market_view_updates_total counter
oddsflow_market_view_updates_total{result="applied"} 40.0
"""
BEFORE = """\
# TYPE oddsflow_bet_decision_paths_total counter
oddsflow_bet_decision_paths_total{path="fast"} 10.0
"""
PATHS = wm.DECISION_PATHS
OLD_WORKER = """\
# TYPE oddsflow_events_in_total counter
oddsflow_events_in_total{agent="wallet",topic="bet_requests"} 5.0
"""


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (None, METRICS, {"fast": 30, "authoritative": 10, "fast_share_pct": 75.0}),
        # counted from the first scrape on (the warm-up's bets excluded)
        (BEFORE, METRICS, {"fast": 20, "authoritative": 10, "fast_share_pct": 66.67}),
        # the counter is not exported / the endpoint did not answer / no bet decided in between
        (None, OLD_WORKER, {**NOT_EXPORTED, "why": f"the worker does not export {PATHS}"}),
        (None, None, {**NOT_EXPORTED, "why": "the metrics endpoint did not answer"}),
        (METRICS, METRICS, {**NOT_EXPORTED, "why": "no bet decided between the scrapes"}),
    ],
)
def test_decision_paths_from_the_workers_counters(before, after, expected):
    parse = lambda text: None if text is None else wm.parse(text)  # noqa: E731
    assert wm.decision_paths(parse(before), parse(after)) == expected


def test_view_lag_from_the_workers_gauges():
    lag = wm.view_lag([wm.parse(METRICS), wm.parse(METRICS.replace("0.25", "0.75"))])
    assert lag == {
        "scrapes": 2,
        "samples": 2,
        "lag_ms_p50": 500.0,
        "lag_ms_max": 750.0,
        "lag_offsets_max": 7,
    }
    # a view that has applied nothing yet: its gauges still read 0, which is no lag figure
    idle = wm.parse(METRICS.replace('{result="applied"} 40.0', '{result="applied"} 0.0'))
    assert wm.view_lag([idle])["lag_ms_max"] == "n/a"
    assert wm.view_lag([wm.parse(OLD_WORKER)]) == {
        "scrapes": 1,
        "samples": 0,
        "lag_ms_p50": "n/a",
        "lag_ms_max": "n/a",
        "lag_offsets_max": "n/a",
    }


def test_the_settlement_burst_reports_when_its_settlements_came_for_one_and_two_workers():
    d = doc(FAST)
    d["scenarios"]["settlement_burst"] = {
        "n": 100_000,
        "burst_s": fig(5.5),
        "settlements_per_s": fig(18_000.0),
        "first_settlement_ms": fig(480.0),
        "settlement_p50_ms": fig(2_900.0),
        "two_workers": {
            "burst_s": fig(5.0),
            "first_settlement_ms": fig(520.0),
            "settlement_p50_ms": fig(2_600.0),
        },
    }
    d["table"] = report.table_rows(d)
    assert row(d, "first settlement after the result")["median"] == 480.0
    assert row(d, "settlement p50 after the result (bet by bet)")["median"] == 2_900.0
    assert row(d, "two workers: first settlement after the result")["median"] == 520.0
    assert row(d, "two workers: settlement p50 after the result (bet by bet)")["median"] == 2_600.0


def test_two_workers_closed_loop_gets_its_row_and_the_target_takes_the_better_of_the_two():
    d = doc(FAST)
    d["scenarios"]["bets"]["exactly_once"]["closed_loop_two_workers"] = {
        "throughput_per_s": fig(2_000.0)
    }
    d["table"] = report.table_rows(d)
    r = row(d, "exactly_once: max decisions/s (closed loop), two workers")
    assert (r["median"], r["ratio"], r["faust_ratio"]) == (2_000.0, 0.04, 0.5)
    [target] = [
        t
        for t in report.targets(d["scenarios"], d["ratios"])
        if t["target"] == "bet decisions/s sustained, exactly_once"
    ]
    assert target["value"] == 2_000.0
    assert "one worker: 1,000 dec/s, two workers: 2,000 dec/s" in target["note"]


def prices_variant(closed: float, p99_5000: float) -> dict[str, Any]:
    return {
        "closed_loop": {"throughput_per_s": fig(closed)},
        "open_5000": {"p99_ms": fig(p99_5000)},
    }


def test_the_batched_feed_gets_its_rows_and_the_price_targets_take_it_with_one_per_message_beside():
    d = doc(FAST)
    one = prices_variant(2_000.0, 1_500.0)
    d["scenarios"]["prices"] = {
        "exactly_once": one,
        "conflation": {"guarantee": "exactly_once", "off": one, "on": one},
        "batched": {
            "guarantee": "exactly_once",
            "off": prices_variant(4_000.0, 900.0),
            "on": prices_variant(18_000.0, 600.0),
        },
    }
    d["table"] = report.table_rows(d)
    r = row(d, "exactly_once, batched feed, conflation on: updates/s (closed loop)")
    assert (r["median"], r["ratio"], r["faust_ratio"]) == (18_000.0, 0.36, 4.5)
    assert (
        row(d, "exactly_once, batched feed, conflation off: updates/s (closed loop)")["median"]
        == 4_000.0
    )
    targets = {t["target"]: t for t in report.targets(d["scenarios"], d["ratios"])}
    upd = targets["price updates/s priced (exactly_once)"]
    assert upd["value"] == 18_000.0 and upd["status"] == "missed"
    assert "one update per message: 2,000 upd/s" in upd["note"]
    lag = targets["publish lag p99 @5,000/s (exactly_once)"]
    assert lag["value"] == 600.0 and "one update per message: 1,500 ms" in lag["note"]
    # Without the batched feed measured, the targets take one update per message.
    del d["scenarios"]["prices"]["batched"]
    targets = {t["target"]: t for t in report.targets(d["scenarios"], d["ratios"])}
    assert targets["price updates/s priced (exactly_once)"]["value"] == 2_000.0


def test_api_framed_requests_get_their_rows_and_count_for_the_decisions_target():
    d = doc(FAST)
    d["scenarios"]["bets"]["exactly_once"]["closed_loop_two_workers"] = {
        "throughput_per_s": fig(2_000.0)
    }
    d["scenarios"]["bets"]["exactly_once"]["batched"] = {
        "open_100": {"p50_ms": fig(40.0), "p99_ms": fig(90.0)},
        "closed_loop": {"throughput_per_s": fig(3_000.0)},
        "closed_loop_two_workers": {"throughput_per_s": fig(4_000.0)},
    }
    d["table"] = report.table_rows(d)
    lb = "exactly_once, requests framed as the API sends them"
    r = row(d, f"{lb}: max decisions/s (closed loop), two workers")
    assert (r["median"], r["ratio"], r["faust_ratio"]) == (4_000.0, 0.08, 1.0)
    assert row(d, f"{lb}: decision p50 @100/s")["median"] == 40.0
    [target] = [
        t
        for t in report.targets(d["scenarios"], d["ratios"])
        if t["target"] == "bet decisions/s sustained, exactly_once"
    ]
    assert target["value"] == 4_000.0
    assert (
        "framed as the API sends them, one worker: 3,000 dec/s, two workers: 4,000"
        in target["note"]
    )
