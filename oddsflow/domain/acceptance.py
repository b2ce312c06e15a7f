"""Bet acceptance: pure rules deciding whether a bet request is taken, and at what price.

The streaming saga calls the pieces separately, because wallet state is partitioned by account
and market state by event: :func:`check_wallet` on the account's partition, :func:`check_leg` on
each leg's event partition, :func:`check_payout` once the bound odds are known. :func:`decide`
composes the same pieces over one :class:`AcceptanceState` (tests, replays, single-process use).

Rejections are *returned* as a :class:`RejectReason`, never raised. When several apply, the
lowest-valued reason wins (the enum is ordered by precedence), so a bet on a closed market with
too high a stake reports MARKET_CLOSED whichever check ran first.

Price: the bet binds to the market's current price at decision time. The request's price policy
says which current prices are acceptable: NONE only the requested price, HIGHER the requested
price or better, ANY every price.

In-play delay: a bet on an in-play market that passes every check is first *held* (hold until
now + ``bet_delay_ms_in_play``) and then decided again with ``held=True`` against the market as it
is then; a price move or suspension during the delay rejects it.

Liability, per market (one market id, so one line of a handicap or total), from singles:
``stakes_minor`` is every stake taken on the market and ``returns_minor[s]`` the returns owed if
selection ``s`` wins. The selection liability is the book's net loss if ``s`` wins,
``returns_minor[s] - stakes_minor`` (the stakes on the other selections are kept); the market
liability is the worst of them, and never below 0. This treats selections as exclusive: for
markets with overlapping selections (double chance) it is an approximation. Accumulators are
not attributed to markets; their exposure is bounded by the per-bet payout limit. A liability
check only rejects a bet that *raises* the liability above its limit, so a bet that lays off an
over-limit book is still taken.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import IntEnum, StrEnum

from oddsflow.domain.errors import MoneyError
from oddsflow.domain.markets import Leg
from oddsflow.domain.money import bounded, exact_product, payout_minor


class PricePolicy(StrEnum):
    NONE = "none"  # exact price only
    HIGHER = "higher"  # current >= requested
    ANY = "any"


class RejectReason(IntEnum):
    """Why a bet was rejected, ordered by precedence: the lowest applicable value is reported."""

    INVALID_REQUEST = 1
    MARKET_UNKNOWN = 2
    MARKET_CLOSED = 3  # closed, settled or cancelled
    MARKET_SUSPENDED = 4  # suspended or bet stop
    SELECTION_UNKNOWN = 5
    PRICE_CHANGED = 6
    STAKE_TOO_LOW = 7
    STAKE_TOO_HIGH = 8
    PAYOUT_TOO_HIGH = 9
    LIABILITY_SELECTION = 10
    LIABILITY_MARKET = 11
    INSUFFICIENT_FUNDS = 12


class MarketStatus(StrEnum):
    OPEN = "open"
    SUSPENDED = "suspended"
    BET_STOP = "bet_stop"
    CLOSED = "closed"
    SETTLED = "settled"
    CANCELLED = "cancelled"


_CLOSED = frozenset({MarketStatus.CLOSED, MarketStatus.SETTLED, MarketStatus.CANCELLED})
_SUSPENDED = frozenset({MarketStatus.SUSPENDED, MarketStatus.BET_STOP})


@dataclass(frozen=True)
class Limits:
    stake_minor_min: int = 10
    stake_minor_max: int = 100_000_00
    payout_minor_max: int = 1_000_000_00
    liability_minor_max_selection: int = 500_000_00
    liability_minor_max_market: int = 1_000_000_00
    bet_delay_ms_in_play: int = 5_000


@dataclass(frozen=True)
class MarketState:
    """A market as the acceptance rules see it; ``prices`` maps selection -> current odds."""

    market_id: str
    status: MarketStatus
    prices: Mapping[str, Decimal]
    in_play: bool = False
    version: int = 0


@dataclass(frozen=True)
class Liability:
    """The book's position on one market from accepted singles (see module docstring)."""

    stakes_minor: int = 0
    returns_minor: Mapping[str, int] = field(default_factory=dict)

    def selection_liability_minor(self, selection: str) -> int:
        """Net loss of the book if ``selection`` wins (negative: the book wins)."""
        return self.returns_minor.get(selection, 0) - self.stakes_minor

    def market_liability_minor(self) -> int:
        """The worst net loss over the selections, 0 if the book wins whatever happens."""
        return max([0, *(self.selection_liability_minor(s) for s in self.returns_minor)])

    def add(self, selection: str, stake_minor: int, return_minor: int) -> Liability:
        returns = dict(self.returns_minor)
        returns[selection] = returns.get(selection, 0) + return_minor
        return Liability(self.stakes_minor + stake_minor, returns)

    def remove(self, selection: str, stake_minor: int, return_minor: int) -> Liability:
        """Undo :meth:`add` (the bet was settled or voided)."""
        return self.add(selection, -stake_minor, -return_minor)


@dataclass(frozen=True)
class Wallet:
    """An account's money: ``balance_minor`` includes the ``reserved_minor`` held for bets."""

    balance_minor: int = 0
    reserved_minor: int = 0

    @property
    def available_minor(self) -> int:
        return self.balance_minor - self.reserved_minor


def _check_amount(amount_minor: int) -> None:
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor < 0:
        raise MoneyError(f"amount must be a non-negative int of minor units: {amount_minor!r}")


def reserve(wallet: Wallet, stake_minor: int) -> Wallet:
    """Hold ``stake_minor`` of the available money for a bet being decided."""
    _check_amount(stake_minor)
    if stake_minor > wallet.available_minor:
        raise MoneyError(f"cannot reserve {stake_minor}: {wallet.available_minor} available")
    reserved = bounded(wallet.reserved_minor + stake_minor, "reserved balance")
    return Wallet(wallet.balance_minor, reserved)


def release(wallet: Wallet, stake_minor: int) -> Wallet:
    """Give a reserved stake back (the bet was rejected)."""
    _check_amount(stake_minor)
    if stake_minor > wallet.reserved_minor:
        raise MoneyError(f"cannot release {stake_minor}: {wallet.reserved_minor} reserved")
    return Wallet(wallet.balance_minor, wallet.reserved_minor - stake_minor)


def commit(wallet: Wallet, stake_minor: int) -> Wallet:
    """The bet was accepted: the stake leaves both the reserve and the balance."""
    released = release(wallet, stake_minor)
    balance = bounded(released.balance_minor - stake_minor, "balance")
    return Wallet(balance, released.reserved_minor)


def credit(wallet: Wallet, amount_minor: int) -> Wallet:
    """Add ``amount_minor`` to the balance (a deposit or a payout; negative claws back a
    resettlement, which may take the balance below zero: the money was already paid).

    MoneyBoundError when the balance would leave the 64-bit range (``money.bounded``): the
    ledger and every sink store balances as signed 64-bit integers.
    """
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise MoneyError(f"amount must be an int of minor units: {amount_minor!r}")
    return Wallet(bounded(wallet.balance_minor + amount_minor, "balance"), wallet.reserved_minor)


@dataclass(frozen=True)
class BetRequest:
    bet_id: str
    account_id: str
    stake_minor: int
    currency: str
    legs: tuple[Leg, ...]
    price_policy: PricePolicy
    placed_at_ms: int

    @property
    def is_single(self) -> bool:
        return len(self.legs) == 1


@dataclass(frozen=True)
class LegVerdict:
    """One leg's check: a reason to reject, or the bound odds (and a hold for in-play)."""

    reason: RejectReason | None
    bound_odds: Decimal | None
    hold_until_ms: int | None


@dataclass(frozen=True)
class Decision:
    """The answer to a bet request.

    ``hold_until_ms`` (an addition to the saga contract) is set on a *pending* decision: the
    in-play bet passed every check and waits for its delay; it is neither accepted nor rejected
    (``reason`` None) until decided again with ``held=True``.
    """

    bet_id: str
    accepted: bool
    reason: RejectReason | None
    bound_odds: tuple[Decimal, ...]
    potential_return_minor: int
    hold_until_ms: int | None = None

    @property
    def pending(self) -> bool:
        return self.hold_until_ms is not None


_CURRENCY_RE = re.compile(r"[A-Z]{3}")


def check_request(request: BetRequest) -> RejectReason | None:
    """INVALID_REQUEST for a malformed request: ids, stake type, currency, legs."""
    stake = request.stake_minor
    if not request.legs or not all(isinstance(leg, Leg) for leg in request.legs):
        return RejectReason.INVALID_REQUEST
    events = [leg.event_id for leg in request.legs]
    if (
        not request.bet_id
        or not request.account_id
        or isinstance(stake, bool)
        or not isinstance(stake, int)
        or stake <= 0
        or not isinstance(request.currency, str)
        or not _CURRENCY_RE.fullmatch(request.currency)
        # two legs on one event are related contingencies: their prices are not independent
        or len(set(events)) != len(events)
    ):
        return RejectReason.INVALID_REQUEST
    try:
        PricePolicy(request.price_policy)
    except ValueError:
        return RejectReason.INVALID_REQUEST
    return None


def check_wallet(wallet: Wallet, request: BetRequest, limits: Limits) -> RejectReason | None:
    """Stake limits and funds (the reason with the lowest value)."""
    stake = request.stake_minor
    if stake < limits.stake_minor_min:
        return RejectReason.STAKE_TOO_LOW
    if stake > limits.stake_minor_max:
        return RejectReason.STAKE_TOO_HIGH
    if stake > wallet.available_minor:
        return RejectReason.INSUFFICIENT_FUNDS
    return None


def check_payout(
    request: BetRequest, bound_odds: Sequence[Decimal], limits: Limits
) -> RejectReason | None:
    """PAYOUT_TOO_HIGH when the potential return at the bound odds exceeds the per-bet limit."""
    if potential_return(request.stake_minor, bound_odds) > limits.payout_minor_max:
        return RejectReason.PAYOUT_TOO_HIGH
    return None


def potential_return(stake_minor: int, bound_odds: Sequence[Decimal]) -> int:
    """``payout_minor(stake, product of bound odds)``: the return if every leg wins."""
    return payout_minor(stake_minor, exact_product(tuple(bound_odds)))


def _price_ok(policy: PricePolicy, current: Decimal, requested: Decimal) -> bool:
    if policy is PricePolicy.NONE:
        return current == requested
    if policy is PricePolicy.HIGHER:
        return current >= requested
    return True


def liability_reason(
    liability: Liability, selection: str, stake_minor: int, return_minor: int, limits: Limits
) -> RejectReason | None:
    """The liability rule for a single: only a bet that raises a selection's or the market's
    liability above its limit is refused. The event partition's quota book applies it too."""
    after = liability.add(selection, stake_minor, return_minor)
    sel_after = after.selection_liability_minor(selection)
    if (
        sel_after > limits.liability_minor_max_selection
        and sel_after > liability.selection_liability_minor(selection)
    ):
        return RejectReason.LIABILITY_SELECTION
    market_after = after.market_liability_minor()
    if (
        market_after > limits.liability_minor_max_market
        and market_after > liability.market_liability_minor()
    ):
        return RejectReason.LIABILITY_MARKET
    return None


def check_leg(
    market: MarketState | None,
    liability: Liability,
    leg: Leg,
    request: BetRequest,
    limits: Limits,
    now_ms: int,
    held: bool = False,
) -> LegVerdict:
    """Market, selection and price checks for one leg; binds to the current price.

    For a single the payout and liability limits are checked here too, at the bound price
    (the market's partition owns the liability). An in-play leg that passes and has not been
    held yet gets ``hold_until_ms``.
    """
    if market is None or market.market_id != leg.market_id:
        return LegVerdict(RejectReason.MARKET_UNKNOWN, None, None)
    if market.status in _CLOSED:
        return LegVerdict(RejectReason.MARKET_CLOSED, None, None)
    if market.status in _SUSPENDED:
        return LegVerdict(RejectReason.MARKET_SUSPENDED, None, None)
    current = market.prices.get(leg.selection)
    if current is None:
        return LegVerdict(RejectReason.SELECTION_UNKNOWN, None, None)
    if not _price_ok(PricePolicy(request.price_policy), current, leg.odds):
        return LegVerdict(RejectReason.PRICE_CHANGED, None, None)
    if request.is_single:
        reason = check_payout(request, (current,), limits)
        if reason is None:
            returned = potential_return(request.stake_minor, (current,))
            reason = liability_reason(
                liability, leg.selection, request.stake_minor, returned, limits
            )
        if reason is not None:
            return LegVerdict(reason, current, None)
    if market.in_play and not held and limits.bet_delay_ms_in_play > 0:
        return LegVerdict(None, current, now_ms + limits.bet_delay_ms_in_play)
    return LegVerdict(None, current, None)


@dataclass(frozen=True)
class AcceptanceState:
    """Everything :func:`decide` reads, keyed: markets and liabilities by market id, decisions
    by bet id (one account's wallet)."""

    wallet: Wallet = field(default_factory=Wallet)
    markets: Mapping[str, MarketState] = field(default_factory=dict)
    liabilities: Mapping[str, Liability] = field(default_factory=dict)
    decisions: Mapping[str, Decision] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)


def decide(
    state: AcceptanceState, request: BetRequest, now_ms: int, held: bool = False
) -> Decision:
    """Decide a bet request (pure): the lowest applicable reason, or accepted at bound odds.

    A bet id already decided returns the stored decision (idempotent). A pending (held)
    decision is returned again unless this call is the re-check after the hold (``held=True``).
    """
    stored = state.decisions.get(request.bet_id)
    if stored is not None and not (stored.pending and held):
        return stored
    invalid = check_request(request)
    if invalid is not None:
        return Decision(request.bet_id, False, invalid, (), 0)
    wallet = state.wallet
    if stored is not None:  # re-check after the hold: the stake is ours, reserved at the hold
        wallet = release(wallet, request.stake_minor)
    reasons: list[RejectReason] = []
    bound: list[Decimal] = []
    holds: list[int] = []
    for leg in request.legs:
        mid = leg.market_id
        verdict = check_leg(
            state.markets.get(mid),
            state.liabilities.get(mid, Liability()),
            leg,
            request,
            state.limits,
            now_ms,
            held,
        )
        if verdict.reason is not None:
            reasons.append(verdict.reason)
        if verdict.bound_odds is not None:
            bound.append(verdict.bound_odds)
        if verdict.hold_until_ms is not None:
            holds.append(verdict.hold_until_ms)
    wallet_reason = check_wallet(wallet, request, state.limits)
    if wallet_reason is not None:
        reasons.append(wallet_reason)
    if len(bound) == len(request.legs) and not request.is_single:
        payout_reason = check_payout(request, bound, state.limits)
        if payout_reason is not None:
            reasons.append(payout_reason)
    if reasons:
        return Decision(request.bet_id, False, min(reasons), (), 0)
    returned = potential_return(request.stake_minor, bound)
    if holds:
        return Decision(request.bet_id, False, None, tuple(bound), returned, max(holds))
    return Decision(request.bet_id, True, None, tuple(bound), returned)


def evolve(state: AcceptanceState, decision: Decision, request: BetRequest) -> AcceptanceState:
    """The state after ``decision``: stake reserved (pending), committed (accepted, liability
    added for a single) or released (rejected after a hold); the decision is remembered.

    Applying a final decision for a bet id that already has one changes nothing (replays).
    """
    stored = state.decisions.get(decision.bet_id)
    if stored is not None and not stored.pending:
        return state
    if stored is not None and decision.pending:
        return state  # the same hold seen twice
    wallet = state.wallet
    liabilities = dict(state.liabilities)
    was_reserved = stored is not None
    if decision.pending:
        wallet = reserve(wallet, request.stake_minor)
    elif decision.accepted:
        if not was_reserved:
            wallet = reserve(wallet, request.stake_minor)
        wallet = commit(wallet, request.stake_minor)
        if request.is_single:
            leg = request.legs[0]
            before = liabilities.get(leg.market_id, Liability())
            liabilities[leg.market_id] = before.add(
                leg.selection, request.stake_minor, decision.potential_return_minor
            )
    elif was_reserved:
        wallet = release(wallet, request.stake_minor)
    decisions = {**state.decisions, decision.bet_id: decision}
    return replace(state, wallet=wallet, liabilities=liabilities, decisions=decisions)
