"""The bench's commit-path sweep and conflation figures, from results documents written here, and
the prices scenario's bookkeeping of which update each publication covers (no services, nothing
timed)."""

from __future__ import annotations

from typing import Any

import pytest

from oddsflow.bench import profile as prof
from oddsflow.bench import rows
from oddsflow.bench.scenarios.prices import follow_updates


def fig(median: float) -> dict[str, Any]:
    return {"median": median, "min": median, "max": median, "n": 2}


def lat(p50: float, p99: float) -> dict[str, Any]:
    return {"p50_ms": fig(p50), "p99_ms": fig(p99)}


def commit_path_doc() -> dict[str, Any]:
    return {
        "commit_path": {
            "rate_per_s": 100,
            "commit_0.02s": {
                "commit_interval_s": 0.02,
                "passthrough_transactional": lat(20.0, 50.0),
                "backoff_10ms": {"passthrough_faust": lat(40.0, 100.0), "worker": lat(60.0, 200.0)},
            },
        }
    }


def by_metric(sc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["metric"]: r for r in rows.rows(sc)}


@pytest.mark.parametrize(
    ("metric", "median", "ratio", "faust_ratio"),
    [
        ("commit 0.02 s, retry backoff 10ms: decision p50 @100/s", 60.0, 3.0, 1.5),
        ("commit 0.02 s, retry backoff 10ms: decision p99 @100/s", 200.0, 4.0, 2.0),
    ],
)
def test_each_sweep_point_is_set_beside_both_passthroughs_at_its_commit_interval(
    metric, median, ratio, faust_ratio
):
    r = by_metric(commit_path_doc())[metric]
    assert (r["median"], r["ratio"], r["faust_ratio"]) == (median, ratio, faust_ratio)
    assert r["baseline_name"] == "passthrough_transactional"


def prices_group(closed: float, p99: float, published: float) -> dict[str, Any]:
    return {
        "closed_loop": {"throughput_per_s": fig(closed)},
        "open_5000": {
            "p99_ms": fig(p99),
            "update_lag_p99_ms": fig(p99 + 1),
            "published": fig(published),
        },
    }


def test_conflation_on_and_off_are_rows_and_the_guarantee_rows_stay_as_they_were():
    off, on = prices_group(1_000.0, 900.0, 10_000.0), prices_group(3_000.0, 90.0, 2_000.0)
    sc = {
        "baseline": {"passthrough_transactional": {"prices_open_5000": {"p99_ms": fig(45.0)}}},
        "prices": {
            "exactly_once": off,
            "conflation": {"guarantee": "exactly_once", "off": off, "on": on},
        },
    }
    m = by_metric(sc)
    assert m["exactly_once: updates/s (closed loop)"]["median"] == 1_000.0
    assert m["exactly_once, conflation on: updates/s (closed loop)"]["median"] == 3_000.0
    assert m["exactly_once, conflation on: publish lag p99 @5,000/s"]["ratio"] == 2.0
    assert m["exactly_once, conflation off: publish lag p99 @5,000/s"]["ratio"] == 20.0
    assert m["exactly_once, conflation on: update lag p99 @5,000/s"]["median"] == 91.0
    assert m["exactly_once, conflation on: published @5,000/s"]["median"] == 2_000.0
    assert not any(r["metric"].startswith("conflation") for r in m.values())


@pytest.mark.parametrize(
    ("updates", "pubs", "lags", "in_order", "latest"),
    [
        pytest.param(
            [("a", 10), ("a", 20), ("b", 15)],
            [("a", 10, 30.0), ("b", 15, 31.0), ("a", 20, 40.0)],
            [20.0, 20.0, 16.0],
            True,
            True,
            id="one publication per update",
        ),
        pytest.param(
            [("a", 10), ("a", 20), ("a", 30)],
            [("a", 30, 50.0)],
            [40.0, 30.0, 20.0],
            True,
            True,
            id="conflated: the newest covers the ones it superseded",
        ),
        pytest.param(
            [("a", 10), ("a", 20), ("a", 30)],
            [("a", 20, 50.0)],
            [40.0, 30.0],
            True,
            False,
            id="the latest was dropped",
        ),
        pytest.param(
            [("a", 10), ("a", 20)],
            [("a", 20, 50.0), ("a", 10, 51.0)],
            [],
            False,
            True,
            id="published out of order",
        ),
        pytest.param([("a", 10)], [], [], True, False, id="nothing published"),
    ],
)
def test_which_publication_covers_each_update(updates, pubs, lags, in_order, latest):
    assert follow_updates(updates, pubs) == (lags, in_order, latest)


def test_profile_self_time_by_bucket_and_thread():
    raw = "\n".join(
        [
            "thread (0x1);run (asyncio/events.py:80);send (aiokafka/producer/sender.py:10) 30",
            "thread (0x1);run (asyncio/events.py:80);take (faust/streams.py:5) 20",
            "thread (0x1);emit (oddsflow/processors/transport.py:364) 10",
            "thread (0x2);read (aiokafka/record/default_records.py:3) 40",
            "thread (0x2);ServiceThread._start_thread (mode/threads.py:9) 25",
        ]
    )
    s = prof.summarize_by_thread(raw)
    assert s["samples"] == 125
    assert {b["name"]: b["pct"] for b in s["by_bucket"]} == {
        "aiokafka record batches (encode/decode, crc)": 32.0,
        "aiokafka producer (accumulator, sender, txn)": 24.0,
        "faust streams (take, events, acks)": 16.0,
        "oddsflow transport": 8.0,
        # the thread's loop running in uvloop's C code, not mode's own Python
        "event loop run (uvloop C: callbacks, polling, I/O)": 20.0,
    }
    assert s["threads"]["thread (0x1)"]["samples_pct"] == 48.0
    assert s["threads"]["thread (0x2)"]["samples_pct"] == 52.0
