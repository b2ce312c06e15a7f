"""The live side: the in-memory book, and the WebSocket hub that fans the engine's output out.

Why memory for the book, not Postgres: ``markets.priced`` is compacted (the latest per market),
so replaying it on start-up *is* the read model, and feeding the snapshot and the deltas from
one consumer on one event loop makes "snapshot, then every later version in order" true by
construction (a database read racing the stream could not promise that).

Each connection has one bounded send queue. A client that keeps up gets every version; once
``ws_conflate_after`` messages wait for it, a market update replaces that market's update still
waiting in the queue (conflation: a slow client gets the latest price, never a stale backlog); a client whose queue is full of other messages, or that has not taken its oldest message
for ``ws_stall_max_s``, is closed with 4008 and a reason. Memory per connection is therefore at
most ``ws_queue_max`` messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from oddsflow.api import metrics
from oddsflow.api.models import MarketOut, SelectionOut

CLOSE_SLOW = 4008
CLOSE_UNAUTHORIZED = 4001
# An operator's connection follows every account's decisions and settlements.
ALL_ACCOUNTS = ""  # never an account id: a token without a subject is refused


def _ms_iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def market_out(m: dict[str, Any]) -> MarketOut:
    return MarketOut(
        market_id=m["market_id"],
        event_id=m["event_id"],
        market_type=m["market_type"],
        period=m["period"],
        line=m["line"],
        status=m["status"],
        in_play=m["in_play"],
        version=m["version"],
        selections=[
            SelectionOut(selection=s["selection"], odds=str(s["odds"])) for s in m["selections"]
        ],
    )


class Book:
    """market_id -> the latest priced market; event_id -> fixture."""

    def __init__(self) -> None:
        self.markets: dict[str, dict[str, Any]] = {}
        self.by_event: dict[str, dict[str, None]] = {}
        self.fixtures: dict[str, dict[str, Any]] = {}

    def update_market(self, rec: dict[str, Any]) -> bool:
        old = self.markets.get(rec["market_id"])
        if old is not None and old["version"] >= rec["version"]:
            return False
        self.markets[rec["market_id"]] = rec
        self.by_event.setdefault(rec["event_id"], {})[rec["market_id"]] = None
        return True

    def update_fixture(self, rec: dict[str, Any]) -> None:
        old = self.fixtures.get(rec["event_id"])
        if old is None or old["seq"] <= rec["seq"]:
            self.fixtures[rec["event_id"]] = rec

    def event_markets(self, event_id: str) -> list[dict[str, Any]]:
        return [self.markets[m] for m in self.by_event.get(event_id, {})]

    def event_ids(self) -> list[str]:
        return sorted(set(self.fixtures) | set(self.by_event))

    def in_play(self, event_id: str) -> bool:
        return any(m["in_play"] for m in self.event_markets(event_id))

    def market_in_play(self, market_id: str) -> bool:
        m = self.markets.get(market_id)
        return bool(m and m["in_play"])


def _json_default(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    raise TypeError(type(v).__name__)


@dataclass(eq=False)  # identity: a connection is a set member
class Connection:
    ws: WebSocket
    account_id: str
    queue_max: int
    stall_max_s: float
    conflate_after: int = 8
    events: set[str] = field(default_factory=set)
    queue: OrderedDict[tuple[str, Any], tuple[dict[str, Any], float]] = field(
        default_factory=OrderedDict
    )
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closing: bool = False
    overflowed: bool = False
    last_sent: float = field(default_factory=time.monotonic)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    # market_id -> the queue key of its newest update (bounded by the subscribed markets)
    _latest: dict[str, tuple[str, Any]] = field(default_factory=dict)

    def push(self, msg: dict[str, Any], market_id: str | None = None) -> bool:
        """Queue a message; False if the client is too slow (the caller closes it)."""
        if self.closing:
            return True
        now = time.monotonic()
        key: tuple[str, Any] = ("x", next(self._seq))
        if market_id is not None:
            waiting = self._latest.get(market_id)
            if (
                waiting is not None
                and waiting in self.queue
                and len(self.queue) >= self.conflate_after
            ):
                # Behind: replace that market's waiting update (keeping its place and age), so
                # the client gets the newest price, never a backlog of stale ones.
                self.queue[waiting] = (msg, self.queue[waiting][1])
                metrics.WS_CONFLATED.inc()
                return True
            self._latest[market_id] = key
        if len(self.queue) >= self.queue_max:
            return False
        self.queue[key] = (msg, now)
        self.wake.set()
        return True

    def stalled(self, now: float) -> bool:
        if not self.queue:
            return False
        oldest = next(iter(self.queue.values()))[1]
        return now - oldest > self.stall_max_s

    async def sender(self) -> None:
        while True:
            await self.wake.wait()
            while self.queue:
                _, (msg, _) = self.queue.popitem(last=False)
                await self.ws.send_text(orjson.dumps(msg, default=_json_default).decode())
                self.last_sent = time.monotonic()
                metrics.WS_SENT.labels(msg["type"]).inc()
            self.wake.clear()


class Hub:
    def __init__(self, book: Book) -> None:
        self.book = book
        self.by_event: dict[str, set[Connection]] = {}
        self.by_account: dict[str, set[Connection]] = {}

    def add(self, c: Connection) -> None:
        self.by_account.setdefault(c.account_id, set()).add(c)
        metrics.WS_CONNECTIONS.inc()

    def remove(self, c: Connection) -> None:
        for e in list(c.events):
            self.unsubscribe(c, e)
        conns = self.by_account.get(c.account_id)
        if conns is not None:
            conns.discard(c)
            if not conns:
                del self.by_account[c.account_id]
        metrics.WS_CONNECTIONS.dec()

    def subscribe(self, c: Connection, event_id: str) -> None:
        if event_id in c.events:
            return
        # Snapshot and registration in one loop step: every later delta is queued after it.
        fixture = self.book.fixtures.get(event_id)
        snap = {
            "type": "snapshot",
            "event_id": event_id,
            "fixture": None
            if fixture is None
            else {
                "home": fixture["home"],
                "away": fixture["away"],
                "competition": fixture["competition"],
                "kickoff": _ms_iso(fixture["kickoff"]),
            },
            "markets": [market_out(m).model_dump() for m in self.book.event_markets(event_id)],
        }
        c.events.add(event_id)
        self.by_event.setdefault(event_id, set()).add(c)
        self._push(c, snap)

    def unsubscribe(self, c: Connection, event_id: str) -> None:
        c.events.discard(event_id)
        conns = self.by_event.get(event_id)
        if conns is not None:
            conns.discard(c)
            if not conns:
                del self.by_event[event_id]
        # Updates of that event still queued are dropped: the client said it no longer wants them.
        for key in [k for k, (m, _) in c.queue.items() if m.get("event_id") == event_id]:
            del c.queue[key]
        for mid in [m for m in c._latest if m.startswith(f"{event_id}/")]:
            del c._latest[mid]

    def _push(self, c: Connection, msg: dict[str, Any], market_id: str | None = None) -> None:
        if not c.push(msg, market_id):
            c.overflowed = True  # the connection's watchdog closes it

    def publish_market(self, rec: dict[str, Any]) -> None:
        conns = self.by_event.get(rec["event_id"])
        if not conns:
            return
        msg = {"type": "market", **market_out(rec).model_dump()}
        for c in list(conns):
            self._push(c, msg, rec["market_id"])

    def publish_account(self, account_id: str, msg: dict[str, Any]) -> None:
        for c in list(self.by_account.get(account_id, ())):
            self._push(c, msg)
        for c in list(self.by_account.get(ALL_ACCOUNTS, ())):
            self._push(c, msg)


async def watchdog(c: Connection, sender: asyncio.Task[None], heartbeat_s: float) -> None:
    """Heartbeats when idle; closes the connection when it overflows or stalls."""
    tick = min(heartbeat_s, max(c.stall_max_s / 4, 0.05), 1.0)
    while not c.closing:
        await asyncio.sleep(tick)
        now = time.monotonic()
        if c.overflowed:
            await close_slow(c, sender, f"slow consumer: more than {c.queue_max} messages queued")
            return
        if c.stalled(now):
            await close_slow(c, sender, f"slow consumer: no progress for {c.stall_max_s:g}s")
            return
        if sender.done():
            return
        if not c.queue and now - c.last_sent >= heartbeat_s:
            c.push({"type": "heartbeat", "ts": int(time.time() * 1000)})


async def close_slow(c: Connection, sender: asyncio.Task[None], reason: str) -> None:
    c.closing = True
    metrics.WS_CLOSED_SLOW.inc()
    metrics.WS_DROPPED.inc(len(c.queue))
    c.queue.clear()
    sender.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await sender
    with contextlib.suppress(Exception):
        await c.ws.close(code=CLOSE_SLOW, reason=reason)


async def receive_ops(c: Connection, hub: Hub, subscriptions_max: int) -> None:
    """The client's side: subscribe / unsubscribe / ping, until it disconnects."""
    while True:
        try:
            text = await c.ws.receive_text()
        except (WebSocketDisconnect, RuntimeError):
            return
        try:
            op = orjson.loads(text)
            if not isinstance(op, dict):
                raise ValueError("a message must be a JSON object")
            kind = op.get("op")
            events = op.get("events", [])
            if kind in ("subscribe", "unsubscribe") and (
                not isinstance(events, list) or not all(isinstance(e, str) for e in events)
            ):
                raise ValueError("events must be a list of event ids")
        except ValueError as exc:
            hub._push(c, {"type": "error", "code": "bad_message", "message": str(exc)})
            continue
        if kind == "subscribe":
            if len(c.events | set(events)) > subscriptions_max:
                hub._push(
                    c,
                    {
                        "type": "error",
                        "code": "too_many_subscriptions",
                        "message": f"at most {subscriptions_max} events per connection",
                    },
                )
                continue
            hub._push(c, {"type": "subscribed", "events": events})
            for e in events:
                hub.subscribe(c, e)
        elif kind == "unsubscribe":
            for e in events:
                hub.unsubscribe(c, e)
            hub._push(c, {"type": "unsubscribed", "events": events})
        elif kind == "ping":
            hub._push(c, {"type": "pong", "ts": int(time.time() * 1000)})
        else:
            hub._push(
                c,
                {
                    "type": "error",
                    "code": "unknown_op",
                    "message": "op must be subscribe, unsubscribe or ping",
                },
            )
