"""processors.batched: topics of batches, framed from items encoded once, read item by item.

The worker-level half (a bad item dead-lettered alone, a lone old-format item read as a
batch of one) runs against a real worker and broker: ``test_batched_topic_items_are_events``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oddsflow import topology
from oddsflow.codec import Codec, CodecError, batch_items_problem
from oddsflow.demo import read_changelog
from oddsflow.kafka import consume_all
from oddsflow.processors.batched import batched_topics
from tests.conftest import wait_for
from tests.processors import records as r
from tests.processors.harness import InputHarness, worker_with_a_market


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
    h = InputHarness(s, worker_with_a_market(s, worker_factory))
    bad = item("bad", leg=None)  # a leg item without its leg: no rule foresaw it
    batch = BATCH.encode_batch([ITEM.encode(x) for x in (item("b1"), bad, item("b2"))], ITEM)
    h.produce("accepted_legs", b"e1", batch, is_hostile=True)
    h.produce("accepted_legs", b"e1", ITEM.encode(item("b3")), is_hostile=False)
    h.flush()
    wait_for(h.all_committed, 120, interval_s=1, what="the accepted legs committed")
    w, name = h.worker, h.topo.topic("accepted_legs").name
    assert w.alive(), w.log_text()[-2000:]
    legs = read_changelog(s, "open_legs")
    assert {v["bet_id"] for k, v in legs.items() if "|a1|" in k} == {"b1", "b2", "b3"}
    dead = [v for _, v in consume_all("dead_letters", s, idle_s=1)]
    assert len(dead) == 1, dead
    assert (dead[0]["topic"], dead[0]["partition"], dead[0]["offset"]) == h.hostile[0]
    assert dead[0]["topic"] == name and dead[0]["error"]
    assert ITEM.decode(dead[0]["value"])["bet_id"] == "bad"
