"""The ``sinks`` scenario: ledger transactions into Postgres (one and two sink processes) and
ClickHouse (embedded chdb, and a server when ``ODDSFLOW_CLICKHOUSE_URL`` is set)."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from oddsflow.bench import harness as h
from oddsflow.bench.scenarios.common import BenchError, Ctx, summarize, tname
from oddsflow.bench.stats import rate
from oddsflow.codec import Codec
from oddsflow.domain import ledger
from oddsflow.settings import Settings


def _ledger_records(n: int, tag: str) -> list[tuple[str, dict[str, Any]]]:
    from oddsflow.processors.wallet import tx_record

    out = []
    t = int(h.now_ms())
    for k in range(n):
        acct = f"a{k % 1000}"
        out.append((acct, tx_record(ledger.reserve_stake(f"{tag}-{k}", acct, 100, "GBP"), acct, t)))
    return out


def _produce_ledger(s: Settings, n: int) -> int:
    recs = _ledger_records(n, uuid.uuid4().hex[:8])
    prod = h.LoadProducer(s, {"linger.ms": 20})
    # One transaction per message, as before ledger.transactions carried batches: the sink's
    # rate is measured from its second flushed batch on, and the worker's framing (500 a
    # message) hands it the whole run in its first batch; one per message is the sink's
    # harder case (a consumer message per transaction).
    prod.send_records(Codec("ledger_transaction"), tname(s, "ledger"), recs)
    return sum(len(r["postings"]) for _, r in recs)


def _track_progress(
    progress: Callable[[], int], n: int, alive: Callable[[], bool], deadline: float
) -> tuple[tuple[float, int] | None, float | None]:
    """Poll ``progress`` every 10 ms until it reaches ``n``, ``alive()`` turns false or the
    ``deadline`` (monotonic) passes. Returns the time and count of the first progress seen and
    the time ``n`` was reached, each None if it never happened."""
    first: tuple[float, int] | None = None
    while time.monotonic() < deadline and alive():
        c = progress()
        if c > 0 and first is None:
            first = (time.monotonic(), c)
        if c >= n:
            return first, time.monotonic()
        time.sleep(0.01)
    return first, None


def _flushed(holder: dict[str, Any]) -> Callable[[], int]:
    """Progress of the sink consumer that ``holder["c"]`` will hold once it has started."""

    def progress() -> int:
        return int(holder["c"].flushed_messages) if "c" in holder else 0

    return progress


def _watch_sink(
    run: Callable[[threading.Event], Any],
    progress: Callable[[], int],
    n: int,
    timeout_s: float = 300,
) -> dict[str, Any]:
    """Run a sink in a thread until it has flushed n messages; the steady rate is taken from its
    first flushed batch (group join excluded) to the last; end-to-end includes the join."""
    stop = threading.Event()
    err: list[BaseException] = []

    def target() -> None:
        try:
            run(stop)
        except BaseException as exc:  # reported, not raised in the thread
            err.append(exc)

    t_start = time.monotonic()
    th = threading.Thread(target=target, daemon=True)
    th.start()
    first, done = _track_progress(progress, n, th.is_alive, t_start + timeout_s)
    stop.set()
    th.join(60)
    if err:
        raise BenchError(f"sink failed: {err[0]!r}")
    if done is None or first is None:
        raise BenchError(f"sink did not catch up: {progress()} of {n} messages")
    steady = done - first[0]
    return {
        "messages": n,
        "end_to_end_s": round(done - t_start, 3),
        "first_batch": first[1],
        "steady_s": round(steady, 3),
        "msgs_per_s": round(rate(n - first[1], steady) or 0, 1) if steady > 0 else None,
    }


def scenario_sinks(ctx: Ctx) -> dict[str, Any]:
    import psycopg

    from oddsflow.sinks import postgres as pg
    from oddsflow.sinks.kafka_batch import BatchConsumer, SinkConfig

    plan = ctx.plan
    out: dict[str, Any] = {}
    dbname = f"bench_{uuid.uuid4().hex[:8]}"
    admin_dsn = ctx.base.model_copy(update={"postgres_db": "postgres"}).pg_dsn
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    try:
        pg_base = ctx.base.model_copy(update={"postgres_db": dbname})
        pg.migrate(pg_base.pg_dsn)
        reps = []
        for i in range(plan.reps + 1):  # the first is the warm-up
            n = plan.sink_n if i else max(1000, plan.sink_n // 10)
            s = h.fresh_settings(pg_base, "k")
            postings = _produce_ledger(s, n)
            holder: dict[str, Any] = {}

            def run(
                stop: threading.Event, s: Settings = s, holder: dict[str, Any] = holder
            ) -> None:
                cfg = SinkConfig(name=pg.SINK_NAME, topic_keys=("ledger",))
                consumer = BatchConsumer(
                    s, cfg, load_offsets=lambda tps: {}, flush=lambda b: None, stop_event=stop
                )
                store = pg.PostgresLedgerStore(s.pg_dsn, consumer.group_id)
                consumer.load_offsets, consumer.flush = store.load_offsets, store.flush
                holder["c"] = consumer
                try:
                    consumer.run()
                finally:
                    store.close()

            r = _watch_sink(run, _flushed(holder), n)
            r["postings"] = postings
            r["postings_per_s"] = (
                round(r["msgs_per_s"] * postings / n, 1) if r["msgs_per_s"] else None
            )
            h.delete_topics(s)
            if i:
                ctx.say(
                    f"  postgres sink rep {i}: {r['msgs_per_s']} tx/s, {r['postings_per_s']} postings/s"
                )
                reps.append(r)
        out["postgres"] = summarize(reps, "msgs_per_s", "postings_per_s")
        reps2 = [_pg_sink_processes(ctx, pg_base, 2, plan.sink_n) for _ in range(plan.reps)]
        out["postgres_two_processes"] = summarize(reps2, "msgs_per_s", "postings_per_s")
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')

    out["clickhouse_chdb"] = _clickhouse(
        ctx,
        ctx.base.model_copy(update={"clickhouse_url": None, "chdb_path": h.tmp_dir("bench-chdb-")}),
    )
    if ctx.base.clickhouse_url:
        out["clickhouse_server"] = _clickhouse(ctx, ctx.base)
    else:
        out["clickhouse_server"] = {"skipped": "ODDSFLOW_CLICKHOUSE_URL not set"}
    return out


def _pg_sink_processes(ctx: Ctx, pg_base: Settings, procs: int, n: int) -> dict[str, Any]:
    """The ledger sink scaled out: ``procs`` sink processes (`python -m oddsflow.sinks.postgres`,
    two writers each) in one consumer group split the topic's partitions, each with its own
    interpreter, so the Python work (decoding, COPY text) runs on both cores. They join first;
    then ``n`` ledger transactions are produced, and the rate is read from the offsets the sinks
    commit with their rows, from the first commit until all ``n`` are written."""
    import psycopg
    from confluent_kafka.admin import AdminClient

    from oddsflow.sinks.kafka_batch import sink_group_id
    from oddsflow.sinks.postgres import SINK_NAME

    s = h.fresh_settings(pg_base, "p")
    group = sink_group_id(s, SINK_NAME)
    sinks = [
        h.Worker(s, ctx.log_dir, f"pgsink{i}", h.POSTGRES_SINK_ARGV).start() for i in range(procs)
    ]
    try:
        admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
        deadline = time.monotonic() + 90
        while True:  # every member joined and the partitions are spread over them
            desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
            if len(desc.members) == procs and str(desc.state).endswith("STABLE"):
                break
            if time.monotonic() > deadline or not all(w.alive() for w in sinks):
                raise BenchError(f"{procs} postgres sinks did not join: {sinks[0].log_tail()}")
            time.sleep(0.2)
        with psycopg.connect(s.pg_dsn, autocommit=True) as conn:

            def committed() -> int:
                row = conn.execute(
                    "SELECT coalesce(sum(next_offset), 0)::bigint FROM consumed_offsets"
                    " WHERE consumer_group = %s",
                    (group,),
                ).fetchone()
                return int(row[0]) if row else 0

            postings = _produce_ledger(s, n)
            first, done = _track_progress(
                committed, n, lambda: all(w.alive() for w in sinks), time.monotonic() + 300
            )
            if done is None or first is None:
                raise BenchError(
                    f"postgres sinks stopped at {committed()} of {n}: {sinks[0].log_tail()}"
                )
        if first[1] >= n:  # everything landed in the first commit: no rate to take
            raise BenchError("sink processes wrote the whole load at once; raise sink_n")
        steady = done - first[0]
        msgs_per_s = round(rate(n - first[1], steady) or 0, 1)
        r = {
            "processes": procs,
            "messages": n,
            "first_commit": first[1],
            "steady_s": round(steady, 3),
            "msgs_per_s": msgs_per_s,
            "postings": postings,
            "postings_per_s": round(msgs_per_s * postings / n, 1),
        }
        ctx.say(
            f"  postgres sink, {procs} processes: {r['msgs_per_s']} tx/s, {r['postings_per_s']} postings/s"
        )
        return r
    finally:
        for w in sinks:
            w.stop()
        h.delete_topics(s)


def _clickhouse(ctx: Ctx, base: Settings) -> dict[str, Any]:
    from oddsflow.sinks import clickhouse as ch
    from oddsflow.sinks.kafka_batch import BatchConsumer, SinkConfig

    reps = []
    for i in range(ctx.plan.reps + 1):
        n = ctx.plan.sink_n if i else max(1000, ctx.plan.sink_n // 10)
        s = h.fresh_settings(base, "c")
        postings = _produce_ledger(s, n)
        holder: dict[str, Any] = {}

        def run(stop: threading.Event, s: Settings = s, holder: dict[str, Any] = holder) -> None:
            with ch.open_backend(s) as sch:
                cfg = SinkConfig(name=ch.SINK_NAME, topic_keys=("ledger",))
                consumer = BatchConsumer(
                    s, cfg, load_offsets=lambda tps: {}, flush=lambda b: None, stop_event=stop
                )
                store = ch.ClickHouseStore(sch, consumer.group_id)
                consumer.load_offsets, consumer.flush = store.load_offsets, store.flush
                holder["c"] = consumer
                consumer.run()

        r = _watch_sink(run, _flushed(holder), n)
        rows_per_msg = sum(len(v) for v in ch.rows_for(_sample_record(s)).values())
        r["rows"] = n * rows_per_msg
        r["rows_per_s"] = round(r["msgs_per_s"] * rows_per_msg, 1) if r["msgs_per_s"] else None
        r["postings"] = postings
        with contextlib.suppress(Exception):
            ch.drop_database(s)
        h.delete_topics(s)
        if i:
            ctx.say(
                f"  clickhouse ({'server' if base.clickhouse_url else 'chdb'}) rep {i}: "
                f"{r['msgs_per_s']} msgs/s, {r['rows_per_s']} rows/s"
            )
            reps.append(r)
    return summarize(reps, "msgs_per_s", "rows_per_s")


def _sample_record(s: Settings) -> Any:
    from oddsflow.sinks.kafka_batch import Record

    _key, rec = _ledger_records(1, "sample")[0]
    return Record("ledger", tname(s, "ledger"), 0, 0, rec, b"")
