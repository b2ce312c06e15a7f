"""Money: integer minor units and THE rounding rule.

Every currency is carried with exactly 2 decimal places: ``MINOR_PER_UNIT = 100`` minor units per
unit (cents, pence). Stakes, returns, balances and postings are plain ``int`` minor units, never
float, so addition is exact and a ledger always balances.

The one rounding rule of the whole engine lives here, in :func:`payout_minor`:

    a return is computed exactly (stake x factor, with no intermediate rounding) and then rounded
    DOWN (floor) to the minor unit.

Rounding down means the book never pays a fraction of a cent it does not owe; every other module
calls :func:`payout_minor` instead of rounding on its own.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow

from oddsflow.domain.errors import DomainError, MoneyBoundError, MoneyError

MINOR_PER_UNIT = 100
"""Minor units per unit; the same 2 decimal places for every currency."""

AMOUNT_MINOR_MAX = 2**63 - 1
"""The largest amount (and balance) in minor units: what Avro ``long`` and Postgres ``bigint``
hold. A sum past it is refused (MoneyBoundError), never wrapped or truncated downstream."""
AMOUNT_MINOR_MIN = -(2**63)

_AMOUNT_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")

# Exact arithmetic for multiplications and additions of Decimals: a product of odds can have more
# digits than the default 28-digit context, and a silently rounded factor would move a payout by a
# cent. Inexact is trapped, so a result that does not fit raises instead of rounding.
EXACT = Context(prec=1000, traps=[Inexact, InvalidOperation, Overflow])


def exact_product(factors: list[Decimal] | tuple[Decimal, ...]) -> Decimal:
    """The exact product of ``factors`` (1 for none); DomainError if it needs > 1000 digits."""
    result = Decimal(1)
    try:
        for f in factors:
            result = EXACT.multiply(result, f)
    except (Inexact, Overflow) as exc:
        raise DomainError("product of factors does not fit 1000 digits") from exc
    return result


def bounded(amount_minor: int, what: str = "amount") -> int:
    """``amount_minor`` if it fits a signed 64-bit integer, else MoneyBoundError."""
    if not AMOUNT_MINOR_MIN <= amount_minor <= AMOUNT_MINOR_MAX:
        raise MoneyBoundError(f"{what} {amount_minor} is outside the 64-bit range of minor units")
    return amount_minor


def to_minor(amount: Decimal | str | int) -> int:
    """Exact conversion of an amount in units to minor units: ``"10.5"`` -> 1050.

    MoneyError when the amount has more than 2 decimals (it would need rounding, and money
    entering the system is never rounded), is not finite, or is not a number.
    """
    if isinstance(amount, bool):  # bool is an int; True is not an amount
        raise MoneyError(f"not an amount: {amount!r}")
    if isinstance(amount, int):
        return amount * MINOR_PER_UNIT
    if isinstance(amount, str):
        text = amount.strip()
        if not _AMOUNT_RE.fullmatch(text):
            raise MoneyError(f"not a decimal amount: {amount!r}")
        value = Decimal(text)
    elif isinstance(amount, Decimal):
        value = amount
    else:
        raise MoneyError(f"not an amount: {amount!r} (money is never float)")
    if not value.is_finite():
        raise MoneyError(f"amount is not finite: {amount!r}")
    # Integer arithmetic on the exact ratio (as fast as the check needs; no Fraction objects).
    num, den = value.as_integer_ratio()
    scaled, rest = divmod(num * MINOR_PER_UNIT, den)
    if rest:
        raise MoneyError(f"amount has more than 2 decimals: {amount!r}")
    return scaled


def from_minor(minor: int) -> Decimal:
    """Minor units back to a Decimal with exactly 2 places: 1050 -> Decimal("10.50")."""
    return Decimal(minor).scaleb(-2)


def format_minor(minor: int) -> str:
    """Minor units as text with 2 decimals: 1000 -> "10.00", -50 -> "-0.50"."""
    sign = "-" if minor < 0 else ""
    units, cents = divmod(abs(minor), MINOR_PER_UNIT)
    return f"{sign}{units}.{cents:02d}"


def payout_minor(stake_minor: int, factor: Decimal) -> int:
    """THE rounding rule: ``floor(stake_minor * factor)``, computed exactly.

    ``factor`` is what one unit of stake returns (odds for a winning single, the product of leg
    factors for an accumulator). The product is taken as an exact fraction so no digit is lost
    before the single floor.
    """
    if isinstance(stake_minor, bool) or not isinstance(stake_minor, int) or stake_minor < 0:
        raise MoneyError(f"stake must be a non-negative int of minor units: {stake_minor!r}")
    if not isinstance(factor, Decimal) or not factor.is_finite() or factor < 0:
        raise MoneyError(f"factor must be a finite non-negative Decimal: {factor!r}")
    num, den = factor.as_integer_ratio()
    return stake_minor * num // den
