"""Event-side handlers: pricing, market status, the event side of a bet and leg settlement.

Everything about one sporting event lives on the partition of its ``event_id``: its
markets (status and prices), the open legs placed on it and each market's liability book.
These handlers are the thin adapters between decoded Avro records and the pure domain
functions; the Faust agents in ``processors.app`` only decode, call them and produce.

Bets are decided on the account partition (``processors.wallet``, one hop); the event side
is off the decision path: ``on_accepted_leg`` records each accepted leg for settlement and,
for a single taken on a quota, learns its liability and tops the quota up
(``domain.quota``); ``on_leg_command`` is the authoritative path for a single no quota
covered. Liability books are kept per market and currency in the ``liabilities`` table.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from oddsflow.domain.acceptance import (
    Liability,
    Limits,
    MarketState,
    MarketStatus,
    RejectReason,
)
from oddsflow.domain.errors import DomainError
from oddsflow.domain.ledger import ID_SEPARATOR, scoped_id
from oddsflow.domain.markets import Leg, MarketType, Period, canonical_selections, market_id
from oddsflow.domain.pricing import Method, price
from oddsflow.domain.quota import (
    AuthRequest,
    AuthVerdict,
    Grant,
    QuotaBook,
    QuotaPolicy,
    Recall,
    Return,
    Spend,
    authoritative,
    learn_return,
    learn_spend,
    split,
    top_up,
)
from oddsflow.domain.settlement import EventStatus, LegSettlement, Result, settle_leg
from oddsflow.metrics import PRICE_PUBLISH_LAG_SECONDS, STALE_UPDATES
from oddsflow.processors.emit import key_partition
from oddsflow.processors.quota_records import (
    book_from_record,
    book_record,
    event_seq_key,
    is_fresh,
    partition_key,
)
from oddsflow.processors.state import Effects, Store

ODDS_Q = Decimal("0.0001")
PROB_Q = Decimal("0.0000000001")
CLOSED_STATUSES = {"closed", "settled", "cancelled"}


# Legs per leg_settlements message: ~60 bytes each, well inside Kafka's 1 MB message limit.
SETTLEMENT_CHUNK_LEGS = 500
# Open legs a result settles per event before handing the rest on (MarketsHandler._settle_step).
SETTLE_STEP_LEGS = 10_000


class InputError(ValueError):
    """A well-formed message whose content cannot be processed (goes to the dead-letter topic)."""


@dataclass(frozen=True)
class Book:
    """The book's configuration: margin, de-margining method and acceptance limits."""

    margin: Decimal = Decimal("0.05")
    method: Method = Method.PROPORTIONAL
    limits: Limits = field(default_factory=Limits)


def leg_from_record(leg: dict[str, Any]) -> Leg:
    try:
        line = leg.get("line")
        return Leg(
            event_id=leg["event_id"],
            market=MarketType(leg["market_type"]),
            period=Period(leg["period"]),
            selection=leg["selection"],
            odds=Decimal(leg["odds"]),
            line=Decimal(line) if line not in (None, "") else None,
        )
    except (KeyError, ValueError, ArithmeticError) as exc:
        raise InputError(f"invalid leg: {exc}") from exc


def market_state(mid: str, m: dict[str, Any] | None) -> MarketState | None:
    if m is None or not m.get("odds"):
        return None
    return MarketState(
        market_id=mid,
        status=MarketStatus(m["status"]),
        prices={k: Decimal(v) for k, v in m["odds"].items()},
        in_play=bool(m.get("in_play")),
        version=int(m.get("version", 0)),
    )


def liability_of(rec: dict[str, Any] | None, currency: str) -> Liability:
    """The book's position on one market in one currency: stakes in yen and in pounds are
    never added together (the liabilities table holds one position per currency)."""
    pos = None if rec is None else rec.get("by_currency", {}).get(currency)
    if pos is None:
        return Liability()
    return Liability(
        stakes_minor=int(pos["stakes_minor"]),
        returns_minor={k: int(v) for k, v in pos["returns_minor"].items()},
    )


def liability_record(rec: dict[str, Any] | None, currency: str, liab: Liability) -> dict[str, Any]:
    """``rec`` with ``currency``'s position replaced by ``liab``."""
    by_currency = dict((rec or {}).get("by_currency", {}))
    by_currency[currency] = {
        "stakes_minor": liab.stakes_minor,
        "returns_minor": dict(liab.returns_minor),
    }
    return {"by_currency": by_currency}


class MarketsHandler:
    def __init__(
        self,
        markets: Store,
        events: Store,
        open_legs: Store,
        liabilities: Store,
        book: Book,
        account_partitions: int = 1,
        quota_currency: str | None = None,
        quota_share_ppm: int = 500_000,
    ) -> None:
        self.markets = markets
        self.events = events
        self.open_legs = open_legs
        # The sorted open-leg keys of the settlement in progress, (event_id, revision) ->
        # keys: each step would otherwise sort them again. Only a cache: a miss (a restart)
        # lists them again; a key gone since is skipped.
        self._step_keys: dict[tuple[str, int], list[str]] = {}
        self.liabilities = liabilities
        self.book = book
        # Leg outcomes go to the wallets in one message per account partition (see on_result).
        self.account_partitions = account_partitions
        # Liability quotas: every account partition gets a share of each market's headroom.
        # A market that opens is split at once in ``quota_currency`` (the book's currency);
        # other currencies get quotas after their first authoritative bet.
        # A partition is topped up once it has spent a quarter of its share, not after
        # every spend (one grant message per accepted single otherwise).
        self.quota_policy = QuotaPolicy(
            partitions=account_partitions, share_ppm=quota_share_ppm, refill_ppm=250_000
        )
        self.quota_currency = quota_currency

    # ------------------------------------------------------------------ feed

    def _event(self, event_id: str) -> dict[str, Any]:
        return self.events.get(event_id) or {
            "event_id": event_id,
            "markets": [],
            "status": "open",
            "in_play": False,
            "status_seq": -1,
            "fixture_seq": -1,
            "result_revision": -1,
            "result": None,
        }

    def on_fixture(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        ev = self._event(rec["event_id"])
        if rec["seq"] <= ev["fixture_seq"]:
            STALE_UPDATES.labels("fixture").inc()
            return
        ev.update(
            fixture_seq=rec["seq"],
            home=rec["home"],
            away=rec["away"],
            competition=rec["competition"],
            sport=rec["sport"],
            kickoff=rec["kickoff"],
        )
        self.events.put(rec["event_id"], ev)

    def on_price_update(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        try:
            mtype = MarketType(rec["market_type"])
            period = Period(rec["period"])
            line = Decimal(rec["line"]) if rec.get("line") not in (None, "") else None
        except (ValueError, ArithmeticError) as exc:
            raise InputError(f"invalid market: {exc}") from exc
        mid = market_id(rec["event_id"], mtype, period, line)
        if rec.get("market_id") and rec["market_id"] != mid:
            raise InputError(f"market_id {rec['market_id']!r} does not match its fields ({mid!r})")
        m = self.markets.get(mid)
        if m is not None and rec["seq"] <= m["last_seq"]:
            STALE_UPDATES.labels("price").inc()
            return
        try:
            # One spelling per selection ("01-0" is "1-0"), distinct after canonicalising.
            sels = list(canonical_selections(mtype, [s["selection"] for s in rec["selections"]]))
        except DomainError as exc:
            raise InputError(f"price update for {mid}: {exc}") from exc
        if not sels:
            raise InputError("price update needs distinct selections")
        provider = [Decimal(s["odds"]) for s in rec["selections"]]
        try:
            priced = price(provider, self.book.margin, self.book.method)
        except ValueError as exc:  # DomainError is a ValueError
            raise InputError(f"cannot price market {mid}: {exc}") from exc
        ev = self._event(rec["event_id"])
        if m is None:
            if ev["result_revision"] >= 0:
                # The event has its result: a market that opened now would take bets on a
                # known outcome.
                raise InputError(f"event {rec['event_id']} is resulted: market {mid} cannot open")
            # A status sent before the market's first price applies now, in seq order: the
            # market's own pending status if it came after the event's latest status.
            pending = ev.get("pending_status", {}).pop(mid, None)
            st = pending if pending is not None else ev
            m = {
                "event_id": rec["event_id"],
                "market_type": mtype.value,
                "period": period.value,
                "line": None if line is None else str(line),
                "status": st["status"],
                "in_play": st["in_play"],
                "version": 0,
            }
            ev["markets"].append(mid)
            self.events.put(rec["event_id"], ev)
        m.update(
            last_seq=rec["seq"],
            provider_odds={s: str(o) for s, o in zip(sels, provider, strict=True)},
            odds={s: str(o) for s, o in zip(sels, priced.odds, strict=True)},
            fair={s: str(p) for s, p in zip(sels, priced.fair_probabilities, strict=True)},
            overround=str(priced.overround),
            provider_ts=rec["provider_ts"],
            version=m["version"] + 1,
        )
        self.markets.put(mid, m)
        self.publish(mid, m, fx, now_ms)
        if m["version"] == 1 and self.quota_currency is not None:
            self._split(mid, self.quota_currency, fx, now_ms)  # the market opened: hand out quotas
        PRICE_PUBLISH_LAG_SECONDS.observe(max(0, now_ms - rec["provider_ts"]) / 1000)

    def publish(self, mid: str, m: dict[str, Any], fx: Effects, now_ms: int) -> None:
        fx.emit(
            "priced_markets",
            mid,
            {
                "market_id": mid,
                "event_id": m["event_id"],
                "market_type": m["market_type"],
                "period": m["period"],
                "line": m["line"],
                "status": m["status"],
                "in_play": m["in_play"],
                "selections": [
                    {
                        "selection": s,
                        "provider_odds": Decimal(m["provider_odds"][s]).quantize(ODDS_Q),
                        "fair_probability": Decimal(m["fair"][s]).quantize(PROB_Q),
                        "odds": Decimal(o).quantize(ODDS_Q),
                    }
                    for s, o in m.get("odds", {}).items()
                ],
                "margin": self.book.margin.quantize(ODDS_Q),
                "method": self.book.method.value,
                "overround": Decimal(m.get("overround", "0")).quantize(PROB_Q),
                "version": m["version"],
                "provider_ts": m.get("provider_ts", now_ms),
                "priced_ts": now_ms,
            },
        )

    def on_market_status(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        ev = self._event(rec["event_id"])
        if rec["seq"] <= ev["status_seq"]:
            STALE_UPDATES.labels("status").inc()
            return
        ev["status_seq"] = rec["seq"]
        targets = [rec["market_id"]] if rec.get("market_id") else list(ev["markets"])
        pending = ev.setdefault("pending_status", {})
        if not rec.get("market_id"):
            ev["status"], ev["in_play"] = rec["status"], rec["in_play"]
            pending.clear()  # an event-wide status is newer than every market's pending one
        elif self.markets.get(rec["market_id"]) is None:
            # No price yet: remember the status; the market opens with it (on_price_update).
            pending[rec["market_id"]] = {
                "status": rec["status"],
                "in_play": rec["in_play"],
                "seq": rec["seq"],
            }
        self.events.put(rec["event_id"], ev)
        for mid in targets:
            m = self.markets.get(mid)
            if m is None or m["status"] in ("settled", "cancelled"):
                continue  # a settled market never reopens: resettlement goes through results
            m.update(status=rec["status"], in_play=rec["in_play"], version=m["version"] + 1)
            self.markets.put(mid, m)
            self.publish(mid, m, fx, now_ms)

    def on_score(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        ev = self._event(rec["event_id"])
        ev.setdefault("scores", {})[rec["period"]] = [rec["home"], rec["away"]]
        ev["in_play"] = True
        self.events.put(rec["event_id"], ev)

    def on_result(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        ev = self._event(rec["event_id"])
        if rec["revision"] <= ev["result_revision"]:
            STALE_UPDATES.labels("result").inc()
            return
        result = result_from_record(rec)
        ev.update(
            result_revision=rec["revision"],
            result=_result_json(rec),
            status="settled",
            in_play=False,
        )
        self.events.put(rec["event_id"], ev)
        final_status = "cancelled" if result.status is EventStatus.CANCELLED else "settled"
        for mid in ev["markets"]:
            m = self.markets.get(mid)
            if m is not None and m["status"] != final_status:
                m.update(status=final_status, in_play=False, version=m["version"] + 1)
                self.markets.put(mid, m)
                self.publish(mid, m, fx, now_ms)
        # No per-leg mark: the event's result_revision, checked above and written in the same
        # transaction as these outputs, already makes a redelivered result a no-op.
        self._settle_step(rec["event_id"], rec["revision"], result, None, fx)
        for mid in ev["markets"]:
            self.liabilities.delete(mid)  # a settled market carries no open liability

    def on_settle_continuation(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        """The next step of a result's settlement (see ``_settle_step``)."""
        revision, res = self.events.get_frozen(rec["event_id"], _event_result)
        if revision != rec["revision"] or res is None:
            # A corrected result (a newer revision) settles every open leg again from the
            # first key; the older revision's remaining steps are dropped.
            return
        result = result_from_record({**res, "revision": revision})
        self._settle_step(rec["event_id"], revision, result, rec["after_key"], fx)

    def _settle_step(
        self, event_id: str, revision: int, result: Result, after: str | None, fx: Effects
    ) -> None:
        """Settle the next ``SETTLE_STEP_LEGS`` open legs of ``event_id`` (in key order, after
        the key ``after``) and, if legs remain, hand the rest on to this partition itself
        (``settle_continuations``, keyed by the event).

        Why steps: under exactly_once the outputs of an event become visible when its
        transaction commits, and a result that settled all of a cup final's 100,000 legs in
        one event committed nothing until the whole scan was done (the first settlement came
        2.2-2.6 s after the result in the 100,000-bet burst); the wallets waited idle. Each
        step is its own event and transaction, so the wallets start on the first step's
        legs while the event side works on the next. A step's legs, its continuation and the
        input it consumed commit together, so a crash resumes at the step it was in.

        Key order makes the cursor mean the same thing in any process (after a rebalance, a
        restart). A leg accepted after the result is settled on arrival (``on_accepted_leg``);
        if its key sorts after the cursor, the remaining steps settle it again under the same
        revision, which the wallet ignores as a duplicate (``on_leg_settlement``)."""
        keys = self._step_keys.get((event_id, revision))
        if keys is None or after is None:
            keys = self.open_legs.sorted_keys(f"{event_id}|")
            self._step_keys = {(event_id, revision): keys}  # one chain at a time is kept
        first = 0 if after is None else bisect_right(keys, after)
        step = keys[first : first + SETTLE_STEP_LEGS]
        # One message per account partition (chunked), not one per leg: a cup final's result
        # settles 100,000 bets, and per-message cost, not the settlement rule, dominates.
        by_partition: dict[int, list[dict[str, Any]]] = {}
        # A leg's settlement depends only on its market, selection and bound odds: 100,000 bets
        # on a market are a handful of distinct legs, each settled once (settle_leg is pure).
        settled: dict[tuple[Any, ...], LegSettlement] = {}
        for key in step:
            leg_rec = self.open_legs.get(key)
            if leg_rec is None:
                continue  # gone since the keys were listed
            # Paid at the odds bound at acceptance (what the decision published), never at
            # the requested odds; a corrected result re-reads the same bound odds.
            spec = leg_rec["leg"]
            shape = (
                spec["event_id"],
                spec["market_type"],
                spec["period"],
                spec.get("line"),
                spec["selection"],
                leg_rec["bound_odds"],
            )
            ls = settled.get(shape)
            if ls is None:
                leg = leg_from_record(spec).bound_at(Decimal(leg_rec["bound_odds"]))
                ls = settled[shape] = settle_leg(leg, result)
            acct = leg_rec["account_id"]
            by_partition.setdefault(
                key_partition(acct.encode(), self.account_partitions), []
            ).append(
                {
                    "bet_id": leg_rec["bet_id"],
                    "account_id": acct,
                    "leg_index": leg_rec["leg_index"],
                    "outcome": ls.outcome.value,
                    "factor": ls.factor,
                }
            )
        for legs in by_partition.values():
            for i in range(0, len(legs), SETTLEMENT_CHUNK_LEGS):
                chunk = legs[i : i + SETTLEMENT_CHUNK_LEGS]
                fx.emit(
                    "leg_settlements",
                    chunk[0]["account_id"],  # hashes to the partition of every leg in it
                    {"event_id": event_id, "revision": revision, "legs": chunk},
                )
        if first + len(step) < len(keys):
            fx.emit(
                "settle_continuations",
                event_id,
                {"event_id": event_id, "revision": revision, "after_key": step[-1]},
            )
        else:
            self._step_keys.pop((event_id, revision), None)

    # ------------------------------------------------------------------ bets

    def _read_book(self, mid: str, currency: str) -> _BookRead:
        # Every accepted single on a market reads and writes its book: the book written by
        # one leg is the one the next reads, not decoded again (Store.get_frozen).
        liab = self.liabilities.get_frozen(mid, _Liabilities)
        return _BookRead(liab.rec, liab.book(mid, currency))

    def _put_book(
        self, mid: str, currency: str, book: QuotaBook, rec: dict[str, Any] | None
    ) -> None:
        """Store ``currency``'s ``book``; ``rec`` is the market's record as read before the
        change (its other currencies' books are kept; not read again: one decode per event)."""
        by_currency = dict((rec or {}).get("by_currency", {}))
        by_currency[currency] = book_record(book)
        new = {"by_currency": by_currency}
        self.liabilities.put_frozen(mid, new, _Liabilities, _Liabilities(new, {currency: book}))

    def _counts_liability(self, mid: str) -> bool:
        """Whether bets on the market still count towards its liability (not settled)."""
        return self.markets.get_frozen(mid, _counts_liability)

    def _open(self, mid: str) -> dict[str, Any] | None:
        """The market if bets on it still count towards its liability (not settled)."""
        m = self.markets.get(mid)
        return dict(m) if m is not None and _counts_liability(m) else None

    def _quota_seqs(self, mid: str, ccy: str) -> dict[str, Any]:
        return self.liabilities.get(event_seq_key(mid, ccy)) or {"sent": {}, "applied": {}}

    def _next_seq(self, mid: str, ccy: str, partition: int) -> int:
        """The number of the next grant or recall of (market, currency) to ``partition``."""
        seqs = self._quota_seqs(mid, ccy)
        n: int = seqs["sent"].get(str(partition), 0) + 1
        seqs["sent"][str(partition)] = n
        self.liabilities.put(event_seq_key(mid, ccy), seqs)
        return n

    def _emit_grant(self, event_id: str, ccy: str, g: Grant, fx: Effects, now_ms: int) -> None:
        fx.emit(
            "quota_grants",
            partition_key(g.partition, self.account_partitions),
            {
                "kind": "grant",
                "event_id": event_id,
                "market_id": g.market_id,
                "selection": g.selection,
                "partition": g.partition,
                "currency": ccy,
                "amount_minor": g.amount_minor,
                "sent_at": now_ms,
                "seq": self._next_seq(g.market_id, ccy, g.partition),
            },
        )

    def _emit_recall(self, event_id: str, ccy: str, r: Recall, fx: Effects, now_ms: int) -> None:
        fx.emit(
            "quota_grants",
            partition_key(r.partition, self.account_partitions),
            {
                "kind": "recall",
                "event_id": event_id,
                "market_id": r.market_id,
                "selection": None,
                "partition": r.partition,
                "currency": ccy,
                "amount_minor": 0,
                "sent_at": now_ms,
                "seq": self._next_seq(r.market_id, ccy, r.partition),
            },
        )

    def _split(self, mid: str, ccy: str, fx: Effects, now_ms: int) -> None:
        m = self._open(mid)
        if m is None or not m.get("odds"):
            return
        read = self._read_book(mid, ccy)
        book, grants = split(read.book, list(m["odds"]), self.book.limits, self.quota_policy)
        self._put_book(mid, ccy, book, read.rec)
        for g in grants:
            self._emit_grant(m["event_id"], ccy, g, fx, now_ms)

    def _emit_verdicts(self, mid: str, verdicts: tuple[AuthVerdict, ...], fx: Effects) -> None:
        for v in verdicts:
            # The event side keys an authoritative request by its account-scoped bet id.
            acct, _, bet_id = v.bet_id.partition(ID_SEPARATOR)
            self.open_legs.put(
                _auth_key(v.bet_id), {"reason": None if v.reason is None else v.reason.name}
            )
            fx.emit(
                "leg_verdicts",
                acct,
                {
                    "bet_id": bet_id,
                    "account_id": acct,
                    "leg_index": 0,
                    "leg_count": 1,
                    "market_id": mid,
                    "reason": None if v.reason is None else v.reason.name,
                    # The account side bound the odds from its view and keeps them.
                    "bound_odds": None,
                },
            )

    def _after_book_change(
        self,
        mid: str,
        ccy: str,
        read: _BookRead,
        book: QuotaBook,
        verdicts: tuple[AuthVerdict, ...],
        fx: Effects,
        now_ms: int,
        top_up_for: tuple[int, str] | None = None,
        event_id: str | None = None,
    ) -> None:
        """Store ``book`` (``read``: the book before the change, as read), answer the bets it
        decided, and hand headroom back out: to the partition that just spent (or asked), or
        to everyone when a recall ended. The book is written once (an accepted leg's path)."""
        if read.book.recalling and not book.recalling:
            self._put_book(mid, ccy, book, read.rec)
            self._emit_verdicts(mid, verdicts, fx)
            self._split(mid, ccy, fx, now_ms)
            return
        g = None
        if top_up_for is not None:
            book, g = top_up(book, *top_up_for, self.book.limits, self.quota_policy)
        self._put_book(mid, ccy, book, read.rec)
        self._emit_verdicts(mid, verdicts, fx)
        if g is not None:
            if event_id is None:
                m = self.markets.get(mid)
                event_id = m["event_id"] if m is not None else mid.split("/", 1)[0]
            self._emit_grant(event_id, ccy, g, fx, now_ms)

    def on_leg_command(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        """The authoritative path: a single the account partition's quota could not cover.
        The market must still be open here (the event partition's own state, newer than any
        view); the liability is decided exactly by ``quota.authoritative`` (which may recall
        the market's quotas and park the bet until they are back)."""
        if rec["action"] != "check":
            return  # "release"/"confirm" belonged to the three-hop saga: nothing to undo now
        acct, ccy = rec["account_id"], rec["currency"]
        ref = scoped_id(acct, rec["bet_id"])
        leg = leg_from_record(rec["leg"])
        mid = leg.market_id
        known = self.open_legs.get(_auth_key(ref))
        if known is not None:
            if "reason" in known:  # redelivery of a request already decided: same verdict
                self._emit_verdicts(
                    mid,
                    (
                        AuthVerdict(
                            ref,
                            rec["partition"],
                            None if known["reason"] is None else RejectReason[known["reason"]],
                        ),
                    ),
                    fx,
                )
            return  # still parked behind a recall
        state = market_state(mid, self.markets.get(mid))
        reason = _status_reason(state, leg.selection)
        if reason is not None:
            self._emit_verdicts(mid, (AuthVerdict(ref, rec["partition"], reason),), fx)
            return
        req = AuthRequest(
            ref, mid, leg.selection, rec["partition"], rec["stake_minor"], rec["return_minor"]
        )
        read = self._read_book(mid, ccy)
        try:
            book, verdicts, recalls = authoritative(read.book, req, self.book.limits)
        except DomainError as exc:
            raise InputError(f"authoritative check of {rec['bet_id']!r} refused: {exc}") from exc
        if not verdicts:
            self.open_legs.put(_auth_key(ref), {"parked": True})
        for r in recalls:
            self._emit_recall(leg.event_id, ccy, r, fx, now_ms)
        accepted = any(v.bet_id == ref and v.reason is None for v in verdicts)
        self._after_book_change(
            mid,
            ccy,
            read,
            book,
            verdicts,
            fx,
            now_ms,
            top_up_for=(rec["partition"], leg.selection) if accepted else None,
            event_id=leg.event_id,
        )

    def on_accepted_leg(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        """Off the decision path: an accepted leg (open leg for settlement; a quota spend to
        learn) or quota given back after a recall."""
        if rec["kind"] == "return":
            self._on_return(rec, fx, now_ms)
            return
        acct, ccy = rec["account_id"], rec["currency"]
        ref = scoped_id(acct, rec["bet_id"])
        leg = leg_from_record(rec["leg"])
        mid = leg.market_id  # a computed property: once per leg, not once per use
        leg_key = f"{leg.event_id}|{ref}|{rec['leg_index']}"
        if leg_key in self.open_legs:
            return  # redelivery: already recorded (and its spend learned)
        bound = Decimal(rec["bound_odds"])
        leg_rec = {
            "bet_id": rec["bet_id"],
            "account_id": acct,
            "leg_index": rec["leg_index"],
            "leg_count": rec["leg_count"],
            "market_id": mid,
            "stake_minor": rec["stake_minor"],
            "currency": ccy,
            "bound_odds": str(bound),
            "leg": {**leg_json(rec["leg"]), "selection": leg.selection},  # canonical
            # When the bet was placed: a provider's bet_cancel voids the bets placed inside
            # its window (processors.provider).
            "placed_at": rec.get("placed_at") or None,
        }
        self.open_legs.put(leg_key, leg_rec)
        revision, result = self.events.get_frozen(leg.event_id, _event_result)
        if revision >= 0 and result is not None:
            # The result overtook the leg (the view still showed the market open): settle it
            # now, as on_result settled the legs it found.
            ev = {"event_id": leg.event_id, "result_revision": revision, "result": result}
            self._settle_late_leg(ev, leg_rec, fx)
            return
        if rec["leg_count"] != 1:
            return  # an accumulator's exposure is capped by the payout limit, not a book
        self.open_legs.delete(_auth_key(ref))
        if not rec["quota_spend"] or not self._counts_liability(mid):
            return  # an authoritative single is already in the book
        s = Spend(
            ref,
            mid,
            leg.selection,
            rec["partition"],
            rec["stake_minor"],
            rec["return_minor"],
        )
        read = self._read_book(mid, ccy)
        try:
            book, verdicts = learn_spend(read.book, s, self.book.limits)
        except DomainError as exc:
            raise InputError(f"quota spend of {rec['bet_id']!r} refused: {exc}") from exc
        self._after_book_change(
            mid, ccy, read, book, verdicts, fx, now_ms, (s.partition, s.selection), leg.event_id
        )

    def _on_return(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        mid, ccy = rec["market_id"], rec["currency"]
        if not self._counts_liability(mid):
            return  # a settled market's book is gone: nothing is outstanding any more
        seq, partition = rec.get("seq"), str(rec["partition"])
        if seq is not None:
            seqs = self._quota_seqs(mid, ccy)
            if not is_fresh(seq, seqs["applied"].get(partition, 0)):
                STALE_UPDATES.labels("quota_return").inc()
                return  # redelivered: learned already
            seqs["applied"][partition] = seq
            self.liabilities.put(event_seq_key(mid, ccy), seqs)
        r = Return(mid, rec["selection"], rec["partition"], rec["amount_minor"])
        read = self._read_book(mid, ccy)
        try:
            book, verdicts = learn_return(read.book, r, self.book.limits)
        except DomainError as exc:
            raise InputError(f"quota return for {mid!r} refused: {exc}") from exc
        self._after_book_change(mid, ccy, read, book, verdicts, fx, now_ms)

    def _settle_late_leg(self, ev: dict[str, Any], leg_rec: dict[str, Any], fx: Effects) -> None:
        result = result_from_record({**ev["result"], "revision": ev["result_revision"]})
        leg = leg_from_record(leg_rec["leg"]).bound_at(Decimal(leg_rec["bound_odds"]))
        ls = settle_leg(leg, result)
        fx.emit(
            "leg_settlements",
            leg_rec["account_id"],
            {
                "event_id": ev["event_id"],
                "revision": ev["result_revision"],
                "legs": [
                    {
                        "bet_id": leg_rec["bet_id"],
                        "account_id": leg_rec["account_id"],
                        "leg_index": leg_rec["leg_index"],
                        "outcome": ls.outcome.value,
                        "factor": ls.factor,
                    }
                ],
            },
        )


class _Liabilities:
    """A market's liabilities record as read, each currency's book decoded once: the value
    ``Store.get_frozen`` remembers for the record (never changed; its books are frozen)."""

    __slots__ = ("_books", "rec")

    def __init__(
        self, rec: dict[str, Any] | None, books: dict[str, QuotaBook] | None = None
    ) -> None:
        self.rec = rec
        self._books = books or {}

    def book(self, mid: str, currency: str) -> QuotaBook:
        book = self._books.get(currency)
        if book is None:
            rec = (self.rec or {}).get("by_currency", {}).get(currency)
            book = self._books[currency] = book_from_record(rec, mid)
        return book


def _counts_liability(m: dict[str, Any] | None) -> bool:
    return m is not None and m["status"] not in ("settled", "cancelled")


def _event_result(ev: dict[str, Any] | None) -> tuple[int, dict[str, Any] | None]:
    """An event's result revision and result (-1, None before its first result)."""
    return (-1, None) if ev is None else (ev["result_revision"], ev["result"])


@dataclass(frozen=True)
class _BookRead:
    """A market's liabilities record as read (every currency) and one currency's book in it."""

    rec: dict[str, Any] | None
    book: QuotaBook


def _auth_key(bet_ref: str) -> str:
    # Not "<event_id>|...": on_result's prefix scan of open legs never sees these markers.
    return f"auth:{bet_ref}"


def _status_reason(state: MarketState | None, selection: str) -> RejectReason | None:
    if state is None:
        return RejectReason.MARKET_UNKNOWN
    if state.status in (MarketStatus.CLOSED, MarketStatus.SETTLED, MarketStatus.CANCELLED):
        return RejectReason.MARKET_CLOSED
    if state.status in (MarketStatus.SUSPENDED, MarketStatus.BET_STOP):
        return RejectReason.MARKET_SUSPENDED
    if selection not in state.prices:
        return RejectReason.SELECTION_UNKNOWN
    return None


def leg_json(leg: dict[str, Any]) -> dict[str, Any]:
    return {**leg, "odds": str(leg["odds"])}


def _result_json(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: rec[k] for k in ("event_id", "status", "ft_home", "ft_away", "ht_home", "ht_away")}


def result_from_record(rec: dict[str, Any]) -> Result:
    status = EventStatus(rec["status"])
    scores: dict[Period, tuple[int, int]] = {}
    if rec.get("ft_home") is not None and rec.get("ft_away") is not None:
        scores[Period.FT] = (rec["ft_home"], rec["ft_away"])
    if rec.get("ht_home") is not None and rec.get("ht_away") is not None:
        scores[Period.H1] = (rec["ht_home"], rec["ht_away"])
    if status is EventStatus.FINAL and Period.FT not in scores:
        raise InputError(f"final result for {rec['event_id']} without a full-time score")
    return Result(event_id=rec["event_id"], status=status, scores=scores, revision=rec["revision"])
