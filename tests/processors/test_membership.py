"""The pre-commit membership check against the real group coordinator: what the
transport's commit relies on to stop a zombie (processors.transport, point 3)."""

from __future__ import annotations

import asyncio
import uuid

import aiokafka
import pytest

from oddsflow import topology
from oddsflow.processors.transport import MembershipLost, confirm_membership

pytestmark = pytest.mark.integration


async def _check(s) -> None:
    topic = topology.load(settings=s).topic("deposits").name
    group = f"{s.topic_prefix}membership-{uuid.uuid4().hex[:6]}"
    member = aiokafka.AIOKafkaConsumer(
        topic, bootstrap_servers=s.kafka_bootstrap, group_id=group, session_timeout_ms=6000
    )
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    await member.start()
    await producer.start()
    try:
        await member.getmany(timeout_ms=5000)  # joined, partitions assigned
        coordinator = member._coordinator
        generation, member_id = coordinator.generation, coordinator.member_id
        assert generation > 0 and member_id
        # A current member passes, from another client's connection.
        node = await confirm_membership(producer.client, group, generation, member_id)
        # A stale generation, an unknown member: refused.
        with pytest.raises(MembershipLost, match="IllegalGeneration"):
            await confirm_membership(producer.client, group, generation - 1, member_id, node)
        with pytest.raises(MembershipLost, match="UnknownMemberId"):
            await confirm_membership(producer.client, group, generation, "someone-else", node)
        # Expelled (it left; a paused worker is removed the same way when its session
        # expires): the member it was is refused.
        await member.stop()
        with pytest.raises(MembershipLost):
            await confirm_membership(producer.client, group, generation, member_id, node)
    finally:
        await member.stop()
        await producer.stop()


def test_membership_is_confirmed_only_for_the_current_generation_and_member(kafka_settings):
    asyncio.run(_check(kafka_settings))
