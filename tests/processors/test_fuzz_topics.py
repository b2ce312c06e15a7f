"""Hostile bytes straight onto every input topic of a running worker (issue 10's fuzz proof).

Each example is a list of inputs drawn by hypothesis: garbage bytes, truncated Avro, Avro with
junk after the record, and well-formed Avro that breaks a rule the ingestor enforces (ids with
``|`` or NUL, 300-leg accumulators, stakes and deposits past the bounds, unknown currencies,
lenient odds, ints past Avro's range written by a writer that does not check). Valid deposits
and bets are mixed in. For every input: the worker stays alive, its offset is committed, and a
hostile input left exactly one dead letter naming its topic, partition and offset with a
reason. Every ledger transaction balances and the wallets equal their postings.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oddsflow import topology
from oddsflow.codec import SINGLE_OBJECT_MAGIC, Codec
from oddsflow.demo import read_changelog
from oddsflow.kafka import consume_all
from tests.conftest import wait_for
from tests.processors import records as r
from tests.processors.harness import InputHarness, worker_with_a_market

pytestmark = pytest.mark.integration

INPUTS = {
    "fixtures": lambda: r.fixture("e1"),
    "price_updates": lambda: r.prices("e1"),
    "market_status": lambda: r.status("e1", "open", seq=1),
    "scores": lambda: {
        "event_id": "e1",
        "provider": "test",
        "seq": 1,
        "period": "FT",
        "home": 1,
        "away": 0,
        "minute": 10,
        "provider_ts": r.T0_MS,
    },
    "results": lambda: r.result("e1", (1, 0)),
    "bet_requests": lambda: r.bet("bx", "a1", 10_00, [r.leg("e1", "home", "2.00")]),
    "deposits": lambda: r.deposit("a1", 10_00, ref="dx"),
}


def _unchecked_avro(topic_key: str, record: dict[str, Any]) -> bytes:
    """Single-object Avro written straight with fastavro: no range check, as a hostile
    producer would write it (fastavro writes a long varint into an int field)."""
    spec = topology.load().topic(topic_key)
    codec = Codec(spec.item_schema or spec.value_schema)
    buf = io.BytesIO()
    buf.write(SINGLE_OBJECT_MAGIC + codec.writer.fingerprint)
    fastavro.schemaless_writer(buf, codec.writer.parsed, record)
    return buf.getvalue()


def _rule_breakers() -> list[tuple[str, dict[str, Any]]]:
    many_legs = [r.leg(f"e{i}", "home", "2.00") for i in range(300)]
    return [
        ("price_updates", {**r.prices("e1"), "event_id": "e1|x"}),
        ("price_updates", {**r.prices("e1"), "event_id": "e\x00"}),
        ("fixtures", {**r.fixture("e1"), "home": "x" * 5000}),
        ("scores", {**INPUTS["scores"](), "home": 2**40}),
        ("results", {**r.result("e1", (1, 0)), "revision": 2**40}),
        ("bet_requests", r.bet("b-many", "a1", 10_00, many_legs)),
        ("bet_requests", r.bet("b\x00", "a1", 10_00, [r.leg("e1")])),
        ("bet_requests", r.bet("b-big", "a1", 2**62, [r.leg("e1")])),
        ("bet_requests", r.bet("b-ccy", "a1", 10_00, [r.leg("e1")], currency="XYZ")),
        ("bet_requests", r.bet("b-odds", "a1", 10_00, [r.leg("e1", odds="0.50")])),
        ("bet_requests", r.bet("b|x", "a1", 10_00, [r.leg("e1")])),
        ("deposits", r.deposit("a1", 2**62, ref="d-big")),
        ("deposits", r.deposit("a1", -5, ref="d-neg")),
        ("deposits", r.deposit("a|1", 10_00, ref="d-pipe")),
    ]


def _valid(topic_key: str) -> bytes:
    spec = topology.load().topic(topic_key)
    return Codec(spec.item_schema or spec.value_schema).encode(INPUTS[topic_key]())


hostile = st.one_of(
    st.tuples(st.sampled_from(sorted(INPUTS)), st.binary(max_size=200)),
    st.sampled_from(sorted(INPUTS)).flatmap(
        lambda k: st.integers(1, 60).map(
            lambda n, k=k: (k, _valid(k)[: min(n, len(_valid(k)) - 1)])
        )
    ),
    st.tuples(st.sampled_from(sorted(INPUTS)), st.binary(min_size=1, max_size=8)).map(
        lambda kb: (kb[0], _valid(kb[0]) + kb[1])
    ),
    st.sampled_from(_rule_breakers()).map(lambda kr: (kr[0], _unchecked_avro(*kr))),
)


class Harness(InputHarness):
    def __init__(self, s: Any, worker: Any) -> None:
        super().__init__(s, worker)
        self.deposits_minor: Counter[str] = Counter()
        self.n = 0


@pytest.fixture()
def harness(kafka_settings, worker_factory):
    s = kafka_settings
    return Harness(s, worker_with_a_market(s, worker_factory))


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(inputs=st.lists(hostile, min_size=5, max_size=30))
def test_hostile_bytes_on_every_input_topic(harness, inputs):
    h = harness
    for topic_key, value in inputs:
        key = b"a1" if topic_key in ("bet_requests", "deposits") else b"e1"
        h.produce(topic_key, key, value, is_hostile=True)
        # A valid deposit beside every hostile input: the engine keeps doing real work.
        h.n += 1
        dep = r.deposit("a1", 1_00, ref=f"ok-{h.n}")
        h.produce("deposits", b"a1", Codec("deposit").encode(dep), is_hostile=False)
        h.deposits_minor["a1"] += 1_00
    h.flush()
    wait_for(h.all_committed, 120, interval_s=1, what="every input offset committed")
    assert h.worker.alive(), h.worker.log_text()[-2000:]

    dead = [v for _, v in consume_all("dead_letters", h.s, idle_s=1)]
    by_origin = Counter((d["topic"], d["partition"], d["offset"]) for d in dead)
    for origin in h.hostile:
        assert by_origin[origin] == 1, f"{origin}: {by_origin[origin]} dead letters"
    assert all(d["error"] and d["error_type"] for d in dead)

    txs = [v for _, v in consume_all("ledger", h.s, idle_s=1)]
    assert len({t["tx_id"] for t in txs}) == len(txs), "a ledger transaction was produced twice"
    balances: dict[str, int] = defaultdict(int)
    for t in txs:
        assert sum(p["amount_minor"] for p in t["postings"]) == 0, t
        for p in t["postings"]:
            balances[p["account"]] += p["amount_minor"]
    wallets = read_changelog(h.s, "wallets")
    assert wallets, "no wallet"
    for w in wallets.values():
        assert w["balance_minor"] == balances[f"player:{w['account_id']}:available"]
        assert w["balance_minor"] >= h.deposits_minor[w["account_id"]]  # no deposit lost
    assert Decimal(sum(balances.values())) == 0
