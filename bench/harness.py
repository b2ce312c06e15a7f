"""Benchmark plumbing: isolated topic namespaces, worker subprocesses, a paced producer and an
output collector that timestamps every message as it is consumed.

Timing conventions
  * Every time is wall-clock epoch milliseconds (``time.time()``): the producer stamps records
    (``provider_ts`` / ``placed_at``) with it and the collector stamps consumption with it, so
    latency = consume time - stamp, both on this machine's clock.
  * The collector only stores (consume time, raw bytes) in its thread; decoding happens after a
    measurement, so the load generator's own CPU use during the run stays small (the broker,
    the worker and the load generator share 2 cores).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from oddsflow import topology
from oddsflow.codec import Codec
from oddsflow.kafka import BATCH_BYTES_MAX, producer_config
from oddsflow.processors.batched import batched_topics
from oddsflow.processors.emit import frames, key_partition
from oddsflow.settings import REPO_ROOT, Settings


def now_ms() -> float:
    return time.time() * 1000.0


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds a process has used so far (Linux /proc), None if unknown."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def fresh_settings(base: Settings, tag: str, **overrides: Any) -> Settings:
    """Settings with a new topic prefix (and anything else overridden); topics are created."""
    prefix = f"bench{uuid.uuid4().hex[:8]}{tag}."
    s = base.model_copy(update={"topic_prefix": prefix, "metrics_port": 0, **overrides})
    topology.apply(topology.load(settings=s), s.kafka_bootstrap)
    return s


def delete_topics(s: Settings) -> None:
    """Best effort: remove a scenario's topics (and the worker's changelogs) afterwards."""
    topology.delete_prefixed(s.kafka_bootstrap, s.topic_prefix)


# ------------------------------------------------------------------------------------ worker
def worker_env(s: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: ``s`` as ODDSFLOW_* variables, then ``extra`` (variables that
    are not settings, such as the transport's ODDSFLOW_RETRY_BACKOFF_MS)."""
    return {**s.child_env(), **(extra or {})}


WORKER_ARGV = ("-m", "oddsflow.cli", "worker", "-l", "warn")
POSTGRES_SINK_ARGV = ("-m", "oddsflow.sinks.postgres", "--log-level", "WARNING")


class Worker:
    """One `oddsflow worker` subprocess, or another of the project's processes given by ``argv``
    (arguments to the Python interpreter), in its own session so it is stopped as a group."""

    def __init__(
        self,
        s: Settings,
        log_dir: Path,
        name: str = "worker",
        argv: Sequence[str] = WORKER_ARGV,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.s = s
        self.argv = tuple(argv)
        self.extra_env = dict(extra_env or {})
        self.log_path = log_dir / f"{name}-{s.topic_prefix.rstrip('.')}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, *self.argv],
            env=worker_env(self.s, self.extra_env),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


# --------------------------------------------------------------------------------- collector
class Collector:
    """Consumes whole topics (every partition, from the beginning, read_committed) in a
    thread and keeps (consume time ms, value bytes) per message in arrival order.

    A message of a topic of batches counts as its items: ``times`` has an entry per item
    (each at its message's consume time) and ``values`` the message once per item, so counts
    and arrival times mean records, as on a topic of single records."""

    def __init__(self, s: Settings, topic_names: Sequence[str], partitions: int = 4) -> None:
        topo = topology.load(settings=s)
        by_name = {topo.topic(k).name: b for k, b in batched_topics(topo).items()}
        self._batched = {t: by_name[t] for t in topic_names if t in by_name}
        self.c = Consumer(
            {
                "bootstrap.servers": s.kafka_bootstrap,
                "group.id": f"bench-collector-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 5,
                "fetch.min.bytes": 1,
                "enable.partition.eof": False,
            }
        )
        self.c.assign(
            [TopicPartition(t, p, OFFSET_BEGINNING) for t in topic_names for p in range(partitions)]
        )
        self.times: list[float] = []
        self.values: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-collector")
        self._thread.start()

    def _run(self) -> None:
        times, values = self.times, self.values
        while not self._stop.is_set():
            # consume(n, timeout) waits for n messages or the timeout: poll for the first one
            # (returns as soon as it is there), then drain what is already buffered
            first = self.c.poll(0.05)
            if first is None:
                continue
            msgs = [first, *self.c.consume(10_000, timeout=0)]
            t = now_ms()
            for m in msgs:
                value = m.value()
                if m.error() is None and value is not None:
                    batched = self._batched.get(m.topic() or "")
                    n = 1 if batched is None else batched.count(value)
                    values.extend([value] * n)
                    times.extend([t] * n)
        self.c.close()

    def count(self) -> int:
        return len(self.times)

    def wait_count(self, n: int, timeout_s: float, alive: Callable[[], bool] | None = None) -> bool:
        """Wait until at least n messages arrived; False on timeout or when `alive()` turns False."""
        deadline = time.monotonic() + timeout_s
        while len(self.times) < n:
            if time.monotonic() > deadline or (alive is not None and not alive()):
                return False
            time.sleep(0.005)
        return True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


# ------------------------------------------------------------------------ fast stamped encode
def zigzag_varint(n: int) -> bytes:
    """Avro's long encoding (zig-zag, then base-128 varint)."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_MARKER = 1_234_567_890_123  # an epoch-ms value no benchmark record carries otherwise


@dataclass(frozen=True)
class Stamped:
    """An encoded record whose one timestamp field is filled in at send time: the Avro body is
    prefix + varint(ts) + suffix (Avro is self-delimiting, so any varint length is valid)."""

    key: bytes
    prefix: bytes
    suffix: bytes

    def value(self, ts_ms: int) -> bytes:
        return self.prefix + zigzag_varint(ts_ms) + self.suffix


def stamped(codec: Codec, key: str, record: dict[str, Any], ts_field: str) -> Stamped:
    data = codec.encode({**record, ts_field: _MARKER})
    marker = zigzag_varint(_MARKER)
    at = data.find(marker)
    if at < 0 or data.find(marker, at + 1) >= 0:
        raise ValueError(f"cannot locate {ts_field} in the encoded {codec.name}")
    return Stamped(key.encode(), data[:at], data[at + len(marker) :])


# -------------------------------------------------------------------------------- producing
@dataclass(frozen=True)
class Feed:
    """How a front end writes a topic of batches: items framed per partition, at most
    ``items_max`` per message, sent every ``linger_ms`` (open loop)."""

    batch: Codec
    item: Codec
    items_max: int
    linger_ms: float


@dataclass
class SendResult:
    first_ms: float
    last_ms: float
    sent: int
    behind_ms: float = 0.0  # how far the pacer fell behind its schedule at worst
    stamps: list[int] = field(default_factory=list)  # the stamp each item was sent with


@dataclass
class LoadProducer:
    """A confluent-kafka producer for offered load: closed loop (as fast as possible) or open
    loop at a fixed rate (messages are stamped with the time they are handed to the client)."""

    s: Settings
    overrides: dict[str, Any] = field(default_factory=lambda: {"linger.ms": 1})

    def __post_init__(self) -> None:
        self.p = Producer(producer_config(self.s, **self.overrides))

    def _produce(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        while True:
            try:
                if partition is None:
                    self.p.produce(topic, value=value, key=key)
                else:
                    self.p.produce(topic, value, key, partition)
                return
            except BufferError:
                self.p.poll(0.01)

    def send(
        self,
        topic: str,
        items: Sequence[Stamped],
        rate: float | None = None,
        feed: Feed | None = None,
    ) -> SendResult:
        """Send ``items``, one per message, or (``feed``) framed as that front end frames them."""
        if feed is not None:
            return self.send_batched(
                topic,
                items,
                rate,
                feed.batch,
                feed.item,
                items_max=feed.items_max,
                linger_ms=feed.linger_ms,
            )
        n = len(items)
        if n == 0:
            t = now_ms()
            return SendResult(t, t, 0)
        produce, poll = self._produce, self.p.poll
        start = time.perf_counter()
        first = now_ms()
        behind = 0.0
        i = 0
        stamps: list[int] = []
        keep = stamps.append
        if rate is None:
            ts = int(first)
            for i, it in enumerate(items):
                if i % 256 == 0:
                    ts = int(now_ms())
                    poll(0)
                produce(topic, it.key, it.value(ts))
                keep(ts)
        else:
            while i < n:
                elapsed = time.perf_counter() - start
                due = min(n, int(elapsed * rate) + 1)
                if due > i:
                    behind = max(behind, (elapsed - i / rate) * 1000)
                    ts = int(now_ms())
                    for j in range(i, due):
                        produce(topic, items[j].key, items[j].value(ts))
                        keep(ts)
                    i = due
                    poll(0)
                if i < n:
                    wait = start + i / rate - time.perf_counter()
                    if wait > 0:
                        time.sleep(min(wait, 0.002))
        last = now_ms()
        self.p.flush(60)
        return SendResult(first, last, n, behind, stamps)

    def send_batched(
        self,
        topic: str,
        items: Sequence[Stamped],
        rate: float | None,
        batch: Codec,
        item: Codec,
        *,
        items_max: int = 500,
        linger_ms: float = 5.0,
    ) -> SendResult:
        """``send``, as a feed ingestor writes a topic of batches: the items due are framed
        per partition into batch messages (``EventProducer.send_items_raw``'s framing) and sent
        every ``linger_ms`` (open loop) or every ``items_max`` items of a partition (closed
        loop). An item's stamp is when it was due, so the ingestor's wait is in its lag."""
        n = len(items)
        if n == 0:
            t = now_ms()
            return SendResult(t, t, 0)
        parts = self._partitions(topic)
        pending: list[tuple[bytes, bytes]] = []
        filled: dict[int, int] = {}  # closed loop: items pending per partition

        def send_pending() -> None:
            for p, run in frames(pending, parts, items_max=items_max, bytes_max=BATCH_BYTES_MAX):
                value = batch.encode_batch([v for _, v in run], item)
                self._produce(topic, run[0][0], value, p)
            pending.clear()
            self.p.poll(0)

        start = time.perf_counter()
        first = now_ms()
        behind, i, last_sent = 0.0, 0, start
        stamps: list[int] = []
        if rate is None:
            ts = int(first)
            for i, it in enumerate(items):
                if i % 256 == 0:
                    ts = int(now_ms())
                pending.append((it.key, it.value(ts)))
                stamps.append(ts)
                p = key_partition(it.key, parts)
                filled[p] = filled.get(p, 0) + 1
                if filled[p] >= items_max:  # a full message for one partition: send them all
                    send_pending()
                    filled.clear()
        else:
            while i < n:
                elapsed = time.perf_counter() - start
                due = min(n, int(elapsed * rate) + 1)
                if due > i:
                    behind = max(behind, (elapsed - i / rate) * 1000)
                    ts = int(now_ms())
                    for j in range(i, due):
                        it = items[j]
                        pending.append((it.key, it.value(ts)))
                        stamps.append(ts)
                    i = due
                now = time.perf_counter()
                if pending and (i >= n or (now - last_sent) * 1000 >= linger_ms):
                    send_pending()
                    last_sent = now
                if i < n:
                    wait = start + i / rate - time.perf_counter()
                    if wait > 0:
                        time.sleep(min(wait, 0.002))
        send_pending()
        last = now_ms()
        self.p.flush(60)
        return SendResult(first, last, n, behind, stamps)

    def _partitions(self, topic: str) -> int:
        t = self.p.list_topics(topic, timeout=10).topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            raise RuntimeError(f"no metadata for topic {topic}")
        return len(t.partitions)

    def send_records(
        self, codec: Codec, topic: str, records: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        for key, rec in records:
            self._produce(topic, key.encode(), codec.encode(rec))
            self.p.poll(0)
        self.p.flush(60)


def tmp_dir(prefix: str = "oddsflow-bench-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def wait_consumed(s: Settings, topic_key: str, timeout_s: float, alive: Any) -> bool:
    """True once the worker group has committed every record of ``topic_key`` (committed
    offset = end offset on every partition): its events are handled and in the tables."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    from oddsflow import topology

    spec = topology.load(settings=s).topic(topic_key)
    group = f"{s.topic_prefix}{s.app_id}"
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
    probe = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": f"{group}-probe"})
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and alive():
            ends = {
                p: probe.get_watermark_offsets(TopicPartition(spec.name, p), timeout=10)[1]
                for p in range(spec.partitions)
            }
            req = ConsumerGroupTopicPartitions(
                group, [TopicPartition(spec.name, p) for p in range(spec.partitions)]
            )
            got = admin.list_consumer_group_offsets([req])[group].result()
            done = {tp.partition: tp.offset for tp in got.topic_partitions}
            if all(
                end == 0
                or done.get(p, -1) >= end
                or (done.get(p, -1) == end - 1 and _only_a_marker_left(s, spec.name, p, end))
                for p, end in ends.items()
            ):
                return True
            time.sleep(0.2)
        return False
    finally:
        probe.close()


def _only_a_marker_left(s: Settings, topic: str, partition: int, end: int) -> bool:
    """A transactional topic ends with a commit marker, which no consumer ever commits past:
    True if the record at ``end - 1`` is one (a read_committed read there returns nothing)."""
    c = Consumer(
        {
            "bootstrap.servers": s.kafka_bootstrap,
            "group.id": f"probe-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    try:
        c.assign([TopicPartition(topic, partition, end - 1)])
        m = c.poll(1.0)
        return m is None or m.error() is not None or m.offset() != end - 1
    finally:
        c.close()
