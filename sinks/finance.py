"""Finance queries on the Postgres ledger (used by ``oddsflow ledger ...`` and the demo).

Every money figure is per currency: a ledger account may hold postings in several currencies
(wallets are per (account, currency)), and amounts in different currencies are never added. A
summary keeps a single total only where the ledger holds one currency; with several, the total is
None and the per-currency figures are the answer.

Bet ids are scoped to their account: a bet's money trail is asked for by (account, bet id), and
by bet id alone only while one account holds it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors


class FinanceQueryError(ValueError):
    """A finance question that has no single answer; the message says how to ask it."""


class AmbiguousBetId(FinanceQueryError):
    """A bet id held by several accounts was asked for without its account."""


class MixedCurrencies(FinanceQueryError):
    """One number was given for an account holding postings in several currencies."""


@dataclass(frozen=True)
class Mismatch:
    account: str
    engine_minor: int
    ledger_minor: int
    diff_minor: int


@dataclass(frozen=True)
class CurrencyMismatch:
    account: str
    currency: str
    engine_minor: int
    ledger_minor: int
    diff_minor: int


def single_total(by_currency: Mapping[str, int]) -> int | None:
    """The one total of a per-currency figure: 0 with no currency, the amount with one, None with
    several (amounts in different currencies do not add up)."""
    if len(by_currency) > 1:
        return None
    return sum(by_currency.values())


def balance(dsn: str, account: str, at: datetime | None = None) -> dict[str, int]:
    """currency -> balance_minor of ``account`` (at ``at``, a timezone-aware time; now if None)."""
    if at is not None and at.tzinfo is None:
        raise ValueError("balance(at=...) needs a timezone-aware datetime")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT currency, balance_minor FROM account_balance_at(%s, coalesce(%s, now()))",
            (account, at),
        ).fetchall()
    return {c: int(b) for c, b in rows}


def trial_balance(dsn: str) -> list[tuple[str, str, int]]:
    """(account, currency, balance_minor) for every account; per currency these sum to zero."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT account, currency, balance_minor FROM trial_balance ORDER BY currency, account"
        ).fetchall()
    return [(a, c, int(b)) for a, c, b in rows]


def money_trail(dsn: str, bet_id: str, account_id: str | None = None) -> list[dict[str, Any]]:
    """Every transaction and posting of one bet, in time order.

    ``account_id`` names whose bet it is; without it the bet id must belong to one account only
    (AmbiguousBetId otherwise), so an answer never mixes two accounts' money.
    """
    with psycopg.connect(dsn) as conn:
        try:
            if account_id is None:
                cur = conn.execute("SELECT * FROM bet_money_trail(%s)", (bet_id,))
            else:
                cur = conn.execute(
                    "SELECT * FROM bet_money_trail(%s::text, %s::text)", (account_id, bet_id)
                )
        except pg_errors.CardinalityViolation as exc:
            raise AmbiguousBetId(exc.diag.message_primary or str(exc)) from exc
        cols = [d.name for d in cur.description or []]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def reconcile(dsn: str, wallets: Mapping[str, int]) -> list[Mismatch]:
    """Compare the engine's balances (account -> balance_minor) with the ledger; mismatches only.

    For accounts holding one currency; MixedCurrencies for an account with postings in several
    (use :func:`reconcile_by_currency`).
    """
    payload = json.dumps({k: int(v) for k, v in wallets.items()})
    with psycopg.connect(dsn) as conn:
        try:
            rows = conn.execute("SELECT * FROM reconcile_wallets(%s::jsonb)", (payload,)).fetchall()
        except pg_errors.InvalidParameterValue as exc:
            raise MixedCurrencies(exc.diag.message_primary or str(exc)) from exc
    return [Mismatch(a, int(e), int(lg), int(d)) for a, e, lg, d in rows]


def reconcile_by_currency(
    dsn: str, wallets: Mapping[str, Mapping[str, int]]
) -> list[CurrencyMismatch]:
    """Compare the engine's wallets (account -> currency -> balance_minor) with the ledger, per
    (account, currency); for each account given, every currency either side knows is compared.
    Mismatches only."""
    payload = json.dumps(
        {a: {c: int(m) for c, m in by_ccy.items()} for a, by_ccy in wallets.items()}
    )
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT * FROM reconcile_wallets_by_currency(%s::jsonb)", (payload,)
        ).fetchall()
    return [CurrencyMismatch(a, c, int(e), int(lg), int(d)) for a, c, e, lg, d in rows]


def ggr_by_currency(dsn: str) -> dict[str, int]:
    """currency -> GGR in minor units (the balance of ``book:ggr`` in that currency)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT currency, ggr_minor FROM ggr_by_currency").fetchall()
    return {c: int(g) for c, g in rows}


def ledger_summary(dsn: str) -> dict[str, Any]:
    """Trial balance, per-kind totals and GGR (the balance of ``book:ggr``), in minor units, per
    currency (``..._by_currency``). The plain totals (``trial_balance_total_minor``,
    ``ggr_minor``, a kind's ``volume_minor``) are kept for a ledger holding one currency and are
    None when it holds several."""
    with psycopg.connect(dsn) as conn:
        totals = conn.execute("SELECT currency, total_minor FROM trial_balance_totals").fetchall()
        kinds = conn.execute(
            "SELECT t.kind, p.currency, count(DISTINCT t.tx_id),"
            " coalesce(sum(p.amount_minor) FILTER (WHERE p.amount_minor > 0), 0)"
            " FROM transactions t JOIN postings p USING (tx_id)"
            " GROUP BY t.kind, p.currency ORDER BY t.kind, p.currency"
        ).fetchall()
        kind_txs: dict[str, int] = dict(
            conn.execute(
                "SELECT t.kind, count(DISTINCT t.tx_id) FROM transactions t"
                " JOIN postings p USING (tx_id) GROUP BY t.kind"
            ).fetchall()
        )
        ggr = conn.execute("SELECT currency, ggr_minor FROM ggr_by_currency").fetchall()
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM transactions), (SELECT count(*) FROM postings),"
            " (SELECT count(*) FROM bets), (SELECT count(*) FROM sink_rejects)"
        ).fetchone()
    assert counts is not None
    trial = {str(c): int(t) for c, t in totals}
    ggr_ccy = {str(c): int(g) for c, g in ggr}
    volumes: dict[str, dict[str, int]] = {}
    for kind, ccy, _n, volume in kinds:
        volumes.setdefault(kind, {})[ccy] = int(volume)
    return {
        "trial_balance_total_minor": single_total(trial),
        "trial_balance_by_currency": trial,
        "kinds": {
            k: {
                "transactions": int(kind_txs.get(k, 0)),
                "volume_minor": single_total(v),
                "volume_minor_by_currency": v,
            }
            for k, v in volumes.items()
        },
        "ggr_minor": single_total(ggr_ccy),
        "ggr_by_currency": ggr_ccy,
        "currencies": sorted(set(trial) | set(ggr_ccy)),
        "transactions": int(counts[0]),
        "postings": int(counts[1]),
        "bets": int(counts[2]),
        "rejected_messages": int(counts[3]),
    }
