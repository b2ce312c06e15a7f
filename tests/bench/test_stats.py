"""Unit tests of the benchmark's statistics, encoding and reporting helpers (no services)."""

from __future__ import annotations

import io
from decimal import Decimal

import fastavro
import pytest

from oddsflow.bench import harness, profile, report
from oddsflow.bench.stats import latency_summary, percentile, rate, ratio, spread
from oddsflow.codec import Codec


def test_percentile_interpolates_like_numpy_linear():
    xs = [1, 2, 3, 4]
    assert percentile(xs, 0) == 1
    assert percentile(xs, 100) == 4
    assert percentile(xs, 50) == 2.5
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert percentile([7], 99) == 7
    assert percentile([], 50) is None
    assert percentile([3, 1, 2], 50) == 2  # unsorted input


def test_percentile_rejects_out_of_range():
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_latency_summary():
    s = latency_summary([float(x) for x in range(1, 101)])
    assert s["n"] == 100 and s["p50_ms"] == 50.5 and s["max_ms"] == 100
    assert latency_summary([]) == {
        "n": 0,
        "p50_ms": None,
        "p95_ms": None,
        "p99_ms": None,
        "max_ms": None,
    }


def test_spread_median_min_max_iqr():
    s = spread([3.0, 1.0, 2.0, None])
    assert s["median"] == 2 and s["min"] == 1 and s["max"] == 3 and s["n"] == 3
    assert s["iqr"] == 1.0
    assert spread([])["median"] is None


def test_ratio_and_rate():
    assert ratio(50, 100) == 0.5
    assert ratio(None, 1) is None and ratio(1, 0) is None and ratio(1, None) is None
    assert rate(10, 2) == 5
    assert rate(10, 0) is None and rate(10, None) is None


@pytest.mark.parametrize("n", [0, 1, -1, 63, 64, 1_767_225_600_000, -(2**40)])
def test_zigzag_varint_matches_fastavro(n):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, "long", n)
    assert harness.zigzag_varint(n) == buf.getvalue()


def test_stamped_record_decodes_with_the_send_time():
    codec = Codec("bet_request")
    rec = {
        "bet_id": "b1",
        "account_id": "a1",
        "stake_minor": 100,
        "currency": "GBP",
        "price_policy": "any",
        "legs": [
            {
                "event_id": "e1",
                "market_type": "match_result",
                "period": "FT",
                "line": None,
                "selection": "home",
                "odds": Decimal("2.00"),
            }
        ],
        "placed_at": 0,
        "channel": "bench",
    }
    st = harness.stamped(codec, "a1", rec, "placed_at")
    out = codec.decode(st.value(1_767_225_600_123))
    assert (
        out["placed_at"] == 1_767_225_600_123
        and out["bet_id"] == "b1"
        and out["channel"] == "bench"
    )
    assert st.key == b"a1"


def test_collapsed_stack_summary():
    text = (
        'process 1:"python";main (/x/oddsflow/cli.py:10);handle (/x/processors/app.py:5);'
        "encode (/x/fastavro/_write.py:3) 3\n"
        'process 1:"python";main (/x/oddsflow/cli.py:10);handle (/x/processors/app.py:5) 1\n'
    )
    s = profile.summarize_collapsed(text)
    assert s["samples"] == 4
    assert s["self"][0] == {"name": "encode (fastavro/_write.py)", "pct": 75.0}
    incl = {x["name"]: x["pct"] for x in s["inclusive"]}
    assert incl["handle (processors/app.py)"] == 100.0
    assert {x["name"]: x["pct"] for x in s["by_package"]}["fastavro (codec)"] == 75.0


def test_targets_and_ratios_from_results():
    sc = {
        "baseline": {
            "passthrough_transactional": {
                "bets_closed_loop": {"throughput_per_s": {"median": 1000.0}},
                "bets_open_1000": {"p99_ms": {"median": 10.0}},
            }
        },
        "bets": {
            "exactly_once": {
                "closed_loop": {"throughput_per_s": {"median": 600.0}},
                "open_1000": {"p99_ms": {"median": 40.0}, "throughput_per_s": {"median": 990.0}},
            }
        },
    }
    rs = {r["metric"]: r["ratio"] for r in report.ratios(sc)}
    assert rs["exactly_once: max decisions/s (closed loop)"] == 0.6
    assert rs["exactly_once: decision p99 @1,000/s"] == 4.0
    ts = {t["target"]: t["status"] for t in report.targets(sc)}
    assert ts["bet decisions/s sustained, exactly_once"] == "missed"
    assert ts["decision p99 @1,000 bets/s offered (exactly_once)"] == "met"
    assert ts["engine / passthrough (bets, exactly_once vs transactional)"] == "met"
