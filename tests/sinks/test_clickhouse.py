"""ClickHouse analytics on chdb (and a server when ODDSFLOW_CLICKHOUSE_URL is set): the named
analyst queries, idempotent DDL, and the CLI."""

from __future__ import annotations

import os
from collections import defaultdict

import pytest
from sinks_testdata import MARKET_TYPES, make_book, market_id, produce
from typer.testing import CliRunner

from oddsflow.sinks import clickhouse as ch

pytestmark = pytest.mark.integration


@pytest.fixture(params=["chdb", "clickhouse_server"])
def ch_settings(request, sink_settings):
    if request.param == "chdb":
        s = sink_settings.model_copy(update={"clickhouse_url": None})
    else:
        url = os.environ.get("ODDSFLOW_CLICKHOUSE_URL")
        if not url:
            pytest.skip("ODDSFLOW_CLICKHOUSE_URL not set")
        s = sink_settings.model_copy(update={"clickhouse_url": url})
    yield s
    ch.drop_database(s)


def _as_dicts(cols, rows):
    return [dict(zip(cols, r, strict=True)) for r in rows]


def test_named_queries(ch_settings) -> None:
    book = make_book(accounts=3, bets=70)
    produce(ch_settings, book)
    ch.run_clickhouse_sink(ch_settings, max_idle_s=1.0)
    produce(ch_settings, book)  # duplicates on the topics must not change any figure
    ch.run_clickhouse_sink(ch_settings, max_idle_s=1.0)

    decisions = {r["bet_id"]: r for _, r in book.messages["bet_decisions"]}
    requests = {r["bet_id"]: r for _, r in book.messages["bet_requests"]}
    last = {}
    for _, r in book.messages["settlements"]:
        if r["bet_id"] not in last or r["revision"] > last[r["bet_id"]]["revision"]:
            last[r["bet_id"]] = r
    want_ggr: dict[str, int] = defaultdict(int)
    want_liab: dict[str, int] = defaultdict(int)
    for bet, d in decisions.items():
        if not d["accepted"]:
            continue
        leg = requests[bet]["legs"][0]
        if bet in last:
            want_ggr[leg["market_type"]] += d["stake_minor"] - last[bet]["return_minor"]
        else:
            want_liab[market_id(leg["event_id"], leg["market_type"])] += (
                d["potential_return_minor"] - d["stake_minor"]
            )

    with ch.open_backend(ch_settings) as s:
        ggr = _as_dicts(*ch.run_named_query(s, "ggr_by_market_type"))
        assert {r["market_type"]: int(r["ggr_minor"]) for r in ggr} == dict(want_ggr)
        assert set(want_ggr) <= set(MARKET_TYPES)
        assert sum(int(r["turnover_minor"]) for r in ggr) == book.turnover_minor

        hours = _as_dicts(*ch.run_named_query(s, "hold_by_hour"))
        assert len(hours) > 5 and sum(int(r["ggr_minor"]) for r in hours) == book.ggr_minor
        assert sum(int(r["payouts_minor"]) for r in hours) == book.returns_minor

        top = _as_dicts(*ch.run_named_query(s, "top_liabilities"))
        assert {r["market_id"]: int(r["liability_minor"]) for r in top} == dict(want_liab)
        assert [int(r["liability_minor"]) for r in top] == sorted(want_liab.values(), reverse=True)
        assert sum(want_liab.values()) == book.open_liability_minor

        mid = market_id("e1", "over_under")
        moves = _as_dicts(*ch.run_named_query(s, "price_movement", market_id=mid))
        assert [(int(r["version"]), r["selection"]) for r in moves] == [
            (v, sel) for v in range(3) for sel in ("away", "home")
        ]
        assert (
            moves[0]["odds"] < moves[-1]["odds"]
        )  # prices drift up in the test book, exactly as decimals
        with pytest.raises(ValueError):
            ch.run_named_query(s, "price_movement")

        s.ensure_schema()  # DDL is idempotent
    assert ch.ggr_minor(ch_settings) == book.ggr_minor


def test_analytics_cli(ch_settings, monkeypatch) -> None:
    import typer

    from oddsflow.sinks import cli

    book = make_book(accounts=2, bets=20)
    produce(ch_settings, book)
    monkeypatch.setattr(cli, "get_settings", lambda: ch_settings)
    app = typer.Typer()
    cli.register(app)
    runner = CliRunner()
    r = runner.invoke(app, ["sink", "run", "clickhouse", "--idle-exit", "1"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["analytics", "query", "ggr_by_market_type"])
    assert r.exit_code == 0, r.output
    assert "market_type" in r.output and "ggr_minor" in r.output
    r = runner.invoke(
        app, ["analytics", "query", "price_movement", "--market-id", market_id("e0", "btts")]
    )
    assert r.exit_code == 0 and "(6 rows)" in r.output, r.output
    assert cli.clickhouse_ggr(ch_settings) == book.ggr_minor
