"""The librdkafka transactional producer (processors.txn_producer) against the real broker:
the group metadata built from an aiokafka member is what librdkafka would send, and the
broker commits a transaction's offsets only for the group's current generation and member
(KIP-447), which is the zombie fencing the worker's commit relies on."""

from __future__ import annotations

import asyncio
import os
import struct
import uuid

import aiokafka
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from oddsflow import topology
from oddsflow.processors.transport import TransportSettings
from oddsflow.processors.txn_producer import (
    TxnProducer,
    check_group_metadata_layout,
    group_metadata,
)


def test_group_metadata_layout():
    got = group_metadata("g1", 7, "m-1")
    assert got == b"CGMDv2:" + struct.pack("=i", 7) + b"g1\x00m-1\x00\x01"


def test_an_unknown_txn_producer_is_refused_with_its_setting_named(monkeypatch):
    monkeypatch.setenv("ODDSFLOW_TXN_PRODUCER", "kafka-python")
    with pytest.raises(ValueError, match="ODDSFLOW_TXN_PRODUCER must be one of"):
        TransportSettings.from_env()


def test_unset_transport_variables_keep_the_field_defaults(monkeypatch):
    for name in list(os.environ):
        if name.startswith("ODDSFLOW_"):
            monkeypatch.delenv(name)
    assert TransportSettings.from_env() == TransportSettings()
    monkeypatch.setenv("ODDSFLOW_TRANSACTION_TIMEOUT_S", "2.5")
    monkeypatch.setenv("ODDSFLOW_RETRY_BACKOFF_MS", "100")
    got = TransportSettings.from_env()
    assert (got.transaction_timeout_ms, got.retry_backoff_ms) == (2_500, 100)


def test_a_call_that_overstays_its_timeout_wedges_the_producer():
    """librdkafka's send_offsets_to_transaction can block past its own timeout (#5456, seen
    here after a broker restart). The call fails a little after the timeout instead, and the
    producer refuses every later call at once, abort and close included, so the worker can
    abort and stop instead of waiting on a thread that never comes back."""
    import threading
    import time

    released = threading.Event()
    p = TxnProducer({"bootstrap.servers": "127.0.0.1:1", "transactional.id": "t"}, timeout_s=1)
    assert p.call_timeout_s > p.timeout_s
    p.call_timeout_s = 0.2
    p.in_transaction = True

    async def scenario() -> None:
        started = time.monotonic()
        with pytest.raises(KafkaException, match=r"did not return within 0\.2 s"):
            await p._call(released.wait)  # stands in for the hung librdkafka call
        assert time.monotonic() - started < 2
        assert p.wedged is not None
        started = time.monotonic()
        with pytest.raises(KafkaException, match="producer abandoned"):
            await p.abort()
        with pytest.raises(KafkaException, match="producer abandoned"):
            await p.flush()
        with pytest.raises(KafkaException, match="producer abandoned"):
            await p.close()
        assert time.monotonic() - started < 0.5  # none of them queued behind the hung call

    try:
        asyncio.run(scenario())
    finally:
        released.set()


def test_a_call_within_its_timeout_returns_its_result():
    p = TxnProducer({"bootstrap.servers": "127.0.0.1:1", "transactional.id": "t"}, timeout_s=1)

    async def scenario() -> object:
        try:
            return await p._call(lambda x: x * 2, 21)
        finally:
            p._thread.shutdown(wait=False)

    assert asyncio.run(scenario()) == 42
    assert p.wedged is None


@pytest.mark.integration
def test_layout_matches_a_joined_librdkafka_member(kafka_settings):
    """A librdkafka consumer that joined a group: its metadata, rebuilt from its generation
    and member id, is byte for byte what group_metadata builds."""
    s = kafka_settings
    check_group_metadata_layout(s.kafka_bootstrap)
    topic = topology.load(settings=s).topic("deposits").name
    group = f"{s.topic_prefix}cgmd-{uuid.uuid4().hex[:6]}"
    c = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": group})
    try:
        c.subscribe([topic])
        for _ in range(100):
            c.poll(0.1)
            if c.assignment():
                break
        assert c.assignment()
        theirs = c.consumer_group_metadata()
        (generation,) = struct.unpack("=i", theirs[7:11])
        assert generation > 0
        assert theirs == group_metadata(group, generation, c.memberid())
    finally:
        c.close()


async def _fencing(s) -> None:
    topo = topology.load(settings=s)
    source, sink = topo.topic("deposits").name, topo.topic("ledger").name
    group = f"{s.topic_prefix}kip447-{uuid.uuid4().hex[:6]}"
    member = aiokafka.AIOKafkaConsumer(
        source,
        bootstrap_servers=s.kafka_bootstrap,
        group_id=group,
        session_timeout_ms=6000,
        enable_auto_commit=False,  # its stop would commit its own position over ours
    )
    await member.start()
    producer = TxnProducer(
        {
            "bootstrap.servers": s.kafka_bootstrap,
            "transactional.id": f"{group}-txn",
            "transaction.timeout.ms": 10_000,
            "delivery.report.only.error": True,
        },
        timeout_s=10,
    )
    tp = aiokafka.TopicPartition(source, 0)
    try:
        await member.getmany(timeout_ms=5000)  # joined, partitions assigned
        generation = member._coordinator.generation
        member_id = member._coordinator.member_id
        assert generation > 0 and member_id
        await producer.start()
        n = await producer.partitions(sink)
        assert n >= 1

        # The current generation and member: the offsets commit with the transaction.
        await producer.produce([(sink, 0, b"k", b"v")])
        await producer.flush()
        await producer.send_offsets({tp: 5}, group, generation, member_id)
        await producer.commit()
        assert not producer.in_transaction

        # A stale generation (a worker expelled while paused): refused by the broker; the
        # transaction aborts and the committed offset stays.
        producer.begin()
        await producer.produce([(sink, 0, b"k", b"zombie")])
        with pytest.raises(KafkaException):
            await producer.send_offsets({tp: 9}, group, generation - 1, member_id)
            await producer.commit()
        await producer.abort()
        assert not producer.in_transaction

        # An unknown member: refused too.
        producer2 = TxnProducer(
            {"bootstrap.servers": s.kafka_bootstrap, "transactional.id": f"{group}-txn"},
            timeout_s=10,
        )
        await producer2.start()  # the same id: a new epoch fences `producer`
        try:
            await producer2.produce([(sink, 0, b"k", b"stranger")])
            with pytest.raises(KafkaException):
                await producer2.send_offsets({tp: 11}, group, generation, "someone-else")
                await producer2.commit()
            await producer2.abort()
        finally:
            await producer2.close()
    finally:
        await member.stop()
        await producer.close()
    c = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": group})
    try:
        (committed,) = c.committed([TopicPartition(source, 0)], timeout=10)
    finally:
        c.close()
    assert committed.offset == 5


@pytest.mark.integration
def test_offsets_commit_only_for_the_current_generation_and_member(kafka_settings):
    asyncio.run(_fencing(kafka_settings))
