"""The worker's transactional producer on librdkafka (confluent-kafka), under Faust's consumer.

Why: with aiokafka every produce request is built, framed and written by Python on the
worker's one core (its sender, protocol structs and stream writes were ~10 % of the worker's
main thread in a decision run and in a settlement burst), and its TxnOffsetCommit is v0, with
no consumer-group generation, so the transport had to ask the group coordinator itself
whether the worker was still a member before every EndTxn (a Heartbeat round trip per commit).
librdkafka builds and sends the produce requests on its own threads, outside the GIL, and its
``send_offsets_to_transaction`` sends TxnOffsetCommit v3 with the group generation and member
id (KIP-447): the broker itself refuses the offsets of a member that has been expelled, which
is the zombie fencing that Heartbeat stood in for.

The consumer is still Faust's (aiokafka), so the group metadata librdkafka wants is built from
that consumer's generation and member id (:func:`group_metadata`). Its layout is librdkafka's
own serialisation of ``rd_kafka_consumer_group_metadata_t``, which confluent-kafka hands out
as bytes; :func:`check_group_metadata_layout` compares it with a librdkafka consumer's
before the first producer starts, so a librdkafka that lays it out otherwise stops the worker
with a clear error instead of sending garbled offsets.

Every blocking call (InitProducerId, flush, AddOffsetsToTxn/TxnOffsetCommit, EndTxn) runs on
one thread of its own, so the event loop keeps serving while librdkafka waits on the broker,
and the calls keep their order. ``produce`` is called on the loop's thread: it only appends to
librdkafka's queue. Produce and commit never overlap (the transport's emit lock), which is what
librdkafka's transaction API requires.

Each of those calls is also bounded here, a little past librdkafka's own timeout: measured
(the broker SIGKILL test, 2026-12-02) ``send_offsets_to_transaction`` still blocked minutes
after its 10 s timeout once the restarted broker came back, a known librdkafka defect (its
coordinator request timeout is never checked: confluentinc/librdkafka#5456, #5511, open in
2.16). A call that overstays marks the producer wedged: every later call on it fails at once
(its thread is still inside librdkafka), the transaction is aborted by the broker's timeout,
and the worker stops for its supervisor to restart, as for any failed commit.

No delivery callback is registered (``delivery.report.only.error``, and none per message): in
a transaction a failed delivery makes ``commit_transaction`` fail, which aborts the transaction
(see ``WorkerTransactionManager._commit_locked``), so a callback per record would only cost.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

# librdkafka's rd_kafka_consumer_group_metadata_write(): magic, generation (int32, host byte
# order), group id and member id NUL-terminated, then a byte saying the group instance id is
# null (static membership is not used here).
_CGMD_MAGIC = b"CGMDv2:"

_layout_checked = False

# How long past its own timeout a librdkafka call may take before the producer is given up
# (the call returns its timeout error itself, normally, within a few hundred ms of it).
_CALL_GRACE_S = 5.0


def group_metadata(group_id: str, generation: int, member_id: str) -> bytes:
    """The consumer group metadata ``send_offsets_to_transaction`` takes, for a member of
    ``group_id`` at ``generation``: what a librdkafka consumer in that position would give."""
    return (
        _CGMD_MAGIC
        + struct.pack("=i", generation)
        + group_id.encode()
        + b"\x00"
        + member_id.encode()
        + b"\x00"
        + b"\x01"
    )


def check_group_metadata_layout(bootstrap: str) -> None:
    """RuntimeError unless :func:`group_metadata` lays out what librdkafka's consumer gives
    (for a consumer that has not joined: generation -1, no member id). Once per process."""
    global _layout_checked
    if _layout_checked:
        return
    probe = "oddsflow-cgmd-layout-check"
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": probe})
    try:
        theirs = c.consumer_group_metadata()
    finally:
        c.close()
    ours = group_metadata(probe, -1, "")
    if theirs != ours:
        raise RuntimeError(
            "librdkafka's consumer group metadata is not laid out as oddsflow builds it "
            f"({theirs!r} != {ours!r}); set ODDSFLOW_TXN_PRODUCER=aiokafka"
        )
    _layout_checked = True


class TxnProducer:
    """One librdkafka transactional producer: the worker's, for one assignment (a new one,
    with the same transactional id, bumps the epoch and fences this one)."""

    def __init__(self, config: Mapping[str, Any], *, timeout_s: float) -> None:
        self._p = Producer(dict(config))
        self.timeout_s = timeout_s
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="txn-producer")
        self._partitions: dict[str, int] = {}
        self.in_transaction = False
        self.wedged: str | None = None  # why this producer can no longer be used
        self.call_timeout_s = timeout_s + _CALL_GRACE_S

    async def _call(self, fn: Any, *args: Any) -> Any:
        if self.wedged is not None:
            raise KafkaException(self.wedged)
        future = asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        try:
            return await asyncio.wait_for(future, self.call_timeout_s)
        except TimeoutError:
            name = getattr(fn, "__name__", repr(fn))
            self.wedged = (
                f"librdkafka's {name} did not return within {self.call_timeout_s:g} s (its own "
                f"timeout: {self.timeout_s:g} s; confluentinc/librdkafka#5456): producer abandoned"
            )
            raise KafkaException(self.wedged) from None

    async def start(self) -> None:
        """InitProducerId (fencing every older producer of the id) and begin a transaction."""
        await self._call(self._p.init_transactions, self.timeout_s)
        self.begin()

    def begin(self) -> None:
        self._p.begin_transaction()  # local state only: no request until the first send
        self.in_transaction = True

    async def partitions(self, topic: str) -> int:
        """The topic's partition count (asked once: topics are declared before workers run)."""
        n = self._partitions.get(topic)
        if n is None:
            md = await self._call(self._p.list_topics, topic, self.timeout_s)
            t = md.topics.get(topic)
            if t is None or t.error is not None or not t.partitions:
                raise KafkaException(f"no metadata for topic {topic}: {t and t.error}")
            n = self._partitions[topic] = len(t.partitions)
        return n

    async def produce(self, records: Iterable[tuple[str, int, bytes | None, bytes | None]]) -> int:
        """Append ``(topic, partition, key, value)`` records to the transaction; their count.
        A full local queue is drained (on the producer's thread) and the record retried."""
        produce = self._p.produce
        n = 0
        for topic, partition, key, value in records:
            while True:
                try:
                    produce(topic, value, key, partition)
                    break
                except BufferError:
                    await self._call(self._p.poll, 0.05)
            n += 1
        return n

    async def flush(self) -> None:
        """Wait until every record produced is acknowledged (or failed)."""
        left = await self._call(self._p.flush, self.timeout_s)
        if left:
            raise KafkaException(f"{left} records not acknowledged within {self.timeout_s} s")

    async def send_offsets(
        self, offsets: Mapping[Any, int], group_id: str, generation: int, member_id: str
    ) -> None:
        tps = [TopicPartition(tp.topic, tp.partition, offset) for tp, offset in offsets.items()]
        cgmd = group_metadata(group_id, generation, member_id)
        await self._call(self._p.send_offsets_to_transaction, tps, cgmd, self.timeout_s)

    async def commit(self) -> None:
        await self._call(self._p.commit_transaction, self.timeout_s)
        self.in_transaction = False  # only once committed: a failed commit is aborted next

    async def abort(self) -> None:
        if self.in_transaction:
            await self._call(self._p.abort_transaction, self.timeout_s)
            self.in_transaction = False

    async def close(self) -> None:
        """Drop whatever is queued and release librdkafka's threads."""
        try:
            await self._call(self._p.purge)
            await self._call(self._p.flush, 0)
        finally:
            self._thread.shutdown(wait=False)
