"""A transaction commits only if every one of its sends succeeded; oversized outputs are
dead-lettered on purpose; dead letters are bounded. Real Kafka, a real ``oddsflow worker``.
"""

from __future__ import annotations

import os
import re

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from oddsflow import topology
from oddsflow.kafka import EventProducer, consume_all, consumer_config, producer_config
from oddsflow.processors.app import DEAD_LETTER_EXCERPT_BYTES
from tests.conftest import wait_for
from tests.processors import records as r

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _produce_raw(s, topic_key: str, key: bytes, value: bytes) -> tuple[int, int]:
    """Produce one record; its (partition, offset)."""
    name = topology.load(settings=s).topic(topic_key).name
    got: list[tuple[int, int]] = []
    p = Producer(producer_config(s))
    p.produce(
        name, key=key, value=value, on_delivery=lambda e, m: got.append((m.partition(), m.offset()))
    )
    p.flush(30)
    assert got, "not delivered"
    return got[0]


def _committed(s, topic_key: str, partition: int) -> int:
    """The worker group's committed offset of one input partition (-1001: none)."""
    name = topology.load(settings=s).topic(topic_key).name
    c = Consumer(consumer_config(f"{s.topic_prefix}{s.app_id}", s))
    try:
        return c.committed([TopicPartition(name, partition)], timeout=10)[0].offset
    finally:
        c.close()


def _topic_max_bytes(s, topic_key: str, value: str | None) -> None:
    name = topology.load(settings=s).topic(topic_key).name
    op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        name,
        incremental_configs=[
            ConfigEntry("max.message.bytes", value or "", incremental_operation=op)
        ],
    )
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
    admin.incremental_alter_configs([res])[res].result(30)


@pytest.mark.parametrize("txn_producer", ["librdkafka", "aiokafka"])
def test_a_failed_send_aborts_the_transaction_and_the_input_is_kept(
    kafka_settings, worker_factory, monkeypatch, txn_producer
):
    monkeypatch.setenv("ODDSFLOW_TXN_PRODUCER", txn_producer)
    s = kafka_settings
    # The broker will refuse any dead letter bigger than 20,000 bytes: a dead letter's send
    # fails on its future, after the worker has queued it.
    _topic_max_bytes(s, "dead_letters", "20000")
    w = worker_factory(s).start()
    garbage = os.urandom(200_000)  # not Avro, not compressible
    partition, offset = _produce_raw(s, "bet_requests", b"a1", garbage)
    wait_for(lambda: "transaction aborted" in w.log_text(), 120, 1, "an aborted transaction")
    # aiokafka's name for the broker's refusal, or librdkafka's words for it
    assert re.search("MessageSizeTooLarge|Message size too large", w.log_text())
    wait_for(lambda: not w.alive(), 60, 0.5, "the worker to stop")
    # Not committed: the input is still there to re-process, and no dead letter is visible.
    assert _committed(s, "bet_requests", partition) <= offset
    assert consume_all("dead_letters", s, idle_s=1) == []

    # Once the broker takes it, the restarted worker commits the dead letter and the input
    # offset together, and carries on.
    _topic_max_bytes(s, "dead_letters", None)
    w.start()
    dls = wait_for(lambda: consume_all("dead_letters", s, idle_s=1), 180, 2, "the dead letter")
    assert len(dls) == 1
    dl = dls[0][1]
    assert (dl["topic"], dl["partition"], dl["offset"]) == (
        topology.load(settings=s).topic("bet_requests").name,
        partition,
        offset,
    )
    assert dl["value"] == garbage[:DEAD_LETTER_EXCERPT_BYTES]
    assert f"the first {DEAD_LETTER_EXCERPT_BYTES} of {len(garbage)} bytes" in dl["error"]
    wait_for(lambda: _committed(s, "bet_requests", partition) > offset, 60, 1, "offset committed")
    p = EventProducer(s)
    p.send("deposits", "a1", r.deposit("a1", 10_00))
    p.flush()
    wait_for(lambda: consume_all("ledger", s, expect=1, idle_s=1), 60, what="deposit posted")
    assert w.alive(), w.log_text()[-3000:]


def test_an_oversized_changelog_record_is_dead_lettered_and_state_survives_restart(
    kafka_settings, worker_factory, monkeypatch
):
    s = kafka_settings
    # Ingest bounds a market at 1,000 selections, far below the broker's 1 MB; a worker whose
    # maximum message size is 40 kB meets the same case with a market that passes them.
    monkeypatch.setenv("ODDSFLOW_MAX_MESSAGE_BYTES", "40000")
    w = worker_factory(s).start()
    p = EventProducer(s)
    p.send("fixtures", "e1", r.fixture("e1"))
    p.send("market_status", "e1", r.status("e1", "open", seq=1))
    p.send("price_updates", "e1", r.prices("e1"))
    p.send("deposits", "a1", r.deposit("a1", 100_00))
    p.flush()
    wait_for(lambda: consume_all("priced_markets", s, expect=1, idle_s=1), 90, what="priced")
    # A correct-score market with 1,000 selections: its price fits a message, its table
    # value (provider odds, prices and fair probabilities per selection) does not.
    n = 1_000
    big = r.prices(
        "e1",
        odds=("4200",) * n,
        seq=2,
        market_type="correct_score",
        selections=tuple(f"{i // 40}-{i % 40}" for i in range(n)),
    )
    p.send("price_updates", "e1", big)
    p.flush()
    dls = wait_for(lambda: consume_all("dead_letters", s, idle_s=1), 120, 1, "dead letter")
    dl = dls[0][1]
    assert dl["stage"] == "pricing" and dl["error_type"] == "OversizedOutput", dl["error"]
    assert "maximum message size" in dl["error"] and "table markets" in dl["error"]
    assert dl["topic"] == topology.load(settings=s).topic("price_updates").name
    # Nothing of that event was applied: no price was published for it, and after a
    # restart (tables rebuilt from the changelog) the book is what was committed.
    priced = consume_all("priced_markets", s, expect=1, idle_s=1)
    assert {k for k, _ in priced} == {"e1/match_result/FT"}  # status and price may both publish
    w.kill()
    w.start()
    p.send("bet_requests", "a1", r.bet("b1", "a1", 10_00, [r.leg("e1", "home", "1.5")]))
    p.send(
        "bet_requests",
        "a1",
        r.bet("b2", "a1", 10_00, [r.leg("e1", "0-0", "1.5", market_type="correct_score")]),
    )
    p.flush()
    decisions = wait_for(
        lambda: (d := consume_all("bet_decisions", s, expect=2, idle_s=1)) and len(d) >= 2 and d,
        120,
        what="2 decisions",
    )
    by_id = {v["bet_id"]: v for _, v in decisions}
    assert by_id["b1"]["accepted"], by_id["b1"]
    assert not by_id["b2"]["accepted"] and by_id["b2"]["reason"] == "MARKET_UNKNOWN"
    assert "Traceback" not in w.log_text()


def test_under_light_load_a_decision_is_committed_without_waiting_for_the_commit_timer(
    kafka_settings, worker_factory, monkeypatch
):
    # The timer would first commit a minute after the worker started; the lone deposit's
    # posting is visible to a read_committed reader long before that (the eager commit,
    # processors.commit_pacing). Its transaction outlives the broker's default timeout for it.
    monkeypatch.setenv("ODDSFLOW_TRANSACTION_TIMEOUT_S", "120")
    monkeypatch.setenv("ODDSFLOW_EAGER_COMMIT_EVENTS_MAX", "4")
    s = kafka_settings.model_copy(update={"commit_interval_s": 60.0})
    w = worker_factory(s).start()
    wait_for(lambda: "recovered" in w.log_text(), 60, 0.5, "the worker's assignment")
    p = EventProducer(s)
    p.send("deposits", "a1", r.deposit("a1", 10_00))
    p.flush()
    posted = consume_all("ledger", s, expect=1, idle_s=0.5, timeout_s=20)
    assert len(posted) == 1, "not committed within 20 s"
    assert w.alive(), w.log_text()[-3000:]
