"""Changelog recovery never resumes on partial tables: it retries, then fails clearly; and the
input offsets it resumes from are never older than a pending transactional commit."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from oddsflow.kafka import producer_config
from oddsflow.processors.recovery import (
    OffsetsUnstable,
    RecoveryFailed,
    RecoveryTimeout,
    committed_offsets,
    read_changelogs,
    recover_with_retries,
    stable_committed_with_retries,
)
from tests.conftest import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture()
def changelog(kafka_settings):
    s = kafka_settings
    name = f"{s.topic_prefix}recovery-test-changelog"
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
    p = Producer(producer_config(s))
    p.produce(name, key=b'"k1"', value=b"committed")
    p.flush(30)
    return s, name


def test_recovery_reads_the_committed_state(changelog):
    s, name = changelog
    assert read_changelogs(s.kafka_bootstrap, {name: {0}}, timeout_s=30) == {
        name: {"k1": b"committed"}
    }


def test_recovery_behind_an_open_transaction_times_out_retries_and_fails(changelog):
    s, name = changelog
    # A worker that wrote to the changelog and then froze: its transaction stays open
    # (for up to its timeout), so the changelog has no stable end yet.
    zombie = Producer(
        producer_config(
            s, **{"transactional.id": f"zombie-{uuid.uuid4().hex}", "transaction.timeout.ms": 60000}
        )
    )
    zombie.init_transactions(30)
    zombie.begin_transaction()
    zombie.produce(name, key=b'"k1"', value=b"uncommitted")
    zombie.flush(30)
    try:
        with pytest.raises(RecoveryTimeout, match=rf"{name}\[0\] did not reach"):
            read_changelogs(s.kafka_bootstrap, {name: {0}}, timeout_s=2)
        calls: list[float] = []

        def read(bootstrap, wanted, timeout_s):
            calls.append(timeout_s)
            return read_changelogs(bootstrap, wanted, timeout_s)

        with pytest.raises(RecoveryFailed, match="refusing to resume on partial tables"):
            recover_with_retries(read, s.kafka_bootstrap, {name: {0}}, timeout_s=1, attempts=2)
        assert calls == [1, 1]
        # Once the transaction ends, the same recovery succeeds with the committed state.
        zombie.abort_transaction(30)
        assert recover_with_retries(
            read, s.kafka_bootstrap, {name: {0}}, timeout_s=30, attempts=2
        ) == {name: {"k1": b"committed"}}
    finally:
        zombie.flush(1)


def _committed_plainly(member: Consumer, topic: str, offset: int) -> bool:
    try:
        member.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return False
        raise
    return True


def test_committed_offsets_wait_for_a_pending_transactional_commit(kafka_settings):
    """A worker's last transaction carried input offsets (TxnOffsetCommit) and has not yet
    completed: the committed offset to resume from is the transaction's, once it lands, never
    the older one (from which its inputs would be applied a second time on tables that
    already hold them)."""
    s = kafka_settings
    topic = f"{s.topic_prefix}offsets-test-input"
    group = f"{s.topic_prefix}offsets-test-group"
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    member = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": group})
    # create_topics returns before the group coordinator knows the topic: a commit right after
    # it was refused UNKNOWN_TOPIC_OR_PART once under the full suite's load.
    wait_for(lambda: _committed_plainly(member, topic, 3), 30, 0.2, "the plain commit of 3")
    parts = [(topic, 0), (topic, 1)]
    assert committed_offsets(s.kafka_bootstrap, group, parts, 30) == {
        (topic, 0): 3,
        (topic, 1): None,
    }
    worker = Producer(producer_config(s, **{"transactional.id": f"offsets-{uuid.uuid4().hex}"}))
    worker.init_transactions(30)
    worker.begin_transaction()
    worker.send_offsets_to_transaction(
        [TopicPartition(topic, 0, 7)], member.consumer_group_metadata(), 30
    )
    try:
        # What an OffsetFetch without require_stable (aiokafka's v3) is told: the old offset.
        plain = Consumer(
            {
                "bootstrap.servers": s.kafka_bootstrap,
                "group.id": group,
                "isolation.level": "read_uncommitted",  # librdkafka: no require_stable
            }
        )
        try:
            assert plain.committed([TopicPartition(topic, 0)], timeout=30)[0].offset == 3
        finally:
            plain.close()
        with pytest.raises(OffsetsUnstable, match=rf"{topic}\[0\].*still pending"):
            committed_offsets(s.kafka_bootstrap, group, parts, 2)
        # Retried, then refused: the worker stops rather than resume from the older offset.
        with pytest.raises(RecoveryFailed, match="refusing to resume from unstable offsets"):
            stable_committed_with_retries(s.kafka_bootstrap, group, parts, timeout_s=1, attempts=2)
        worker.commit_transaction(30)
        assert committed_offsets(s.kafka_bootstrap, group, parts, 30) == {
            (topic, 0): 7,
            (topic, 1): None,
        }
    finally:
        member.close()
