"""Postgres ledger: what the database itself enforces, the finance queries, and the sink's
behaviour on bad input and an unavailable database."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from prometheus_client import REGISTRY
from psycopg import errors
from sinks_testdata import BASE_MS, make_book, produce

from oddsflow.kafka import EventProducer
from oddsflow.sinks import postgres as pg
from oddsflow.sinks.cli import ledger_summary

pytestmark = pytest.mark.integration


def _tx(
    conn: psycopg.Connection, tx_id: str, legs: list[tuple[str, int]], at: datetime | None = None
) -> None:
    at = at or datetime(2026, 1, 1, tzinfo=UTC)
    conn.execute(
        "INSERT INTO transactions (tx_id, kind, created_at) VALUES (%s, 'deposit', %s)", (tx_id, at)
    )
    for n, (acc, amount) in enumerate(legs):
        conn.execute(
            "INSERT INTO accounts (account, currency) VALUES (%s, 'GBP') ON CONFLICT DO NOTHING",
            (acc,),
        )
        conn.execute(
            "INSERT INTO postings (posting_id, tx_id, account, amount_minor, currency, created_at)"
            " VALUES (%s, %s, %s, %s, 'GBP', %s)",
            (f"{tx_id}:{n}", tx_id, acc, amount, at),
        )


def test_migrate_is_idempotent_and_versioned(pg_dsn: str) -> None:
    assert pg.migrate(pg_dsn) == []
    with psycopg.connect(pg_dsn) as conn:
        versions = [
            v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        ]
    assert versions == [m.version for m in pg.migrations()]


def test_database_rejects_unbalanced_and_edits(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        _tx(conn, "ok", [("cash:deposits", -500), ("player:a:available", 500)])
        conn.commit()
        # unbalanced: accepted statement by statement, refused at COMMIT by the deferred trigger
        _tx(conn, "bad", [("cash:deposits", -500), ("player:a:available", 499)])
        with pytest.raises(errors.CheckViolation, match="unbalanced"):
            conn.commit()
        with pytest.raises(errors.RestrictViolation):
            conn.execute("UPDATE postings SET amount_minor = 1 WHERE posting_id = 'ok:0'")
        conn.rollback()
        with pytest.raises(errors.RestrictViolation):
            conn.execute("DELETE FROM postings WHERE posting_id = 'ok:0'")
        conn.rollback()
        with pytest.raises(errors.RestrictViolation):
            conn.execute("TRUNCATE postings CASCADE")
        conn.rollback()
        with pytest.raises(errors.UniqueViolation):
            conn.execute("INSERT INTO postings SELECT * FROM postings WHERE posting_id = 'ok:0'")
        conn.rollback()
        with pytest.raises(errors.CheckViolation):
            conn.execute("INSERT INTO accounts (account, currency) VALUES ('x', 'pounds')")
        conn.rollback()
        (n,) = conn.execute("SELECT count(*) FROM postings").fetchone()
        assert n == 2


def test_finance_queries(sink_settings, pg_dsn: str) -> None:
    book = make_book(accounts=3, bets=30)
    produce(sink_settings, book, keys=("ledger", "bet_decisions", "settlements"))
    c = pg.run_postgres_sink(sink_settings, max_idle_s=1.0)
    assert c.flushed_messages == sum(
        len(book.messages[k]) for k in ("ledger", "bet_decisions", "settlements")
    )

    # trial balance: every account, sums to zero, equals the book
    tb = pg.trial_balance(pg_dsn)
    assert {a: b for a, _, b in tb} == {
        a: b for a, b in book.balances.items() if b != 0 or a in {x for x, _, _ in tb}
    }
    assert sum(b for _, _, b in tb) == 0

    # balance at a point in time: before and after the first deposit (at BASE_MS + 1s)
    first_deposit = datetime.fromtimestamp((BASE_MS + 1000) / 1000, tz=UTC)
    assert (
        pg.balance(pg_dsn, "player:a0:available", first_deposit - timedelta(milliseconds=1)) == {}
    )
    assert pg.balance(pg_dsn, "player:a0:available", first_deposit) == {"GBP": 1_000_000_00}
    assert pg.balance(pg_dsn, "player:a0:available") == {
        "GBP": book.balances["player:a0:available"]
    }
    with pytest.raises(ValueError):
        pg.balance(pg_dsn, "x", datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test

    # a resettled bet's full money trail: reserve, accept, payout, resettle; each tx sums to zero
    trail = pg.money_trail(pg_dsn, "b0")
    assert [r["kind"] for r in trail][::2][:2] == ["reserve", "accept"]
    # the engine's transaction ids carry the account
    assert {r["tx_id"] for r in trail} == {
        "a0|b0:reserve",
        "a0|b0:accept",
        "a0|b0:payout",
        "a0|b0:resettle:1",
    }
    assert pg.money_trail(pg_dsn, "b0", "a0") == trail
    assert sum(r["amount_minor"] for r in trail) == 0
    with psycopg.connect(pg_dsn) as conn:
        state = dict(conn.execute("SELECT state, count(*) FROM bets GROUP BY state").fetchall())
    assert state.get("resettled", 0) == book.bets_resettled
    assert state.get("settled", 0) == book.bets_settled - book.bets_resettled
    assert state.get("rejected", 0) == book.bets_rejected

    # reconciliation: the engine's wallets agree, except the one we tamper with
    wallets = {a: b for a, b in book.balances.items() if a.startswith("player:")}
    assert pg.reconcile(pg_dsn, wallets) == []
    wallets["player:a1:available"] += 7
    wallets["player:zz:available"] = 5
    assert pg.reconcile(pg_dsn, wallets) == [
        pg.Mismatch(
            "player:a1:available",
            book.balances["player:a1:available"] + 7,
            book.balances["player:a1:available"],
            7,
        ),
        pg.Mismatch("player:zz:available", 5, 0, 5),
    ]
    summary = ledger_summary(pg_dsn)
    assert summary["trial_balance_total_minor"] == 0
    assert summary["ggr_minor"] == book.ggr_minor
    assert summary["postings"] == book.postings
    assert {k: v["transactions"] for k, v in summary["kinds"].items()} == dict(book.kinds)
    json.dumps(summary)


def test_poison_and_undecodable_messages_do_not_stop_the_sink(sink_settings, pg_dsn: str) -> None:
    book = make_book(accounts=2, bets=10)
    p = EventProducer(sink_settings)
    # an unbalanced transaction in the middle of good ones: refused by the DB, kept in sink_rejects
    msgs = book.messages["ledger"]
    for mk, rec in msgs[:5]:
        p.send("ledger", mk, rec)
    p.send(
        "ledger",
        "a0",
        {
            "tx_id": "evil",
            "kind": "deposit",
            "bet_id": None,
            "account_id": "a0",
            "postings": [
                {
                    "posting_id": "evil:0",
                    "account": "player:a0:available",
                    "amount_minor": 1_000_000,
                    "currency": "GBP",
                }
            ],
            "created_at": BASE_MS,
        },
    )
    p.send_raw("ledger", "a0", b"\x00garbage")
    for mk, rec in msgs[5:]:
        p.send("ledger", mk, rec)
    p.flush()
    c = pg.run_postgres_sink(sink_settings, max_idle_s=1.0)
    assert c.undecodable == 1
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*), sum(abs(amount_minor)) FROM postings").fetchone() == (
            book.postings,
            sum(abs(m) for _, r in msgs for m in [p_["amount_minor"] for p_ in r["postings"]]),
        )
        rejects = conn.execute("SELECT error FROM sink_rejects").fetchall()
        assert len(rejects) == 1 and "unbalanced" in rejects[0][0]
        (total,) = conn.execute("SELECT sum(total_minor) FROM trial_balance_totals").fetchone()
        assert total == 0
        # offsets cover every message, including the skipped ones
        (next_total,) = conn.execute("SELECT sum(next_offset) FROM consumed_offsets").fetchone()
        assert next_total == len(msgs) + 2


class _FlakyProxy:
    """TCP proxy to Postgres that can refuse service, to play 'database down'."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.up = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            server = socket.create_connection(self.target)
            with self._lock:
                self._socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def set_up(self, up: bool) -> None:
        self.up = up
        if not up:
            with self._lock:
                for s in self._socks:
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                self._socks.clear()

    def close(self) -> None:
        self.set_up(False)
        self.listener.close()


def test_postgres_down_then_back(sink_settings, pg_dsn: str) -> None:
    s = sink_settings
    proxy = _FlakyProxy((s.postgres_host, s.postgres_port))
    dsn = pg_dsn.replace(f"port={s.postgres_port}", f"port={proxy.port}")
    flaky = s.model_copy(update={"postgres_dsn": dsn})
    book = make_book(accounts=3, bets=60)
    half = len(book.messages["ledger"]) // 2
    p = EventProducer(s)
    for mk, rec in book.messages["ledger"][:half]:
        p.send("ledger", mk, rec)
    p.flush()
    stop = threading.Event()
    result: list[object] = []
    t = threading.Thread(
        target=lambda: result.append(pg.run_postgres_sink(flaky, stop_event=stop)), daemon=True
    )
    t.start()
    try:
        time.sleep(1.5)  # down at startup: the sink keeps retrying
        proxy.set_up(True)

        def count() -> int:
            with psycopg.connect(pg_dsn) as conn:
                return conn.execute("SELECT count(*) FROM transactions").fetchone()[0]

        _wait(lambda: count() == half, 30)
        proxy.set_up(False)  # down mid-stream: connections cut, new messages arrive
        for mk, rec in book.messages["ledger"][half:]:
            p.send("ledger", mk, rec)
        p.flush()
        time.sleep(1.5)
        assert count() == half
        proxy.set_up(True)
        _wait(lambda: count() == len(book.messages["ledger"]), 30)
    finally:
        stop.set()
        t.join(20)
        proxy.close()
    assert (REGISTRY.get_sample_value("oddsflow_sink_retries_total", {"sink": "postgres"}) or 0) > 0
    summary = ledger_summary(pg_dsn)
    assert summary["postings"] == book.postings and summary["trial_balance_total_minor"] == 0


def _wait(pred, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")
