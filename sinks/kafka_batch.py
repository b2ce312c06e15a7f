"""The Kafka side of every sink: a read_committed consumer that hands out batches and resumes
from offsets kept in the *store* (not Kafka), so a write and its offsets commit atomically.

A sink supplies two callables:
  ``load_offsets(topic_partitions) -> {(topic, partition): next_offset}`` (missing => beginning)
  ``flush(batch)`` which writes the batch and its offsets in one store transaction, or raises.
This module owns batching, retries with backoff, keeping its place, and metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from oddsflow.codec import Codec, CodecError
from oddsflow.settings import Settings
from oddsflow.sinks import metrics
from oddsflow.topology import load as load_topology

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """One decoded Kafka record: ``key`` is the topology key (e.g. ``ledger``), ``value`` the Avro dict."""

    key: str
    topic: str
    partition: int
    offset: int
    value: dict[str, Any]
    raw: bytes


@dataclass(frozen=True)
class Batch:
    records: tuple[Record, ...]
    # (topic, partition) -> next offset to read, covering skipped (undecodable) messages too
    next_offsets: dict[tuple[str, int], int]

    def of(self, key: str) -> list[Record]:
        return [r for r in self.records if r.key == key]

    def split(self) -> tuple[Batch, Batch]:
        """Two halves, each carrying the offsets of its own records (used to isolate a bad record)."""
        mid = len(self.records) // 2
        return _batch_of(self.records[:mid]), _batch_of(self.records[mid:])


def _batch_of(records: Sequence[Record]) -> Batch:
    offsets: dict[tuple[str, int], int] = {}
    for r in records:
        tp = (r.topic, r.partition)
        offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
    return Batch(tuple(records), offsets)


@dataclass(frozen=True)
class SinkConfig:
    name: str  # "postgres" | "clickhouse": metrics label and consumer group suffix
    topic_keys: tuple[str, ...]  # topology keys this sink consumes
    batch_size_max: int = 5000
    batch_wait_ms: int = 200
    backoff_initial_ms: int = 100
    backoff_max_ms: int = 5000


class RetryableStoreError(Exception):
    """The store is unavailable (connection refused, timeout...): back off and retry the batch."""


@dataclass
class BatchConsumer:
    settings: Settings
    config: SinkConfig
    load_offsets: Callable[[list[tuple[str, int]]], dict[tuple[str, int], int]]
    flush: Callable[[Batch], None]
    stop_event: threading.Event = field(default_factory=threading.Event)
    undecodable: int = 0
    flushed_messages: int = 0

    def __post_init__(self) -> None:
        topo = load_topology(settings=self.settings)
        self._by_topic: dict[str, tuple[str, Codec]] = {}
        for key in self.config.topic_keys:
            spec = topo.topic(key)
            self._by_topic[spec.name] = (
                key,
                Codec(spec.value_schema, self.settings.schema_registry_url),
            )
        self.group_id = (
            f"{self.settings.topic_prefix}{self.settings.app_id}-sink-{self.config.name}"
        )
        self._consumer: Consumer | None = None

    # -- assignment: the store is the source of truth for positions ---------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        backoff_s = self.config.backoff_initial_ms / 1000
        while True:
            try:
                stored = self.load_offsets(tps)
                break
            except (
                Exception
            ) as exc:  # the store may be down at startup: wait for it, keep the assignment
                if self.stop_event.is_set():
                    stored = {}
                    break
                metrics.RETRIES.labels(self.config.name).inc()
                log.warning(
                    "%s sink: cannot load offsets (%s); retrying in %.1fs",
                    self.config.name,
                    exc,
                    backoff_s,
                )
                self.stop_event.wait(backoff_s)
                backoff_s = min(backoff_s * 2, self.config.backoff_max_ms / 1000)
        for p in partitions:
            p.offset = stored.get((p.topic, p.partition), OFFSET_BEGINNING)
        log.info(
            "%s sink: assigned %s",
            self.config.name,
            [(p.topic, p.partition, p.offset) for p in partitions],
        )
        consumer.assign(partitions)

    def _consumer_or_new(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    "bootstrap.servers": self.settings.kafka_bootstrap,
                    "group.id": self.group_id,
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    # a crashed sink's partitions move to its replacement within this time (the
                    # broker's minimum); a long store outage may exceed max.poll.interval.ms, which is
                    # safe: the sink rejoins, and offsets in the store only ever move forward
                    "session.timeout.ms": 6000,
                    "heartbeat.interval.ms": 1500,
                    "fetch.max.bytes": 52_428_800,
                }
            )
            self._consumer.subscribe(list(self._by_topic), on_assign=self._on_assign)
        return self._consumer

    # -- the loop -------------------------------------------------------------------------------
    def poll_batch(self) -> Batch | None:
        consumer = self._consumer_or_new()
        deadline = time.monotonic() + self.config.batch_wait_ms / 1000
        records: list[Record] = []
        offsets: dict[tuple[str, int], int] = {}
        seen = 0
        while seen < self.config.batch_size_max:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                break
            msgs = consumer.consume(self.config.batch_size_max - seen, timeout=remaining_s)
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.warning("%s sink: consumer error %s", self.config.name, err)
                    continue
                seen += 1
                topic, partition, offset = m.topic(), m.partition(), m.offset()
                offsets[(topic, partition)] = offset + 1
                key, codec = self._by_topic[topic]
                raw = m.value()
                try:
                    value = codec.decode(raw)
                except CodecError as exc:
                    # the engine dead-letters bad input; a sink only counts, logs and moves on
                    self.undecodable += 1
                    metrics.UNDECODABLE.labels(self.config.name, key).inc()
                    log.error(
                        "%s sink: skipping undecodable message %s[%d]@%d: %s",
                        self.config.name,
                        topic,
                        partition,
                        offset,
                        exc,
                    )
                    continue
                records.append(Record(key, topic, partition, offset, value, raw or b""))
            if not msgs and not records and not offsets:
                break  # idle: return promptly so callers can check stop/idle conditions
        if not offsets:
            return None
        return Batch(tuple(records), offsets)

    def flush_with_retry(self, batch: Batch) -> bool:
        """Write the batch, retrying with backoff until it lands or we are told to stop."""
        backoff_s = self.config.backoff_initial_ms / 1000
        while True:
            started = time.perf_counter()
            try:
                self.flush(batch)
            except RetryableStoreError as exc:
                metrics.RETRIES.labels(self.config.name).inc()
                log.warning(
                    "%s sink: flush of %d messages failed (%s); retrying in %.1fs",
                    self.config.name,
                    len(batch.records),
                    exc,
                    backoff_s,
                )
                if self.stop_event.wait(backoff_s):
                    return False
                backoff_s = min(backoff_s * 2, self.config.backoff_max_ms / 1000)
                continue
            metrics.FLUSH_SECONDS.labels(self.config.name).observe(time.perf_counter() - started)
            metrics.BATCH_SIZE.labels(self.config.name).observe(len(batch.records))
            self.flushed_messages += len(batch.records)
            self._update_lag(batch)
            return True

    def _update_lag(self, batch: Batch) -> None:
        if self._consumer is None:
            return
        for (topic, partition), next_offset in batch.next_offsets.items():
            try:
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except Exception:  # lag is best-effort observability
                continue
            if high >= 0:
                metrics.LAG.labels(self.config.name, topic, str(partition)).set(
                    max(high - next_offset, 0)
                )

    def commit_advisory(self, batch: Batch) -> None:
        """Kafka offsets are only advisory (for lag tooling); the store's offsets are authoritative."""
        if self._consumer is None:
            return
        tps = [TopicPartition(t, p, o) for (t, p), o in batch.next_offsets.items()]
        try:
            self._consumer.commit(offsets=tps, asynchronous=True)
        except Exception as exc:
            log.debug("advisory commit failed: %s", exc)

    def run(self, max_idle_s: float | None = None) -> None:
        idle_since = time.monotonic()
        try:
            while not self.stop_event.is_set():
                batch = self.poll_batch()
                if batch is None:
                    if not self._assigned():
                        idle_since = time.monotonic()  # waiting for partitions is not idleness
                        continue
                    if max_idle_s is not None and time.monotonic() - idle_since >= max_idle_s:
                        log.info("%s sink: idle for %.1fs, exiting", self.config.name, max_idle_s)
                        return
                    continue
                if not self.flush_with_retry(batch):
                    return
                self.commit_advisory(batch)
                idle_since = time.monotonic()
        finally:
            self.close()

    def _assigned(self) -> bool:
        try:
            return bool(self._consumer is not None and self._consumer.assignment())
        except Exception:
            return False

    def close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()
            finally:
                self._consumer = None
