"""The API's Kafka bridge against the real broker: the bet requests of one event-loop turn go
out framed per account partition (bets.requests is a topic of batches), each in its order."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException

from oddsflow import topology
from oddsflow.api.bridge import REQUESTS_PER_MESSAGE_MAX, KafkaBridge
from oddsflow.codec import Codec
from oddsflow.kafka import consumer_config
from oddsflow.processors.batched import batched_topics
from oddsflow.processors.emit import key_partition
from tests.processors import records as r

pytestmark = pytest.mark.integration


def _raw_messages(s: Any, name: str, n: int) -> list[tuple[int, bytes, bytes]]:
    c = Consumer(consumer_config(f"{s.topic_prefix}t-bridge-{time.monotonic_ns()}", s))
    c.subscribe([name])
    got: list[tuple[int, bytes, bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append((m.partition(), m.key(), m.value()))
    finally:
        c.close()
    return got


async def test_a_turns_requests_go_out_framed_per_account_partition(kafka_settings) -> None:
    s = kafka_settings
    deadline = time.monotonic() + 60
    while True:  # the topics were just created: their leaders may not be elected yet
        bridge = KafkaBridge(s, asyncio.get_running_loop(), lambda _: None, "t")
        try:
            bridge.start()
            break
        except KafkaException:
            bridge.stop()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    try:
        accounts = [f"acct{i}" for i in range(9)]
        placed = (
            [
                (a, r.bet(f"b{k}-{a}", a, 1_00, [r.leg("e1")]))
                for k in range(REQUESTS_PER_MESSAGE_MAX + 5)  # one partition overflows a message
                for a in accounts[:1]
            ]
            + [(a, r.bet(f"c-{a}", a, 1_00, [r.leg("e1")])) for a in accounts[1:]]
        )
        futs = [bridge.produce_request(rec) for _, rec in placed]  # all in this one turn
        await asyncio.wait_for(asyncio.gather(*futs), 30)
    finally:
        bridge.stop()
    spec = topology.load(settings=s).topic("bet_requests")
    parts = {key_partition(a.encode(), spec.partitions) for a in accounts}
    overflow = 1  # acct0's partition: 105 requests in two messages
    msgs = _raw_messages(s, spec.name, len(parts) + overflow)
    assert len(msgs) == len(parts) + overflow  # one message per partition (+ the overflow)
    b = batched_topics(topology.load(settings=s))["bet_requests"]
    seen: list[str] = []
    for p, key, value in sorted(msgs, key=lambda m: m[0]):
        items = b.items(value)
        assert 1 <= len(items) <= REQUESTS_PER_MESSAGE_MAX
        assert key == items[0]["account_id"].encode()
        assert {key_partition(x["account_id"].encode(), spec.partitions) for x in items} == {p}
        seen += [x["bet_id"] for x in items]
    assert sorted(seen) == sorted(rec["bet_id"] for _, rec in placed)
    acct0 = [x for x in seen if x.endswith("-acct0")]
    assert acct0 == [f"b{k}-acct0" for k in range(REQUESTS_PER_MESSAGE_MAX + 5)]  # in order
    assert Codec("bet_request").name == b.item.name
