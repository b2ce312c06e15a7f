"""Record builders for the load: price updates, deposits, bet requests, results, and the
stamped (pre-encoded, timestamp filled in at send time) streams of bets and prices."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from oddsflow.bench import harness as h
from oddsflow.codec import Codec
from oddsflow.settings import Settings

ODDS = ("2.10", "3.40", "3.60")


def price_update(event_id: str, seq: int, odds: tuple[str, ...] = ODDS) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "provider": "bench",
        "seq": seq,
        "market_id": "",
        "market_type": "match_result",
        "period": "FT",
        "line": None,
        "selections": [
            {"selection": s, "odds": Decimal(o)}
            for s, o in zip(("home", "draw", "away"), odds, strict=True)
        ],
        "provider_ts": 0,
    }


def deposit(
    account_id: str, amount_minor: int, *, ref: str | None = None, created_at: int | None = None
) -> dict[str, Any]:
    return {
        "ref": ref or f"dep-{account_id}",
        "account_id": account_id,
        "amount_minor": amount_minor,
        "currency": "GBP",
        "created_at": int(h.now_ms()) if created_at is None else created_at,
    }


def bet(bet_id: str, account_id: str, event_id: str, stake_minor: int = 100) -> dict[str, Any]:
    return {
        "bet_id": bet_id,
        "account_id": account_id,
        "stake_minor": stake_minor,
        "currency": "GBP",
        "price_policy": "any",
        "legs": [
            {
                "event_id": event_id,
                "market_type": "match_result",
                "period": "FT",
                "line": None,
                "selection": "home",
                "odds": Decimal("2.00"),
            }
        ],
        "placed_at": 0,
        "channel": "bench",
    }


def result(event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "provider": "bench",
        "seq": 1_000_000,
        "status": "final",
        "ft_home": 2,
        "ft_away": 1,
        "ht_home": 1,
        "ht_away": 0,
        "revision": 0,
        "provider_ts": int(h.now_ms()),
    }


class Bets:
    """Stamped bet requests with unique ids, spread over accounts and events."""

    def __init__(self, s: Settings, accounts: int, events: list[str]) -> None:
        self.codec = Codec("bet_request")
        self.accounts, self.events = accounts, events
        self.tag = uuid.uuid4().hex[:6]
        self.next = 0

    def make(self, n: int, event: str | None = None) -> list[h.Stamped]:
        out = []
        for k in range(self.next, self.next + n):
            acct = f"a{k % self.accounts}"
            ev = event or self.events[k % len(self.events)]
            out.append(h.stamped(self.codec, acct, bet(f"{self.tag}-{k}", acct, ev), "placed_at"))
        self.next += n
        return out


class Prices:
    """Stamped price updates with an increasing seq per event (so none is stale)."""

    def __init__(self, events: list[str]) -> None:
        self.codec = Codec("price_update")
        self.events = events
        self.seq = 0
        odds = [("2.10", "3.40", "3.60"), ("2.20", "3.30", "3.50"), ("2.00", "3.50", "3.80")]
        self._odds = odds

    def make(self, n: int) -> list[h.Stamped]:
        out = []
        E = len(self.events)
        for k in range(n):
            if k % E == 0:
                self.seq += 1
            ev = self.events[k % E]
            out.append(
                h.stamped(
                    self.codec,
                    ev,
                    price_update(ev, self.seq, self._odds[self.seq % 3]),
                    "provider_ts",
                )
            )
        return out
