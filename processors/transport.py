"""oddsflow's Kafka transport for Faust: every customisation of Faust and aiokafka lives here.

Registered under the ``oddsflow-kafka://`` broker URL scheme through Faust's transport
registry (the ``faust.transports`` entry point in pyproject.toml), so ``processors.app``
is plain Faust: ``faust.App(..., broker="oddsflow-kafka://host:port")``. It subclasses
Faust's aiokafka transport and swaps in its own TransactionManager, Producer and
Consumer through the subclass's class attributes; no Faust or aiokafka class is mutated.
What it relies on of Faust's and aiokafka's internals is named in this module only (and
checked at start where possible), so an upgrade breaks loudly here and nowhere else:

1. **One transactional producer per worker**, like Kafka Streams' ``exactly_once_v2``.
   Faust opens one per (topic group, partition) and picks the one for an output by the
   message's *destination* partition, so the saga's re-keyed messages (account -> event ->
   account) joined unrelated transactions. Here every output, every changelog write and
   every input offset of the worker commit or abort together, in one commit round trip per
   interval. ``emit`` and ``commit`` are serialised by one lock, so an event's writes are
   never split over two transactions.
   The producer is librdkafka's by default (``processors.txn_producer``: produce requests
   built on its own threads, off the GIL); ``ODDSFLOW_TXN_PRODUCER=aiokafka`` keeps Faust's
   own aiokafka producer, which 2. and 3. below describe where they differ.
2. **A transaction commits only if every one of its sends succeeded.** aiokafka reports a
   failed produce (say MESSAGE_TOO_LARGE) on the send's future only; its transaction state
   stays committable, so the input offset committed and the output was gone. ``commit``
   awaits every future of the transaction first; any failure aborts the transaction and
   its inputs are re-processed from the committed offsets (see 4.). librdkafka fails the
   commit itself when a record of the transaction failed, which aborts it the same way.
3. **Fencing an older incarnation (a zombie).** With librdkafka the offsets go to the
   broker with the consumer's generation and member id (TxnOffsetCommit v3, KIP-447) and
   the broker refuses them from a member it has expelled (ILLEGAL_GENERATION,
   UNKNOWN_MEMBER_ID), so the transaction aborts; what follows describes the aiokafka
   producer, whose TxnOffsetCommit carries no generation, and the windows both share.
   Each process has its own transactional id (``INCARNATION``; reused ids made aiokafka's
   read_committed fetcher skip committed records after a restart), so a new worker does not
   fence an old one through InitProducerId. KIP-447 would have the broker fence it through
   the consumer group generation sent with the offsets, but aiokafka 0.14 only speaks
   TxnOffsetCommit v0 (group id, no generation or member id). So, under the emit lock, after
   the offsets are added to the transaction and right before EndTxn, ``commit`` checks that
   the consumer's generation is the one the transaction began in and asks the group
   coordinator (a Heartbeat with that generation and member id) whether it still is;
   otherwise it aborts.
   What holds: a worker paused (SIGSTOP, a long GC, a VM freeze) past the session timeout
   has been expelled, and its next commit sees UNKNOWN_MEMBER_ID / ILLEGAL_GENERATION and
   aborts instead of committing outputs another worker also produced. A pause that falls
   between that check and EndTxn and outlasts the session timeout finds its transaction
   already open longer than ``transaction_timeout_ms`` (<= the session timeout: the check
   runs after AddOffsetsToTxn, so the transaction is open on the broker), which the broker
   aborts and fences (epoch bump) within its abort sweep interval (1 s on the local
   broker), so EndTxn fails. The residual window is a pause that ends inside that sweep
   interval; the revoke path holding the emit lock means a worker that leaves the group
   voluntarily can never be mid-commit. Cost: one Heartbeat round trip per commit (not yet
   measured in the bench). Side effect: that Heartbeat, sent from the producer's
   connection, also keeps the member's session alive, so a worker whose consumer thread
   hangs while its event loop still commits stays in the group (it is still processing).
4. **Rebalances and aborts.** On revoke the worker commits what it has done (a clean
   hand-over) and aborts the rest; on every assignment it starts a fresh producer (a new
   epoch: nothing of an older transaction can commit), rebuilds the tables from the
   committed changelogs and Faust seeks every partition to its committed offset. After an
   abort (failed send, lost membership, fenced producer) the worker stops: its partitions
   are re-processed from the committed offsets by the group or by its restarted process
   (see ``_abort_and_rewind`` for why not in-process).
5. **Table recovery** from the changelogs with librdkafka before the streams resume
   (``processors.recovery``: Faust's own recovery resumed with empty tables after a
   SIGKILL); it never resumes on partial tables: it retries, then stops the worker.
   Faust's own recovery still runs on every assignment (it is what resumes the streams);
   the consumer reports it no changelog highwater, so it never replays a changelog nor
   checks its own offsets against one (see ``WorkerConsumer.highwaters``).
6. **Producer and consumer settings** Faust does not expose: the transaction timeout, the
   producer's linger and the worker consumer's fetch wait (Faust hard-codes 1.5 s).
7. **Fair polls across topics.** Faust's drain loop hands a poll's records to the agents'
   stream buffers one by one and waits whenever a buffer is full, so the next poll starts
   only once the whole poll is handed over. With no ``max_poll_records`` a poll is
   everything fetched (up to a fetch size per partition: thousands of bet requests); with
   it, aiokafka drains the fetched partitions in fetch order, so a topic fetched last waits
   behind all the others. In a burst the wallet's full buffer paced every poll and the
   accepted legs of the event side, fetched behind the bet requests, trailed the decisions
   by seconds (measured, 10,000 bets on one market: one poll of 9,138 records, 8,871 bet
   requests and 798 legs; the next, once those were handed over, 7,729 legs). Each poll
   here takes at most ``poll_records_per_topic_max`` records of each topic (shared by the
   topic's fetched partitions), so every agent gets its share of each poll (see
   ``WorkerConsumerThread._fetch_records``).
8. **Commit pacing** (``processors.commit_pacing``). Faust's commit timer needs several
   loop iterations to reach the emit lock, and an agent busy with a long batch yields one
   iteration per slice, so in a burst a commit landed every 4-7 slices and settlements
   became visible in lumps 0.6-0.9 s apart. Between slices an agent now starts the due
   commit itself and goes on while it flushes (measured, 30,000 settlements on one worker:
   first settlement visible ~2x sooner, burst time unchanged within the VM's spread).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import faust
import faust.transport.drivers as drivers
from aiokafka import errors as kafka_errors
from aiokafka.client import ConnectionGroup, CoordinationType
from aiokafka.consumer.fetcher import FetchResult
from aiokafka.protocol.group import HeartbeatRequest
from confluent_kafka import KafkaException
from faust.transport.consumer import TransactionManager as FaustTransactionManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, RecordMetadata

from oddsflow import metrics
from oddsflow.processors.commit_pacing import CommitPacer
from oddsflow.processors.emit import PartitionBatcher, key_partition
from oddsflow.processors.recovery import (
    RecoveryFailed,
    read_changelogs,
    recover_with_retries,
    stable_committed_with_retries,
)
from oddsflow.processors.txn_producer import TxnProducer, check_group_metadata_layout

log = logging.getLogger("oddsflow.transport")

SCHEME = "oddsflow-kafka"
ENTRY_POINT = "oddsflow.processors.transport:Transport"

TXN_PRODUCERS = ("librdkafka", "aiokafka")

# One id per worker process: transactional ids never repeat across restarts (see 3. above).
INCARNATION = uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class TransportSettings:
    """What the transport needs beyond Faust's settings, from ODDSFLOW_* variables."""

    # A killed worker's open transaction blocks read_committed readers until the broker
    # aborts it: keep that short, and no longer than the session timeout (see 3. above).
    transaction_timeout_ms: int = 10_000
    linger_ms: int = 5  # batches the many small sends of one commit
    # The producer's record batch per partition. aiokafka queues one batch per partition and
    # appends the next only once that one is drained into a request, so a flush of N bytes
    # to a partition takes N / batch size round trips. Measured (10,000 records of a
    # settlement burst's flush to 8 partitions, this broker): 220 batches of aiokafka's
    # default 16 KiB sent in 180-390 ms, 8 batches of 1 MB in 12-44 ms. Kept at the size of
    # the largest record the worker sends (below the broker's message.max.bytes).
    batch_bytes_max: int = 1_000_000
    # How long the producer waits before retrying a refused request: in a transaction, the
    # AddOffsetsToTxn/AddPartitionsToTxn the broker answers CONCURRENT_TRANSACTIONS while the
    # previous EndTxn's markers are written (KAFKA-5477). aiokafka's default is 100 ms, and a
    # decision that hit it waited 100 ms more: measured 2026-12-04, alternated at a 0.05 s
    # commit interval, decision p99 @100 bets/s 84-101 ms at 10 against 177-204 ms at 100, p50
    # 47-49 against 48 ms; @1,000 bets/s p50 73 / p99 145-244 ms at 10 against 71-75 /
    # 121-261 at 100 (the same within the spread). librdkafka backs off exponentially from it
    # (retry.backoff.max.ms), so a broker outage is not hammered every 10 ms.
    retry_backoff_ms: int = 10
    # Commit at once after an emit that leaves at most this many events uncommitted, with no
    # commit on its way (processors.commit_pacing): under light load a decision does not wait
    # for the commit timer. 0: only the timer (and the pacer between slices) commits.
    # Measured 2026-12-04 (bench.decision_p50, one worker, 0.05 s interval, alternated): @100
    # bets/s p50 21.0-22.4 ms at 4 against 43.3-46.1 at 0, p99 48-95 against 73-107 (~8 ms
    # between commits, each carrying one or two bets); @300/s and @1,000/s commits stay at the
    # interval and p50/p99 are the same within the spread. Committing after every emit whatever
    # the load (group commit) was worse @300/s: p50 58 against 51 ms.
    eager_commit_events_max: int = 4
    # A sportsbook wants an idle partition's next bet picked up in milliseconds.
    fetch_max_wait_ms: int = 10
    # Records of one topic handed to Faust per poll (7. above); 0: Faust's own poll. As
    # many as an agent batch takes (Settings.agent_batch_max): half of it halved the
    # at_least_once closed loop (a batch waits for its delivery) in the bench.
    poll_records_per_topic_max: int = 1_000
    # Below the broker's message.max.bytes (1,048,588 by default) and aiokafka's
    # max_request_size (1,048,576): a bigger record is dead-lettered before it is sent.
    max_message_bytes: int = 1_000_000
    recovery_timeout_s: float = 60.0
    recovery_attempts: int = 3
    # The exactly_once producer: "librdkafka" (processors.txn_producer: produce requests
    # built off the GIL, KIP-447 offsets) or "aiokafka" (Faust's own client).
    txn_producer: str = "librdkafka"

    def __post_init__(self) -> None:
        if self.txn_producer not in TXN_PRODUCERS:
            raise ValueError(
                f"ODDSFLOW_TXN_PRODUCER must be one of {', '.join(TXN_PRODUCERS)}, "
                f"not {self.txn_producer!r}"
            )

    @classmethod
    def from_env(cls) -> TransportSettings:
        """The settings from ODDSFLOW_* variables; an unset one keeps its field's default (each
        default is stated once, on its field)."""
        env, d = os.environ, cls()
        return cls(
            transaction_timeout_ms=int(
                float(env.get("ODDSFLOW_TRANSACTION_TIMEOUT_S", d.transaction_timeout_ms / 1000))
                * 1000
            ),
            fetch_max_wait_ms=int(env.get("ODDSFLOW_FETCH_MAX_WAIT_MS", d.fetch_max_wait_ms)),
            poll_records_per_topic_max=int(
                env.get("ODDSFLOW_POLL_RECORDS_PER_TOPIC_MAX", d.poll_records_per_topic_max)
            ),
            retry_backoff_ms=int(env.get("ODDSFLOW_RETRY_BACKOFF_MS", d.retry_backoff_ms)),
            eager_commit_events_max=int(
                env.get("ODDSFLOW_EAGER_COMMIT_EVENTS_MAX", d.eager_commit_events_max)
            ),
            max_message_bytes=int(env.get("ODDSFLOW_MAX_MESSAGE_BYTES", d.max_message_bytes)),
            batch_bytes_max=int(env.get("ODDSFLOW_PRODUCER_BATCH_BYTES_MAX", d.batch_bytes_max)),
            recovery_timeout_s=float(env.get("ODDSFLOW_RECOVERY_TIMEOUT_S", d.recovery_timeout_s)),
            recovery_attempts=int(env.get("ODDSFLOW_RECOVERY_ATTEMPTS", d.recovery_attempts)),
            txn_producer=env.get("ODDSFLOW_TXN_PRODUCER", d.txn_producer),
        )


def broker_url(bootstrap: str) -> str:
    """The Faust ``broker=`` URL for ``host:port[,host:port]`` on this transport."""
    return ";".join(f"{SCHEME}://{server.strip()}" for server in bootstrap.split(","))


def ensure_registered() -> None:
    """Fail start clearly if Faust does not resolve our scheme to this transport.

    The entry point is read from the installed package metadata: a checkout whose
    metadata predates it (``pip install -e .`` not re-run) would otherwise fail deep in
    Faust with "'oddsflow-kafka' is not a valid name".
    """
    try:
        cls = drivers.by_url(f"{SCHEME}://localhost")
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            f"Faust has no {SCHEME}:// transport: the faust.transports entry point of "
            "pyproject.toml is not installed; re-run `pip install -e .`"
        ) from exc
    if cls is not Transport:
        raise RuntimeError(f"{SCHEME}:// resolves to {cls!r}, not {ENTRY_POINT}")


class TransactionAborted(Exception):
    """A transaction could not commit; the worker re-processes from the committed offsets."""


class MembershipLost(TransactionAborted):
    """This worker is no longer the group member (generation) its transaction began in."""


class SendFailed(TransactionAborted):
    """A record of the transaction was not accepted by the broker."""


class WorkerProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer with oddsflow's settings and direct access to the one
    transactional producer of the worker."""

    def _settings_default(self) -> Mapping[str, Any]:
        settings = dict(super()._settings_default())
        ts = transport_settings(self.app)
        settings["transaction_timeout_ms"] = ts.transaction_timeout_ms
        settings["linger_ms"] = ts.linger_ms
        settings["retry_backoff_ms"] = ts.retry_backoff_ms
        settings["max_batch_size"] = ts.batch_bytes_max
        return settings

    rdkafka: TxnProducer | None = None

    def transaction_producer(self, transactional_id: str) -> Any:
        """The running transactional producer for ``transactional_id`` (a TxnProducer on
        librdkafka, an AIOKafkaProducer otherwise), or None."""
        if transport_settings(self.app).txn_producer == "librdkafka":
            return self.rdkafka
        return self._transaction_producers.get(transactional_id)

    async def _restart_rdkafka(self, transactional_id: str) -> TxnProducer:
        old, self.rdkafka = self.rdkafka, None
        if old is not None:
            await _close_quietly(old)
        ts = transport_settings(self.app)
        bootstrap = cast(Transport, self.transport).bootstrap
        await asyncio.get_running_loop().run_in_executor(
            None, check_group_metadata_layout, bootstrap
        )
        new = TxnProducer(
            {
                "bootstrap.servers": bootstrap,
                "client.id": f"{self.app.conf.broker_client_id}-{transactional_id}",
                "transactional.id": transactional_id,
                "transaction.timeout.ms": ts.transaction_timeout_ms,
                "enable.idempotence": True,
                "acks": "all",
                "partitioner": "murmur2_random",  # as every producer here (oddsflow.kafka)
                "linger.ms": ts.linger_ms,
                "batch.size": ts.batch_bytes_max,
                "retry.backoff.ms": ts.retry_backoff_ms,
                # a settlement burst queues a record per open bet between two commits
                "queue.buffering.max.messages": 2_000_000,
                "delivery.report.only.error": True,
            },
            timeout_s=ts.transaction_timeout_ms / 1000,
        )
        try:
            await new.start()
        except BaseException:
            await _close_quietly(new)
            raise
        self.rdkafka = new
        return new

    async def on_stop(self) -> None:
        if self.rdkafka is not None:
            old, self.rdkafka = self.rdkafka, None
            await _close_quietly(old)
        await super().on_stop()

    async def restart_transaction_producer(self, transactional_id: str) -> Any:
        """Stop the producer of ``transactional_id`` (if any), start a new one and begin a
        transaction. InitProducerId of the new one bumps the epoch: the broker aborts
        whatever the old one left open, and the old one can no longer commit. Unlike
        Faust's begin_transaction this raises instead of logging."""
        if transport_settings(self.app).txn_producer == "librdkafka":
            return await self._restart_rdkafka(transactional_id)
        old = self._transaction_producers.pop(transactional_id, None)
        if old is not None:
            try:
                await old.stop()
            except Exception as exc:  # a fenced or broken producer: the new epoch wins anyway
                log.warning("stopping the old transactional producer: %r", exc)
        new = self._new_producer(transactional_id=transactional_id)
        await new.start()
        self._transaction_producers[transactional_id] = new
        self._trn_locks.setdefault(transactional_id, asyncio.Lock())
        await new.begin_transaction()
        return new


class WorkerConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with a short fetch wait and a view of the group membership."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes fetch_max_wait_ms=1500 and has no setting for it; aiokafka hands
        # this attribute to its Fetcher at start(). Checked so an upgrade fails loudly.
        if not hasattr(consumer, "_fetch_max_wait_ms"):
            raise RuntimeError("aiokafka's consumer no longer has _fetch_max_wait_ms")
        consumer._fetch_max_wait_ms = transport_settings(self.app).fetch_max_wait_ms
        return consumer

    async def _fetch_records(
        self,
        consumer: Any,
        active_partitions: set[Any],
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> Mapping[Any, list[Any]]:
        # Faust's getmany calls this (in the consumer thread) for each poll (see 7. above).
        cap = transport_settings(self.app).poll_records_per_topic_max
        if cap <= 0:
            return cast(
                Mapping[Any, list[Any]],
                await super()._fetch_records(consumer, active_partitions, timeout, max_records),
            )
        if not self.consumer.flow_active:
            return {}
        fetcher = consumer._fetcher
        if consumer._closed or fetcher._closed:
            raise kafka_errors.ConsumerStoppedError()
        with fetcher._subscriptions.fetch_context():
            drained = await fair_share(fetcher, active_partitions, cap)
            if drained:
                return drained
            # Nothing fetched yet, or a fetch error to raise: aiokafka's own call waits for
            # the next fetch (and raises an error only with no records drained before it).
            return cast(
                Mapping[Any, list[Any]],
                await fetcher.fetched_records(active_partitions, timeout=timeout, max_records=cap),
            )

    async def seek_to_committed(self) -> Mapping[Any, int]:
        # Faust rewinds every partition to its committed offset after a rebalance
        # (Recovery._resume_streams -> perform_seek): what it fetched and dropped while the
        # rebalance was under way (getmany discards records once the flow stops or the
        # generation changes) is read again. aiokafka's seek_to_committed only seeks
        # partitions with a committed offset > 0 and leaves the others at their fetch
        # position, so a partition never committed yet (a worker's first transaction
        # aborted, or a dead worker's partitions that never committed) resumed *after* the
        # records dropped in the rebalance: they were never processed (pricing inputs lost,
        # a worker's taken-over partitions stalled behind the dropped records). Such a
        # partition goes back to where auto_offset_reset would start it.
        return cast(Mapping[Any, int], await self.call_thread(self._seek_to_committed_or_reset))

    async def _seek_to_committed_or_reset(self) -> Mapping[Any, int | None]:
        consumer = self._ensure_consumer()
        committed = await self._stable_committed(consumer)
        for tp, offset in committed.items():
            if offset:  # as aiokafka's seek_to_committed: an offset of 0 is the start anyway
                consumer.seek(tp, offset)
        uncommitted = [tp for tp, offset in committed.items() if not offset]
        if uncommitted:
            reset = str(self.app.conf.consumer_auto_offset_reset)
            if reset == "earliest":
                await consumer.seek_to_beginning(*uncommitted)
            elif reset == "latest":
                await consumer.seek_to_end(*uncommitted)
        return committed

    async def _stable_committed(self, consumer: Any) -> dict[Any, int | None]:
        """The group's committed offset of every assigned partition, asked with librdkafka
        so that a pending transactional commit is waited for, not read around (aiokafka's
        own OffsetFetch is v3: see ``processors.recovery``). In an executor: the wait must
        not stall this thread's loop (the consumer's heartbeats run on it)."""
        assigned = list(consumer.assignment())
        s = transport_settings(self.app)
        bootstrap = cast(Transport, self.transport).bootstrap
        got = await asyncio.get_running_loop().run_in_executor(
            None,
            lambda: stable_committed_with_retries(
                bootstrap,
                str(consumer._group_id),
                [(tp.topic, tp.partition) for tp in assigned],
                timeout_s=s.recovery_timeout_s,
                attempts=s.recovery_attempts,
            ),
        )
        return {tp: got[(tp.topic, tp.partition)] for tp in assigned}

    def membership(self) -> tuple[int, str]:
        """(generation, member id) as this consumer currently believes them."""
        coordinator = self._ensure_consumer()._coordinator
        return int(coordinator.generation), str(coordinator.member_id)


class WorkerConsumer(faust_aiokafka.Consumer):
    _thread: WorkerConsumerThread

    def _new_consumer_thread(self) -> WorkerConsumerThread:
        return WorkerConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def membership(self) -> tuple[int, str]:
        return self._thread.membership()

    async def highwaters(self, *partitions: Any) -> Mapping[Any, int]:
        # Faust's Recovery is the only caller. Under exactly_once Faust's highwater is the
        # last stable offset aiokafka saw in a fetch response, unknown (None, so -1 to
        # Faust) until one arrived after the assignment. When one had arrived before Faust
        # built its highwaters (a race with the fetcher, which fetches the changelog
        # partitions Faust has paused), Faust replayed the changelog itself and kept the
        # offset it reached; at the next assignment that kept the partition, with no
        # fetch yet, it compared that offset with a highwater of -1 and crashed the worker
        # (measured, the heir at the zombie's expulsion: ConsistencyError "persisted offset
        # for changelog topic partition ... is higher than the last offset in that topic
        # (highwater) (4 > -1)"). And a replay waits for the highwater, the offset of a
        # commit marker that no record reaches, so (reading Faust's code) it ends only when
        # its aborted-transaction detection runs after two idle 5 s polls, the streams
        # paused meanwhile. The tables are rebuilt by processors.recovery on every
        # assignment (``_on_rebalance_complete``): Faust's recovery has nothing to replay.
        changelogs = self.app.tables.changelog_topics
        streams = [tp for tp in partitions if tp.topic not in changelogs]
        out: dict[Any, int | None] = dict(await super().highwaters(*streams)) if streams else {}
        out.update({tp: None for tp in partitions if tp.topic in changelogs})
        # Faust types the values int; its driver returns aiokafka's None and Recovery reads
        # None as "no highwater" (-1).
        return cast(Mapping[Any, int], out)

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        # Commit what is done before giving the partitions up (Faust forgets its acks
        # first thing in the revoke). A clean hand-over: the next owner, maybe this worker
        # again, starts where this one stopped instead of re-reading what it did. A zombie
        # finds its generation reset here, so this commit aborts (the membership check).
        if self.app.in_transaction and not getattr(self.transactions, "rewinding", False):
            try:
                await self.commit()
            except Exception as exc:  # the transaction is aborted below either way
                log.warning("commit on revoke: %r", exc)
        await super().on_partitions_revoked(revoked)

    def _new_offset(self, tp: Any) -> int | None:
        # Faust commits the end of the first run of consecutive acked offsets, bridging the
        # holes it registered as gaps while fetching. A read_committed input written by
        # transactions has a hole at every commit marker and aborted record, and that
        # bookkeeping lost some (measured: a worker's transaction carried the table writes of
        # two quota grants at offsets 81 and 92 of their partition with the offset 75, so the
        # restarted worker applied them again and its accounts spent quota they did not
        # hold). Here every input partition is read by one agent, which handles its events in
        # offset order and acks them only once their outputs and table writes are in the
        # transaction (``emit``): the highest acked offset closes a prefix that is done, and
        # what lies between acked offsets is a marker or an aborted record.
        if not self.app.in_transaction:
            offset_faust: int | None = super()._new_offset(tp)
            return offset_faust
        acked = self._acked[tp]
        if not acked:
            return None
        offset = max(acked) + 1
        acked.clear()
        self._acked_index[tp].clear()
        self._gap.pop(tp, None)
        committed = self._committed_offset[tp]
        return offset if committed is None or offset > committed else None

    async def _commit_tps(self, tps: Iterable[Any], start_new_transaction: bool) -> bool:
        # Faust picks the offsets to commit *before* the commit takes the emit lock; a batch
        # emitted and acked while it waited for the lock went into this transaction without
        # its input offsets, so a crash before the next commit replayed inputs whose outputs
        # and table writes were already committed (harmless only for idempotent handlers; a
        # quota grant applied twice is not). Under exactly_once the offsets are picked, and
        # committed, while holding the lock: a transaction carries exactly the offsets of the
        # events whose outputs it carries.
        tm = self.transactions
        if not self.app.in_transaction or not isinstance(tm, WorkerTransactionManager):
            return bool(await super()._commit_tps(tps, start_new_transaction))
        async with tm.emit_lock:
            tm.commit_holds_lock = True
            tm.pacer.commit_took_lock()
            try:
                pending = set(tps) | set(self._filter_tps_with_pending_acks())
                return bool(await super()._commit_tps(pending, start_new_transaction))
            finally:
                tm.commit_holds_lock = False


_EMIT_WAIT = metrics.EMIT_WAIT_SECONDS
_PHASES = tuple(metrics.TRANSACTION_PHASE_SECONDS.labels(p) for p in metrics.TRANSACTION_PHASES)


class WorkerTransactionManager(FaustTransactionManager):
    """One transactional producer per worker; commits only what fully succeeded (see the
    module docstring, points 1-4). Also used, without transactions, under at_least_once,
    where ``emit`` waits for delivery before acking."""

    producer: WorkerProducer
    consumer: WorkerConsumer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.emit_lock = asyncio.Lock()
        self._pending: list[asyncio.Future[Any]] = []
        self._generation = -1
        self._group_node: int | None = None
        # Set after an abort until the rebalance it asked for has rewound the worker.
        self.rewinding = False
        # True while WorkerConsumer._commit_tps holds emit_lock around a commit.
        self.commit_holds_lock = False
        self.pacer = CommitPacer(
            lambda: self.consumer.commit(),
            float(self.app.conf.broker_commit_interval),
            self._commit_failed,
            eager_events_max=transport_settings(self.app).eager_commit_events_max,
        )
        self.aborts = 0

    @property
    def transactional_id(self) -> str:
        return f"{self.app.conf.id}-{INCARNATION}"

    def _tps_to_transactional_ids(self, tps: Any) -> set[str]:
        return {self.transactional_id} if self._tps_to_active_tpgs(tps) else set()

    def _txn_producer(self) -> Any:
        if self.app.in_transaction:
            return self.producer.transaction_producer(self.transactional_id)
        return self.producer._ensure_producer()

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        # Taking the emit lock: a worker leaving the group is never in the middle of a
        # commit. Whatever was sent since the last commit is aborted: after the assignment
        # it is re-processed from the committed offsets, on rebuilt tables.
        async with self.emit_lock:
            self.rewinding = True  # until the tables are rebuilt after the assignment
            producer = self._txn_producer() if self.app.in_transaction else None
            await self._settle_pending()
            if producer is not None:
                try:
                    await _abort(producer)
                except Exception as exc:  # fenced/broken: the restart below fences it anyway
                    log.info("abort on revoke: %r", exc)

    async def on_rebalance(self, assigned: set[Any], revoked: set[Any], newly: set[Any]) -> None:
        # Faust restarts the producer only when partitions were revoked; after an eager
        # rebalance that hands back the same partitions it would keep the old producer
        # (possibly fenced). Always start a fresh one: a new epoch per assignment.
        async with self.emit_lock:
            self._pending.clear()
            self._generation = self.consumer.membership()[0]
            if self._tps_to_active_tpgs(assigned):
                await self.producer.restart_transaction_producer(self.transactional_id)

    async def emit(self, events: Iterable[Any], batch: PartitionBatcher) -> None:
        """Send a batch's outputs and changelog writes, then ack its events, under the lock
        the commit takes: they land in the same transaction as the events' offsets."""
        waited = time.perf_counter()
        async with self.emit_lock:
            _EMIT_WAIT.observe(time.perf_counter() - waited)
            if self.rewinding:
                batch.clear()  # re-processed from the committed offsets after the rebalance
                return
            producer = self._txn_producer()
            if producer is None:
                batch.clear()
                return
            try:
                if isinstance(producer, TxnProducer):
                    await batch.produce(producer)  # delivery is checked by the commit's flush
                    futures = []
                else:
                    futures = await batch.send(producer)
            except Exception as exc:  # refused before it was queued (size, metadata, state)
                await self._abort_and_rewind(SendFailed(f"send refused: {exc!r}"))
                return
            if self.app.in_transaction:
                self._pending.extend(futures)
            else:
                failed = _failures(await asyncio.gather(*futures, return_exceptions=True))
                if failed:
                    await self._abort_and_rewind(SendFailed(failed[0]))
                    return
            acked = 0
            for event in events:
                event.ack()
                acked += 1
        if self.app.in_transaction:
            # Faust's commit() is on its way while its future is set (it takes the lock next).
            self.pacer.emitted(acked, self.consumer._commit_fut is not None)

    async def make_way_for_commit(self) -> None:
        """Between two slices of an agent's long batch: let the commit run now if it is due
        (``processors.commit_pacing``); under at_least_once each emit waited for delivery."""
        if not self.app.in_transaction:
            await asyncio.sleep(0)
            return
        await self.pacer.make_way(self.commit_holds_lock)

    def _commit_failed(self, exc: BaseException) -> None:
        # What an exception in Faust's commit timer does: the worker stops for its supervisor.
        log.error("commit failed: %r", exc)
        self._crashing = asyncio.ensure_future(self.app.crash(exc))

    async def commit(self, offsets: Mapping[Any, int], start_new_transaction: bool = True) -> bool:
        if self.commit_holds_lock:  # the consumer picked the offsets under the lock already
            return await self._commit_locked(offsets, start_new_transaction)
        async with self.emit_lock:
            return await self._commit_locked(offsets, start_new_transaction)

    async def _commit_locked(self, offsets: Mapping[Any, int], start_new_transaction: bool) -> bool:
        if not offsets or self.rewinding:
            return False
        producer = self.producer.transaction_producer(self.transactional_id)
        if producer is None:
            return False
        t0 = time.perf_counter()
        try:
            if isinstance(producer, TxnProducer):
                t1, t2, t3 = await self._commit_rdkafka(producer, offsets)
            else:
                failed = _failures(await self._settle_pending())
                if failed:
                    raise SendFailed(failed[0])
                t1 = time.perf_counter()
                await producer.send_offsets_to_transaction(dict(offsets), self.app.conf.id)
                t2 = time.perf_counter()
                await self._check_membership(producer)
                t3 = time.perf_counter()
                await producer.commit_transaction()
            t4 = time.perf_counter()
            for phase, seconds in zip(_PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                phase.observe(seconds)
        except (TransactionAborted, kafka_errors.KafkaError, KafkaException) as exc:
            await self._abort_and_rewind(exc)
            return False
        if start_new_transaction:
            if isinstance(producer, TxnProducer):
                producer.begin()
            else:
                await producer.begin_transaction()
        return True

    async def _commit_rdkafka(
        self, producer: TxnProducer, offsets: Mapping[Any, int]
    ) -> tuple[float, float, float]:
        """Flush, add the offsets with the group generation (KIP-447: the broker refuses
        them from an expelled member), commit; the times each phase ended but the last."""
        await producer.flush()
        t1 = time.perf_counter()
        generation, member_id = self._current_membership()
        await producer.send_offsets(offsets, self.app.conf.id, generation, member_id)
        t2 = time.perf_counter()
        # The broker checked the generation and member with the offsets: no Heartbeat.
        t3 = time.perf_counter()
        await producer.commit()
        return t1, t2, t3

    async def _settle_pending(self) -> list[Any]:
        pending, self._pending = self._pending, []
        return list(await asyncio.gather(*pending, return_exceptions=True)) if pending else []

    def _current_membership(self) -> tuple[int, str]:
        """The consumer's generation and member id, if still those this transaction began in
        (a local check, before anything asks the broker); MembershipLost otherwise."""
        generation, member_id = self.consumer.membership()
        if generation != self._generation or generation < 0 or not member_id:
            raise MembershipLost(
                f"generation {generation} (member {member_id or '-'}) is not the "
                f"generation {self._generation} this transaction began in"
            )
        return generation, member_id

    async def _check_membership(self, producer: Any) -> None:
        generation, member_id = self._current_membership()
        group = self.app.conf.id
        try:
            self._group_node = await confirm_membership(
                producer.client, group, generation, member_id, self._group_node
            )
        except MembershipLost:
            self._group_node = None  # looked up again next time (it may have moved)
            raise

    async def _abort_and_rewind(self, exc: BaseException) -> None:
        """Abort the transaction and stop this worker process.

        Everything since the last commit (outputs, changelog writes, offsets) is aborted;
        the group hands the partitions on and they are re-processed from the committed
        offsets, by the other workers or by this one when its supervisor restarts it, on
        tables rebuilt from the committed changelogs. Rewinding inside the process was
        tried: after an eager rejoin that hands a worker back the same partitions, Faust
        did not re-deliver the records it had already read (measured: a dead letter whose
        first send had failed never came), so a fresh process is the reliable rewind.
        """
        self.aborts += 1
        log.error(
            "transaction aborted; stopping the worker, its partitions are re-processed from "
            "the committed offsets: %s: %s",
            type(exc).__name__,
            exc,
        )
        self.rewinding = True  # no further send or commit from this incarnation
        await self._settle_pending()
        producer = self.producer.transaction_producer(self.transactional_id)
        if self.app.in_transaction and producer is not None:
            try:
                await _abort(producer)
            except Exception as abort_exc:  # fenced/broken: the next owner's epoch wins
                log.info("abort after failure: %r", abort_exc)
        await self.app.crash(TransactionAborted(f"{type(exc).__name__}: {exc}"))

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> Any:
        # Anything Faust itself sends under exactly_once goes into the worker's transaction.
        p = self.consumer.key_partition(topic, key, partition)
        producer = self._txn_producer()
        if isinstance(producer, TxnProducer):
            if p is None:
                if key is None:
                    raise ValueError(f"a record for {topic} needs a key or a partition")
                p = key_partition(key, await producer.partitions(topic))
            async with self.emit_lock:  # never while a commit runs (librdkafka refuses)
                await producer.produce([(topic, p, key, value)])
            # Its offset is known only once the transaction commits; the commit fails (and
            # is aborted) if this record failed.
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            done.set_result(RecordMetadata(topic, p, TP(topic, p), -1, -1, -1))
            return done
        return await self.producer.send(
            topic, key, value, p, timestamp, headers, transactional_id=self.transactional_id
        )


async def fair_share(fetcher: Any, partitions: set[Any], cap: int) -> dict[Any, list[Any]]:
    """Up to ``cap`` fetched records of each topic, split evenly over the topic's partitions
    with fetched records (a partition's rest stays for the next poll, in order).

    Only partitions holding records are drained: a fetch error is left for aiokafka's own
    ``fetched_records`` call, which raises it only when it has drained nothing before it
    (raising here would lose the records drained from other partitions)."""
    by_topic: dict[str, list[Any]] = {}
    for tp, result in list(fetcher._records.items()):
        if tp in partitions and isinstance(result, FetchResult):
            by_topic.setdefault(tp.topic, []).append(tp)
    drained: dict[Any, list[Any]] = {}
    for tps in by_topic.values():
        share = max(1, cap // len(tps))
        for tp in tps:
            records = await fetcher.fetched_records({tp}, timeout=0, max_records=share)
            drained.update(records)
    return drained


async def confirm_membership(
    client: Any, group: str, generation: int, member_id: str, node: int | None = None
) -> int:
    """Ask the group coordinator (a Heartbeat from ``client``'s connection) whether
    ``member_id`` is still a member of ``group`` at ``generation``; raise MembershipLost if
    not. Returns the coordinator's node id, to pass back in next time."""
    if node is None:
        node = int(await client.coordinator_lookup(CoordinationType.GROUP, group))
    resp = await client.send(
        node, HeartbeatRequest(group, generation, member_id), group=ConnectionGroup.COORDINATION
    )
    err = kafka_errors.for_code(resp.error_code)
    # REBALANCE_IN_PROGRESS still validates the member and generation: the group waits for
    # this member to rejoin (its revoke commits under the emit lock, after this commit) or
    # for its session to expire, so nobody else owns its partitions yet.
    if err not in (kafka_errors.NoError, kafka_errors.RebalanceInProgressError):
        raise MembershipLost(
            f"the group coordinator answers {err.__name__} for generation {generation}"
        )
    return node


async def _abort(producer: Any) -> None:
    if isinstance(producer, TxnProducer):
        await producer.abort()
    else:
        await producer.abort_transaction()


async def _close_quietly(producer: TxnProducer) -> None:
    try:
        await producer.abort()
    except Exception as exc:  # fenced or broken: the next producer's epoch wins anyway
        log.info("aborting the old transactional producer: %r", exc)
    try:
        await producer.close()
    except Exception as exc:
        log.warning("closing the old transactional producer: %r", exc)


def _failures(results: Iterable[Any]) -> list[str]:
    return [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]


def transport_settings(app: Any) -> TransportSettings:
    transport = app.transport
    return transport.settings if isinstance(transport, Transport) else TransportSettings()


@dataclass(frozen=True)
class RecoveredTable:
    """A Faust table this transport rebuilds from its changelog on every assignment."""

    table: Any
    source_topics: frozenset[str]  # the co-partitioned input topics its partitions follow


class Transport(faust_aiokafka.Transport):
    """``oddsflow-kafka://``: Faust's aiokafka transport with the classes above."""

    Consumer: ClassVar[type[Any]] = WorkerConsumer
    Producer: ClassVar[type[Any]] = WorkerProducer
    TransactionManager: ClassVar[type[Any]] = WorkerTransactionManager

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = TransportSettings.from_env()
        self._tables: dict[str, RecoveredTable] = {}
        self._changelog_topics: dict[str, str] = {}
        self._recover_connected = False
        self.read_changelogs: Callable[..., dict[str, dict[str, Any]]] = read_changelogs

    @property
    def bootstrap(self) -> str:
        return ",".join(faust_aiokafka.server_list(self.url, self.default_port))

    @property
    def transactions(self) -> WorkerTransactionManager:
        tm = self.app.consumer.transactions
        assert isinstance(tm, WorkerTransactionManager), tm
        return tm

    def changelog_topic(self, table_name: str) -> str:
        name = self._changelog_topics.get(table_name)
        if name is None:  # Faust builds the name on every ask: once per changelog write
            name = self._changelog_topics[table_name] = str(
                self._tables[table_name].table.changelog_topic.get_topic_name()
            )
        return name

    def recover_tables(self, tables: Mapping[str, RecoveredTable]) -> None:
        """Rebuild ``tables`` from their changelogs whenever partitions are assigned,
        before Faust resumes the streams (Faust's ``on_rebalance_complete`` signal)."""
        self._tables.update(tables)
        if not self._recover_connected:
            self._recover_connected = True
            self.app.on_rebalance_complete.connect(cast(Any, self._on_rebalance_complete))

    async def emit(
        self,
        events: Iterable[Any],
        batch: PartitionBatcher,
        changelog: Mapping[tuple[str, str], tuple[int, bytes | None]] | None = None,
    ) -> None:
        """Send ``batch`` plus the table writes ``{(table, key): (partition, value)}`` to
        the tables' changelogs, and ack ``events``: all in the worker's transaction."""
        if changelog:
            import orjson

            for (table_name, k), (partition, value) in changelog.items():
                batch.add(self.changelog_topic(table_name), orjson.dumps(k), value, partition)
        await self.transactions.emit(events, batch)

    async def make_way_for_commit(self) -> None:
        """Let the commit run between two slices of a long batch (``WorkerTransactionManager``)."""
        await self.transactions.make_way_for_commit()

    async def _on_rebalance_complete(self, sender: Any = None, **kwargs: Any) -> None:
        app = self.app
        assigned = app.consumer.assignment()
        wanted = {
            self.changelog_topic(name): {
                tp.partition for tp in assigned if tp.topic in t.source_topics
            }
            for name, t in self._tables.items()
        }
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        s = self.settings
        try:
            recovered = await loop.run_in_executor(
                None,
                lambda: recover_with_retries(
                    self.read_changelogs,
                    self.bootstrap,
                    wanted,
                    timeout_s=s.recovery_timeout_s,
                    attempts=s.recovery_attempts,
                ),
            )
        except RecoveryFailed as exc:
            # Never resume on partial tables (a wallet missing its last writes would decide
            # bets on a stale balance): stop this worker; its partitions go to the others.
            log.error("stopping the worker: %s", exc)
            await app.crash(exc)
            raise
        for name, t in self._tables.items():
            data = recovered[self.changelog_topic(name)]
            t.table.data.clear()
            for k, v in data.items():
                t.table.data[k] = v
        self.transactions.rewinding = False
        log.warning(
            "recovered %s keys in %.1fs",
            {n: len(t.table.data) for n, t in self._tables.items()},
            time.monotonic() - started,
        )


def app(app_id: str, bootstrap: str, **conf: Any) -> faust.App:
    """A Faust app on this transport (checks the registration first)."""
    ensure_registered()
    # Faust's check compares its own replay offsets with its highwaters; it replays nothing
    # here (see WorkerConsumer.highwaters) and processors.recovery checks what it reads.
    conf.setdefault("recovery_consistency_check", False)
    return faust.App(app_id, broker=broker_url(bootstrap), **conf)
