"""Exact liability by quotas on a real worker and a real broker (issue 11).

Many accounts on every account partition bet concurrently on one market near its liability
limit. Most bets are decided on their account partition against the partition's quota; the
rest go the authoritative way through the event partition, which recalls the quotas when the
book is nearly full. The market's liability never passes the limit, and every bet that still
fitted the remaining global headroom was accepted.
"""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest

from oddsflow.demo import read_changelog
from oddsflow.domain.money import payout_minor
from oddsflow.kafka import EventProducer, consume_all
from oddsflow.processors.emit import key_partition
from tests.conftest import wait_for
from tests.processors import records as r
from tests.processors.test_worker_metrics import _free_port, _scrape, _value

pytestmark = pytest.mark.integration

MARKET = "e1/match_result/FT"
LIMIT_MINOR = 600_00  # the selection limit; the market limit is far above it
N_BETS = 240
ACCOUNTS = [f"acct{i}" for i in range(48)]


def test_many_partitions_betting_at_once_never_pass_the_limit_and_refuse_only_what_did_not_fit(
    kafka_settings, worker_factory
):
    port = _free_port()
    s = kafka_settings.model_copy(
        update={
            "metrics_port": port,
            "liability_minor_max_selection": LIMIT_MINOR,
            "liability_minor_max_market": 100 * LIMIT_MINOR,
        }
    )
    partitions = {key_partition(a.encode(), 4) for a in ACCOUNTS}
    assert partitions == {0, 1, 2, 3}  # accounts on every partition
    w = worker_factory(s).start()
    p = EventProducer(s)
    p.send("fixtures", "e1", r.fixture("e1"))
    p.send("market_status", "e1", r.status("e1", "open", seq=1))
    p.send("price_updates", "e1", r.prices("e1"))
    for a in ACCOUNTS:
        p.send("deposits", a, r.deposit(a, 10_000_00))
    p.flush()
    # The status and the price travel on different topics: the market may be published twice.
    published = wait_for(
        lambda: [
            v
            for _, v in consume_all("priced_markets", s, expect=1, idle_s=1)
            if v["status"] == "open"
        ],
        90,
        what="open priced market",
    )
    home = {x["selection"]: x["odds"] for x in published[-1]["selections"]}["home"]
    rng = random.Random(11)
    stakes = {f"b{i}": rng.choice([5_00, 10_00, 20_00, 35_00]) for i in range(N_BETS)}
    bets = [(rng.choice(ACCOUNTS), b) for b in stakes]

    def added(b: str) -> int:
        return payout_minor(stakes[b], home) - stakes[b]

    assert sum(added(b) for b in stakes) > 3 * LIMIT_MINOR  # far more asked than fits

    # Concurrently from four producers: every partition's bets interleave at the worker.
    def send(chunk: list[tuple[str, str]]) -> None:
        prod = EventProducer(s)
        for a, b in chunk:
            leg = r.leg("e1", "home", str(home))
            prod.send("bet_requests", a, r.bet(b, a, stakes[b], [leg], policy="none"))
        prod.flush()

    threads = [threading.Thread(target=send, args=(bets[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    decisions = wait_for(
        lambda: (
            (d := consume_all("bet_decisions", s, expect=N_BETS, idle_s=1))
            and len(d) >= N_BETS
            and d
        ),
        240,
        1,
        "every bet decided",
    )
    per_bet = Counter(v["bet_id"] for _, v in decisions)
    assert set(per_bet) == set(stakes) and max(per_bet.values()) == 1
    by_id = {v["bet_id"]: v for _, v in decisions}
    accepted = [b for b, d in by_id.items() if d["accepted"]]
    refused = [b for b, d in by_id.items() if not d["accepted"]]
    assert all(by_id[b]["bound_odds"] == [home] for b in accepted)

    # Never past the limit.
    liability = sum(added(b) for b in accepted)
    assert liability <= LIMIT_MINOR
    # Nothing refused that fitted: the liability only grows, so a bet refused while it
    # fitted the headroom left then still fits what is left at the end.
    assert refused
    assert {by_id[b]["reason"] for b in refused} == {"LIABILITY_SELECTION"}
    for b in refused:
        assert LIMIT_MINOR - liability < added(b), f"{b} fitted the headroom yet was refused"

    # The event side's book learned exactly the accepted bets, once each.
    books = wait_for(
        lambda: (
            (b := read_changelog(s, "liabilities").get(MARKET))
            and b["by_currency"]["GBP"]["liability"]["stakes_minor"]
            == sum(stakes[x] for x in accepted)
            and b
        ),
        60,
        1,
        "every accepted leg learned",
    )
    book = books["by_currency"]["GBP"]
    assert book["liability"]["returns_minor"]["home"] == sum(
        payout_minor(stakes[x], home) for x in accepted
    )
    assert not book["recalling"] and book["parked"] == []
    # Both paths ran: most bets on the partitions' quotas, the rest the authoritative way.
    text = _scrape(port)
    fast = _value(text, "oddsflow_bet_decision_paths_total", path="fast")
    slow = _value(text, "oddsflow_bet_decision_paths_total", path="authoritative")
    assert fast > 0 and slow > 0 and fast + slow == N_BETS
    assert "Traceback" not in w.log_text()
