"""processors.batched: topics of batches, framed from items encoded once, read item by item.

The worker-level half (a bad item dead-lettered alone, a lone old-format item read as a
batch of one) runs against a real worker and broker: ``test_batched_topic_items_are_events``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from oddsflow import topology
from oddsflow.codec import Codec, CodecError, batch_items_problem
from oddsflow.demo import read_changelog
from oddsflow.kafka import EventProducer, consume_all, consumer_config, producer_config
from oddsflow.processors.batched import batched_topics
from tests.conftest import wait_for
from tests.processors import records as r


def item(bet_id: str, *, kind: str = "leg", leg: Any = "default", index: int = 0) -> dict[str, Any]:
    return {
        "kind": kind,
        "bet_id": bet_id,
        "account_id": "a1",
        "partition": 1,
        "leg_index": index,
        "leg_count": 1,
        "leg": r.leg("e1", "home", "2.00") if leg == "default" else leg,
        "market_id": "e1/match_result/FT",
        "selection": "home",
        "stake_minor": 10_00,
        "currency": "GBP",
        "bound_odds": Decimal("2.0000"),
        "return_minor": 20_00,
        "quota_spend": False,
        "amount_minor": 0,
        "accepted_at": r.T0_MS,
        "placed_at": r.T0_MS,
    }


BATCH, ITEM = Codec("accepted_leg_batch"), Codec("accepted_leg")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(min_size=0, max_size=12),
            st.integers(0, 2**31 - 1),
            st.sampled_from(["leg", "return"]),
        ),
        max_size=30,
    )
)
def test_a_batch_framed_from_encoded_items_is_the_batch_encoded_whole(rows) -> None:
    items = [item(b, kind=k, index=i) for b, i, k in rows]
    framed = BATCH.encode_batch([ITEM.encode(x) for x in items], ITEM)
    assert framed == BATCH.encode({"legs": items})
    assert BATCH.decode(framed)["legs"] == [ITEM.decode(ITEM.encode(x)) for x in items]


def test_the_topology_declares_accepted_legs_a_topic_of_batches() -> None:
    topo = topology.load()
    [(key, b)] = batched_topics(topo).items()
    assert key == "accepted_legs" and b.item.name == "accepted_leg" and b.field == "legs"
    assert batch_items_problem("accepted_leg_batch", "accepted_leg") is None


@pytest.mark.parametrize(
    ("batch", "items", "problem"),
    [
        ("accepted_leg", "accepted_leg", "is not a record of one array"),
        ("leg_settlement_batch", "accepted_leg", "is not a record of one array"),
        ("accepted_leg_batch", "settlement", "are not the newest 'settlement'"),
    ],
)
def test_a_batch_schema_must_be_one_array_of_its_items(batch, items, problem) -> None:
    found = batch_items_problem(batch, items)
    assert found is not None and problem in found


def test_a_lone_item_is_read_as_a_batch_of_one_and_garbage_is_refused() -> None:
    [b] = batched_topics(topology.load()).values()
    one = item("old")
    assert b.items(ITEM.encode(one)) == [ITEM.decode(ITEM.encode(one))]
    two = [item("x"), item("y")]
    assert [x["bet_id"] for x in b.items(BATCH.encode({"legs": two}))] == ["x", "y"]
    with pytest.raises(CodecError):
        b.items(b"\x00garbage")


@pytest.mark.integration
def test_batched_topic_items_are_events(kafka_settings, worker_factory) -> None:
    """On a real worker: every item of a batch message is handled as its own event. A bad
    item is dead-lettered alone (its bytes, in the item schema); the items around it are
    recorded; a lone item in the old single-record format is recorded too."""
    s = kafka_settings
    w = worker_factory(s).start()
    ep = EventProducer(s)
    ep.send("fixtures", "e1", r.fixture("e1"))
    ep.send("price_updates", "e1", r.prices("e1"))
    ep.flush()
    wait_for(lambda: consume_all("priced_markets", s, expect=1, idle_s=0.5), 120, what="a price")

    name = topology.load(settings=s).topic("accepted_legs").name
    bad = item("bad", leg=None)  # a leg item without its leg: no rule foresaw it
    p = Producer(producer_config(s))
    ends: dict[int, int] = {}

    def done(err: Any, msg: Any) -> None:
        assert err is None, err
        ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    batch = BATCH.encode_batch([ITEM.encode(x) for x in (item("b1"), bad, item("b2"))], ITEM)
    p.produce(name, key=b"e1", value=batch, on_delivery=done)
    p.produce(name, key=b"e1", value=ITEM.encode(item("b3")), on_delivery=done)
    assert p.flush(30) == 0

    from confluent_kafka import Consumer

    def committed() -> bool:
        c = Consumer(consumer_config(f"{s.topic_prefix}{s.app_id}", s))
        try:
            got = c.committed([TopicPartition(name, q) for q in ends], timeout=10)
        finally:
            c.close()
        return all(tp.offset >= ends[tp.partition] for tp in got)

    wait_for(committed, 120, interval_s=1, what="the accepted legs committed")
    assert w.alive(), w.log_text()[-2000:]
    legs = read_changelog(s, "open_legs")
    assert {v["bet_id"] for k, v in legs.items() if "|a1|" in k} == {"b1", "b2", "b3"}
    dead = [v for _, v in consume_all("dead_letters", s, idle_s=1)]
    assert len(dead) == 1, dead
    assert dead[0]["topic"] == name and dead[0]["error"]
    assert ITEM.decode(dead[0]["value"])["bet_id"] == "bad"
