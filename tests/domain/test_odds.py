from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oddsflow.domain.errors import OddsError
from oddsflow.domain.odds import (
    decimal_to_american,
    decimal_to_fractional,
    parse_odds,
    validate_decimal_odds,
)


@pytest.mark.parametrize(
    ("text", "decimal", "fractional", "american"),
    [
        ("2.10", "2.10", "11/10", "+110"),
        ("7/4", "2.75", "7/4", "+175"),
        ("+175", "2.75", "7/4", "+175"),
        ("-250", "1.4", "2/5", "-250"),
        ("1/4", "1.25", "1/4", "-400"),
        ("evens", "2", "1/1", "+100"),
        ("EVS", "2", "1/1", "+100"),
        ("+100", "2", "1/1", "+100"),
        ("-100", "2", "1/1", "+100"),
        ("+110.5", "2.105", "221/200", "+110.5"),
        ("100/1", "101", "100/1", "+10000"),
        (" 6 / 4 ", "2.5", "3/2", "+150"),
        # no finite decimal form: rounded up at 20 places, the simple fraction is recovered
        ("-300", "1.33333333333333333334", "1/3", "-300"),
        ("4/6", "1.66666666666666666667", "2/3", "-150"),
        ("8/13", "1.61538461538461538462", "8/13", "-162.5"),
        ("1.91", "1.91", "91/100", "-109.89"),  # American not finite: 2 dp for display
        ("1.01", "1.01", "1/100", "-10000"),
    ],
)
def test_formats(text: str, decimal: str, fractional: str, american: str) -> None:
    d = parse_odds(text)
    assert d == Decimal(decimal)
    assert decimal_to_fractional(d) == fractional
    assert decimal_to_american(d) == american


@pytest.mark.parametrize(
    "text",
    [
        "1",
        "1.00",
        "0.5",
        "0",
        "",
        "abc",
        "+50",
        "-99",
        "0/4",
        "4/0",
        "2,10",
        "nan",
        "inf",
        "-2.10",
        "1e3",
        "7/4/2",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(OddsError):
        parse_odds(text)


def test_parse_rejects_non_string() -> None:
    with pytest.raises(OddsError, match="string"):
        parse_odds(2.1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", [Decimal(1), Decimal("0.99"), Decimal("NaN"), Decimal("Inf"), 2.0, 3, True]
)
def test_validate_rejects(value: object) -> None:
    with pytest.raises(OddsError):
        validate_decimal_odds(value)  # type: ignore[arg-type]


def test_validate_accepts() -> None:
    assert validate_decimal_odds(Decimal("1.0001")) == Decimal("1.0001")


@given(st.integers(1, 500), st.integers(1, 500))
def test_fractional_roundtrip(num: int, den: int) -> None:
    d = parse_odds(f"{num}/{den}")
    from fractions import Fraction

    f = Fraction(num, den)
    assert decimal_to_fractional(d) == f"{f.numerator}/{f.denominator}"
    assert Fraction(d) >= 1 + f  # never below the exact price (rounded up when not finite)
    assert Fraction(d) - (1 + f) <= Fraction(1, 10**20)


@given(st.integers(100, 100_000))
def test_american_roundtrip_positive(n: int) -> None:
    assert decimal_to_american(parse_odds(f"+{n}")) == f"+{n}"


@given(st.sampled_from([100, 105, 110, 120, 125, 150, 160, 200, 250, 300, 400, 500, 1000]))
def test_american_roundtrip_negative(n: int) -> None:
    expected = "+100" if n == 100 else f"-{n}"
    assert decimal_to_american(parse_odds(f"-{n}")) == expected
