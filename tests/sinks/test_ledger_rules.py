"""What the ledger database enforces on its own, statement by statement: balanced transactions
(checked at COMMIT, once per INSERT statement since 0003) and the references of postings to
transactions and accounts (checked at the end of each statement, once per statement since 0004)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import errors

pytestmark = pytest.mark.integration

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _accounts(conn: psycopg.Connection, *names: str) -> None:
    for a in names:
        conn.execute(
            "INSERT INTO accounts (account, currency) VALUES (%s, 'GBP') ON CONFLICT DO NOTHING",
            (a,),
        )


def _tx_row(conn: psycopg.Connection, tx_id: str) -> None:
    conn.execute(
        "INSERT INTO transactions (tx_id, kind, created_at) VALUES (%s, 'deposit', %s)", (tx_id, AT)
    )


def _posting(conn: psycopg.Connection, pid: str, tx_id: str, account: str, amount: int) -> None:
    conn.execute(
        "INSERT INTO postings (posting_id, tx_id, account, amount_minor, currency, created_at)"
        " VALUES (%s, %s, %s, %s, 'GBP', %s)",
        (pid, tx_id, account, amount, AT),
    )


def _pending(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM ledger_unbalanced").fetchone()[0]


def test_balance_is_checked_at_commit_across_statements(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        _accounts(conn, "cash:deposits", "player:a:available", "player:b:available")
        # one transaction's postings in three statements, balanced only once all are in
        _tx_row(conn, "t1")
        _posting(conn, "t1:0", "t1", "cash:deposits", -700)
        _posting(conn, "t1:1", "t1", "player:a:available", 500)
        _posting(conn, "t1:2", "t1", "player:b:available", 200)
        assert _pending(conn) == 3  # partial sums, parked until COMMIT
        conn.commit()
        assert _pending(conn) == 0  # the checks leave nothing behind

        # a balanced statement does not make up for an unbalanced one before it
        _tx_row(conn, "t2")
        _posting(conn, "t2:0", "t2", "cash:deposits", -500)
        conn.execute(
            "INSERT INTO postings (posting_id, tx_id, account, amount_minor, currency, created_at)"
            " VALUES ('t2:1', 't2', 'player:a:available', 250, 'GBP', %s),"
            "        ('t2:2', 't2', 'player:b:available', -250, 'GBP', %s)",
            (AT, AT),
        )
        with pytest.raises(
            errors.CheckViolation, match="t2 is unbalanced: postings in GBP sum to -500"
        ):
            conn.commit()
        # ... and postings rolled back to a savepoint no longer count
        _tx_row(conn, "t3")
        _posting(conn, "t3:0", "t3", "cash:deposits", -500)
        with conn.transaction():  # a savepoint
            _posting(conn, "t3:1", "t3", "player:a:available", 400)
        with pytest.raises(errors.UniqueViolation), conn.transaction():
            _posting(conn, "t3:2", "t3", "player:a:available", 100)
            _posting(conn, "t3:2", "t3", "player:a:available", 100)  # rolled back with its twin
        _posting(conn, "t3:3", "t3", "player:b:available", 100)
        conn.commit()
        assert _pending(conn) == 0

        # a posting appended later to a committed transaction unbalances it: refused at COMMIT
        _posting(conn, "t1:3", "t1", "player:b:available", 1)
        with pytest.raises(errors.CheckViolation, match="t1 is unbalanced"):
            conn.commit()
        assert _pending(conn) == 0

        # many transactions in one statement, one of them unbalanced: the COMMIT names it
        for i in range(50):
            _tx_row(conn, f"m{i}")
        conn.execute(
            "INSERT INTO postings (posting_id, tx_id, account, amount_minor, currency, created_at)"
            " SELECT 'm' || i || ':' || leg, 'm' || i,"
            "        CASE leg WHEN 0 THEN 'cash:deposits' ELSE 'player:a:available' END,"
            "        CASE leg WHEN 0 THEN -100 ELSE 100 + (i = 37)::int END, 'GBP', %s"
            "   FROM generate_series(0, 49) i, generate_series(0, 1) leg",
            (AT,),
        )
        with pytest.raises(
            errors.CheckViolation, match="m37 is unbalanced: postings in GBP sum to 1"
        ):
            conn.commit()

        # a currency that does not net to zero, even if the amounts do
        _accounts(conn, "cash:eur")
        _tx_row(conn, "fx")
        conn.execute(
            "INSERT INTO postings (posting_id, tx_id, account, amount_minor, currency, created_at)"
            " VALUES ('fx:0', 'fx', 'cash:deposits', -100, 'GBP', %s),"
            "        ('fx:1', 'fx', 'cash:eur', 100, 'EUR', %s)",
            (AT, AT),
        )
        with pytest.raises(errors.CheckViolation, match="fx is unbalanced"):
            conn.commit()

        # SET CONSTRAINTS ... IMMEDIATE checks at the end of the statement instead
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        _tx_row(conn, "now")
        with pytest.raises(errors.CheckViolation, match="now is unbalanced"):
            _posting(conn, "now:0", "now", "cash:deposits", -5)
        conn.rollback()

        # a statement whose rows all conflict inserts nothing and queues nothing
        conn.execute(
            "INSERT INTO postings SELECT * FROM postings WHERE tx_id = 't1' ON CONFLICT DO NOTHING"
        )
        assert _pending(conn) == 0
        conn.commit()

        total, n = conn.execute("SELECT sum(amount_minor), count(*) FROM postings").fetchone()
        assert (total, n) == (0, 6)


def test_posting_references_are_checked_per_statement(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        _accounts(conn, "cash:deposits", "player:a:available")
        _tx_row(conn, "t1")
        conn.commit()

        with pytest.raises(errors.ForeignKeyViolation, match="postings_tx_id_fkey") as ei:
            _posting(conn, "x:0", "no-such-tx", "cash:deposits", 0)
        assert ei.value.diag.constraint_name == "postings_tx_id_fkey"
        assert "no-such-tx" in (ei.value.diag.message_detail or "")
        conn.rollback()

        with pytest.raises(errors.ForeignKeyViolation, match="postings_account_fkey") as ei:
            _posting(conn, "t1:0", "t1", "no:such:account", 0)
        assert "no:such:account" in (ei.value.diag.message_detail or "")
        conn.rollback()

        # the same through COPY, the sink's path
        copy_sql = (
            "COPY postings (posting_id, tx_id, account, amount_minor, currency, created_at)"
            " FROM STDIN"
        )
        with (
            pytest.raises(errors.ForeignKeyViolation),
            conn.cursor() as cur,
            cur.copy(copy_sql) as cp,
        ):
            cp.write_row(("t1:0", "t1", "cash:deposits", -1, "GBP", AT))
            cp.write_row(("t1:1", "t1", "nobody", 1, "GBP", AT))
        conn.rollback()

        # parent and children in one statement (data-modifying CTEs) are fine
        conn.execute(
            "WITH t AS (INSERT INTO transactions (tx_id, kind, created_at)"
            "           VALUES ('t2', 'deposit', %s))"
            " INSERT INTO postings (posting_id, tx_id, account, amount_minor, currency, created_at)"
            " VALUES ('t2:0', 't2', 'cash:deposits', -9, 'GBP', %s),"
            "        ('t2:1', 't2', 'player:a:available', 9, 'GBP', %s)",
            (AT, AT, AT),
        )
        conn.commit()

        # referenced rows keep their keys: transactions are append-only, accounts keep their name
        for stmt in (
            "DELETE FROM accounts WHERE account = 'player:a:available'",
            "UPDATE accounts SET account = 'player:z:available' WHERE account = 'player:a:available'",
            "TRUNCATE accounts CASCADE",
            "DELETE FROM transactions WHERE tx_id = 't2'",
            "UPDATE transactions SET tx_id = 't3' WHERE tx_id = 't2'",
        ):
            with pytest.raises(errors.RestrictViolation):
                conn.execute(stmt)
            conn.rollback()
        # correcting an account's other attributes is still possible
        conn.execute("UPDATE accounts SET currency = 'GBP' WHERE account = 'player:a:available'")
        conn.commit()
        assert conn.execute("SELECT count(*) FROM postings").fetchone()[0] == 2
