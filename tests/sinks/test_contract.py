"""One contract, every backend: real Avro messages on real Kafka topics, the real sink, then
rows and sums must equal the topics' content, and a replay must change nothing."""

from __future__ import annotations

import os

import psycopg
import pytest
from sinks_testdata import make_book, produce

from oddsflow.sinks import postgres as pg

pytestmark = pytest.mark.integration


class PostgresAdapter:
    def __init__(self, settings) -> None:
        self.s = settings

    def run(self) -> int:
        return pg.run_postgres_sink(self.s, max_idle_s=1.0).flushed_messages

    def facts(self) -> dict:
        with psycopg.connect(self.s.pg_dsn) as conn:
            q = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
            return {
                "postings": q("SELECT count(*) FROM postings"),
                "abs_sum_minor": q("SELECT coalesce(sum(abs(amount_minor)), 0) FROM postings"),
                "ggr_minor": q(
                    "SELECT coalesce(sum(amount_minor), 0) FROM postings WHERE account = 'book:ggr'"
                ),
                "balances": dict(
                    conn.execute("SELECT account, balance_minor FROM account_balances").fetchall()
                ),
                "accepted": q("SELECT count(*) FROM bets WHERE accepted"),
                "rejected": q("SELECT count(*) FROM bets WHERE NOT accepted"),
                "settled": q("SELECT count(*) FROM bets WHERE settlement_revision IS NOT NULL"),
                "turnover_minor": q(
                    "SELECT coalesce(sum(stake_minor), 0) FROM bets WHERE accepted"
                ),
                "returns_minor": q(
                    "SELECT coalesce(sum(return_minor), 0) FROM bets WHERE settlement_revision IS NOT NULL"
                ),
            }

    def forget_offsets(self) -> None:
        with psycopg.connect(self.s.pg_dsn) as conn:
            conn.execute("DELETE FROM consumed_offsets")

    def close(self) -> None:
        pass


class ClickHouseAdapter:
    def __init__(self, settings) -> None:
        from oddsflow.sinks import clickhouse as ch

        self.ch = ch
        self.s = settings

    def run(self) -> int:
        return self.ch.run_clickhouse_sink(self.s, max_idle_s=1.0).flushed_messages

    def facts(self) -> dict:
        return self.ch.contract_facts(self.s)

    def forget_offsets(self) -> None:
        self.ch.forget_offsets(self.s)

    def close(self) -> None:
        self.ch.drop_database(self.s)


@pytest.fixture(params=["postgres", "chdb", "clickhouse_server"])
def adapter(request, sink_settings):
    if request.param == "postgres":
        a = PostgresAdapter(sink_settings)
    elif request.param == "chdb":
        a = ClickHouseAdapter(sink_settings.model_copy(update={"clickhouse_url": None}))
    else:
        url = os.environ.get("ODDSFLOW_CLICKHOUSE_URL")
        if not url:
            pytest.skip("ODDSFLOW_CLICKHOUSE_URL not set: no ClickHouse server to test against")
        a = ClickHouseAdapter(sink_settings.model_copy(update={"clickhouse_url": url}))
    yield a
    a.close()


def expected(book) -> dict:
    return {
        "postings": book.postings,
        "abs_sum_minor": sum(
            abs(p["amount_minor"]) for _, r in book.messages["ledger"] for p in r["postings"]
        ),
        "ggr_minor": book.ggr_minor,
        "balances": {a: b for a, b in book.balances.items()},
        "accepted": book.bets_accepted,
        "rejected": book.bets_rejected,
        "settled": book.bets_settled,
        "turnover_minor": book.turnover_minor,
        "returns_minor": book.returns_minor,
    }


def test_sink_contract_exactly_once(adapter, sink_settings) -> None:
    book = make_book(accounts=4, bets=80)
    sent = produce(sink_settings, book)
    want = expected(book)
    assert adapter.run() > 0
    assert adapter.facts() == want
    # 1) a restart with nothing new changes nothing
    assert adapter.run() == 0
    # 2) the same messages again on the topics (an at-least-once producer): no duplicates
    produce(sink_settings, book)
    adapter.run()
    assert adapter.facts() == want
    # 3) the store forgets its positions and replays everything from the beginning
    adapter.forget_offsets()
    assert adapter.run() >= sent
    assert adapter.facts() == want
