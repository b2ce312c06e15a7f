"""processors.batched: topics of batches, framed from items encoded once, read item by item.

The worker-level half (a bad item dead-lettered alone, a lone old-format item read as a
batch of one) runs against a real worker and broker: ``test_batched_topic_items_are_events``.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oddsflow import topology
from oddsflow.codec import Codec, CodecError, batch_items_problem
from oddsflow.demo import read_changelog
from oddsflow.kafka import EventProducer, consume_all
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


def test_the_topology_declares_its_topics_of_batches() -> None:
    topo = batched_topics(topology.load())
    assert sorted(topo) == [
        "accepted_legs",
        "bet_requests",
        "ledger",
        "price_updates",
        "settlements",
    ]
    for key, item, fld in (
        ("accepted_legs", "accepted_leg", "legs"),
        ("price_updates", "price_update", "updates"),
        ("bet_requests", "bet_request", "requests"),
        ("settlements", "settlement", "settlements"),
        ("ledger", "ledger_transaction", "transactions"),
    ):
        assert (topo[key].item.name, topo[key].field) == (item, fld)
        assert batch_items_problem(f"{item}_batch", item) is None


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
    b = batched_topics(topology.load())["accepted_legs"]
    one = item("old")
    assert b.items(ITEM.encode(one)) == [ITEM.decode(ITEM.encode(one))]
    two = [item("x"), item("y")]
    assert [x["bet_id"] for x in b.items(BATCH.encode({"legs": two}))] == ["x", "y"]
    with pytest.raises(CodecError):
        b.items(b"\x00garbage")


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=300))
def test_count_is_the_number_of_items_without_decoding_them(n) -> None:
    b = batched_topics(topology.load())["accepted_legs"]
    framed = BATCH.encode_batch([ITEM.encode(item(f"b{i}")) for i in range(n)], ITEM)
    assert b.count(framed) == len(b.items(framed)) == n
    assert b.count(ITEM.encode(item("lone"))) == 1  # a lone item is a batch of one
    with pytest.raises(CodecError):
        b.count(b"\x00garbage")


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


PRICE_BATCH, PRICE = Codec("price_update_batch"), Codec("price_update")


@pytest.mark.integration
@pytest.mark.parametrize("conflate", [False, True], ids=["conflation off", "conflation on"])
def test_price_update_batches_are_priced_item_by_item(kafka_settings, worker_factory, conflate):
    """On a real worker, price updates framed as a feed ingestor frames them (one message of
    many items, keyed by its first item's event): each item is priced as its own event, or,
    with conflation, only the newest of each market in the batch; a bad item is dead-lettered
    alone; an update sent on its own (a lone item) is priced as before."""
    s = kafka_settings.model_copy(update={"conflate_prices": conflate})
    w = worker_with_a_market(s, worker_factory)  # e1 priced from seq 1
    ep = EventProducer(s)
    bad = {**r.prices("e1", seq=9), "selections": []}  # no selections: refused by validation
    updates = [
        ("e1", r.prices("e1", ("2.00", "3.40", "3.80"), seq=2)),
        ("e1", bad),
        ("e1", r.prices("e1", ("1.90", "3.50", "4.00"), seq=3)),
        ("e1", r.prices("e1", ("1.80", "3.60", "4.20"), seq=4)),
    ]
    # One partition's items in one message: e1's four updates and no other event.
    bad_bytes = PRICE.encode(bad)
    sent = ep.send_items_raw("price_updates", [(k, PRICE.encode(v)) for k, v in updates])
    assert sent == 1
    ep.send("price_updates", "e1", r.prices("e1", ("1.70", "3.70", "4.40"), seq=5))
    ep.flush()
    last = Decimal("1.70")

    def home_odds() -> list[Decimal]:
        pubs = consume_all("priced_markets", s, idle_s=1)
        return [p["selections"][0]["provider_odds"] for _, p in pubs]

    home = wait_for(lambda: (h := home_odds()) and h[-1] == last and h, 120, what="seq 5 priced")
    assert w.alive(), w.log_text()[-2000:]
    if conflate:
        # The batch's seq 2 and 3 are always superseded (one message is in one agent batch);
        # its seq 4 is too if the lone seq 5 arrived in the same agent batch.
        assert home in ([Decimal("2.10"), Decimal("1.80"), last], [Decimal("2.10"), last])
    else:
        assert home == [Decimal(x) for x in ("2.10", "2.00", "1.90", "1.80", "1.70")]
    dead = [v for _, v in consume_all("dead_letters", s, idle_s=1)]
    assert len(dead) == 1, dead
    assert dead[0]["topic"] == s.topic_prefix + "feed.prices" and dead[0]["error"]
    assert dead[0]["value"] == bad_bytes  # the item alone, in the item schema
    # Every item is read back as its own record by the tools that read the topic.
    feed = consume_all("price_updates", s, idle_s=1)
    assert [rec["seq"] for _, rec in feed] == [1, 2, 9, 3, 4, 5]
    assert {k for k, _ in feed} == {"e1"}


@pytest.mark.integration
def test_send_batched_frames_each_partition_apart_in_order(kafka_settings) -> None:
    """EventProducer.send_batched: an item goes to its own key's partition (co-partitioned
    state), each message holds one partition's items in the order sent, keyed by its first."""
    from confluent_kafka import Consumer

    from oddsflow.kafka import consumer_config
    from oddsflow.processors.emit import key_partition

    s = kafka_settings
    ep = EventProducer(s)
    events = [f"e{i}" for i in range(12)]
    records = [(e, r.prices(e, seq=k)) for k in (1, 2) for e in events]
    messages = ep.send_batched("price_updates", records, items_max=5)
    ep.flush()
    spec = topology.load(settings=s).topic("price_updates")
    c = Consumer(consumer_config(f"{s.topic_prefix}t-frames", s))
    c.subscribe([spec.name])
    got: list[tuple[int, bytes, list[dict[str, Any]]]] = []
    try:
        deadline = time.monotonic() + 60
        while len(got) < messages and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append((m.partition(), m.key(), PRICE_BATCH.decode(m.value())["updates"]))
    finally:
        c.close()
    assert len(got) == messages
    assert all(1 <= len(items) <= 5 for _, _, items in got)
    for p, key, items in got:
        assert key == items[0]["event_id"].encode()
        assert {key_partition(x["event_id"].encode(), spec.partitions) for x in items} == {p}
    by_event: dict[str, list[int]] = {}
    for _, _, items in sorted(got, key=lambda g: g[0]):  # a partition's messages are in order
        for x in items:
            by_event.setdefault(x["event_id"], []).append(x["seq"])
    assert by_event == {e: [1, 2] for e in events}


@pytest.mark.integration
def test_bet_request_batches_are_decided_item_by_item(kafka_settings, worker_factory) -> None:
    """On a real worker, bet requests framed as the API frames them: every item is decided
    as its own bet, a bad item is dead-lettered alone, and a request sent on its own is decided
    as before."""
    s = kafka_settings
    w = worker_with_a_market(s, worker_factory)
    ep = EventProducer(s)
    ep.send("deposits", "a1", r.deposit("a1", 100_00, ref="d1"))
    ep.flush()
    item = Codec("bet_request")
    bad = r.bet("b|x", "a1", 1_00, [r.leg("e1")])  # a "|" in a bet id: refused by validation
    framed = [r.bet(f"b{i}", "a1", 1_00, [r.leg("e1")]) for i in (1, 2)]
    sent = ep.send_items_raw(
        "bet_requests",
        [("a1", item.encode(x)) for x in (framed[0], bad, framed[1])],
    )
    assert sent == 1
    ep.send("bet_requests", "a1", r.bet("b3", "a1", 1_00, [r.leg("e1")]))
    ep.flush()
    decided = wait_for(
        lambda: (got := consume_all("bet_decisions", s, idle_s=1)) and len(got) >= 3 and got,
        120,
        what="three decisions",
    )
    assert w.alive(), w.log_text()[-2000:]
    assert sorted(d["bet_id"] for _, d in decided) == ["b1", "b2", "b3"]
    dead = [v for _, v in consume_all("dead_letters", s, idle_s=1)]
    assert len(dead) == 1, dead
    assert item.decode(dead[0]["value"])["bet_id"] == "b|x"
