from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oddsflow.domain.errors import DomainError, MoneyError
from oddsflow.domain.money import (
    MINOR_PER_UNIT,
    exact_product,
    format_minor,
    from_minor,
    payout_minor,
    to_minor,
)


@pytest.mark.parametrize(
    ("amount", "minor"),
    [
        ("10.00", 1000),
        ("10", 1000),
        ("10.5", 1050),
        (" 0.01 ", 1),
        ("-0.50", -50),
        ("+3.", 300),
        (".25", 25),
        ("10.000", 1000),  # trailing zeros are exact, not extra precision
        (Decimal("1.23"), 123),
        (7, 700),
        (0, 0),
    ],
)
def test_to_minor_exact(amount: Decimal | str | int, minor: int) -> None:
    assert to_minor(amount) == minor


@pytest.mark.parametrize(
    "amount",
    [
        "10.001",
        "abc",
        "",
        "1e2",
        "NaN",
        "inf",
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("0.005"),
        True,
        1.5,
        None,
    ],
)
def test_to_minor_rejects(amount: object) -> None:
    with pytest.raises(MoneyError):
        to_minor(amount)  # type: ignore[arg-type]


def test_minor_per_unit_is_two_decimals() -> None:
    assert MINOR_PER_UNIT == 100


@pytest.mark.parametrize(
    ("minor", "text"),
    [(1000, "10.00"), (-50, "-0.50"), (0, "0.00"), (7, "0.07"), (-1234, "-12.34")],
)
def test_format_and_from_minor(minor: int, text: str) -> None:
    assert format_minor(minor) == text
    assert from_minor(minor) == Decimal(text)
    assert str(from_minor(minor)) == text


@pytest.mark.parametrize(
    ("stake", "factor", "expected"),
    [
        (1000, Decimal("1.90"), 1900),
        (333, Decimal("1.5"), 499),  # 499.5 -> floor, never rounded up
        (1, Decimal("1.99"), 1),
        (999, Decimal("0.5"), 499),
        (1000, Decimal(0), 0),
        (0, Decimal("5"), 0),
        (300, Decimal("1.33333333333333333334"), 400),  # -300 American: exact cases not lost
        # more digits than a 28-digit context: still exact before the floor
        (10**12, Decimal("1.000000000000000000000000000001"), 10**12),
    ],
)
def test_payout_minor_floors(stake: int, factor: Decimal, expected: int) -> None:
    assert payout_minor(stake, factor) == expected


@pytest.mark.parametrize(
    ("stake", "factor"),
    [
        (-1, Decimal(2)),
        (True, Decimal(2)),
        (1.0, Decimal(2)),
        (1, Decimal(-1)),
        (1, Decimal("NaN")),
        (1, 2.0),
    ],
)
def test_payout_minor_rejects(stake: object, factor: object) -> None:
    with pytest.raises(MoneyError):
        payout_minor(stake, factor)  # type: ignore[arg-type]


def test_exact_product() -> None:
    assert exact_product([]) == 1
    assert exact_product([Decimal("1.5"), Decimal("2.25")]) == Decimal("3.375")
    many = [Decimal("1.123456789")] * 40  # 360 decimal places: beyond 28 digits, still exact
    assert Fraction(exact_product(many)) == Fraction(Decimal("1.123456789")) ** 40
    with pytest.raises(DomainError):
        exact_product([Decimal("1.1234567891234567891")] * 100)


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_minor_roundtrip(minor: int) -> None:
    assert to_minor(format_minor(minor)) == minor
    assert to_minor(from_minor(minor)) == minor


@given(
    st.integers(min_value=0, max_value=10**12),
    st.decimals(min_value=0, max_value=10**4, places=4, allow_nan=False, allow_infinity=False),
)
def test_payout_bounds(stake: int, factor: Decimal) -> None:
    paid = payout_minor(stake, factor)
    assert paid <= stake * factor < paid + 1


# The Fraction implementations these replaced, kept as the reference the integer ones must equal.
def _payout_minor_fraction(stake_minor: int, factor: Decimal) -> int:
    return math.floor(stake_minor * Fraction(factor))


def _to_minor_fraction(value: Decimal) -> int | None:
    scaled = Fraction(value) * MINOR_PER_UNIT
    return int(scaled) if scaled.denominator == 1 else None


_factors = st.one_of(
    st.decimals(min_value=0, max_value=10**6, allow_nan=False, allow_infinity=False),
    st.decimals(min_value=0, max_value=10**4, places=12, allow_nan=False, allow_infinity=False),
    # exponent > 0 (e.g. Decimal("1E+3")) and very long accumulator products
    st.builds(lambda c, e: Decimal(c).scaleb(e), st.integers(0, 10**20), st.integers(-60, 6)),
)


@given(st.integers(min_value=0, max_value=2**63 - 1), _factors)
def test_payout_minor_integer_path_equals_the_fraction_reference(
    stake: int, factor: Decimal
) -> None:
    assert payout_minor(stake, factor) == _payout_minor_fraction(stake, factor)


@given(
    st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False),
        st.decimals(places=2, allow_nan=False, allow_infinity=False),
        st.builds(
            lambda c, e: Decimal(c).scaleb(e), st.integers(-(10**20), 10**20), st.integers(-6, 6)
        ),
    )
)
def test_to_minor_integer_path_equals_the_fraction_reference(value: Decimal) -> None:
    expected = _to_minor_fraction(value)
    if expected is None:
        with pytest.raises(MoneyError, match="more than 2 decimals"):
            to_minor(value)
    else:
        assert to_minor(value) == expected


def test_payout_minor_floors_an_exact_product_without_rounding_it_first() -> None:
    # 1/3-ish factors with more digits than any 28-digit context: a rounded product would floor
    # one minor unit higher.
    factor = Decimal("2." + "9" * 60)
    assert payout_minor(10**12, factor) == 2 * 10**12 + 10**12 - 1
    assert payout_minor(3, Decimal("0.3333333333333333333333333333333334")) == 1
