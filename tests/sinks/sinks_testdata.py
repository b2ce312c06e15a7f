"""A deterministic, balanced book of ledger transactions, decisions, settlements, bet requests and
prices, shaped like the engine's output, with the figures every sink must reproduce.

Like the engine's: transaction ids are scoped to the account (``"a1|b1:reserve"``, see
oddsflow.domain.ledger.scoped_id); ``shared_bet_ids`` makes every account reuse the same bet ids
(bet ids are per account); ``currencies`` spreads the bets (and a deposit per currency) over
several currencies. Figures are per currency; the plain totals only exist for one currency."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from oddsflow.domain import ledger
from oddsflow.kafka import EventProducer
from oddsflow.processors.wallet import tx_record
from oddsflow.settings import Settings
from oddsflow.sinks.kafka_batch import Record

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
CCY = "GBP"
MARKET_TYPES = ("match_result", "over_under", "btts")


def _single(by_currency: Counter[str]) -> int:
    assert len(by_currency) <= 1, f"no single total across currencies: {dict(by_currency)}"
    return sum(by_currency.values())


@dataclass
class Book:
    """Messages by topology key (key, record) plus expected figures."""

    messages: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    ccy_balances: Counter[tuple[str, str]] = field(default_factory=Counter)  # (account, ccy)
    postings: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    bets_accepted: int = 0
    bets_rejected: int = 0
    bets_settled: int = 0
    bets_resettled: int = 0
    turnover_by_currency: Counter[str] = field(default_factory=Counter)
    returns_by_currency: Counter[str] = field(default_factory=Counter)  # latest revision per bet
    open_liability_by_currency: Counter[str] = field(default_factory=Counter)

    def add(self, key: str, msg_key: str, record: dict[str, Any]) -> None:
        self.messages.setdefault(key, []).append((msg_key, record))

    @property
    def currencies(self) -> set[str]:
        return {c for _, c in self.ccy_balances}

    @property
    def balances(self) -> dict[str, int]:
        """account -> balance of a single-currency book."""
        assert len(self.currencies) <= 1, "per-account balances of a multi-currency book"
        return {a: b for (a, _), b in self.ccy_balances.items()}

    @property
    def ggr_by_currency(self) -> dict[str, int]:
        return {c: b for (a, c), b in self.ccy_balances.items() if a == "book:ggr"}

    @property
    def ggr_minor(self) -> int:
        return _single(Counter(self.ggr_by_currency))

    @property
    def turnover_minor(self) -> int:
        return _single(self.turnover_by_currency)

    @property
    def returns_minor(self) -> int:
        return _single(self.returns_by_currency)

    @property
    def open_liability_minor(self) -> int:
        return _single(self.open_liability_by_currency)

    @property
    def abs_sum_by_currency(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for _, r in self.messages["ledger"]:
            for p in r["postings"]:
                out[p["currency"]] += abs(p["amount_minor"])
        return dict(out)

    def tx(
        self,
        tx_id: str,
        kind: str,
        bet_id: str | None,
        account_id: str,
        at_ms: int,
        legs: list[tuple[str, int]],
        ccy: str = CCY,
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
                    {"posting_id": f"{tx_id}:{n}", "account": a, "amount_minor": m, "currency": ccy}
                    for n, (a, m) in enumerate(legs)
                ],
                "created_at": at_ms,
            },
        )
        for a, m in legs:
            self.ccy_balances[(a, ccy)] += m
        self.postings += len(legs)
        self.kinds[kind] += 1


def market_id(event_id: str, market_type: str) -> str:
    return f"{event_id}/{market_type}/FT"


def make_book(
    accounts: int = 5,
    bets: int = 40,
    seed: int = 7,
    tag: str = "",
    shared_bet_ids: bool = False,
    currencies: tuple[str, ...] = (CCY,),
) -> Book:
    rnd = random.Random(seed)
    b = Book()
    t = BASE_MS
    for i in range(accounts):
        acc = f"{tag}a{i}"
        for ccy in currencies:
            t += 1000
            b.tx(
                f"{acc}|dep-{ccy}:deposit",
                "deposit",
                None,
                acc,
                t,
                [("cash:deposits", -1_000_000_00), (f"player:{acc}:available", 1_000_000_00)],
                ccy,
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
        # shared: every account places b0, b1, ... (a bet id is unique only within its account)
        bet = f"{tag}b{i // accounts}" if shared_bet_ids else f"{tag}b{i}"
        ccy = currencies[i % len(currencies)]
        scoped = f"{acc}|{bet}"  # the engine's transaction ids carry the account
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
                "currency": ccy,
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
            f"{scoped}:reserve",
            "reserve",
            bet,
            acc,
            t,
            [(f"player:{acc}:available", -stake), (f"player:{acc}:reserved", stake)],
            ccy,
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
                "currency": ccy,
                "requested_at": t,
                "decided_at": t + 3,
            },
        )
        if not accepted:
            b.bets_rejected += 1
            b.tx(
                f"{scoped}:release",
                "release",
                bet,
                acc,
                t + 3,
                [(f"player:{acc}:reserved", -stake), (f"player:{acc}:available", stake)],
                ccy,
            )
            continue
        b.bets_accepted += 1
        b.turnover_by_currency[ccy] += stake
        b.tx(
            f"{scoped}:accept",
            "accept",
            bet,
            acc,
            t + 3,
            [(f"player:{acc}:reserved", -stake), ("book:open_bets", stake)],
            ccy,
        )
        if i % 5 == 4:  # left open
            b.open_liability_by_currency[ccy] += potential - stake
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
                "currency": ccy,
                "settled_at": ts,
            },
        )
        b.tx(
            f"{scoped}:payout",
            "payout",
            bet,
            acc,
            ts,
            [
                ("book:open_bets", -stake),
                ("book:ggr", stake - ret),
                (f"player:{acc}:available", ret),
            ],
            ccy,
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
                    "currency": ccy,
                    "settled_at": ts + 60_000,
                },
            )
            b.tx(
                f"{scoped}:resettle:1",
                "resettle",
                bet,
                acc,
                ts + 60_000,
                [("book:ggr", ret - new_ret), (f"player:{acc}:available", new_ret - ret)],
                ccy,
            )
            ret = new_ret
        b.returns_by_currency[ccy] += ret
    return b


def produce(settings: Settings, book: Book, keys: tuple[str, ...] | None = None) -> int:
    p = EventProducer(settings)
    n = 0
    for key, msgs in book.messages.items():
        if keys is not None and key not in keys:
            continue
        if p.topology.topic(key).item_schema is not None:
            # a topic of batches: framed as its front end frames it (the sink reads each item)
            p.send_batched(key, msgs, items_max=7)
            n += len(msgs)
            continue
        for mk, rec in msgs:
            p.send(key, mk, rec)
            n += 1
    p.flush(60)
    return n


# ------------------------------------------------------------ two accounts, one bet id "b1"
LEDGER, DECISIONS, SETTLEMENTS = "t.ledger", "t.decisions", "t.settlements"
REQUESTS = "t.requests"


def _decision(account: str, stake: int, accepted: bool = True, at: int = BASE_MS) -> dict[str, Any]:
    return {
        "bet_id": "b1",
        "account_id": account,
        "accepted": accepted,
        "reason": None if accepted else "PRICE_CHANGED",
        "bound_odds": ["2.5000"] if accepted else [],
        "stake_minor": stake,
        "potential_return_minor": stake * 5 // 2 if accepted else 0,
        "currency": "GBP",
        "requested_at": at,
        "decided_at": at + 3,
    }


def _settlement(account: str, stake: int, revision: int, ret: int, prev: int) -> dict[str, Any]:
    return {
        "bet_id": "b1",
        "account_id": account,
        "outcome": "win" if ret else "lose",
        "stake_minor": stake,
        "return_minor": ret,
        "previous_return_minor": prev,
        "revision": revision,
        "currency": "GBP",
        "settled_at": BASE_MS + 10_000 + revision,
    }


def two_accounts_one_bet_id() -> list[Record]:
    """Two accounts, one bet id "b1": a1 stakes 10.00 and wins, then is resettled to a loss; a2
    stakes 3.00 and loses. Every ledger record is the engine's own (oddsflow.domain.ledger)."""
    txs = [
        ("a1", ledger.deposit("d1", "a1", 100_00, "GBP")),
        ("a2", ledger.deposit("d1", "a2", 100_00, "GBP")),
        ("a1", ledger.reserve_stake("b1", "a1", 10_00, "GBP")),
        ("a2", ledger.reserve_stake("b1", "a2", 3_00, "GBP")),
        ("a1", ledger.accept_stake("b1", "a1", 10_00, "GBP")),
        ("a2", ledger.accept_stake("b1", "a2", 3_00, "GBP")),
        ("a1", ledger.settle_payout("b1", "a1", 10_00, 25_00, "GBP")),
        ("a2", ledger.settle_payout("b1", "a2", 3_00, 0, "GBP")),
    ]
    out: list[Record] = []
    for n, (acct, tx) in enumerate(txs):
        out.append(Record("ledger", LEDGER, 0, n, tx_record(tx, acct, BASE_MS + n), b""))
    out += [
        Record("bet_decisions", DECISIONS, 0, 0, _decision("a1", 10_00), b""),
        Record("bet_decisions", DECISIONS, 0, 1, _decision("a2", 3_00), b""),
        # a second decision for a1's bet (a redelivered request): the first one stands
        Record("bet_decisions", DECISIONS, 0, 2, _decision("a1", 99_00, accepted=False), b""),
        Record("settlements", SETTLEMENTS, 0, 0, _settlement("a1", 10_00, 0, 25_00, 0), b""),
        Record("settlements", SETTLEMENTS, 0, 1, _settlement("a2", 3_00, 0, 0, 0), b""),
        Record("settlements", SETTLEMENTS, 0, 2, _settlement("a1", 10_00, 1, 0, 25_00), b""),
    ]
    out += [
        Record("bet_requests", REQUESTS, 0, n, _request(acct, stake), b"")
        for n, (acct, stake) in enumerate((("a1", 10_00), ("a2", 3_00)))
    ]
    return out


def _request(account: str, stake: int) -> dict[str, Any]:
    return {
        "bet_id": "b1",
        "account_id": account,
        "stake_minor": stake,
        "currency": "GBP",
        "price_policy": "any",
        "legs": [
            {
                "event_id": f"e-{account}",
                "market_type": "match_result",
                "period": "FT",
                "line": None,
                "selection": "home",
                "odds": Decimal("2.5000"),
            }
        ],
        "placed_at": BASE_MS,
        "channel": "web",
    }
