"""PartitionBatcher against the real Kafka: the same partition per key as every other producer
of the system, order kept per partition, explicit partitions honoured, oversized records sent."""

from __future__ import annotations

import asyncio
import time

import aiokafka
import pytest
from confluent_kafka import Consumer
from hypothesis import given, settings
from hypothesis import strategies as st

from oddsflow import topology
from oddsflow.kafka import EventProducer, consumer_config
from oddsflow.processors.emit import PartitionBatcher, frames, key_partition

pytestmark = pytest.mark.integration

KEYS = [f"acct-{i}" for i in range(200)] + ["é-ünïcode", "x" * 300]


def _read(s, topic_key: str, expect: int) -> list[tuple[int, bytes, bytes]]:
    name = topology.load(settings=s).topic(topic_key).name
    c = Consumer(consumer_config(f"emit-test-{topic_key}", s))
    c.subscribe([name])
    out: list[tuple[int, bytes, bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while len(out) < expect and time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is not None and not msg.error():
                out.append((msg.partition(), msg.key(), msg.value()))
    finally:
        c.close()
    return out


async def _send_batched(s, topic: str, records: list[tuple[bytes, bytes, int | None]]) -> None:
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, max_batch_size=16384)
    await producer.start()
    try:
        b = PartitionBatcher()
        for key, value, partition in records:
            b.add(topic, key, value, partition)
        assert b.count == len(records)
        await b.send(producer)
        assert b.count == 0
        await producer.flush()
    finally:
        await producer.stop()


def test_batcher_partitions_like_every_other_producer_and_keeps_order(kafka_settings):
    s = kafka_settings
    topo = topology.load(settings=s)
    # The reference: librdkafka's murmur2_random, which the ingestors and the bench use.
    ref = EventProducer(s)
    for k in KEYS:
        ref.send_raw("deposits", k, b"ref")
    ref.flush()
    expected = {key.decode(): p for p, key, _ in _read(s, "deposits", len(KEYS))}
    assert len(expected) == len(KEYS)
    assert len(set(expected.values())) > 1  # the keys do spread over partitions

    # Many records per key, in order, plus one record bigger than a whole batch.
    records = [(k.encode(), f"{k}#{i}".encode(), None) for i in range(5) for k in KEYS]
    big = b"B" * 40_000
    records.append((b"acct-0", big, None))
    records.append((b"pinned", b"to-partition-2", 2))
    asyncio.run(_send_batched(s, topo.topic("bet_requests").name, records))

    got = _read(s, "bet_requests", len(records))
    assert len(got) == len(records)
    for p, key, _ in got:
        if key == b"pinned":
            assert p == 2
        else:
            assert p == expected[key.decode()], key
    # Per key, the values arrive in the order they were added.
    by_key: dict[bytes, list[bytes]] = {}
    for _, key, value in got:
        by_key.setdefault(key, []).append(value)
    for k in KEYS:
        want = [f"{k}#{i}".encode() for i in range(5)]
        assert by_key[k.encode()][:5] == want
    assert by_key[b"acct-0"][-1] == big


def test_batcher_refuses_a_record_without_key_or_partition():
    b = PartitionBatcher()
    b.add("t", None, b"v", None)

    class NoMetadataProducer:
        class client:
            @staticmethod
            async def _wait_on_metadata(topic: str) -> None:
                return None

            class cluster:
                @staticmethod
                def partitions_for_topic(topic: str) -> set[int]:
                    return {0, 1}

    with pytest.raises(ValueError, match="needs a key or a partition"):
        asyncio.run(b.send(NoMetadataProducer()))


def test_a_flush_to_one_partition_goes_out_in_batches_of_the_workers_size(kafka_settings):
    """aiokafka appends a partition's next batch only once the previous one is drained into a
    request, so a flush costs a round trip per batch: the worker's batches are 1 MB, not
    aiokafka's 16 KiB (``TransportSettings.batch_bytes_max``)."""
    from oddsflow.processors.app import faust_app_for
    from oddsflow.processors.transport import TransportSettings

    s = kafka_settings
    app = faust_app_for(s, "emit-batch-size-test", 4)
    size = app.producer._settings_default()["max_batch_size"]
    assert size == TransportSettings().batch_bytes_max == 1_000_000
    name = topology.load(settings=s).topic("deposits").name
    records = [(f"k{i}".encode(), b"v" * 500) for i in range(5_000)]  # ~2.6 MB to partition 0

    async def flush(batch_bytes: int) -> int:
        producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap, max_batch_size=batch_bytes
        )
        await producer.start()
        try:
            b = PartitionBatcher()
            for key, value in records:
                b.add(name, key, value, 0)
            futures = await b.send(producer)
            await asyncio.gather(*futures)
            return len(futures)
        finally:
            await producer.stop()

    assert asyncio.run(flush(size)) == 3
    assert asyncio.run(flush(16_384)) > 150


def test_items_of_a_topic_of_batches_go_out_per_partition_in_order_in_capped_messages(
    kafka_settings,
):
    from oddsflow.codec import Codec
    from oddsflow.processors.batched import batched_topics
    from oddsflow.processors.emit import key_partition

    s = kafka_settings
    topo = topology.load(settings=s)
    b = batched_topics(topo)["accepted_legs"]
    name = topo.topic("accepted_legs").name
    item = Codec("accepted_leg")
    sent = []
    for i in range(1_203):
        rec = {
            "kind": "return",
            "bet_id": "",
            "account_id": "",
            "partition": i % 4,
            "leg_index": 0,
            "leg_count": 1,
            "leg": None,
            "market_id": f"e{i % 300}/match_result/FT",
            "selection": "home",
            "stake_minor": 0,
            "currency": "GBP",
            "bound_odds": None,
            "return_minor": 0,
            "quota_spend": False,
            "amount_minor": i,
            "accepted_at": 1_796_000_000_000,
            "placed_at": 0,
        }
        sent.append((f"e{i % 300}".encode(), rec))

    async def go() -> None:
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap)
        await producer.start()
        try:
            batcher = PartitionBatcher({name: b.frame}, items_per_message_max=100)
            for key, rec in sent:
                batcher.add_item(name, key, item.encode(rec))
            await asyncio.gather(*await batcher.send(producer))
        finally:
            await producer.stop()

    asyncio.run(go())
    partitions = topo.topic("accepted_legs").partitions
    expected: dict[int, list[int]] = {}
    for key, rec in sent:
        expected.setdefault(key_partition(key, partitions), []).append(rec["amount_minor"])
    messages = _read(s, "accepted_legs", sum(-(-len(v) // 100) for v in expected.values()))
    got: dict[int, list[int]] = {}
    for partition, key, value in messages:
        items = b.items(value)
        assert 1 <= len(items) <= 100
        assert key_partition(key, partitions) == partition  # keyed by an item of its partition
        got.setdefault(partition, []).extend(x["amount_minor"] for x in items)
    assert got == expected


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["a1", "a2", "a3", "e9"]), st.integers(1, 9)), max_size=60),
    st.integers(1, 8),
    st.integers(1, 30),
)
def test_frames_keep_each_partitions_order_and_cut_at_the_limits(rows, items_max, bytes_max):
    entries = [(k.encode(), b"x" * size, i) for i, (k, size) in enumerate(rows)]
    runs = list(frames(entries, 4, items_max=items_max, bytes_max=bytes_max))
    # every entry once, on its key's partition, in the order given per partition
    assert sorted(e for _, run in runs for e in run) == sorted(entries)
    for p in range(4):
        mine = [e for e in entries if key_partition(e[0], 4) == p]
        assert [e for q, run in runs if q == p for e in run] == mine
    for _, run in runs:
        assert run and len(run) <= items_max
        assert len(run) == 1 or sum(len(e[1]) for e in run) <= bytes_max
