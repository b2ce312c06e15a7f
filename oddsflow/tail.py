"""`oddsflow tail TOPIC`: a downstream consumer that prints decoded events as JSON lines."""

from __future__ import annotations

import sys
import time
import uuid

import orjson
from confluent_kafka import Consumer, KafkaError

from oddsflow import topology
from oddsflow.codec import CodecError, decode_any, to_jsonable
from oddsflow.settings import get_settings


class TailError(ValueError):
    """A user mistake (unknown topic): one line for the CLI, no traceback."""


def _spec(name: str) -> topology.TopicSpec:
    topo = topology.current()
    try:
        return topo.by_name(name)
    except topology.TopologyError:
        known = ", ".join(sorted(t.key for t in topo.topics.values()))
        raise TailError(f"unknown topic {name!r}; topology.yaml declares: {known}") from None


def tail_topic(
    name: str, *, from_beginning: bool = True, max_messages: int = 0, idle_timeout_s: float = 0.0
) -> int:
    spec = _spec(name)
    consumer = Consumer(
        {
            "bootstrap.servers": get_settings().kafka_bootstrap,
            "group.id": f"oddsflow-tail-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([spec.name])
    seen = 0
    last = time.monotonic()
    try:
        while not max_messages or seen < max_messages:
            msg = consumer.poll(0.5)
            if msg is None:
                if idle_timeout_s and time.monotonic() - last > idle_timeout_s:
                    break
                continue
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    print(orjson.dumps({"error": str(err)}).decode(), file=sys.stderr)
                continue
            last = time.monotonic()
            seen += 1
            raw_key = msg.key()
            key = raw_key.decode(errors="replace") if raw_key else None
            try:
                schema, value = decode_any(msg.value() or b"")
                line = {
                    "topic": msg.topic(),
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "key": key,
                    "schema": schema,
                    "value": to_jsonable(value),
                }
            except CodecError as exc:
                line = {
                    "topic": msg.topic(),
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "key": key,
                    "error": str(exc),
                }
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
            sys.stdout.flush()
    finally:
        consumer.close()
    return seen
