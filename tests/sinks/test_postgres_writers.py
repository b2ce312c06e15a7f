"""The Postgres sink's fast path: batches split by partition across parallel writers, COPY text
built without psycopg's per-value formatting, and the consumer writing one batch while it
decodes the next. Each keeps the guarantees: per-partition atomicity of rows and offsets,
poison isolation, idempotent retries, exact values."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from sinks_testdata import BASE_MS, make_book, produce

from oddsflow.sinks import postgres as pg
from oddsflow.sinks.kafka_batch import Batch, BatchConsumer, Record, SinkConfig, _batch_of

TOPIC = "t.ledger.transactions"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _tx(tx_id: str, account: str, amount: int = 100, **extra: Any) -> dict[str, Any]:
    v: dict[str, Any] = {
        "tx_id": tx_id,
        "kind": "reserve",
        "bet_id": tx_id,
        "account_id": account,
        "postings": [
            {
                "posting_id": f"{tx_id}:0",
                "account": f"player:{account}:available",
                "amount_minor": -amount,
                "currency": "GBP",
            },
            {
                "posting_id": f"{tx_id}:1",
                "account": f"player:{account}:reserved",
                "amount_minor": amount,
                "currency": "GBP",
            },
        ],
        "created_at": BASE_MS,
    }
    v.update(extra)
    return v


def _ledger_batch(n: int, partitions: int = 4, tag: str = "x") -> list[Record]:
    offsets = Counter[int]()
    out = []
    for k in range(n):
        p = k % partitions
        out.append(Record("ledger", TOPIC, p, offsets[p], _tx(f"{tag}{k}", f"a{k % 50}"), b"raw"))
        offsets[p] += 1
    return out


def test_split_by_partition_keeps_partitions_whole() -> None:
    records = _ledger_batch(1000, partitions=5)
    records += [
        Record("bet_decisions", "t.bets.decisions", 2, 7, {}, b""),
        Record("settlements", "t.bets.settlements", 4, 3, {}, b""),
    ]
    batch = _batch_of(records)
    # an undecodable message skipped at the end of partition 6 only shows in the offsets
    offsets = {**batch.next_offsets, (TOPIC, 6): 12}
    batch = Batch(batch.records, offsets)
    parts = pg.split_by_partition(batch, 2)
    assert len(parts) == 2
    seen: set[int] = set()
    for part in parts:
        partitions = {r.partition for r in part.records} | {p for _, p in part.next_offsets}
        assert not partitions & seen  # disjoint
        seen |= partitions
        # the offsets of exactly its own partitions, of every topic
        assert part.next_offsets == {tp: o for tp, o in offsets.items() if tp[1] in partitions}
        # records in their original order
        assert list(part.records) == [r for r in records if r.partition in partitions]
    assert sorted(r.offset for p in parts for r in p.records) == sorted(r.offset for r in records)
    assert abs(len(parts[0].records) - len(parts[1].records)) <= 200  # balanced by size
    assert pg.split_by_partition(batch, 1) == [batch]
    one = _batch_of([r for r in records if r.partition == 3])
    assert pg.split_by_partition(one, 2) == [one]


@pytest.mark.integration
def test_parallel_writers_isolate_poison_and_are_idempotent(pg_dsn: str) -> None:
    records = _ledger_batch(3000, partitions=4)
    # a poisoned transaction (unbalanced) and one the schema refuses (bad currency), in
    # different partitions, so each writer has to bisect its own part
    bad = {1234: _tx("x1234", "a34", amount=100), 2001: _tx("x2001", "a1")}
    bad[1234]["postings"][1]["amount_minor"] = 99
    bad[2001]["postings"][0]["currency"] = "pounds"
    bad[2001]["postings"][1]["currency"] = "pounds"
    for k, v in bad.items():
        r = records[k]
        records[k] = Record(r.key, r.topic, r.partition, r.offset, v, b"poison")
    batch = _batch_of(records)
    batch = Batch(batch.records, {**batch.next_offsets, (TOPIC, 1): 760})  # a skipped tail
    assert {r.partition for r in records} == {0, 1, 2, 3}
    assert len(pg.split_by_partition(batch, 2)) == 2

    store = pg.PostgresLedgerStore(pg_dsn, "g", writers=2)
    try:
        store.flush(batch)
        assert store.rejected == 2
        store.flush(batch)  # a retried batch changes nothing (the rejects are kept once)
    finally:
        store.close()
    with psycopg.connect(pg_dsn) as conn:
        q = lambda sql: conn.execute(sql).fetchall()  # noqa: E731
        assert q("SELECT count(*), sum(amount_minor) FROM postings") == [(2 * 2998, 0)]
        assert q("SELECT count(*) FROM transactions") == [(2998,)]
        assert sorted(q('SELECT partition, "offset", value FROM sink_rejects')) == sorted(
            (records[k].partition, records[k].offset, b"poison") for k in bad
        )
        assert dict(
            ((t, p), o)
            for t, p, o in q("SELECT topic, partition, next_offset FROM consumed_offsets")
        ) == {(TOPIC, 0): 750, (TOPIC, 1): 760, (TOPIC, 2): 750, (TOPIC, 3): 750}
        # rows are traceable to their Kafka record
        assert q(
            "SELECT src_topic, src_partition, src_offset FROM transactions WHERE tx_id = 'x2999'"
        ) == [(TOPIC, 3, 749)]
        assert q("SELECT count(*) FROM accounts") == [(100,)]
        assert q("SELECT count(*) FROM ledger_unbalanced") == [(0,)]


@pytest.mark.integration
def test_copy_text_round_trips_any_value(pg_dsn: str) -> None:
    """Values with the characters COPY text treats specially come back exactly, whichever of the
    fast or the escaping path formatted them."""
    nasty = ["tab\there", "new\nline", "cr\rret", "back\\slash", "\\N", "\\", "é☃ ok", "a,b"]
    records = [
        Record(
            "ledger",
            TOPIC,
            0,
            i,
            _tx(
                f"{s}#{i}",
                f"{s}-acct",
                amount=10**15 + i,  # large minor amounts, exact integers
                bet_id=None if i % 2 else s,
                account_id=None if i % 3 == 0 else s,
                created_at=BASE_MS + i,
            ),
            b"",
        )
        for i, s in enumerate(nasty)
    ]
    records.append(Record("ledger", TOPIC, 0, len(nasty), _tx("plain", "plain"), b""))
    store = pg.PostgresLedgerStore(pg_dsn, "g")
    try:
        store.flush(_batch_of(records))
    finally:
        store.close()
    with psycopg.connect(pg_dsn) as conn:
        txs = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT tx_id, bet_id, account_id, created_at, src_offset FROM transactions"
            )
        }
        postings = {
            r[0]: r[1:]
            for r in conn.execute("SELECT posting_id, tx_id, account, amount_minor FROM postings")
        }
        accounts = {a for (a,) in conn.execute("SELECT account FROM accounts")}
    assert len(txs) == len(records) and len(postings) == 2 * len(records)
    for r in records:
        v = r.value
        bet_id, account_id, created_at, src_offset = txs[v["tx_id"]]
        assert (bet_id, account_id, src_offset) == (v["bet_id"], v["account_id"], r.offset)
        assert created_at == EPOCH + timedelta(milliseconds=v["created_at"])
        for p in v["postings"]:
            assert postings[p["posting_id"]] == (v["tx_id"], p["account"], p["amount_minor"])
            assert p["account"] in accounts


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01 00:00:00.000+00"),
        (1, "1970-01-01 00:00:00.001+00"),
        (-1, "1969-12-31 23:59:59.999+00"),
        (BASE_MS + 59_999, "2026-01-01 00:00:59.999+00"),
        (253_402_300_799_999, "9999-12-31 23:59:59.999+00"),
        (-62_135_596_800_000, "0001-01-01 00:00:00.000+00"),
    ],
)
def test_epoch_ms_as_timestamptz_text(ms: int, text: str) -> None:
    assert pg._ts_text(ms) == text


@given(st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999))
def test_timestamptz_text_is_exact_to_the_millisecond(ms: int) -> None:
    expected = EPOCH + timedelta(milliseconds=ms)
    assert datetime.strptime(pg._ts_text(ms) + "00", "%Y-%m-%d %H:%M:%S.%f%z") == expected


@pytest.mark.integration
def test_fresh_rows_take_the_fast_path_and_a_redelivery_the_merge(pg_dsn: str) -> None:
    """A batch whose rows are all new is COPYed straight in; one that overlaps rows already
    written (a message delivered twice) falls back to the merge, which skips exactly those."""
    records = _ledger_batch(300, partitions=1)

    def fallbacks() -> float:
        name = "oddsflow_sink_merge_fallbacks_total"
        return REGISTRY.get_sample_value(name, {"sink": pg.SINK_NAME}) or 0.0

    store = pg.PostgresLedgerStore(pg_dsn, "g", writers=1)
    try:
        before = fallbacks()
        store.flush(_batch_of(records[:200]))
        assert fallbacks() == before
        store.flush(_batch_of(records[100:]))  # 100 already there, 100 new
        assert fallbacks() == before + 1
        store.flush(_batch_of(records[:300]))  # all already there
        assert fallbacks() == before + 2
    finally:
        store.close()
    with psycopg.connect(pg_dsn) as conn:
        q = lambda sql: conn.execute(sql).fetchall()  # noqa: E731
        assert q("SELECT count(*), sum(amount_minor) FROM postings") == [(600, 0)]
        assert q("SELECT count(*), min(src_offset), max(src_offset) FROM transactions") == [
            (300, 0, 299)
        ]
        assert q("SELECT next_offset FROM consumed_offsets") == [(300,)]


@pytest.mark.integration
def test_a_time_postgres_cannot_hold_is_rejected_not_fatal(pg_dsn: str) -> None:
    records = _ledger_batch(20, partitions=1)
    bad = _tx("x7", "a7", created_at=10**17)  # ~ year 3,170,000
    records[7] = Record("ledger", TOPIC, 0, 7, bad, b"far future")
    store = pg.PostgresLedgerStore(pg_dsn, "g", writers=1)
    try:
        store.flush(_batch_of(records))
        assert store.rejected == 1
    finally:
        store.close()
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM transactions").fetchone() == (19,)
        assert conn.execute('SELECT "offset", value FROM sink_rejects').fetchall() == [
            (7, b"far future")
        ]


@pytest.mark.integration
@pytest.mark.parametrize("pipeline", [True, False])
def test_consumer_writes_batches_one_at_a_time_in_order(sink_settings, pipeline: bool) -> None:
    """With the pipeline on, a batch is consumed while the previous one is written, but the
    writes themselves never overlap, come in Kafka order, and flushed_messages counts only
    written batches."""
    book = make_book(accounts=6, bets=150)
    n = produce(sink_settings, book, keys=("ledger",))
    active = 0
    overlaps = 0
    seen: dict[tuple[str, int], int] = {}
    out_of_order = 0
    lock = threading.Lock()

    def flush(batch: Batch) -> None:
        nonlocal active, overlaps, out_of_order
        with lock:
            active += 1
            overlaps += active > 1
        for r in batch.records:
            tp = (r.topic, r.partition)
            out_of_order += r.offset < seen.get(tp, -1)
            seen[tp] = r.offset
        time.sleep(0.05)  # a slow store: the consumer gets ahead while this runs
        with lock:
            active -= 1

    cfg = SinkConfig(name="test", topic_keys=("ledger",), batch_size_max=50, pipeline=pipeline)
    consumer = BatchConsumer(sink_settings, cfg, load_offsets=lambda tps: {}, flush=flush)
    consumer.run(max_idle_s=1.0)
    assert consumer.flushed_messages == n
    assert overlaps == 0 and out_of_order == 0


@pytest.mark.integration
def test_consumer_surfaces_a_store_bug(sink_settings) -> None:
    book = make_book(accounts=2, bets=5)
    produce(sink_settings, book, keys=("ledger",))
    calls = []

    def flush(batch: Batch) -> None:
        calls.append(len(batch.records))
        raise ZeroDivisionError("a bug in the store, not an outage")

    cfg = SinkConfig(name="test", topic_keys=("ledger",), batch_size_max=3)
    consumer = BatchConsumer(sink_settings, cfg, load_offsets=lambda tps: {}, flush=flush)
    with pytest.raises(ZeroDivisionError):
        consumer.run(max_idle_s=5.0)
    assert len(calls) == 1 and consumer.flushed_messages == 0
