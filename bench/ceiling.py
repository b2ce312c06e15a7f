"""The in-process ceiling: the engine's own per-message work with no Kafka at all.

The same handlers the agents run (``processors.markets`` / ``processors.wallet`` over the
pure domain), with every message Avro-encoded and decoded as on the wire and the state in
dicts, routed hop to hop in one loop. Its rate is what one core could do if Kafka, Faust and
asyncio cost nothing: an upper bound for one worker process, to set beside the passthrough
baseline (Kafka with no logic).
"""

from __future__ import annotations

import time
from collections import deque
from decimal import Decimal
from typing import Any

from oddsflow import topology
from oddsflow.codec import Codec
from oddsflow.domain.acceptance import Limits, MarketState
from oddsflow.processors.market_view import MarketEntry, entry_from_record
from oddsflow.processors.markets import Book, MarketsHandler
from oddsflow.processors.state import Effects, Store
from oddsflow.processors.wallet import WalletHandler
from oddsflow.settings import Settings


class _View:
    """The market view, fed in process from every priced_markets output."""

    def __init__(self) -> None:
        self.entries: dict[str, MarketEntry] = {}

    def get(self, market_id: str) -> MarketState | None:
        entry = self.entries.get(market_id)
        return None if entry is None or not entry.state.prices else entry.state

    def age_ms(self, market_id: str, now_ms: int) -> int | None:
        entry = self.entries.get(market_id)
        return None if entry is None else max(0, now_ms - entry.priced_ts_ms)


class InProcessEngine:
    def __init__(self, s: Settings) -> None:
        topo = topology.load(settings=s)
        # a handler is fed, and emits, one item of a topic of batches at a time
        self.codecs = {
            k: Codec(spec.item_schema or spec.value_schema) for k, spec in topo.topics.items()
        }
        limits = Limits(bet_delay_ms_in_play=0)
        self.markets = MarketsHandler(
            Store({}),
            Store({}),
            Store({}),
            Store({}),
            Book(margin=Decimal(s.margin), limits=limits),
            account_partitions=topo.group_partitions("account"),
            quota_currency=s.currency,
        )
        self.view = _View()
        self.wallet = WalletHandler(
            Store({}),
            Store({}),
            limits,
            view=self.view,
            quotas=Store({}),
            account_partitions=topo.group_partitions("account"),
        )
        m, w = self.markets, self.wallet
        self.routes = {
            "price_updates": m.on_price_update,
            "results": m.on_result,
            "settle_continuations": m.on_settle_continuation,
            "leg_commands": m.on_leg_command,
            "accepted_legs": m.on_accepted_leg,
            "bet_requests": w.on_bet_request,
            "deposits": w.on_deposit,
            "leg_verdicts": w.on_leg_verdict,
            "leg_settlements": w.on_leg_settlements,
            "quota_grants": w.on_quota_message,
        }
        self.outputs: dict[str, int] = {}

    def feed(self, topic: str, record: dict[str, Any], now_ms: int) -> None:
        # First in, first out, as a partition delivers: a stack handed a market's three quota
        # grants to the wallet newest first, which dropped the older two as redeliveries
        # (their seq below the applied one), so every bet took the authoritative path.
        queue = deque([(topic, self.codecs[topic].encode(record))])
        while queue:
            t, raw = queue.popleft()
            fx = Effects()
            self.routes[t](self.codecs[t].decode(raw), fx, now_ms)
            for o in fx.out:
                data = self.codecs[o.topic].encode(o.value)
                self.outputs[o.topic] = self.outputs.get(o.topic, 0) + 1
                if o.topic == "priced_markets":
                    entry = entry_from_record(self.codecs[o.topic].decode(data), 0, 0)
                    self.view.entries[entry.state.market_id] = entry
                if o.topic in self.routes:
                    queue.append((o.topic, data))


def measure(s: Settings, n: int) -> dict[str, Any]:
    """Bets decided and price updates priced per second of one core, in process."""
    from oddsflow.bench.scenarios import bet, deposit, price_update

    eng = InProcessEngine(s)
    now = int(time.time() * 1000)
    events = [f"e{i}" for i in range(50)]
    for i, e in enumerate(events):
        eng.feed("price_updates", {**price_update(e, 1), "provider_ts": now + i}, now)
    accounts = [f"a{i}" for i in range(1000)]
    for a in accounts:
        eng.feed("deposits", deposit(a, 10_000_000_00), now)
    bets = [bet(f"c{i}", accounts[i % 1000], events[i % 50]) for i in range(n)]
    t0 = time.perf_counter()
    for b in bets:
        eng.feed("bet_requests", {**b, "placed_at": now}, now)
    bet_s = time.perf_counter() - t0
    decided = eng.outputs.get("bet_decisions", 0)
    # Every single sent the authoritative way is one leg command: the share that was not is
    # the fast path's, as the bets scenario reports it for the workers (100 % there).
    authoritative = eng.outputs.get("leg_commands", 0)
    updates = [{**price_update(events[i % 50], 2 + i), "provider_ts": now} for i in range(n)]
    t0 = time.perf_counter()
    for u in updates:
        eng.feed("price_updates", u, now)
    price_s = time.perf_counter() - t0
    return {
        "n": n,
        "bets_decided": decided,
        "bets_per_s": round(decided / bet_s, 1),
        "us_per_bet": round(1e6 * bet_s / n, 1),
        "fast_share_pct": round(100 * (n - authoritative) / max(1, n), 1),
        "prices_per_s": round(n / price_s, 1),
        "us_per_price": round(1e6 * price_s / n, 1),
    }
