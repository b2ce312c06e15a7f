"""End to end over a real RabbitMQ and Kafka, the engine included (issue 14's proof).

A match's UOF messages go to RabbitMQ one by one - the fixture, odds changes, a bet stop, a live
scouted settlement with a void factor and a dead heat, a redelivered copy of it, a rollback, a
cancel window and the confirmed settlement - and `oddsflow uof consume` puts them on Kafka,
where an `oddsflow worker` subprocess prices the markets, decides the bets placed between the
messages (Avro records on bets.requests) and settles them as the provider says. Every decision
and every settlement revision is what the rules give at the bound odds, and the ledger on
Kafka balances: every transaction, every account, the player's money and the book's.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest

from oddsflow.domain.money import payout_minor
from oddsflow.kafka import EventProducer, consume_all
from tests.conftest import wait_for
from tests.processors import records as r

from .test_amqp import Consumer, _publish

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.slow]

EV = "sr:match:60001"
T = 1764680000000  # the match's provider clock (ms)
STAKE = 10_00
DEPOSIT = 1000_00

FIXTURE = f"""<?xml version="1.0" encoding="UTF-8"?>
<fixtures_fixture generated_at="2025-12-02T10:00:00+00:00" xmlns="http://schemas.sportradar.com/sportsapi/v1/unified">
  <fixture id="{EV}" scheduled="2025-12-02T15:00:00+00:00" start_time="2025-12-02T15:00:00+00:00" status="not_started">
    <tournament id="sr:tournament:17" name="Premier League"><sport id="sr:sport:1" name="Soccer"/></tournament>
    <competitors>
      <competitor id="sr:competitor:1" name="Harbour Town" qualifier="home"/>
      <competitor id="sr:competitor:2" name="Mill Rovers" qualifier="away"/>
    </competitors>
  </fixture>
</fixtures_fixture>"""

ODDS_PREMATCH = f"""<odds_change product="3" event_id="{EV}" timestamp="{T + 1000}"><odds>
  <market id="1" status="1"><outcome id="1" odds="2.10" active="1"/><outcome id="2" odds="3.40" active="1"/><outcome id="3" odds="3.60" active="1"/></market>
  <market id="16" specifiers="hcp=-0.25" status="1"><outcome id="1714" odds="1.95" active="1"/><outcome id="1715" odds="1.90" active="1"/></market>
  <market id="18" specifiers="total=2.5" status="1"><outcome id="12" odds="1.85" active="1"/><outcome id="13" odds="2.00" active="1"/></market>
  <market id="29" status="1"><outcome id="74" odds="1.72" active="1"/><outcome id="76" odds="2.05" active="1"/></market>
</odds></odds_change>"""

BET_STOP = f'<bet_stop groups="all" product="3" event_id="{EV}" timestamp="{T + 2000}"/>'

ODDS_AGAIN = f"""<odds_change product="3" event_id="{EV}" timestamp="{T + 3000}"><odds>
  <market id="1" status="1"><outcome id="1" odds="2.00" active="1"/><outcome id="2" odds="3.50" active="1"/><outcome id="3" odds="3.80" active="1"/></market>
  <market id="18" specifiers="total=2.5" status="1"><outcome id="12" odds="1.80" active="1"/><outcome id="13" odds="2.05" active="1"/></market>
</odds></odds_change>"""

# Live scouted: home won the 1x2, the handicap is half won / half lost (void factor 0.5),
# under 2.5 won, both teams scored with a dead heat factor of 1/2.
SETTLE_LIVE = f"""<bet_settlement certainty="1" product="1" event_id="{EV}" timestamp="{T + 5000}"><outcomes>
  <market id="1"><outcome id="1" result="1"/><outcome id="2" result="0"/><outcome id="3" result="0"/></market>
  <market id="16" specifiers="hcp=-0.25"><outcome id="1714" result="1" void_factor="0.5"/><outcome id="1715" result="0" void_factor="0.5"/></market>
  <market id="18" specifiers="total=2.5"><outcome id="12" result="0"/><outcome id="13" result="1"/></market>
  <market id="29"><outcome id="74" result="1" dead_heat_factor="0.5"/><outcome id="76" result="0"/></market>
</outcomes></bet_settlement>"""

ROLLBACK = f"""<rollback_bet_settlement product="1" event_id="{EV}" timestamp="{T + 6000}"><market id="1"/></rollback_bet_settlement>"""

# Bets on the total placed in [T+3000, T+4000) are void (a wrong price was offered then).
CANCEL = f"""<bet_cancel start_time="{T + 3000}" end_time="{T + 4000}" product="1" event_id="{EV}" timestamp="{T + 7000}">
  <market id="18" specifiers="total=2.5" void_reason="12"/></bet_cancel>"""

# Confirmed: the 1x2 was a draw after all.
SETTLE_CONFIRMED = f"""<bet_settlement certainty="2" product="3" event_id="{EV}" timestamp="{T + 8000}"><outcomes>
  <market id="1"><outcome id="1" result="0"/><outcome id="2" result="1"/><outcome id="3" result="0"/></market>
</outcomes></bet_settlement>"""


def _leg(market: str, selection: str, line: str | None = None) -> dict[str, Any]:
    return r.leg(EV, selection, "1.01", market_type=market, line=line)


def _ledger(txs: list[dict[str, Any]]) -> dict[str, int]:
    ids = [t["tx_id"] for t in txs]
    assert len(ids) == len(set(ids)), "a ledger transaction was produced twice"
    bal: dict[str, int] = defaultdict(int)
    for t in txs:
        assert sum(p["amount_minor"] for p in t["postings"]) == 0, t
        for p in t["postings"]:
            bal[p["account"]] += p["amount_minor"]
    assert sum(bal.values()) == 0
    return bal


def test_a_uof_match_settles_bets_as_the_provider_says_with_a_balanced_ledger(
    kafka_settings, rabbitmq, worker_factory, tmp_path
):
    s = kafka_settings
    tag = uuid.uuid4().hex[:8]
    exchange, queue = f"uof-engine-{tag}", f"oddsflow.uof.engine.{tag}"
    rk = f"hi.-.live.x.1.sr:match.{tag}"

    def uof(*bodies: str) -> None:
        asyncio.run(_publish(rabbitmq, exchange, queue, [(rk, b.encode()) for b in bodies]))

    producer = EventProducer(s)

    def bet(bet_id: str, leg: dict[str, Any], placed_at: int) -> None:
        producer.send("bet_requests", "a1", r.bet(bet_id, "a1", STAKE, [leg], placed_at=placed_at))
        producer.flush()

    def decisions(n: int) -> dict[str, dict[str, Any]]:
        got = wait_for(
            lambda: (
                (d := consume_all("bet_decisions", s, expect=n, idle_s=0.5)) and len(d) >= n and d
            ),
            90,
            what=f"{n} decisions",
        )
        return {v["bet_id"]: v for _, v in got}

    def settlements(n: int) -> list[dict[str, Any]]:
        got = wait_for(
            lambda: (
                (x := consume_all("settlements", s, expect=n, idle_s=0.5)) and len(x) >= n and x
            ),
            90,
            what=f"{n} settlements",
        )
        return [v for _, v in got]

    def priced(n: int) -> dict[str, dict[str, Any]]:
        got = wait_for(
            lambda: (
                (x := consume_all("priced_markets", s, expect=n, idle_s=0.5)) and len(x) >= n and x
            ),
            90,
            what=f"{n} priced markets",
        )
        return {k: v for k, v in got}  # the latest per market

    env = {
        **s.child_env(),
        "ODDSFLOW_UOF_AMQP_URL": rabbitmq,
        "ODDSFLOW_UOF_EXCHANGE": exchange,
        "ODDSFLOW_UOF_QUEUE": queue,
        "ODDSFLOW_UOF_BATCH_MAX": "1",
        "ODDSFLOW_UOF_PREFETCH": "1",
        "ODDSFLOW_UOF_ALIVE_TIMEOUT_S": "86400",  # no wall-clock producer timeouts here
    }
    worker = worker_factory(s).start()
    consumer = Consumer(env, tmp_path).start()
    try:
        producer.send("deposits", "a1", r.deposit("a1", DEPOSIT))
        producer.flush()
        uof(FIXTURE, ODDS_PREMATCH)
        markets = priced(4)
        assert {m["status"] for m in markets.values()} == {"open"}
        mid_1x2, mid_total = f"{EV}/match_result/FT", f"{EV}/total_goals/FT/2.5"
        mid_hcp, mid_btts = f"{EV}/asian_handicap/FT/-0.25", f"{EV}/both_teams_to_score/FT"
        assert set(markets) == {mid_1x2, mid_total, mid_hcp, mid_btts}

        # pre-match bets, placed before the cancel window
        bet("home", _leg("match_result", "home"), T + 1500)
        bet("over", _leg("total_goals", "over", "2.5"), T + 1500)
        bet("hcp", _leg("asian_handicap", "home", "-0.25"), T + 1500)
        bet("btts", _leg("both_teams_to_score", "yes"), T + 1500)
        decisions(4)

        uof(BET_STOP)
        wait_for(
            lambda: priced(4)[mid_1x2]["status"] == "suspended", 60, what="the bet stop applied"
        )
        bet("stopped", _leg("match_result", "away"), T + 2500)
        stopped = decisions(5)["stopped"]
        assert (stopped["accepted"], stopped["reason"]) == (False, "MARKET_SUSPENDED")

        uof(ODDS_AGAIN)
        wait_for(lambda: priced(4)[mid_total]["status"] == "open", 60, what="the market reopened")
        # inside the window [T+3000, T+4000) that the provider cancels later
        bet("under_in_window", _leg("total_goals", "under", "2.5"), T + 3500)
        bet("away", _leg("match_result", "away"), T + 3500)
        d = decisions(7)
        accepted = {b for b, x in d.items() if x["accepted"]}
        assert accepted == {"home", "over", "hcp", "btts", "under_in_window", "away"}
        odds = {b: Decimal(d[b]["bound_odds"][0]) for b in accepted}

        # settled live, and the same message redelivered: applied once
        uof(SETTLE_LIVE, SETTLE_LIVE)
        first = settlements(6)
        win = {b: payout_minor(STAKE, odds[b]) for b in accepted}
        expected_first = {
            "home": ("win", win["home"]),
            "away": ("lose", 0),
            "over": ("lose", 0),
            "under_in_window": ("win", win["under_in_window"]),
            "hcp": ("half_win", payout_minor(STAKE, (odds["hcp"] + 1) / 2)),
            "btts": ("win", payout_minor(STAKE, odds["btts"] * Decimal("0.5"))),
        }
        assert {x["bet_id"]: (x["outcome"], x["return_minor"]) for x in first} == expected_first
        assert all(x["revision"] == 0 for x in first)
        assert priced(4)[mid_1x2]["status"] == "settled"

        uof(ROLLBACK)  # the 1x2 is open again
        uof(CANCEL)  # the bet on the total placed inside the window is void
        uof(SETTLE_CONFIRMED)  # the 1x2 was a draw
        # home: win, open, lose; away: lose, open, lose; under_in_window: win, void
        every = settlements(6 + 2 + 1 + 2)
    finally:
        consumer.stop()
        worker.stop()

    by_bet: dict[str, list[tuple[str, int, int, int]]] = defaultdict(list)
    for x in every:
        by_bet[x["bet_id"]].append(
            (x["outcome"], x["return_minor"], x["previous_return_minor"], x["revision"])
        )
    assert by_bet["home"] == [
        ("win", win["home"], 0, 0),
        ("open", 0, win["home"], 1),
        ("lose", 0, 0, 2),
    ]
    assert by_bet["away"] == [("lose", 0, 0, 0), ("open", 0, 0, 1), ("lose", 0, 0, 2)]
    assert by_bet["under_in_window"] == [
        ("win", win["under_in_window"], 0, 0),
        ("void", STAKE, win["under_in_window"], 1),
    ]
    for b in ("over", "hcp", "btts"):  # untouched by the rollback, the cancel, the confirmation
        assert len(by_bet[b]) == 1

    txs = [v for _, v in consume_all("ledger", s, expect=1, idle_s=1.0)]
    bal = _ledger(txs)
    final = {
        "home": 0,
        "away": 0,
        "over": 0,
        "under_in_window": STAKE,
        "hcp": expected_first["hcp"][1],
        "btts": expected_first["btts"][1],
    }
    assert bal["player:a1:available"] == DEPOSIT - 6 * STAKE + sum(final.values())
    assert bal.get("player:a1:reserved", 0) == 0
    assert bal.get("book:open_bets", 0) == 0  # every accepted bet is settled
    assert bal["book:ggr"] == 6 * STAKE - sum(final.values())
    kinds = sorted(t["kind"] for t in txs)
    # home and away reopened (the lost away bet pays nothing back, its stake is open again)
    assert kinds.count("reopen") == 2
    assert kinds.count("resettle") == 3  # home and away settled again, the void bet refunded
    dead = [v for _, v in consume_all("dead_letters", s, idle_s=1.0)]
    assert dead == []
