"""Kill the Postgres sink (SIGKILL) mid-stream and restart it: the ledger must equal the topics'
content exactly — no posting lost, none duplicated, every transaction whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from sinks_testdata import make_book, produce

from oddsflow.settings import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _env(s) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ODDSFLOW_TOPIC_PREFIX": s.topic_prefix,
            "ODDSFLOW_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "ODDSFLOW_POSTGRES_DSN": s.pg_dsn,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _counts(dsn: str) -> tuple[int, int, int, int]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM postings), (SELECT coalesce(sum(abs(amount_minor)), 0) FROM postings),"
            " (SELECT count(*) FROM transactions), (SELECT coalesce(sum(total_minor), 0) FROM trial_balance_totals)"
        ).fetchone()


def test_sigkill_mid_stream_then_restart(sink_settings, pg_dsn: str, tmp_path) -> None:
    book = make_book(accounts=50, bets=8700, seed=11)
    assert book.postings >= 50_000
    produce(sink_settings, book, keys=("ledger", "bet_decisions", "settlements"))
    want_abs = sum(
        abs(p["amount_minor"]) for _, r in book.messages["ledger"] for p in r["postings"]
    )
    cmd = [
        sys.executable,
        "-m",
        "oddsflow.sinks.postgres",
        "--batch-size-max",
        "2000",
        "--log-level",
        "WARNING",
    ]

    started = time.monotonic()
    with open(tmp_path / "sink-1.log", "wb") as log1:
        proc = subprocess.Popen(
            cmd,
            env=_env(sink_settings),
            cwd=REPO_ROOT,
            stdout=log1,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            n = _counts(pg_dsn)[0]
            if n > 0:
                break
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    postings, _abs, _txs, total = _counts(pg_dsn)
    assert 0 < postings < book.postings, "the kill must land mid-stream"
    assert total == 0  # only whole, balanced transactions were committed

    t0 = time.monotonic()
    r = subprocess.run(
        [*cmd, "--idle-exit", "2"],
        env=_env(sink_settings),
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=150,
    )
    restart_s = time.monotonic() - t0 - 2  # minus the idle wait
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert _counts(pg_dsn) == (book.postings, want_abs, len(book.messages["ledger"]), 0)
    with psycopg.connect(pg_dsn) as conn:
        assert (
            conn.execute("SELECT count(*) FROM bets").fetchone()[0]
            == book.bets_accepted + book.bets_rejected
        )
        assert conn.execute("SELECT count(*) FROM sink_rejects").fetchone()[0] == 0
    rate = (book.postings - postings) / max(restart_s, 1e-3)
    print(
        f"\nkill test: {book.postings} postings; killed after {postings} at {time.monotonic() - started:.1f}s; "
        f"restart wrote {book.postings - postings} postings in ~{restart_s:.1f}s (~{rate:,.0f} postings/s incl. startup)"
    )
