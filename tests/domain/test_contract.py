from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from oddsflow.domain.contract import price_json, read_results, settle_lines
from oddsflow.domain.errors import OddsError

RESULTS = [
    '{"event_id": "e1", "period": "FT", "home": 1, "away": 1}',
    '{"event_id": "e1", "period": "1H", "home": 0, "away": 1}',
    "",
    '{"event_id": "e2", "status": "abandoned"}',
    '{"event_id": "e3", "period": "FT", "home": 3, "away": 0}',
]


def bet(bet_id: Any, stake: Any, *legs: dict[str, Any]) -> str:
    return json.dumps({"bet_id": bet_id, "stake": stake, "legs": list(legs)})


def leg(
    event: str = "e1",
    market: str = "match_result",
    selection: str = "draw",
    odds: Any = "3.00",
    period: str = "FT",
    line: Any = None,
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "event_id": event,
        "market": market,
        "period": period,
        "selection": selection,
        "odds": odds,
    }
    if line is not None:
        d["line"] = line
    return d


def run(lines: list[str], results: list[str] = RESULTS) -> list[dict[str, Any]]:
    return [json.loads(out) for out in settle_lines(lines, results)]


def test_issue_example_exact_text() -> None:
    line = bet(
        "b1", "10.00", leg(market="asian_handicap", line="-0.25", selection="home", odds="1.90")
    )
    assert list(settle_lines([line], RESULTS)) == [
        '{"bet_id": "b1", "outcome": "half_lose", "return": "5.00"}'
    ]


def test_outputs_in_input_order_with_errors_in_place() -> None:
    lines = [
        bet("b1", "10.00", leg()),  # draw 1-1 @ 3
        "{not json",
        "",
        "   ",
        bet("b2", "10.00", leg(market="corners")),
        bet("b3", "10.00", leg(market="total_goals", line="2.3", selection="over")),
        bet("b4", "0", leg()),
        bet("b5", "-1.00", leg()),
        bet("b6", "10.00", leg(odds="1.00")),
        bet("b7", "10.00", leg(odds="abc")),
        bet("b8", "10.00", leg(event="e9")),
        bet("b9", "10.00", leg(event="e2", selection="home")),  # abandoned: void
        bet("b10", "10.00", leg(period="1H", selection="away", odds="4.5")),
        bet("b11", "10.00", leg(), leg(event="e2"), leg(event="e3", selection="home", odds="1.5")),
        bet("b12", "10.00", leg(), leg(event="e3", selection="away")),
        bet("b13", "10.005", leg()),
        bet(None, "10.00", leg()),
        bet("b14", "10.00"),
        json.dumps(["a list"]),
        bet("b15", 10, leg()),
        '{"bet_id": "b16", "stake": 10.50, "legs": [{"event_id": "e1", "market": "match_result",'
        ' "period": "FT", "selection": "draw", "odds": 3.01}]}',
        bet("b17", True, leg()),
        '{"bet_id": "b18", "stake": NaN, "legs": []}',
        bet("b19", "10.00", leg(market="correct_score", selection="1-1", odds="6.5")),
    ]
    out = run(lines)
    assert [o["bet_id"] for o in out] == [
        "b1",
        None,
        "b2",
        "b3",
        "b4",
        "b5",
        "b6",
        "b7",
        "b8",
        "b9",
        "b10",
        "b11",
        "b12",
        "b13",
        None,
        "b14",
        None,
        "b15",
        "b16",
        "b17",
        None,
        "b19",
    ]
    by_id = {o["bet_id"]: o for o in out if o["bet_id"]}
    assert by_id["b1"] == {"bet_id": "b1", "outcome": "win", "return": "30.00"}
    assert "bad JSON" in out[1]["error"]
    assert "unknown market" in by_id["b2"]["error"]
    assert "multiple of 0.25" in by_id["b3"]["error"]
    assert "positive" in by_id["b4"]["error"] and "positive" in by_id["b5"]["error"]
    assert "> 1" in by_id["b6"]["error"]
    assert "odds" in by_id["b7"]["error"]
    assert by_id["b8"]["error"] == "no result for event e9"
    assert by_id["b9"] == {"bet_id": "b9", "outcome": "void", "return": "10.00"}
    assert by_id["b10"] == {"bet_id": "b10", "outcome": "win", "return": "45.00"}
    assert by_id["b11"] == {"bet_id": "b11", "outcome": "win", "return": "45.00"}
    assert by_id["b12"] == {"bet_id": "b12", "outcome": "lose", "return": "0.00"}
    assert "2 decimals" in by_id["b13"]["error"]
    assert "bet_id" in out[14]["error"]
    assert "legs" in by_id["b14"]["error"]
    assert "object" in out[16]["error"]
    assert by_id["b15"]["return"] == "30.00"  # a bare int stake is 10 units, not 10 minor
    assert by_id["b16"]["return"] == "31.60"  # 10.50 * 3.01 = 31.605 -> floor
    assert "stake" in by_id["b17"]["error"]
    assert "bad JSON" in out[20]["error"]
    assert by_id["b19"] == {"bet_id": "b19", "outcome": "win", "return": "65.00"}


def test_all_void_accumulator_is_void() -> None:
    out = run([bet("b1", "2.00", leg(event="e2"), leg(event="e2", selection="home"))])
    assert out == [{"bet_id": "b1", "outcome": "void", "return": "2.00"}]


def test_bad_result_lines_are_reported_not_printed() -> None:
    errors: list[dict[str, Any]] = []
    results = [
        '{"event_id": "e1", "period": "FT", "home": 1, "away": 0}',
        "garbage",
        '{"event_id": "e2", "period": "FT", "home": -1, "away": 0}',
    ]
    outs = settle_lines([bet("b1", "1.00", leg(event="e2"))], results, errors)
    assert [e["line"] for e in errors] == [2, 3]  # filled before any bet is read
    assert json.loads(next(iter(outs))) == {"bet_id": "b1", "error": "no result for event e2"}
    assert read_results(["garbage"]) == {}  # without a list, bad lines are just skipped


def test_price_json_shape() -> None:
    out = price_json("shin", "0.05", ["2.10", "3.40", "3.60"])
    assert out["method"] == "shin" and out["margin"] == "0.05"
    assert set(out) == {
        "method",
        "margin",
        "provider_overround",
        "fair_probabilities",
        "odds",
        "overround",
    }
    assert out["odds"] == ["2.09", "3.39", "3.59"]
    probs = [Decimal(p) for p in out["fair_probabilities"]]
    assert abs(sum(probs) - 1) < Decimal("1e-11")
    assert probs == sorted(probs, reverse=True)
    assert Decimal(out["overround"]) >= Decimal("0.05")
    assert Decimal(out["provider_overround"]) == Decimal("0.048085901027")
    assert json.loads(json.dumps(out)) == out  # plain JSON types only


def test_price_json_fractional_and_errors() -> None:
    assert price_json("proportional", "0", ["evens", "evens"])["odds"] == ["2.00", "2.00"]
    with pytest.raises(OddsError, match="method"):
        price_json("magic", "0.05", ["2", "2"])
    with pytest.raises(OddsError, match="margin"):
        price_json("shin", "five", ["2", "2"])
    with pytest.raises(OddsError, match="margin"):
        price_json("shin", "Infinity", ["2", "2"])
