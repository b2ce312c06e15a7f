"""Postgres read models (CQRS): bets and wallets as the sink projected them, plus placements.

The sink (``oddsflow sink run postgres``) writes ``bets``, ``bet_settlements`` and the ledger from
the engine's output topics; the API adds ``api_placements`` (migration 0005) so a bet is
readable as *pending* from the moment it is placed. Reads are eventually consistent: a decision
is visible here once the sink has flushed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from oddsflow.api.models import BetOut, BetStatus, SettlementOut, WalletOut

REJECT_MESSAGES = {
    "INVALID_REQUEST": "the request is not a valid bet",
    "MARKET_UNKNOWN": "the market is not offered",
    "MARKET_CLOSED": "the market is closed",
    "MARKET_SUSPENDED": "betting on the market is suspended",
    "SELECTION_UNKNOWN": "the selection is not offered in the market",
    "PRICE_CHANGED": "the odds changed (allow a price policy of 'higher' or 'any' to accept)",
    "STAKE_TOO_LOW": "the stake is below the minimum",
    "STAKE_TOO_HIGH": "the stake is above the maximum",
    "PAYOUT_TOO_HIGH": "the potential return is above the maximum payout",
    "LIABILITY_SELECTION": "the book's liability on this selection is at its limit",
    "LIABILITY_MARKET": "the book's liability on this market is at its limit",
    "INSUFFICIENT_FUNDS": "the available balance does not cover the stake",
}


@dataclass(frozen=True)
class Placement:
    bet_id: str
    body_sha256: str
    request: dict[str, Any]
    created: bool


def _iso(v: datetime | None) -> str | None:
    return None if v is None else v.isoformat()


_BET_SQL = """
SELECT bet_id, account_id, state, stake_minor, currency, reject_reason, potential_return_minor,
       bound_odds, requested_at, decided_at, outcome, return_minor
  FROM api_bets"""


class ReadModel:
    def __init__(self, dsn: str, max_size: int = 10) -> None:
        self.pool = AsyncConnectionPool(dsn, min_size=1, max_size=max_size, open=False)

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        await self.pool.close()

    async def ping(self) -> bool:
        async with self.pool.connection() as conn:
            await conn.execute("SELECT 1")
        return True

    # ------------------------------------------------------------------ placements
    async def claim(
        self,
        account_id: str,
        key: str,
        bet_id: str,
        body_sha256: str,
        request: dict[str, Any],
        instance_id: str,
    ) -> Placement:
        """Record a placement, or return the one already recorded under (account, key).

        The primary key makes concurrent requests with one key agree on one row, whichever
        instance they reach.
        """
        doc = orjson.dumps(request, default=str).decode()
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO api_placements (account_id, idempotency_key, bet_id, body_sha256,"
                    " request, placed_at, instance_id)"
                    " VALUES (%s, %s, %s, %s, %s::jsonb,"
                    "  timestamptz 'epoch' + %s * interval '1 millisecond', %s)"
                    # No arbiter: a concurrent retry of the same placement conflicts on
                    # bet_id (derived from account and key) as well, and Postgres raises
                    # for a unique index other than the one ON CONFLICT names.
                    " ON CONFLICT DO NOTHING RETURNING bet_id",
                    (account_id, key, bet_id, body_sha256, doc, request["placed_at"], instance_id),
                )
            ).fetchone()
            if row is not None:
                return Placement(bet_id, body_sha256, request, True)
            got = await (
                await conn.execute(
                    "SELECT bet_id, body_sha256, request FROM api_placements"
                    " WHERE account_id = %s AND idempotency_key = %s",
                    (account_id, key),
                )
            ).fetchone()
        assert got is not None  # inserted by someone else, never deleted
        return Placement(got[0], got[1], dict(got[2]), False)

    # ------------------------------------------------------------------ reads
    async def bet(self, bet_id: str) -> BetOut | None:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            row = await (await cur.execute(_BET_SQL + " WHERE bet_id = %s", (bet_id,))).fetchone()
            if row is None:
                return None
            sets = await (
                await cur.execute(
                    "SELECT revision, outcome, return_minor, previous_return_minor, settled_at"
                    " FROM bet_settlements WHERE bet_id = %s ORDER BY revision",
                    (bet_id,),
                )
            ).fetchall()
        return _bet_out(row, sets)

    async def bets(self, account_id: str, status: str | None, limit: int) -> list[BetOut]:
        where = "account_id = %s"
        if status == "open":
            where += " AND state IN ('pending', 'accepted')"
        elif status == "settled":
            where += " AND state IN ('settled', 'resettled')"
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            rows = await (
                await cur.execute(
                    f"{_BET_SQL} WHERE {where} ORDER BY requested_at DESC NULLS LAST, bet_id"
                    " LIMIT %s",
                    (account_id, limit),
                )
            ).fetchall()
        return [_bet_out(r, []) for r in rows]

    async def wallet(self, account_id: str, currency: str) -> WalletOut:
        available, reserved = f"player:{account_id}:available", f"player:{account_id}:reserved"
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT account, currency, coalesce(sum(amount_minor), 0)::bigint FROM postings"
                    " WHERE account IN (%s, %s) GROUP BY account, currency",
                    (available, reserved),
                )
            ).fetchall()
        avail = sum(int(r[2]) for r in rows if r[0] == available)
        res = sum(int(r[2]) for r in rows if r[0] == reserved)
        cur = rows[0][1] if rows else currency
        return WalletOut(
            account_id=account_id,
            currency=cur,
            balance_minor=avail + res,
            reserved_minor=res,
            available_minor=avail,
        )


def _bet_out(row: dict[str, Any], settlements: list[dict[str, Any]]) -> BetOut:
    reason = row["reject_reason"]
    return BetOut(
        bet_id=row["bet_id"],
        account_id=row["account_id"],
        status=BetStatus(row["state"]),
        stake_minor=row["stake_minor"],
        currency=row["currency"],
        bound_odds=[str(o) for o in row["bound_odds"] or []],
        potential_return_minor=row["potential_return_minor"],
        reason=reason,
        message=REJECT_MESSAGES.get(reason) if reason else None,
        outcome=row["outcome"],
        return_minor=row["return_minor"],
        settlements=[
            SettlementOut(
                revision=s["revision"],
                outcome=s["outcome"],
                return_minor=s["return_minor"],
                previous_return_minor=s["previous_return_minor"],
                settled_at=s["settled_at"].isoformat(),
            )
            for s in settlements
        ],
        requested_at=_iso(row["requested_at"]),
        decided_at=_iso(row["decided_at"]),
    )
