"""ISO 4217 currencies and their minor units, and exact conversion of amounts into minor units.

"Every currency has 2 decimals" is wrong for a dozen currencies: a yen has no minor unit (JPY 0)
and a Bahraini dinar has 1,000 fils (BHD 3). :data:`MINOR_UNITS` is the ISO 4217 list of active
currency codes with their minor units, written out as data (not fetched, not computed), so a
stake of ``"10.5"`` JPY is refused and ``"1.234"`` BHD is 1,234 minor units.

Precious metals, testing and "no currency" codes (XAU, XTS, XXX, ...) have no minor unit and are
not money the book takes; they are left out. Which of these currencies a deployment accepts is a
setting (``ODDSFLOW_ACCEPTED_CURRENCIES``), parsed with :func:`parse_accepted`.

Amount text is plain ASCII decimal syntax only (``12``, ``12.5``, ``-3.25``): no ``_`` digit
separators, no exponent, no non-ASCII digits, no surrounding blanks, which ``Decimal()`` and
``int()`` would all quietly accept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from oddsflow.domain.errors import MoneyError

# fmt: off
MINOR_UNITS: Final = MappingProxyType({
    "AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "AOA": 2, "ARS": 2, "AUD": 2, "AWG": 2,
    "AZN": 2, "BAM": 2, "BBD": 2, "BDT": 2, "BGN": 2, "BHD": 3, "BIF": 0, "BMD": 2,
    "BND": 2, "BOB": 2, "BOV": 2, "BRL": 2, "BSD": 2, "BTN": 2, "BWP": 2, "BYN": 2,
    "BZD": 2, "CAD": 2, "CDF": 2, "CHE": 2, "CHF": 2, "CHW": 2, "CLF": 4, "CLP": 0,
    "CNY": 2, "COP": 2, "COU": 2, "CRC": 2, "CUP": 2, "CVE": 2, "CZK": 2, "DJF": 0,
    "DKK": 2, "DOP": 2, "DZD": 2, "EGP": 2, "ERN": 2, "ETB": 2, "EUR": 2, "FJD": 2,
    "FKP": 2, "GBP": 2, "GEL": 2, "GHS": 2, "GIP": 2, "GMD": 2, "GNF": 0, "GTQ": 2,
    "GYD": 2, "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2,
    "IQD": 3, "IRR": 2, "ISK": 0, "JMD": 2, "JOD": 3, "JPY": 0, "KES": 2, "KGS": 2,
    "KHR": 2, "KMF": 0, "KPW": 2, "KRW": 0, "KWD": 3, "KYD": 2, "KZT": 2, "LAK": 2,
    "LBP": 2, "LKR": 2, "LRD": 2, "LSL": 2, "LYD": 3, "MAD": 2, "MDL": 2, "MGA": 2,
    "MKD": 2, "MMK": 2, "MNT": 2, "MOP": 2, "MRU": 2, "MUR": 2, "MVR": 2, "MWK": 2,
    "MXN": 2, "MXV": 2, "MYR": 2, "MZN": 2, "NAD": 2, "NGN": 2, "NIO": 2, "NOK": 2,
    "NPR": 2, "NZD": 2, "OMR": 3, "PAB": 2, "PEN": 2, "PGK": 2, "PHP": 2, "PKR": 2,
    "PLN": 2, "PYG": 0, "QAR": 2, "RON": 2, "RSD": 2, "RUB": 2, "RWF": 0, "SAR": 2,
    "SBD": 2, "SCR": 2, "SDG": 2, "SEK": 2, "SGD": 2, "SHP": 2, "SLE": 2, "SOS": 2,
    "SRD": 2, "SSP": 2, "STN": 2, "SVC": 2, "SYP": 2, "SZL": 2, "THB": 2, "TJS": 2,
    "TMT": 2, "TND": 3, "TOP": 2, "TRY": 2, "TTD": 2, "TWD": 2, "TZS": 2, "UAH": 2,
    "UGX": 0, "USD": 2, "USN": 2, "UYI": 0, "UYU": 2, "UYW": 4, "UZS": 2, "VED": 2,
    "VES": 2, "VND": 0, "VUV": 0, "WST": 2, "XAF": 0, "XCD": 2, "XCG": 2, "XOF": 0,
    "XPF": 0, "YER": 2, "ZAR": 2, "ZMW": 2, "ZWG": 2,
})
# fmt: on
"""ISO 4217 alphabetic code -> number of decimal places of its minor unit."""

DEFAULT_ACCEPTED: Final = frozenset({"GBP", "EUR", "USD", "JPY", "CHF", "SEK", "NOK", "DKK"})
"""The currencies accepted when no setting says otherwise (``Settings.accepted_currencies``)."""

_AMOUNT_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?", re.ASCII)
# Amounts beyond 10**18 units are no stake or deposit anyone makes; refusing them before any
# arithmetic keeps "1e999999999" from costing a billion-digit integer.
_UNITS_DIGITS_MAX = 18


def _show(value: object) -> str:
    """A bounded repr: a reason never echoes a megabyte of input."""
    r = repr(value)
    return r if len(r) <= 40 else f"{r[:30]}... ({len(r)} chars)"


class CurrencyError(MoneyError):
    """An unknown or unaccepted currency code, or an amount with more decimals than it has."""


def minor_units(code: str) -> int:
    """Decimal places of ``code``'s minor unit (GBP 2, JPY 0, BHD 3); CurrencyError if unknown."""
    if not isinstance(code, str):
        raise CurrencyError(f"currency must be a string, got {type(code).__name__}")
    try:
        return MINOR_UNITS[code]
    except KeyError:
        raise CurrencyError(f"{_show(code)} is not an ISO 4217 currency code") from None


def check_accepted(code: object, accepted: Iterable[str] = DEFAULT_ACCEPTED) -> str:
    """``code`` if it is an ISO 4217 code in ``accepted``; CurrencyError otherwise."""
    if not isinstance(code, str):
        raise CurrencyError(f"currency must be a 3-letter ISO 4217 code, got {_show(code)}")
    minor_units(code)
    allowed = accepted if isinstance(accepted, frozenset | set) else frozenset(accepted)
    if code not in allowed:
        raise CurrencyError(
            f"currency {code!r} is not accepted (accepted: {', '.join(sorted(allowed))})"
        )
    return code


def parse_accepted(spec: str) -> frozenset[str]:
    """``"GBP, EUR,JPY"`` -> ``frozenset({"GBP", "EUR", "JPY"})``; CurrencyError on a bad code."""
    codes = frozenset(part.strip() for part in spec.split(",") if part.strip())
    for code in codes:
        minor_units(code)
    if not codes:
        raise CurrencyError("no accepted currency configured")
    return codes


def to_minor(amount: str | Decimal | int, currency: str) -> int:
    """Exact minor units of ``amount`` (in units of ``currency``): ``("1.234", "BHD")`` -> 1234.

    ``amount`` is ASCII decimal text, an exact Decimal (e.g. a JSON number parsed with
    ``parse_float=Decimal``) or an int of whole units; never a float. MoneyError when it is not
    such a number; CurrencyError when it has more decimals than the currency's minor unit
    (``"10.5"`` JPY), because money entering the system is never rounded.
    """
    places = minor_units(currency)
    if isinstance(amount, bool):
        raise MoneyError(f"not an amount: {amount!r}")
    if isinstance(amount, int):
        value = Decimal(amount)
    elif isinstance(amount, str):
        if not _AMOUNT_RE.fullmatch(amount):
            raise MoneyError(f"not a plain decimal amount: {_show(amount)}")
        value = Decimal(amount)
    elif isinstance(amount, Decimal):
        if not amount.is_finite():
            raise MoneyError(f"amount is not finite: {amount!r}")
        value = amount
    else:
        raise MoneyError(f"not an amount: {_show(amount)} (money is never float)")
    if value == 0:
        return 0
    if value.adjusted() >= _UNITS_DIGITS_MAX:
        raise MoneyError(f"amount is too large: {amount!r}")
    # Integer arithmetic on the digits, not Decimal arithmetic: the default 28-digit context
    # would round "1.00000000000000000000000000001" to a whole number and accept it.
    sign, digits, exp = value.as_tuple()
    assert isinstance(exp, int)  # finite: checked above
    shift = exp + places
    if shift < 0 and (-shift > len(digits) or any(digits[shift:])):
        raise CurrencyError(
            f"amount {_show(amount)} has more than {places} decimal places for {currency}"
        )
    coefficient = int("".join(map(str, digits)))
    scale: int = 10 ** abs(shift)
    minor = coefficient * scale if shift >= 0 else coefficient // scale
    return -minor if sign else minor


def from_minor(minor: int, currency: str) -> Decimal:
    """Minor units back to units with the currency's places: ``(1234, "BHD")`` -> ``1.234``."""
    return Decimal(minor).scaleb(-minor_units(currency))
