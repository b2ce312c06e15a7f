"""Bet ids are scoped to their account and money is per currency (issue 10, items 3 and 6), in
the Postgres projection: two accounts' bets with the same id are two bets, each with its own
decision, settlement history and money trail; a replay changes nothing; migration 0006 keeps
the rows it re-keys; GGR, the trial balance and reconciliation never add two currencies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import typer
from sinks_testdata import make_book, produce, two_accounts_one_bet_id
from typer.testing import CliRunner

from oddsflow.settings import Settings
from oddsflow.sinks import cli
from oddsflow.sinks import postgres as pg
from oddsflow.sinks.kafka_batch import _batch_of

pytestmark = pytest.mark.integration


def _state(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        q = lambda sql: conn.execute(sql).fetchall()  # noqa: E731
        return {
            "bets": q(
                "SELECT account_id, bet_id, accepted, stake_minor, potential_return_minor,"
                " outcome, return_minor, settlement_revision, state FROM bets ORDER BY account_id"
            ),
            "settlements": q(
                "SELECT account_id, bet_id, revision, return_minor, previous_return_minor"
                " FROM bet_settlements ORDER BY account_id, revision"
            ),
            "postings": q("SELECT count(*), sum(amount_minor) FROM postings"),
        }


def test_two_accounts_with_the_same_bet_id_are_two_bets(pg_dsn: str) -> None:
    records = two_accounts_one_bet_id()
    store = pg.PostgresLedgerStore(pg_dsn, "g", writers=1)
    try:
        store.flush(_batch_of(records))
        first = _state(pg_dsn)
        store.flush(_batch_of(records))  # a replay of everything: harmless
        store.flush(_batch_of(records[::-1]))  # and in another order (revisions too)
        assert store.rejected == 0
    finally:
        store.close()
    assert _state(pg_dsn) == first
    assert first["bets"] == [
        ("a1", "b1", True, 10_00, 25_00, "lose", 0, 1, "resettled"),
        ("a2", "b1", True, 3_00, 7_50, "lose", 0, 0, "settled"),
    ]
    assert first["settlements"] == [
        ("a1", "b1", 0, 25_00, 0),
        ("a1", "b1", 1, 0, 25_00),
        ("a2", "b1", 0, 0, 0),
    ]
    assert first["postings"] == [(sum(len(r.value["postings"]) for r in records[:8]), 0)]

    # each account's money trail is its own; by bet id alone the question is refused
    trail_a1 = pg.money_trail(pg_dsn, "b1", "a1")
    assert {r["tx_id"] for r in trail_a1} == {"a1|b1:reserve", "a1|b1:accept", "a1|b1:settle"}
    assert all("a2" not in r["account"] for r in trail_a1)
    assert sum(r["amount_minor"] for r in trail_a1) == 0
    trail_a2 = pg.money_trail(pg_dsn, "b1", "a2")
    assert {r["account"] for r in trail_a2} >= {"player:a2:available", "player:a2:reserved"}
    assert all("a1" not in r["account"] for r in trail_a2)
    with pytest.raises(pg.AmbiguousBetId, match="b1 belongs to several accounts"):
        pg.money_trail(pg_dsn, "b1")
    assert pg.money_trail(pg_dsn, "b1", "a3") == []


def test_cli_trail_names_the_account(
    pg_dsn: str, services: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = pg.PostgresLedgerStore(pg_dsn, "g", writers=1)
    try:
        store.flush(_batch_of(two_accounts_one_bet_id()))
    finally:
        store.close()
    app = _cli(monkeypatch, pg_dsn, services)
    r = CliRunner().invoke(app, ["ledger", "trail", "b1"])
    assert r.exit_code == 2 and "name the account" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["ledger", "trail", "b1", "--account", "a2"])
    assert r.exit_code == 0, r.output
    assert "a2|b1:accept" in r.output and "a1|" not in r.output


def _cli(monkeypatch: pytest.MonkeyPatch, dsn: str, services: Settings) -> typer.Typer:
    settings = services.model_copy(update={"postgres_dsn": dsn})
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    app = typer.Typer()
    cli.register(app)
    return app


def test_copy_text_of_engine_ids_is_plain() -> None:
    """The engine's scoped ids ("a1|b1:reserve") need no COPY escaping: the fast path's text is
    used as built, and it is the same text the escaping path would make."""
    recs = [r for r in two_accounts_one_bet_id() if r.key == "ledger"]
    accounts, txs, postings = pg._ledger_copy(recs)
    assert "a1|b1:reserve\treserve\tb1\ta1\t" in txs
    assert "a1|b1:reserve:1\ta1|b1:reserve\tplayer:a1:available\t-1000\tGBP\t" in postings
    assert pg._is_plain(txs, len(recs), 8, nulls=2)  # the deposits carry no bet id
    rows = [p for r in recs for p in r.value["postings"]]
    assert pg._is_plain(postings, len(rows), 6)
    assert pg._is_plain(accounts, len({p["account"] for p in rows}), 2)
    assert txs == pg._copy_lines(
        (
            v["tx_id"],
            v["kind"],
            v["bet_id"],
            v["account_id"],
            pg._ts_text(v["created_at"]),
            r.topic,
            r.partition,
            r.offset,
        )
        for r in recs
        for v in (r.value,)
    )


# ------------------------------------------------------------------------- migration 0006
@pytest.fixture()
def empty_dsn(pg_dsn: str) -> Iterator[str]:
    """A database with no schema at all (beside the test's migrated one)."""
    name = f"oddsflow_empty_{uuid.uuid4().hex[:10]}"
    admin = pg_dsn.rsplit("dbname=", 1)[0] + "dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_dsn.rsplit("dbname=", 1)[0] + f"dbname={name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migration_0006_keeps_existing_bets(empty_dsn: str) -> None:
    with psycopg.connect(empty_dsn) as conn:  # the schema as it was before 0006, with rows
        conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for m in pg.migrations():
            if m.version < 6:
                conn.execute(m.sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )
        conn.execute(
            "INSERT INTO bets (bet_id, account_id, accepted, stake_minor, currency,"
            " settlement_revision, return_minor, outcome)"
            " VALUES ('b1', 'a1', true, 500, 'GBP', 0, 0, 'lose'), ('b2', 'a1', false, 300, 'GBP',"
            " NULL, NULL, NULL)"
        )
        conn.execute(
            "INSERT INTO bet_settlements (bet_id, revision, account_id, outcome, stake_minor,"
            " return_minor, previous_return_minor, currency, settled_at)"
            " VALUES ('b1', 0, 'a1', 'lose', 500, 0, 0, 'GBP', now())"
        )
        conn.commit()
    applied = pg.migrate(empty_dsn)
    assert "0006_account_scoped_bets" in applied
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute(
            "SELECT account_id, bet_id, stake_minor, state FROM bets ORDER BY bet_id"
        ).fetchall() == [("a1", "b1", 500, "settled"), ("a1", "b2", 300, "rejected")]
        assert conn.execute(
            "SELECT account_id, bet_id, revision FROM bet_settlements"
        ).fetchall() == [("a1", "b1", 0)]
        keys = dict(
            conn.execute(
                "SELECT c.conrelid::regclass::text, pg_get_constraintdef(c.oid) FROM pg_constraint c"
                " WHERE c.contype = 'p' AND c.conrelid::regclass::text IN ('bets', 'bet_settlements')"
            ).fetchall()
        )
        assert keys == {
            "bets": "PRIMARY KEY (account_id, bet_id)",
            "bet_settlements": "PRIMARY KEY (account_id, bet_id, revision)",
        }
        # another account's "b1" now sits beside a1's instead of colliding with it
        conn.execute(
            "INSERT INTO bets (bet_id, account_id, accepted, stake_minor) VALUES ('b1', 'a2', true, 1)"
        )
        conn.execute(
            "INSERT INTO bet_settlements (bet_id, revision, account_id, outcome, stake_minor,"
            " return_minor, previous_return_minor, currency, settled_at)"
            " VALUES ('b1', 0, 'a2', 'win', 1, 2, 0, 'GBP', now())"
        )
        conn.commit()
    assert pg.migrate(empty_dsn) == []


# --------------------------------------------------------------------------- per currency
def test_ggr_trial_balance_and_reconciliation_per_currency(
    sink_settings, pg_dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    book = make_book(accounts=3, bets=60, shared_bet_ids=True, currencies=("GBP", "JPY"))
    produce(sink_settings, book, keys=("ledger", "bet_decisions", "settlements"))
    pg.run_postgres_sink(sink_settings, max_idle_s=1.0)

    summary = cli.ledger_summary(pg_dsn)
    assert summary["ggr_by_currency"] == book.ggr_by_currency
    assert set(summary["ggr_by_currency"]) == {"GBP", "JPY"}
    assert summary["ggr_minor"] is None  # no total across currencies
    assert summary["trial_balance_by_currency"] == {"GBP": 0, "JPY": 0}
    assert summary["trial_balance_total_minor"] is None
    assert summary["currencies"] == ["GBP", "JPY"]
    assert summary["bets"] == len(book.messages["bet_decisions"]) == 60
    deposits = summary["kinds"]["deposit"]
    assert deposits["transactions"] == 6 and deposits["volume_minor"] is None
    assert deposits["volume_minor_by_currency"] == {"GBP": 3_000_000_00, "JPY": 3_000_000_00}
    json.dumps(summary)
    assert pg.ggr_by_currency(pg_dsn) == book.ggr_by_currency
    tb = pg.trial_balance(pg_dsn)
    assert {(a, c): b for a, c, b in tb} == dict(book.ccy_balances)

    # the engine's wallets, one per (account, currency)
    wallets: dict[str, dict[str, int]] = {}
    for (account, ccy), bal in book.ccy_balances.items():
        if account.startswith("player:"):
            wallets.setdefault(account, {})[ccy] = bal
    assert pg.reconcile_by_currency(pg_dsn, wallets) == []
    wallets["player:a1:available"]["JPY"] += 7
    del wallets["player:a2:available"]["GBP"]  # a currency the engine lost
    got = pg.reconcile_by_currency(pg_dsn, wallets)
    a1_jpy = book.ccy_balances[("player:a1:available", "JPY")]
    a2_gbp = book.ccy_balances[("player:a2:available", "GBP")]
    assert got == [
        pg.CurrencyMismatch("player:a1:available", "JPY", a1_jpy + 7, a1_jpy, 7),
        pg.CurrencyMismatch("player:a2:available", "GBP", 0, a2_gbp, -a2_gbp),
    ]
    # one number for an account that holds two currencies: refused, not added up
    with pytest.raises(pg.MixedCurrencies, match="several currencies"):
        pg.reconcile(pg_dsn, {"player:a1:available": a1_jpy})

    app = _cli(monkeypatch, pg_dsn, sink_settings)
    runner = CliRunner()
    r = runner.invoke(app, ["ledger", "ggr"])
    assert r.exit_code == 0, r.output
    rows = {tuple(line.split()) for line in r.output.splitlines()}
    assert {(c, str(g)) for c, g in book.ggr_by_currency.items()} <= rows
    f = tmp_path / "wallets.json"
    f.write_text(json.dumps(wallets))
    r = runner.invoke(app, ["ledger", "reconcile", "--wallets", str(f)])
    assert r.exit_code == 1 and "(2 rows)" in r.output, r.output
    f.write_text(json.dumps({"player:a1:available": 5}))
    r = runner.invoke(app, ["ledger", "reconcile", "--wallets", str(f)])
    assert r.exit_code == 2 and "per currency" in r.output and "Traceback" not in r.output
    f.write_text(json.dumps({"player:a1:available": {"GBP": 1.5}}))
    r = runner.invoke(app, ["ledger", "reconcile", "--wallets", str(f)])
    assert r.exit_code == 2 and "minor units" in r.output


def test_single_currency_totals_are_kept(sink_settings, pg_dsn: str) -> None:
    book = make_book(accounts=2, bets=20, shared_bet_ids=True)
    produce(sink_settings, book, keys=("ledger", "bet_decisions", "settlements"))
    pg.run_postgres_sink(sink_settings, max_idle_s=1.0)
    summary = cli.ledger_summary(pg_dsn)
    assert summary["ggr_minor"] == book.ggr_minor == summary["ggr_by_currency"]["GBP"]
    assert summary["trial_balance_total_minor"] == 0
    assert summary["kinds"]["deposit"]["volume_minor"] == 2_000_000_00
    assert summary["bets"] == 20
