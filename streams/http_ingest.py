"""HTTP push endpoint for upstream feed providers.

``POST /feeds/{provider}/events`` with ``Authorization: Bearer <token>`` and a JSON array of
provider items (see :mod:`oddsflow.streams.normalise`). Each item is validated and normalised;
valid ones are produced to their topology topic, invalid ones to ``dead_letters`` with the
original item bytes and the reason. The response is sent only after ``flush()`` confirmed that
Kafka has every message of the batch, so a 202 means "durably accepted" and anything else means
"retry the batch" (a retry is harmless: the engine drops stale/duplicate provider sequence numbers).

Responses::

    202 {"accepted": n, "duplicates": d, "rejected": [{"index": i, "reason": "..."}]}
    400 same shape when every item was rejected; {"error": ...} when the body is not a JSON array
    401 no/malformed bearer token        403 wrong token or unknown provider
    413 batch too large                  503 Kafka did not take the batch (retry)

Sequence numbers: the ingestor remembers the last ``seq`` per (provider, scope) where scope
mirrors the engine's stale checks (price: market; fixture/status/score: event) and drops an item
whose ``seq`` is not above it, counting it in ``oddsflow_stale_updates_total{kind="ingest_*"}``.
That is only an optimisation: the engine performs the same check authoritatively.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections import OrderedDict
from decimal import Decimal
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from oddsflow.codec import CodecError
from oddsflow.kafka import EventProducer
from oddsflow.metrics import DEAD_LETTERS, INGEST_REJECTED, INGESTED, STALE_UPDATES
from oddsflow.settings import Settings, get_settings
from oddsflow.streams.normalise import (
    KIND_TOPICS,
    FeedError,
    _reject_constant,
    dedup_key,
    normalise,
)

log = logging.getLogger(__name__)

STAGE = "ingest.http"
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_ITEMS = 10_000
SEQ_MEMORY = 200_000  # scopes remembered for de-duplication (LRU); forgetting one only costs a duplicate the engine drops

_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)
TOPIC_KINDS = {t: k for k, t in KIND_TOPICS.items()}


def parse_tokens(spec: str) -> dict[str, str]:
    """``"demo:demo-token,csv:csv-token"`` -> ``{"demo": "demo-token", "csv": "csv-token"}``."""
    out: dict[str, str] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        provider, sep, token = part.partition(":")
        if not sep or not provider.strip() or not token.strip():
            raise ValueError(f"provider token entry must be 'provider:token', got {part!r}")
        out[provider.strip()] = token.strip()
    return out


def split_array(body: bytes) -> list[tuple[Any, bytes]]:
    """Parse a JSON array, keeping each element's exact bytes (for dead letters).

    Raises FeedError if the body is not a JSON array. Numbers are parsed as Decimal/int.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FeedError("body is not UTF-8", "bad_body") from None
    i, n = 0, len(text)

    def skip(j: int) -> int:
        while j < n and text[j] in " \t\r\n":
            j += 1
        return j

    i = skip(i)
    if i >= n or text[i] != "[":
        raise FeedError("body must be a JSON array of items", "bad_body")
    i = skip(i + 1)
    out: list[tuple[Any, bytes]] = []
    if i < n and text[i] == "]":
        if skip(i + 1) != n:
            raise FeedError("trailing data after the JSON array", "bad_body")
        return out
    while True:
        try:
            value, end = _DECODER.raw_decode(text, i)
        except (json.JSONDecodeError, ValueError) as exc:
            raise FeedError(f"body is not valid JSON: {exc}", "bad_body") from None
        out.append((value, text[i:end].encode("utf-8")))
        i = skip(end)
        if i < n and text[i] == ",":
            i = skip(i + 1)
            continue
        if i < n and text[i] == "]":
            if skip(i + 1) != n:
                raise FeedError("trailing data after the JSON array", "bad_body")
            return out
        raise FeedError(f"body is not valid JSON: expected ',' or ']' at character {i}", "bad_body")


class Ingestor:
    """Validates, normalises and produces provider batches; one per process."""

    def __init__(self, settings: Settings, producer: EventProducer | None = None) -> None:
        self.settings = settings
        self.tokens = parse_tokens(settings.provider_tokens)
        self._producer = producer
        # One batch at a time: EventProducer.flush() reports delivery errors for everything in
        # flight, so concurrent batches could be acknowledged for each other's failures; and the
        # seq memory must only learn a batch's seqs once that batch is safely in Kafka.
        self._lock = asyncio.Lock()
        self._last_seq: OrderedDict[tuple[str, str, str], int] = OrderedDict()

    @property
    def producer(self) -> EventProducer:
        if self._producer is None:
            self._producer = EventProducer(self.settings)
        return self._producer

    def check_auth(self, provider: str, header: str | None) -> tuple[int, str] | None:
        """None if authorised, else (status, reason)."""
        if not header or not header.startswith("Bearer ") or not header[7:].strip():
            return 401, "missing bearer token"
        expected = self.tokens.get(provider)
        # compare_digest on both branches keeps timing from revealing which providers exist.
        ok = hmac.compare_digest(header[7:].strip().encode(), (expected or "\0").encode())
        if expected is None or not ok:
            return 403, "token not valid for this provider"
        return None

    async def ingest(self, provider: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Handle one batch; returns (HTTP status, JSON payload)."""
        try:
            items = split_array(body)
        except FeedError as exc:
            INGEST_REJECTED.labels(provider, exc.code).inc()
            return 400, {"error": exc.reason}
        if not items:
            return 400, {"error": "empty batch"}
        if len(items) > MAX_ITEMS:
            return 413, {"error": f"at most {MAX_ITEMS} items per batch, got {len(items)}"}
        async with self._lock:
            return await self._ingest_locked(provider, items)

    async def _ingest_locked(
        self, provider: str, items: list[tuple[Any, bytes]]
    ) -> tuple[int, dict[str, Any]]:
        producer = self.producer
        now_ms = time.time_ns() // 1_000_000
        accepted: list[tuple[str, str]] = []  # (provider, kind) for the metric after the flush
        rejected: list[dict[str, Any]] = []
        pending_seq: dict[tuple[str, str, str], int] = {}
        duplicates = 0
        for index, (item, raw) in enumerate(items):
            try:
                topic_key, key, record = normalise(item, provider)
                scope = dedup_key(topic_key, record)
                if scope is not None:
                    mem = (provider, *scope)
                    last = pending_seq.get(mem, self._last_seq.get(mem))
                    if last is not None and record["seq"] <= last:
                        duplicates += 1
                        STALE_UPDATES.labels(f"ingest_{TOPIC_KINDS[topic_key]}").inc()
                        continue
                value = producer.codec(topic_key).encode(record)
            except (FeedError, CodecError) as exc:
                reason = str(exc)
                code = exc.code if isinstance(exc, FeedError) else "schema"
                rejected.append({"index": index, "reason": reason})
                self._dead_letter(provider, index, raw, item, reason, code, now_ms)
                continue
            producer.send_raw(topic_key, key, value)
            if scope is not None:
                pending_seq[mem] = record["seq"]
            accepted.append((provider, TOPIC_KINDS[topic_key]))
        try:
            # flush() blocks (librdkafka); run it off the event loop so /healthz stays responsive.
            await asyncio.get_running_loop().run_in_executor(None, producer.flush)
        except Exception as exc:  # KafkaException: nothing of this batch is acknowledged
            log.error("batch from %s not acknowledged: %s", provider, exc)
            return 503, {"error": f"Kafka did not take the batch, retry it: {exc}"}
        for mem, seq in pending_seq.items():
            self._last_seq[mem] = seq
            self._last_seq.move_to_end(mem)
        while len(self._last_seq) > SEQ_MEMORY:
            self._last_seq.popitem(last=False)
        for p, kind in accepted:
            INGESTED.labels(p, kind).inc()
        payload = {"accepted": len(accepted), "duplicates": duplicates, "rejected": rejected}
        status = 400 if rejected and not accepted and not duplicates else 202
        return status, payload

    def _dead_letter(
        self, provider: str, index: int, raw: bytes, item: Any, reason: str, code: str, now_ms: int
    ) -> None:
        source = f"http:{provider}"
        key = None
        if isinstance(item, dict):
            k = item.get("event_id") or item.get("account_id")
            key = k.encode() if isinstance(k, str) else None
        self.producer.send(
            "dead_letters",
            source,
            {
                "topic": source,
                "partition": -1,
                "offset": index,
                "key": key,
                "value": raw,
                "error": reason,
                "error_type": code,
                "stage": STAGE,
                "failed_at": now_ms,
            },
        )
        INGEST_REJECTED.labels(provider, code).inc()
        DEAD_LETTERS.labels(STAGE, code).inc()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush()


INGESTOR_KEY = web.AppKey("ingestor", Ingestor)


def _json(status: int, payload: dict[str, Any], **headers: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload).encode(),
        content_type="application/json",
        headers=headers or None,
    )


async def _post_events(request: web.Request) -> web.Response:
    ingestor = request.app[INGESTOR_KEY]
    provider = request.match_info["provider"]
    denied = ingestor.check_auth(provider, request.headers.get("Authorization"))
    if denied is not None:
        status, reason = denied
        extra = {"WWW-Authenticate": 'Bearer realm="oddsflow-feeds"'} if status == 401 else {}
        return _json(status, {"error": reason}, **extra)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _json(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
    status, payload = await ingestor.ingest(provider, body)
    return _json(status, payload)


async def _healthz(request: web.Request) -> web.Response:
    return _json(200, {"status": "ok"})


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(
    settings: Settings | None = None, producer: EventProducer | None = None
) -> web.Application:
    """The aiohttp application (tests run it in-process; ``run_http_ingest`` serves it)."""
    s = settings or get_settings()
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    ingestor = Ingestor(s, producer)
    app[INGESTOR_KEY] = ingestor
    app.router.add_post("/feeds/{provider}/events", _post_events)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)

    async def _close(_: web.Application) -> None:
        await asyncio.get_running_loop().run_in_executor(None, ingestor.close)

    app.on_cleanup.append(_close)
    return app


def run_http_ingest(
    settings: Settings | None = None, *, host: str = "127.0.0.1", port: int | None = None
) -> None:
    """Serve the ingest endpoint until interrupted (``oddsflow ingest-http``)."""
    s = settings or get_settings()
    web.run_app(
        create_app(s),
        host=host,
        port=port if port is not None else s.ingest_port,
        print=lambda msg: log.info("%s", msg),
    )
