"""Agent tests of provider-settled markets (UOF): ``provider_settlements`` and
``provider_cancels`` through the event-side handler, the wallet and the ledger.

The same Engine as tests/processors/test_handlers.py (every input and output goes through its
topic's Avro schema), with the provider handler wired as processors/app.py wires it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import REGISTRY

from oddsflow.domain.money import payout_minor
from oddsflow.domain.provider_settlement import CertaintyPolicy
from oddsflow.processors.markets import InputError
from oddsflow.processors.provider import ProviderHandler
from oddsflow.processors.state import Store
from tests.processors import records as r
from tests.processors.test_handlers import NOW, Engine, market_up

MID = "e1/match_result/FT"
STAKE = 10_00
T = r.T0_MS


class ProviderEngine(Engine):
    def __init__(self, policy: CertaintyPolicy = CertaintyPolicy.SETTLE_LIVE_RESETTLE_CONFIRMED):
        super().__init__()
        self.state["provider"] = {}
        self.p = ProviderHandler(self.m, Store(self.state["provider"]), policy)
        self.routes["provider_settlements"] = self.p.on_provider_settlement
        self.routes["provider_cancels"] = self.p.on_provider_cancel

    def settlements(self, bet_id: str) -> list[tuple[str, int, int, int]]:
        """(outcome, return, previous return, revision) of every settlement record of a bet."""
        return [
            (s["outcome"], s["return_minor"], s["previous_return_minor"], s["revision"])
            for s in self.out("settlements")
            if s["bet_id"] == bet_id
        ]

    def balances(self) -> dict[str, int]:
        bal: dict[str, int] = {}
        for t in self.out("ledger"):
            assert sum(p["amount_minor"] for p in t["postings"]) == 0, t  # every tx balances
            for p in t["postings"]:
                bal[p["account"]] = bal.get(p["account"], 0) + p["amount_minor"]
        return bal

    def check_ledger(self, account: str = "a1") -> dict[str, int]:
        """Every transaction balances, ids are unique, and the wallet is what the postings say."""
        ids = [t["tx_id"] for t in self.out("ledger")]
        assert len(ids) == len(set(ids)), ids
        bal = self.balances()
        assert sum(bal.values()) == 0
        w = self.w._get_wallet(account, "GBP")
        available = bal.get(f"player:{account}:available", 0)
        reserved = bal.get(f"player:{account}:reserved", 0)
        assert (w.balance_minor, w.reserved_minor) == (available + reserved, reserved)
        return bal


def verdict(sel: str, result: int, void: str | None = None, dh: str | None = None) -> dict:
    return {
        "selection": sel,
        "result": result,
        "void_factor": None if void is None else Decimal(void),
        "dead_heat_factor": None if dh is None else Decimal(dh),
    }


def HOME_WON() -> list[dict[str, Any]]:
    return [verdict("home", 1), verdict("draw", 0), verdict("away", 0)]


def HOME_LOST() -> list[dict[str, Any]]:
    return [verdict("home", 0), verdict("draw", 1), verdict("away", 0)]


def settle(
    seq: int,
    outcomes: list[dict[str, Any]],
    certainty: int = 1,
    kind: str = "settle",
    market_id: str = MID,
    event_id: str = "e1",
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "provider": "sportradar",
        "seq": seq,
        "kind": kind,
        "market_id": market_id,
        "market_type": market_id.split("/")[1],
        "period": market_id.split("/")[2],
        "line": None,
        "provider_market": "1",
        "certainty": 0 if kind == "rollback" else certainty,
        "outcomes": [] if kind == "rollback" else outcomes,
        "producer": 1,
        "provider_ts": T,
    }


def rollback(seq: int, market_id: str = MID, event_id: str = "e1") -> dict[str, Any]:
    return settle(seq, [], kind="rollback", market_id=market_id, event_id=event_id)


def cancel(
    seq: int,
    start: int | None = None,
    end: int | None = None,
    kind: str = "cancel",
    market_id: str | None = MID,
) -> dict[str, Any]:
    return {
        "event_id": "e1",
        "provider": "sportradar",
        "seq": seq,
        "kind": kind,
        "market_id": market_id,
        "provider_market": None if market_id is None else "1",
        "start_time": start,
        "end_time": end,
        "void_reason": None,
        "superceded_by": None,
        "producer": 1,
        "provider_ts": T,
    }


def placed(e: ProviderEngine, bet_id: str, sel: str = "home", placed_at: int = T, acct="a1"):
    e.feed("bet_requests", r.bet(bet_id, acct, STAKE, [r.leg("e1", sel)], placed_at=placed_at))
    d = e.decisions()[bet_id]
    assert d["accepted"], d
    return d["bound_odds"][0]


def up(policy=CertaintyPolicy.SETTLE_LIVE_RESETTLE_CONFIRMED) -> ProviderEngine:
    e = ProviderEngine(policy)
    market_up(e)
    e.feed("deposits", r.deposit("a1", 1000_00))
    return e


def stale_count(kind: str) -> float:
    return REGISTRY.get_sample_value("oddsflow_stale_updates_total", {"kind": kind}) or 0.0


@pytest.mark.parametrize(
    ("home_verdict", "outcome", "expected"),
    [
        (verdict("home", 1), "win", lambda o: payout_minor(STAKE, o)),
        (verdict("home", 0), "lose", lambda o: 0),
        (verdict("home", 0, void="1"), "void", lambda o: STAKE),
        (verdict("home", 1, void="1"), "void", lambda o: STAKE),
        (verdict("home", 1, void="0.5"), "half_win", lambda o: payout_minor(STAKE, (o + 1) / 2)),
        (verdict("home", 0, void="0.5"), "half_lose", lambda o: STAKE // 2),
        (verdict("home", 1, dh="0.5"), "win", lambda o: payout_minor(STAKE, o * Decimal("0.5"))),
        (
            verdict("home", 1, void="0.5", dh="0.5"),
            "half_win",
            lambda o: payout_minor(STAKE, (o * Decimal("0.5") + 1) / 2),
        ),
    ],
    ids=["won", "lost", "void", "void-won", "half-won", "half-lost", "dead-heat", "half-dead-heat"],
)
def test_provider_verdict_pays_at_the_bound_odds(home_verdict, outcome, expected):
    e = up()
    odds = placed(e, "b1")
    e.feed("provider_settlements", settle(1, [home_verdict, verdict("draw", 0)]))
    assert e.settlements("b1") == [(outcome, expected(odds), 0, 0)]
    assert [t["kind"] for t in e.out("ledger")][-1] == "settle"
    bal = e.check_ledger()
    assert bal.get("book:open_bets", 0) == 0
    assert bal.get("book:ggr", 0) == STAKE - expected(odds)
    # The market takes no more bets once the provider settled it.
    assert e.out("priced_markets")[-1]["status"] == "settled"
    e.feed("bet_requests", r.bet("b2", "a1", STAKE, [r.leg("e1", "home")]))
    assert e.decisions()["b2"]["reason"] == "MARKET_CLOSED"


def test_a_selection_without_a_verdict_stays_open():
    e = up()
    placed(e, "b1", "away")
    e.feed("provider_settlements", settle(1, [verdict("home", 1)]))
    assert e.settlements("b1") == []
    assert e.check_ledger()["book:open_bets"] == STAKE


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        # live-scouted settles; the confirmation differs: resettled by the difference
        ([(1, "won"), (2, "lost")], ["win", "lose"]),
        # the confirmation agrees: nothing more
        ([(1, "won"), (2, "won")], ["win"]),
        # after the confirmation a live-scouted message never overrides it
        ([(1, "won"), (2, "won"), (1, "lost")], ["win"]),
        ([(1, "won"), (2, "lost"), (1, "won")], ["win", "lose"]),
        # a corrected live-scouted settlement before any confirmation resettles
        ([(1, "won"), (1, "lost")], ["win", "lose"]),
    ],
)
def test_certainty_policy_settles_on_live_and_resettles_on_a_differing_confirmation(
    messages, expected
):
    e = up()
    odds = placed(e, "b1")
    for seq, (certainty, verdicts) in enumerate(messages, start=1):
        e.feed(
            "provider_settlements",
            settle(seq, HOME_WON() if verdicts == "won" else HOME_LOST(), certainty),
        )
    returns = [payout_minor(STAKE, odds) if x == "win" else 0 for x in expected]
    assert e.settlements("b1") == [
        (x, ret, prev, rev)
        for rev, (x, ret, prev) in enumerate(zip(expected, returns, [0, *returns], strict=False))
    ]
    # Only the difference was ever posted: the player holds exactly the final return.
    bal = e.check_ledger()
    assert bal["player:a1:available"] == 1000_00 - STAKE + returns[-1]
    assert [t["kind"] for t in e.out("ledger")].count("settle") == 1


def test_confirmed_only_policy_ignores_live_scouted_settlements():
    e = up(CertaintyPolicy.CONFIRMED_ONLY)
    odds = placed(e, "b1")
    e.feed("provider_settlements", settle(1, HOME_WON(), certainty=1))
    assert e.settlements("b1") == []
    e.feed("provider_settlements", settle(2, HOME_WON(), certainty=2))
    assert e.settlements("b1") == [("win", payout_minor(STAKE, odds), 0, 0)]
    e.check_ledger()


def test_rollback_reopens_the_bet_and_moves_the_money_back_then_it_settles_again():
    e = up()
    odds = placed(e, "b1")
    won = payout_minor(STAKE, odds)
    e.feed("provider_settlements", settle(1, HOME_WON()))
    e.feed("provider_settlements", rollback(2))
    assert e.settlements("b1") == [("win", won, 0, 0), ("open", 0, won, 1)]
    reopen = e.out("ledger")[-1]
    assert reopen["kind"] == "reopen" and reopen["tx_id"] == "a1|b1:reopen:1"
    bal = e.check_ledger()
    # exactly as before the settlement: the stake is an open bet again, GGR holds nothing
    assert bal["player:a1:available"] == 1000_00 - STAKE
    assert bal.get("book:open_bets", 0) == STAKE and bal.get("book:ggr", 0) == 0
    assert e.out("priced_markets")[-1]["status"] == "suspended"  # the provider decides next
    # settled again afresh (any certainty): a resettlement under the next revision
    e.feed("provider_settlements", settle(3, HOME_LOST(), certainty=1))
    assert e.settlements("b1")[-1] == ("lose", 0, 0, 2)
    assert e.out("ledger")[-1]["tx_id"] == "a1|b1:resettle:2"
    bal = e.check_ledger()
    assert bal["player:a1:available"] == 1000_00 - STAKE
    assert bal.get("book:open_bets", 0) == 0 and bal.get("book:ggr", 0) == STAKE
    # a rollback of a market that is not settled changes nothing for the wallet
    e.feed("provider_settlements", rollback(4))
    e.feed("provider_settlements", rollback(5))
    assert e.settlements("b1")[-1] == ("open", 0, 0, 3)
    assert len(e.settlements("b1")) == 4
    e.check_ledger()


def test_cancel_window_voids_exactly_the_bets_placed_inside_it_and_its_rollback_restores_them():
    e = up()
    start, end = T + 10_000, T + 20_000
    odds = {
        b: placed(e, b, placed_at=at)
        for b, at in [
            ("before", start - 1),
            ("at_start", start),
            ("inside", end - 1),
            ("at_end", end),
            ("after", end + 5_000),
        ]
    }
    e.feed("provider_cancels", cancel(1, start, end))
    voided = {s["bet_id"] for s in e.out("settlements")}
    assert voided == {"at_start", "inside"}
    for b in voided:
        assert e.settlements(b) == [("void", STAKE, 0, 0)]
    # the market settles: the cancelled bets stay void, the others settle by the verdict
    e.feed("provider_settlements", settle(1, HOME_WON()))
    for b in ("before", "at_end", "after"):
        assert e.settlements(b) == [("win", payout_minor(STAKE, odds[b]), 0, 0)]
    for b in voided:
        assert len(e.settlements(b)) == 1
    e.check_ledger()
    # the cancel is rolled back: its bets get what the market's settlement says now
    e.feed("provider_cancels", cancel(2, start, end, kind="rollback"))
    for b in voided:
        won = payout_minor(STAKE, odds[b])
        assert e.settlements(b) == [("void", STAKE, 0, 0), ("win", won, STAKE, 1)]
    for b in ("before", "at_end", "after"):
        assert len(e.settlements(b)) == 1
    bal = e.check_ledger()
    assert bal.get("book:open_bets", 0) == 0


def test_cancel_rollback_before_any_settlement_gives_the_bets_back_open():
    e = up()
    placed(e, "b1", placed_at=T + 5)
    e.feed("provider_cancels", cancel(1, T, T + 10))
    e.feed("provider_cancels", cancel(2, T, T + 10, kind="rollback"))
    assert e.settlements("b1") == [("void", STAKE, 0, 0), ("open", 0, STAKE, 1)]
    bal = e.check_ledger()
    assert bal.get("book:open_bets", 0) == STAKE and bal.get("book:ggr", 0) == 0
    assert bal["player:a1:available"] == 1000_00 - STAKE


def test_an_event_wide_cancel_without_a_window_voids_every_bet_of_the_event():
    e = up()
    e.feed(
        "price_updates", r.prices("e1", ("1.90", "1.90"), 2, "both_teams_to_score", ("yes", "no"))
    )
    placed(e, "b1")
    e.feed(
        "bet_requests",
        r.bet("b2", "a1", STAKE, [r.leg("e1", "yes", market_type="both_teams_to_score")]),
    )
    assert e.decisions()["b2"]["accepted"]
    e.feed("provider_cancels", cancel(1, market_id=None))
    assert {s["bet_id"]: s["outcome"] for s in e.out("settlements")} == {"b1": "void", "b2": "void"}
    bal = e.check_ledger()
    assert bal["player:a1:available"] == 1000_00 and bal.get("book:open_bets", 0) == 0
    e.feed("provider_cancels", cancel(2, kind="rollback", market_id=None))
    assert {s["bet_id"]: s["outcome"] for s in e.out("settlements")[-2:]} == {
        "b1": "open",
        "b2": "open",
    }
    assert e.check_ledger()["book:open_bets"] == 2 * STAKE


def test_duplicate_and_older_messages_are_dropped_and_counted():
    e = up()
    odds = placed(e, "b1")
    s_before, c_before = stale_count("provider_settlement"), stale_count("provider_cancel")
    e.feed("provider_settlements", settle(5, HOME_WON()))
    n = len(e.outputs)
    e.feed("provider_settlements", settle(5, HOME_WON()))  # the same message again
    e.feed("provider_settlements", settle(4, HOME_LOST()))  # older than the one applied
    e.feed("provider_settlements", rollback(3))  # older too
    assert len(e.outputs) == n
    assert stale_count("provider_settlement") == s_before + 3
    e.feed("provider_cancels", cancel(7, T - 1, T + 1))
    n = len(e.outputs)
    e.feed("provider_cancels", cancel(7, T - 1, T + 1))
    e.feed("provider_cancels", cancel(6, T - 1, T + 1, kind="rollback"))
    assert len(e.outputs) == n
    assert stale_count("provider_cancel") == c_before + 2
    assert e.settlements("b1") == [
        ("win", payout_minor(STAKE, odds), 0, 0),
        ("void", STAKE, payout_minor(STAKE, odds), 1),
    ]
    e.check_ledger()


def test_a_redelivered_leg_settlement_batch_is_harmless():
    e = up()
    placed(e, "b1")
    e.feed("provider_settlements", settle(1, HOME_WON()))
    e.feed("provider_settlements", rollback(2))
    batches = e.out("leg_settlements")
    n = len(e.outputs)
    for b in batches:  # both batches again, in order and reversed
        e.feed("leg_settlements", b)
    for b in reversed(batches):
        e.feed("leg_settlements", b)
    assert len(e.outputs) == n
    e.check_ledger()


def test_accumulator_with_a_provider_settled_leg_reopens_and_settles_again():
    e = up()
    market_up(e, "e2")
    e.feed(
        "bet_requests",
        r.bet("acc", "a1", STAKE, [r.leg("e1", "home"), r.leg("e2", "home")]),
    )
    d = e.decisions()["acc"]
    assert d["accepted"]
    o1, o2 = d["bound_odds"]
    e2_mid = "e2/match_result/FT"
    e.feed("provider_settlements", settle(1, HOME_WON()))
    assert e.settlements("acc") == []  # the other leg is still open
    e.feed("provider_settlements", settle(1, HOME_WON(), market_id=e2_mid, event_id="e2"))
    won = payout_minor(STAKE, o1 * o2)
    assert e.settlements("acc") == [("win", won, 0, 0)]
    e.feed("provider_settlements", rollback(2))
    assert e.settlements("acc")[-1] == ("open", 0, won, 1)
    e.feed("provider_settlements", settle(3, [verdict("home", 1, void="1")]))
    assert e.settlements("acc")[-1] == ("win", payout_minor(STAKE, o2), 0, 2)
    bal = e.check_ledger()
    assert bal.get("book:open_bets", 0) == 0


def test_crash_and_replay_of_provider_messages_changes_nothing():
    inputs = [
        ("provider_settlements", settle(1, HOME_WON())),
        ("provider_cancels", cancel(2, T - 1, T + 1)),
        ("provider_settlements", rollback(3)),
        ("provider_cancels", cancel(4, T - 1, T + 1, kind="rollback")),
        ("provider_settlements", settle(5, HOME_LOST(), certainty=2)),
    ]
    once = up()
    placed(once, "b1")
    for t, v in inputs:
        once.feed(t, v)
    e = up()
    placed(e, "b1")
    for t, v in inputs[:3]:
        e.feed(t, v)
    for t, v in inputs:  # everything redelivered after a crash that kept the state
        e.feed(t, v)
    assert [x["tx_id"] for x in e.out("ledger")] == [x["tx_id"] for x in once.out("ledger")]
    assert e.state["wallets"] == once.state["wallets"]
    assert [s[0] for s in once.settlements("b1")] == ["win", "void", "open", "lose"]
    once.check_ledger()


@pytest.mark.parametrize(
    "rec",
    [
        settle(1, [verdict("home", 1, void="0.3")]),  # no such void factor
        settle(1, HOME_WON(), certainty=0),  # a settlement needs a certainty
        settle(1, [verdict("banana", 1)]),  # not a selection of the market
        settle(1, HOME_WON(), market_id="e2/match_result/FT"),  # another event's market
        {**cancel(1), "start_time": T + 10, "end_time": T},  # a window ending before it starts
    ],
    ids=["void-factor", "certainty", "selection", "other-event", "window"],
)
def test_unusable_provider_records_raise_input_error_for_the_dead_letter_topic(rec):
    e = up()
    placed(e, "b1")
    topic = "provider_cancels" if "start_time" in rec else "provider_settlements"
    with pytest.raises(InputError):
        e.feed(topic, rec, now_ms=NOW)


def test_after_a_rollback_the_market_trades_again_and_one_settlement_settles_old_and_new_bets():
    e = up()
    o1 = placed(e, "b1")
    e.feed("provider_settlements", settle(1, HOME_WON()))
    e.feed("market_status", r.status("e1", "open", seq=2))  # a settled market stays closed
    assert e.out("priced_markets")[-1]["status"] == "settled"
    e.feed("provider_settlements", rollback(2))
    e.feed("market_status", r.status("e1", "open", seq=3))  # the provider trades it again
    assert e.out("priced_markets")[-1]["status"] == "open"
    o2 = placed(e, "b2", "draw")
    e.feed("provider_settlements", settle(3, HOME_LOST(), certainty=2))
    assert e.settlements("b1")[-1] == ("lose", 0, 0, 2)
    assert e.settlements("b2") == [("win", payout_minor(STAKE, o2), 0, 0)]
    assert o1 != o2
    bal = e.check_ledger()
    assert bal.get("book:open_bets", 0) == 0
    assert bal["player:a1:available"] == 1000_00 - 2 * STAKE + payout_minor(STAKE, o2)
