"""The faster pricing (integer overround, float-guarded bisection) equals the old one exactly:
the same Decimals, digit for digit and exponent for exponent, and the same refusals."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oddsflow.domain import pricing
from oddsflow.domain.errors import OddsError
from tests.domain import pricing_reference as ref

_METHODS = [m.value for m in pricing.Method]

_odds = st.one_of(
    st.decimals(min_value=Decimal("1.01"), max_value=Decimal(1000), places=2),
    st.decimals(min_value=Decimal("1.0001"), max_value=Decimal(10**6), places=4),
)
_books = st.lists(_odds, min_size=2, max_size=6)
_margins = st.one_of(
    st.decimals(min_value=Decimal(0), max_value=Decimal("0.25"), places=4),
    st.sampled_from([Decimal(0), Decimal("0.05"), Decimal("-0.02"), Decimal("0.9")]),
)


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except OddsError as exc:
        return "refused", str(exc)


def _same(a: Any, b: Any) -> None:
    """Equal and identically written (a Decimal's exponent is part of the result)."""
    assert a == b
    assert repr(a) == repr(b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_books)
def test_overround_equals_the_fraction_reference(odds: list[Decimal]) -> None:
    _same(pricing.overround(odds), ref.overround(odds))


@pytest.mark.parametrize("method", _METHODS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(odds=_books)
def test_fair_probabilities_equal_the_reference(method: str, odds: list[Decimal]) -> None:
    _same(
        _outcome(pricing.fair_probabilities, odds, method),
        _outcome(ref.fair_probabilities, odds, method),
    )


@pytest.mark.parametrize("method", _METHODS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(odds=_books, margin=_margins)
def test_apply_margin_and_price_equal_the_reference(
    method: str, odds: list[Decimal], margin: Decimal
) -> None:
    fair = ref.fair_probabilities(odds, ref.Method.PROPORTIONAL)
    _same(
        _outcome(pricing.apply_margin, fair, margin, method),
        _outcome(ref.apply_margin, fair, margin, method),
    )
    new, old = (
        _outcome(pricing.price, odds, margin, method),
        _outcome(ref.price, odds, margin, method),
    )
    assert new[0] == old[0]
    if new[0] == "ok":
        _same(
            (new[1].fair_probabilities, new[1].odds, new[1].overround),
            (old[1].fair_probabilities, old[1].odds, old[1].overround),
        )
    else:
        assert new[1] == old[1]


@pytest.mark.parametrize(
    "odds",
    [
        ["2.10", "3.40", "3.60"],
        ["1.0001", "1.0001", "1.1135"],  # fair probabilities below a float's range
        ["1.01", "1000", "1000", "1000"],
        ["1.9", "1.9"],
        ["2", "2"],  # no overround: power/Shin reduce to proportional
        ["1.5", "5", "12", "40", "150", "999"],
    ],
)
@pytest.mark.parametrize("method", _METHODS)
def test_table_of_books_prices_as_the_reference(method: str, odds: list[str]) -> None:
    book = [Decimal(o) for o in odds]
    for margin in (Decimal(0), Decimal("0.05"), Decimal("0.15")):
        new = _outcome(pricing.price, book, margin, method)
        old = _outcome(ref.price, book, margin, method)
        assert new[0] == old[0]
        if new[0] == "ok":
            _same(
                (new[1].fair_probabilities, new[1].odds, new[1].overround),
                (old[1].fair_probabilities, old[1].odds, old[1].overround),
            )
        else:
            assert new[1] == old[1]
