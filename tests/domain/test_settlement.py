from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oddsflow.domain.errors import DomainError, ResultError
from oddsflow.domain.markets import Leg, MarketType, Period
from oddsflow.domain.money import exact_product, payout_minor
from oddsflow.domain.settlement import (
    BetSettlement,
    EventStatus,
    LegSettlement,
    Outcome,
    Result,
    combine,
    factor_for,
    merge_results,
    parse_result,
    resettlement_delta,
    settle_bet,
    settle_leg,
)

D = Decimal

W, L, V, HW, HL = Outcome.WIN, Outcome.LOSE, Outcome.VOID, Outcome.HALF_WIN, Outcome.HALF_LOSE
MR, DC, DNB, TG, AH, BTTS, CS = (
    MarketType.MATCH_RESULT,
    MarketType.DOUBLE_CHANCE,
    MarketType.DRAW_NO_BET,
    MarketType.TOTAL_GOALS,
    MarketType.ASIAN_HANDICAP,
    MarketType.BOTH_TEAMS_TO_SCORE,
    MarketType.CORRECT_SCORE,
)


def final(home: int, away: int, period: Period = Period.FT, event: str = "e1") -> Result:
    return Result(event, EventStatus.FINAL, {period: (home, away)})


# (market, selection, line, home, away, outcome) -- every market, every outcome it can have.
TABLE = [
    (MR, "home", None, 2, 1, W),
    (MR, "home", None, 1, 1, L),
    (MR, "draw", None, 0, 0, W),
    (MR, "draw", None, 0, 1, L),
    (MR, "away", None, 0, 1, W),
    (MR, "away", None, 3, 1, L),
    (DC, "home_draw", None, 1, 1, W),
    (DC, "home_draw", None, 2, 0, W),
    (DC, "home_draw", None, 0, 2, L),
    (DC, "home_away", None, 2, 0, W),
    (DC, "home_away", None, 0, 2, W),
    (DC, "home_away", None, 2, 2, L),
    (DC, "draw_away", None, 2, 2, W),
    (DC, "draw_away", None, 1, 2, W),
    (DC, "draw_away", None, 3, 2, L),
    (DNB, "home", None, 1, 0, W),
    (DNB, "home", None, 0, 1, L),
    (DNB, "home", None, 1, 1, V),
    (DNB, "away", None, 0, 1, W),
    (DNB, "away", None, 1, 0, L),
    (DNB, "away", None, 2, 2, V),
    (BTTS, "yes", None, 1, 1, W),
    (BTTS, "yes", None, 1, 0, L),
    (BTTS, "no", None, 0, 3, W),
    (BTTS, "no", None, 2, 1, L),
    (BTTS, "no", None, 0, 0, W),
    (CS, "2-1", None, 2, 1, W),
    (CS, "2-1", None, 1, 2, L),
    (CS, "0-0", None, 0, 0, W),
    # totals: half, whole and quarter lines, both sides
    (TG, "over", "2.5", 2, 1, W),
    (TG, "over", "2.5", 1, 1, L),
    (TG, "under", "2.5", 1, 1, W),
    (TG, "under", "2.5", 2, 1, L),
    (TG, "over", "3", 2, 1, V),
    (TG, "under", "3", 2, 1, V),
    (TG, "over", "3", 3, 1, W),
    (TG, "over", "2.25", 1, 1, HL),
    (TG, "over", "2.25", 2, 1, W),
    (TG, "over", "2.25", 1, 0, L),
    (TG, "under", "2.25", 1, 1, HW),
    (TG, "under", "2.25", 2, 1, L),
    (TG, "over", "2.75", 2, 1, HW),
    (TG, "over", "2.75", 1, 1, L),
    (TG, "over", "2.75", 4, 0, W),
    (TG, "under", "2.75", 2, 1, HL),
    (TG, "under", "2.75", 1, 1, W),
    (TG, "under", "0.25", 0, 0, HW),
    (TG, "over", "0.25", 0, 0, HL),
    (TG, "over", "0", 0, 0, V),
    # Asian handicap: the line is home's; away gets the opposite
    (AH, "home", "0", 1, 1, V),
    (AH, "away", "0", 1, 1, V),
    (AH, "home", "0", 1, 0, W),
    (AH, "home", "-0.5", 1, 1, L),
    (AH, "away", "-0.5", 1, 1, W),
    (AH, "home", "-0.25", 1, 1, HL),
    (AH, "away", "-0.25", 1, 1, HW),
    (AH, "home", "-0.25", 2, 1, W),
    (AH, "away", "-0.25", 2, 1, L),
    (AH, "home", "0.25", 1, 1, HW),
    (AH, "away", "0.25", 1, 1, HL),
    (AH, "home", "-0.75", 2, 1, HW),
    (AH, "away", "-0.75", 2, 1, HL),
    (AH, "home", "-0.75", 3, 1, W),
    (AH, "home", "-0.75", 1, 1, L),
    (AH, "home", "-1", 2, 1, V),
    (AH, "home", "-1", 3, 1, W),
    (AH, "away", "-1", 2, 1, V),
    (AH, "home", "-1.25", 2, 1, HL),
    (AH, "away", "-1.25", 2, 1, HW),
    (AH, "home", "1.75", 0, 2, HL),
    (AH, "away", "1.75", 0, 2, HW),
    (AH, "away", "1.5", 0, 2, W),
    (AH, "home", "1.5", 0, 1, W),
]


@pytest.mark.parametrize(("market", "selection", "line", "home", "away", "outcome"), TABLE)
def test_every_market(
    market: MarketType, selection: str, line: str | None, home: int, away: int, outcome: Outcome
) -> None:
    odds = D("1.90")
    leg = Leg("e1", market, Period.FT, selection, odds, None if line is None else D(line))
    expected_factor = {W: odds, L: D(0), V: D(1), HW: (1 + odds) / 2, HL: D("0.5")}[outcome]
    assert settle_leg(leg, final(home, away)) == LegSettlement(outcome, expected_factor)


@pytest.mark.parametrize(
    ("selection", "line", "stake", "outcome", "ret"),
    [
        ("home", "-0.25", "10.00", HL, "5.00"),  # the example: 1-1, home -0.25 @ 1.90
        ("away", "-0.25", "10.00", HW, "14.50"),
        ("home", "0.25", "10.00", HW, "14.50"),
        ("home", "0.25", "0.01", HW, "0.01"),  # 0.0145 -> floor to the cent
        ("home", "-0.25", "0.01", HL, "0.00"),  # 0.005 -> 0
        ("away", "-0.25", "0.03", HW, "0.04"),  # 0.0435
    ],
)
def test_quarter_line_returns_to_the_cent(
    selection: str, line: str, stake: str, outcome: Outcome, ret: str
) -> None:
    leg = Leg("e1", AH, Period.FT, selection, D("1.90"), D(line))
    settled = settle_bet(int(D(stake) * 100), [leg], {"e1": final(1, 1)})
    assert settled.outcome is outcome
    assert settled.return_minor == int(D(ret) * 100)


def test_first_half_uses_first_half_score() -> None:
    result = Result("e1", EventStatus.FINAL, {Period.FT: (2, 1), Period.H1: (0, 0)})
    ft = Leg("e1", MR, Period.FT, "home", D("2.2"))
    h1 = Leg("e1", MR, Period.H1, "draw", D("2.1"))
    assert settle_leg(ft, result).outcome is W
    assert settle_leg(h1, result).outcome is W
    h1_over = Leg("e1", TG, Period.H1, "over", D("1.8"), D("0.5"))
    assert settle_leg(h1_over, result).outcome is L


def test_missing_period_score_is_an_error() -> None:
    leg = Leg("e1", MR, Period.H1, "draw", D("2.1"))
    with pytest.raises(ResultError, match="1H score"):
        settle_leg(leg, final(1, 0))


def test_result_for_another_event_is_an_error() -> None:
    with pytest.raises(ResultError, match="cannot settle"):
        settle_leg(Leg("e1", MR, Period.FT, "draw", D("3")), final(1, 1, event="e2"))


@pytest.mark.parametrize("status", [EventStatus.ABANDONED, EventStatus.CANCELLED])
@pytest.mark.parametrize(
    "leg",
    [
        Leg("e1", MR, Period.FT, "home", D("2")),
        Leg("e1", AH, Period.H1, "home", D("2"), D("-0.25")),
        Leg("e1", CS, Period.FT, "1-0", D("7")),
    ],
)
def test_abandoned_or_cancelled_voids(status: EventStatus, leg: Leg) -> None:
    assert settle_leg(leg, Result("e1", status)) == LegSettlement(V, D(1))
    assert settle_bet(1000, [leg], {"e1": Result("e1", status)}).return_minor == 1000


@pytest.mark.parametrize(
    ("outcomes_odds", "stake", "outcome", "ret"),
    [
        ([(W, "2.00"), (W, "1.50")], 1000, W, 3000),
        ([(W, "2.00"), (V, "1.50")], 1000, W, 2000),
        ([(V, "2.00"), (V, "1.50")], 1000, V, 1000),
        ([(W, "2.00"), (L, "1.50")], 1000, L, 0),
        ([(HW, "1.90"), (W, "2.00")], 1000, W, 2900),  # 1.45 * 2
        ([(HL, "1.90"), (W, "2.00")], 1000, W, 1000),  # 0.5 * 2: return == stake, still "win"
        ([(HL, "1.90"), (HL, "2.00")], 1000, W, 250),  # partial return is not a loss
        ([(HL, "1.90"), (V, "2.00")], 1000, W, 500),
        ([(W, "1.33"), (W, "1.33"), (W, "1.33")], 333, W, 783),  # 783.4... -> floor
        ([(HL, "2"), (HL, "2"), (HL, "2")], 7, L, 0),  # 0.875 -> 0 -> lose
    ],
)
def test_accumulators(
    outcomes_odds: list[tuple[Outcome, str]], stake: int, outcome: Outcome, ret: int
) -> None:
    legs = [LegSettlement(o, factor_for(o, D(odds))) for o, odds in outcomes_odds]
    bet = combine(stake, legs)
    assert bet == BetSettlement(outcome, ret, tuple(legs))


def test_accumulator_from_legs_and_results() -> None:
    legs = [
        Leg("e1", AH, Period.FT, "away", D("1.90"), D("-0.25")),  # 1-1: half win
        Leg("e2", TG, Period.FT, "over", D("2.00"), D("2.5")),  # abandoned: void
        Leg("e3", BTTS, Period.H1, "yes", D("3.00")),  # 1H 1-1: win
    ]
    results = {
        "e1": final(1, 1),
        "e2": Result("e2", EventStatus.ABANDONED),
        "e3": Result("e3", EventStatus.FINAL, {Period.H1: (1, 1), Period.FT: (1, 2)}),
    }
    bet = settle_bet(1000, legs, results)
    assert bet.outcome is W
    assert bet.return_minor == 4350  # 10 * 1.45 * 1 * 3
    assert [s.outcome for s in bet.legs] == [HW, V, W]
    with pytest.raises(ResultError, match="no result for event e2"):
        settle_bet(1000, legs, {"e1": final(1, 1), "e3": results["e3"]})


def test_single_outcomes_pass_through() -> None:
    for o in Outcome:
        assert combine(1000, [LegSettlement(o, factor_for(o, D(3)))]).outcome is o


def test_combine_needs_legs() -> None:
    with pytest.raises(ResultError):
        combine(1000, [])


@pytest.mark.parametrize(
    ("dead_heat", "outcome", "factor", "ret"),
    [
        (D("0.5"), W, D("5.00"), 5000),  # two-way tie at 10.0: half the stake wins at 10
        (D("0.3333"), W, D("3.333"), 3333),
        (D("1"), W, D("10.00"), 10000),
    ],
)
def test_dead_heat(dead_heat: Decimal, outcome: Outcome, factor: Decimal, ret: int) -> None:
    leg = Leg("e1", CS, Period.FT, "1-0", D("10.00"))
    settled = settle_leg(leg, final(1, 0), dead_heat)
    assert settled == LegSettlement(outcome, factor)
    assert combine(1000, [settled]).return_minor == ret
    # a losing leg ignores the dead heat
    assert settle_leg(leg, final(0, 0), dead_heat) == LegSettlement(L, D(0))


def test_dead_heat_on_half_win() -> None:
    leg = Leg("e1", AH, Period.FT, "home", D("3"), D("0.25"))
    assert settle_leg(leg, final(0, 0), D("0.5")) == LegSettlement(HW, D("1.25"))


@pytest.mark.parametrize("dead_heat", [D(0), D("1.01"), D("-0.5"), D("NaN"), 0.5])
def test_dead_heat_rejects(dead_heat: object) -> None:
    leg = Leg("e1", CS, Period.FT, "1-0", D("10.00"))
    with pytest.raises(ResultError, match="dead_heat"):
        settle_leg(leg, final(1, 0), dead_heat)  # type: ignore[arg-type]


def test_resettlement_delta() -> None:
    leg = Leg("e1", MR, Period.FT, "home", D("2.50"))
    first = settle_bet(1000, [leg], {"e1": final(1, 0)})
    corrected = settle_bet(
        1000, [leg], {"e1": Result("e1", EventStatus.FINAL, {Period.FT: (1, 1)}, 1)}
    )
    assert resettlement_delta(first.return_minor, corrected.return_minor) == -2500
    assert resettlement_delta(0, 2500) == 2500
    assert resettlement_delta(2500, 2500) == 0


def test_parse_result() -> None:
    assert parse_result({"event_id": "e1", "period": "FT", "home": 2, "away": 1}) == final(2, 1)
    assert parse_result({"event_id": "e1", "status": "abandoned"}) == Result(
        "e1", EventStatus.ABANDONED
    )
    assert parse_result(
        {"event_id": "e1", "status": "final", "period": "1H", "home": 0, "away": 0, "revision": 3}
    ) == Result("e1", EventStatus.FINAL, {Period.H1: (0, 0)}, 3)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ([1], "object"),
        ({"period": "FT", "home": 1, "away": 1}, "event_id"),
        ({"event_id": "e1", "status": "postponed"}, "status"),
        ({"event_id": "e1", "period": "FT", "home": 1}, "missing 'away'"),
        ({"event_id": "e1", "period": "2H", "home": 1, "away": 1}, "period"),
        ({"event_id": "e1", "period": "FT", "home": -1, "away": 1}, "non-negative"),
        ({"event_id": "e1", "period": "FT", "home": "1", "away": 1}, "non-negative"),
        ({"event_id": "e1", "period": "FT", "home": True, "away": 1}, "non-negative"),
        ({"event_id": "e1", "period": "FT", "home": 1, "away": 1, "revision": "2"}, "revision"),
    ],
)
def test_parse_result_rejects(raw: object, match: str) -> None:
    with pytest.raises(ResultError, match=match):
        parse_result(raw)  # type: ignore[arg-type]


def test_result_validation() -> None:
    with pytest.raises(ResultError, match="event_id"):
        Result("", EventStatus.FINAL)
    with pytest.raises(ResultError, match="status"):
        Result("e1", "over")  # type: ignore[arg-type]
    with pytest.raises(ResultError, match="period"):
        Result("e1", EventStatus.FINAL, {"2H": (1, 1)})  # type: ignore[dict-item]
    with pytest.raises(ResultError, match="pair"):
        Result("e1", EventStatus.FINAL, {Period.FT: (1, 1, 1)})  # type: ignore[dict-item]
    assert Result("e1", "final", {"FT": (1, 1)}).scores[Period.FT] == (1, 1)  # type: ignore[arg-type, dict-item]


def test_merge_results() -> None:
    lines = [
        parse_result({"event_id": "e1", "period": "FT", "home": 2, "away": 1}),
        parse_result({"event_id": "e1", "period": "1H", "home": 1, "away": 0}),
        parse_result({"event_id": "e2", "period": "1H", "home": 0, "away": 0}),
        parse_result({"event_id": "e2", "status": "abandoned"}),
        parse_result({"event_id": "e2", "period": "FT", "home": 0, "away": 0}),
        parse_result({"event_id": "e1", "period": "FT", "home": 2, "away": 2, "revision": 1}),
    ]
    merged = merge_results(lines)
    assert merged["e1"] == Result(
        "e1", EventStatus.FINAL, {Period.FT: (2, 2), Period.H1: (1, 0)}, 1
    )
    assert merged["e2"].status is EventStatus.ABANDONED  # order does not un-abandon an event


# ---- properties -------------------------------------------------------------------------

odds_st = st.decimals(min_value=D("1.01"), max_value=D(50), places=2)
quarter_st = st.integers(-20, 20).map(lambda n: D(2 * n + 1) / 4)  # ..., -0.25, 0.25, 0.75, ...
score_st = st.integers(0, 8)


@given(quarter_st, st.sampled_from(["home", "away"]), odds_st, score_st, score_st)
def test_ah_quarter_line_is_mean_of_half_lines(
    line: Decimal, sel: str, odds: Decimal, home: int, away: int
) -> None:
    result = final(home, away)

    def factor(x: Decimal) -> Decimal:
        return settle_leg(Leg("e1", AH, Period.FT, sel, odds, x), result).factor

    assert factor(line) == (factor(line - D("0.25")) + factor(line + D("0.25"))) / 2


@given(
    st.integers(0, 15).map(lambda n: D(2 * n + 1) / 4),
    st.sampled_from(["over", "under"]),
    odds_st,
    score_st,
    score_st,
)
def test_total_quarter_line_is_mean_of_half_lines(
    line: Decimal, sel: str, odds: Decimal, home: int, away: int
) -> None:
    result = final(home, away)

    def factor(x: Decimal) -> Decimal:
        return settle_leg(Leg("e1", TG, Period.FT, sel, odds, x), result).factor

    assert factor(line) == (factor(line - D("0.25")) + factor(line + D("0.25"))) / 2


leg_st = st.builds(
    lambda market_sel, odds, line: Leg(
        "e1",
        market_sel[0],
        Period.FT,
        market_sel[1],
        odds,
        line if market_sel[0] in (TG, AH) else None,
    ),
    st.sampled_from(
        [
            (MR, "home"),
            (MR, "draw"),
            (DC, "home_away"),
            (DNB, "away"),
            (BTTS, "no"),
            (CS, "1-1"),
            (TG, "over"),
            (TG, "under"),
            (AH, "home"),
            (AH, "away"),
        ]
    ),
    odds_st,
    st.integers(0, 16).map(lambda n: D(n) / 4),
)


@given(
    st.lists(st.tuples(leg_st, score_st, score_st), min_size=1, max_size=5), st.integers(0, 10**9)
)
def test_return_never_exceeds_stake_times_odds(
    legs: list[tuple[Leg, int, int]], stake: int
) -> None:
    settled = [settle_leg(leg, final(h, a)) for leg, h, a in legs]
    bet = combine(stake, settled)
    max_factor = Fraction(1)
    for leg, _, _ in legs:
        max_factor *= Fraction(leg.odds)
    assert 0 <= bet.return_minor <= stake * max_factor
    assert bet.return_minor == payout_minor(stake, exact_product(tuple(s.factor for s in settled)))


def test_domain_errors_are_value_errors() -> None:
    assert issubclass(ResultError, DomainError) and issubclass(DomainError, ValueError)
