"""Provider-settled markets: a leg settled from the provider's verdict on its selection.

A provider such as Sportradar settles a market outcome by outcome: ``result`` 1 (won) or 0
(lost), a ``void_factor`` (the share of the stake refunded: 1 void, 0.5 half) and a
``dead_heat_factor`` (the share of the stake that wins when the selection tied). This module
turns that into the engine's :class:`~oddsflow.domain.settlement.LegSettlement`, whose factor
combines into a bet's return with ``settlement.combine`` (one rounding rule: payouts round down
to the minor unit, in ``money.payout_minor``)::

    result  void_factor  outcome    factor (d = dead_heat_factor, 1 if absent)
    1       none / 0     win        odds x d
    0       none / 0     lose       0
    any     1            void       1
    1       0.5          half_win   (odds x d + 1) / 2
    0       0.5          half_lose  1/2

Other void factors are refused (Sportradar sends only 0.5 and 1); a dead-heat factor only
affects a winning part. A ``bet_cancel`` voids the legs placed inside its window
(:func:`cancel_applies`), whatever the settlement says (:func:`provider_leg_state`); which
``certainty`` settles is a policy (:func:`certainty_action`).
Pure functions: no Kafka, Faust or database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum, StrEnum

from oddsflow.domain.errors import ResultError
from oddsflow.domain.settlement import LegSettlement, Outcome, factor_for

_HALF = Decimal("0.5")


class ProviderSettlementError(ResultError):
    """A provider verdict the engine cannot settle by (e.g. a void factor other than 0.5/1)."""


class Certainty(IntEnum):
    """How sure the provider is: ordered, so a confirmation outranks a live-scouted result."""

    LIVE_SCOUTED = 1
    CONFIRMED = 2


@dataclass(frozen=True)
class ProviderOutcome:
    """The provider's verdict on one selection."""

    result: int
    void_factor: Decimal | None = None
    dead_heat_factor: Decimal | None = None

    def __post_init__(self) -> None:
        if isinstance(self.result, bool) or self.result not in (0, 1):
            raise ProviderSettlementError(f"result must be 0 or 1, got {self.result!r}")
        vf = self.void_factor
        if vf is not None and (not isinstance(vf, Decimal) or vf not in (0, _HALF, 1)):
            raise ProviderSettlementError(f"void_factor must be 0.5 or 1, got {vf!r}")
        dh = self.dead_heat_factor
        if dh is not None and (
            not isinstance(dh, Decimal) or not dh.is_finite() or not 0 < dh <= 1
        ):
            raise ProviderSettlementError(f"dead_heat_factor must be in (0, 1], got {dh!r}")


def settle_leg_by_provider(odds: Decimal, verdict: ProviderOutcome) -> LegSettlement:
    """The leg's outcome and accumulator factor from the provider's verdict (table above)."""
    vf = verdict.void_factor or Decimal(0)
    won = verdict.result == 1
    if vf == 1:
        outcome = Outcome.VOID
    elif vf == _HALF:
        outcome = Outcome.HALF_WIN if won else Outcome.HALF_LOSE
    else:
        outcome = Outcome.WIN if won else Outcome.LOSE
    dead_heat = verdict.dead_heat_factor if won else None
    return LegSettlement(outcome, factor_for(outcome, odds, dead_heat))


def cancel_applies(placed_at_ms: int, start_ms: int | None, end_ms: int | None) -> bool:
    """Whether a bet placed at ``placed_at_ms`` is voided by a cancel window [start, end).

    No start: every bet placed before ``end``; no end: every bet placed at or after ``start``;
    neither: every bet on the market.
    """
    if start_ms is not None and placed_at_ms < start_ms:
        return False
    return end_ms is None or placed_at_ms < end_ms


class CertaintyPolicy(StrEnum):
    """Which certainty settles a market."""

    # Settle on the first (live-scouted) settlement, resettle if the confirmed one differs.
    SETTLE_LIVE_RESETTLE_CONFIRMED = "settle_live_resettle_confirmed"
    # Settle only on the confirmed settlement; live-scouted ones are ignored.
    CONFIRMED_ONLY = "confirmed_only"

    @property
    def minimum(self) -> Certainty:
        if self is CertaintyPolicy.CONFIRMED_ONLY:
            return Certainty.CONFIRMED
        return Certainty.LIVE_SCOUTED


class SettlementAction(IntEnum):
    IGNORE = 0
    SETTLE = 1
    RESETTLE = 2


def certainty_action(
    policy: CertaintyPolicy,
    incoming: Certainty,
    applied: Certainty | None,
    same_as_applied: bool = False,
) -> SettlementAction:
    """What to do with a provider settlement of certainty ``incoming``.

    ``applied`` is the certainty of the settlement the market's legs are settled by now (None:
    not settled, or rolled back); ``same_as_applied`` whether the incoming verdicts equal it.
    A lower certainty never overrides a higher one; an equal verdict changes nothing (only a
    difference is ever posted, through the engine's resettlement path).
    """
    incoming = Certainty(incoming)
    if incoming < policy.minimum:
        return SettlementAction.IGNORE
    if applied is None:
        return SettlementAction.SETTLE
    if incoming < applied or same_as_applied:
        return SettlementAction.IGNORE
    return SettlementAction.RESETTLE


@dataclass(frozen=True)
class CancelWindow:
    """An active ``bet_cancel``: bets placed in [start, end) are void (an open side unbounded)."""

    start_ms: int | None = None
    end_ms: int | None = None


def cancelled_by(placed_at_ms: int | None, window: CancelWindow) -> bool:
    """Whether ``window`` voids a leg placed at ``placed_at_ms``. A leg whose placement time
    is unknown is void only by a cancel without a window (every bet)."""
    if placed_at_ms is None:
        return window.start_ms is None and window.end_ms is None
    return cancel_applies(placed_at_ms, window.start_ms, window.end_ms)


def provider_leg_state(
    odds: Decimal,
    placed_at_ms: int | None,
    verdict: ProviderOutcome | None,
    cancels: Iterable[CancelWindow] = (),
) -> LegSettlement | None:
    """What a provider-settled leg is now; None: open (no verdict on its selection yet, or the
    settlement was rolled back).

    A cancel whose window holds the leg's placement voids it whatever the settlement says;
    without one, the provider's verdict settles it (:func:`settle_leg_by_provider`). So a
    rolled-back cancel gives the leg back exactly what the market's settlement says then: its
    settlement if it has one, else open.
    """
    if any(cancelled_by(placed_at_ms, c) for c in cancels):
        return LegSettlement(Outcome.VOID, Decimal(1))
    if verdict is None:
        return None
    return settle_leg_by_provider(odds, verdict)
