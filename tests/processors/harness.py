"""A worker with one priced market, and raw inputs produced to it whose offsets are tracked
until the worker has committed them: for tests that feed a real worker bytes of their own."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from oddsflow import topology
from oddsflow.kafka import EventProducer, consume_all, consumer_config, producer_config
from tests.conftest import wait_for
from tests.processors import records as r


class InputHarness:
    def __init__(self, s: Any, worker: Any) -> None:
        self.s, self.worker = s, worker
        self.topo = topology.load(settings=s)
        self.p = Producer(producer_config(s))
        self.hostile: list[tuple[str, int, int]] = []  # (topic name, partition, offset)
        self.ends: dict[tuple[str, int], int] = {}

    def produce(self, topic_key: str, key: bytes, value: bytes, is_hostile: bool) -> None:
        name = self.topo.topic(topic_key).name

        def done(err: Any, msg: Any) -> None:
            assert err is None, err
            tp = (msg.topic(), msg.partition())
            self.ends[tp] = max(self.ends.get(tp, 0), msg.offset() + 1)
            if is_hostile:
                self.hostile.append((msg.topic(), msg.partition(), msg.offset()))

        self.p.produce(name, key=key, value=value, on_delivery=done)

    def flush(self) -> None:
        assert self.p.flush(30) == 0

    def all_committed(self) -> bool:
        c = Consumer(consumer_config(f"{self.s.topic_prefix}{self.s.app_id}", self.s))
        try:
            tps = [TopicPartition(t, p) for t, p in self.ends]
            got = c.committed(tps, timeout=10)
        finally:
            c.close()
        return all(tp.offset >= self.ends[(tp.topic, tp.partition)] for tp in got)


def worker_with_a_market(s: Any, worker_factory: Any) -> Any:
    """A started worker that has priced market e1 (so it takes bets and legs on it)."""
    w = worker_factory(s).start()
    ep = EventProducer(s)
    ep.send("fixtures", "e1", r.fixture("e1"))
    ep.send("price_updates", "e1", r.prices("e1"))
    ep.flush()
    wait_for(lambda: consume_all("priced_markets", s, expect=1, idle_s=0.5), 120, what="a price")
    return w
