from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oddsflow.domain.errors import OddsError
from oddsflow.domain.pricing import (
    Ladder,
    Method,
    PricedOdds,
    apply_margin,
    fair_probabilities,
    overround,
    price,
)

D = Decimal

TOL = D("1e-12")
THREE_WAY = (D("2.10"), D("3.40"), D("3.60"))
TWO_WAY = (D("1.90"), D("1.90"))
OUTRIGHT = tuple(D(x) for x in ("3", "4", "5", "7", "9", "13", "21", "34", "51", "101"))


def close(a: Decimal, b: Decimal, tol: Decimal = TOL) -> bool:
    return abs(a - b) <= tol


def test_overround() -> None:
    assert overround(TWO_WAY) == D(1) / 19  # 2/1.90 - 1, exactly, rounded once
    assert overround((D(2), D(2))) == 0
    assert close(overround(THREE_WAY), D("0.048085901027077"), D("1e-15"))


def test_method_values() -> None:
    assert [m.value for m in Method] == ["proportional", "additive", "power", "shin"]


@pytest.mark.parametrize("method", list(Method))
@pytest.mark.parametrize("odds", [TWO_WAY, THREE_WAY, OUTRIGHT, (D("1.25"), D("4.2"))])
def test_fair_probabilities_sum_to_one_and_keep_order(
    method: Method, odds: tuple[Decimal, ...]
) -> None:
    if method is Method.ADDITIVE and odds is OUTRIGHT:
        with pytest.raises(OddsError, match="additive"):
            fair_probabilities(odds, method)
        return
    fair = fair_probabilities(odds, method)
    assert len(fair) == len(odds)
    assert close(sum(fair), D(1), D("1e-25"))
    assert all(0 < p < 1 for p in fair)
    # a shorter price is a likelier outcome
    order = sorted(range(len(odds)), key=lambda i: odds[i])
    assert [fair[i] for i in order] == sorted(fair, reverse=True)


def test_known_values() -> None:
    # even two-way market: every method gives 1/2 each
    for method in Method:
        assert all(close(p, D("0.5")) for p in fair_probabilities(TWO_WAY, method))
    prop = fair_probabilities(THREE_WAY, Method.PROPORTIONAL)
    assert close(prop[0], (1 / D("2.10")) / (1 + overround(THREE_WAY)))
    add = fair_probabilities(THREE_WAY, "additive")
    assert close(add[0], 1 / D("2.10") - overround(THREE_WAY) / 3)
    # power and Shin move probability from longshots to favourites versus proportional
    power = fair_probabilities(THREE_WAY, Method.POWER)
    shin = fair_probabilities(THREE_WAY, Method.SHIN)
    assert power[0] > prop[0] and shin[0] > prop[0]
    assert close(shin[0], D("0.458665715961"), D("1e-11"))
    # the power exponent k solves sum(pi ** k) == 1
    k = power[0].ln() / (1 / D("2.10")).ln()
    assert close(sum((1 / o) ** k for o in THREE_WAY), D(1), D("1e-12"))


def test_fair_book_is_unchanged() -> None:
    fair_odds = (D(2), D(4), D(4))
    for method in Method:
        assert fair_probabilities(fair_odds, method) == (D("0.5"), D("0.25"), D("0.25"))


def test_negative_overround() -> None:
    arb = (D("2.10"), D("2.10"))  # booksum < 1
    for method in Method:
        fair = fair_probabilities(arb, method)
        assert all(close(p, D("0.5")) for p in fair)
    skew = (D("1.60"), D("3.00"))  # booksum 0.958: power solves k < 1, Shin is proportional
    power = fair_probabilities(skew, Method.POWER)
    assert close(sum(power), D(1))
    assert fair_probabilities(skew, Method.SHIN) == fair_probabilities(skew, Method.PROPORTIONAL)


@pytest.mark.parametrize(
    ("odds", "match"),
    [((D(2),), "at least 2"), ((D(2), D(1)), "> 1"), ((D(2), 2.0), "Decimal")],
)
def test_fair_probabilities_rejects(odds: tuple[Decimal, ...], match: str) -> None:
    with pytest.raises(OddsError, match=match):
        fair_probabilities(odds)


def test_unknown_method() -> None:
    with pytest.raises(OddsError, match="unknown pricing method"):
        fair_probabilities(TWO_WAY, "logit")


@pytest.mark.parametrize("method", list(Method))
@pytest.mark.parametrize("margin", [D("0.05"), D("0.10"), D("0.001")])
@pytest.mark.parametrize("odds", [TWO_WAY, THREE_WAY, (D("1.30"), D("5.50"), D("11"))])
def test_apply_margin_hits_target(
    method: Method, margin: Decimal, odds: tuple[Decimal, ...]
) -> None:
    fair = fair_probabilities(odds, method)
    priced = apply_margin(fair, margin, method)
    assert close(overround(priced), margin, D("1e-25"))
    # and removing it again with the same method gives the fair probabilities back
    assert all(close(a, b) for a, b in zip(fair_probabilities(priced, method), fair, strict=True))


def test_apply_margin_negative() -> None:
    fair = (D("0.6"), D("0.4"))
    for method in (Method.PROPORTIONAL, Method.ADDITIVE, Method.POWER):
        assert close(overround(apply_margin(fair, D("-0.02"), method)), D("-0.02"), D("1e-25"))
    with pytest.raises(OddsError, match="negative"):
        apply_margin(fair, D("-0.02"), Method.SHIN)


@pytest.mark.parametrize(
    ("fair", "margin", "method", "match"),
    [
        ((D("0.5"),), D("0.05"), Method.PROPORTIONAL, "at least 2"),
        ((D("0.5"), D("0.4")), D("0.05"), Method.PROPORTIONAL, "sum to 1"),
        ((D("1"), D("0")), D("0.05"), Method.PROPORTIONAL, r"\(0, 1\)"),
        ((D("0.5"), 0.5), D("0.05"), Method.PROPORTIONAL, r"\(0, 1\)"),
        ((D("0.5"), D("0.5")), 0.05, Method.PROPORTIONAL, "finite Decimal"),
        ((D("0.5"), D("0.5")), D("NaN"), Method.PROPORTIONAL, "finite Decimal"),
        ((D("0.5"), D("0.5")), D("-1"), Method.PROPORTIONAL, "> -1"),
        ((D("0.5"), D("0.5")), D("1.5"), Method.POWER, "power method cannot"),
        ((D("0.5"), D("0.5")), D("1.5"), Method.SHIN, "Shin method cannot"),
        ((D("0.99"), D("0.01")), D("-0.1"), Method.ADDITIVE, "additive margin"),
    ],
)
def test_apply_margin_rejects(
    fair: tuple[Decimal, ...], margin: Decimal, method: Method, match: str
) -> None:
    with pytest.raises(OddsError, match=match):
        apply_margin(fair, margin, method)


def test_ladder_default_two_dp() -> None:
    lad = Ladder()
    assert lad.maximum == 1000 and lad.minimum == D("1.01")
    assert lad.round_down(D("2.0999")) == D("2.09")
    assert lad.round_down(D("2.10")) == D("2.10")
    assert lad.round_down(D("1.0001")) == D("1.01")  # clamp: a price stays > 1
    assert lad.round_down(D("0.5")) == D("1.01")
    assert lad.round_down(D("5000")) == 1000
    assert lad.is_tick(D("2.09")) and not lad.is_tick(D("2.095")) and not lad.is_tick(D(1))


def test_ladder_betfair() -> None:
    lad = Ladder.betfair()
    cases = {
        "1.999": "1.99",
        "2.05": "2.04",
        "3.07": "3.05",
        "4.39": "4.3",
        "7.9": "7.8",
        "19.9": "19.5",
        "29.9": "29",
        "49": "48",
        "99": "95",
        "555": "550",
        "2": "2",
    }
    for raw, tick in cases.items():
        assert lad.round_down(D(raw)) == D(tick), raw


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bands": ()},
        {"bands": ((D(2), D(0)),)},
        {"bands": ((D(1), D("0.01")),)},
        {"bands": ((D(2), D("0.3")),)},
        {"minimum": D(1)},
        {"minimum": D("1.015")},
        {"minimum": D(2000)},
    ],
)
def test_ladder_rejects(kwargs: dict[str, object]) -> None:
    with pytest.raises(OddsError):
        Ladder(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", list(Method))
def test_price(method: Method) -> None:
    priced = price(THREE_WAY, D("0.05"), method)
    assert isinstance(priced, PricedOdds)
    assert all(Ladder().is_tick(o) for o in priced.odds)
    assert priced.overround >= D("0.05")
    assert priced.overround == overround(priced.odds)
    assert priced.fair_probabilities == fair_probabilities(THREE_WAY, method)


def test_price_clamps_to_minimum_tick_only_when_the_book_keeps_its_margin() -> None:
    # 1.001 clamps up to 1.01; the other price still carries enough margin: published.
    priced = price((D("1.001"), D("16")), D("0.05"), ladder=Ladder.betfair())
    assert priced.odds[0] == D("1.01")
    assert priced.overround >= D("0.05")


@pytest.mark.parametrize(
    ("odds", "ladder"),
    [
        ((D("1.0001"), D(1_000_000), D(1_000_000)), None),  # the book: -0.0079
        ((D("1.001"), D("500")), Ladder.betfair()),  # the clamp eats the margin
    ],
)
def test_price_refuses_a_book_below_its_margin(
    odds: tuple[Decimal, ...], ladder: Ladder | None
) -> None:
    with pytest.raises(OddsError, match="below the margin"):
        price(odds, D("0.05"), ladder=ladder)


# ---- properties -------------------------------------------------------------------------

odds_st = st.decimals(min_value=D("1.05"), max_value=D(30), places=2)
market_st = st.lists(odds_st, min_size=2, max_size=6)
nonadditive = st.sampled_from([Method.PROPORTIONAL, Method.POWER, Method.SHIN])


@settings(deadline=None)  # Decimal solvers are slow per example
@given(market_st, st.sampled_from(list(Method)))
def test_zero_margin_remove_apply_is_identity(odds: list[Decimal], method: Method) -> None:
    try:
        fair = fair_probabilities(odds, method)
    except OddsError:
        assert method is Method.ADDITIVE  # only additive can fail (a longshot goes <= 0)
        return
    back = apply_margin(fair, D(0), method)
    assert all(close(1 / o, p, D("1e-25")) for o, p in zip(back, fair, strict=True))
    again = fair_probabilities(back, method)
    assert all(close(a, b) for a, b in zip(again, fair, strict=True))


@settings(deadline=None)  # Decimal solvers are slow per example
@given(
    st.lists(st.decimals(min_value=D("0.05"), max_value=D(1), places=3), min_size=2, max_size=6),
    st.sampled_from(list(Method)),
)
def test_apply_zero_then_remove_is_identity(weights: list[Decimal], method: Method) -> None:
    total = sum(weights)
    fair = tuple(w / total for w in weights)
    if max(fair) >= 1:
        return
    back = fair_probabilities(apply_margin(fair, D(0), method), method)
    assert all(close(a, b) for a, b in zip(back, fair, strict=True))


@settings(deadline=None)  # Decimal solvers are slow per example
@given(market_st, nonadditive)
def test_solvers_sum_to_one_and_keep_order(odds: list[Decimal], method: Method) -> None:
    fair = fair_probabilities(odds, method)
    assert close(sum(fair), D(1))
    for i in range(len(odds)):
        for j in range(len(odds)):
            if odds[i] < odds[j]:
                assert fair[i] > fair[j]


@settings(deadline=None)  # Decimal solvers are slow per example
@given(market_st, st.decimals(min_value=D(0), max_value=D("0.15"), places=3), nonadditive)
def test_priced_overround_never_below_target(
    odds: list[Decimal], margin: Decimal, method: Method
) -> None:
    try:
        priced = price(odds, margin, method)
    except OddsError:
        # Refused only where the min-tick clamp (the one step that lowers the overround) hit.
        assert min(apply_margin(fair_probabilities(odds, method), margin, method)) < D("1.01")
        return
    assert priced.overround >= margin
    assert all(o > 1 for o in priced.odds)


provider_odds_st = st.decimals(
    min_value=D("1.0001"), max_value=D(10_000_000), places=4, allow_nan=False
)


@settings(deadline=None)  # Decimal solvers are slow per example
@given(
    st.lists(provider_odds_st, min_size=2, max_size=8),
    st.decimals(min_value=D(0), max_value=D("0.25"), places=3),
    st.sampled_from(list(Method)),
)
def test_published_book_keeps_its_margin_or_is_refused(
    odds: list[Decimal], margin: Decimal, method: Method
) -> None:
    # For any provider odds: the published book's implied probabilities sum to at least
    # 1 + margin, or the price is refused with an OddsError (never published below it).
    try:
        priced = price(odds, margin, method)
    except OddsError:
        return
    assert sum(1 / Fraction(o) for o in priced.odds) >= 1 + Fraction(margin)
    assert priced.overround >= margin
    assert all(o >= D("1.01") for o in priced.odds)
