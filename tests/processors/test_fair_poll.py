"""The worker consumer's fair polls against the real broker (processors.transport, point 7):
a poll hands over at most a cap of each topic's fetched records, so a topic with a few
records is not queued behind another topic's thousands; nothing is lost or reordered."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import aiokafka
import pytest

from oddsflow import topology
from oddsflow.processors.transport import fair_share

pytestmark = pytest.mark.integration

BIG_PER_PARTITION = 750  # bet requests per partition: several polls' worth at the cap
SMALL = 20  # accepted legs, all on one partition
CAP = 100


async def _produce(s: Any, topic: str, partitions: range, n: int) -> None:
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, linger_ms=20)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=f"{p}:{i}".encode(), partition=p)
            for p in partitions
            for i in range(n)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _fetched(fetcher: Any, topics: set[str]) -> None:
    """Until the fetcher holds records of ``topics`` waiting to be handed over."""
    deadline = time.monotonic() + 30
    while not topics <= {tp.topic for tp in fetcher._records}:
        assert time.monotonic() < deadline, f"the fetcher never held records of {topics}"
        await asyncio.sleep(0.05)


async def _check(s: Any) -> None:
    topo = topology.load(settings=s)
    big, small = topo.topic("bet_requests").name, topo.topic("accepted_legs").name
    await _produce(s, big, range(4), BIG_PER_PARTITION)
    consumer = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=s.kafka_bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = {aiokafka.TopicPartition(t, p) for t in (big, small) for p in range(4)}
        consumer.assign(list(tps))
        fetcher = consumer._fetcher
        # The small topic's records are fetched after the big one's, as accepted legs are
        # written after the bets: aiokafka's own poll hands over the big topic's first.
        await _fetched(fetcher, {big})
        await _produce(s, small, range(1, 2), SMALL)
        await _fetched(fetcher, {big, small})

        first = await fair_share(fetcher, tps, CAP)
        per_topic: dict[str, int] = defaultdict(int)
        for tp, records in first.items():
            per_topic[tp.topic] += len(records)
        # The small topic is handed over whole in the first poll, beside the big one's share.
        assert per_topic[small] == SMALL
        assert 0 < per_topic[big] <= CAP

        # Everything is handed over once, in offset order per partition.
        seen: dict[Any, list[int]] = defaultdict(list)
        poll, polls = first, 1
        while True:
            assert sum(len(r) for tp, r in poll.items() if tp.topic == big) <= CAP
            for tp, records in poll.items():
                seen[tp] += [r.offset for r in records]
            if sum(len(v) for v in seen.values()) >= 4 * BIG_PER_PARTITION + SMALL:
                break
            assert polls < 1_000, "the records were never all handed over"
            poll, polls = await fair_share(fetcher, tps, CAP), polls + 1
            if not poll:  # nothing fetched yet: wait for the next fetch, as the worker does
                poll = await fetcher.fetched_records(tps, timeout=5, max_records=CAP)
        for p in range(4):
            assert seen[aiokafka.TopicPartition(big, p)] == list(range(BIG_PER_PARTITION))
        assert seen[aiokafka.TopicPartition(small, 1)] == list(range(SMALL))
    finally:
        await consumer.stop()


def test_a_poll_hands_over_each_topic_its_share_and_loses_nothing(kafka_settings):
    asyncio.run(_check(kafka_settings))
