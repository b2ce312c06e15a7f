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
            by_ccy = lambda sql: {c: int(v) for c, v in conn.execute(sql).fetchall()}  # noqa: E731
            return {
                "postings": q("SELECT count(*) FROM postings"),
                "abs_sum_minor": by_ccy(
                    "SELECT currency, sum(abs(amount_minor)) FROM postings GROUP BY currency"
                ),
                "ggr_by_currency": by_ccy("SELECT currency, ggr_minor FROM ggr_by_currency"),
                "balances": {
                    (a, c): int(b)
                    for a, c, b in conn.execute(
                        "SELECT account, currency, balance_minor FROM account_balances"
                    ).fetchall()
                },
                "bets": q("SELECT count(*) FROM bets"),
                "accepted": q("SELECT count(*) FROM bets WHERE accepted"),
                "rejected": q("SELECT count(*) FROM bets WHERE NOT accepted"),
                "settled": q("SELECT count(*) FROM bets WHERE settlement_revision IS NOT NULL"),
                "settlement_revisions": q("SELECT count(*) FROM bet_settlements"),
                "turnover_by_currency": by_ccy(
                    "SELECT currency, sum(stake_minor) FROM bets WHERE accepted GROUP BY currency"
                ),
                "returns_by_currency": by_ccy(
                    "SELECT currency, sum(return_minor) FROM bets"
                    " WHERE settlement_revision IS NOT NULL GROUP BY currency"
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
        "abs_sum_minor": book.abs_sum_by_currency,
        "ggr_by_currency": book.ggr_by_currency,
        "balances": dict(book.ccy_balances),
        "bets": len(book.messages["bet_decisions"]),
        "accepted": book.bets_accepted,
        "rejected": book.bets_rejected,
        "settled": book.bets_settled,
        "settlement_revisions": len(book.messages["settlements"]),
        "turnover_by_currency": dict(book.turnover_by_currency),
        "returns_by_currency": dict(book.returns_by_currency),
    }


BOOKS = {
    "one_currency": dict(accounts=4, bets=80),
    # every account reuses the same bet ids, in two currencies: two accounts' "b3" are two bets
    # with two settlement histories, and no figure adds GBP to JPY
    "shared_bet_ids_two_currencies": dict(
        accounts=4, bets=80, shared_bet_ids=True, currencies=("GBP", "JPY")
    ),
}


@pytest.mark.parametrize("book_kind", list(BOOKS))
def test_sink_contract_exactly_once(adapter, sink_settings, book_kind: str) -> None:
    book = make_book(**BOOKS[book_kind])
    if book_kind != "one_currency":  # the case is really there
        pairs = {(r["account_id"], r["bet_id"]) for _, r in book.messages["bet_decisions"]}
        assert len({b for _, b in pairs}) < len(pairs) == len(book.messages["bet_decisions"])
        assert len(book.currencies) == 2
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
