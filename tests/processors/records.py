"""Plain record builders for processor tests (the Avro shapes of topology's input topics)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def fixture(event_id: str, seq: int = 1) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "provider": "test",
        "seq": seq,
        "sport": "football",
        "competition": "EPL",
        "home": f"{event_id}-home",
        "away": f"{event_id}-away",
        "kickoff": T0_MS + 3_600_000,
        "provider_ts": T0_MS,
    }


def prices(
    event_id: str,
    odds: tuple[str, ...] = ("2.10", "3.40", "3.60"),
    seq: int = 1,
    market_type: str = "match_result",
    selections: tuple[str, ...] = ("home", "draw", "away"),
    line: str | None = None,
    period: str = "FT",
    ts_ms: int = T0_MS,
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "provider": "test",
        "seq": seq,
        "market_id": "",
        "market_type": market_type,
        "period": period,
        "line": line,
        "selections": [
            {"selection": s, "odds": Decimal(o)} for s, o in zip(selections, odds, strict=True)
        ],
        "provider_ts": ts_ms,
    }


def status(
    event_id: str, st: str, seq: int, in_play: bool = False, market_id: str | None = None
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "provider": "test",
        "seq": seq,
        "market_id": market_id,
        "status": st,
        "in_play": in_play,
        "provider_ts": T0_MS,
    }


def result(
    event_id: str,
    ft: tuple[int, int] | None,
    ht: tuple[int, int] | None = None,
    st: str = "final",
    revision: int = 0,
    seq: int = 100,
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "provider": "test",
        "seq": seq,
        "status": st,
        "ft_home": ft[0] if ft else None,
        "ft_away": ft[1] if ft else None,
        "ht_home": ht[0] if ht else None,
        "ht_away": ht[1] if ht else None,
        "revision": revision,
        "provider_ts": T0_MS,
    }


def deposit(
    account_id: str, amount_minor: int, ref: str | None = None, currency: str = "GBP"
) -> dict[str, Any]:
    return {
        "ref": ref or f"dep-{account_id}",
        "account_id": account_id,
        "amount_minor": amount_minor,
        "currency": currency,
        "created_at": T0_MS,
    }


def leg(
    event_id: str,
    selection: str = "home",
    odds: str = "2.00",
    market_type: str = "match_result",
    line: str | None = None,
    period: str = "FT",
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "market_type": market_type,
        "period": period,
        "line": line,
        "selection": selection,
        "odds": Decimal(odds),
    }


def bet(
    bet_id: str,
    account_id: str,
    stake_minor: int,
    legs: list[dict[str, Any]],
    policy: str = "any",
    placed_at: int = T0_MS,
    currency: str = "GBP",
) -> dict[str, Any]:
    return {
        "bet_id": bet_id,
        "account_id": account_id,
        "stake_minor": stake_minor,
        "currency": currency,
        "price_policy": policy,
        "legs": legs,
        "placed_at": placed_at,
        "channel": "test",
    }
