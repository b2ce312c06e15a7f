"""Typer apps for the sinks, mounted on the ``oddsflow`` CLI by :func:`register`:

oddsflow db migrate
oddsflow ledger balance ACCOUNT [--at ISO8601]   | trial-balance | trail BET_ID [--account ID]
                | ggr | reconcile --wallets FILE
oddsflow analytics query NAME [--market-id ID]
oddsflow sink run postgres|clickhouse [--idle-exit SECONDS]
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

import typer

from oddsflow.settings import Settings, get_settings
from oddsflow.sinks import finance
from oddsflow.sinks import postgres as pg

db_app = typer.Typer(help="Postgres ledger schema.", no_args_is_help=True)
ledger_app = typer.Typer(help="Finance queries on the Postgres ledger.", no_args_is_help=True)
analytics_app = typer.Typer(
    help="Analyst queries on ClickHouse (chdb by default).", no_args_is_help=True
)
sink_app = typer.Typer(help="Run a sink (Kafka -> Postgres / ClickHouse).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.add_typer(ledger_app, name="ledger")
    app.add_typer(analytics_app, name="analytics")
    app.add_typer(sink_app, name="sink")


# ---- plain functions for the demo ------------------------------------------------------------
def ledger_summary(dsn: str | None = None) -> dict[str, Any]:
    """Trial balance, per-kind totals and GGR from the Postgres ledger (minor units), per
    currency; the plain totals are None when the ledger holds several currencies."""
    summary: dict[str, Any] = finance.ledger_summary(dsn or get_settings().pg_dsn)
    return summary


def clickhouse_ggr(settings: Settings | None = None) -> int | None:
    """GGR (minor units) as ClickHouse sees it; equals ``ledger_summary()['ggr_minor']`` (None
    when the postings hold several currencies: see :func:`clickhouse_ggr_by_currency`)."""
    from oddsflow.sinks import clickhouse as ch

    ggr = ch.ggr_minor(settings or get_settings())
    return None if ggr is None else int(ggr)


def clickhouse_ggr_by_currency(settings: Settings | None = None) -> dict[str, int]:
    """currency -> GGR (minor units) as ClickHouse sees it; equals
    ``ledger_summary()['ggr_by_currency']``."""
    from oddsflow.sinks import clickhouse as ch

    return {str(c): int(g) for c, g in ch.ggr_by_currency(settings or get_settings()).items()}


# ---- table printing --------------------------------------------------------------------------
def print_table(columns: list[str], rows: list[tuple[Any, ...]] | list[list[Any]]) -> None:
    cells = [[str(c) for c in columns]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    numeric = [all(_is_num(r[i]) for r in rows) and bool(rows) for i in range(len(columns))]
    for n, r in enumerate(cells):
        typer.echo(
            "  ".join(
                v.rjust(w) if numeric[i] else v.ljust(w)
                for i, (v, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            typer.echo("  ".join("-" * w for w in widths))
    typer.echo(f"({len(rows)} rows)")


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _parse_at(at: str | None) -> datetime | None:
    if at is None:
        return None
    t = datetime.fromisoformat(at.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise typer.BadParameter("--at needs a UTC offset, e.g. 2026-01-01T12:00:00Z")
    return t


# ---- commands --------------------------------------------------------------------------------
@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending Postgres migrations (idempotent)."""
    applied = pg.migrate(get_settings().pg_dsn)
    typer.echo("applied: " + ", ".join(applied) if applied else "up to date")


@ledger_app.command("balance")
def ledger_balance(
    account: str,
    at: str | None = typer.Option(
        None, help="ISO 8601 time with offset, e.g. 2026-01-01T12:00:00Z"
    ),
) -> None:
    """An account's balance now, or at a point in time."""
    bal = finance.balance(get_settings().pg_dsn, account, _parse_at(at))
    print_table(
        ["account", "currency", "balance_minor"], [(account, c, b) for c, b in sorted(bal.items())]
    )


@ledger_app.command("trial-balance")
def ledger_trial_balance() -> None:
    """Every account's balance; the total per currency must be zero."""
    rows = finance.trial_balance(get_settings().pg_dsn)
    print_table(["account", "currency", "balance_minor"], rows)
    totals: dict[str, int] = {}
    for _, c, b in rows:
        totals[c] = totals.get(c, 0) + b
    for c, t in sorted(totals.items()):
        typer.echo(f"total {c}: {t}{'' if t == 0 else '  <-- NOT BALANCED'}")
    if any(totals.values()):
        raise typer.Exit(1)


@ledger_app.command("trail")
def ledger_trail(
    bet_id: str,
    account: str | None = typer.Option(
        None, "--account", help="the account the bet belongs to (bet ids are per account)"
    ),
) -> None:
    """A bet's full money trail: every transaction and posting."""
    try:
        rows = finance.money_trail(get_settings().pg_dsn, bet_id, account)
    except finance.AmbiguousBetId as exc:
        _fail(str(exc))
    cols = ["created_at", "tx_id", "kind", "posting_id", "account", "amount_minor", "currency"]
    print_table(cols, [tuple(r[c] for c in cols) for r in rows])


@ledger_app.command("reconcile")
def ledger_reconcile(
    wallets: Path = typer.Option(..., exists=True, help='JSON {"player:a1:available": 1000, ...}'),
) -> None:
    """Compare the engine's wallet balances with the ledger; exits 1 on any mismatch.

    The file maps each account to its balance per currency ({"player:a1:available": {"GBP":
    1000}}), or, for accounts holding one currency, to one number."""
    try:
        data = json.loads(wallets.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        _fail(f"{wallets}: not JSON ({exc})")
    dsn = get_settings().pg_dsn
    if not isinstance(data, dict):
        _fail(f"{wallets}: expected a JSON object of accounts")
    try:
        if all(isinstance(v, dict) for v in data.values()) and data:
            by_ccy = finance.reconcile_by_currency(
                dsn, {a: {c: _minor(m) for c, m in v.items()} for a, v in data.items()}
            )
            print_table(
                ["account", "currency", "engine_minor", "ledger_minor", "diff_minor"],
                [
                    (m.account, m.currency, m.engine_minor, m.ledger_minor, m.diff_minor)
                    for m in by_ccy
                ],
            )
            mismatched = bool(by_ccy)
        else:
            mismatches = finance.reconcile(dsn, {k: _minor(v) for k, v in data.items()})
            print_table(
                ["account", "engine_minor", "ledger_minor", "diff_minor"],
                [(m.account, m.engine_minor, m.ledger_minor, m.diff_minor) for m in mismatches],
            )
            mismatched = bool(mismatches)
    except finance.FinanceQueryError as exc:
        _fail(str(exc))
    if mismatched:
        raise typer.Exit(1)


@ledger_app.command("ggr")
def ledger_ggr() -> None:
    """The book's gross gaming revenue per currency (never added across currencies)."""
    ggr = finance.ggr_by_currency(get_settings().pg_dsn)
    print_table(["currency", "ggr_minor"], sorted(ggr.items()))


def _minor(v: Any) -> int:
    """An amount in minor units from the wallets file: a JSON integer, nothing else."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise finance.FinanceQueryError(f"amounts are integers of minor units, not {v!r}")
    return v


def _fail(message: str) -> NoReturn:
    """A user mistake: one clear line on stderr, exit status 2, no traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


class QueryName(StrEnum):
    ggr_by_market_type = "ggr_by_market_type"
    hold_by_hour = "hold_by_hour"
    top_liabilities = "top_liabilities"
    price_movement = "price_movement"


@analytics_app.command("query")
def analytics_query(
    name: QueryName, market_id: str | None = typer.Option(None, "--market-id")
) -> None:
    """Run a named analyst query and print a table."""
    from oddsflow.sinks import clickhouse as ch

    if name is QueryName.price_movement and not market_id:
        raise typer.BadParameter("price_movement needs --market-id")
    with ch.open_backend(get_settings()) as backend:
        cols, rows = ch.run_named_query(backend, name.value, market_id=market_id)
    print_table(cols, rows)


class SinkName(StrEnum):
    postgres = "postgres"
    clickhouse = "clickhouse"


@sink_app.command("run")
def sink_run(
    name: SinkName,
    idle_exit: float | None = typer.Option(
        None, "--idle-exit", help="exit after SECONDS without messages"
    ),
) -> None:
    """Consume the engine's topics into the store until interrupted (or idle)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if name is SinkName.postgres:
        c = pg.run_postgres_sink(get_settings(), max_idle_s=idle_exit)
    else:
        from oddsflow.sinks import clickhouse as ch

        c = ch.run_clickhouse_sink(get_settings(), max_idle_s=idle_exit)
    typer.echo(
        f"{name.value} sink: {c.flushed_messages} messages written, {c.undecodable} undecodable skipped"
    )
