"""UOF messages -> Kafka: the records of a message, or its dead letter, never both, never neither.

A message's records are all encoded before any is sent, so a record that does not fit its Avro
schema dead-letters the whole message instead of leaving half of it on Kafka. The caller
acknowledges its source (AMQP delivery, HTTP request) only after :meth:`UofSink.flush` returned:
Kafka then has every record and dead letter of everything handled before.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from oddsflow.codec import CodecError
from oddsflow.kafka import EventProducer
from oddsflow.metrics import DEAD_LETTERS
from oddsflow.settings import Settings
from oddsflow.streams.uof.adapter import Out, Translation, UofAdapter
from oddsflow.streams.uof.metrics import MESSAGES, PRODUCER_UP, REJECTED
from oddsflow.streams.uof.parse import UofError
from oddsflow.streams.uof.settings import UofSettings

log = logging.getLogger(__name__)

STAGE = "ingest.uof"
_EVENT_ATTR = re.compile(rb'event_id="([^"/|\s]{1,200})"')


@dataclass(frozen=True)
class Handled:
    """What became of one message: its translation, or the dead letter's reason."""

    translation: Translation | None
    reason: str | None = None
    code: str | None = None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class UofSink:
    def __init__(
        self,
        settings: Settings,
        uof: UofSettings | None = None,
        producer: EventProducer | None = None,
        adapter: UofAdapter | None = None,
    ) -> None:
        self.settings = settings
        self.uof = uof or UofSettings()
        self._producer = producer
        self.adapter = adapter or UofAdapter(
            self.uof.provider,
            self.uof.live_product_ids(),
            int(self.uof.alive_timeout_s * 1000),
        )

    @property
    def producer(self) -> EventProducer:
        if self._producer is None:
            self._producer = EventProducer(self.settings)
        return self._producer

    def _send(self, outs: tuple[Out, ...] | list[Out]) -> None:
        producer = self.producer
        encoded = [(o.topic_key, o.key, producer.codec(o.topic_key).encode(o.record)) for o in outs]
        # An odds_change's markets go out as batch messages (price_updates is a topic of
        # batches); every other record as its own message, in the order translated.
        prices: list[tuple[str, bytes]] = []
        for topic_key, key, value in encoded:
            if topic_key == "price_updates":
                prices.append((key, value))
                continue
            if prices:
                producer.send_items_raw("price_updates", prices)
                prices = []
            producer.send_raw(topic_key, key, value)
        if prices:
            producer.send_items_raw("price_updates", prices)

    def handle(
        self, data: bytes, source: str, offset: int = -1, received_ms: int | None = None
    ) -> Handled:
        """Translate and enqueue one message (or its dead letter); never raises for bad input."""
        try:
            tr = self.adapter.handle(data, received_ms)
            self._send(tr.records)
        except (UofError, CodecError) as exc:
            code = exc.code if isinstance(exc, UofError) else "schema"
            reason = exc.reason if isinstance(exc, UofError) else str(exc)
            self.dead_letter(data, source, offset, reason, code)
            pending = self.adapter.take_pending()
            if pending:
                self._send(pending)
            return Handled(None, reason, code)
        MESSAGES.labels(tr.kind).inc()
        for product, up in self.adapter.health.producers().items():
            PRODUCER_UP.labels(str(product)).set(1 if up else 0)
        return Handled(tr)

    def tick(self, at_ms: int) -> int:
        """Producer-health suspensions due at ``at_ms``; how many records were enqueued."""
        outs = self.adapter.tick(at_ms)
        if outs:
            self._send(outs)
            for product, up in self.adapter.health.producers().items():
                PRODUCER_UP.labels(str(product)).set(1 if up else 0)
        return len(outs)

    def dead_letter(self, data: bytes, source: str, offset: int, reason: str, code: str) -> None:
        match = _EVENT_ATTR.search(data[:4096]) if isinstance(data, bytes | bytearray) else None
        self.producer.send(
            "dead_letters",
            source,
            {
                "topic": source,
                "partition": -1,
                "offset": offset,
                "key": match.group(1) if match else None,
                "value": bytes(data) if isinstance(data, bytes | bytearray) else None,
                "error": reason[:2000],
                "error_type": code,
                "stage": STAGE,
                "failed_at": now_ms(),
            },
        )
        REJECTED.labels(code).inc()
        DEAD_LETTERS.labels(STAGE, code).inc()
        log.warning("UOF message from %s dead-lettered (%s): %s", source, code, reason[:200])

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until Kafka confirmed everything enqueued; KafkaException otherwise."""
        if self._producer is not None:
            self._producer.flush(timeout_s)
