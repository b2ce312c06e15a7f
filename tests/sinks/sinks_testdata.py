"""A deterministic, balanced book of ledger transactions, decisions, settlements, bet requests and
prices, shaped like the engine's output, with the figures every sink must reproduce."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from oddsflow.kafka import EventProducer
from oddsflow.settings import Settings

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
CCY = "GBP"
MARKET_TYPES = ("match_result", "over_under", "btts")


@dataclass
class Book:
    """Messages by topology key (key, record) plus expected figures."""

    messages: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    balances: Counter[str] = field(default_factory=Counter)
    postings: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    bets_accepted: int = 0
    bets_rejected: int = 0
    bets_settled: int = 0
    bets_resettled: int = 0
    turnover_minor: int = 0
    returns_minor: int = 0  # latest revision per settled bet
    open_liability_minor: int = 0

    def add(self, key: str, msg_key: str, record: dict[str, Any]) -> None:
        self.messages.setdefault(key, []).append((msg_key, record))

    @property
    def ggr_minor(self) -> int:
        return self.balances["book:ggr"]

    def tx(
        self,
        tx_id: str,
        kind: str,
        bet_id: str | None,
        account_id: str,
        at_ms: int,
        legs: list[tuple[str, int]],
    ) -> None:
        legs = [(a, m) for a, m in legs if m != 0]
        assert sum(m for _, m in legs) == 0
        self.add(
            "ledger",
            account_id,
            {
                "tx_id": tx_id,
                "kind": kind,
                "bet_id": bet_id,
                "account_id": account_id,
                "postings": [
                    {"posting_id": f"{tx_id}:{n}", "account": a, "amount_minor": m, "currency": CCY}
                    for n, (a, m) in enumerate(legs)
                ],
                "created_at": at_ms,
            },
        )
        for a, m in legs:
            self.balances[a] += m
        self.postings += len(legs)
        self.kinds[kind] += 1


def market_id(event_id: str, market_type: str) -> str:
    return f"{event_id}/{market_type}/FT"


def make_book(accounts: int = 5, bets: int = 40, seed: int = 7, tag: str = "") -> Book:
    rnd = random.Random(seed)
    b = Book()
    t = BASE_MS
    for i in range(accounts):
        acc = f"{tag}a{i}"
        t += 1000
        b.tx(
            f"{tag}dep:{acc}",
            "deposit",
            None,
            acc,
            t,
            [("cash:deposits", -1_000_000_00), (f"player:{acc}:available", 1_000_000_00)],
        )
    events = [f"{tag}e{j}" for j in range(4)]
    for ev in events:
        for n, mt in enumerate(MARKET_TYPES):
            for version in range(3):
                odds = Decimal("1.9000") + Decimal(version) / 10 + Decimal(n) / 100
                b.add(
                    "priced_markets",
                    market_id(ev, mt),
                    {
                        "market_id": market_id(ev, mt),
                        "event_id": ev,
                        "market_type": mt,
                        "period": "FT",
                        "line": None,
                        "status": "open",
                        "in_play": False,
                        "selections": [
                            {
                                "selection": s,
                                "provider_odds": odds,
                                "fair_probability": Decimal("0.5000000000"),
                                "odds": odds,
                            }
                            for s in ("home", "away")
                        ],
                        "margin": Decimal("0.0500"),
                        "method": "proportional",
                        "overround": Decimal("1.0500000000"),
                        "version": version,
                        "provider_ts": t + version * 60_000,
                        "priced_ts": t + version * 60_000 + 5,
                    },
                )
    for i in range(bets):
        acc = f"{tag}a{i % accounts}"
        bet = f"{tag}b{i}"
        ev = events[i % len(events)]
        mt = MARKET_TYPES[i % len(MARKET_TYPES)]
        stake = rnd.randrange(1_00, 50_00)
        odds = Decimal(rnd.choice(["1.5000", "2.0000", "3.2500", "5.0000"]))
        potential = int(stake * odds)
        t += 3_600_000 // 4  # a few bets per hour, across many hours
        accepted = i % 7 != 3
        b.add(
            "bet_requests",
            acc,
            {
                "bet_id": bet,
                "account_id": acc,
                "stake_minor": stake,
                "currency": CCY,
                "price_policy": "any",
                "legs": [
                    {
                        "event_id": ev,
                        "market_type": mt,
                        "period": "FT",
                        "line": None,
                        "selection": "home",
                        "odds": odds,
                    }
                ],
                "placed_at": t,
                "channel": "web",
            },
        )
        b.tx(
            f"{bet}:reserve",
            "reserve",
            bet,
            acc,
            t,
            [(f"player:{acc}:available", -stake), (f"player:{acc}:reserved", stake)],
        )
        b.add(
            "bet_decisions",
            acc,
            {
                "bet_id": bet,
                "account_id": acc,
                "accepted": accepted,
                "reason": None if accepted else "PRICE_CHANGED",
                "bound_odds": [odds] if accepted else [],
                "stake_minor": stake,
                "potential_return_minor": potential if accepted else 0,
                "currency": CCY,
                "requested_at": t,
                "decided_at": t + 3,
            },
        )
        if not accepted:
            b.bets_rejected += 1
            b.tx(
                f"{bet}:release",
                "release",
                bet,
                acc,
                t + 3,
                [(f"player:{acc}:reserved", -stake), (f"player:{acc}:available", stake)],
            )
            continue
        b.bets_accepted += 1
        b.turnover_minor += stake
        b.tx(
            f"{bet}:accept",
            "accept",
            bet,
            acc,
            t + 3,
            [(f"player:{acc}:reserved", -stake), ("book:open_bets", stake)],
        )
        if i % 5 == 4:  # left open
            b.open_liability_minor += potential - stake
            continue
        win = rnd.random() < 0.4
        ret = potential if win else 0
        ts = t + 7_200_000
        b.bets_settled += 1
        b.add(
            "settlements",
            acc,
            {
                "bet_id": bet,
                "account_id": acc,
                "outcome": "win" if win else "lose",
                "stake_minor": stake,
                "return_minor": ret,
                "previous_return_minor": 0,
                "revision": 0,
                "currency": CCY,
                "settled_at": ts,
            },
        )
        b.tx(
            f"{bet}:payout",
            "payout",
            bet,
            acc,
            ts,
            [
                ("book:open_bets", -stake),
                ("book:ggr", stake - ret),
                (f"player:{acc}:available", ret),
            ],
        )
        if i % 9 == 0:  # a corrected result flips the outcome
            new_ret = 0 if win else potential
            b.bets_resettled += 1
            b.add(
                "settlements",
                acc,
                {
                    "bet_id": bet,
                    "account_id": acc,
                    "outcome": "lose" if win else "win",
                    "stake_minor": stake,
                    "return_minor": new_ret,
                    "previous_return_minor": ret,
                    "revision": 1,
                    "currency": CCY,
                    "settled_at": ts + 60_000,
                },
            )
            b.tx(
                f"{bet}:resettle:1",
                "resettle",
                bet,
                acc,
                ts + 60_000,
                [("book:ggr", ret - new_ret), (f"player:{acc}:available", new_ret - ret)],
            )
            ret = new_ret
        b.returns_minor += ret
    return b


def produce(settings: Settings, book: Book, keys: tuple[str, ...] | None = None) -> int:
    p = EventProducer(settings)
    n = 0
    for key, msgs in book.messages.items():
        if keys is not None and key not in keys:
            continue
        for mk, rec in msgs:
            p.send(key, mk, rec)
            n += 1
    p.flush(60)
    return n
