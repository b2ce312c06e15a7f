"""The Kafka side of every sink: a read_committed consumer that hands out batches and resumes
from offsets kept in the *store* (not Kafka), so a write and its offsets commit atomically.

A sink supplies two callables:
  ``load_offsets(topic_partitions) -> {(topic, partition): next_offset}`` (missing => beginning)
  ``flush(batch)`` which writes the batch and its offsets in one store transaction, or raises
  (a store may split a batch by partition into several transactions, each holding the rows and
  offsets of its own partitions: per partition that is just as atomic; see postgres.py).
This module owns batching, retries with backoff, keeping its place, pipelining (the next batch
is consumed and decoded while one is written), and metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from oddsflow.codec import Codec, CodecError
from oddsflow.processors.batched import BatchedTopic, batched_topics
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


def sink_group_id(settings: Settings, name: str) -> str:
    """The consumer group of the sink called ``name``: every process of that sink joins it."""
    return f"{settings.topic_prefix}{settings.app_id}-sink-{name}"


@dataclass(frozen=True)
class SinkConfig:
    name: str  # "postgres" | "clickhouse": metrics label and consumer group suffix
    topic_keys: tuple[str, ...]  # topology keys this sink consumes
    # when catching up, a batch is a database transaction per writer: 10,000 messages amortise its
    # fixed costs (statements, COPY setup, commit) without making transactions long (~0.3 s)
    batch_size_max: int = 10_000
    batch_wait_ms: int = 200
    backoff_initial_ms: int = 100
    backoff_max_ms: int = 5000
    # write batch N (flush, in a background thread) while batch N+1 is consumed and decoded: at
    # most one batch is in flight, batches are written one after another in Kafka order, and a
    # rebalance first waits for the write in flight (see BatchConsumer.run)
    pipeline: bool = True


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
    # the batch being written by the flusher thread and the future of flush_with_retry's result
    _inflight: tuple[Batch, Future[bool]] | None = field(default=None, init=False, repr=False)
    _flusher: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        topo = load_topology(settings=self.settings)
        self._by_topic: dict[str, tuple[str, Codec]] = {}
        # Topics of batches (processors.batched): each item of a message is a record.
        self._batched: dict[str, BatchedTopic] = {
            topo.topic(k).name: b
            for k, b in batched_topics(topo, self.settings.schema_registry_url).items()
            if k in self.config.topic_keys
        }
        for key in self.config.topic_keys:
            spec = topo.topic(key)
            self._by_topic[spec.name] = (
                key,
                Codec(spec.value_schema, self.settings.schema_registry_url),
            )
        self.group_id = sink_group_id(self.settings, self.config.name)
        self._consumer: Consumer | None = None

    # -- assignment: the store is the source of truth for positions ---------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # the positions are read from the store: first let the write in flight land (it also
        # keeps the store single-threaded: load_offsets and flush never run at the same time)
        self._wait_inflight()
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
                    # small per-partition chunks per fetch: a backlog then arrives interleaved
                    # across partitions rather than one partition after another (1 MiB ~ 6,000
                    # ledger messages each), so a batch spans the partitions and the store can
                    # write it in parallel by partition (see postgres.split_by_partition)
                    "max.partition.fetch.bytes": 131_072,
                }
            )
            self._consumer.subscribe(
                list(self._by_topic), on_assign=self._on_assign, on_revoke=self._on_revoke
            )
        return self._consumer

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # finish the write in flight before the partitions go to another member, so it resumes
        # after it rather than redoing it (a redo would be harmless: writes are idempotent)
        self._wait_inflight()

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
                if topic is None or partition is None or offset is None:
                    continue  # only error events lack these, and those were skipped above
                offsets[(topic, partition)] = offset + 1
                key, codec = self._by_topic[topic]
                raw = m.value()
                batched = self._batched.get(topic)
                try:
                    values = [codec.decode(raw)] if batched is None else batched.items(raw)
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
                records.extend(
                    Record(key, topic, partition, offset, value, raw or b"") for value in values
                )
            if not msgs and not records and not offsets:
                break  # idle: return promptly so callers can check stop/idle conditions
        if not offsets:
            return None
        return Batch(tuple(records), offsets)

    def flush_with_retry(self, batch: Batch) -> bool:
        """Write the batch, retrying with backoff until it lands or we are told to stop."""
        if not self._flush_until_done(batch):
            return False
        self._update_lag(batch)
        return True

    def _flush_until_done(self, batch: Batch) -> bool:
        """flush_with_retry without the consumer calls (lag): safe on the flusher thread."""
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
            return True

    # -- the write in flight (pipeline mode) ----------------------------------------------------
    def _submit(self, batch: Batch) -> None:
        """Start writing ``batch`` on the flusher thread; the previous one must be finished."""
        assert self._inflight is None, "one batch in flight at most"
        if self._flusher is None:
            self._flusher = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"{self.config.name}-sink-flush"
            )
        self._inflight = (batch, self._flusher.submit(self._flush_until_done, batch))

    def _wait_inflight(self) -> None:
        """Block until the write in flight (if any) has landed, given up, or failed."""
        if self._inflight is not None:
            futures_wait([self._inflight[1]])

    def _finish_inflight(self) -> bool:
        """Wait for the write in flight and account for it (lag, advisory commit, which touch the
        consumer and so stay on this thread). False if it was abandoned because we are stopping;
        an unexpected error in flush is raised here, as it would be without the pipeline."""
        if self._inflight is None:
            return True
        batch, fut = self._inflight
        self._inflight = None
        if not fut.result():
            return False
        self._update_lag(batch)
        self.commit_advisory(batch)
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
        """Consume, decode and write batches until stopped (or idle for ``max_idle_s``).

        With ``config.pipeline`` the write of one batch overlaps the consuming and decoding of
        the next: the store's work (e.g. Postgres executing the batch) runs alongside the
        Python work instead of after it. Guarantees are unchanged: each batch is still written
        whole with its offsets by one ``flush`` call, batches are written strictly one after
        another in the order they were consumed, a batch counts as flushed only once ``flush``
        returned, and nothing is written while the consumer's assignment changes (the rebalance
        callbacks wait for the write in flight). A batch consumed but not yet written when we
        stop is simply not written: its offsets are not in the store, so it is read again.
        """
        idle_since = time.monotonic()
        try:
            while not self.stop_event.is_set():
                batch = self.poll_batch()
                if batch is None:
                    writing = self._inflight is not None
                    if not self._finish_inflight():
                        return
                    if writing:
                        idle_since = time.monotonic()  # idle time counts from the last write
                    if not self._assigned():
                        idle_since = time.monotonic()  # waiting for partitions is not idleness
                        continue
                    if max_idle_s is not None and time.monotonic() - idle_since >= max_idle_s:
                        log.info("%s sink: idle for %.1fs, exiting", self.config.name, max_idle_s)
                        return
                    continue
                if not self._finish_inflight():
                    return
                if self.config.pipeline:
                    self._submit(batch)
                else:
                    if not self.flush_with_retry(batch):
                        return
                    self.commit_advisory(batch)
                idle_since = time.monotonic()
            self._finish_inflight()
        finally:
            try:
                # never leave a write running behind a closed consumer; on an error, or when
                # stopping, its outcome no longer matters (an abandoned batch is re-read)
                self._wait_inflight()
                self._inflight = None
                if self._flusher is not None:
                    self._flusher.shutdown(wait=True)
                    self._flusher = None
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
