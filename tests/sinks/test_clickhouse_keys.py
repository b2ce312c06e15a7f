"""ClickHouse keys a bet by (account_id, bet_id) (issue 10, item 6): two accounts' bets with the
same id stay two bets with two settlement histories, replays stay harmless, and a database made
with the old keys (bet_id alone) is re-keyed by the sink's own DDL path, keeping its rows, also
when an earlier re-keying was cut short."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from sinks_testdata import two_accounts_one_bet_id

from oddsflow.settings import Settings
from oddsflow.sinks import clickhouse as ch
from oddsflow.sinks.kafka_batch import _batch_of

pytestmark = pytest.mark.integration

# the bet tables' keys before bet ids were scoped to their account
OLD_KEYS = {
    "bet_legs": ("ORDER BY (account_id, bet_id, leg_index)", "ORDER BY (bet_id, leg_index)"),
    "bet_decisions": ("ORDER BY (account_id, bet_id)", "ORDER BY bet_id"),
    "settlements": ("ORDER BY (account_id, bet_id, revision)", "ORDER BY (bet_id, revision)"),
}


@pytest.fixture(params=["chdb", "clickhouse_server"])
def ch_settings(request: pytest.FixtureRequest, sink_settings: Settings) -> Iterator[Settings]:
    if request.param == "chdb":
        s = sink_settings.model_copy(update={"clickhouse_url": None})
    else:
        url = os.environ.get("ODDSFLOW_CLICKHOUSE_URL")
        if not url:
            pytest.skip("ODDSFLOW_CLICKHOUSE_URL not set")
        s = sink_settings.model_copy(update={"clickhouse_url": url})
    yield s
    ch.drop_database(s)


def _bets(s: ch.Schemaed) -> dict[str, Any]:
    rows = lambda sql: s.query(sql)[1]  # noqa: E731
    return {
        "v_bets": rows(
            "SELECT account_id, bet_id, stake_minor, market_type, settled, revision, return_minor"
            " FROM {db}.v_bets ORDER BY account_id"
        ),
        "settlements": rows(
            "SELECT account_id, bet_id, revision, return_minor FROM {db}.settlements FINAL"
            " ORDER BY account_id, revision"
        ),
        "legs": rows("SELECT account_id, bet_id, event_id FROM {db}.bet_legs FINAL ORDER BY 1"),
        "decisions": rows("SELECT count() FROM {db}.bet_decisions FINAL"),
    }


def _keys(s: ch.Schemaed) -> dict[str, str]:
    _, rows = s.query(
        "SELECT name, sorting_key FROM system.tables WHERE database = {db:String}", {"db": s.db}
    )
    return {str(n): str(k) for n, k in rows}


def test_two_accounts_with_the_same_bet_id_are_two_bets(ch_settings: Settings) -> None:
    # a2's bet "b1" must not replace a1's (nor its decision, legs or settlement history)
    records = [r for r in two_accounts_one_bet_id() if r.key != "bet_decisions" or r.offset < 2]
    with ch.open_backend(ch_settings) as s:
        store = ch.ClickHouseStore(s, "g")
        store.flush(_batch_of(records))
        first = _bets(s)
        store.flush(_batch_of(records[::-1]))  # a replay, in another order: harmless
        assert _bets(s) == first
    assert first == {
        "v_bets": [
            ("a1", "b1", 10_00, "match_result", True, 1, 0),
            ("a2", "b1", 3_00, "match_result", True, 0, 0),
        ],
        "settlements": [("a1", "b1", 0, 25_00), ("a1", "b1", 1, 0), ("a2", "b1", 0, 0)],
        "legs": [("a1", "b1", "e-a1"), ("a2", "b1", "e-a2")],
        "decisions": [(2,)],
    }
    facts = ch.contract_facts(ch_settings)
    assert (facts["bets"], facts["settled"], facts["settlement_revisions"]) == (2, 2, 3)


def test_old_keys_are_rebuilt_keeping_rows(ch_settings: Settings) -> None:
    records = [r for r in two_accounts_one_bet_id() if r.value.get("account_id") == "a1"]
    with ch.open_backend(ch_settings, ensure=False) as s:
        _old_schema(s)
        assert _keys(s)["bet_decisions"] == "bet_id"
        ch.ClickHouseStore(s, "g").flush(_batch_of(records))  # rows written under the old keys
        before = _bets(s)
        s.ensure_schema()
        keys = _keys(s)
        assert {t: keys[t] for t in ch.REKEYED_TABLES} == ch.REKEYED_TABLES
        assert not [t for t in keys if t.endswith("__rekey")]
        assert _bets(s) == before  # every row kept
        assert before["decisions"] == [(1,)] and len(before["settlements"]) == 2
        s.ensure_schema()  # nothing left to do: idempotent
        assert _keys(s) == keys and _bets(s) == before


@pytest.mark.parametrize("cut", ["after_exchange", "before_exchange"])
def test_an_interrupted_rekey_is_finished(ch_settings: Settings, cut: str) -> None:
    """The states a crash can leave between the re-keying's steps; the next ensure_schema ends
    with today's keys and every row."""
    records = [r for r in two_accounts_one_bet_id() if r.value.get("account_id") == "a1"]
    with ch.open_backend(ch_settings, ensure=False) as s:
        _old_schema(s)
        ch.ClickHouseStore(s, "g").flush(_batch_of(records))
        before = _bets(s)
        db = s.db
        for table in ch.REKEYED_TABLES:
            create = _create(db, table)
            s.backend.command(create.replace(f"{db}.{table} (", f"{db}.{table}__rekey (", 1))
            if cut == "after_exchange":  # the new empty table took the name, the rows not copied
                s.backend.command(f"EXCHANGE TABLES {db}.{table} AND {db}.{table}__rekey")
        if cut == "after_exchange":
            assert _bets(s)["decisions"] == [(0,)]
        s.ensure_schema()
        keys = _keys(s)
        assert {t: keys[t] for t in ch.REKEYED_TABLES} == ch.REKEYED_TABLES
        assert not [t for t in keys if t.endswith("__rekey")]
        assert _bets(s) == before


def _create(db: str, table: str) -> str:
    """Today's CREATE TABLE of one bet table."""
    head = f"CREATE TABLE IF NOT EXISTS {db}.{table} ("
    return next(x for x in ch.ddl_statements(db) if x.startswith(head))


def _old_schema(s: ch.Schemaed) -> None:
    """The database as the DDL before account-scoped keys made it."""
    for stmt in ch.ddl_statements(s.db):
        for table, (new, old) in OLD_KEYS.items():
            if stmt.startswith(f"CREATE TABLE IF NOT EXISTS {s.db}.{table} ("):
                assert new in stmt
                stmt = stmt.replace(new, old)
        s.backend.command(stmt)
