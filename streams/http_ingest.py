"""HTTP push endpoint for upstream feed providers.

``POST /feeds/{provider}/events`` with ``Authorization: Bearer <token>`` and a JSON array of
provider items (see :mod:`oddsflow.streams.normalise`). Each item is validated and normalised;
valid ones are produced to their topology topic, invalid ones to ``dead_letters`` with the
original item bytes and the reason. The response is sent only after ``flush()`` confirmed that
Kafka has every message of the batch, so a 202 means "durably accepted" and anything else means
"retry the batch" (a retry is harmless: the engine drops stale/duplicate provider sequence numbers).

Responses (every answer is JSON; every refusal carries a reason)::

    202 {"accepted": n, "duplicates": d, "rejected": [{"index": i, "reason": "...", "code": c}],
         "accepted_indexes": [...], "duplicate_indexes": [...]}   exactly which items landed
    400 same shape when every item was rejected; {"error": reason, "code": c, "accepted": 0}
        when the body is not a JSON array (bad JSON, nested too deeply, a bad Content-Encoding)
    401 no/malformed bearer token        403 wrong token or unknown provider
    413 body, or every item, over its size limit (``ODDSFLOW_INGEST_BODY_MAX_BYTES``,
        ``ODDSFLOW_INGEST_ITEM_MAX_BYTES``), or too many items (``ODDSFLOW_INGEST_ITEMS_MAX``)
    415 a Content-Encoding other than identity, gzip or deflate
    503 Kafka did not confirm the batch (retry it)

Limits: one item is a Kafka message, which must stay under the broker's ~1 MB limit, so an item
over ``ingest_item_max_bytes`` is rejected on its own (with its reason, dead-lettered truncated)
and the rest of the batch proceeds. A 4xx for the whole body means nothing of it was produced.

Sequence numbers: the ingestor remembers the last ``seq`` per (provider, scope) where scope
mirrors the engine's stale checks (price: market; fixture/status/score: event) and drops an item
whose ``seq`` is not above it, counting it in ``oddsflow_stale_updates_total{kind="ingest_*"}``.
That is only an optimisation: the engine performs the same check authoritatively.

Outside dev mode (``ODDSFLOW_ENV=dev``) the endpoint refuses to start with the built-in provider
tokens, which are public in this repository.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import zlib
from collections import OrderedDict
from decimal import Decimal
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from confluent_kafka import KafkaException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from oddsflow.codec import CodecError
from oddsflow.domain.currency import CurrencyError, parse_accepted
from oddsflow.domain.validation import ValidationError, identifier
from oddsflow.kafka import EventProducer
from oddsflow.metrics import DEAD_LETTERS, INGEST_REJECTED, INGESTED, STALE_UPDATES
from oddsflow.settings import DEV_PROVIDER_TOKENS, Settings, get_settings
from oddsflow.streams.normalise import (
    KIND_TOPICS,
    FeedError,
    _reject_constant,
    dedup_key,
    normalise,
)
from oddsflow.streams.uof.http import post_uof

log = logging.getLogger(__name__)

STAGE = "ingest.http"
MAX_BODY_BYTES = Settings.model_fields["ingest_body_max_bytes"].default
MAX_ITEMS = Settings.model_fields["ingest_items_max"].default
MAX_JSON_DEPTH = 16  # an item is 4 levels deep (item, selections, selection); 16 is generous
REASON_CHARS_MAX = 1_000
SEQ_MEMORY = 200_000  # scopes remembered for de-duplication (LRU); forgetting one only costs a duplicate the engine drops

_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)
TOPIC_KINDS = {t: k for k, t in KIND_TOPICS.items()}


class IngestConfigError(ValueError):
    """The endpoint cannot start with these settings; ``str(exc)`` is one line saying why."""


class BodyError(Exception):
    """A request body refused as a whole: nothing of it was produced."""

    def __init__(self, status: int, reason: str, code: str) -> None:
        super().__init__(reason)
        self.status, self.reason, self.code = status, reason, code


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
        token = token.strip()
        if not (token.isascii() and token.isprintable()) or " " in token:
            raise ValueError(f"the token of provider {provider.strip()!r} must be printable ASCII")
        out[provider.strip()] = token
    return out


def check_config(settings: Settings) -> tuple[dict[str, str], frozenset[str]]:
    """The provider tokens and accepted currencies, or IngestConfigError (one line)."""
    try:
        tokens = parse_tokens(settings.provider_tokens)
        accepted = parse_accepted(settings.accepted_currencies)
    except (ValueError, CurrencyError) as exc:
        raise IngestConfigError(f"ingest-http: bad setting: {exc}") from None
    if not tokens:
        raise IngestConfigError("ingest-http: ODDSFLOW_PROVIDER_TOKENS names no provider")
    if settings.env != "dev":
        builtin = set(parse_tokens(DEV_PROVIDER_TOKENS).values())
        leaked = sorted(p for p, t in tokens.items() if t in builtin)
        if leaked:
            raise IngestConfigError(
                f"ingest-http: refusing to start with the built-in provider tokens "
                f"({', '.join(leaked)}) outside dev mode: set ODDSFLOW_PROVIDER_TOKENS to real "
                f"secrets, or ODDSFLOW_ENV=dev for a local run"
            )
    return tokens, accepted


def decode_content(data: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """The body with its Content-Encoding (identity, gzip, deflate) undone; BodyError if not.

    Decompression is bounded by ``max_bytes``: a small gzip bomb costs nothing.
    """
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    if len(codings) > 2:
        raise BodyError(415, f"too many Content-Encodings: {content_encoding!r}", "bad_encoding")
    for coding in reversed(codings):  # the last coding applied is undone first
        if coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            wbits = 16 + zlib.MAX_WBITS
        elif coding == "deflate":
            wbits = zlib.MAX_WBITS
        else:
            raise BodyError(
                415,
                f"unsupported Content-Encoding {coding!r} (identity, gzip or deflate)",
                "bad_encoding",
            )
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(data, max_bytes + 1)
        except zlib.error as exc:
            raise BodyError(
                400, f"body is not valid {coding} (Content-Encoding): {exc}", "bad_encoding"
            ) from None
        if len(out) > max_bytes or d.unconsumed_tail:
            raise BodyError(
                413, f"decompressed body larger than {max_bytes} bytes", "body_too_large"
            )
        if not d.eof:
            raise BodyError(400, f"{coding} body is truncated", "bad_encoding")
        if d.unused_data:
            raise BodyError(400, f"trailing data after the {coding} stream", "bad_encoding")
        data = out
    return data


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when JSON ``value`` nests objects/arrays deeper than ``limit`` (no recursion)."""
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _reason(text: str) -> str:
    """A reason safe to put anywhere: bounded, and valid UTF-8 even from lone surrogates."""
    if len(text) > REASON_CHARS_MAX:
        text = f"{text[:REASON_CHARS_MAX]}... ({len(text)} chars)"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


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
        except RecursionError:
            raise FeedError("body is not valid JSON: nested too deeply", "too_deep") from None
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
        self.tokens, self.accepted_currencies = check_config(settings)
        self.item_max_bytes = settings.ingest_item_max_bytes
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
        token = header[7:].strip()
        # aiohttp decodes header bytes leniently; a token is printable ASCII, anything else is
        # malformed (and would not even encode for the comparison).
        if not (token.isascii() and token.isprintable()):
            return 401, "malformed bearer token (printable ASCII expected)"
        expected = self.tokens.get(provider)
        # compare_digest on both branches keeps timing from revealing which providers exist.
        ok = hmac.compare_digest(token.encode("ascii"), (expected or "\0").encode("ascii"))
        if expected is None or not ok:
            return 403, "token not valid for this provider"
        return None

    async def ingest(self, provider: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Handle one batch; returns (HTTP status, JSON payload)."""
        try:
            items = split_array(body)
        except FeedError as exc:
            INGEST_REJECTED.labels(provider, exc.code).inc()
            return 400, refusal(exc.reason, exc.code)
        if not items:
            return 400, refusal("empty batch", "empty")
        limit = self.settings.ingest_items_max
        if len(items) > limit:
            return 413, refusal(f"at most {limit} items per batch, got {len(items)}", "too_many")
        async with self._lock:
            return await self._ingest_locked(provider, items)

    def _check_item(self, item: Any, raw: bytes) -> None:
        if len(raw) > self.item_max_bytes:
            raise FeedError(
                f"item is {len(raw)} bytes, over the {self.item_max_bytes}-byte item limit",
                "item_too_large",
            )
        if too_deep(item):
            raise FeedError(f"item nests deeper than {MAX_JSON_DEPTH} levels", "too_deep")

    async def _ingest_locked(
        self, provider: str, items: list[tuple[Any, bytes]]
    ) -> tuple[int, dict[str, Any]]:
        producer = self.producer
        now_ms = time.time_ns() // 1_000_000
        accepted: list[int] = []
        kinds: list[str] = []  # for the metric after the flush
        duplicates: list[int] = []
        rejected: list[dict[str, Any]] = []
        pending_seq: dict[tuple[str, str, str], int] = {}
        for index, (item, raw) in enumerate(items):
            mem: tuple[str, str, str] | None = None
            try:
                self._check_item(item, raw)
                topic_key, key, record = normalise(item, provider, self.accepted_currencies)
                scope = dedup_key(topic_key, record)
                if scope is not None:
                    mem = (provider, *scope)
                    last = pending_seq.get(mem, self._last_seq.get(mem))
                    if last is not None and record["seq"] <= last:
                        duplicates.append(index)
                        STALE_UPDATES.labels(f"ingest_{TOPIC_KINDS[topic_key]}").inc()
                        continue
                value = producer.codec(topic_key).encode(record)
                if len(value) > self.item_max_bytes:
                    raise FeedError(
                        f"encoded item is {len(value)} bytes, over the "
                        f"{self.item_max_bytes}-byte item limit",
                        "item_too_large",
                    )
                # A synchronous refusal (e.g. a message too large for the producer) rejects
                # this item only; the batch goes on and the answer lists what landed.
                producer.send_raw(topic_key, key, value)
            except (ValidationError, CodecError, KafkaException) as exc:
                code = (
                    exc.code
                    if isinstance(exc, ValidationError)
                    else ("schema" if isinstance(exc, CodecError) else "kafka")
                )
                self._reject(rejected, provider, index, raw, item, str(exc), code, now_ms)
                continue
            except Exception as exc:  # a bug must cost one item, never the batch or the process
                log.exception("item %d from %s failed unexpectedly", index, provider)
                reason = f"internal error on this item: {type(exc).__name__}"
                self._reject(rejected, provider, index, raw, item, reason, "internal", now_ms)
                continue
            if mem is not None:
                pending_seq[mem] = record["seq"]
            accepted.append(index)
            kinds.append(TOPIC_KINDS[topic_key])
        try:
            # flush() blocks (librdkafka); run it off the event loop so /healthz stays responsive.
            await asyncio.get_running_loop().run_in_executor(None, producer.flush)
        except Exception as exc:  # KafkaException: nothing of this batch is acknowledged
            log.error("batch from %s not acknowledged: %s", provider, exc)
            return 503, {
                "error": _reason(f"Kafka did not confirm the batch, retry it: {exc}"),
                "code": "kafka_unavailable",
                "accepted": 0,
            }
        for mem, seq in pending_seq.items():
            self._last_seq[mem] = seq
            self._last_seq.move_to_end(mem)
        while len(self._last_seq) > SEQ_MEMORY:
            self._last_seq.popitem(last=False)
        for kind in kinds:
            INGESTED.labels(provider, kind).inc()
        payload = {
            "accepted": len(accepted),
            "duplicates": len(duplicates),
            "rejected": rejected,
            "accepted_indexes": accepted,
            "duplicate_indexes": duplicates,
        }
        if accepted or duplicates:
            return 202, payload
        too_large = all(r["code"] == "item_too_large" for r in rejected)
        return (413 if too_large else 400), payload

    def _reject(
        self,
        rejected: list[dict[str, Any]],
        provider: str,
        index: int,
        raw: bytes,
        item: Any,
        reason: str,
        code: str,
        now_ms: int,
    ) -> None:
        reason = _reason(reason)
        rejected.append({"index": index, "reason": reason, "code": code})
        INGEST_REJECTED.labels(provider, code).inc()
        try:
            self._dead_letter(provider, index, raw, item, reason, code, now_ms)
        except (CodecError, KafkaException) as exc:
            # The provider is told (the item is in "rejected"), so nothing disappears silently.
            log.error("dead letter for item %d from %s not sent: %s", index, provider, exc)

    def _dead_letter(
        self, provider: str, index: int, raw: bytes, item: Any, reason: str, code: str, now_ms: int
    ) -> None:
        source = f"http:{provider}"
        key = None
        if isinstance(item, dict):
            k = item.get("event_id") or item.get("account_id")
            try:
                key = identifier(k, "key").encode()
            except ValidationError:
                key = None  # a dead letter's key is only a hint; an invalid id is not one
        value = raw
        if len(raw) > self.item_max_bytes:
            value = raw[: self.item_max_bytes]
            reason = f"{reason} (value truncated to its first {self.item_max_bytes} bytes)"
        self.producer.send(
            "dead_letters",
            source,
            {
                "topic": source,
                "partition": -1,
                "offset": index,
                "key": key,
                "value": value,
                "error": reason,
                "error_type": code,
                "stage": STAGE,
                "failed_at": now_ms,
            },
        )
        DEAD_LETTERS.labels(STAGE, code).inc()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush()


def refusal(reason: str, code: str) -> dict[str, Any]:
    """The answer to a request refused as a whole: the reason, and that nothing landed."""
    return {"error": _reason(reason), "code": code, "accepted": 0}


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
        return _json(status, refusal(reason, "unauthorised"), **extra)
    limit = ingestor.settings.ingest_body_max_bytes
    try:
        raw = await request.read()
        body = decode_content(raw, request.headers.get("Content-Encoding"), limit)
    except web.HTTPRequestEntityTooLarge:
        return _json(413, refusal(f"body larger than {limit} bytes", "body_too_large"))
    except BodyError as exc:
        return _json(exc.status, refusal(exc.reason, exc.code))
    except RequestPayloadError as exc:  # e.g. broken chunked framing
        return _json(400, refusal(f"body could not be read: {exc}", "bad_body"))
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
    ingestor = Ingestor(s, producer)  # IngestConfigError before anything listens
    # Content-Encoding is undone by decode_content, bounded and with a 4xx answer; aiohttp's
    # own decompression fails a bad gzip body by dropping the connection.
    app = web.Application(
        client_max_size=s.ingest_body_max_bytes, handler_args={"auto_decompress": False}
    )
    app[INGESTOR_KEY] = ingestor
    app.router.add_post("/feeds/{provider}/events", _post_events)
    app.router.add_post("/feeds/{provider}/uof", post_uof)  # Sportradar UOF XML (streams.uof)
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
