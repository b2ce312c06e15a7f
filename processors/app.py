"""The Faust application: topics and tables from topology.yaml, agents as thin adapters.

Each agent decodes a message, calls a handler (``processors.markets`` /
``processors.wallet``, which call the pure domain), and produces the handler's outputs.
Bad input never crashes an agent: it goes to the dead-letter topic with its reason.

This module is plain Faust. Everything exactly-once needs of Faust and aiokafka (one
transactional producer per worker, changelog writes inside the transaction, the checks
before a commit, table recovery, client settings) is the ``oddsflow-kafka://`` transport
in ``processors.transport``. Each agent's input topics come from topology.yaml's agents
section; the handler for each is in ``processors.routes``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import faust
from faust.stores.memory import Store as MemoryStore

from oddsflow import metrics, topology
from oddsflow.codec import Codec, CodecError
from oddsflow.domain.acceptance import Limits
from oddsflow.domain.currency import parse_accepted
from oddsflow.domain.pricing import Method
from oddsflow.domain.validation import INPUT_TOPICS, ValidationError, validate_record
from oddsflow.processors import transport as oddsflow_transport
from oddsflow.processors.batched import ITEMS_PER_MESSAGE_MAX, batched_topics
from oddsflow.processors.conflation import UNDECODABLE, Plan, Unit
from oddsflow.processors.conflation import expand as expand_units
from oddsflow.processors.conflation import plan as plan_conflation
from oddsflow.processors.emit import RECORD_OVERHEAD_BYTES, PartitionBatcher, record_bytes
from oddsflow.processors.market_view import MarketView
from oddsflow.processors.markets import Book, InputError, MarketsHandler
from oddsflow.processors.provider import ProviderHandler
from oddsflow.processors.routes import ROUTES, mismatches
from oddsflow.processors.state import Effects, Journal, Store
from oddsflow.processors.wallet import WalletHandler
from oddsflow.settings import Settings
from oddsflow.streams.uof.settings import UofSettings

log = logging.getLogger("oddsflow.processors")

# A dead letter carries at most this much of the original key and value (and of the
# reason), so a dead letter can never itself be too large to produce.
DEAD_LETTER_EXCERPT_BYTES = 64 * 1024
DEAD_LETTER_KEY_BYTES = 1024
DEAD_LETTER_ERROR_CHARS = 2000

# validate(topic key, decoded record): raises to reject a record (it is dead-lettered with
# the exception as its reason). The one place for record validation after decoding.
Validator = Callable[[str, dict[str, Any]], None]


def no_validation(topic_key: str, record: dict[str, Any]) -> None:
    return None


def record_validator(settings: Settings) -> Validator:
    """The ingestor's rules (``oddsflow.domain.validation``) applied to every input record the
    worker consumes: a record produced straight onto a topic is trusted no more than one that
    came through the feed endpoint. Internal topics carry only what the engine wrote."""
    accepted = parse_accepted(settings.accepted_currencies)

    def validate(topic_key: str, record: dict[str, Any]) -> None:
        if topic_key in INPUT_TOPICS:
            validate_record(topic_key, record, accepted)

    return validate


class OversizedOutput(ValueError):
    """An output or changelog record would exceed the broker's maximum message size."""


RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


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
    view: MarketView


def faust_app_for(settings: Settings, app_id: str, topic_partitions: int) -> faust.App:
    """The worker's Faust app settings on the ``oddsflow-kafka://`` transport. The bench's Faust
    passthrough builds its app here too, so its baseline follows the worker's settings."""
    datadir = settings.run_dir / "faust" / app_id
    datadir.mkdir(parents=True, exist_ok=True)
    return oddsflow_transport.app(
        app_id,
        settings.kafka_bootstrap,
        store=settings.store,
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=topic_partitions,
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


def build_app(
    settings: Settings,
    *,
    limits: Limits | None = None,
    topo: topology.Topology | None = None,
    validate: Validator | None = None,
) -> Engine:
    topo = topo or topology.load(settings=settings)
    validate = validate or record_validator(settings)
    problems = topo.check()
    if problems:
        raise topology.TopologyError("topology.yaml is invalid: " + "; ".join(problems))
    app = faust_app_for(
        settings, f"{settings.topic_prefix}{settings.app_id}", topo.group_partitions("event")
    )
    transport = cast(oddsflow_transport.Transport, app.transport)
    max_record_bytes = transport.settings.max_message_bytes
    topics = {
        key: app.topic(spec.name, partitions=spec.partitions, **RAW)
        for key, spec in topo.topics.items()
    }
    codecs = {
        key: Codec(spec.value_schema, settings.schema_registry_url)
        for key, spec in topo.topics.items()
    }
    # Topics of batches: a handler emits (and is fed) one item at a time (processors.batched).
    batched = batched_topics(topo, settings.schema_registry_url)
    out_codecs = {key: b.item if (b := batched.get(key)) else c for key, c in codecs.items()}

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
        store = Store(_backing(t.data), table=t)
        store.journal = journal
        return store

    stores: dict[str, Any] = {}
    journal = Journal()
    book = Book(
        margin=Decimal(settings.margin),
        method=Method(settings.pricing_method),
        limits=limits or _limits(settings),
    )
    markets = MarketsHandler(
        table("markets"),
        table("event_state"),
        table("open_legs"),
        table("liabilities"),
        book,
        account_partitions=topo.group_partitions("account"),
        quota_currency=settings.currency,
        quota_share_ppm=settings.quota_share_ppm,
    )
    # The worker's read-only view of every published market: the wallet decides against it.
    view = MarketView(settings)
    wallet = WalletHandler(
        table("wallets"),
        table("bets"),
        book.limits,
        view=view,
        quotas=table("quotas"),
        account_partitions=topo.group_partitions("account"),
        view_age_ms_max_in_play=settings.view_age_ms_max_in_play,
    )
    # Provider-settled markets (UOF): the certainty policy is the adapter's setting.
    provider = ProviderHandler(markets, table("provider_markets"), UofSettings().certainty_policy)
    engine = Engine(app, topo, topics, codecs, markets, wallet, view)
    transport.recover_tables(
        {
            name: oddsflow_transport.RecoveredTable(
                t,
                frozenset(
                    topo.topic(k).name for k in topo.copartition_groups[topo.tables[name]["group"]]
                ),
            )
            for name, t in stores.items()
        }
    )

    # Each agent's inputs are topology.yaml's; the handler for each is processors.routes'.
    wrong = mismatches(topo.agents)
    if wrong:
        raise topology.TopologyError("agents disagree with the code: " + "; ".join(wrong))
    handler_objects = {"markets": markets, "wallet": wallet, "provider": provider}
    agent_handlers: dict[str, dict[str, Any]] = {
        agent: {
            key: getattr(handler_objects[obj], method)
            for key, (obj, method) in ROUTES[agent].items()
        }
        for agent in ROUTES
    }

    def agent_topic(agent: str) -> Any:
        inputs = topo.agents[agent]["inputs"]
        return app.topic(*(topo.topic(k).name for k in inputs), **RAW)

    name_to_key = {spec.name: key for key, spec in topo.topics.items()}
    topic_names = {key: spec.name for key, spec in topo.topics.items()}
    batch_max = settings.agent_batch_max
    batch_within_s = settings.agent_batch_within_ms / 1000
    batch_budget_s = settings.agent_batch_budget_ms / 1000

    def validate_and_return(key: str, record: dict[str, Any]) -> dict[str, Any]:
        validate(key, record)
        return record

    def dead_letter_record(
        event: Any, error: Exception, stage: str, item: bytes | None = None
    ) -> tuple[Any, ...]:
        """A dead letter for ``event`` (or ``item``, one record of its batch): its topic,
        partition and offset, the reason and a bounded excerpt of its key and value (a dead
        letter is never too large to send)."""
        msg = event.message
        metrics.DEAD_LETTERS.labels(stage, type(error).__name__).inc()
        log.warning("dead letter from %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, error)
        key = event.key if isinstance(event.key, bytes) else None
        value = (
            item if item is not None else event.value if isinstance(event.value, bytes) else None
        )
        reason = str(error) or type(error).__name__
        if value is not None and len(value) > DEAD_LETTER_EXCERPT_BYTES:
            reason += f" (value: the first {DEAD_LETTER_EXCERPT_BYTES} of {len(value)} bytes)"
            value = value[:DEAD_LETTER_EXCERPT_BYTES]
        if key is not None and len(key) > DEAD_LETTER_KEY_BYTES:
            reason += f" (key: the first {DEAD_LETTER_KEY_BYTES} of {len(key)} bytes)"
            key = key[:DEAD_LETTER_KEY_BYTES]
        if len(reason) > DEAD_LETTER_ERROR_CHARS:
            reason = reason[: DEAD_LETTER_ERROR_CHARS - 1] + "…"
        encoded = codecs["dead_letters"].encode(
            {
                "topic": msg.topic,
                "partition": msg.partition,
                "offset": msg.offset,
                "key": key,
                "value": value,
                "error": reason,
                "error_type": type(error).__name__,
                "stage": stage,
                "failed_at": now_ms(),
            }
        )
        return (
            topic_names["dead_letters"],
            msg.topic.encode()[:DEAD_LETTER_KEY_BYTES],
            encoded,
            None,
        )

    # Counted per batch, then added to the labelled counters once per batch: each
    # prometheus_client increment takes a lock, which cost ~6 % of a settlement burst's time
    # counted per leg (py-spy, 2026-12-02).
    counters: dict[tuple[Any, str, str], Any] = {}

    def count_batch(agent: str, n_in: dict[str, int], n_out: dict[str, int]) -> None:
        """Add (and clear) a batch's counts of events in and out per topic."""
        for family, counts in ((metrics.EVENTS_IN, n_in), (metrics.EVENTS_OUT, n_out)):
            for key, n in counts.items():
                c = counters.get((family, agent, key))
                if c is None:
                    c = counters[(family, agent, key)] = family.labels(agent, key)
                c.inc(n)
            counts.clear()

    framers = {topic_names[k]: b.frame for k, b in batched.items()}

    async def handle_batch(
        events: list[Any],
        handlers: dict[str, Any],
        agent: str,
        *,
        conflate_prices: bool = False,
        **kw: Any,
    ) -> None:
        """Run each event through its handler, then emit the batch's outputs at once.

        A handler that fails rolls back its own table writes and sends its input to the
        dead-letter topic; the rest of the batch is unaffected. So does an event whose
        outputs or table writes include a record larger than the broker takes: it is
        caught here, before anything is sent. Table writes are coalesced per key (the
        changelog is compacted: only a key's last value counts).

        A batch that has run for ``agent_batch_budget_ms`` emits what it has done so far
        and lets the commit run before it goes on: the event loop must not stay blocked
        for long (a 500-leg settlement message is one event), and under exactly_once a
        transaction left open longer than the transaction timeout is aborted by the broker.

        ``conflate_prices``: a market's price updates superseded by a later one in the batch
        are counted, not priced (``processors.conflation``).

        A message of a topic of batches (``processors.batched``) is decoded once and each of
        its items handled as an event of its own, as above; outputs to such a topic go out
        framed per partition by the batcher.
        """
        started = slice_started = time.perf_counter()
        units: list[Unit] = []
        spans: list[tuple[int, int]] = []
        if conflate_prices:
            units, spans = expand_units(
                events,
                lambda e: name_to_key[e.message.topic],
                lambda k, e: batched[k].items(e.value) if k in batched else None,
            )
            conflation = plan_conflation(
                units,
                lambda u: u.topic,
                lambda k, u: validate_and_return(
                    k, codecs[k].decode(u.event.value) if u.record is None else u.record
                ),
            )
        else:
            conflation = Plan()
        batcher = PartitionBatcher(
            framers,
            items_per_message_max=ITEMS_PER_MESSAGE_MAX,
            message_bytes_max=max_record_bytes // 2,  # room for the key and the framing
        )
        changelog: dict[tuple[str, str], tuple[int, bytes | None]] = {}
        n_in: dict[str, int] = {}
        n_out: dict[str, int] = {}

        def process(event: Any, index: int) -> None:
            key = name_to_key[event.message.topic]
            topic = batched.get(key)
            # The event's units in the conflation plan (none without conflation).
            first, end = spans[index] if spans else UNDECODABLE
            if topic is None:
                n_in[key] = n_in.get(key, 0) + 1
                if first in conflation.skip:
                    return
                if not run(event, key, conflation.decoded.get(first)):
                    refused(first)
                return
            if first >= 0:
                items = [cast(dict[str, Any], units[u].record) for u in range(first, end)]
            else:
                try:
                    items = topic.items(event.value)
                except CodecError as exc:
                    n_in[key] = n_in.get(key, 0) + 1
                    batcher.add(*dead_letter_record(event, exc, agent))
                    return
            n_in[key] = n_in.get(key, 0) + len(items)  # a batch's events are its items
            for j, item in enumerate(items):  # each its own event: writes, outputs, dead letter
                u = first + j if first >= 0 else -1
                if u in conflation.skip:
                    continue
                planned = conflation.decoded.get(u)
                if not run(event, key, planned or item, topic.item, planned is not None):
                    refused(u)

        def run(
            event: Any,
            key: str,
            record: dict[str, Any] | None,
            item: Codec | None = None,
            validated: bool = False,
        ) -> bool:
            """Handle one record of ``event`` (``record`` if decoded already, one item of a
            batch if ``item`` is its codec; ``validated``: the conflation plan validated it);
            False if it was dead-lettered."""
            journal.writes.clear()
            try:
                if record is None:
                    record = codecs[key].decode(event.value)
                    validate(key, record)
                elif item is not None and not validated:
                    validate(key, record)
                fx = Effects()
                handlers[key](record, fx, now_ms(), **kw)
                outputs = [
                    (
                        topic_names[o.topic],
                        o.key.encode(),
                        out_codecs[o.topic].encode(o.value),
                        o.topic,
                    )
                    for o in fx.out
                ]
                _check_sizes(journal, outputs, max_record_bytes)
            except Exception as exc:
                journal.rollback()
                if not isinstance(exc, CodecError | InputError | ValidationError | OversizedOutput):
                    # a bug or an input no rule foresaw: park it, keep running
                    log.exception("unexpected error in %s", agent)
                batcher.add(*dead_letter_record(event, exc, agent, _item_bytes(item, record)))
                return False
            partition = event.message.partition
            for store, k, value, _ in journal.writes:
                changelog[(store.table.name, k)] = (partition, value)
            journal.writes = []
            for name, k_bytes, value_bytes, topic_key in outputs:
                if topic_key in batched:
                    batcher.add_item(name, k_bytes, value_bytes)
                else:
                    batcher.add(name, k_bytes, value_bytes, None)
                n_out[topic_key] = n_out.get(topic_key, 0) + 1
            return True

        async def flush(done: list[Any]) -> None:
            # Counted before the emit's wait for the commit's lock, as when each event was
            # counted as it was handled: another agent's event that ran meanwhile (a decision
            # counted by its handler) is never seen counted before this batch's events.
            count_batch(agent, n_in, n_out)
            await transport.emit(done, batcher, changelog)
            changelog.clear()

        fell_back: list[int] = []

        def refused(index: int) -> None:
            # The kept update of a market was refused: the ones it superseded get their turn,
            # in arrival order, as one by one they would have (the newest valid price wins).
            for j in conflation.superseded_by.get(index, ()):
                fell_back.append(j)
                unit, topic = units[j], batched.get(units[j].topic)
                record = conflation.decoded.get(j, unit.record)  # superseded: validated
                run(unit.event, unit.topic, record, None if topic is None else topic.item, True)

        first = 0
        for i, event in enumerate(events):
            process(event, i)
            if i + 1 < len(events) and time.perf_counter() - slice_started > batch_budget_s:
                await flush(events[first : i + 1])
                first = i + 1
                await transport.make_way_for_commit()  # it flushes while this batch goes on
                slice_started = time.perf_counter()
        await flush(events[first:])
        if conflation.skip:
            metrics.PRICES_CONFLATED.inc(len(conflation.skip) - len(fell_back))
        metrics.PROCESSING_SECONDS.labels(agent).observe(
            (time.perf_counter() - started) / max(1, len(events))
        )
        metrics.AGENT_BATCH_EVENTS.labels(agent).observe(len(events))

    @app.agent(agent_topic("pricing"), name="pricing")
    async def pricing_agent(stream: Any) -> None:
        handlers = agent_handlers["pricing"]
        async for events in stream.take_events(batch_max, within=batch_within_s):
            await handle_batch(
                events, handlers, "pricing", conflate_prices=settings.conflate_prices
            )

    @app.agent(agent_topic("market_check"), name="market_check")
    async def market_check_agent(stream: Any) -> None:
        handlers = agent_handlers["market_check"]
        async for events in stream.take_events(batch_max, within=batch_within_s):
            await handle_batch(events, handlers, "market_check")

    view_lock = asyncio.Lock()

    async def view_caught_up() -> None:
        """Start the market view (once per worker) and wait until it has read everything
        published before it started: no bet is decided against a view still behind."""
        async with view_lock:
            if not view.started:
                await asyncio.to_thread(view.start)
        await view.wait_caught_up()

    @app.agent(agent_topic("bet_delay"), name="bet_delay")
    async def bet_delay_agent(stream: Any) -> None:
        # In-play bet delay: held bets arrive here in hold order; wait until each one is due,
        # then decide it again against the view as it is then.
        handlers = agent_handlers["bet_delay"]
        await view_caught_up()
        async for event in stream.events():
            key = name_to_key[event.message.topic]
            try:
                hold_until = codecs[key].decode(event.value)["hold_until_ms"] or 0
            except CodecError as exc:
                batcher = PartitionBatcher()
                batcher.add(*dead_letter_record(event, exc, "bet_delay"))
                await transport.emit([event], batcher)
                continue
            wait_s = (hold_until - now_ms()) / 1000
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            await handle_batch([event], handlers, "bet_delay")

    @app.agent(agent_topic("wallet"), name="wallet")
    async def wallet_agent(stream: Any) -> None:
        handlers = agent_handlers["wallet"]
        await view_caught_up()  # decide nothing before the view has caught up
        async for events in stream.take_events(batch_max, within=batch_within_s):
            await handle_batch(events, handlers, "wallet")

    @app.task  # type: ignore[untyped-decorator]  # Faust's decorators carry no types
    async def quiet_client_logs() -> None:
        # Faust/aiokafka build debug records on hot paths; nobody reads them at -l warn.
        for name in ("aiokafka", "faust", "mode"):
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))

    @app.timer(5.0)  # type: ignore[untyped-decorator]
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


def _limits(settings: Settings) -> Limits:
    """The book's limits: the domain's defaults, with the liability limits settings override."""
    overrides = {
        name: value
        for name in ("liability_minor_max_selection", "liability_minor_max_market")
        if (value := getattr(settings, name)) is not None
    }
    return Limits(**overrides)


def _item_bytes(item: Codec | None, record: dict[str, Any] | None) -> bytes | None:
    """A batch item for its dead letter, alone in its own schema (None: not an item)."""
    if item is None or record is None:
        return None
    try:
        return item.encode(record)
    except CodecError:
        return None


def _check_sizes(
    journal: Journal, outputs: list[tuple[str, bytes, bytes, str]], max_record_bytes: int
) -> None:
    """Raise OversizedOutput if an output or changelog record of the event being handled
    would exceed the broker's maximum message size (it would fail its send and, before
    this check, the transaction committed without it)."""
    for name, key, value, _ in outputs:
        size = record_bytes(key, value)
        if size > max_record_bytes:
            raise OversizedOutput(
                f"output to {name} would be {size} bytes, over the {max_record_bytes}-byte "
                "maximum message size"
            )
    # A key of n characters is at most 4n bytes in UTF-8: only a write that might be too
    # large has its key encoded to be measured exactly (this ran for every table write).
    room = max_record_bytes - RECORD_OVERHEAD_BYTES
    for store, k, new_value, _ in journal.writes:
        if 4 * len(k) + len(new_value or b"") <= room:
            continue
        size = record_bytes(k.encode(), new_value)
        if size > max_record_bytes:
            table = getattr(store.table, "name", "?")
            raise OversizedOutput(
                f"table {table} value for {k[:100]!r} would be {size} bytes, over the "
                f"{max_record_bytes}-byte maximum message size (state not changed)"
            )


def _backing(data: Any) -> Any:
    """The mapping a Store reads and writes for a table whose storage is ``data``: for Faust's
    in-memory store its own dict, which that store's every operation (its mapping methods, a
    changelog recovery, dropping a revoked partition's keys) reads and writes too, so both
    always see the same entries. Why: the store's mapping methods are Python frames over that
    dict (``Mapping.get`` -> ``FastUserDict.__getitem__`` -> the dict), and a settlement burst
    reads a bet record, an open leg and a wallet per settled bet (about 7 % of the worker's
    main thread in its profile). Any other store is used through its mapping methods."""
    if isinstance(data, MemoryStore) and type(data.data) is dict:
        return data.data
    return data


def run_worker(settings: Settings, loglevel: str = "warn") -> None:
    """Run one worker process until it is stopped (SIGTERM/SIGINT)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep working without it
        pass
    topology.apply(topology.load(settings=settings), settings.kafka_bootstrap)
    metrics.serve(settings.metrics_port)
    metrics.watch_gc()
    engine = build_app(settings)
    worker = faust.Worker(engine.app, loglevel=loglevel, quiet=True)
    tune_gc(settings.gc_gen0_threshold)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        _exit_past_stuck_threads(exc)
        raise


def tune_gc(gen0_threshold: int) -> None:
    """Keep what is alive now out of every later collection, and collect the youngest
    generation less often (``Settings.gc_gen0_threshold`` says why); 0 changes nothing."""
    if gen0_threshold <= 0:
        return
    gc.collect()  # what start-up left as garbage is freed, not frozen
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


# The event loop's default executor (table recovery runs in it) names its idle worker threads
# so; the interpreter's exit stops them itself (concurrent.futures registers that at exit).
# Counted as stuck, they made every normal stop log an error and skip the normal exit
# (measured: "uvloop_0" in 68 worker logs of one test run).
_LOOP_EXECUTOR_THREADS = ("uvloop_", "asyncio_")


def _exit_past_stuck_threads(exc: SystemExit) -> None:
    """A stopped worker exits even if a thread of Faust's did not stop.

    Faust's consumer runs in a non-daemon thread. Measured (the broker SIGKILL test in CI,
    2026-12-01): after a fenced transaction crashed the worker, that thread did not stop
    within mode's 60 s, and the interpreter then waited on it forever, so the process stayed
    alive, decided nothing and was never restarted by its supervisor. The worker's state is
    all in Kafka (committed or aborted), so nothing is lost by leaving the thread behind."""
    stuck = [
        t.name
        for t in threading.enumerate()
        if t is not threading.main_thread()
        and t.is_alive()
        and not t.daemon
        and not t.name.startswith(_LOOP_EXECUTOR_THREADS)
    ]
    if not stuck:
        return
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    log.error("worker stopped with threads still running (%s): exiting", ", ".join(stuck))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
