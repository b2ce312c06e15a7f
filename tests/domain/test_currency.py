"""ISO 4217 minor units and exact, strict conversion of amounts into minor units."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oddsflow.domain.currency import (
    DEFAULT_ACCEPTED,
    MINOR_UNITS,
    CurrencyError,
    check_accepted,
    from_minor,
    minor_units,
    parse_accepted,
    to_minor,
)
from oddsflow.domain.errors import MoneyError
from oddsflow.settings import Settings

ZERO_DECIMALS = [
    "BIF",
    "CLP",
    "DJF",
    "GNF",
    "ISK",
    "JPY",
    "KMF",
    "KRW",
    "PYG",
    "RWF",
    "UGX",
    "UYI",
    "VND",
    "VUV",
    "XAF",
    "XOF",
    "XPF",
]
THREE_DECIMALS = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"]


@pytest.mark.parametrize(
    ("code", "places"),
    [
        ("GBP", 2),
        ("EUR", 2),
        ("USD", 2),
        ("CHF", 2),
        ("HUF", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("BHD", 3),
        ("KWD", 3),
        ("CLF", 4),
    ],
)
def test_minor_units_of_common_and_odd_currencies(code: str, places: int) -> None:
    assert minor_units(code) == places


def test_every_zero_and_three_decimal_currency_is_in_the_table() -> None:
    assert {c for c, p in MINOR_UNITS.items() if p == 0} == set(ZERO_DECIMALS)
    assert {c for c, p in MINOR_UNITS.items() if p == 3} == set(THREE_DECIMALS)
    assert all(len(c) == 3 and c.isascii() and c.isupper() for c in MINOR_UNITS)
    assert set(MINOR_UNITS.values()) == {0, 2, 3, 4}
    with pytest.raises(TypeError):
        MINOR_UNITS["XXX"] = 2  # type: ignore[index]  # a read-only table


@pytest.mark.parametrize("code", ["ABC", "XAU", "XXX", "gbp", "GB", "", "GBPX"])
def test_three_capital_letters_are_not_enough(code: str) -> None:
    with pytest.raises(CurrencyError, match="ISO 4217"):
        minor_units(code)


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("10.5", "GBP", 1050),
        ("10.50", "GBP", 1050),
        ("0.01", "GBP", 1),
        ("10", "JPY", 10),
        ("10.0", "JPY", 10),
        ("1.234", "BHD", 1234),
        ("1.2", "BHD", 1200),
        ("1", "CLF", 10_000),
        ("-3.25", "GBP", -325),
        ("0", "GBP", 0),
        (Decimal("2.10"), "GBP", 210),
        (Decimal("1E+3"), "GBP", 100_000),  # a JSON number 1e3, exact
        (Decimal("3.000"), "JPY", 3),
        (7, "BHD", 7_000),
    ],
)
def test_amounts_convert_exactly_with_the_currencys_minor_unit(
    amount: object, currency: str, minor: int
) -> None:
    assert to_minor(amount, currency) == minor  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("10.5", "JPY"),
        (Decimal("2.5"), "JPY"),
        ("1.2345", "BHD"),
        ("1.005", "GBP"),
        ("1.0000000000000000000000000000001", "GBP"),  # 28-digit context rounding is not used
        (Decimal("1E-999999999"), "GBP"),
    ],
)
def test_more_decimals_than_the_currency_has_is_refused(amount: object, currency: str) -> None:
    with pytest.raises(CurrencyError, match="decimal places"):
        to_minor(amount, currency)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "amount",
    [
        "1_000",
        "2_0",
        "\u0661\u0660",  # Arabic-Indic digits
        "\uff11\uff10",  # fullwidth digits
        " 10",
        "10 ",
        "1e3",
        "+5",
        ".5",
        "5.",
        "NaN",
        "Infinity",
        "",
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("1E+30"),  # too large to be money, refused before any arithmetic
        1.5,
        True,
        None,
    ],
)
def test_anything_but_plain_ascii_decimals_is_refused(amount: object) -> None:
    with pytest.raises(MoneyError):
        to_minor(amount, "GBP")  # type: ignore[arg-type]


def test_accepted_currencies() -> None:
    assert parse_accepted(" GBP, EUR,,JPY ") == frozenset({"GBP", "EUR", "JPY"})
    with pytest.raises(CurrencyError, match="'ABC' is not an ISO 4217"):
        parse_accepted("GBP,ABC")
    with pytest.raises(CurrencyError, match="no accepted currency"):
        parse_accepted(" , ")
    assert check_accepted("EUR", frozenset({"EUR"})) == "EUR"
    assert check_accepted("JPY", ["JPY"]) == "JPY"  # any iterable
    with pytest.raises(CurrencyError, match="not accepted"):
        check_accepted("BHD", frozenset({"GBP"}))
    with pytest.raises(CurrencyError, match="3-letter"):
        check_accepted(826)
    with pytest.raises(CurrencyError, match="must be a string"):
        minor_units(826)  # type: ignore[arg-type]


def test_the_settings_default_is_the_domain_default() -> None:
    default = Settings.model_fields["accepted_currencies"].default
    assert parse_accepted(default) == DEFAULT_ACCEPTED


@given(
    st.sampled_from(sorted(MINOR_UNITS)),
    st.integers(min_value=-(10**15), max_value=10**15),
)
def test_minor_units_round_trip_through_text(code: str, minor: int) -> None:
    units = from_minor(minor, code)
    assert to_minor(format(units, "f"), code) == minor
    assert to_minor(units, code) == minor
    if minor % 10 != 0 and MINOR_UNITS[code] > 0:
        # one more decimal place than the currency has is never exact
        with pytest.raises(CurrencyError):
            to_minor(format(units.scaleb(-1), "f"), code)
