"""Event-side handlers: pricing, market status, leg checks and leg settlement.

Everything about one sporting event lives on the partition of its ``event_id``: its
markets (status and prices), the open legs placed on it and the liabilities. These
handlers are the thin adapters between decoded Avro records and the pure domain
functions; the Faust agents in ``processors.app`` only decode, call them and produce.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from oddsflow.domain.acceptance import (
    BetRequest,
    Liability,
    Limits,
    MarketState,
    MarketStatus,
    PricePolicy,
    check_leg,
)
from oddsflow.domain.errors import DomainError
from oddsflow.domain.ledger import scoped_id
from oddsflow.domain.markets import Leg, MarketType, Period, canonical_selections, market_id
from oddsflow.domain.money import payout_minor
from oddsflow.domain.pricing import Method, price
from oddsflow.domain.settlement import EventStatus, Result, settle_leg
from oddsflow.metrics import PRICE_PUBLISH_LAG_SECONDS, STALE_UPDATES
from oddsflow.processors.emit import key_partition
from oddsflow.processors.state import Effects, Store

ODDS_Q = Decimal("0.0001")
PROB_Q = Decimal("0.0000000001")
CLOSED_STATUSES = {"closed", "settled", "cancelled"}


# Legs per leg_settlements message: ~60 bytes each, well inside Kafka's 1 MB message limit.
SETTLEMENT_CHUNK_LEGS = 500


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
    ) -> None:
        self.markets = markets
        self.events = events
        self.open_legs = open_legs
        self.liabilities = liabilities
        self.book = book
        # Leg outcomes go to the wallets in one message per account partition (see on_result).
        self.account_partitions = account_partitions

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
        # One message per account partition (chunked), not one per leg: a cup final's result
        # settles 100,000 bets, and per-message cost, not the settlement rule, dominates.
        by_partition: dict[int, list[dict[str, Any]]] = {}
        # No per-leg mark: the event's result_revision, checked above and written in the same
        # transaction as these outputs, already makes a redelivered result a no-op.
        for _, leg_rec in self.open_legs.with_prefix(f"{rec['event_id']}|"):
            # Paid at the odds bound at acceptance (what the decision published), never at
            # the requested odds; a corrected result re-reads the same bound odds.
            leg = leg_from_record(leg_rec["leg"]).bound_at(Decimal(leg_rec["bound_odds"]))
            ls = settle_leg(leg, result)
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
                    {"event_id": rec["event_id"], "revision": rec["revision"], "legs": chunk},
                )
        for mid in ev["markets"]:
            self.liabilities.delete(mid)  # a settled market carries no open liability

    # ------------------------------------------------------------------ bets

    def on_leg_command(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        # Bet ids are scoped to their account: two accounts' bets "b1" are two legs here.
        bet_ref = scoped_id(rec["account_id"], rec["bet_id"])
        leg_key = f"{rec['leg']['event_id']}|{bet_ref}|{rec['leg_index']}"
        if rec["action"] == "release":
            self._release(leg_key)
            return
        if rec["action"] != "check":
            return
        leg = leg_from_record(rec["leg"])
        mid = leg.market_id
        existing = self.open_legs.get(leg_key)
        if existing is not None:
            # Redelivery of a check already granted: answer with the same verdict.
            fx.emit(
                "leg_verdicts",
                rec["account_id"],
                self._verdict(rec, mid, None, Decimal(existing["bound_odds"])),
            )
            return
        request = BetRequest(
            bet_id=rec["bet_id"],
            account_id=rec["account_id"],
            stake_minor=rec["stake_minor"],
            currency=rec["currency"],
            legs=(leg,) * rec["leg_count"],
            price_policy=PricePolicy(rec["price_policy"]),
            placed_at_ms=rec["requested_at"],
        )
        liab_rec = self.liabilities.get(mid)
        liab = liability_of(liab_rec, rec["currency"])
        held = rec.get("hold_until_ms") is not None
        verdict = check_leg(
            market_state(mid, self.markets.get(mid)),
            liab,
            leg,
            request,
            self.book.limits,
            now_ms,
            held=held,
        )
        if verdict.hold_until_ms is not None and not held:
            fx.emit("leg_delays", leg.event_id, {**rec, "hold_until_ms": verdict.hold_until_ms})
            return
        if verdict.reason is not None:
            fx.emit(
                "leg_verdicts",
                rec["account_id"],
                self._verdict(rec, mid, verdict.reason.name, None),
            )
            return
        assert verdict.bound_odds is not None
        if rec["leg_count"] == 1:
            # Liability is tracked for singles; an accumulator's exposure is capped by the
            # per-bet payout limit instead (it spans markets on other partitions).
            ret = payout_minor(rec["stake_minor"], verdict.bound_odds)
            self.liabilities.put(
                mid,
                liability_record(
                    liab_rec, rec["currency"], liab.add(leg.selection, rec["stake_minor"], ret)
                ),
            )
        self.open_legs.put(
            leg_key,
            {
                "bet_id": rec["bet_id"],
                "account_id": rec["account_id"],
                "leg_index": rec["leg_index"],
                "leg_count": rec["leg_count"],
                "market_id": mid,
                "stake_minor": rec["stake_minor"],
                "currency": rec["currency"],
                "bound_odds": str(verdict.bound_odds),
                "leg": {**leg_json(rec["leg"]), "selection": leg.selection},  # canonical
                # When the bet was placed: a provider's bet_cancel voids the bets placed
                # inside its window (processors.provider).
                "placed_at": rec["requested_at"],
            },
        )
        fx.emit(
            "leg_verdicts", rec["account_id"], self._verdict(rec, mid, None, verdict.bound_odds)
        )

    def _release(self, leg_key: str) -> None:
        leg_rec = self.open_legs.get(leg_key)
        if leg_rec is None:
            return
        if leg_rec["leg_count"] == 1:
            mid, ccy = leg_rec["market_id"], leg_rec["currency"]
            liab_rec = self.liabilities.get(mid)
            liab = liability_of(liab_rec, ccy)
            ret = payout_minor(leg_rec["stake_minor"], Decimal(leg_rec["bound_odds"]))
            self.liabilities.put(
                mid,
                liability_record(
                    liab_rec,
                    ccy,
                    liab.remove(leg_rec["leg"]["selection"], leg_rec["stake_minor"], ret),
                ),
            )
        self.open_legs.delete(leg_key)

    @staticmethod
    def _verdict(
        rec: dict[str, Any], mid: str, reason: str | None, odds: Decimal | None
    ) -> dict[str, Any]:
        return {
            "bet_id": rec["bet_id"],
            "account_id": rec["account_id"],
            "leg_index": rec["leg_index"],
            "leg_count": rec["leg_count"],
            "market_id": mid,
            "reason": reason,
            "bound_odds": None if odds is None else odds.quantize(ODDS_Q),
        }


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
