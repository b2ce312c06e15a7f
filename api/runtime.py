"""One API process's state: Kafka bridge, read models, book, hub, limits, waiting placements."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from oddsflow.api.auth import Verifier
from oddsflow.api.bridge import Delivered, KafkaBridge
from oddsflow.api.models import BetOut, BetStatus
from oddsflow.api.protection import InFlight, TokenBuckets
from oddsflow.api.readmodel import REJECT_MESSAGES, ReadModel
from oddsflow.api.settings import ApiSettings
from oddsflow.api.stream import Book, Hub, _ms_iso
from oddsflow.settings import Settings

RECENT_DECISIONS_MAX = 100_000


def decision_out(d: dict[str, Any]) -> BetOut:
    reason = d["reason"]
    return BetOut(
        bet_id=d["bet_id"],
        account_id=d["account_id"],
        status=BetStatus.ACCEPTED if d["accepted"] else BetStatus.REJECTED,
        stake_minor=d["stake_minor"],
        currency=d["currency"],
        bound_odds=[str(o) for o in d["bound_odds"]],
        potential_return_minor=d["potential_return_minor"],
        reason=reason,
        message=REJECT_MESSAGES.get(reason) if reason else None,
        requested_at=_ms_iso(d["requested_at"]),
        decided_at=_ms_iso(d["decided_at"]),
    )


class Runtime:
    def __init__(self, settings: Settings, api: ApiSettings) -> None:
        self.s = settings
        self.api = api
        self.verifier = Verifier(api)
        self.reads = ReadModel(settings.pg_dsn, api.pg_pool_max)
        self.book = Book()
        self.hub = Hub(self.book)
        self.account_buckets = TokenBuckets(api.rate_account_per_s, api.rate_account_burst)
        self.client_buckets = TokenBuckets(api.rate_client_per_s, api.rate_client_burst)
        self.inflight = InFlight(api.inflight_max)
        self.waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self.recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.bridge: KafkaBridge | None = None

    async def start(self, ready_timeout_s: float = 120.0) -> None:
        loop = asyncio.get_running_loop()
        self.bridge = KafkaBridge(self.s, loop, self.on_records, self.api.instance_id)
        await asyncio.to_thread(self.bridge.start)
        await self.reads.open()
        await asyncio.wait_for(self.bridge.ready.wait(), ready_timeout_s)

    async def stop(self) -> None:
        if self.bridge is not None:
            await asyncio.to_thread(self.bridge.stop)
        await self.reads.close()

    # ------------------------------------------------------------------ engine output
    def on_records(self, batch: list[Delivered]) -> None:
        for d in batch:
            v = d.value
            if d.topic_key == "bet_decisions":
                self._remember(v)
                for fut in self.waiters.pop(v["bet_id"], ()):
                    if not fut.done():
                        fut.set_result(v)
                self.hub.publish_account(
                    v["account_id"], {"type": "decision", **decision_out(v).model_dump()}
                )
            elif d.topic_key == "settlements":
                self.hub.publish_account(
                    v["account_id"],
                    {
                        "type": "settlement",
                        "bet_id": v["bet_id"],
                        "outcome": v["outcome"],
                        "stake_minor": v["stake_minor"],
                        "return_minor": v["return_minor"],
                        "previous_return_minor": v["previous_return_minor"],
                        "revision": v["revision"],
                        "currency": v["currency"],
                        "settled_at": _ms_iso(v["settled_at"]),
                    },
                )
            elif d.topic_key == "priced_markets":
                if self.book.update_market(v):
                    self.hub.publish_market(v)
            elif d.topic_key == "fixtures":
                self.book.update_fixture(v)

    def _remember(self, decision: dict[str, Any]) -> None:
        bet_id = decision["bet_id"]
        if bet_id in self.recent:
            return  # a duplicate request's repeat of the first decision
        self.recent[bet_id] = decision
        if len(self.recent) > RECENT_DECISIONS_MAX:
            self.recent.popitem(last=False)

    def waiter(self, bet_id: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(bet_id, []).append(fut)
        return fut

    def forget(self, bet_id: str, fut: asyncio.Future[dict[str, Any]]) -> None:
        futs = self.waiters.get(bet_id)
        if futs is not None:
            if fut in futs:
                futs.remove(fut)
            if not futs:
                del self.waiters[bet_id]
