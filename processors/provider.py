"""Event-side handlers for provider-settled markets: ``provider_settlements`` and
``provider_cancels`` (Sportradar UOF ``bet_settlement``, ``bet_cancel`` and their rollbacks,
see docs/uof.md).

They run in the ``pricing`` agent on the event partition, next to ``processors.markets``, and
share its tables: the open legs (``open_legs``, with their bound odds and ``placed_at``) and the
markets. What the provider said about each market is kept in ``provider_markets``:

* key ``market_id``: the last applied settlement ``seq`` and cancel ``seq``, the applied
  ``certainty`` and verdicts per selection (None: not settled, or rolled back), the market's
  active cancel windows and ``revision``, the count of changes sent to the wallets;
* key ``"{event_id}|*"``: the event-wide cancels (a ``bet_cancel`` naming no market).

A leg's state is a pure function of those (``domain.provider_settlement.provider_leg_state``:
a cancel covering its placement voids it, else its selection's verdict settles it, else it is
open). Every message computes the state of the legs it touches before and after, and sends the
legs whose state changed to the wallets, batched per account partition like a result
(``leg_settlements``), under the market's next revision: the wallet's per-leg revision check
applies each change once and posts only the difference. A leg that is open again goes out as
outcome ``open``; the wallet then reverses the bet's settlement (``ledger.reopen``).

Ordering and duplicates: a record whose ``seq`` is not above the last applied one of its scope
(market, or event for an event-wide cancel; settlements and cancels apart) is dropped and
counted (``oddsflow_stale_updates_total{kind}``); a redelivery repeats its seq, so it is too.

A rollback of a cancel removes the scope's active cancels with the rollback's window; if none
has that window, every cancel of the scope (the provider undid the market's cancellation).
Liabilities are kept while a market is provider-settled: a rollback may reopen its legs.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from oddsflow.domain.errors import DomainError
from oddsflow.domain.markets import MarketType, canonical_selections, selections
from oddsflow.domain.provider_settlement import (
    CancelWindow,
    Certainty,
    CertaintyPolicy,
    ProviderOutcome,
    SettlementAction,
    certainty_action,
    provider_leg_state,
)
from oddsflow.domain.settlement import LegSettlement
from oddsflow.metrics import STALE_UPDATES
from oddsflow.processors.emit import key_partition
from oddsflow.processors.markets import SETTLEMENT_CHUNK_LEGS, InputError, MarketsHandler
from oddsflow.processors.state import Effects, Store

# The leg outcome the wallet reads as "unsettled again" (leg_settlement_batch v2).
OPEN = "open"


def _decimal_text(value: Any) -> str | None:
    # One spelling per factor ("0.5000" and "0.5" are one verdict): verdicts are compared.
    return None if value is None else format(Decimal(value).normalize(), "f")


def _outcome(v: dict[str, Any] | None) -> ProviderOutcome | None:
    if v is None:
        return None
    return ProviderOutcome(
        v["result"],
        None if v["void_factor"] is None else Decimal(v["void_factor"]),
        None if v["dead_heat_factor"] is None else Decimal(v["dead_heat_factor"]),
    )


def event_scope_key(event_id: str) -> str:
    return f"{event_id}|*"


class ProviderHandler:
    def __init__(
        self,
        markets: MarketsHandler,
        provider_markets: Store,
        policy: CertaintyPolicy = CertaintyPolicy.SETTLE_LIVE_RESETTLE_CONFIRMED,
    ) -> None:
        self.m = markets
        self.provider_markets = provider_markets
        self.policy = policy

    # ------------------------------------------------------------------ state

    def _market(self, mid: str, event_id: str) -> dict[str, Any]:
        return self.provider_markets.get(mid) or {
            "event_id": event_id,
            "settle_seq": -1,
            "cancel_seq": -1,
            "certainty": None,
            "verdicts": None,
            "cancels": [],
            "revision": -1,
        }

    def _event(self, event_id: str) -> dict[str, Any]:
        return self.provider_markets.get(event_scope_key(event_id)) or {
            "event_id": event_id,
            "cancel_seq": -1,
            "cancels": [],
        }

    def _legs(self, event_id: str) -> dict[str, list[dict[str, Any]]]:
        by_market: dict[str, list[dict[str, Any]]] = {}
        for _, leg in self.m.open_legs.with_prefix(f"{event_id}|"):
            by_market.setdefault(leg["market_id"], []).append(leg)
        return by_market

    @staticmethod
    def _states(
        legs: list[dict[str, Any]], pm: dict[str, Any], ev: dict[str, Any]
    ) -> list[LegSettlement | None]:
        verdicts = pm["verdicts"] or {}
        cancels = [CancelWindow(c["start_ms"], c["end_ms"]) for c in pm["cancels"] + ev["cancels"]]
        return [
            provider_leg_state(
                Decimal(leg["bound_odds"]),  # paid at the odds bound at acceptance
                leg.get("placed_at"),
                _outcome(verdicts.get(leg["leg"]["selection"])),
                cancels,
            )
            for leg in legs
        ]

    def _send_changes(
        self,
        event_id: str,
        pm: dict[str, Any],
        legs: list[dict[str, Any]],
        before: list[LegSettlement | None],
        after: list[LegSettlement | None],
        fx: Effects,
    ) -> None:
        """Send the legs whose state changed, under the market's next revision."""
        changed = [
            (leg, new) for leg, old, new in zip(legs, before, after, strict=True) if old != new
        ]
        if not changed:
            return
        pm["revision"] += 1
        by_partition: dict[int, list[dict[str, Any]]] = {}
        for leg, new in sorted(changed, key=lambda c: (c[0]["account_id"], c[0]["bet_id"])):
            acct = leg["account_id"]
            by_partition.setdefault(
                key_partition(acct.encode(), self.m.account_partitions), []
            ).append(
                {
                    "bet_id": leg["bet_id"],
                    "account_id": acct,
                    "leg_index": leg["leg_index"],
                    "outcome": OPEN if new is None else new.outcome.value,
                    "factor": Decimal(0) if new is None else new.factor,
                }
            )
        for batch in by_partition.values():
            for i in range(0, len(batch), SETTLEMENT_CHUNK_LEGS):
                chunk = batch[i : i + SETTLEMENT_CHUNK_LEGS]
                fx.emit(
                    "leg_settlements",
                    chunk[0]["account_id"],  # hashes to the partition of every leg in it
                    {"event_id": event_id, "revision": pm["revision"], "legs": chunk},
                )

    def _set_status(
        self, mid: str, status: str, only_from: str | None, fx: Effects, now_ms: int
    ) -> None:
        m = self.m.markets.get(mid)
        if (
            m is None
            or m["status"] == status
            or (only_from is not None and m["status"] != only_from)
        ):
            return
        m.update(status=status, in_play=False, version=m["version"] + 1)
        self.m.markets.put(mid, m)
        self.m.publish(mid, m, fx, now_ms)

    # ------------------------------------------------------------------ settlements

    def _verdicts(self, rec: dict[str, Any]) -> dict[str, dict[str, Any]]:
        try:
            mtype = MarketType(rec["market_type"])
            names = list(canonical_selections(mtype, [o["selection"] for o in rec["outcomes"]]))
            known = selections(mtype)
            verdicts = {}
            for name, o in zip(names, rec["outcomes"], strict=True):
                if known is not None and name not in known:
                    raise InputError(f"{name!r} is not a selection of {mtype.value}")
                v = {
                    "result": o["result"],
                    "void_factor": _decimal_text(o.get("void_factor")),
                    "dead_heat_factor": _decimal_text(o.get("dead_heat_factor")),
                }
                _outcome(v)  # refuses a verdict the engine cannot settle by
                verdicts[name] = v
        except (DomainError, ValueError, ArithmeticError) as exc:
            raise InputError(f"provider settlement of {rec['market_id']}: {exc}") from exc
        return verdicts

    def on_provider_settlement(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        event_id, mid = rec["event_id"], rec["market_id"]
        if not mid.startswith(f"{event_id}/"):
            raise InputError(f"market {mid!r} is not a market of event {event_id!r}")
        pm = self._market(mid, event_id)
        if rec["seq"] <= pm["settle_seq"]:
            STALE_UPDATES.labels("provider_settlement").inc()
            return
        if rec["kind"] == "settle":
            try:
                incoming = Certainty(rec["certainty"])
            except ValueError as exc:
                raise InputError(f"provider settlement of {mid}: {exc}") from exc
            verdicts = self._verdicts(rec)
        ev = self._event(event_id)
        legs = self._legs(event_id).get(mid, [])
        before = self._states(legs, pm, ev)
        pm["settle_seq"] = rec["seq"]
        if rec["kind"] == "settle":
            applied = None if pm["certainty"] is None else Certainty(pm["certainty"])
            same = pm["verdicts"] == verdicts
            action = certainty_action(self.policy, incoming, applied, same)
            if action is SettlementAction.IGNORE:
                if same and applied is not None and incoming > applied:
                    # Confirmed as settled: a later live-scouted message cannot override it.
                    pm["certainty"] = int(incoming)
            else:
                pm.update(certainty=int(incoming), verdicts=verdicts)
                self._set_status(mid, "settled", None, fx, now_ms)  # takes no more bets
        else:  # rollback: open again, the next settle settles afresh
            if pm["verdicts"] is not None:
                pm.update(certainty=None, verdicts=None)
                # Suspended, not open: the provider's next odds say whether it trades again.
                self._set_status(mid, "suspended", "settled", fx, now_ms)
        self._send_changes(event_id, pm, legs, before, self._states(legs, pm, ev), fx)
        self.provider_markets.put(mid, pm)

    # ------------------------------------------------------------------ cancels

    def on_provider_cancel(self, rec: dict[str, Any], fx: Effects, now_ms: int) -> None:
        event_id, mid = rec["event_id"], rec.get("market_id")
        if mid is not None and not mid.startswith(f"{event_id}/"):
            raise InputError(f"market {mid!r} is not a market of event {event_id!r}")
        start, end = rec.get("start_time"), rec.get("end_time")
        if start is not None and end is not None and end < start:
            raise InputError(f"cancel window ends before it starts: [{start}, {end})")
        ev = self._event(event_id)
        scope = ev if mid is None else self._market(mid, event_id)
        if rec["seq"] <= scope["cancel_seq"]:
            STALE_UPDATES.labels("provider_cancel").inc()
            return
        legs = self._legs(event_id)
        mids = sorted(legs) if mid is None else [mid]
        pms = {m: scope if m == mid else self._market(m, event_id) for m in mids}
        before = {m: self._states(legs.get(m, []), pms[m], ev) for m in mids}
        scope["cancel_seq"] = rec["seq"]
        window = {"start_ms": start, "end_ms": end}
        if rec["kind"] == "cancel":
            if window not in scope["cancels"]:
                scope["cancels"].append(window)
        else:
            kept = [c for c in scope["cancels"] if c != window]
            scope["cancels"] = kept if len(kept) < len(scope["cancels"]) else []
        for m in mids:
            pm = pms[m]
            self._send_changes(
                event_id, pm, legs.get(m, []), before[m], self._states(legs.get(m, []), pm, ev), fx
            )
            # A market the event-wide cancel left untouched needs no record of its own.
            if pm is not scope and (pm["revision"] >= 0 or self.provider_markets.get(m)):
                self.provider_markets.put(m, pm)
        self.provider_markets.put(event_scope_key(event_id) if mid is None else mid, scope)
