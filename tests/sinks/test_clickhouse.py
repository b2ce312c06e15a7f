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

CURRENCIES = ("GBP", "JPY")


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
    # every account reuses the same bet ids, in two currencies: the figures are per bet
    # (account, bet id) and per currency
    book = make_book(accounts=3, bets=70, shared_bet_ids=True, currencies=CURRENCIES)
    produce(ch_settings, book)
    ch.run_clickhouse_sink(ch_settings, max_idle_s=1.0)
    produce(ch_settings, book)  # duplicates on the topics must not change any figure
    ch.run_clickhouse_sink(ch_settings, max_idle_s=1.0)

    bet = lambda r: (r["account_id"], r["bet_id"])  # noqa: E731
    decisions = {bet(r): r for _, r in book.messages["bet_decisions"]}
    requests = {bet(r): r for _, r in book.messages["bet_requests"]}
    assert len(decisions) == 70 > len({b for _, b in decisions})
    last = {}
    for _, r in book.messages["settlements"]:
        if bet(r) not in last or r["revision"] > last[bet(r)]["revision"]:
            last[bet(r)] = r
    want_ggr: dict[tuple[str, str], int] = defaultdict(int)
    want_turnover: dict[str, int] = defaultdict(int)
    want_liab: dict[tuple[str, str], int] = defaultdict(int)
    for key, d in decisions.items():
        if not d["accepted"]:
            continue
        leg = requests[key]["legs"][0]
        want_turnover[d["currency"]] += d["stake_minor"]
        if key in last:
            want_ggr[(leg["market_type"], d["currency"])] += (
                d["stake_minor"] - last[key]["return_minor"]
            )
        else:
            want_liab[(market_id(leg["event_id"], leg["market_type"]), d["currency"])] += (
                d["potential_return_minor"] - d["stake_minor"]
            )

    with ch.open_backend(ch_settings) as s:
        ggr = _as_dicts(*ch.run_named_query(s, "ggr_by_market_type"))
        assert {(r["market_type"], r["currency"]): int(r["ggr_minor"]) for r in ggr} == dict(
            want_ggr
        )
        assert {m for m, _ in want_ggr} <= set(MARKET_TYPES)
        turnover: dict[str, int] = defaultdict(int)
        for r in ggr:
            turnover[r["currency"]] += int(r["turnover_minor"])
        assert turnover == want_turnover == book.turnover_by_currency

        hours = _as_dicts(*ch.run_named_query(s, "hold_by_hour"))
        assert len(hours) > 5
        for ccy in CURRENCIES:
            mine = [r for r in hours if r["currency"] == ccy]
            assert sum(int(r["ggr_minor"]) for r in mine) == book.ggr_by_currency[ccy]
            assert sum(int(r["payouts_minor"]) for r in mine) == book.returns_by_currency[ccy]

        top = _as_dicts(*ch.run_named_query(s, "top_liabilities"))
        assert {(r["market_id"], r["currency"]): int(r["liability_minor"]) for r in top} == dict(
            want_liab
        )
        assert [int(r["liability_minor"]) for r in top] == sorted(want_liab.values(), reverse=True)
        for ccy in CURRENCIES:
            assert (
                sum(v for (_, c), v in want_liab.items() if c == ccy)
                == book.open_liability_by_currency[ccy]
            )

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
    assert ch.ggr_by_currency(ch_settings) == book.ggr_by_currency
    assert ch.ggr_minor(ch_settings) is None  # two currencies: no single total


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
