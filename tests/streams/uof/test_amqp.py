"""End to end over the real RabbitMQ and Kafka: `oddsflow uof consume` as a process.

A match's UOF messages (the recorded match) and a stream of odds changes for other events are
published to RabbitMQ; the consumer puts the canonical records on Kafka. It is killed twice:
once by its own crash hook right after a Kafka flush and before that batch's AMQP ack (the
worst moment), once by a SIGKILL from outside while it streams. After the restarts no message
is lost (every expected record is on Kafka) and none is applied twice (a record that is on
Kafka twice is the very same record with the same seq, which the engine's stale checks drop).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

from oddsflow.kafka import consume_all
from oddsflow.settings import REPO_ROOT
from tests.conftest import wait_for

from ..uof.conftest import match_messages
from ..uof.test_kafka import TOPICS, expected_records

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.slow]

T = 1764600000000


def _generated(n: int) -> list[tuple[str, bytes]]:
    """n odds changes over 25 events, each one a newer price of market 1 and 18 of its event."""
    out = []
    for i in range(n):
        ev = f"sr:match:{70000 + i % 25}"
        home = f"{2 + (i % 7) / 10:.2f}"
        out.append(
            (
                f"hi.-.live.odds_change.1.sr:match.{70000 + i % 25}.-",
                (
                    f'<odds_change product="1" event_id="{ev}" timestamp="{T + i * 10}"><odds>'
                    f'<market id="1" status="1"><outcome id="1" odds="{home}" active="1"/>'
                    '<outcome id="2" odds="3.3" active="1"/><outcome id="3" odds="3.9" active="1"/>'
                    '</market><market id="18" specifiers="total=2.5" status="1">'
                    '<outcome id="12" odds="1.9" active="1"/><outcome id="13" odds="1.95" active="1"/>'
                    "</market></odds></odds_change>"
                ).encode(),
            )
        )
    return out


async def _publish(url: str, exchange: str, queue: str, messages: list[tuple[str, bytes]]) -> None:
    import aio_pika

    conn = await aio_pika.connect_robust(url)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        q = await ch.declare_queue(queue, durable=True)
        await q.bind(ex, routing_key="#")
        for rk, body in messages:
            await ex.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=rk,
            )


async def _depth(url: str, queue: str) -> tuple[int, int]:
    import aio_pika

    conn = await aio_pika.connect_robust(url)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue(queue, durable=True, passive=True)
        res = q.declaration_result
        return res.message_count, res.consumer_count


class Consumer:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir, self.proc, self.starts = env, log_dir, None, 0

    def start(self, **extra: str) -> Consumer:
        self.starts += 1
        log = open(self.log_dir / f"uof-{self.starts}.log", "wb")  # noqa: SIM115 - the child's
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oddsflow.cli", "uof", "consume"],
            env={**self.env, **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        return self.proc.returncode

    def log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob("uof-*.log"))
        )


def test_consume_survives_sigkill_without_loss_or_double_application(
    kafka_settings, rabbitmq, tmp_path
):
    s = kafka_settings
    tag = uuid.uuid4().hex[:8]
    exchange, queue = f"uof-test-{tag}", f"oddsflow.uof.{tag}"
    match = [(f"hi.-.live.{name}", data) for name, data in match_messages()]
    stream = _generated(600)
    # every message of the first batches has records: the crashed batch leaves some on Kafka
    bad = [
        ("hi.-.live.odds_change.1", b'<!DOCTYPE a [<!ENTITY b "c">]><odds_change/>'),
        ("hi.-.live.odds_change.1", b"\x00\x01 not xml"),
    ]
    messages = stream[:300] + match + bad + stream[300:]
    asyncio.run(_publish(rabbitmq, exchange, queue, messages))
    env = {
        **s.child_env(),
        "ODDSFLOW_UOF_AMQP_URL": rabbitmq,
        "ODDSFLOW_UOF_EXCHANGE": exchange,
        "ODDSFLOW_UOF_QUEUE": queue,
        "ODDSFLOW_UOF_BATCH_MAX": "10",
        "ODDSFLOW_UOF_PREFETCH": "10",
        # wall-clock alive timeouts would make the records depend on the machine's speed; the
        # timeout itself is covered in test_translate
        "ODDSFLOW_UOF_ALIVE_TIMEOUT_S": "86400",
    }
    c = Consumer(env, tmp_path)
    try:
        # 1. the consumer dies right after its 3rd Kafka flush, before acknowledging that batch
        c.start(ODDSFLOW_UOF_CRASH_AFTER_FLUSH="3")
        assert c.proc is not None
        c.proc.wait(120)
        assert c.proc.returncode == -signal.SIGKILL, c.log()
        left, _ = wait_for(lambda: (asyncio.run(_depth(rabbitmq, queue)),)[0], what="queue depth")
        # the first two batches were acknowledged, the third (on Kafka already) was not
        assert len(messages) - 20 <= left < len(messages) - 1
        # 2. restarted, then SIGKILLed from outside while it streams
        c.start()
        wait_for(
            lambda: asyncio.run(_depth(rabbitmq, queue))[0] < len(messages) - 100,
            timeout_s=120,
            interval_s=0.05,
            what="the consumer to be mid-stream",
        )
        c.kill()
        mid, _ = asyncio.run(_depth(rabbitmq, queue))
        # mid-stream: messages were acknowledged, others (the unacked ones back) still wait
        assert 0 < mid < len(messages) - 20, "the kill should land mid-stream"
        # 3. restarted: it finishes the queue
        c.start()
        wait_for(
            lambda: asyncio.run(_depth(rabbitmq, queue))[0] == 0,
            timeout_s=180,
            what="the queue to drain",
        )
        assert c.stop() == 0, c.log()
    finally:
        c.kill()

    expected = expected_records([data for _, data in messages], alive_timeout_ms=86_400_000)
    for topic in TOPICS:
        got = consume_all(topic, s, expect=len(expected[topic]), idle_s=2.0, timeout_s=120)
        want = Counter((k, _freeze(r)) for k, r in expected[topic])
        have = Counter((k, _freeze(r)) for k, r in got)
        # nothing lost, nothing else
        assert set(have) == set(want), topic
        # a duplicate on Kafka is the same record with the same seq: the engine's
        # seq checks (per market for prices, per event for statuses) apply it once
        seqs = Counter((k, r.get("market_id"), r["seq"]) for k, r in got)
        assert len(seqs) == len(want), topic
        assert all(have[x] >= 1 for x in want)
    dead = [
        r
        for _, r in consume_all("dead_letters", s, expect=2, idle_s=1.0, timeout_s=60)
        if r["stage"] == "ingest.uof"
    ]
    assert {(r["value"], r["error_type"]) for r in dead} == {
        (bad[0][1], "xml_dtd"),
        (bad[1][1], "xml_malformed"),
    }
    duplicates = 0
    for topic in TOPICS:
        got = consume_all(topic, s, expect=len(expected[topic]), idle_s=1.0, timeout_s=120)
        duplicates += len(got) - len({(k, r.get("market_id"), r["seq"]) for k, r in got})
    assert duplicates >= 1  # the crashed batch really was redelivered and produced again


def _freeze(v):
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v
