"""A small client of the bet API for the demo and the bench: placements and one stream follower.

Runs its own event loop in a thread so synchronous callers (the demo's feed player, the bench's
paced loop) can submit placements without waiting for the answers.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import orjson


@dataclass(frozen=True)
class Answer:
    status: int
    bet_id: str | None
    code: str | None  # error.code for a refusal or rejection
    latency_s: float  # request sent -> response read, of the attempt that was answered
    retries: int
    engine_ms: float | None = None  # the server's Server-Timing "engine" part
    sent_at: float = 0.0  # perf_counter when the answered attempt was sent
    queued_s: float = 0.0  # the answered attempt's wait for a connection slot: the client's backlog


def body_from_record(rec: dict[str, Any]) -> dict[str, Any]:
    """A bet request record (the feed's shape) as a placement body: no bet_id, account, time."""

    def leg(x: dict[str, Any]) -> dict[str, Any]:
        out = {k: x[k] for k in ("event_id", "market_type", "period", "selection")}
        out["odds"] = str(x["odds"])
        if x.get("line") not in (None, ""):
            out["line"] = str(x["line"])
        return out

    return {
        "legs": [leg(x) for x in rec["legs"]],
        "stake_minor": rec["stake_minor"],
        "currency": rec["currency"],
        "price_policy": rec["price_policy"],
    }


def _dumps(v: Any) -> bytes:
    return orjson.dumps(v, default=lambda d: str(d) if isinstance(d, Decimal) else None)


@dataclass
class StreamLog:
    counts: Counter[str] = field(default_factory=Counter)
    versions_in_order: bool = True
    last_version: dict[str, int] = field(default_factory=dict)
    close_code: int | None = None


class ApiClient:
    def __init__(
        self,
        base_url: str,
        token_for: Callable[[str], str],
        *,
        connections: int = 64,
        wait_s: float | None = None,
        max_retries: int = 5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token_for = token_for
        self.connections = connections
        self.wait_s = wait_s
        self.max_retries = max_retries
        self._tokens: dict[str, str] = {}
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="api-client", daemon=True
        )
        self._thread.start()
        self.client: httpx.AsyncClient = self._run(self._make_client())
        self.pending: list[Future[Answer]] = []
        self._stop_stream = asyncio.Event()
        # At most `connections` requests in flight; the rest wait here, not in httpcore's pool,
        # whose queue is rescanned on every state change (quadratic in its length: with 2,000
        # queued the demo's client spent its CPU there and answers took 9-16 s). It also lets
        # `latency_s` exclude the client's own backlog, reported apart as `queued_s`.
        self._slots = asyncio.Semaphore(connections)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def _make_client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(
            max_connections=self.connections, max_keepalive_connections=self.connections
        )
        return httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=60)

    def _token(self, account: str) -> str:
        t = self._tokens.get(account)
        if t is None:
            t = self._tokens[account] = self.token_for(account)
        return t

    def submit(self, account: str, key: str, body: dict[str, Any]) -> Future[Answer]:
        fut = asyncio.run_coroutine_threadsafe(self.place(account, key, body), self.loop)
        self.pending.append(fut)
        return fut

    async def place(self, account: str, key: str, body: dict[str, Any]) -> Answer:
        headers = {
            "Authorization": f"Bearer {self._token(account)}",
            "Idempotency-Key": key,
            "Content-Type": "application/json",
        }
        if self.wait_s is not None:
            headers["Prefer"] = f"wait={self.wait_s:g}"
        content = _dumps(body)
        retries = 0
        while True:
            asked = time.perf_counter()
            async with self._slots:
                t0 = time.perf_counter()
                resp = await self.client.post("/v1/bets", content=content, headers=headers)
                latency = time.perf_counter() - t0
            if resp.status_code in (429, 503) and retries < self.max_retries:
                # Shed or limited: back off as told, then retry with the same key (safe).
                retries += 1
                await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                continue
            data = resp.json()
            bet_id = data.get("bet_id") or (data.get("bet") or {}).get("bet_id")
            code = (data.get("error") or {}).get("code")
            timing = re.search(r"engine;dur=([0-9.]+)", resp.headers.get("Server-Timing", ""))
            engine_ms = float(timing[1]) if timing else None
            return Answer(
                resp.status_code, bet_id, code, latency, retries, engine_ms, t0, t0 - asked
            )

    def results(self, timeout_s: float = 300) -> list[Answer]:
        out = [f.result(timeout_s) for f in self.pending]
        self.pending = []
        return out

    # ------------------------------------------------------------------ stream
    def follow(self, token: str, events: list[str]) -> Future[StreamLog]:
        return asyncio.run_coroutine_threadsafe(self._follow(token, events), self.loop)

    async def _follow(self, token: str, events: list[str]) -> StreamLog:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        log = StreamLog()
        url = self.base_url.replace("http://", "ws://") + "/v1/stream"
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send(orjson.dumps({"op": "subscribe", "events": events}).decode())
            stop = asyncio.create_task(self._stop_stream.wait())
            try:
                while not self._stop_stream.is_set():
                    recv = asyncio.create_task(ws.recv())
                    done, _ = await asyncio.wait({recv, stop}, return_when=asyncio.FIRST_COMPLETED)
                    if recv not in done:
                        recv.cancel()
                        break
                    msg = orjson.loads(recv.result())
                    log.counts[msg["type"]] += 1
                    if msg["type"] == "snapshot":
                        for m in msg["markets"]:
                            log.last_version[m["market_id"]] = m["version"]
                    elif msg["type"] == "market":
                        prev = log.last_version.get(msg["market_id"], 0)
                        log.versions_in_order &= msg["version"] > prev
                        log.last_version[msg["market_id"]] = msg["version"]
            except ConnectionClosed as exc:
                log.close_code = exc.rcvd.code if exc.rcvd else None
            finally:
                stop.cancel()
        return log

    def stop_stream(self) -> None:
        self.loop.call_soon_threadsafe(self._stop_stream.set)

    def close(self) -> None:
        self._run(self.client.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def percentile_ms(latencies_s: list[float], q: float) -> float:
    if not latencies_s:
        return 0.0
    xs = sorted(latencies_s)
    i = min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))
    return xs[i] * 1000
