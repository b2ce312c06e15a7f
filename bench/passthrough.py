"""The physical baseline: a plain confluent-kafka consume -> produce loop that copies the same
Avro bytes from the engine's input topics to copy topics (same key, same partition), without
decoding them. Run as its own process, like a worker:

    python -m oddsflow.bench.passthrough PREFIX [--transactional] [--commit-interval 0.1]

``--transactional`` is the exactly_once equivalent (consume-transform-produce in Kafka
transactions, committing every commit interval, like the worker); without it, offsets are
committed asynchronously at the same interval (at_least_once).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer

from oddsflow.settings import REPO_ROOT, Settings

INPUTS = ("bet_requests", "price_updates")  # topology keys


def tname(s: Any, key: str) -> str:
    """A topic's name from topology.yaml (code never hard-codes topic names)."""
    from oddsflow import topology

    return topology.load(settings=s).topic(key).name


def copy_topic(s: Settings, name: str) -> str:
    return s.topic(f"bench.copy.{name}")


def create_copy_topics(s: Settings, partitions: int = 4) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
    fs = admin.create_topics([NewTopic(copy_topic(s, n), partitions, 1) for n in INPUTS])
    for f in fs.values():
        try:
            f.result(30)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def start(
    s: Settings, log_dir: Path, *, transactional: bool, commit_interval_s: float
) -> subprocess.Popen[bytes]:
    create_copy_topics(s)
    args = [
        sys.executable,
        "-m",
        "oddsflow.bench.passthrough",
        s.topic_prefix,
        "--bootstrap",
        s.kafka_bootstrap,
        "--commit-interval",
        str(commit_interval_s),
    ]
    if transactional:
        args.append("--transactional")
    log = open(log_dir / f"passthrough-{s.topic_prefix.rstrip('.')}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def run(prefix: str, bootstrap: str, transactional: bool, commit_interval_s: float) -> None:
    stopping = False

    def on_term(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    s = Settings(topic_prefix=prefix, kafka_bootstrap=bootstrap)
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{prefix}bench-passthrough",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 5,
        }
    )
    pcfg = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 1,
        "compression.type": "lz4",
        "acks": "all",
        "enable.idempotence": True,
    }
    if transactional:
        pcfg["transactional.id"] = f"{prefix}bench-passthrough-{uuid.uuid4().hex[:6]}"
    p = Producer(pcfg)
    out = {tname(s, n): copy_topic(s, n) for n in INPUTS}
    c.subscribe(list(out))
    if transactional:
        p.init_transactions(30)
        p.begin_transaction()
    last_commit = time.monotonic()
    pending = False
    while not stopping:
        first = c.poll(0.01)  # consume(n, timeout) would wait for n messages: poll, then drain
        msgs = [first, *c.consume(1000, timeout=0)] if first is not None else []
        for m in msgs:
            topic, partition = m.topic(), m.partition()
            if m.error() is not None or topic is None or partition is None:
                continue
            while True:
                try:
                    p.produce(out[topic], value=m.value(), key=m.key(), partition=partition)
                    break
                except BufferError:
                    p.poll(0.005)
            pending = True
        p.poll(0)
        if pending and time.monotonic() - last_commit >= commit_interval_s:
            if transactional:
                p.send_offsets_to_transaction(
                    c.position(c.assignment()), c.consumer_group_metadata(), 30
                )
                p.commit_transaction(30)
                p.begin_transaction()
            else:
                p.flush(30)
                c.commit(asynchronous=True)
            last_commit = time.monotonic()
            pending = False
    if transactional:
        with contextlib.suppress(KafkaException):
            p.abort_transaction(10)
    p.flush(10)
    c.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("prefix")
    ap.add_argument("--bootstrap", default="127.0.0.1:19092")
    ap.add_argument("--transactional", action="store_true")
    ap.add_argument("--commit-interval", type=float, default=0.1)
    a = ap.parse_args(argv)
    run(a.prefix, a.bootstrap, a.transactional, a.commit_interval)


if __name__ == "__main__":
    main()
