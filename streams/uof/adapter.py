"""UOF messages -> the engine's canonical records, with ordering, duplicates and producer health.

Records (``Out(topic_key, key, record)``, keyed by ``event_id`` like every event-side topic)::

    odds_change       -> price_updates (provider odds; the engine re-prices with its margin)
                         + market_status per mapped market (mapping below)
                         + scores from sport_event_status (FT; 1H from period_score 1)
    bet_stop          -> market_status suspended (groups "all": the whole event)
    bet_settlement    -> provider_settlements kind=settle (per market, per outcome verdicts)
    rollback_bet_settlement -> provider_settlements kind=rollback
    bet_cancel        -> provider_cancels kind=cancel (window, void_reason, superceded_by)
    rollback_bet_cancel -> provider_cancels kind=rollback
    fixtures_fixture  -> fixtures (REST fixture document: teams, competition, kick-off)
    fixture_change    -> fixtures (new kick-off of a known fixture); cancelled -> event closed
    alive / snapshot_complete / product_down -> market_status (producer health, see .health)

Market status mapping (UOF market ``status`` -> engine ``market_status``)::

     1 active      -> open, unless an outcome is active="0": suspended (the engine has no
                      per-selection status, and must not take bets on a deactivated outcome)
     0 inactive    -> suspended     -1 suspended   -> suspended    -2 handed over -> suspended
    -3 settled     -> closed        -4 cancelled   -> closed
    (settled/cancelled bets come from bet_settlement / bet_cancel, which can be rolled back, so
    the market is closed to new bets, not finalised, by the odds message)

Ordering and duplicates, per event and market: the adapter remembers the timestamp of the last
message it applied per (event, market) - separately for odds/status, settlements and cancels -
and drops an older one (``oddsflow_uof_dropped_total{reason="stale"}``). The same message again
(same timestamp, same bytes; ``oddsflow_uof_duplicates_total``) produces the very same records
again, with the same ``seq`` (message timestamp ms x 10000 + a slot within the message), which
the engine's stale checks apply once. Producing it again rather than dropping it is what makes a
redelivery after a failed Kafka flush safe: the adapter's memory has already seen the message,
Kafka has not. The memory is per process; after a restart the engine's seq checks do the job.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from oddsflow.domain.markets import MarketType, Period, selections
from oddsflow.streams.normalise import FeedError, odds
from oddsflow.streams.uof import models as m
from oddsflow.streams.uof.health import ProducerHealth, StatusChange
from oddsflow.streams.uof.markets import MappedMarket, map_market
from oddsflow.streams.uof.metrics import DROPPED, DUPLICATES, SKIPPED_MARKETS, UNSUPPORTED_MARKETS
from oddsflow.streams.uof.parse import UofError, parse_message

SEQ_SLOTS = 10_000
# (event, market) scopes remembered; forgetting one lets a stale message through to the engine,
# whose own seq checks drop it.
MEMORY_MAX = 200_000
# Messages whose records are kept, to produce them again exactly when the message comes again.
RECENT_MAX = 20_000

_STATUS_BY_UOF = {
    1: "open",
    0: "suspended",
    -1: "suspended",
    -2: "suspended",
    -3: "closed",
    -4: "closed",
}


@dataclass(frozen=True)
class Out:
    topic_key: str
    key: str
    record: dict[str, Any]


@dataclass(frozen=True)
class Translation:
    kind: str
    records: tuple[Out, ...]
    event_id: str | None = None
    stale: int = 0
    duplicates: int = 0
    unsupported: tuple[int, ...] = ()


def provider_market(uof_id: int, specifiers: m.Specifiers) -> str:
    """The provider's own market reference: ``"18|total=2.5"``, ``"1"``."""
    spec = "|".join(f"{k}={v}" for k, v in specifiers)
    return f"{uof_id}|{spec}" if spec else str(uof_id)


def _kind(msg: m.Message) -> str:
    return {
        m.OddsChange: "odds_change",
        m.BetStop: "bet_stop",
        m.BetSettlement: "bet_settlement",
        m.RollbackBetSettlement: "rollback_bet_settlement",
        m.BetCancel: "bet_cancel",
        m.RollbackBetCancel: "rollback_bet_cancel",
        m.FixtureChange: "fixture_change",
        m.Alive: "alive",
        m.SnapshotComplete: "snapshot_complete",
        m.ProductDown: "product_down",
        m.Fixture: "fixtures_fixture",
    }[type(msg)]


@dataclass
class _Slots:
    """Hands out seqs: message time x SEQ_SLOTS + a slot, per (topic, scope), never reused."""

    base_ms: int
    used: dict[tuple[str, str], int] = field(default_factory=dict)

    def next(self, topic_key: str, scope: str, floor: int = -1) -> int:
        slot = self.used.get((topic_key, scope), 0)
        self.used[(topic_key, scope)] = slot + 1
        if slot >= SEQ_SLOTS:
            raise UofError(f"more than {SEQ_SLOTS} records for {scope} in one message", "too_large")
        return max(self.base_ms * SEQ_SLOTS + slot, floor + 1)


class UofAdapter:
    """Translates messages into records; one per consumer process (it holds the memories)."""

    def __init__(
        self,
        provider: str = "sportradar",
        live_products: Iterable[int] = (1, 4, 5),
        alive_timeout_ms: int = 20_000,
    ) -> None:
        self.provider = provider
        self.live_products = frozenset(live_products)
        self.health = ProducerHealth(alive_timeout_ms)
        self._applied: OrderedDict[tuple[str, str, str], tuple[int, bytes]] = OrderedDict()
        self._fixtures: dict[str, dict[str, Any]] = {}
        self._event_markets: dict[str, dict[str, tuple[MappedMarket, bool]]] = {}
        self._status_seq: dict[str, int] = {}  # last market_status seq per event
        self._product_ts: dict[int, int] = {}  # latest message timestamp per producer
        self._pending: list[Out] = []
        self._recent: OrderedDict[bytes, Translation] = OrderedDict()  # digest -> its records

    # ------------------------------------------------------------------ entry points

    def handle(self, data: bytes, now_ms: int | None = None) -> Translation:
        """One message's records; UofError if it cannot be used. ``now_ms`` is the receipt time
        on the adapter's clock (alive timeouts); None uses the message's own timestamp."""
        msg = parse_message(data)
        digest = hashlib.sha256(data).digest()[:16]
        try:
            # Without a clock of our own (replay), the messages' timestamps are the clock: a gap
            # in a producer's alives longer than the timeout suspends its markets here.
            overdue = self.tick(msg.timestamp_ms) if now_ms is None else []
        except UofError:
            raise
        recent = self._recent.get(digest)
        if recent is not None:
            # The same message again: exactly the same records, same seqs (the engine applies
            # them once), whatever the adapter learnt since. Never dropped: it may be the
            # redelivery of a batch Kafka did not confirm.
            DUPLICATES.inc()
            self._recent.move_to_end(digest)
            return dataclasses.replace(
                recent, records=(*overdue, *recent.records), stale=0, duplicates=1
            )
        try:
            tr = self._translate(msg, digest, now_ms)
        except (ValueError, TypeError, ArithmeticError, KeyError) as exc:
            # The suspensions are due whatever became of this message: hand them out next.
            self._pending.extend(overdue)
            if isinstance(exc, UofError):
                raise
            raise UofError(f"{_kind(msg)}: {exc}", "invalid") from exc
        self._recent[digest] = tr
        while len(self._recent) > RECENT_MAX:
            self._recent.popitem(last=False)
        if overdue:
            tr = dataclasses.replace(tr, records=(*overdue, *tr.records))
        return tr

    def take_pending(self) -> list[Out]:
        """Records due from a message that was itself rejected (see :meth:`handle`)."""
        out, self._pending = self._pending, []
        return out

    def tick(self, now_ms: int) -> list[Out]:
        """Suspensions for producers whose alive is overdue at ``now_ms``."""
        outs: list[Out] = self.take_pending()
        for product, changes in self.health.check(now_ms).items():
            # Timed by the producer's own clock (its last message + 1 ms), not ours: its next
            # message after recovery must carry a higher seq than these suspensions.
            last = self._product_ts.get(product)
            ts = now_ms if last is None else last + 1
            outs.extend(self._status_changes(changes, _Slots(ts), product))
        return outs

    # ------------------------------------------------------------------ ordering

    def _fresh(
        self, scope: tuple[str, str, str], ts: int, digest: bytes, count: bool = True
    ) -> str:
        """ "apply"; "stale" (older: drop it); "duplicate" (the same again: produce it again)."""
        last = self._applied.get(scope)
        if last is not None:
            if ts < last[0]:
                if count:
                    DROPPED.labels("stale").inc()
                return "stale"
            if ts == last[0] and digest == last[1]:
                # Produced again, identically (same records, same seqs): a redelivery after a
                # failed Kafka flush must not be lost, and the engine applies it once by seq.
                if count:
                    DUPLICATES.inc()
                return "duplicate"
        return "apply"

    def _remember(self, scope: tuple[str, str, str], ts: int, digest: bytes) -> None:
        self._applied[scope] = (ts, digest)
        self._applied.move_to_end(scope)
        while len(self._applied) > MEMORY_MAX:
            self._applied.popitem(last=False)

    # ------------------------------------------------------------------ records

    def _status(
        self,
        slots: _Slots,
        event_id: str,
        market_id: str | None,
        status: str,
        in_play: bool,
        ts: int,
    ) -> Out:
        seq = slots.next("market_status", event_id, self._status_seq.get(event_id, -1))
        self._status_seq[event_id] = max(seq, self._status_seq.get(event_id, -1))
        return Out(
            "market_status",
            event_id,
            {
                "event_id": event_id,
                "provider": self.provider,
                "seq": seq,
                "market_id": market_id,
                "status": status,
                "in_play": in_play,
                "provider_ts": ts,
            },
        )

    def _status_changes(
        self, changes: list[StatusChange], slots: _Slots, product: int
    ) -> list[Out]:
        return [
            self._status(slots, c.event_id, c.market_id, c.status, c.in_play, slots.base_ms)
            for c in changes
        ]

    def _in_play(self, product: int) -> bool:
        return product in self.live_products

    # ------------------------------------------------------------------ per message

    def _translate(self, msg: m.Message, digest: bytes, now_ms: int | None) -> Translation:
        kind = _kind(msg)
        product = getattr(msg, "product", None)
        if product is not None:
            self._product_ts[product] = max(self._product_ts.get(product, 0), msg.timestamp_ms)
        if isinstance(msg, m.OddsChange):
            return self._odds_change(msg, digest)
        if isinstance(msg, m.BetStop):
            return self._bet_stop(msg, digest)
        if isinstance(msg, m.BetSettlement | m.RollbackBetSettlement):
            return self._settlement(msg, digest)
        if isinstance(msg, m.BetCancel | m.RollbackBetCancel):
            return self._cancel(msg, digest)
        if isinstance(msg, m.Fixture):
            return self._fixture(msg, digest)
        if isinstance(msg, m.FixtureChange):
            return self._fixture_change(msg, digest)
        slots = _Slots(msg.timestamp_ms)
        if isinstance(msg, m.Alive):
            changes = self.health.alive(
                msg.product, msg.subscribed, msg.timestamp_ms if now_ms is None else now_ms
            )
        elif isinstance(msg, m.SnapshotComplete):
            changes = self.health.snapshot_complete(msg.product)
        else:  # ProductDown
            changes = self.health.down(msg.product)
        return Translation(kind, tuple(self._status_changes(changes, slots, msg.product)))

    def _odds_change(self, msg: m.OddsChange, digest: bytes) -> Translation:
        ev, ts, in_play = msg.event_id, msg.timestamp_ms, self._in_play(msg.product)
        slots = _Slots(ts)
        prices: list[Out] = []
        statuses: list[Out] = []
        unsupported: list[int] = []
        stale = dup = 0
        event_scope = ("event", ev, "*")
        for mk in msg.markets:
            mapped = map_market(ev, mk.id, mk.specifiers)
            if mapped is None:
                unsupported.append(mk.id)
                UNSUPPORTED_MARKETS.labels(str(mk.id)).inc()
                continue
            scope = ("odds", ev, provider_market(mk.id, mk.specifiers))
            verdict = self._fresh(scope, ts, digest)
            if verdict == "stale":
                stale += 1
                continue
            dup += verdict == "duplicate"
            self._remember(scope, ts, digest)
            mid = mapped.market_id
            status = _STATUS_BY_UOF.get(mk.status, "suspended")
            price = self._price(mapped, mk, slots, ts) if mk.status in (1, 0, -1) else None
            if status == "open" and (
                price is None or any(not o.active for o in mk.outcomes if mapped.selection(o.id))
            ):
                status = "suspended"
            if price is not None:
                prices.append(price)
            self._event_markets.setdefault(ev, {})[mid] = (mapped, in_play)
            published = self.health.track(msg.product, ev, mid, status, in_play)
            statuses.append(self._status(slots, ev, mid, published, in_play, ts))
        scores = (
            self._scores(msg, slots)
            if self._fresh(("score", ev, "*"), ts, digest, count=False) != "stale"
            else []
        )
        if scores:
            self._remember(("score", ev, "*"), ts, digest)
        if self._fresh(event_scope, ts, digest, count=False) != "stale":
            self._remember(event_scope, ts, digest)
        return Translation(
            "odds_change",
            tuple(prices + statuses + scores),
            ev,
            stale,
            dup,
            tuple(unsupported),
        )

    def _price(self, mapped: MappedMarket, mk: m.OddsMarket, slots: _Slots, ts: int) -> Out | None:
        sels: list[dict[str, Any]] = []
        for o in mk.outcomes:
            name = mapped.selection(o.id)
            if name is None:
                continue  # e.g. correct score "other": no engine selection
            if o.odds is None:
                SKIPPED_MARKETS.labels("no_odds").inc()
                return None
            try:
                sels.append({"selection": name, "odds": odds(o.odds)})
            except FeedError:
                SKIPPED_MARKETS.labels("bad_odds").inc()
                return None
        names = [s["selection"] for s in sels]
        fixed = selections(mapped.spec.market)
        if (
            len(names) < 2
            or len(set(names)) != len(names)
            or (fixed is not None and set(names) != set(fixed))
        ):
            SKIPPED_MARKETS.labels("incomplete").inc()
            return None
        mid = mapped.market_id
        return Out(
            "price_updates",
            mapped.event_id,
            {
                "event_id": mapped.event_id,
                "provider": self.provider,
                "seq": slots.next("price_updates", mid),
                "market_id": mid,
                "market_type": mapped.spec.market.value,
                "period": mapped.spec.period.value,
                "line": mapped.line,
                "selections": sels,
                "provider_ts": ts,
            },
        )

    def _scores(self, msg: m.OddsChange, slots: _Slots) -> list[Out]:
        ses = msg.sport_event_status
        if ses is None or ses.home_score is None or ses.away_score is None:
            return []
        pairs = [(Period.FT, ses.home_score, ses.away_score)]
        first = [p for p in ses.period_scores if p.number == 1]
        if first:
            pairs.append((Period.H1, first[0].home_score, first[0].away_score))
        return [
            Out(
                "scores",
                msg.event_id,
                {
                    "event_id": msg.event_id,
                    "provider": self.provider,
                    "seq": slots.next("scores", msg.event_id),
                    "period": period.value,
                    "home": home,
                    "away": away,
                    "minute": ses.minute or 0,
                    "provider_ts": msg.timestamp_ms,
                },
            )
            for period, home, away in pairs
            if home >= 0 and away >= 0
        ]

    def _bet_stop(self, msg: m.BetStop, digest: bytes) -> Translation:
        ev, ts = msg.event_id, msg.timestamp_ms
        scope = ("event", ev, "*")
        verdict = self._fresh(scope, ts, digest)
        if verdict == "stale":
            return Translation("bet_stop", (), ev, stale=1)
        self._remember(scope, ts, digest)
        slots, in_play = _Slots(ts), self._in_play(msg.product)
        if "all" in msg.groups:
            return Translation(
                "bet_stop", (self._status(slots, ev, None, "suspended", in_play, ts),), ev
            )
        groups = set(msg.groups)
        outs = [
            self._status(slots, ev, mid, "suspended", live, ts)
            for mid, (mapped, live) in sorted(self._event_markets.get(ev, {}).items())
            if mapped.spec.groups & groups
        ]
        return Translation("bet_stop", tuple(outs), ev)

    def _settlement(
        self, msg: m.BetSettlement | m.RollbackBetSettlement, digest: bytes
    ) -> Translation:
        ev, ts = msg.event_id, msg.timestamp_ms
        is_settle = isinstance(msg, m.BetSettlement)
        kind = "bet_settlement" if is_settle else "rollback_bet_settlement"
        slots = _Slots(ts)
        outs: list[Out] = []
        unsupported: list[int] = []
        stale = dup = 0
        markets: Iterable[m.SettledMarket | m.MarketRef] = msg.markets
        for mk in markets:
            mapped = map_market(ev, mk.id, mk.specifiers)
            if mapped is None:
                unsupported.append(mk.id)
                UNSUPPORTED_MARKETS.labels(str(mk.id)).inc()
                continue
            ref = provider_market(mk.id, mk.specifiers)
            scope = ("settle", ev, ref)
            verdict = self._fresh(scope, ts, digest)
            if verdict == "stale":
                stale += 1
                continue
            dup += verdict == "duplicate"
            self._remember(scope, ts, digest)
            verdicts = []
            if isinstance(mk, m.SettledMarket):
                for o in mk.outcomes:
                    name = mapped.selection(o.id)
                    if name is None:
                        continue
                    verdicts.append(
                        {
                            "selection": name,
                            "result": o.result,
                            "void_factor": _q(o.void_factor),
                            "dead_heat_factor": _q(o.dead_heat_factor),
                        }
                    )
            mid = mapped.market_id
            outs.append(
                Out(
                    "provider_settlements",
                    ev,
                    {
                        "event_id": ev,
                        "provider": self.provider,
                        "seq": slots.next("provider_settlements", mid),
                        "kind": "settle" if is_settle else "rollback",
                        "market_id": mid,
                        "market_type": mapped.spec.market.value,
                        "period": mapped.spec.period.value,
                        "line": mapped.line,
                        "provider_market": ref,
                        "certainty": msg.certainty if isinstance(msg, m.BetSettlement) else 0,
                        "outcomes": verdicts,
                        "producer": msg.product,
                        "provider_ts": ts,
                    },
                )
            )
        return Translation(kind, tuple(outs), ev, stale, dup, tuple(unsupported))

    def _cancel(self, msg: m.BetCancel | m.RollbackBetCancel, digest: bytes) -> Translation:
        ev, ts = msg.event_id, msg.timestamp_ms
        is_cancel = isinstance(msg, m.BetCancel)
        kind = "bet_cancel" if is_cancel else "rollback_bet_cancel"
        slots = _Slots(ts)
        targets: list[tuple[str | None, str | None, int | None]] = []
        unsupported: list[int] = []
        for mk in msg.markets:
            mapped = map_market(ev, mk.id, mk.specifiers)
            if mapped is None:
                unsupported.append(mk.id)
                UNSUPPORTED_MARKETS.labels(str(mk.id)).inc()
                continue
            targets.append(
                (mapped.market_id, provider_market(mk.id, mk.specifiers), mk.void_reason)
            )
        if not msg.markets:
            targets.append((None, None, None))  # no market named: every market of the event
        outs: list[Out] = []
        stale = dup = 0
        for mid, ref, void_reason in targets:
            scope = ("cancel", ev, ref or "*")
            verdict = self._fresh(scope, ts, digest)
            if verdict == "stale":
                stale += 1
                continue
            dup += verdict == "duplicate"
            self._remember(scope, ts, digest)
            outs.append(
                Out(
                    "provider_cancels",
                    ev,
                    {
                        "event_id": ev,
                        "provider": self.provider,
                        "seq": slots.next("provider_cancels", mid or ev),
                        "kind": "cancel" if is_cancel else "rollback",
                        "market_id": mid,
                        "provider_market": ref,
                        "start_time": msg.start_time_ms,
                        "end_time": msg.end_time_ms,
                        "void_reason": void_reason,
                        "superceded_by": msg.superceded_by
                        if isinstance(msg, m.BetCancel)
                        else None,
                        "producer": msg.product,
                        "provider_ts": ts,
                    },
                )
            )
        return Translation(kind, tuple(outs), ev, stale, dup, tuple(unsupported))

    def _fixture_record(self, fixture: dict[str, Any], seq: int, ts: int) -> Out:
        return Out("fixtures", fixture["event_id"], {**fixture, "seq": seq, "provider_ts": ts})

    def _fixture(self, msg: m.Fixture, digest: bytes) -> Translation:
        scope = ("fixture", msg.event_id, "*")
        verdict = self._fresh(scope, msg.timestamp_ms, digest)
        if verdict == "stale":
            return Translation("fixtures_fixture", (), msg.event_id, stale=1)
        self._remember(scope, msg.timestamp_ms, digest)
        if msg.home == msg.away:
            raise UofError("home and away competitors are the same", "bad_field")
        sport = "football" if msg.sport in ("soccer", "football") else msg.sport
        fixture = {
            "event_id": msg.event_id,
            "provider": self.provider,
            "sport": sport,
            "competition": msg.competition,
            "home": msg.home,
            "away": msg.away,
            "kickoff": msg.start_time_ms,
        }
        self._fixtures[msg.event_id] = fixture
        slots = _Slots(msg.timestamp_ms)
        out = self._fixture_record(fixture, slots.next("fixtures", msg.event_id), msg.timestamp_ms)
        return Translation("fixtures_fixture", (out,), msg.event_id)

    def _fixture_change(self, msg: m.FixtureChange, digest: bytes) -> Translation:
        ev, ts = msg.event_id, msg.timestamp_ms
        scope = ("fixture", ev, "*")
        verdict = self._fresh(scope, ts, digest)
        if verdict == "stale":
            return Translation("fixture_change", (), ev, stale=1)
        slots = _Slots(ts)
        outs: list[Out] = []
        known = self._fixtures.get(ev)
        if known is not None:
            if msg.start_time_ms is not None:
                known = self._fixtures[ev] = {**known, "kickoff": msg.start_time_ms}
            outs.append(self._fixture_record(known, slots.next("fixtures", ev), ts))
        if msg.change_type == 3:  # the event is cancelled: no more bets; voids come by bet_cancel
            outs.append(self._status(slots, ev, None, "closed", self._in_play(msg.product), ts))
        if not outs:
            raise UofError(
                f"fixture_change for {ev} before its fixture: post Sportradar's fixture "
                "document (fixtures_fixture) for it first",
                "fixture_unknown",
            )
        self._remember(scope, ts, digest)
        return Translation("fixture_change", tuple(outs), ev)


_FACTOR_Q = Decimal("0.0001")


def _q(d: Decimal | None) -> Decimal | None:
    return None if d is None else d.quantize(_FACTOR_Q)


__all__ = ["MarketType", "Out", "Translation", "UofAdapter", "UofError", "provider_market"]
