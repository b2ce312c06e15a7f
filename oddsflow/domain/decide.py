"""One hop to a bet decision: the account partition decides a bet against its market view.

:func:`decide` composes the acceptance rules the saga spreads over three hops
(``acceptance.check_request``, ``check_wallet``, ``check_leg`` per leg against the view's
``MarketState``, ``check_payout`` for accumulators, the price policy and bound price, the in-play
hold), the wallet transitions (``reserve`` / ``commit`` / ``release``), the ledger postings of
``ledger`` and the liability quota of ``quota``, into one pure step with a frozen result:

* ``ACCEPTED``: bound odds per leg, the potential return (``potential_return``: the one floor
  rule), the ledger transactions (``reserve`` and ``accept``, or only ``accept`` after a hold:
  the ids the sinks already know), the wallet and quotas after, the quota spend of a single.
* ``REJECTED``: the lowest applicable ``RejectReason`` (the documented precedence, over every
  check at once). Nothing moves, except after a hold, where the stake reserved at the hold is
  released (ledger ``release``).
* ``HELD``: an in-play bet that passed: its stake is reserved (ledger ``reserve``) until
  ``hold_until_ms``; the caller decides it again then with ``held=True`` against the view as it is
  then (a suspension or a price move during the delay rejects it, as today). A held single's
  liability is settled at the re-check (quota, or the event partition), where the saga also
  checks it before the hold.
* ``NEEDS_AUTHORITATIVE``: a single that passed every local check but whose added liability the
  partition's quota does not cover. Its stake is reserved and ``authoritative`` names the request
  for the event partition, which decides it with the exact liability (``quota.authoritative``,
  today's ``check_leg`` there). Never a rejection for a dry quota.

Liability: ``check_leg`` checks a single's liability against the book it is given; here the book
is on another partition, so singles are checked against :data:`_NO_BOOK` (a book no single can
push over a limit) and the liability is bounded by the quota instead. Accumulators carry no
market liability (as today: their exposure is bounded by the per-bet payout limit).

Staleness (the issue's "how old may the price be"): the bet binds to the latest published price
the worker's view has seen. For an **in-play** market, a view entry older than
``view_age_ms_max_in_play`` (``now_ms - priced_ts``; unknown age counts as too old) makes the
leg ``MARKET_SUSPENDED``, at the first check and at the re-check after the hold. Refused, not
held: the entry's age is the book's silence on a live market (the pricer republishes on every
provider update) or a view that fell behind; either way the book cannot vouch for the price, and
holding would tie the stake up for as long as the feed stays quiet, while a refused customer may
ask again. It is the suspension a sportsbook applies when its live feed goes silent, and it
ranks as one (below CLOSED, above every price and money reason). The default,
:data:`VIEW_AGE_MS_MAX_IN_PLAY` (15 s), is three in-play bet delays: a held bet is re-checked
when its delay ends, a little after it in practice, and a market that stayed quiet through the
delay (no price move, no suspension) is what the delay exists to accept, so the limit must sit
well above the delay; a live book silent for three delays is treated as suspended. An operator
tunes it to the feed's cadence (``Settings.view_age_ms_max_in_play``). Pre-match entries are not
age-limited: their price stands until the book publishes another (status changes are published
the same way).

Reason precedence differs from the streaming saga of ``processors/wallet.py`` in one place: that
saga rejects on stake limits and funds *before* the legs are checked, so a too-high stake on a
closed market reports STAKE_TOO_HIGH there; here, as ``acceptance.decide`` documents, the lowest
reason over every check wins (MARKET_CLOSED). And a single that lacks both funds and quota is
refused INSUFFICIENT_FUNDS here (nothing can be reserved to ask the event partition), where the
saga would report a liability reason if the book was full too.

Duplicate bet ids are the adapter's: it answers a stored decision before calling :func:`decide`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import IntEnum
from typing import Protocol

from oddsflow.domain import ledger
from oddsflow.domain.acceptance import (
    BetRequest,
    Decision,
    Liability,
    Limits,
    MarketState,
    RejectReason,
    Wallet,
    check_leg,
    check_payout,
    check_request,
    check_wallet,
    commit,
    potential_return,
    release,
    reserve,
)
from oddsflow.domain.quota import AuthRequest, Quotas, Spend, spend

VIEW_AGE_MS_MAX_IN_PLAY = 15_000
"""Default oldest in-play view entry a bet may bind to (see the module docstring)."""

# A book no single can push over a limit: its selection liabilities are hugely negative and its
# market liability 0, so check_leg's liability rule passes and only the quota bounds liability.
_NO_BOOK = Liability(stakes_minor=10**30)


class MarketLookup(Protocol):
    """What :func:`decide` reads of a market view (``processors.market_view.MarketView``)."""

    def get(self, market_id: str) -> MarketState | None: ...

    def age_ms(self, market_id: str, now_ms: int) -> int | None: ...


@dataclass(frozen=True)
class ViewEntry:
    state: MarketState
    priced_ts_ms: int


@dataclass(frozen=True)
class ViewSnapshot:
    """A plain, frozen market view (tests, replays, single-process use)."""

    entries: Mapping[str, ViewEntry] = field(default_factory=dict)

    def get(self, market_id: str) -> MarketState | None:
        entry = self.entries.get(market_id)
        return None if entry is None else entry.state

    def age_ms(self, market_id: str, now_ms: int) -> int | None:
        entry = self.entries.get(market_id)
        return None if entry is None else max(0, now_ms - entry.priced_ts_ms)


class Outcome(IntEnum):
    ACCEPTED = 1
    REJECTED = 2
    HELD = 3
    NEEDS_AUTHORITATIVE = 4


@dataclass(frozen=True)
class OneHopDecision:
    """The result of :func:`decide`; ``wallet`` and ``quotas`` are the states after it."""

    outcome: Outcome
    bet_id: str
    reason: RejectReason | None
    bound_odds: tuple[Decimal, ...]
    potential_return_minor: int
    wallet: Wallet
    quotas: Quotas
    transactions: tuple[ledger.Transaction, ...] = ()
    spends: tuple[Spend, ...] = ()
    hold_until_ms: int | None = None
    authoritative: AuthRequest | None = None

    @property
    def final(self) -> bool:
        return self.outcome in (Outcome.ACCEPTED, Outcome.REJECTED)

    def decision(self) -> Decision:
        """The saga's ``Decision`` value (the ``bet_decision`` shape; pending when held)."""
        if self.outcome is Outcome.NEEDS_AUTHORITATIVE:
            raise ValueError(f"bet {self.bet_id} is not decided yet: ask the event partition")
        accepted = self.outcome is Outcome.ACCEPTED
        return Decision(
            self.bet_id,
            accepted,
            self.reason,
            self.bound_odds if self.outcome is not Outcome.REJECTED else (),
            self.potential_return_minor if self.outcome is not Outcome.REJECTED else 0,
            self.hold_until_ms,
        )


def stale_reason(
    market: MarketState | None, age_ms: int | None, view_age_ms_max_in_play: int
) -> RejectReason | None:
    """MARKET_SUSPENDED for an in-play market whose view entry is too old (or of unknown age)."""
    if market is None or not market.in_play:
        return None
    if age_ms is None or age_ms > view_age_ms_max_in_play:
        return RejectReason.MARKET_SUSPENDED
    return None


def decide(
    wallet: Wallet,
    request: BetRequest,
    view: MarketLookup,
    quota: Quotas,
    limits: Limits,
    now_ms: int,
    *,
    held: bool = False,
    view_age_ms_max_in_play: int = VIEW_AGE_MS_MAX_IN_PLAY,
) -> OneHopDecision:
    """Decide ``request`` in one step (pure). ``held=True`` is the re-check when the hold ends:
    ``wallet`` then still has the stake reserved from the hold."""
    bet_id, stake = request.bet_id, request.stake_minor
    invalid = check_request(request)
    if invalid is not None:  # (never for a held request: it passed this check to be held)
        return OneHopDecision(Outcome.REJECTED, bet_id, invalid, (), 0, wallet, quota)
    free = release(wallet, stake) if held else wallet
    reasons: list[RejectReason] = []
    bound: list[Decimal] = []
    holds: list[int] = []
    book = _NO_BOOK if request.is_single else Liability()
    for leg in request.legs:
        market = view.get(leg.market_id)
        verdict = check_leg(market, book, leg, request, limits, now_ms, held)
        stale = stale_reason(market, view.age_ms(leg.market_id, now_ms), view_age_ms_max_in_play)
        for reason in (verdict.reason, stale):
            if reason is not None:
                reasons.append(reason)
        if verdict.bound_odds is not None:
            bound.append(verdict.bound_odds)
        if verdict.hold_until_ms is not None:
            holds.append(verdict.hold_until_ms)
    wallet_reason = check_wallet(free, request, limits)
    if wallet_reason is not None:
        reasons.append(wallet_reason)
    if not request.is_single and len(bound) == len(request.legs):
        payout_reason = check_payout(request, bound, limits)
        if payout_reason is not None:
            reasons.append(payout_reason)
    if reasons:
        txs = (_tx(ledger.release_stake, request),) if held else ()
        return OneHopDecision(Outcome.REJECTED, bet_id, min(reasons), (), 0, free, quota, txs)
    odds, returned = tuple(bound), potential_return(stake, bound)
    reserved = reserve(free, stake)
    reserve_txs = () if held else (_tx(ledger.reserve_stake, request),)
    if holds:
        return OneHopDecision(
            Outcome.HELD,
            bet_id,
            None,
            odds,
            returned,
            reserved,
            quota,
            reserve_txs,
            hold_until_ms=max(holds),
        )
    spends: tuple[Spend, ...] = ()
    if request.is_single:
        leg = request.legs[0]
        result = spend(quota, bet_id, leg.market_id, leg.selection, stake, returned)
        if result.spend is None:
            return OneHopDecision(
                Outcome.NEEDS_AUTHORITATIVE,
                bet_id,
                None,
                odds,
                returned,
                reserved,
                quota,
                reserve_txs,
                authoritative=result.request,
            )
        quota, spends = result.quotas, (result.spend,)
    txs = (*reserve_txs, _tx(ledger.accept_stake, request))
    accepted = commit(reserved, stake)
    return OneHopDecision(
        Outcome.ACCEPTED, bet_id, None, odds, returned, accepted, quota, txs, spends
    )


class _Posting(Protocol):
    def __call__(
        self, bet_id: str, account_id: str, stake_minor: int, currency: str
    ) -> ledger.Transaction: ...


def _tx(kind: _Posting, request: BetRequest) -> ledger.Transaction:
    # The one place the ledger call shape is used (the per-currency wallet change adapts here).
    return kind(request.bet_id, request.account_id, request.stake_minor, request.currency)
