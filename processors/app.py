"""The Faust application: topics and tables from topology.yaml, agents as thin adapters.

Each agent decodes a message, calls a handler (``processors.markets`` /
``processors.wallet``, which call the pure domain), and produces the handler's outputs.
Bad input never crashes an agent: it goes to the dead-letter topic with its reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiokafka
import faust
import faust.transport.drivers.aiokafka as _faust_aiokafka
import orjson
from aiokafka.errors import ProducerFenced
from faust.transport.consumer import TransactionManager
from faust.transport.drivers.aiokafka import Producer as AiokafkaProducer
from faust.transport.drivers.aiokafka import Transport as AiokafkaTransport

from oddsflow import metrics, topology
from oddsflow.codec import Codec, CodecError
from oddsflow.domain.acceptance import Limits
from oddsflow.domain.pricing import Method
from oddsflow.processors.emit import PartitionBatcher
from oddsflow.processors.markets import Book, InputError, MarketsHandler
from oddsflow.processors.provider import ProviderHandler
from oddsflow.processors.recovery import read_changelogs
from oddsflow.processors.state import Effects, Journal, Store
from oddsflow.processors.wallet import WalletHandler
from oddsflow.settings import Settings
from oddsflow.streams.uof.settings import UofSettings

log = logging.getLogger("oddsflow.processors")


# One id per worker process: transactional ids never repeat across restarts (see below).
INCARNATION = uuid.uuid4().hex[:8]


class WorkerTransactionManager(TransactionManager):
    """Faust's exactly_once, fixed for topologies that re-key, with one producer per worker.

    1. Faust opens one transactional producer per (topic group, partition) and picks the one
       for an output by the message's *destination* partition, so a message sent to another
       key's partition (this saga does that on every hop: account -> event -> account) lands
       in a transaction that commits with some unrelated input offset, or never. Like Kafka
       Streams' exactly_once_v2, a worker here has *one* transactional producer: every
       output, every changelog write (see ``processors.state``) and every input offset of
       the worker's partitions commit or abort together. One producer also means one
       commit round trip per interval instead of one per partition (measured: the commit
       loop over 16 producers held the emit lock for most of each interval).
    2. An event's sends and the periodic commit are serialised by a lock, so one event's
       writes are never split across two transactions.
    3. The transactional id carries a per-process incarnation. With Faust's fixed ids, a
       restarted worker reuses the killed worker's producer ids, and aiokafka's
       read_committed fetcher then skipped committed records after the restart (measured:
       decisions lost in the SIGKILL test). A killed worker's open transaction is instead
       aborted by the broker after ``transaction_timeout_s``; consumers wait for that.
    4. A rebalance (aiokafka's protocol is eager: it revokes every partition) stops the
       producer and starts a new one with the same id, which fences the old epoch and makes
       the broker abort its open transaction at once; the tables are then rebuilt from the
       committed changelogs (``recover_tables``) and processing resumes from the committed
       offsets, so nothing of the aborted transaction survives in memory or on a topic.
    """

    _lock: asyncio.Lock | None = None

    @classmethod
    def emit_lock(cls) -> asyncio.Lock:
        if cls._lock is None:
            cls._lock = asyncio.Lock()
        return cls._lock

    @property
    def transactional_id(self) -> str:
        return f"{self.app.conf.id}-{INCARNATION}"

    def _tps_to_transactional_ids(self, tps: Any) -> set[str]:
        return {self.transactional_id} if self._tps_to_active_tpgs(tps) else set()

    async def commit(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        async with self.emit_lock():
            if offsets:
                try:
                    await self.producer.commit_transactions(
                        {self.transactional_id: dict(offsets)},
                        self.app.conf.id,
                        start_new_transaction=start_new_transaction,
                    )
                except ProducerFenced as exc:
                    log.warning("producer fenced: %s", exc)
                    await self.app.crash(exc)
            return True

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
        p = self.consumer.key_partition(topic, key, partition)
        return await self.producer.send(
            topic, key, value, p, timestamp, headers, transactional_id=self.transactional_id
        )


AiokafkaTransport.TransactionManager = WorkerTransactionManager
_faust_producer_settings = AiokafkaProducer._settings_default


def _producer_settings(self: Any) -> Any:
    # A killed worker's open transaction blocks read_committed readers until the broker
    # aborts it: keep that short. linger batches the many small sends of one commit.
    settings = dict(_faust_producer_settings(self))
    settings["transaction_timeout_ms"] = int(
        float(os.environ.get("ODDSFLOW_TRANSACTION_TIMEOUT_S", "10")) * 1000
    )
    settings["linger_ms"] = 5
    return settings


AiokafkaProducer._settings_default = _producer_settings


class _LowWaitConsumer(aiokafka.AIOKafkaConsumer):
    # Faust hard-codes fetch_max_wait_ms=1500 for its worker consumer; a sportsbook wants
    # an idle partition's next bet picked up in milliseconds, not up to 1.5 s.
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["fetch_max_wait_ms"] = int(os.environ.get("ODDSFLOW_FETCH_MAX_WAIT_MS", "10"))
        super().__init__(*args, **kwargs)


_faust_aiokafka.aiokafka = type(
    "aiokafka_shim", (), {**vars(aiokafka), "AIOKafkaConsumer": _LowWaitConsumer}
)

RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Engine:
    app: faust.App
    topo: topology.Topology
    topics: dict[str, Any]
    codecs: dict[str, Codec]
    markets: MarketsHandler
    wallet: WalletHandler


def build_app(settings: Settings, *, limits: Limits | None = None) -> Engine:
    topo = topology.load(settings=settings)
    problems = topo.check()
    if problems:
        raise topology.TopologyError("; ".join(problems))
    datadir = settings.run_dir / "faust" / f"{settings.topic_prefix}{settings.app_id}"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{settings.topic_prefix}{settings.app_id}",
        broker=f"kafka://{settings.kafka_bootstrap}",
        store=settings.store,
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=topo.group_partitions("event"),
        topic_replication_factor=1,
        topic_allow_declare=True,
        web_enabled=False,
        table_standby_replicas=settings.standby_replicas,
        broker_commit_interval=settings.commit_interval_s,
        broker_commit_every=settings.commit_every,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        consumer_auto_offset_reset="earliest",
        datadir=str(datadir),
        stream_wait_empty=False,
    )
    topics = {
        key: app.topic(spec.name, partitions=spec.partitions, **RAW)
        for key, spec in topo.topics.items()
    }
    codecs = {
        key: Codec(spec.value_schema, settings.schema_registry_url)
        for key, spec in topo.topics.items()
    }

    def table(name: str) -> Store:
        group = topo.tables[name]["group"]
        t = app.Table(
            name,
            default=None,
            partitions=topo.group_partitions(group),
            schema=faust.Schema(
                key_type=str, value_type=bytes, key_serializer="json", value_serializer="raw"
            ),
        )
        stores[name] = t
        store = Store(t.data, table=t)
        store.journal = journal
        return store

    stores: dict[str, Any] = {}
    journal = Journal()
    book = Book(
        margin=Decimal(settings.margin),
        method=Method(settings.pricing_method),
        limits=limits or Limits(),
    )
    markets = MarketsHandler(
        table("markets"),
        table("event_state"),
        table("open_legs"),
        table("liabilities"),
        book,
        account_partitions=topo.group_partitions("account"),
    )
    wallet = WalletHandler(table("wallets"), table("bets"), book.limits)
    # Provider-settled markets (UOF): the certainty policy is the adapter's setting.
    provider = ProviderHandler(markets, table("provider_markets"), UofSettings().certainty_policy)
    engine = Engine(app, topo, topics, codecs, markets, wallet)

    name_to_key = {spec.name: key for key, spec in topo.topics.items()}
    feed_handlers = {
        "fixtures": markets.on_fixture,
        "price_updates": markets.on_price_update,
        "market_status": markets.on_market_status,
        "scores": markets.on_score,
        "results": markets.on_result,
        "provider_settlements": provider.on_provider_settlement,
        "provider_cancels": provider.on_provider_cancel,
    }
    wallet_handlers = {
        "bet_requests": wallet.on_bet_request,
        "deposits": wallet.on_deposit,
        "leg_verdicts": wallet.on_leg_verdict,
        "leg_settlements": wallet.on_leg_settlements,
    }

    topic_names = {key: spec.name for key, spec in topo.topics.items()}
    eos = settings.processing_guarantee == "exactly_once"
    batch_max = settings.agent_batch_max
    batch_within_s = settings.agent_batch_within_ms / 1000
    batch_budget_s = settings.agent_batch_budget_ms / 1000

    def kafka_producer() -> Any:
        # The aiokafka producer of this worker: under exactly_once its one transactional
        # producer (see WorkerTransactionManager), else Faust's plain producer.
        if eos:
            tid = app.consumer.transactions.transactional_id
            return app.producer._transaction_producers[tid]
        return app.producer._ensure_producer()

    def dead_letter_record(event: Any, error: Exception, stage: str) -> tuple[Any, ...]:
        msg = event.message
        metrics.DEAD_LETTERS.labels(stage, type(error).__name__).inc()
        log.warning("dead letter from %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, error)
        value = codecs["dead_letters"].encode(
            {
                "topic": msg.topic,
                "partition": msg.partition,
                "offset": msg.offset,
                "key": event.key if isinstance(event.key, bytes) else None,
                "value": event.value if isinstance(event.value, bytes) else None,
                "error": str(error) or type(error).__name__,
                "error_type": type(error).__name__,
                "stage": stage,
                "failed_at": now_ms(),
            }
        )
        return (topic_names["dead_letters"], msg.topic.encode(), value, None)

    async def emit(events: list[Any], batcher: PartitionBatcher) -> None:
        # Under the lock the periodic commit also takes: a batch's outputs, its changelog
        # writes and its input offsets (acked here, before the lock is released) always
        # land in the same transaction.
        async with WorkerTransactionManager.emit_lock():
            await batcher.send(kafka_producer())
            for event in events:
                event.ack()

    events_in: dict[tuple[str, str], Any] = {}
    events_out: dict[tuple[str, str], Any] = {}

    async def handle_batch(
        events: list[Any], handlers: dict[str, Any], agent: str, **kw: Any
    ) -> None:
        """Run each event through its handler, then emit the batch's outputs at once.

        A handler that fails rolls back its own table writes and sends its input to the
        dead-letter topic; the rest of the batch is unaffected. Table writes are coalesced
        per key (the changelog is compacted: only a key's last value counts).

        A batch that has run for ``agent_batch_budget_ms`` emits what it has done so far
        and lets the commit run before it goes on: the event loop must not stay blocked
        for long (a 500-leg settlement message is one event), and under exactly_once a
        transaction left open longer than the transaction timeout is aborted by the broker.
        """
        started = slice_started = time.perf_counter()
        batcher = PartitionBatcher()
        changelog: dict[tuple[str, str], tuple[int, bytes | None]] = {}

        def process(event: Any) -> None:
            key = name_to_key[event.message.topic]
            c = events_in.get((agent, key))
            if c is None:
                c = events_in[(agent, key)] = metrics.EVENTS_IN.labels(agent, key)
            c.inc()
            journal.writes.clear()
            try:
                record = codecs[key].decode(event.value)
                fx = Effects()
                handlers[key](record, fx, now_ms(), **kw)
            except (CodecError, InputError) as exc:
                journal.rollback()
                batcher.add(*dead_letter_record(event, exc, agent))
                return
            except Exception as exc:  # a bug or an input no rule foresaw: park it, keep running
                journal.rollback()
                log.exception("unexpected error in %s", agent)
                batcher.add(*dead_letter_record(event, exc, agent))
                return
            partition = event.message.partition
            for store, k, value, _ in journal.writes:
                changelog[(store.table.name, k)] = (partition, value)
            journal.writes = []
            for o in fx.out:
                batcher.add(
                    topic_names[o.topic], o.key.encode(), codecs[o.topic].encode(o.value), None
                )
                c = events_out.get((agent, o.topic))
                if c is None:
                    c = events_out[(agent, o.topic)] = metrics.EVENTS_OUT.labels(agent, o.topic)
                c.inc()

        async def flush(done: list[Any]) -> None:
            for (table_name, k), (partition, value) in changelog.items():
                batcher.add(changelog_names[table_name], orjson.dumps(k), value, partition)
            changelog.clear()
            await emit(done, batcher)

        first = 0
        for i, event in enumerate(events):
            process(event)
            if i + 1 < len(events) and time.perf_counter() - slice_started > batch_budget_s:
                await flush(events[first : i + 1])
                first = i + 1
                await asyncio.sleep(0)  # the commit (waiting on the emit lock) goes first
                slice_started = time.perf_counter()
        await flush(events[first:])
        metrics.PROCESSING_SECONDS.labels(agent).observe(
            (time.perf_counter() - started) / max(1, len(events))
        )
        metrics.AGENT_BATCH_EVENTS.labels(agent).observe(len(events))

    changelog_names = {t.name: t.changelog_topic.get_topic_name() for t in stores.values()}
    feed_topic = app.topic(*(topo.topic(k).name for k in feed_handlers), **RAW)
    wallet_topic = app.topic(*(topo.topic(k).name for k in wallet_handlers), **RAW)

    @app.agent(feed_topic, name="pricing")
    async def pricing_agent(stream: Any) -> None:
        async for events in stream.take_events(batch_max, within=batch_within_s):
            await handle_batch(events, feed_handlers, "pricing")

    @app.agent(topics["leg_commands"], name="market_check")
    async def market_check_agent(stream: Any) -> None:
        handlers = {"leg_commands": markets.on_leg_command}
        async for events in stream.take_events(batch_max, within=batch_within_s):
            await handle_batch(events, handlers, "market_check")

    @app.agent(topics["leg_delays"], name="bet_delay")
    async def bet_delay_agent(stream: Any) -> None:
        # In-play bet delay: legs arrive here in hold order; wait until each one's time has
        # come, then re-check it against the price at that moment.
        async for event in stream.events():
            try:
                hold_until = codecs["leg_delays"].decode(event.value)["hold_until_ms"] or 0
            except CodecError as exc:
                batcher = PartitionBatcher()
                batcher.add(*dead_letter_record(event, exc, "bet_delay"))
                await emit([event], batcher)
                continue
            wait_s = (hold_until - now_ms()) / 1000
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            await handle_batch([event], {"leg_delays": markets.on_leg_command}, "bet_delay")

    @app.agent(wallet_topic, name="wallet")
    async def wallet_agent(stream: Any) -> None:
        async for events in stream.take_events(batch_max, within=batch_within_s):
            await handle_batch(events, wallet_handlers, "wallet")

    @app.task
    async def quiet_client_logs() -> None:
        # Faust/aiokafka build debug records on hot paths; nobody reads them at -l warn.
        for name in ("aiokafka", "faust", "mode"):
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))

    @app.on_rebalance_complete.connect
    async def recover_tables(sender: Any = None, **kwargs: Any) -> None:
        # Runs before Faust resumes the streams (see processors.recovery for why).
        assigned = app.consumer.assignment()
        by_group: dict[str, set[int]] = {}
        for group, keys in topo.copartition_groups.items():
            names = {topo.topic(k).name for k in keys}
            by_group[group] = {tp.partition for tp in assigned if tp.topic in names}
        wanted = {
            t.changelog_topic.get_topic_name(): by_group[topo.tables[name]["group"]]
            for name, t in stores.items()
        }
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        recovered = await loop.run_in_executor(
            None, read_changelogs, settings.kafka_bootstrap, wanted
        )
        for t in stores.values():
            data = recovered[t.changelog_topic.get_topic_name()]
            t.data.clear()
            for k, v in data.items():
                t.data[k] = v
        log.warning(
            "recovered %s keys for partitions %s in %.1fs",
            {n: len(t.data) for n, t in stores.items()},
            by_group,
            time.monotonic() - started,
        )

    @app.timer(5.0)
    async def table_sizes_and_lag() -> None:
        for name, t in stores.items():
            metrics.TABLE_SIZE.labels(name).set(len(t))
        consumer = app.consumer
        read = getattr(consumer, "_read_offset", {})
        for tp in consumer.assignment():
            try:
                high = consumer.highwater(tp)
            except Exception:  # not fetched yet for this partition
                continue
            pos = read.get(tp)
            if high is not None:
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(
                    max(0, high - ((pos or -1) + 1))
                )

    return engine


def run_worker(settings: Settings, loglevel: str = "warn") -> None:
    """Run one worker process until it is stopped (SIGTERM/SIGINT)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep working without it
        pass
    topology.apply(topology.load(settings=settings), settings.kafka_bootstrap)
    metrics.serve(settings.metrics_port)
    engine = build_app(settings)
    worker = faust.Worker(engine.app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
