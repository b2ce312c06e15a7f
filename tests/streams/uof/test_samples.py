"""Messages modeled on Sportradar's SDK sample messages -> the expected canonical records."""

from __future__ import annotations

from decimal import Decimal

import pytest

from oddsflow.streams.uof.adapter import UofAdapter

from .conftest import DATA

SAMPLES = DATA / "samples"
EV = "sr:match:777"


def _records(name: str):
    tr = UofAdapter().handle((SAMPLES / name).read_bytes())
    return tr, [(o.topic_key, o.record) for o in tr.records]


def test_live_odds_change():
    tr, records = _records("odds_change_live.xml")
    assert tr.unsupported == (47, 49, 188)
    prices = {r["market_id"]: r for t, r in records if t == "price_updates"}
    assert set(prices) == {
        f"{EV}/match_result/FT",
        f"{EV}/total_goals/FT/3.5",
        f"{EV}/asian_handicap/FT/-1",
    }
    assert prices[f"{EV}/match_result/FT"]["selections"] == [
        {"selection": "home", "odds": Decimal("1.2500")},
        {"selection": "draw", "odds": Decimal("5.2000")},
        {"selection": "away", "odds": Decimal("11.0000")},
    ]
    statuses = {
        r["market_id"]: (r["status"], r["in_play"]) for t, r in records if t == "market_status"
    }
    assert statuses == {
        f"{EV}/match_result/FT": ("open", True),
        f"{EV}/total_goals/FT/3.5": ("suspended", True),  # under is active="0"
        f"{EV}/asian_handicap/FT/-1": ("suspended", True),  # market status -1
    }
    scores = [(r["period"], r["home"], r["away"], r["minute"]) for t, r in records if t == "scores"]
    assert scores == [("FT", 2, 1, 63), ("1H", 1, 1, 63)]


def test_confirmed_settlement_with_void_factors_and_unsupported_markets():
    tr, records = _records("bet_settlement_mixed.xml")
    assert tr.unsupported == (193, 535)
    by_market = {r["market_id"]: r for _, r in records}
    assert {r["certainty"] for r in by_market.values()} == {2}
    assert by_market[f"{EV}/total_goals/FT/3.5"]["outcomes"] == [
        {"selection": "under", "result": 1, "void_factor": None, "dead_heat_factor": None},
        {"selection": "over", "result": 0, "void_factor": None, "dead_heat_factor": None},
    ]
    ah = by_market[f"{EV}/asian_handicap/FT/-0.75"]
    assert [(o["selection"], o["result"], o["void_factor"]) for o in ah["outcomes"]] == [
        ("home", 1, Decimal("0.5")),
        ("away", 0, Decimal("0.5")),
    ]
    assert ah["provider_market"] == "16|hcp=-0.75" and ah["producer"] == 3
    cs = by_market[f"{EV}/correct_score/FT"]
    # "other" (324) has no engine selection: nobody can hold a leg on it
    assert [(o["selection"], o["result"]) for o in cs["outcomes"]] == [("2-1", 1), ("1-1", 0)]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "bet_cancel_window.xml",
            [("cancel", f"{EV}/total_goals/1H/1.5", 1764590520000, 1764590560000, 12)],
        ),
        ("rollback_bet_cancel_all.xml", [("rollback", None, None, None, None)]),
    ],
)
def test_cancels(name, expected):
    _, records = _records(name)
    assert [
        (r["kind"], r["market_id"], r["start_time"], r["end_time"], r["void_reason"])
        for t, r in records
        if t == "provider_cancels"
    ] == expected


def test_rollback_of_a_settlement():
    tr, records = _records("rollback_bet_settlement.xml")
    assert tr.unsupported == (312,)
    assert [(t, r["kind"], r["market_id"], r["outcomes"]) for t, r in records] == [
        ("provider_settlements", "rollback", f"{EV}/total_goals/FT/3.5", [])
    ]
