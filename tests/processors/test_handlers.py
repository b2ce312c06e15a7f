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
from hypothesis import given, settings
from hypothesis import strategies as hs

from oddsflow import topology
from oddsflow.codec import Codec
from oddsflow.domain.acceptance import Limits, MarketState
from oddsflow.domain.decide import VIEW_AGE_MS_MAX_IN_PLAY
from oddsflow.domain.money import payout_minor
from oddsflow.processors.market_view import MarketEntry, entry_from_record
from oddsflow.processors.markets import Book, InputError, MarketsHandler
from oddsflow.processors.state import Effects, Journal, Store
from oddsflow.processors.wallet import WalletHandler
from tests.processors import records as r

NOW = r.T0_MS + 1000


class FedView:
    """The market view as the wallet sees it, fed with every priced_markets output (what
    ``processors.market_view.MarketView`` reads from Kafka, applied the same way)."""

    def __init__(self) -> None:
        self.entries: dict[str, MarketEntry] = {}

    def apply(self, rec: dict[str, Any]) -> None:
        entry = entry_from_record(rec, 0, 0)
        old = self.entries.get(entry.state.market_id)
        if old is None or entry.version > old.version:
            self.entries[entry.state.market_id] = entry

    def get(self, market_id: str) -> MarketState | None:
        entry = self.entries.get(market_id)
        return None if entry is None or not entry.state.prices else entry.state

    def age_ms(self, market_id: str, now_ms: int) -> int | None:
        entry = self.entries.get(market_id)
        return None if entry is None else max(0, now_ms - entry.priced_ts_ms)


TABLES = ("markets", "events", "legs", "liab", "wallets", "bets", "quotas")


class Engine:
    """Both handlers wired like the topology: outputs routed to their consumers in order."""

    def __init__(
        self,
        limits: Limits | None = None,
        state: dict[str, dict[str, bytes]] | None = None,
        quota_currency: str | None = "GBP",
    ) -> None:
        self.state = state if state is not None else {n: {} for n in TABLES}
        st = {k: Store(v) for k, v in self.state.items()}
        self.limits = limits or Limits(bet_delay_ms_in_play=0)
        self.m = MarketsHandler(
            st["markets"],
            st["events"],
            st["legs"],
            st["liab"],
            Book(limits=self.limits),
            quota_currency=quota_currency,
        )
        self.view = FedView()
        self.w = WalletHandler(
            st["wallets"], st["bets"], self.limits, view=self.view, quotas=st["quotas"]
        )
        self.outputs: list[tuple[str, str, dict[str, Any]]] = []
        # Outputs not fed on by themselves: delays are fed when due, and a test may hold
        # others back to feed them later (or never, as if the worker had crashed).
        self.held = {"bet_delays"}
        self.routes = {
            "fixtures": self.m.on_fixture,
            "price_updates": self.m.on_price_update,
            "market_status": self.m.on_market_status,
            "results": self.m.on_result,
            "settle_continuations": self.m.on_settle_continuation,
            "scores": self.m.on_score,
            "leg_commands": self.m.on_leg_command,
            "accepted_legs": self.m.on_accepted_leg,
            "bet_delays": self.w.on_bet_delay,
            "bet_requests": self.w.on_bet_request,
            "deposits": self.w.on_deposit,
            "leg_verdicts": self.w.on_leg_verdict,
            "leg_settlements": self.w.on_leg_settlements,
            "quota_grants": self.w.on_quota_message,
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
                if o.topic == "priced_markets":
                    self.view.apply(decoded)
                if o.topic in self.routes and o.topic not in self.held:
                    queue.append((o.topic, decoded))

    def out(self, topic: str) -> list[dict[str, Any]]:
        return [v for t, _, v in self.outputs if t == topic]

    def decisions(self) -> dict[str, dict[str, Any]]:
        return {d["bet_id"]: d for d in self.out("bet_decisions")}


@cache
def _codec(topic: str) -> Codec:
    spec = topology.load().topic(topic)
    return Codec(spec.item_schema or spec.value_schema)  # a handler sees one item at a time


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


def in_play_engine(bet_delay_ms: int = 5_000) -> Engine:
    """Market e1 open and in play (in-play bet delay ``bet_delay_ms``), account a1 funded."""
    e = Engine(Limits(bet_delay_ms_in_play=bet_delay_ms))
    market_up(e)
    e.feed("market_status", r.status("e1", "open", seq=2, in_play=True))
    e.feed("deposits", r.deposit("a1", 100_00))
    return e


def held_in_play_bet(policy: str = "any") -> tuple[Engine, dict[str, Any]]:
    """An in-play single (b1: a1's 10_00 on home at 2.00) held for its 5 s bet delay: the
    engine, and the bet_delays record that brings it back when it is due."""
    e = in_play_engine()
    e.feed("bet_requests", r.bet("b1", "a1", 10_00, [r.leg("e1", "home", "2.00")], policy=policy))
    [held] = e.out("bet_delays")
    return e, held


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
    # Partial reject: e3 is suspended, so the whole accumulator is refused in one step and no
    # leg of it reaches an event partition (nothing to release).
    market_up(e, "e3")
    market_up(e, "e4")
    e.feed("market_status", r.status("e3", "suspended", seq=2))
    e.feed(
        "bet_requests",
        r.bet("acc2", "a1", 5_00, [r.leg("e4", "home", "1.5"), r.leg("e3", "home", "1.5")]),
    )
    d = e.decisions()["acc2"]
    assert (d["accepted"], d["reason"]) == (False, "MARKET_SUSPENDED")
    assert [x["bet_id"] for x in e.out("accepted_legs") if x["kind"] == "leg"] == ["acc", "acc"]
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
    e, held = held_in_play_bet(policy="higher")
    assert (held["account_id"], held["hold_until_ms"]) == ("a1", NOW + 5_000)
    assert "b1" not in e.decisions()
    # The price drifts in while the bet is held: re-checked at hold time, it is rejected.
    e.feed("price_updates", r.prices("e1", ("1.20", "6.00", "12.00"), seq=2))
    e.feed("bet_delays", held, now_ms=NOW + 5_000)
    assert e.decisions()["b1"]["reason"] == "PRICE_CHANGED"
    assert [t["kind"] for t in e.out("ledger") if t["bet_id"] == "b1"] == ["reserve", "release"]
    e.feed("bet_delays", held, now_ms=NOW + 5_000)  # redelivered: decided once
    assert len([d for d in e.out("bet_decisions") if d["bet_id"] == "b1"]) == 1


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
    [liab] = [orjson.loads(v) for k, v in e.state["liab"].items() if k == MR_E1]
    assert {c: p["liability"]["stakes_minor"] for c, p in liab["by_currency"].items()} == {
        "GBP": 40_00,
        "USD": 40_00,
    }


# ---- issue 11: one hop to a bet decision ---------------------------------------------------


def _quota(e: Engine, selection: str, ccy: str = "GBP", market: str = MR_E1) -> int:
    raw = e.state["quotas"].get(f"quota:0|{ccy}|{market}")
    if raw is None:
        return 0
    return int(orjson.loads(raw)["amounts"].get(selection, 0))


def _book(e: Engine, ccy: str = "GBP", market: str = MR_E1) -> dict[str, Any]:
    return orjson.loads(e.state["liab"][market])["by_currency"][ccy]


def test_a_single_within_its_quota_is_decided_in_one_hop_and_the_spend_learned():
    limits = Limits(bet_delay_ms_in_play=0, liability_minor_max_selection=1_000_00)
    e = Engine(limits)
    home = market_up(e)
    # The market opened: its headroom was split and the partition holds half of it.
    grants = [g for g in e.out("quota_grants") if g["selection"] == "home"]
    assert [(g["kind"], g["partition"], g["amount_minor"]) for g in grants] == [
        ("grant", 0, 500_00)
    ]
    assert _quota(e, "home") == 500_00
    e.feed("deposits", r.deposit("a1", 100_00))
    e.feed("bet_requests", r.bet("b1", "a1", 10_00, [r.leg("e1", "home", str(home))]))
    d = e.decisions()["b1"]
    assert d["accepted"] and d["bound_odds"] == [home]
    assert e.out("leg_commands") == [] and e.out("leg_verdicts") == []  # no round trip
    [leg] = [x for x in e.out("accepted_legs") if x["kind"] == "leg"]
    added = d["potential_return_minor"] - 10_00
    assert (leg["quota_spend"], leg["return_minor"]) == (True, d["potential_return_minor"])
    # The event side learned the liability. The partition spent less than a quarter of its
    # share, so no top-up message yet (QuotaPolicy.refill_ppm): its quota is what is left.
    book = _book(e)
    assert book["liability"]["stakes_minor"] == 10_00
    assert book["liability"]["returns_minor"] == {"home": d["potential_return_minor"]}
    assert len([g for g in e.out("quota_grants") if g["selection"] == "home"]) == 1
    assert _quota(e, "home") == 500_00 - added
    # The open leg is what settlement reads, at the bound odds.
    [open_leg] = [orjson.loads(v) for k, v in e.state["legs"].items() if k.startswith("e1|")]
    assert open_leg["bound_odds"] == str(home) and open_leg["leg"]["selection"] == "home"
    e.feed("results", r.result("e1", (1, 0)))
    [s] = e.out("settlements")
    assert s["return_minor"] == payout_minor(10_00, home)


def test_a_redelivered_accepted_leg_is_learned_once():
    e = Engine(Limits(bet_delay_ms_in_play=0, liability_minor_max_selection=1_000_00))
    home = market_up(e)
    e.feed("deposits", r.deposit("a1", 100_00))
    e.feed("bet_requests", r.bet("b1", "a1", 10_00, [r.leg("e1", "home", str(home))]))
    [leg] = [x for x in e.out("accepted_legs") if x["kind"] == "leg"]
    before = (_book(e), len(e.out("quota_grants")))
    e.feed("accepted_legs", leg)
    assert (_book(e), len(e.out("quota_grants"))) == before


def test_a_single_its_quota_cannot_cover_takes_the_authoritative_path():
    e = Engine(Limits(bet_delay_ms_in_play=0, liability_minor_max_selection=100_00))
    home = market_up(e)  # quota 50_00 on home
    e.feed("deposits", r.deposit("a1", 1000_00))
    # 40_00 at 2.09 adds 43_60: within the 50_00 quota, decided on the account partition.
    e.feed("bet_requests", r.bet("b1", "a1", 40_00, [r.leg("e1", "home", str(home))]))
    assert e.out("leg_commands") == []
    # 30_00 more adds 32_70: more than the quota left (topped up to 28_20); the event side
    # recalls the grants, and with them back the true headroom (56_40) takes it.
    e.feed("bet_requests", r.bet("b2", "a1", 30_00, [r.leg("e1", "home", str(home))]))
    [cmd] = e.out("leg_commands")
    assert (cmd["bet_id"], cmd["partition"], cmd["return_minor"]) == ("b2", 0, 62_70)
    assert cmd["bound_odds"] == home
    d = e.decisions()
    assert d["b1"]["accepted"] and d["b2"]["accepted"]  # 43_60 + 32_70 = 76_30 <= 100_00
    assert [t["kind"] for t in e.out("ledger") if t["bet_id"] == "b2"] == ["reserve", "accept"]
    [leg2] = [x for x in e.out("accepted_legs") if x["kind"] == "leg" and x["bet_id"] == "b2"]
    assert leg2["quota_spend"] is False  # already counted by the authoritative check
    assert _book(e)["liability"]["returns_minor"] == {"home": 20_90 * 4 + 62_70}
    # A third that does not fit the true headroom (76_30 + 32_70 > 100_00) is refused
    # exactly: the grants were recalled, returned and the book is the true one.
    e.feed("bet_requests", r.bet("b3", "a1", 30_00, [r.leg("e1", "home", str(home))]))
    assert e.decisions()["b3"]["reason"] == "LIABILITY_SELECTION"
    assert [t["kind"] for t in e.out("ledger") if t["bet_id"] == "b3"] == ["reserve", "release"]
    assert len([x for x in e.out("quota_grants") if x["kind"] == "recall"]) == 2  # b2, b3
    assert [x["kind"] for x in e.out("accepted_legs")][-1] == "return"
    assert _book(e)["liability"]["returns_minor"] == {"home": 20_90 * 4 + 62_70}
    w = _wallets(e)["a1|GBP"]
    assert (w["balance_minor"], w["reserved_minor"]) == (1000_00 - 70_00, 0)
    # A redelivered authoritative request gets the same verdict, nothing twice.
    verdicts = len(e.out("leg_verdicts"))
    e.feed("leg_commands", cmd)
    assert len(e.out("leg_verdicts")) == verdicts + 1
    assert e.decisions()["b2"]["accepted"] and len(e.out("bet_decisions")) == 3


def test_the_authoritative_path_refuses_a_market_closed_on_the_event_partition():
    e = Engine(Limits(bet_delay_ms_in_play=0, liability_minor_max_selection=10_00))
    home = market_up(e)
    e.feed("deposits", r.deposit("a1", 1000_00))
    e.feed("bet_requests", r.bet("b1", "a1", 40_00, [r.leg("e1", "home", str(home))]))
    [cmd] = e.out("leg_commands")
    e.feed("market_status", r.status("e1", "suspended", seq=2))
    wallet_before = _wallets(e)["a1|GBP"]
    assert wallet_before["reserved_minor"] == 0  # (b1 was decided in the chain already)
    # Replayed against a suspended market: the event side's own state refuses it.
    e2 = Engine(Limits(bet_delay_ms_in_play=0, liability_minor_max_selection=10_00))
    market_up(e2)
    e2.feed("market_status", r.status("e1", "suspended", seq=2))
    fx = Effects()
    e2.m.on_leg_command(_roundtrip("leg_commands", cmd), fx, NOW)
    [v] = [o.value for o in fx.out if o.topic == "leg_verdicts"]
    assert (v["bet_id"], v["reason"]) == ("b1", "MARKET_SUSPENDED")


def _recall_of(market_id: str, partition: int = 0) -> dict[str, Any]:
    """The event side's recall of a market's quota from ``partition`` (GBP)."""
    return {
        "kind": "recall",
        "event_id": market_id.split("/")[0],
        "market_id": market_id,
        "selection": None,
        "partition": partition,
        "currency": "GBP",
        "amount_minor": 0,
        "sent_at": NOW,
    }


def test_a_recall_returns_the_unspent_quota_after_the_spends():
    e = Engine(Limits(bet_delay_ms_in_play=0, liability_minor_max_selection=100_00))
    market_up(e)
    assert _quota(e, "home") == 50_00
    fx = Effects()
    recall = _recall_of(MR_E1)
    e.w.on_quota_message(_roundtrip("quota_grants", recall), fx, NOW)
    returns = [_roundtrip(o.topic, o.value) for o in fx.out]
    assert {(x["kind"], x["selection"]) for x in returns} == {
        ("return", "home"),
        ("return", "draw"),
        ("return", "away"),
    }
    assert {o.key for o in fx.out} == {"e1"}  # to the market's event partition
    assert sum(x["amount_minor"] for x in returns if x["selection"] == "home") == 50_00
    assert _quota(e, "home") == 0
    bad = {**recall, "kind": "grant", "selection": "home", "amount_minor": -1}
    with pytest.raises(InputError):  # a negative grant is a bug upstream: dead-lettered
        e.w.on_quota_message(_roundtrip("quota_grants", bad), Effects(), NOW)


def test_a_quota_record_of_the_whole_partition_is_split_per_market_and_nothing_lost():
    # A table written before quotas were kept per market holds one record for every market of
    # (partition, currency). The first read splits it; the spend and the recall after it see
    # exactly the amounts it held, once.
    e = Engine(Limits(bet_delay_ms_in_play=0, liability_minor_max_selection=100_00))
    home = market_up(e)
    held = {s: _quota(e, s) for s in ("home", "draw", "away")}
    assert held["home"] == 50_00
    other = "e2/match_result/FT"
    legacy = {f"{MR_E1}\x1f{s}": v for s, v in held.items()} | {f"{other}\x1fhome": 7_00}
    e.state["quotas"].clear()
    e.state["quotas"]["quota:0|GBP"] = orjson.dumps({"partition": 0, "amounts": legacy})
    e.feed("deposits", r.deposit("a1", 100_00))
    e.feed("bet_requests", r.bet("b1", "a1", 10_00, [r.leg("e1", "home", str(home))]))
    assert e.decisions()["b1"]["accepted"]
    [leg] = [x for x in e.out("accepted_legs") if x["kind"] == "leg"]
    assert leg["quota_spend"] is True  # spent from the quota the old record held
    added = payout_minor(10_00, home) - 10_00
    assert "quota:0|GBP" not in e.state["quotas"]
    assert {s: _quota(e, s) for s in held} == {**held, "home": 50_00 - added}
    assert _quota(e, "home", market=other) == 7_00
    fx = Effects()
    recall = _recall_of(MR_E1)
    e.w.on_quota_message(_roundtrip("quota_grants", recall), fx, NOW)
    returns = {o.value["selection"]: o.value["amount_minor"] for o in fx.out}
    assert returns == {**held, "home": 50_00 - added}
    assert f"quota:0|GBP|{MR_E1}" not in e.state["quotas"]  # nothing held: no record
    assert _quota(e, "home", market=other) == 7_00


def _status(rec: dict[str, Any] | None) -> tuple[str, ...]:
    return () if rec is None else (rec["status"],)


def test_a_frozen_read_follows_every_write_rollback_delete_and_recovery():
    # Store.get_frozen remembers a conversion for the stored bytes: whatever replaces them (a
    # write, a rolled-back handler, a delete, a recovery writing the table anew) is seen.
    backing: dict[str, Any] = {}
    st = Store(backing)
    assert st.get_frozen("m", _status) == ()
    st.put("m", {"status": "open"})
    assert st.get_frozen("m", _status) == ("open",)
    assert st.get_frozen("m", _status) is st.get_frozen("m", _status)  # decoded once
    st.journal = Journal()
    st.put_frozen("m", {"status": "suspended"}, _status, ("suspended",))
    assert st.get_frozen("m", _status) == ("suspended",)
    st.journal.rollback()  # the handler failed: its write is undone
    assert st.get_frozen("m", _status) == ("open",)
    st.journal = None
    backing["m"] = orjson.dumps({"status": "settled"})  # a changelog recovery
    assert st.get_frozen("m", _status) == ("settled",)
    st.delete("m")
    assert st.get_frozen("m", _status) == ()
    assert "m" not in st


def test_a_settlement_burst_on_one_market_finds_every_leg_after_a_restart():
    # Many singles on one market, the event side restarted from its tables part-way (new
    # handlers over the same state: nothing remembered in memory) and an accepted leg
    # redelivered: every bet is settled once, at its bound odds.
    limits = Limits(bet_delay_ms_in_play=0)
    e = Engine(limits)
    home = market_up(e)
    e.feed("deposits", r.deposit("a1", 1_000_00))
    for i in range(40):
        e.feed("bet_requests", r.bet(f"b{i}", "a1", 1_00, [r.leg("e1", "home", str(home))]))
    e2 = Engine(limits, state=e.state)
    e2.view = e.view
    e2.w.view = e.view
    for i in range(40, 80):
        e2.feed("bet_requests", r.bet(f"b{i}", "a1", 1_00, [r.leg("e1", "home", str(home))]))
    [again] = [x for x in e.out("accepted_legs") if x["bet_id"] == "b3"]
    e2.feed("accepted_legs", again)  # redelivered: recorded once, its spend learned once
    before = _book(e2)
    e2.feed("accepted_legs", again)
    assert _book(e2) == before
    e2.feed("results", r.result("e1", (2, 0)))
    settled = e2.out("settlements")
    assert sorted(x["bet_id"] for x in settled) == sorted(f"b{i}" for i in range(80))
    assert {x["return_minor"] for x in settled} == {payout_minor(1_00, home)}


def test_a_leg_that_arrives_after_its_events_result_is_settled_then():
    e = Engine()
    home = market_up(e)
    e.feed("deposits", r.deposit("a1", 100_00))
    # Decide the bet but hold back its accepted leg, as if the event partition were behind.
    fx = Effects()
    e.w.on_bet_request(
        _roundtrip("bet_requests", r.bet("b1", "a1", 10_00, [r.leg("e1", "home", str(home))])),
        fx,
        NOW,
    )
    [leg] = [_roundtrip(o.topic, o.value) for o in fx.out if o.topic == "accepted_legs"]
    e.feed("results", r.result("e1", (2, 0)))
    assert e.out("settlements") == []
    e.feed("accepted_legs", leg)
    [s] = e.out("settlements")
    assert (s["bet_id"], s["return_minor"]) == ("b1", payout_minor(10_00, home))


def test_an_in_play_bet_held_and_accepted_then_spends_its_quota():
    e, held = held_in_play_bet()
    assert _wallets(e)["a1|GBP"]["reserved_minor"] == 10_00
    e.feed("bet_delays", held, now_ms=NOW + 5_000)
    d = e.decisions()["b1"]
    assert d["accepted"]
    assert [t["kind"] for t in e.out("ledger") if t["bet_id"] == "b1"] == ["reserve", "accept"]
    [leg] = [x for x in e.out("accepted_legs") if x["kind"] == "leg"]
    assert leg["quota_spend"] is True


def test_a_held_bet_on_a_market_quiet_through_its_delay_is_accepted_when_rechecked_late():
    # The bet_delay agent wakes a little after the hold ends (a busy worker: here 400 ms), and
    # no price came during the delay: the price the bet was held at still stands.
    e, held = held_in_play_bet()
    e.feed("bet_delays", held, now_ms=held["hold_until_ms"] + 400)
    assert e.decisions()["b1"]["accepted"]


def test_a_suspension_during_the_delay_rejects_the_held_bet():
    e, held = held_in_play_bet()
    e.feed("market_status", r.status("e1", "suspended", seq=3, in_play=True))
    e.feed("bet_delays", held, now_ms=NOW + 5_000)
    assert e.decisions()["b1"]["reason"] == "MARKET_SUSPENDED"
    assert _wallets(e)["a1|GBP"] == {
        "account_id": "a1",
        "currency": "GBP",
        "balance_minor": 100_00,
        "reserved_minor": 0,
    }


def test_an_in_play_price_older_than_the_view_age_limit_is_refused():
    e = in_play_engine(bet_delay_ms=0)
    late = NOW + VIEW_AGE_MS_MAX_IN_PLAY + 1  # the view's entry is older than the limit
    e.feed("bet_requests", r.bet("b1", "a1", 10_00, [r.leg("e1", "home", "2.00")]), now_ms=late)
    assert e.decisions()["b1"]["reason"] == "MARKET_SUSPENDED"
    e.feed("bet_requests", r.bet("b2", "a1", 10_00, [r.leg("e1", "home", "2.00")]), now_ms=NOW)
    assert e.decisions()["b2"]["accepted"]


@pytest.mark.parametrize("seed", range(6))
def test_many_partitions_concurrently_never_exceed_the_limit_and_refuse_only_what_did_not_fit(
    seed,
):
    # Four account partitions, message delivery in a random interleaving (each channel in
    # order, as Kafka keeps a partition): the liability never passes the cap, and a bet is
    # refused only when it did not fit the true headroom when the event side decided it.
    import random

    from oddsflow.processors.emit import key_partition

    rng = random.Random(seed)
    cap = 300_00
    limits = Limits(
        bet_delay_ms_in_play=0,
        liability_minor_max_selection=cap,
        liability_minor_max_market=10 * cap,
    )
    st = {n: Store({}) for n in TABLES}
    m = MarketsHandler(
        st["markets"],
        st["events"],
        st["legs"],
        st["liab"],
        Book(limits=limits),
        account_partitions=4,
        quota_currency="GBP",
    )
    view = FedView()
    w = WalletHandler(
        st["wallets"], st["bets"], limits, view=view, quotas=st["quotas"], account_partitions=4
    )
    routes = {
        "accepted_legs": m.on_accepted_leg,
        "leg_commands": m.on_leg_command,
        "leg_verdicts": w.on_leg_verdict,
        "quota_grants": w.on_quota_message,
        "bet_requests": w.on_bet_request,
        "deposits": w.on_deposit,
    }
    channels: dict[tuple[str, int], list[dict[str, Any]]] = {}
    channels_seen: list[str] = []

    def run(topic: str, rec: dict[str, Any]) -> None:
        fx = Effects()
        (
            routes.get(topic)
            or getattr(
                m,
                {
                    "fixtures": "on_fixture",
                    "price_updates": "on_price_update",
                    "market_status": "on_market_status",
                }[topic],
            )
        )(_roundtrip(topic, rec), fx, NOW)
        for o in fx.out:
            v = _roundtrip(o.topic, o.value)
            if o.topic == "priced_markets":
                view.apply(v)
            elif o.topic in routes:
                channels_seen.append(o.topic)
                channels.setdefault((o.topic, key_partition(o.key.encode(), 4)), []).append(v)

    run("fixtures", r.fixture("e1"))
    run("market_status", r.status("e1", "open", seq=1))
    run("price_updates", r.prices("e1"))
    accounts = [f"acct{i}" for i in range(16)]
    for a in accounts:
        run("deposits", r.deposit(a, 1_000_00))
    stakes = {}
    for i in range(60):
        a = rng.choice(accounts)
        stake = rng.choice([5_00, 10_00, 25_00])
        stakes[f"b{i}"] = stake
        channels.setdefault(("bet_requests", key_partition(a.encode(), 4)), []).append(
            r.bet(f"b{i}", a, stake, [r.leg("e1", "home", "1.50")], policy="any")
        )
    while any(channels.values()):
        topic, p = rng.choice([k for k, v in channels.items() if v])
        run(topic, channels[(topic, p)].pop(0))
    decisions: dict[str, dict[str, Any]] = {}
    for raw in st["bets"]._b.values():
        bet = orjson.loads(raw)
        if bet.get("decision"):
            decisions[bet["decision"]["bet_id"]] = bet["decision"]
    assert set(decisions) == set(stakes), "every bet was decided"
    home = view.get(MR_E1).prices["home"]

    def added(b: str) -> int:
        return payout_minor(stakes[b], home) - stakes[b]

    accepted = [b for b, d in decisions.items() if d["accepted"]]
    refused = [b for b, d in decisions.items() if not d["accepted"]]
    liability = sum(added(b) for b in accepted)
    assert liability <= cap
    assert refused, "the market filled up (the test must reach the limit)"
    assert {decisions[b]["reason"] for b in refused} == {"LIABILITY_SELECTION"}
    # The liability only grows, so a bet refused then would not fit what is left at the end.
    for b in refused:
        assert cap - liability < added(b), f"{b} fitted the headroom and was refused"
    # Most bets were decided without a round trip.
    paths = [x for x in channels_seen if x == "leg_commands"]
    assert len(paths) < len(stakes)


# ---- a result settles its open legs in steps -------------------------------------------------


def _stepped_market(monkeypatch, n: int, step: int) -> tuple[Engine, Decimal]:
    from oddsflow.processors import markets

    monkeypatch.setattr(markets, "SETTLE_STEP_LEGS", step)
    e = Engine()
    e.held.add("settle_continuations")
    home = market_up(e)
    for a in ("a1", "a2", "a3"):
        e.feed("deposits", r.deposit(a, 1_000_000_00))
    for i in range(n):
        leg = r.leg("e1", "home", str(home))
        e.feed("bet_requests", r.bet(f"b{i:03}", ("a1", "a2", "a3")[i % 3], 1_00, [leg]))
    assert sum(d["accepted"] for d in e.decisions().values()) == n
    return e, home


def _settled_ids(e: Engine) -> list[str]:
    return [x["bet_id"] for x in e.out("settlements")]


def _next_step(e: Engine) -> dict[str, Any]:
    conts = e.out("settle_continuations")
    e.feed("settle_continuations", conts[-1])
    return conts[-1]


def test_a_result_settles_its_open_legs_in_steps_each_its_own_event(monkeypatch):
    e, home = _stepped_market(monkeypatch, 250, 100)
    e.feed("results", r.result("e1", (2, 0)))
    # The result settles the first 100 open legs and hands the rest on to its own partition.
    assert len(_settled_ids(e)) == 100
    [cont] = e.out("settle_continuations")
    assert (cont["event_id"], cont["revision"]) == ("e1", 0)
    _next_step(e)
    assert len(_settled_ids(e)) == 200 and len(e.out("settle_continuations")) == 2
    _next_step(e)
    # The last step hands nothing on; every bet is settled once, at its bound odds.
    assert len(e.out("settle_continuations")) == 2
    assert sorted(_settled_ids(e)) == [f"b{i:03}" for i in range(250)]
    assert {x["return_minor"] for x in e.out("settlements")} == {payout_minor(1_00, home)}
    # A redelivered step (at_least_once) changes nothing.
    e.feed("settle_continuations", e.out("settle_continuations")[0])
    assert len(_settled_ids(e)) == 250


def test_a_settlement_resumed_after_a_crash_between_steps_settles_the_rest_once(monkeypatch):
    e, _ = _stepped_market(monkeypatch, 250, 100)
    e.feed("results", r.result("e1", (2, 0)))
    [cont] = e.out("settle_continuations")
    # The worker stops; another takes the partition over from the tables (no memory of the
    # keys it listed) and the continuation that committed with the first step.
    e2 = Engine(state=e.state)
    e2.held.add("settle_continuations")
    e2.feed("settle_continuations", cont)
    assert len(_settled_ids(e2)) == 100
    _next_step(e2)
    assert len(e2.out("settle_continuations")) == 1  # the last step hands nothing on
    assert sorted(_settled_ids(e) + _settled_ids(e2)) == [f"b{i:03}" for i in range(250)]


def test_a_corrected_result_mid_settlement_starts_again_and_drops_the_older_steps(monkeypatch):
    e, _ = _stepped_market(monkeypatch, 250, 100)
    e.feed("results", r.result("e1", (2, 0)))
    [old] = e.out("settle_continuations")
    e.feed("results", r.result("e1", (0, 2), revision=1))  # home lost after all
    [_, new] = e.out("settle_continuations")
    assert new["revision"] == 1
    e.feed("settle_continuations", old)  # the older revision's rest: dropped
    assert len(e.out("settle_continuations")) == 2
    _next_step(e)
    _next_step(e)
    last = {x["bet_id"]: x for x in e.out("settlements")}
    assert sorted(last) == [f"b{i:03}" for i in range(250)]
    assert {(x["outcome"], x["return_minor"]) for x in last.values()} == {("lose", 0)}
    # Money: every stake is lost, and the 100 bets first paid as winners were taken back.
    assert sum(w["balance_minor"] for w in _wallets(e).values()) == 3 * 1_000_000_00 - 250 * 1_00


def test_a_leg_accepted_after_the_result_is_settled_once_even_if_a_step_lists_it(monkeypatch):
    e, home = _stepped_market(monkeypatch, 250, 100)
    fx = Effects()
    late = r.bet("z-late", "a3", 1_00, [r.leg("e1", "home", str(home))])
    e.w.on_bet_request(_roundtrip("bet_requests", late), fx, NOW)
    [leg] = [_roundtrip(o.topic, o.value) for o in fx.out if o.topic == "accepted_legs"]
    e.feed("results", r.result("e1", (2, 0)))
    e.feed("accepted_legs", leg)  # settled on arrival; its key sorts after every cursor
    assert _settled_ids(e).count("z-late") == 1
    # Taken over between steps: the next step lists the open legs again, the late one too,
    # and settles it again under the same revision, which its wallet ignores.
    e2 = Engine(state=e.state)
    e2.held.add("settle_continuations")
    e2.feed("settle_continuations", e.out("settle_continuations")[-1])
    _next_step(e2)
    assert "z-late" in {x["bet_id"] for b in e2.out("leg_settlements") for x in b["legs"]}
    ids = _settled_ids(e) + _settled_ids(e2)
    assert ids.count("z-late") == 1 and sorted(set(ids)) == sorted(ids) and len(ids) == 251


@settings(max_examples=40, deadline=None)
@given(
    n=hs.integers(1, 40),
    step=hs.integers(1, 15),
    takeovers=hs.sets(hs.integers(0, 10), max_size=3),
    corrected_at=hs.one_of(hs.none(), hs.integers(0, 10)),
)
def test_a_stepped_settlement_pays_every_bet_once_for_the_final_result(
    n, step, takeovers, corrected_at
):
    """Whatever the step size, wherever another worker takes the partition over (tables only,
    nothing in memory) and whenever a corrected result arrives, every bet ends settled for
    the latest result and the money adds up: each winner paid once, nothing paid twice."""
    from unittest import mock

    from oddsflow.processors import markets

    with mock.patch.object(markets, "SETTLE_STEP_LEGS", step):
        e = Engine()
        e.held.add("settle_continuations")
        home = market_up(e)
        e.feed("deposits", r.deposit("a1", 1_000_000_00))
        e.feed("deposits", r.deposit("a2", 1_000_000_00))
        for i in range(n):
            e.feed(
                "bet_requests",
                r.bet(f"b{i}", ("a1", "a2")[i % 2], 1_00, [r.leg("e1", "home", str(home))]),
            )
        engines = [e]
        e.feed("results", r.result("e1", (2, 0)))
        corrected = False
        for k in range(100):
            if k == corrected_at and not corrected:
                e.feed("results", r.result("e1", (0, 2), revision=1))
                corrected = True
            if k in takeovers:
                e = Engine(state=e.state)
                e.held.add("settle_continuations")
                engines.append(e)
            # The partition's continuations in the order they were committed (one FIFO).
            conts = [c for x in engines for c in x.out("settle_continuations")]
            if k == len(conts):
                break  # every continuation fed: the settlement has ended
            e.feed("settle_continuations", conts[k])
        else:
            raise AssertionError("the settlement never ended")
        last: dict[str, dict[str, Any]] = {}
        for x in engines:
            for s in x.out("settlements"):
                if s["bet_id"] not in last or s["revision"] > last[s["bet_id"]]["revision"]:
                    last[s["bet_id"]] = s
        assert sorted(last) == sorted(f"b{i}" for i in range(n))
        won = not corrected
        assert {x["outcome"] for x in last.values()} == {"win" if won else "lose"}
        paid = n * payout_minor(1_00, home) if won else 0
        total = sum(w["balance_minor"] for w in _wallets(e).values())
        assert total == 2 * 1_000_000_00 - n * 1_00 + paid
