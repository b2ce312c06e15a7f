"""End to end on the real broker: feed and bets in, decisions, settlements and postings out."""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal

import pytest

from oddsflow.domain.money import payout_minor
from oddsflow.domain.pricing import Method, price
from oddsflow.kafka import EventProducer, consume_all
from tests.conftest import wait_for
from tests.processors import records as r

pytestmark = pytest.mark.integration


def _priced_home(odds=("2.10", "3.40", "3.60"), margin="0.05") -> Decimal:
    return price([Decimal(o) for o in odds], Decimal(margin), Method.PROPORTIONAL).odds[0]


def _ledger_checks(txs):
    ids = [t["tx_id"] for t in txs]
    assert len(ids) == len(set(ids)), "a ledger transaction was produced twice"
    balances: dict[str, int] = defaultdict(int)
    for t in txs:
        assert sum(p["amount_minor"] for p in t["postings"]) == 0, t
        for p in t["postings"]:
            balances[p["account"]] += p["amount_minor"]
    assert sum(balances.values()) == 0
    return balances


def test_single_bet_priced_accepted_and_settled(kafka_settings, worker_factory):
    s = kafka_settings
    w = worker_factory(s).start()
    p = EventProducer(s)
    p.send("fixtures", "e1", r.fixture("e1"))
    p.send("market_status", "e1", r.status("e1", "open", seq=1))
    p.send("price_updates", "e1", r.prices("e1"))
    p.send("deposits", "a1", r.deposit("a1", 100_00))
    p.flush()
    priced = wait_for(
        lambda: consume_all("priced_markets", s, expect=1, idle_s=1), 90, what="priced market"
    )
    home = _priced_home()
    sel = {x["selection"]: x["odds"] for x in priced[-1][1]["selections"]}
    assert sel["home"] == home
    assert priced[-1][0] == "e1/match_result/FT"

    p.send(
        "bet_requests",
        "a1",
        r.bet("b1", "a1", 10_00, [r.leg("e1", "home", str(home))], policy="none"),
    )
    p.send(
        "bet_requests", "a1", r.bet("b2", "a1", 10_00, [r.leg("e1", "away", "9.99")], policy="none")
    )
    p.send("bet_requests", "a1", r.bet("b3", "a1", 500_00, [r.leg("e1", "draw", "3.00")]))
    p.flush()
    decisions = wait_for(
        lambda: (d := consume_all("bet_decisions", s, expect=3, idle_s=1)) and len(d) >= 3 and d,
        60,
        what="3 decisions",
    )
    by_id = {v["bet_id"]: v for _, v in decisions}
    assert by_id["b1"]["accepted"] and by_id["b1"]["bound_odds"] == [home]
    assert by_id["b1"]["potential_return_minor"] == payout_minor(10_00, home)
    assert not by_id["b2"]["accepted"] and by_id["b2"]["reason"] == "PRICE_CHANGED"
    assert not by_id["b3"]["accepted"] and by_id["b3"]["reason"] == "INSUFFICIENT_FUNDS"

    # A duplicate bet id returns the first decision unchanged.
    p.send("bet_requests", "a1", r.bet("b1", "a1", 99_00, [r.leg("e1", "draw", "3.00")]))
    p.send("results", "e1", r.result("e1", (2, 1), (1, 0)))
    p.flush()
    settlements = wait_for(
        lambda: consume_all("settlements", s, expect=1, idle_s=1), 60, what="settlement"
    )
    assert [(v["bet_id"], v["outcome"], v["return_minor"]) for _, v in settlements] == [
        ("b1", "win", payout_minor(10_00, home))
    ]
    decisions = consume_all("bet_decisions", s, expect=4, idle_s=2)
    b1 = [v for _, v in decisions if v["bet_id"] == "b1"]
    assert len(b1) == 2 and b1[0] == b1[1]

    txs = [v for _, v in consume_all("ledger", s, expect=4, idle_s=2)]
    # Decided in one hop: a refused bet never reserved anything (no reserve/release pair).
    assert Counter(t["kind"] for t in txs) == Counter(
        {"deposit": 1, "reserve": 1, "accept": 1, "settle": 1}
    )
    balances = _ledger_checks(txs)
    assert balances["player:a1:available"] == 100_00 - 10_00 + payout_minor(10_00, home)
    assert balances["book:ggr"] == 10_00 - payout_minor(10_00, home)
    assert balances.get("player:a1:reserved", 0) == 0
    assert w.alive(), w.log_text()
