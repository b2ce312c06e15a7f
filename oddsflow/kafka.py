"""confluent-kafka clients configured the way every oddsflow component needs them.

The partitioner matters: Faust (aiokafka) partitions keys with murmur2 like the Java client,
while librdkafka defaults to CRC32. Every confluent-kafka producer here uses
``murmur2_random`` so a key lands on the same partition whichever client wrote it, which is
what co-partitioned tables rely on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer

from oddsflow import topology
from oddsflow.codec import Codec, CodecError
from oddsflow.processors.batched import batched_topics
from oddsflow.processors.emit import frames  # the framing every producer of a batch topic shares
from oddsflow.settings import Settings, get_settings

# A batch message's items at most (bytes): well inside the broker's 1 MB message limit.
BATCH_BYTES_MAX = 500_000


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
        self._partition_counts: dict[str, int] = {}
        self.errors: list[str] = []

    def codec(self, topic_key: str) -> Codec:
        """The codec of one record of the topic: on a topic of batches, of one item (a lone
        item is a batch of one to its consumers; :meth:`send_batched` frames many)."""
        c = self._codecs.get(topic_key)
        if c is None:
            spec = self.topology.topic(topic_key)
            c = self._codecs[topic_key] = Codec(
                spec.item_schema or spec.value_schema, self.settings.schema_registry_url
            )
        return c

    def send_batched(
        self, topic_key: str, records: Sequence[tuple[str, dict[str, Any]]], *, items_max: int = 500
    ) -> int:
        """``(key, record)`` pairs to a topic of batches, framed per partition in the order
        given (see :meth:`send_items_raw`); the number of messages. Every item is encoded (and
        checked) first, so a bad record raises CodecError before anything is sent."""
        item = self.codec(topic_key)
        encoded = [(key, item.encode(record)) for key, record in records]
        return self.send_items_raw(topic_key, encoded, items_max=items_max)

    def send_items_raw(
        self, topic_key: str, items: Sequence[tuple[str, bytes]], *, items_max: int = 500
    ) -> int:
        """Items encoded by :meth:`codec` to a topic of batches, framed per partition in the
        order given: at most ``items_max`` items and ``BATCH_BYTES_MAX`` bytes per message,
        each message keyed by its first item's key and sent to the partition of the items'
        keys (co-partitioned state: an item is handled on its own key's partition); the
        number of messages."""
        spec = self.topology.topic(topic_key)
        if spec.item_schema is None:
            raise ValueError(f"{topic_key} is not a topic of batches")
        batch = self._codecs.get(f"{topic_key}:batch")
        if batch is None:
            batch = self._codecs[f"{topic_key}:batch"] = Codec(
                spec.value_schema, self.settings.schema_registry_url
            )
        item = self.codec(topic_key)
        n = self._partitions(spec.name)
        encoded = ((key.encode(), value) for key, value in items)
        sent = 0
        for p, run in frames(encoded, n, items_max=items_max, bytes_max=BATCH_BYTES_MAX):
            self._send_frame(spec.name, p, run, batch, item)
            sent += 1
        return sent

    def _partitions(self, name: str) -> int:
        """The topic's partition count on the broker (asked once per topic)."""
        n = self._partition_counts.get(name)
        if n is None:
            t = self.producer.list_topics(name, timeout=10).topics.get(name)
            if t is None or t.error is not None or not t.partitions:
                raise KafkaException(f"no metadata for topic {name}: {t and t.error}")
            n = self._partition_counts[name] = len(t.partitions)
        return n

    def _send_frame(
        self,
        name: str,
        partition: int,
        entries: list[tuple[bytes, bytes]],
        batch: Codec,
        item: Codec,
    ) -> None:
        value = batch.encode_batch([v for _, v in entries], item)
        self._produce(name, entries[0][0], value, partition)

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))

    def send(self, topic_key: str, key: str | None, record: dict[str, Any]) -> None:
        """Encode and enqueue; raises CodecError if the record does not fit the schema."""
        value = self.codec(topic_key).encode(record)
        self.send_raw(topic_key, key, value)

    def send_raw(self, topic_key: str, key: str | bytes | None, value: bytes) -> None:
        name = self.topology.topic(topic_key).name
        self._produce(name, key.encode() if isinstance(key, str) else key, value)

    def _produce(
        self, name: str, key: bytes | None, value: bytes, partition: int | None = None
    ) -> None:
        while True:
            try:
                if partition is None:
                    self.producer.produce(name, value=value, key=key, on_delivery=self._on_delivery)
                else:
                    self.producer.produce(
                        name, value, key, partition, on_delivery=self._on_delivery
                    )
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
    batched = batched_topics(topo, s.schema_registry_url).get(topic_key)
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
                if batched is None:
                    out.append((key.decode() if key else None, codec.decode(msg.value())))
                else:  # a topic of batches: each item, keyed by its own key field
                    for rec in batched.items(msg.value()):
                        out.append(
                            (str(rec.get(spec.message_key, key.decode() if key else "")), rec)
                        )
            except CodecError:
                out.append((key.decode() if key else None, {"__undecodable__": msg.value()}))
    finally:
        c.close()
    return out
