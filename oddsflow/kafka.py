"""confluent-kafka clients configured the way every oddsflow component needs them.

The partitioner matters: Faust (aiokafka) partitions keys with murmur2 like the Java client,
while librdkafka defaults to CRC32. Every confluent-kafka producer here uses
``murmur2_random`` so a key lands on the same partition whichever client wrote it, which is
what co-partitioned tables rely on.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer

from oddsflow import topology
from oddsflow.codec import Codec, CodecError
from oddsflow.settings import Settings, get_settings


def producer_config(settings: Settings | None = None, **overrides: Any) -> dict[str, Any]:
    s = settings or get_settings()
    cfg: dict[str, Any] = {
        "bootstrap.servers": s.kafka_bootstrap,
        "partitioner": "murmur2_random",
        "enable.idempotence": True,  # retries never duplicate or reorder within a partition
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
    }
    cfg.update(overrides)
    return cfg


def consumer_config(
    group_id: str, settings: Settings | None = None, **overrides: Any
) -> dict[str, Any]:
    s = settings or get_settings()
    cfg: dict[str, Any] = {
        "bootstrap.servers": s.kafka_bootstrap,
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    }
    cfg.update(overrides)
    return cfg


class EventProducer:
    """Produces Avro events to topology topics by key (``"price_updates"``), never by name."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings or get_settings()
        self.topology = topology.load(settings=self.settings)
        self.producer = Producer(producer_config(self.settings, **overrides))
        self._codecs: dict[str, Codec] = {}
        self.errors: list[str] = []

    def codec(self, topic_key: str) -> Codec:
        c = self._codecs.get(topic_key)
        if c is None:
            c = self._codecs[topic_key] = Codec(
                self.topology.topic(topic_key).value_schema, self.settings.schema_registry_url
            )
        return c

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))

    def send(self, topic_key: str, key: str | None, record: dict[str, Any]) -> None:
        """Encode and enqueue; raises CodecError if the record does not fit the schema."""
        value = self.codec(topic_key).encode(record)
        self.send_raw(topic_key, key, value)

    def send_raw(self, topic_key: str, key: str | bytes | None, value: bytes) -> None:
        name = self.topology.topic(topic_key).name
        kb = key.encode() if isinstance(key, str) else key
        while True:
            try:
                self.producer.produce(name, value=value, key=kb, on_delivery=self._on_delivery)
                break
            except BufferError:
                self.producer.poll(0.05)  # local queue full: serve callbacks, then retry
        self.producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until Kafka has every enqueued message; raise if any delivery failed."""
        remaining = self.producer.flush(timeout_s)
        if remaining:
            raise KafkaException(f"{remaining} messages not delivered within {timeout_s}s")
        if self.errors:
            errs, self.errors = self.errors, []
            raise KafkaException(f"delivery failed: {errs[:3]}")


def consume_all(
    topic_key: str,
    settings: Settings | None = None,
    *,
    idle_s: float = 3.0,
    expect: int | None = None,
    timeout_s: float = 120.0,
) -> list[tuple[str | None, dict[str, Any]]]:
    """Read a topic from the beginning (read_committed) and decode it; for tests and the demo."""
    s = settings or get_settings()
    topo = topology.load(settings=s)
    spec = topo.topic(topic_key)
    codec = Codec(spec.value_schema, s.schema_registry_url)
    c = Consumer(consumer_config(f"oddsflow-read-{time.monotonic_ns()}", s))
    c.subscribe([spec.name])
    out: list[tuple[str | None, dict[str, Any]]] = []
    last = time.monotonic()
    deadline = last + timeout_s
    try:
        while time.monotonic() < deadline:
            if (
                expect is not None
                and len(out) >= expect
                and time.monotonic() - last > min(idle_s, 1.0)
            ):
                break
            msg = c.poll(0.2)
            if msg is None:
                if time.monotonic() - last > idle_s and (expect is None or len(out) >= expect):
                    break
                continue
            if msg.error():
                continue
            last = time.monotonic()
            key = msg.key()
            try:
                out.append((key.decode() if key else None, codec.decode(msg.value())))
            except CodecError:
                out.append((key.decode() if key else None, {"__undecodable__": msg.value()}))
    finally:
        c.close()
    return out
