"""Typed errors of the domain core.

Every error is a ``ValueError`` (the input was wrong, not the program), so callers at the edge can
catch ``DomainError`` once and turn it into a rejection or an error line. Rejections of a bet
(``acceptance.RejectReason``) are *values*, not errors: a rejected bet is a normal outcome.
"""

from __future__ import annotations


class DomainError(ValueError):
    """Base of every error raised by ``oddsflow.domain``."""


class MoneyError(DomainError):
    """An amount that is not an exact number of minor units (or not a number at all)."""


class MoneyBoundError(MoneyError):
    """A sum of money that would leave the range an amount can be stored in (a signed 64-bit
    integer of minor units: Avro ``long``, Postgres ``bigint``)."""


class OddsError(DomainError):
    """Odds that cannot be parsed, are not > 1, or a pricing input that has no solution."""


class MarketError(DomainError):
    """Unknown market, selection or period, or a bad line for the market."""


class ResultError(DomainError):
    """A result is missing (no score for the period the leg needs) or inconsistent."""


class LedgerError(DomainError):
    """A transaction that does not balance or a malformed posting."""
