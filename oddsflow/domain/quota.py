"""Exact liability by quotas: the demarcation protocol (escrow method) for market liability.

The event partition owns each market's liability (``acceptance.Liability``) and its limits. So
that the account partition can accept most singles without a round trip, the event partition
hands every account partition a *quota* per (market, selection): liability headroom it may spend
on its own. The rules keep the limit exact:

* **Added liability.** A single of stake ``k`` at bound return ``r`` on selection ``s`` raises
  the selection liability of ``s`` by ``r - k`` and lowers every other selection's by ``k``
  (``Liability.add``). Quotas count only the rise on ``s`` (:func:`added_liability_minor`); the
  falls are learned later and only ever free headroom, so counting them late is safe.
* **Cap.** Within limits, the market liability is the worst selection liability, so a bet fits
  both of ``check_leg``'s limits exactly when the selection liability after it is at most
  ``min(liability_minor_max_selection, liability_minor_max_market)`` (:func:`cap_minor`).
* **Grants.** The event side records every grant as *outstanding* for (partition, selection)
  until it learns that it was spent (the accepted leg) or returned. It never grants more than
  the selection's headroom: ``cap - learned selection liability - outstanding grants`` of every
  partition (:func:`headroom_minor`). A partition spends only what it holds, so the true
  liability is at most the learned one plus the outstanding grants, which is at most the cap.
* **Authoritative path.** A single the local quota cannot cover goes to the event partition
  (:func:`authoritative`). It is accepted if it fits the headroom net of outstanding grants.
  Otherwise, if any partition still holds a grant on the market, the event side *recalls* every
  grant on the market (:class:`Recall`) and parks the bet; each account partition answers with
  what it has left (:class:`Return`), sent after the spends it made, on the same ordered channel.
  When no grant on the market is outstanding, every spend has been learned, the learned
  liability is the true one and the parked bets are decided exactly (:func:`learn_return`). So a
  limit is never exceeded, and no bet that fits the true headroom is refused for a dry quota.
  The recall covers every selection of the market because a stake on one selection lowers the
  liability of the others: only with nothing outstanding on the whole market is the learned
  book the true one.
* **Edges.** A single whose return floors to its stake adds nothing and needs no quota; it is
  learned late and can only lower the other selections' liability (so the exactness above is
  up to such singles in flight). A limit lowered below the current liability leaves no headroom:
  nothing is granted, and the authoritative path keeps ``check_leg``'s rule that a bet lowering
  an over-limit liability is still taken.

Channels are Kafka partitions: grants and recalls travel event partition -> account partition,
spends (accepted legs) and returns account partition -> event partition, each in order. The
functions here are pure; redelivery idempotency (a spend learned twice) is the adapters' (by
bet id, as the event side already keys open legs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from oddsflow.domain.acceptance import Liability, Limits, RejectReason, liability_reason
from oddsflow.domain.errors import DomainError


class QuotaError(DomainError):
    """A quota message that contradicts the books (a spend or return larger than granted)."""


PPM = 1_000_000


@dataclass(frozen=True)
class QuotaPolicy:
    """How the event side splits headroom: each of ``partitions`` account partitions is topped up
    to ``share_ppm`` millionths of the headroom left by the learned liability, divided by the
    number of partitions (see :func:`top_up`); the rest stays with the event partition for the
    authoritative path. Grants below ``grant_minor_min`` are not worth a message, and a
    partition is topped up only once it has spent ``refill_ppm`` millionths of its share: a
    grant per spend made the event side answer every accepted single with a message (a
    100,000-bet market was 100,000 grants for the wallets to apply before its settlement)."""

    partitions: int = 1
    share_ppm: int = 500_000
    grant_minor_min: int = 1
    refill_ppm: int = 0

    def __post_init__(self) -> None:
        if (
            self.partitions < 1
            or not 0 <= self.share_ppm <= PPM
            or not 0 <= self.refill_ppm <= PPM
            or self.grant_minor_min < 1
        ):
            raise QuotaError(f"bad quota policy: {self}")


# ---------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Grant:
    """Event -> account partition: ``amount_minor`` more headroom on (market, selection)."""

    market_id: str
    selection: str
    partition: int
    amount_minor: int


@dataclass(frozen=True)
class Recall:
    """Event -> account partition: return every quota you hold on ``market_id``."""

    market_id: str
    partition: int


@dataclass(frozen=True)
class Spend:
    """Account -> event partition (carried by the accepted leg): a single taken on a quota."""

    bet_id: str
    market_id: str
    selection: str
    partition: int
    stake_minor: int
    return_minor: int

    @property
    def added_minor(self) -> int:
        return added_liability_minor(self.stake_minor, self.return_minor)


@dataclass(frozen=True)
class Return:
    """Account -> event partition: unspent quota given back (on a recall, or voluntarily)."""

    market_id: str
    selection: str
    partition: int
    amount_minor: int


@dataclass(frozen=True)
class AuthRequest:
    """A single its partition's quota could not cover, to be decided by the event partition."""

    bet_id: str
    market_id: str
    selection: str
    partition: int
    stake_minor: int
    return_minor: int

    @property
    def added_minor(self) -> int:
        return added_liability_minor(self.stake_minor, self.return_minor)


@dataclass(frozen=True)
class AuthVerdict:
    """The event partition's liability verdict on an :class:`AuthRequest` (None: accepted)."""

    bet_id: str
    partition: int
    reason: RejectReason | None


# ---------------------------------------------------------------------------- rules


def added_liability_minor(stake_minor: int, return_minor: int) -> int:
    """How much a single raises its own selection's liability: return - stake (never < 0)."""
    return max(0, return_minor - stake_minor)


def cap_minor(limits: Limits) -> int:
    """The highest selection liability that keeps both the selection and the market limit."""
    return min(limits.liability_minor_max_selection, limits.liability_minor_max_market)


# ---------------------------------------------------------------------------- account side


@dataclass(frozen=True)
class Quotas:
    """One account partition's quotas: (market_id, selection) -> minor units it may spend."""

    partition: int = 0
    amounts: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def available_minor(self, market_id: str, selection: str) -> int:
        return self.amounts.get((market_id, selection), 0)

    def _with(self, key: tuple[str, str], amount_minor: int) -> Quotas:
        amounts = dict(self.amounts)
        if amount_minor:
            amounts[key] = amount_minor
        else:
            amounts.pop(key, None)
        return replace(self, amounts=amounts)


@dataclass(frozen=True)
class SpendResult:
    """:func:`spend`'s answer: ``spend`` set on the fast path (quota reduced), None when the
    bet must take the authoritative path (``quotas`` unchanged, ``request`` to send)."""

    quotas: Quotas
    spend: Spend | None
    request: AuthRequest | None

    @property
    def fast(self) -> bool:
        return self.spend is not None


def receive_grant(quotas: Quotas, grant: Grant) -> Quotas:
    if grant.partition != quotas.partition or grant.amount_minor < 0:
        raise QuotaError(f"grant {grant} is not for partition {quotas.partition}")
    key = (grant.market_id, grant.selection)
    return quotas._with(key, quotas.available_minor(*key) + grant.amount_minor)


def spend(
    quotas: Quotas,
    bet_id: str,
    market_id: str,
    selection: str,
    stake_minor: int,
    return_minor: int,
) -> SpendResult:
    """A single's added liability within the local quota: fast path, quota reduced by it.
    Otherwise the bet must go to the event partition (never a rejection here)."""
    added = added_liability_minor(stake_minor, return_minor)
    held = quotas.available_minor(market_id, selection)
    if added <= held:
        s = Spend(bet_id, market_id, selection, quotas.partition, stake_minor, return_minor)
        return SpendResult(quotas._with((market_id, selection), held - added), s, None)
    req = AuthRequest(bet_id, market_id, selection, quotas.partition, stake_minor, return_minor)
    return SpendResult(quotas, None, req)


def return_unused(quotas: Quotas, market_id: str) -> tuple[Quotas, tuple[Return, ...]]:
    """Give back every quota held on ``market_id`` (on a :class:`Recall`, or when the market
    closes or the partition is handed over)."""
    returns = tuple(
        Return(mid, sel, quotas.partition, amount)
        for (mid, sel), amount in sorted(quotas.amounts.items())
        if mid == market_id and amount > 0
    )
    amounts = {k: v for k, v in quotas.amounts.items() if k[0] != market_id}
    return replace(quotas, amounts=amounts), returns


def on_recall(quotas: Quotas, recall: Recall) -> tuple[Quotas, tuple[Return, ...]]:
    if recall.partition != quotas.partition:
        raise QuotaError(f"recall {recall} is not for partition {quotas.partition}")
    return return_unused(quotas, recall.market_id)


# ---------------------------------------------------------------------------- event side


@dataclass(frozen=True)
class QuotaBook:
    """The event partition's view of one market: learned liability, outstanding grants per
    (partition, selection), and the recall in progress with the bets parked behind it."""

    market_id: str
    liability: Liability = field(default_factory=Liability)
    outstanding: Mapping[tuple[int, str], int] = field(default_factory=dict)
    recalling: bool = False
    parked: tuple[AuthRequest, ...] = ()

    def outstanding_minor(self, selection: str | None = None) -> int:
        return sum(v for (_, s), v in self.outstanding.items() if selection in (None, s))

    def held_by(self, partition: int, selection: str) -> int:
        return self.outstanding.get((partition, selection), 0)

    def _with(self, key: tuple[int, str], amount_minor: int) -> QuotaBook:
        if amount_minor < 0:
            raise QuotaError(f"{self.market_id}: more spent or returned than granted for {key}")
        out = dict(self.outstanding)
        if amount_minor:
            out[key] = amount_minor
        else:
            out.pop(key, None)
        return replace(self, outstanding=out)


def headroom_minor(book: QuotaBook, selection: str, limits: Limits) -> int:
    """Liability the event side may still give away or take on ``selection`` (never < 0)."""
    used = book.liability.selection_liability_minor(selection) + book.outstanding_minor(selection)
    return max(0, cap_minor(limits) - used)


def grant(
    book: QuotaBook, partition: int, selection: str, amount_minor: int, limits: Limits
) -> tuple[QuotaBook, Grant | None]:
    """Grant up to ``amount_minor`` to ``partition``, clipped to the headroom; none while a
    recall is in progress (it would never end)."""
    amount = min(amount_minor, headroom_minor(book, selection, limits))
    if book.recalling or amount <= 0:
        return book, None
    key = (partition, selection)
    book = book._with(key, book.held_by(*key) + amount)
    return book, Grant(book.market_id, selection, partition, amount)


def top_up(
    book: QuotaBook, partition: int, selection: str, limits: Limits, policy: QuotaPolicy
) -> tuple[QuotaBook, Grant | None]:
    """Bring ``partition``'s quota on ``selection`` back to its share: ``share_ppm`` of the
    headroom left by the learned liability, split over the partitions (clipped to what is
    free net of the other grants)."""
    held = book.held_by(partition, selection)
    learned = book.liability.selection_liability_minor(selection)
    target = max(0, cap_minor(limits) - learned) * policy.share_ppm // (PPM * policy.partitions)
    if target - held < max(policy.grant_minor_min, target * policy.refill_ppm // PPM):
        return book, None
    return grant(book, partition, selection, target - held, limits)


def split(
    book: QuotaBook, selections: Iterable[str], limits: Limits, policy: QuotaPolicy
) -> tuple[QuotaBook, tuple[Grant, ...]]:
    """Top up every partition on every selection (a market opens, or a recall ended)."""
    grants: list[Grant] = []
    for selection in selections:
        for partition in range(policy.partitions):
            book, g = top_up(book, partition, selection, limits, policy)
            if g is not None:
                grants.append(g)
    return book, tuple(grants)


def learn_spend(
    book: QuotaBook, s: Spend, limits: Limits
) -> tuple[QuotaBook, tuple[AuthVerdict, ...]]:
    """The event side learns an accepted single taken on a quota: the liability is now known,
    the grant it used is no longer outstanding. If that was the last outstanding grant of a
    recall (a partition that spent its whole quota has nothing to return), the parked bets
    are decided (see :func:`learn_return`)."""
    key = (s.partition, s.selection)
    book = book._with(key, book.held_by(*key) - s.added_minor)
    book = replace(book, liability=book.liability.add(s.selection, s.stake_minor, s.return_minor))
    return _maybe_finish_recall(book, limits)


def _decide_exact(
    book: QuotaBook, req: AuthRequest, limits: Limits
) -> tuple[QuotaBook, AuthVerdict]:
    reason = liability_reason(
        book.liability, req.selection, req.stake_minor, req.return_minor, limits
    )
    if reason is None:
        book = replace(
            book, liability=book.liability.add(req.selection, req.stake_minor, req.return_minor)
        )
    return book, AuthVerdict(req.bet_id, req.partition, reason)


def _accept(book: QuotaBook, req: AuthRequest) -> tuple[QuotaBook, AuthVerdict]:
    liability = book.liability.add(req.selection, req.stake_minor, req.return_minor)
    return replace(book, liability=liability), AuthVerdict(req.bet_id, req.partition, None)


def authoritative(
    book: QuotaBook, req: AuthRequest, limits: Limits
) -> tuple[QuotaBook, tuple[AuthVerdict, ...], tuple[Recall, ...]]:
    """Decide a single's liability on the event partition.

    Accepted at once if it fits the headroom net of every outstanding grant. Else, with grants
    outstanding on the market, they are recalled and the bet parked until they are back
    (verdicts then come from :func:`learn_return`); with none outstanding the learned liability
    is exact and the bet is decided by ``check_leg``'s liability rule.
    """
    if book.recalling:
        return replace(book, parked=(*book.parked, req)), (), ()
    if req.added_minor <= headroom_minor(book, req.selection, limits):
        book, verdict = _accept(book, req)
        return book, (verdict,), ()
    if book.outstanding:
        partitions = sorted({p for p, _ in book.outstanding})
        recalls = tuple(Recall(book.market_id, p) for p in partitions)
        return replace(book, recalling=True, parked=(req,)), (), recalls
    book, verdict = _decide_exact(book, req, limits)
    return book, (verdict,), ()


def learn_return(
    book: QuotaBook, r: Return, limits: Limits
) -> tuple[QuotaBook, tuple[AuthVerdict, ...]]:
    """Unspent quota is back. When it completes a recall, the parked bets are decided exactly
    in arrival order and the recall ends (the caller then :func:`split` s again)."""
    key = (r.partition, r.selection)
    book = book._with(key, book.held_by(*key) - r.amount_minor)
    return _maybe_finish_recall(book, limits)


def _maybe_finish_recall(
    book: QuotaBook, limits: Limits
) -> tuple[QuotaBook, tuple[AuthVerdict, ...]]:
    if not book.recalling or book.outstanding:
        return book, ()
    verdicts: list[AuthVerdict] = []
    for req in book.parked:
        book, v = _decide_exact(book, req, limits)
        verdicts.append(v)
    return replace(book, recalling=False, parked=()), tuple(verdicts)
