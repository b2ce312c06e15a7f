"""Odds formats: decimal, fractional (``7/4``) and American (``+175``, ``-250``).

The engine works in decimal odds held as ``Decimal`` (never float). Conversions are exact
whenever the value is a finite decimal, which covers every decimal and American-positive price
and most fractional ones (``7/4`` -> 2.75, ``-250`` -> 1.4).

Some traditional prices have no finite decimal form (``4/6``, ``8/13``, ``-300``). Those are
rounded UP at ``ODDS_PLACES`` (20) decimal places. Why up, and why 20: the payout rule floors
``stake x odds``; rounding the odds down would cost the player a cent on exact cases
(``-300`` at 3.00 must return 4.00), while rounding up by < 1e-20 cannot change a floored payout
for any stake below 10^12 units. :func:`decimal_to_fractional` and :func:`decimal_to_american`
recognise such a value and give back the simple fraction it came from.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

from oddsflow.domain.errors import OddsError

ODDS_PLACES = 20
_QUANTUM = Decimal(1).scaleb(-ODDS_PLACES)
# A simple fraction is recognised up to this denominator (covers every traditional price).
_MAX_DENOMINATOR = 1000

_DECIMAL_RE = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_FRACTIONAL_RE = re.compile(r"(\d+)\s*/\s*(\d+)")
_AMERICAN_RE = re.compile(r"[+-]\d+(?:\.\d+)?")
_EVENS = frozenset({"evens", "evs", "even", "ev"})


def validate_decimal_odds(d: Decimal) -> Decimal:
    """Return ``d`` if it is a finite Decimal > 1, else OddsError."""
    if isinstance(d, bool) or not isinstance(d, Decimal):
        raise OddsError(f"odds must be a Decimal, got {type(d).__name__} {d!r}")
    if not d.is_finite() or d <= 1:
        raise OddsError(f"odds must be a finite number > 1, got {d}")
    return d


def _from_fraction(value: Fraction) -> Decimal:
    """Exact Decimal of ``value`` if it has one, else rounded up at ODDS_PLACES (see module)."""
    den = value.denominator
    # A fraction terminates in base 10 iff its reduced denominator has only the factors 2 and 5.
    for p in (2, 5):
        while den % p == 0:
            den //= p
    with localcontext() as ctx:
        ctx.prec = 200
        if den == 1:
            return Decimal(value.numerator) / Decimal(value.denominator)
        raw = Decimal(value.numerator) / Decimal(value.denominator)
        return raw.quantize(_QUANTUM, rounding=ROUND_CEILING)


def _as_fraction(d: Decimal) -> Fraction:
    """The fraction ``d`` stands for: a simple fraction it was rounded from, else ``d`` exactly."""
    exact = Fraction(d)
    simple = exact.limit_denominator(_MAX_DENOMINATOR)
    if simple != exact and _from_fraction(simple) == d:
        return simple
    return exact


def parse_odds(text: str) -> Decimal:
    """Parse decimal (``"2.10"``), fractional (``"7/4"``, ``"evens"``) or American (``"+175"``).

    American odds need their sign: an unsigned number is read as decimal odds.
    """
    if not isinstance(text, str):
        raise OddsError(f"odds text must be a string, got {type(text).__name__}")
    t = text.strip()
    if t.lower() in _EVENS:
        return Decimal(2)
    if m := _FRACTIONAL_RE.fullmatch(t):
        num, den = int(m.group(1)), int(m.group(2))
        if num == 0 or den == 0:
            raise OddsError(f"fractional odds need a positive numerator and denominator: {text!r}")
        return _from_fraction(1 + Fraction(num, den))
    if _AMERICAN_RE.fullmatch(t):
        v = Fraction(Decimal(t))
        if abs(v) < 100:
            raise OddsError(f"American odds must be +100 or more, or -100 or less: {text!r}")
        return _from_fraction(1 + v / 100 if v > 0 else 1 + 100 / -v)
    if _DECIMAL_RE.fullmatch(t):
        return validate_decimal_odds(Decimal(t))
    raise OddsError(f"not decimal, fractional or American odds: {text!r}")


def decimal_to_fractional(d: Decimal) -> str:
    """Decimal odds to reduced fractional odds: 2.75 -> "7/4", 2 -> "1/1", 1.4 -> "2/5"."""
    f = _as_fraction(validate_decimal_odds(d)) - 1
    return f"{f.numerator}/{f.denominator}"


def decimal_to_american(d: Decimal) -> str:
    """Decimal odds to American: 2.75 -> "+175", 1.4 -> "-250", 2 -> "+100".

    Exact when the American value is a finite decimal (trailing zeros dropped: 2.105 -> "+110.5").
    A price below 2 whose American value does not terminate (1.91 -> -109.89...) is rounded
    half-even to 2 places: American odds are then a display format, never used for money.
    """
    f = _as_fraction(validate_decimal_odds(d))
    if f >= 2:
        value, sign = (f - 1) * 100, "+"
    else:
        value, sign = 100 / (f - 1), "-"
    exact = _from_fraction(value)
    if Fraction(exact) != value:
        with localcontext() as ctx:
            ctx.prec = 200
            exact = (Decimal(value.numerator) / Decimal(value.denominator)).quantize(
                Decimal("0.01"), rounding=ROUND_HALF_EVEN
            )
    return sign + _plain(exact)


def _plain(d: Decimal) -> str:
    """``d`` without trailing zeros or exponent: 175.00 -> "175", 110.50 -> "110.5"."""
    return format(d.normalize(), "f")
