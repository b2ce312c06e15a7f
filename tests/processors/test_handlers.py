"""Agent tests: the processors' handlers fed plain input lists, with dict-backed state.

These run the exact code the Faust agents run (decode -> handler -> outputs) without a
broker, including crash-and-resume: state is a dict we keep or drop, inputs are replayed.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Any

import orjson
import pytest

from oddsflow import topology
from oddsflow.codec import Codec
from oddsflow.domain.acceptance import Limits
from oddsflow.domain.money import payout_minor
from oddsflow.processors.markets import Book, InputError, MarketsHandler
from oddsflow.processors.state import Effects, Store
from oddsflow.processors.wallet import WalletHandler
from tests.processors import records as r

NOW = r.T0_MS + 1000


class Engine:
    """Both handlers wired like the topology: outputs routed to their consumers in order."""

    def __init__(
        self, limits: Limits | None = None, state: dict[str, dict[str, bytes]] | None = None
    ) -> None:
        self.state = (
            state
            if state is not None
            else {n: {} for n in ("markets", "events", "legs", "liab", "wallets", "bets")}
        )
        st = {k: Store(v) for k, v in self.state.items()}
        self.limits = limits or Limits(bet_delay_ms_in_play=0)
        self.m = MarketsHandler(
            st["markets"], st["events"], st["legs"], st["liab"], Book(limits=self.limits)
        )
        self.w = WalletHandler(st["wallets"], st["bets"], self.limits)
        self.outputs: list[tuple[str, str, dict[str, Any]]] = []
        self.routes = {
            "fixtures": self.m.on_fixture,
            "price_updates": self.m.on_price_update,
            "market_status": self.m.on_market_status,
            "results": self.m.on_result,
            "scores": self.m.on_score,
            "leg_commands": self.m.on_leg_command,
            "leg_delays": self.m.on_leg_command,
            "bet_requests": self.w.on_bet_request,
            "deposits": self.w.on_deposit,
            "leg_verdicts": self.w.on_leg_verdict,
            "leg_settlements": self.w.on_leg_settlements,
        }

    def feed(self, topic: str, rec: dict[str, Any], now_ms: int = NOW) -> None:
        queue = [(topic, _roundtrip(topic, rec))]
        while queue:
            t, v = queue.pop(0)
            fx = Effects()
            self.routes[t](v, fx, now_ms)
            for o in fx.out:
                # Every output is encoded with its topic's schema and decoded, as a consumer
                # sees it: a record the schema cannot carry fails the test here.
                decoded = _roundtrip(o.topic, o.value)
                self.outputs.append((o.topic, o.key, decoded))
                if o.topic in self.routes and o.topic != "leg_delays":
                    queue.append((o.topic, decoded))

    def out(self, topic: str) -> list[dict[str, Any]]:
        return [v for t, _, v in self.outputs if t == topic]

    def decisions(self) -> dict[str, dict[str, Any]]:
        return {d["bet_id"]: d for d in self.out("bet_decisions")}


@cache
def _codec(topic: str) -> Codec:
    return Codec(topology.load().topic(topic).value_schema)


def _roundtrip(topic: str, v: dict[str, Any]) -> dict[str, Any]:
    # What a consumer decodes is what the producer encoded, through the topic's Avro schema.
    codec = _codec(topic)
    return codec.decode(codec.encode(v))


def market_up(e: Engine, event_id: str = "e1", odds=("2.10", "3.40", "3.60")) -> Decimal:
    e.feed("fixtures", r.fixture(event_id))
    e.feed("market_status", r.status(event_id, "open", seq=1))
    e.feed("price_updates", r.prices(event_id, odds))
    pm = e.out("priced_markets")[-1]
    return {s["selection"]: s["odds"] for s in pm["selections"]}["home"]


def test_price_update_publishes_margin_applied_prices_and_drops_stale():
    e = Engine()
    market_up(e)
    pm = e.out("priced_markets")[-1]
    inv = sum(1 / s["odds"] for s in pm["selections"])
    assert inv >= Decimal("1.05")  # never below the book's margin
    n = len(e.out("priced_markets"))
    e.feed("price_updates", r.prices("e1", ("1.50", "4.00", "6.00"), seq=1))  # duplicate seq
    e.feed("price_updates", r.prices("e1", ("1.50", "4.00", "6.00"), seq=0))  # stale
    assert len(e.out("priced_markets")) == n


def test_single_accepted_then_settled_with_exact_amounts():
    e = Engine()
    home = market_up(e)
    e.feed("deposits", r.deposit("a1", 100_00))
    e.feed(
        "bet_requests", r.bet("b1", "a1", 10_00, [r.leg("e1", "home", str(home))], policy="none")
    )
    d = e.decisions()["b1"]
    assert d["accepted"] and d["bound_odds"] == [home]
    e.feed("results", r.result("e1", (2, 1), (0, 0)))
    [s] = e.out("settlements")
    assert (s["outcome"], s["return_minor"]) == ("win", payout_minor(10_00, home))
    kinds = [t["kind"] for t in e.out("ledger")]
    assert kinds == ["deposit", "reserve", "accept", "settle"]
    for t in e.out("ledger"):
        assert sum(p["amount_minor"] for p in t["postings"]) == 0


@pytest.mark.parametrize(
    ("setup", "bet_kwargs", "reason"),
    [
        ("suspend", {}, "MARKET_SUSPENDED"),
        ("none", {"policy": "none", "odds": "1.01"}, "PRICE_CHANGED"),
        ("none", {"policy": "higher", "odds": "50.00"}, "PRICE_CHANGED"),
        ("none", {"stake": 1}, "STAKE_TOO_LOW"),
        ("none", {"stake": 1_000_00}, "INSUFFICIENT_FUNDS"),
        ("none", {"event": "nope"}, "MARKET_UNKNOWN"),
        ("none", {"selection": "banana"}, "INVALID_REQUEST"),
        ("none", {"stake": 10_000_001_00}, "STAKE_TOO_HIGH"),
    ],
)
def test_rejections_by_reason(setup, bet_kwargs, reason):
    e = Engine()
    market_up(e)
    if setup == "suspend":
        e.feed("market_status", r.status("e1", "suspended", seq=2))
    e.feed("deposits", r.deposit("a1", 100_00))
    leg = r.leg(
        bet_kwargs.get("event", "e1"),
        bet_kwargs.get("selection", "home"),
        bet_kwargs.get("odds", "2.00"),
    )
    e.feed(
        "bet_requests",
        r.bet(
            "b1",
            "a1",
            bet_kwargs.get("stake", 10_00),
            [leg],
            policy=bet_kwargs.get("policy", "any"),
        ),
    )
    d = e.decisions()["b1"]
    assert (d["accepted"], d["reason"]) == (False, reason)
    # Whatever was reserved was released: the wallet is whole again.
    bal: dict[str, int] = {}
    for t in e.out("ledger"):
        for p in t["postings"]:
            bal[p["account"]] = bal.get(p["account"], 0) + p["amount_minor"]
    assert bal["player:a1:available"] == 100_00
    assert bal.get("player:a1:reserved", 0) == 0


def test_liability_limit_rejects_and_released_legs_free_liability():
    limits = Limits(
        bet_delay_ms_in_play=0,
        liability_minor_max_selection=50_00,
        liability_minor_max_market=50_00,
    )
    e = Engine(limits)
    home = market_up(e)
    e.feed("deposits", r.deposit("a1", 1000_00))
    e.feed("bet_requests", r.bet("b1", "a1", 40_00, [r.leg("e1", "home", str(home))]))
    e.feed("bet_requests", r.bet("b2", "a1", 40_00, [r.leg("e1", "home", str(home))]))
    d = e.decisions()
    assert d["b1"]["accepted"]
    assert (d["b2"]["accepted"], d["b2"]["reason"]) in {
        (False, "LIABILITY_SELECTION"),
        (False, "LIABILITY_MARKET"),
    }


def test_accumulator_waits_for_last_leg_and_releases_on_partial_reject():
    e = Engine()
    h1 = market_up(e, "e1")
    h2 = market_up(e, "e2")
    e.feed("deposits", r.deposit("a1", 100_00))
    e.feed(
        "bet_requests",
        r.bet("acc", "a1", 10_00, [r.leg("e1", "home", str(h1)), r.leg("e2", "home", str(h2))]),
    )
    assert e.decisions()["acc"]["accepted"]
    e.feed("results", r.result("e1", (1, 0)))
    assert e.out("settlements") == []  # one leg still open
    e.feed("results", r.result("e2", (3, 0)))
    [s] = e.out("settlements")
    assert s["return_minor"] == payout_minor(10_00, h1 * h2)
    # Partial reject: e3 is suspended, so the e4 leg that was granted is released.
    market_up(e, "e3")
    market_up(e, "e4")
    e.feed("market_status", r.status("e3", "suspended", seq=2))
    e.feed(
        "bet_requests",
        r.bet("acc2", "a1", 5_00, [r.leg("e4", "home", "1.5"), r.leg("e3", "home", "1.5")]),
    )
    d = e.decisions()["acc2"]
    assert (d["accepted"], d["reason"]) == (False, "MARKET_SUSPENDED")
    releases = [c for c in e.out("leg_commands") if c["action"] == "release"]
    assert [(c["bet_id"], c["leg"]["event_id"]) for c in releases] == [("acc2", "e4")]
    assert not [k for k in e.state["legs"] if k.startswith("e4|")]
    # A leg on a market that has settled is closed for betting.
    e.feed(
        "bet_requests",
        r.bet("acc3", "a1", 5_00, [r.leg("e1", "home", "1.5"), r.leg("e4", "home", "1.5")]),
    )
    assert e.decisions()["acc3"]["reason"] == "MARKET_CLOSED"


def test_selection_not_priced_is_unknown():
    e = Engine()
    e.feed(
        "price_updates",
        r.prices(
            "e1",
            ("7.00", "9.00", "11.00"),
            market_type="correct_score",
            selections=("1-0", "0-0", "0-1"),
        ),
    )
    e.feed("deposits", r.deposit("a1", 100_00))
    e.feed(
        "bet_requests",
        r.bet("b1", "a1", 10_00, [r.leg("e1", "5-5", "90.00", market_type="correct_score")]),
    )
    assert e.decisions()["b1"]["reason"] == "SELECTION_UNKNOWN"


def test_duplicate_bet_id_returns_original_decision():
    e = Engine()
    home = market_up(e)
    e.feed("deposits", r.deposit("a1", 100_00))
    e.feed("bet_requests", r.bet("b1", "a1", 10_00, [r.leg("e1", "home", str(home))]))
    e.feed("bet_requests", r.bet("b1", "a1", 50_00, [r.leg("e1", "away", "9.00")]))
    ds = [d for d in e.out("bet_decisions") if d["bet_id"] == "b1"]
    assert len(ds) == 2 and ds[0] == ds[1]
    assert len([t for t in e.out("ledger") if t["kind"] == "reserve"]) == 1


def test_resettlement_posts_only_the_difference():
    e = Engine()
    home = market_up(e)
    e.feed("deposits", r.deposit("a1", 100_00))
    e.feed("bet_requests", r.bet("b1", "a1", 10_00, [r.leg("e1", "home", str(home))]))
    e.feed("results", r.result("e1", (2, 1)))
    e.feed("results", r.result("e1", (2, 1)))  # duplicate: ignored
    e.feed("results", r.result("e1", (1, 1), revision=1))  # corrected: home did not win
    s = e.out("settlements")
    assert [(x["revision"], x["return_minor"], x["previous_return_minor"]) for x in s] == [
        (0, payout_minor(10_00, home), 0),
        (1, 0, payout_minor(10_00, home)),
    ]
    [resettle] = [t for t in e.out("ledger") if t["kind"] == "resettle"]
    player = [p for p in resettle["postings"] if p["account"] == "player:a1:available"]
    assert player[0]["amount_minor"] == -payout_minor(10_00, home)


def test_abandoned_event_voids_and_refunds_stake():
    e = Engine()
    home = market_up(e)
    e.feed("deposits", r.deposit("a1", 100_00))
    e.feed("bet_requests", r.bet("b1", "a1", 10_00, [r.leg("e1", "home", str(home))]))
    e.feed("results", r.result("e1", None, st="abandoned"))
    [s] = e.out("settlements")
    assert (s["outcome"], s["return_minor"]) == ("void", 10_00)


def test_in_play_bet_is_held_then_rechecked_at_the_later_price():
    e = Engine(Limits(bet_delay_ms_in_play=5_000))
    market_up(e)
    e.feed("market_status", r.status("e1", "open", seq=2, in_play=True))
    e.feed("deposits", r.deposit("a1", 100_00))
    e.feed("bet_requests", r.bet("b1", "a1", 10_00, [r.leg("e1", "home", "2.00")], policy="higher"))
    [held] = e.out("leg_delays")
    assert held["hold_until_ms"] == NOW + 5_000
    assert "b1" not in e.decisions()
    # The price drifts in while the bet is held: re-checked at hold time, it is rejected.
    e.feed("price_updates", r.prices("e1", ("1.20", "6.00", "12.00"), seq=2))
    e.feed("leg_delays", held, now_ms=NOW + 5_000)
    assert e.decisions()["b1"]["reason"] == "PRICE_CHANGED"


def test_crash_and_resume_replaying_inputs_changes_nothing():
    inputs = [
        ("fixtures", r.fixture("e1")),
        ("market_status", r.status("e1", "open", 1)),
        ("price_updates", r.prices("e1")),
        ("deposits", r.deposit("a1", 100_00)),
        ("bet_requests", r.bet("b1", "a1", 10_00, [r.leg("e1", "home", "2.00")])),
        ("results", r.result("e1", (0, 2))),
    ]
    e = Engine()
    for t, v in inputs[:5]:
        e.feed(t, v)
    # Crash after the bet: state survived (changelog), the last two inputs are redelivered.
    e2 = Engine(state=e.state)
    for t, v in inputs[4:]:
        e2.feed(t, v)
    once = Engine()
    for t, v in inputs:
        once.feed(t, v)
    assert [x["tx_id"] for x in once.out("ledger")] == [
        x["tx_id"] for x in e.out("ledger") + e2.out("ledger")
    ]
    assert e2.state["wallets"] == once.state["wallets"]


def test_bad_content_raises_input_error_for_the_dead_letter_topic():
    e = Engine()
    with pytest.raises(InputError):
        e.feed("price_updates", r.prices("e1", market_type="no_such_market"))
    with pytest.raises(InputError):
        e.feed("results", r.result("e1", None, st="final"))
    with pytest.raises(InputError):
        e.feed("deposits", r.deposit("a1", -5))


def test_a_result_fans_out_one_message_per_account_partition_in_chunks():
    # 1,200 bets from 40 accounts on one market: the result reaches the wallets as a few
    # leg_settlements messages, each holding only legs of its own account partition.
    from oddsflow.processors.emit import key_partition
    from oddsflow.processors.markets import SETTLEMENT_CHUNK_LEGS

    e = Engine(limits=Limits(bet_delay_ms_in_play=0))
    e.m.account_partitions = 4
    home = market_up(e)
    accounts = [f"acct{i}" for i in range(40)]
    for a in accounts:
        e.feed("deposits", r.deposit(a, 1_000_000_00))
    n = 1_200
    for i in range(n):
        leg = r.leg("e1", "home", str(home))
        e.feed("bet_requests", r.bet(f"b{i}", accounts[i % 40], 1_00, [leg], policy="none"))
    assert sum(d["accepted"] for d in e.decisions().values()) == n
    e.feed("results", r.result("e1", (1, 0), (0, 0)))
    batches = e.out("leg_settlements")
    assert len(batches) < n / 100
    seen = []
    for b in batches:
        assert 0 < len(b["legs"]) <= SETTLEMENT_CHUNK_LEGS
        parts = {key_partition(leg["account_id"].encode(), 4) for leg in b["legs"]}
        assert len(parts) == 1
        seen += [leg["bet_id"] for leg in b["legs"]]
    assert sorted(seen) == sorted(f"b{i}" for i in range(n))
    settlements = e.out("settlements")
    assert len(settlements) == n and {s["outcome"] for s in settlements} == {"win"}
    # Replaying the same result (a redelivery) settles nothing twice.
    e.feed("results", r.result("e1", (1, 0), (0, 0)))
    assert len(e.out("settlements")) == n


# ---- issue 10: money and data integrity ----------------------------------------------------

MR_E1 = "e1/match_result/FT"


def _wallets(e: Engine) -> dict[str, dict[str, Any]]:
    return {k: orjson.loads(v) for k, v in e.state["wallets"].items()}


@pytest.mark.parametrize(
    ("policy", "requested"),
    [
        ("higher", "1.50"),  # the price is better than asked: the bet gets (and is paid) 2.09
        ("any", "3.00"),  # the price fell: paid at 2.09, not at the higher requested 3.00
    ],
)
def test_settlement_pays_the_bound_odds_through_resettlements(policy, requested):
    e = Engine()
    home = market_up(e)
    assert home == Decimal("2.09")
    e.feed("deposits", r.deposit("a1", 100_00))
    e.feed("bet_requests", r.bet("b1", "a1", 10_00, [r.leg("e1", "home", requested)], policy))
    d = e.decisions()["b1"]
    assert d["accepted"] and d["bound_odds"] == [home] and d["potential_return_minor"] == 20_90
    e.feed("results", r.result("e1", (2, 1)))
    e.feed("results", r.result("e1", (0, 1), revision=1))  # corrected: lost
    e.feed("results", r.result("e1", (3, 1), revision=2))  # corrected again: won
    assert [(s["revision"], s["return_minor"]) for s in e.out("settlements")] == [
        (0, 20_90),
        (1, 0),
        (2, 20_90),
    ]
    assert _wallets(e)["a1|GBP"]["balance_minor"] == 100_00 - 10_00 + 20_90


def test_accumulator_settles_at_the_bound_odds_of_every_leg():
    e = Engine()
    h1, h2 = market_up(e, "e1"), market_up(e, "e2")
    e.feed("deposits", r.deposit("a1", 100_00))
    legs = [r.leg("e1", "home", "1.50"), r.leg("e2", "home", "1.50")]
    e.feed("bet_requests", r.bet("acc", "a1", 10_00, legs, policy="higher"))
    d = e.decisions()["acc"]
    assert d["bound_odds"] == [h1, h2]
    assert d["potential_return_minor"] == payout_minor(10_00, h1 * h2) == 43_68
    e.feed("results", r.result("e1", (1, 0)))
    e.feed("results", r.result("e2", (2, 0)))
    [s] = e.out("settlements")
    assert s["return_minor"] == d["potential_return_minor"]


def test_wallets_are_kept_per_currency():
    e = Engine()
    home = market_up(e)
    leg = r.leg("e1", "home", str(home))
    e.feed("deposits", r.deposit("a1", 70_00, ref="jpy-1", currency="JPY"))
    e.feed("bet_requests", r.bet("b1", "a1", 50_00, [leg], currency="USD"))
    assert e.decisions()["b1"]["reason"] == "INSUFFICIENT_FUNDS"  # yen never fund a dollar bet
    assert not [t for t in e.out("ledger") if t["kind"] == "reserve"]
    e.feed("deposits", r.deposit("a1", 60_00, ref="usd-1", currency="USD"))
    e.feed("bet_requests", r.bet("b2", "a1", 50_00, [leg], currency="USD"))
    assert e.decisions()["b2"]["accepted"]
    e.feed("results", r.result("e1", (1, 0)))
    w = _wallets(e)
    assert (w["a1|JPY"]["balance_minor"], w["a1|JPY"]["reserved_minor"]) == (70_00, 0)
    assert w["a1|USD"]["balance_minor"] == 60_00 - 50_00 + payout_minor(50_00, home)
    assert {w["a1|USD"]["currency"], w["a1|JPY"]["currency"]} == {"USD", "JPY"}
    bet_tx = [t for t in e.out("ledger") if t["bet_id"] == "b2"]
    assert [t["kind"] for t in bet_tx] == ["reserve", "accept", "settle"]
    assert {p["currency"] for t in bet_tx for p in t["postings"]} == {"USD"}


def test_no_market_of_a_resulted_event_opens_or_takes_bets():
    e = Engine()
    market_up(e)
    e.feed("results", r.result("e1", (1, 0)))
    published = len(e.out("priced_markets"))
    late = r.prices(
        "e1",
        ("1.90", "1.90"),
        seq=5,
        market_type="total_goals",
        selections=("over", "under"),
        line="2.5",
    )
    with pytest.raises(InputError, match="resulted"):
        e.feed("price_updates", late)
    assert len(e.out("priced_markets")) == published
    e.feed("deposits", r.deposit("a1", 100_00))
    leg = r.leg("e1", "over", "1.50", market_type="total_goals", line="2.5")
    e.feed("bet_requests", r.bet("b1", "a1", 10_00, [leg]))
    assert e.decisions()["b1"]["reason"] == "MARKET_UNKNOWN"


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([("suspended", 1, MR_E1)], "suspended"),  # a market status before the first price
        ([("bet_stop", 1, MR_E1)], "bet_stop"),
        ([("suspended", 1, MR_E1), ("open", 2, None)], "open"),  # a later event-wide status
        ([("suspended", 1, None), ("open", 2, MR_E1)], "open"),  # a later market status
        ([("open", 1, None), ("suspended", 2, MR_E1)], "suspended"),
        ([("suspended", 2, MR_E1), ("open", 1, None)], "suspended"),  # stale: out of seq
        ([("suspended", 1, "e1/total_goals/FT/2.5")], "open"),  # another market's status
    ],
)
def test_a_status_before_the_first_price_applies_in_provider_sequence(statuses, expected):
    e = Engine()
    e.feed("fixtures", r.fixture("e1"))
    for st, seq, mid in statuses:
        e.feed("market_status", r.status("e1", st, seq=seq, market_id=mid))
    e.feed("price_updates", r.prices("e1"))
    pm = e.out("priced_markets")[-1]
    assert (pm["market_id"], pm["status"]) == (MR_E1, expected)
    e.feed("deposits", r.deposit("a1", 100_00))
    e.feed("bet_requests", r.bet("b1", "a1", 10_00, [r.leg("e1", "home", "2.00")]))
    d = e.decisions()["b1"]
    if expected == "open":
        assert d["accepted"]
    else:
        assert (d["accepted"], d["reason"]) == (False, "MARKET_SUSPENDED")


def test_a_bet_id_reused_by_another_account_is_that_accounts_own_bet():
    e = Engine()
    market_up(e)
    prices = {s["selection"]: s["odds"] for s in e.out("priced_markets")[-1]["selections"]}
    e.feed("deposits", r.deposit("a1", 100_00, ref="pay-1"))
    e.feed("deposits", r.deposit("a2", 100_00, ref="pay-1"))  # a reference is per account too
    e.feed("bet_requests", r.bet("b1", "a1", 10_00, [r.leg("e1", "home", "2.00")]))
    e.feed("bet_requests", r.bet("b1", "a2", 20_00, [r.leg("e1", "away", "2.00")]))
    by_account = {d["account_id"]: d for d in e.out("bet_decisions")}
    assert len(e.out("bet_decisions")) == 2
    a1, a2 = by_account["a1"], by_account["a2"]
    assert (a1["stake_minor"], a1["bound_odds"]) == (10_00, [prices["home"]])
    assert (a2["stake_minor"], a2["bound_odds"]) == (20_00, [prices["away"]])
    assert a1["accepted"] and a2["accepted"]
    e.feed("results", r.result("e1", (0, 1)))
    settled = {s["account_id"]: s for s in e.out("settlements")}
    assert (settled["a1"]["outcome"], settled["a1"]["return_minor"]) == ("lose", 0)
    assert settled["a2"]["return_minor"] == payout_minor(20_00, prices["away"])
    ids = [t["tx_id"] for t in e.out("ledger")]
    assert len(ids) == len(set(ids)) == 2 + 2 * 3  # two deposits; reserve, accept, settle each
    w = _wallets(e)
    assert w["a1|GBP"]["balance_minor"] == 90_00
    assert w["a2|GBP"]["balance_minor"] == 80_00 + payout_minor(20_00, prices["away"])
    # The duplicate within one account still gets that account's original decision.
    e.feed("bet_requests", r.bet("b1", "a2", 5_00, [r.leg("e1", "draw", "9.00")]))
    assert e.out("bet_decisions")[-1] == a2


def test_an_account_id_that_would_make_ids_ambiguous_is_refused():
    e = Engine()
    home = market_up(e)
    e.feed("bet_requests", r.bet("c", "a|b", 10_00, [r.leg("e1", "home", str(home))]))
    [d] = e.out("bet_decisions")
    assert (d["account_id"], d["reason"]) == ("a|b", "INVALID_REQUEST")
    assert e.state["bets"] == {} and e.out("ledger") == []
    with pytest.raises(InputError):
        e.feed("deposits", r.deposit("a|b", 10_00))


def test_a_book_that_would_publish_below_its_margin_is_refused():
    e = Engine()
    with pytest.raises(InputError, match="below the margin"):
        e.feed("price_updates", r.prices("e1", ("1.0001", "1000000", "1000000")))
    assert e.out("priced_markets") == [] and e.state["markets"] == {}


def test_correct_score_spellings_are_one_selection():
    e = Engine()
    with pytest.raises(InputError, match="repeat"):
        e.feed(
            "price_updates",
            r.prices(
                "e1",
                ("7.00", "8.00", "9.00"),
                market_type="correct_score",
                selections=("1-0", "01-0", "0-0"),
            ),
        )
    e.feed(
        "price_updates",
        r.prices(
            "e1",
            ("7.00", "9.00", "11.00"),
            market_type="correct_score",
            selections=("01-0", "0-0", "0-01"),
        ),
    )
    pm = e.out("priced_markets")[-1]
    cs = {s["selection"]: s["odds"] for s in pm["selections"]}
    assert set(cs) == {"1-0", "0-0", "0-1"}
    e.feed("deposits", r.deposit("a1", 100_00))
    leg = r.leg("e1", "001-0", str(cs["1-0"]), market_type="correct_score")
    e.feed("bet_requests", r.bet("b1", "a1", 10_00, [leg], policy="none"))
    assert e.decisions()["b1"]["accepted"]
    e.feed("results", r.result("e1", (1, 0)))
    [s] = e.out("settlements")
    assert (s["outcome"], s["return_minor"]) == ("win", payout_minor(10_00, cs["1-0"]))


def test_a_balance_past_64_bits_is_refused_for_the_dead_letter_topic():
    e = Engine()
    top = 2**63 - 1
    e.feed("deposits", r.deposit("a1", top, ref="d1"))
    before = dict(e.state["wallets"])
    with pytest.raises(InputError, match="64-bit"):
        e.feed("deposits", r.deposit("a1", 1, ref="d2"))
    assert e.state["wallets"] == before
    assert [t["tx_id"] for t in e.out("ledger")] == ["a1|d1:deposit"]


def test_liability_is_kept_per_currency():
    limits = Limits(
        bet_delay_ms_in_play=0,
        liability_minor_max_selection=50_00,
        liability_minor_max_market=50_00,
    )
    e = Engine(limits)
    home = market_up(e)
    leg = r.leg("e1", "home", str(home))
    for ccy in ("GBP", "USD"):
        e.feed("deposits", r.deposit("a1", 1000_00, ref=f"d-{ccy}", currency=ccy))
    e.feed("bet_requests", r.bet("b1", "a1", 40_00, [leg], currency="GBP"))
    e.feed("bet_requests", r.bet("b2", "a1", 40_00, [leg], currency="USD"))  # its own book
    e.feed("bet_requests", r.bet("b3", "a1", 40_00, [leg], currency="GBP"))
    d = e.decisions()
    assert d["b1"]["accepted"] and d["b2"]["accepted"]
    assert d["b3"]["reason"] in {"LIABILITY_SELECTION", "LIABILITY_MARKET"}
    [liab] = [orjson.loads(v) for v in e.state["liab"].values()]
    assert {c: p["stakes_minor"] for c, p in liab["by_currency"].items()} == {
        "GBP": 40_00,
        "USD": 40_00,
    }
