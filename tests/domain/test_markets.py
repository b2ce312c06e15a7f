from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from oddsflow.domain.errors import DomainError, MarketError, OddsError
from oddsflow.domain.markets import (
    Leg,
    MarketType,
    Period,
    canonical_selection,
    canonical_selections,
    line_text,
    market_id,
    parse_leg,
    parse_score_selection,
    selections,
)

D = Decimal


def test_selections_table() -> None:
    assert selections(MarketType.MATCH_RESULT) == ("home", "draw", "away")
    assert selections(MarketType.DOUBLE_CHANCE) == ("home_draw", "home_away", "draw_away")
    assert selections(MarketType.DRAW_NO_BET) == ("home", "away")
    assert selections(MarketType.TOTAL_GOALS) == ("over", "under")
    assert selections(MarketType.ASIAN_HANDICAP) == ("home", "away")
    assert selections(MarketType.BOTH_TEAMS_TO_SCORE) == ("yes", "no")
    assert selections(MarketType.CORRECT_SCORE) is None
    assert selections("match_result") == ("home", "draw", "away")  # type: ignore[arg-type]


def test_period_values() -> None:
    assert Period("1H") is Period.H1
    assert Period.FT.value == "FT"


@pytest.mark.parametrize(
    ("event", "market", "period", "line", "expected"),
    [
        ("e1", MarketType.ASIAN_HANDICAP, Period.FT, D("-0.25"), "e1/asian_handicap/FT/-0.25"),
        ("e1", MarketType.MATCH_RESULT, Period.FT, None, "e1/match_result/FT"),
        ("e1", MarketType.TOTAL_GOALS, Period.H1, D("2.50"), "e1/total_goals/1H/2.5"),
        ("e1", MarketType.ASIAN_HANDICAP, Period.FT, D("-0.00"), "e1/asian_handicap/FT/0"),
        ("e9", MarketType.TOTAL_GOALS, Period.FT, D("10"), "e9/total_goals/FT/10"),
    ],
)
def test_market_id(
    event: str, market: MarketType, period: Period, line: Decimal | None, expected: str
) -> None:
    assert market_id(event, market, period, line) == expected


def test_line_text() -> None:
    assert line_text(D("0.750")) == "0.75"
    assert line_text(D("0")) == "0"


def test_leg_coerces_and_market_id() -> None:
    leg = Leg("e1", "asian_handicap", "FT", "home", D("1.90"), D("-0.25"))  # type: ignore[arg-type]
    assert leg.market is MarketType.ASIAN_HANDICAP
    assert leg.period is Period.FT
    assert leg.market_id == "e1/asian_handicap/FT/-0.25"
    cs = Leg("e1", MarketType.CORRECT_SCORE, Period.H1, "2-1", D("9"))
    assert cs.market_id == "e1/correct_score/1H"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"event_id": ""}, MarketError, "event_id"),
        ({"market": "corners"}, MarketError, "unknown market"),
        ({"period": "2H"}, MarketError, "unknown period"),
        ({"odds": D("1")}, OddsError, "> 1"),
        ({"odds": "1.9"}, OddsError, "Decimal"),
        ({"selection": "draw"}, MarketError, "unknown selection"),
        ({"line": None}, MarketError, "needs a line"),
        ({"line": D("0.1")}, MarketError, "multiple of 0.25"),
        ({"line": D("NaN")}, MarketError, "finite"),
        ({"line": "0.5"}, MarketError, "finite Decimal"),
        (
            {"market": MarketType.TOTAL_GOALS, "selection": "over", "line": D("-0.5")},
            MarketError,
            ">= 0",
        ),
        ({"market": MarketType.MATCH_RESULT, "line": D("0.5")}, MarketError, "has no line"),
        (
            {"market": MarketType.CORRECT_SCORE, "selection": "2:1", "line": None},
            MarketError,
            "2-1",
        ),
        (
            {"market": MarketType.CORRECT_SCORE, "selection": 21, "line": None},
            MarketError,
            "string",
        ),
    ],
)
def test_leg_validation(kwargs: dict[str, Any], error: type[DomainError], match: str) -> None:
    base: dict[str, Any] = {
        "event_id": "e1",
        "market": MarketType.ASIAN_HANDICAP,
        "period": Period.FT,
        "selection": "home",
        "odds": D("1.90"),
        "line": D("-0.25"),
    }
    with pytest.raises(error, match=match):
        Leg(**{**base, **kwargs})


def test_valid_lines() -> None:
    for text in ("-2.75", "-0.5", "0", "0.25", "1", "3.75"):
        Leg("e1", MarketType.ASIAN_HANDICAP, Period.FT, "away", D("2"), D(text))
    Leg("e1", MarketType.TOTAL_GOALS, Period.FT, "under", D("2"), D("0"))


def test_score_selection() -> None:
    assert parse_score_selection("10-0") == (10, 0)
    with pytest.raises(MarketError):
        parse_score_selection("a-b")


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("1-0", "1-0"), ("01-0", "1-0"), ("001-000", "1-0"), ("10-00", "10-0"), ("0-0", "0-0")],
)
def test_correct_score_selection_has_one_spelling(text: str, canonical: str) -> None:
    assert canonical_selection(MarketType.CORRECT_SCORE, text) == canonical
    leg = Leg("e1", MarketType.CORRECT_SCORE, Period.FT, text, D("7"))
    assert leg.selection == canonical
    assert leg == Leg("e1", MarketType.CORRECT_SCORE, Period.FT, canonical, D("7"))


def test_canonical_selections_reject_duplicates_after_canonicalising() -> None:
    assert canonical_selections("correct_score", ["01-0", "0-0"]) == ("1-0", "0-0")
    assert canonical_selections("match_result", ["home", "away"]) == ("home", "away")
    with pytest.raises(MarketError, match="repeat"):
        canonical_selections(MarketType.CORRECT_SCORE, ["1-0", "01-0"])
    with pytest.raises(MarketError):
        canonical_selection(MarketType.CORRECT_SCORE, 10)  # type: ignore[arg-type]
    with pytest.raises(MarketError):
        canonical_selection(MarketType.CORRECT_SCORE, "1:0")


def test_bound_at_replaces_the_requested_odds() -> None:
    leg = Leg("e1", MarketType.MATCH_RESULT, Period.FT, "home", D("1.50"))
    bound = leg.bound_at(D("2.09"))
    assert bound.odds == D("2.09") and bound.market_id == leg.market_id
    with pytest.raises(OddsError):
        leg.bound_at(D("1"))


def test_parse_leg() -> None:
    leg = parse_leg(
        {
            "event_id": "e1",
            "market": "asian_handicap",
            "line": "-0.25",
            "period": "FT",
            "selection": "home",
            "odds": "1.90",
        }
    )
    assert leg == Leg("e1", MarketType.ASIAN_HANDICAP, Period.FT, "home", D("1.90"), D("-0.25"))
    # exact numbers (from json with parse_float=Decimal) and int are accepted; fractional text too
    leg2 = parse_leg(
        {
            "event_id": "e1",
            "market": "total_goals",
            "line": D("2.5"),
            "period": "1H",
            "selection": "over",
            "odds": D("1.9"),
        }
    )
    assert leg2.line == D("2.5") and leg2.odds == D("1.9")
    leg3 = parse_leg(
        {
            "event_id": "e1",
            "market": "total_goals",
            "line": 3,
            "period": "FT",
            "selection": "over",
            "odds": "7/4",
        }
    )
    assert leg3.line == 3 and leg3.odds == D("2.75")
    assert (
        parse_leg(
            {
                "event_id": "e",
                "market": "match_result",
                "period": "FT",
                "selection": "draw",
                "odds": 3,
            }
        ).odds
        == 3
    )


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        ([], MarketError, "object"),
        ({"drop": "market"}, MarketError, "missing 'market'"),
        ({"odds": 1.9}, OddsError, "decimal string"),
        ({"odds": True}, OddsError, "decimal string"),
        ({"odds": "1.0"}, OddsError, "> 1"),
        ({"odds": D("0.5")}, OddsError, "> 1"),
        ({"line": "abc"}, MarketError, "not a decimal"),
        ({"line": "NaN"}, MarketError, "finite"),
        ({"line": 0.25}, MarketError, "decimal string"),
        ({"line": True}, MarketError, "decimal string"),
        ({"line": "0.3"}, MarketError, "multiple of 0.25"),
        ({"market": "nope"}, MarketError, "unknown market"),
        ({"period": "FT2"}, MarketError, "unknown period"),
    ],
)
def test_parse_leg_rejects(raw: Any, error: type[DomainError], match: str) -> None:
    base = {
        "event_id": "e1",
        "market": "asian_handicap",
        "line": "-0.25",
        "period": "FT",
        "selection": "home",
        "odds": "1.90",
    }
    arg = raw if isinstance(raw, list) else {**base, **raw}
    if isinstance(arg, dict) and "drop" in arg:
        del arg[arg.pop("drop")]
    with pytest.raises(error, match=match):
        parse_leg(arg)
