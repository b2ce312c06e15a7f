"""The API's Kafka side: produce bet requests, and follow the engine's output topics.

Routing of answers (several API instances behind a load balancer): every instance reads *all*
partitions of ``bets.decisions`` and ``bets.settlements`` itself, without a consumer group
(manual assignment, nothing committed), starting at the end offsets it finds on start-up, and
resolves only the placements waiting in *this* process, by bet id; everything else it only
forwards to its own WebSocket clients of that account. So no reply topic and no coordination:
any instance answers its own placements, and a placement made before an instance started is
never its business. (Costs: each instance decodes every decision; at the rates this engine
decides, a few thousand a second, that is cheap next to the HTTP work.)

The book (``markets.priced``, compacted) and the fixtures are read from the beginning into
memory; the instance reports ready once it has reached their end, so a snapshot is complete.

confluent-kafka runs in two threads (a producer poller, a consumer); results come back to the
event loop with ``call_soon_threadsafe`` in batches, so the loop never blocks on Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from oddsflow import topology
from oddsflow.codec import Codec, CodecError
from oddsflow.kafka import BATCH_BYTES_MAX, consumer_config, producer_config
from oddsflow.processors.batched import records_reader
from oddsflow.processors.emit import frames
from oddsflow.settings import Settings

log = logging.getLogger(__name__)

FOLLOWED = ("bet_decisions", "settlements", "priced_markets", "fixtures")
# Bet requests per message on bets.requests (a topic of batches) at most.
REQUESTS_PER_MESSAGE_MAX = 100
FROM_START = ("priced_markets", "fixtures")


@dataclass(frozen=True)
class Delivered:
    topic_key: str
    key: str | None
    value: dict[str, Any]


class ProduceError(Exception):
    """Kafka did not take the request (queue full or delivery failed)."""


class KafkaBridge:
    def __init__(
        self,
        settings: Settings,
        loop: asyncio.AbstractEventLoop,
        on_records: Callable[[list[Delivered]], None],
        instance_id: str,
    ) -> None:
        self.s = settings
        self.loop = loop
        self.on_records = on_records
        self.topo = topology.load(settings=settings)
        requests = self.topo.topic("bet_requests")
        self.request_codec = Codec(
            requests.item_schema or requests.value_schema, settings.schema_registry_url
        )
        # bets.requests is a topic of batches: the requests of one event-loop turn go out
        # framed per partition (see produce_request).
        self._batch_codec = Codec(requests.value_schema, settings.schema_registry_url)
        self._requests_topic = requests.name
        self._requests_partitions = requests.partitions
        self._pending: list[tuple[bytes, bytes, asyncio.Future[None]]] = []
        # bets.settlements is a topic of batches: each of its messages is read as its items
        self._readers = {
            self.topo.topic(k).name: (k, records_reader(self.topo, k)) for k in FOLLOWED
        }
        # Low linger: a placement waits on this hop; acks=all and idempotence come from
        # producer_config.
        self.producer = Producer(producer_config(settings, **{"linger.ms": 1}))
        self.consumer = Consumer(
            consumer_config(
                f"oddsflow-api-{instance_id}",
                settings,
                **{"enable.partition.eof": True, "fetch.wait.max.ms": 10},
            )
        )
        self._stop = threading.Event()
        self._book_pending: set[tuple[str, int]] = set()
        self.ready = asyncio.Event()
        self.errors = 0
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ start / stop
    def start(self) -> None:
        assignment: list[TopicPartition] = []
        meta = self.consumer.list_topics(timeout=10)
        requests = meta.topics.get(self._requests_topic)
        if requests is None or requests.error is not None or not requests.partitions:
            raise ProduceError(
                f"topic {self._requests_topic} does not exist (run `oddsflow topology apply`)"
            )
        self._requests_partitions = len(requests.partitions)  # as the broker has it
        for key in FOLLOWED:
            name = self.topo.topic(key).name
            tmeta = meta.topics.get(name)
            if tmeta is None or tmeta.error is not None:
                raise ProduceError(f"topic {name} does not exist (run `oddsflow topology apply`)")
            for p in sorted(tmeta.partitions):
                if key in FROM_START:
                    assignment.append(TopicPartition(name, p, OFFSET_BEGINNING))
                    self._book_pending.add((name, p))
                else:
                    # The end as of now, explicitly: a logical "latest" would be resolved
                    # later and could skip a decision for a request placed in between.
                    _, high = self.consumer.get_watermark_offsets(
                        TopicPartition(name, p), timeout=10, cached=False
                    )
                    assignment.append(TopicPartition(name, p, high))
        self.consumer.assign(assignment)
        for target, name in ((self._consume, "api-consume"), (self._poll_producer, "api-produce")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self.producer.flush(5)
        self.consumer.close()

    # ------------------------------------------------------------------ produce
    def produce_request(self, record: dict[str, Any]) -> asyncio.Future[None]:
        """Enqueue a bet request keyed by account; the future completes when Kafka has it.

        The request is encoded (and checked) now; it is produced at the end of this turn of
        the event loop with every other request of the turn: one message per account
        partition of up to ``REQUESTS_PER_MESSAGE_MAX`` (the worker's cost per message
        exceeded its cost per decision). No request waits for a timer: under light load a
        turn holds one request, under load many."""
        fut: asyncio.Future[None] = self.loop.create_future()
        value = self.request_codec.encode(record)
        if not self._pending:
            self.loop.call_soon(self._send_pending)
        self._pending.append((record["account_id"].encode(), value, fut))
        return fut

    def _send_pending(self) -> None:
        pending, self._pending = self._pending, []
        for p, entries in frames(
            pending,
            self._requests_partitions,
            items_max=REQUESTS_PER_MESSAGE_MAX,
            bytes_max=BATCH_BYTES_MAX,
        ):
            self._send_frame(p, entries)

    def _send_frame(
        self, partition: int, entries: list[tuple[bytes, bytes, asyncio.Future[None]]]
    ) -> None:
        futs = [f for _, _, f in entries]
        value = (
            entries[0][1]  # a lone request: the item as it is (a batch of one to the worker)
            if len(entries) == 1
            else self._batch_codec.encode_batch([v for _, v, _ in entries], self.request_codec)
        )

        def delivered(err: Any, _msg: Any) -> None:
            self.loop.call_soon_threadsafe(_settle_all, futs, err)

        try:
            self.producer.produce(
                self._requests_topic, value, entries[0][0], partition, on_delivery=delivered
            )
        except BufferError:
            _settle_all(futs, "the Kafka producer queue is full")

    def _poll_producer(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)

    # ------------------------------------------------------------------ consume
    def _consume(self) -> None:
        while not self._stop.is_set():
            try:
                msgs = self.consumer.consume(num_messages=500, timeout=0.1)
            except Exception:  # a broker hiccup must not kill the thread
                log.exception("consume failed")
                continue
            out: list[Delivered] = []
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        self._book_pending.discard((m.topic(), m.partition()))
                        if not self._book_pending and not self.ready.is_set():
                            self.loop.call_soon_threadsafe(self.ready.set)
                    continue
                key_reader = self._readers.get(m.topic() or "")
                if key_reader is None:
                    continue
                try:
                    values = key_reader[1](m.value())
                except CodecError:
                    self.errors += 1
                    continue
                k = m.key()
                key = k.decode() if k else None
                out.extend(Delivered(key_reader[0], key, value) for value in values)
            if out:
                self.loop.call_soon_threadsafe(self.on_records, out)


def _settle_all(futs: list[asyncio.Future[None]], err: Any) -> None:
    for fut in futs:
        _settle(fut, err)


def _settle(fut: asyncio.Future[None], err: Any) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(ProduceError(f"delivery failed: {err}"))
