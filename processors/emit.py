"""Batched emission: a batch of events' outputs and changelog writes, produced per partition.

aiokafka's ``send`` costs tens of microseconds of Python per record (metadata check,
serialiser hooks, a future per record), which is more than a pricing or acceptance decision
costs, and a settlement fans one result out to a record per open bet. Here the records of
one batch of events are grouped by topic partition, appended to one aiokafka
``BatchBuilder`` per partition (a C record builder) and handed to the producer with
``send_batch``: the same records, in the same order per partition, in the same transaction.

Partitions are chosen exactly as every other producer of this system chooses them (Java's
murmur2 of the key bytes, modulo the partition count), so co-partitioning holds.

Items of a topic of batches (``processors.batched``) are grouped the same way and framed, per
partition and in order, into messages of at most ``items_per_message_max`` items and
``message_bytes_max`` bytes, each keyed by its first item's key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any, TypeVar

from aiokafka.partitioner import murmur2

# What a record adds to its key and value in a record batch of its own (the v2 batch header
# is 61 bytes; a record's own header at most ~21): a generous bound for the size check.
RECORD_OVERHEAD_BYTES = 128


def record_bytes(key: bytes | None, value: bytes | None) -> int:
    """An upper bound of a record's size on the wire, alone in its batch (uncompressed)."""
    return RECORD_OVERHEAD_BYTES + len(key or b"") + len(value or b"")


@lru_cache(maxsize=1 << 16)
def key_partition(key: bytes, partitions: int) -> int:
    """The partition of ``key``, as Java's client, librdkafka's murmur2_random and aiokafka
    choose it. Cached: aiokafka's murmur2 is pure Python, and the same accounts and events
    recur message after message."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


Framer = Callable[[Sequence[bytes]], bytes]
# An item to frame: its key and its encoded bytes first, then anything its sender keeps with it.
Entry = TypeVar("Entry", bound=tuple[Any, ...])


def frames(
    entries: Iterable[Entry], partitions: int, *, items_max: int, bytes_max: int
) -> Iterator[tuple[int, list[Entry]]]:
    """``entries`` (``(key bytes, item bytes, ...)``) as the messages of a topic of batches:
    grouped by their key's partition, in order, and cut into runs of at most ``items_max``
    items and ``bytes_max`` item bytes (an item larger than that is a run of its own); each
    run with its partition. Every producer of a topic of batches frames this way (the worker,
    the ingestors, the API, the bench's load), so an item always travels on its own key's
    partition, in the order it was given."""
    by_p: dict[int, list[Entry]] = {}
    for entry in entries:
        by_p.setdefault(key_partition(entry[0], partitions), []).append(entry)
    for p, group in by_p.items():
        start, size = 0, 0
        for i, entry in enumerate(group):
            if i > start and (i - start >= items_max or size + len(entry[1]) > bytes_max):
                yield p, group[start:i]
                start, size = i, 0
            size += len(entry[1])
        yield p, group[start:]


class PartitionBatcher:
    """Collects ``(topic, key, value, partition)`` records, and items of topics of batches,
    and sends them per partition."""

    def __init__(
        self,
        framers: Mapping[str, Framer] | None = None,
        *,
        items_per_message_max: int = 500,
        message_bytes_max: int = 1_000_000,
    ) -> None:
        self._by_tp: dict[tuple[str, int | None], list[tuple[bytes | None, bytes | None]]] = {}
        self._items: dict[str, list[tuple[bytes, bytes]]] = {}
        self._framers = framers or {}
        self._items_max, self._bytes_max = items_per_message_max, message_bytes_max
        self.count = 0

    def add(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None
    ) -> None:
        self._by_tp.setdefault((topic, partition), []).append((key, value))
        self.count += 1

    def add_item(self, topic: str, key: bytes, item: bytes) -> None:
        """An item for ``topic``, a topic of batches (one of ``framers``): it goes out in a
        message with the items before and after it on the same partition."""
        if topic not in self._framers:
            raise ValueError(f"{topic} is not a topic of batches")
        self._items.setdefault(topic, []).append((key, item))
        self.count += 1

    def clear(self) -> None:
        self._by_tp.clear()
        self._items.clear()
        self.count = 0

    def _frame(
        self,
        topic: str,
        items: list[tuple[bytes, bytes]],
        groups: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]],
        partitions: int,
    ) -> None:
        frame = self._framers[topic]
        for p, run in frames(
            items, partitions, items_max=self._items_max, bytes_max=self._bytes_max
        ):
            groups.setdefault((topic, p), []).append((run[0][0], frame([x for _, x in run])))

    async def grouped(
        self, partitions: Callable[[str], Awaitable[int]]
    ) -> dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]]:
        """Every record by topic partition, in order (``partitions(topic)``: its partition
        count), items of topics of batches framed; the batcher is cleared."""
        groups: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
        for topic, items in self._items.items():
            self._frame(topic, items, groups, await partitions(topic))
        for (topic, partition), records in self._by_tp.items():
            if partition is None:
                n = await partitions(topic)
                for key, value in records:
                    if key is None:
                        raise ValueError(f"a record for {topic} needs a key or a partition")
                    p = key_partition(key, n)
                    groups.setdefault((topic, p), []).append((key, value))
            else:
                groups.setdefault((topic, partition), []).extend(records)
        self.clear()
        return groups

    async def produce(self, producer: Any) -> int:
        """Append every record to ``producer`` (a ``processors.txn_producer.TxnProducer``),
        in the order of each partition; the count. Delivery is checked by the commit."""
        groups = await self.grouped(producer.partitions)
        return int(
            await producer.produce(
                (topic, p, key, value)
                for (topic, p), records in groups.items()
                for key, value in records
            )
        )

    async def send(self, producer: Any) -> list[asyncio.Future[Any]]:
        """Append every record to ``producer`` (an ``AIOKafkaProducer``) and return the
        delivery futures, one per batch or lone record. Delivery is not awaited here: the
        caller must check every future (a transaction commits only if all succeeded)."""
        counts: dict[str, int] = {}

        async def partitions(topic: str) -> int:
            n = counts.get(topic)
            if n is None:
                await producer.client._wait_on_metadata(topic)
                n = counts[topic] = len(producer.client.cluster.partitions_for_topic(topic))
            return n

        groups = await self.grouped(partitions)
        futures: list[asyncio.Future[Any]] = []
        for (topic, partition), records in groups.items():
            batch = producer.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    if batch.record_count() == 0:  # a record larger than a batch: send alone
                        futures.append(
                            await producer.send(topic, value, key=key, partition=partition)
                        )
                        continue
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        futures.append(
                            await producer.send(topic, value, key=key, partition=partition)
                        )
            if batch.record_count():
                futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures
