"""Quotas (demarcation protocol): table-driven rules and a simulation of N account partitions
betting concurrently against one event partition over ordered channels."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oddsflow.domain.acceptance import (
    BetRequest,
    Liability,
    Limits,
    MarketState,
    MarketStatus,
    PricePolicy,
    RejectReason,
    check_leg,
)
from oddsflow.domain.markets import Leg, MarketType, Period
from oddsflow.domain.money import payout_minor
from oddsflow.domain.quota import (
    PPM,
    AuthRequest,
    AuthVerdict,
    Grant,
    QuotaBook,
    QuotaError,
    QuotaPolicy,
    Quotas,
    Recall,
    Return,
    Spend,
    added_liability_minor,
    authoritative,
    cap_minor,
    grant,
    headroom_minor,
    learn_return,
    learn_spend,
    liability_reason,
    on_recall,
    receive_grant,
    return_unused,
    spend,
    split,
    top_up,
)

M = "e1/match_result/FT"
SELS = ("home", "draw", "away")
LIM = Limits(liability_minor_max_selection=5_000, liability_minor_max_market=6_000)


def test_cap_is_the_tighter_limit() -> None:
    assert cap_minor(LIM) == 5_000
    assert cap_minor(Limits(liability_minor_max_selection=9, liability_minor_max_market=7)) == 7


@pytest.mark.parametrize(
    ("stake", "ret", "added"), [(1000, 2100, 1100), (1000, 1000, 0), (1000, 900, 0), (5, 6, 1)]
)
def test_added_liability(stake: int, ret: int, added: int) -> None:
    assert added_liability_minor(stake, ret) == added


@pytest.mark.parametrize(
    ("liability", "selection", "stake", "ret", "reason"),
    [
        (Liability(), "home", 1000, 6000, None),  # +5000: at the cap
        (Liability(), "home", 1000, 6001, RejectReason.LIABILITY_SELECTION),
        # other selections' stakes pay for this one: -2000 + 6000 = 4000
        (Liability(2000, {"draw": 1000}), "home", 1000, 7000, None),
        (
            Liability(0, {"home": 5500}),  # over the selection limit already, laying off
            "draw",
            1000,
            1500,
            None,
        ),
    ],
)
def test_liability_reason_table(
    liability: Liability, selection: str, stake: int, ret: int, reason: RejectReason | None
) -> None:
    assert liability_reason(liability, selection, stake, ret, LIM) is reason


def test_liability_reason_market_limit() -> None:
    lim = Limits(liability_minor_max_selection=10_000, liability_minor_max_market=3_000)
    assert liability_reason(Liability(), "home", 1000, 4001, lim) is RejectReason.LIABILITY_MARKET


@given(
    st.integers(0, 20_000),
    st.dictionaries(st.sampled_from(SELS), st.integers(0, 30_000)),
    st.sampled_from(SELS),
    st.integers(10, 5_000),
    st.sampled_from(["1.01", "1.5", "2.10", "3.40", "7.5"]),
)
def test_liability_reason_is_check_legs_rule(
    stakes: int, returns: dict[str, int], sel: str, stake: int, odds: str
) -> None:
    liability = Liability(stakes, returns)
    leg = Leg("e1", MarketType.MATCH_RESULT, Period.FT, sel, Decimal(odds))
    req = BetRequest("b", "a", stake, "GBP", (leg,), PricePolicy.ANY, 0)
    market = MarketState(M, MarketStatus.OPEN, dict.fromkeys(SELS, Decimal(odds)))
    verdict = check_leg(market, liability, leg, req, LIM, 0)
    ret = payout_minor(stake, Decimal(odds))
    assert liability_reason(liability, sel, stake, ret, LIM) is verdict.reason


def test_grant_never_exceeds_headroom_minus_outstanding() -> None:
    book = QuotaBook(M, Liability(0, {"home": 1000}))  # home liability 1000: headroom 4000
    book, g1 = grant(book, 0, "home", 3_000, LIM)
    assert g1 == Grant(M, "home", 0, 3_000)
    book, g2 = grant(book, 1, "home", 3_000, LIM)
    assert g2 == Grant(M, "home", 1, 1_000)  # only what is left
    book, g3 = grant(book, 2, "home", 1, LIM)
    assert g3 is None and headroom_minor(book, "home", LIM) == 0
    assert book.outstanding == {(0, "home"): 3_000, (1, "home"): 1_000}


def test_split_shares_half_the_headroom_over_partitions() -> None:
    book, grants = split(QuotaBook(M), ("home", "draw"), LIM, QuotaPolicy(partitions=4))
    assert [g.amount_minor for g in grants] == [625] * 8  # 5000 * 1/2 / 4
    assert headroom_minor(book, "home", LIM) == 2_500


def test_spend_fast_path_and_authoritative_path() -> None:
    q = receive_grant(Quotas(partition=1), Grant(M, "home", 1, 1_500))
    fast = spend(q, "b1", M, "home", 1000, 2100)  # adds 1100
    assert fast.fast and fast.spend == Spend("b1", M, "home", 1, 1000, 2100)
    assert fast.quotas.available_minor(M, "home") == 400
    slow = spend(fast.quotas, "b2", M, "home", 1000, 2100)
    assert not slow.fast and slow.quotas == fast.quotas
    assert slow.request == AuthRequest("b2", M, "home", 1, 1000, 2100)
    other = spend(fast.quotas, "b3", M, "draw", 1000, 3400)
    assert not other.fast  # quotas are per selection


def test_grant_to_another_partition_is_an_error() -> None:
    with pytest.raises(QuotaError):
        receive_grant(Quotas(partition=0), Grant(M, "home", 1, 5))
    with pytest.raises(QuotaError):
        on_recall(Quotas(partition=0), Recall(M, 3))


def test_learn_spend_moves_grant_into_liability_and_tops_up() -> None:
    policy = QuotaPolicy(partitions=2)
    book, _ = split(QuotaBook(M), ("home",), LIM, policy)  # 1250 each
    book, verdicts = learn_spend(book, Spend("b1", M, "home", 0, 1000, 2000), LIM)  # +1000
    assert verdicts == ()
    assert book.held_by(0, "home") == 250
    assert book.liability.selection_liability_minor("home") == 1_000
    assert headroom_minor(book, "home", LIM) == 2_500  # unchanged by learning
    book, g = top_up(book, 0, "home", LIM, policy)
    # its share: (cap 5000 - learned 1000) * 1/2 / 2 partitions = 1000, so 750 more
    assert g == Grant(M, "home", 0, 750)
    assert book.held_by(0, "home") == 1_000


@pytest.mark.parametrize(
    ("spent", "granted"),
    [
        pytest.param(1, None, id="a small spend: no grant message yet"),
        pytest.param(311, None, id="just under a quarter of the share"),
        pytest.param(312, 312, id="a quarter of the share spent: topped up"),
    ],
)
def test_a_partition_is_topped_up_once_it_has_spent_its_refill_share(spent, granted) -> None:
    # Share of partition 0: (cap 5000 - learned 0) * 1/2 / 2 partitions = 1250; a quarter 312.
    policy = QuotaPolicy(partitions=2, refill_ppm=250_000)
    book = QuotaBook(M, outstanding={(0, "home"): 1_250 - spent})
    book, g = top_up(book, 0, "home", LIM, policy)
    assert (g.amount_minor if g else None) == granted


def test_learn_more_than_granted_is_an_error() -> None:
    with pytest.raises(QuotaError):
        learn_spend(QuotaBook(M), Spend("b", M, "home", 0, 100, 300), LIM)


def test_return_unused() -> None:
    q = receive_grant(receive_grant(Quotas(0), Grant(M, "home", 0, 7)), Grant("m2", "x", 0, 3))
    q2, rets = return_unused(q, M)
    assert rets == (Return(M, "home", 0, 7),) and q2.amounts == {("m2", "x"): 3}
    book = QuotaBook(M, outstanding={(0, "home"): 7})
    book, verdicts = learn_return(book, rets[0], LIM)
    assert book.outstanding == {} and verdicts == ()


def test_authoritative_accepts_what_fits_net_of_grants() -> None:
    book = QuotaBook(M, outstanding={(1, "home"): 2_000})
    book, verdicts, recalls = authoritative(book, AuthRequest("b", M, "home", 0, 1000, 4000), LIM)
    assert verdicts == (AuthVerdict("b", 0, None),) and recalls == ()
    assert book.liability.selection_liability_minor("home") == 3_000


def test_dry_quota_bet_that_fits_globally_is_recalled_then_accepted() -> None:
    """Partition 1 holds most of the headroom it will never use; partition 0's bet fits the
    true headroom: it is parked, the grants come back, and it is accepted."""
    book = QuotaBook(M, outstanding={(1, "home"): 4_000, (1, "draw"): 100})
    req = AuthRequest("b", M, "home", 0, 1000, 4000)  # +3000 > 1000 free net of grants
    book, verdicts, recalls = authoritative(book, req, LIM)
    assert verdicts == () and recalls == (Recall(M, 1),) and book.recalling
    q1 = Quotas(1, {(M, "home"): 4_000, (M, "draw"): 100})
    q1, returns = on_recall(q1, recalls[0])
    assert q1.amounts == {}
    book, verdicts = learn_return(book, returns[0], LIM)
    assert verdicts == ()  # draw is still out
    assert grant(book, 2, "home", 10, LIM) == (book, None)  # no grants during a recall
    later = AuthRequest("b2", M, "home", 2, 1000, 1500)
    book, v2, r2 = authoritative(book, later, LIM)
    assert v2 == () and r2 == ()  # parked behind the recall, in order
    book, verdicts = learn_return(book, returns[1], LIM)
    assert verdicts == (AuthVerdict("b", 0, None), AuthVerdict("b2", 2, None))
    assert not book.recalling and book.parked == ()
    assert book.liability.selection_liability_minor("home") == (4000 + 1500) - (1000 + 1000)


def test_exact_rejection_when_nothing_is_outstanding() -> None:
    book = QuotaBook(M, Liability(0, {"home": 4_000}))
    book, verdicts, _ = authoritative(book, AuthRequest("b", M, "home", 0, 1000, 2001), LIM)
    assert verdicts == (AuthVerdict("b", 0, RejectReason.LIABILITY_SELECTION),)
    assert book.liability == Liability(0, {"home": 4_000})


def test_recall_finishes_when_the_last_spend_is_learned() -> None:
    """A partition that spent its whole quota has nothing to return: its spend ends the recall."""
    book = QuotaBook(M, outstanding={(1, "home"): 1_000})
    book, _, recalls = authoritative(book, AuthRequest("b", M, "home", 0, 1000, 5500), LIM)
    assert recalls == (Recall(M, 1),)
    book, verdicts = learn_spend(book, Spend("x", M, "home", 1, 1000, 2000), LIM)
    assert verdicts == (AuthVerdict("b", 0, RejectReason.LIABILITY_SELECTION),)  # 1000+4500


# ------------------------------------------------------------------ simulation

ODDS = ("1.01", "1.50", "2.10", "3.40", "7.50", "15")

Msg = Grant | Recall | AuthVerdict | Spend | Return | AuthRequest


@dataclass
class Sim:
    limits: Limits
    policy: QuotaPolicy
    book: QuotaBook = field(default_factory=lambda: QuotaBook(M))
    quotas: list[Quotas] = field(default_factory=list)
    to_account: list[deque[Msg]] = field(default_factory=list)
    to_event: list[deque[Msg]] = field(default_factory=list)
    true: Liability = field(default_factory=Liability)  # every bet accepted anywhere
    bets: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    outcome: dict[str, RejectReason | None] = field(default_factory=dict)
    fast: int = 0

    def __post_init__(self) -> None:
        n = self.policy.partitions
        self.quotas = [Quotas(p) for p in range(n)]
        self.to_account = [deque() for _ in range(n)]
        self.to_event = [deque() for _ in range(n)]

    def check(self) -> None:
        for s in SELS:
            assert (
                self.true.selection_liability_minor(s) <= self.limits.liability_minor_max_selection
            )
        assert self.true.market_liability_minor() <= self.limits.liability_minor_max_market

    def accept(self, bet_id: str) -> None:
        sel, stake, ret = self.bets[bet_id]
        assert bet_id not in self.outcome
        self.true = self.true.add(sel, stake, ret)
        self.outcome[bet_id] = None

    def verdicts(self, verdicts: tuple[AuthVerdict, ...]) -> None:
        for v in verdicts:
            sel, stake, ret = self.bets[v.bet_id]
            if v.reason is None:
                self.accept(v.bet_id)
            else:
                # refused only if it does not fit the true headroom of everything accepted
                assert liability_reason(self.true, sel, stake, ret, self.limits) is v.reason
                assert v.bet_id not in self.outcome
                self.outcome[v.bet_id] = v.reason
            self.to_account[v.partition].append(v)

    def regrant(self) -> None:
        self.book, grants = split(self.book, SELS, self.limits, self.policy)
        for g in grants:
            self.to_account[g.partition].append(g)

    def grant(self, p: int, sel: str, amount_minor: int) -> None:
        self.book, g = grant(self.book, p, sel, amount_minor, self.limits)
        if g is not None:
            self.to_account[p].append(g)

    def bet(self, p: int, sel: str, stake: int, odds: str) -> None:
        bet_id = f"b{len(self.bets)}"
        ret = payout_minor(stake, Decimal(odds))
        self.bets[bet_id] = (sel, stake, ret)
        res = spend(self.quotas[p], bet_id, M, sel, stake, ret)
        self.quotas[p] = res.quotas
        if res.spend is not None:
            self.fast += 1
            self.accept(bet_id)
            self.to_event[p].append(res.spend)
        else:
            assert res.request is not None
            self.to_event[p].append(res.request)

    def deliver_to_event(self, p: int) -> None:
        if not self.to_event[p]:
            return
        msg = self.to_event[p].popleft()
        was_recalling = self.book.recalling
        if isinstance(msg, Spend):
            self.book, vs = learn_spend(self.book, msg, self.limits)
            self.verdicts(vs)
            self.book, g = top_up(self.book, p, msg.selection, self.limits, self.policy)
            if g is not None:
                self.to_account[p].append(g)
        elif isinstance(msg, Return):
            self.book, vs = learn_return(self.book, msg, self.limits)
            self.verdicts(vs)
        elif isinstance(msg, AuthRequest):
            self.book, vs, recalls = authoritative(self.book, msg, self.limits)
            self.verdicts(vs)
            for r in recalls:
                self.to_account[r.partition].append(r)
        if was_recalling and not self.book.recalling:
            self.regrant()

    def deliver_to_account(self, p: int) -> None:
        if not self.to_account[p]:
            return
        msg = self.to_account[p].popleft()
        if isinstance(msg, Grant):
            self.quotas[p] = receive_grant(self.quotas[p], msg)
        elif isinstance(msg, Recall):
            self.quotas[p], returns = on_recall(self.quotas[p], msg)
            self.to_event[p].extend(returns)

    def give_back(self, p: int) -> None:
        self.quotas[p], returns = return_unused(self.quotas[p], M)
        self.to_event[p].extend(returns)

    def drain(self) -> None:
        while any(self.to_event) or any(self.to_account):
            for p in range(self.policy.partitions):
                self.deliver_to_event(p)
                self.deliver_to_account(p)
                self.check()


bet_st = st.tuples(
    st.just("bet"),
    st.integers(0, 3),
    st.sampled_from(SELS),
    st.integers(100, 3_000),  # >= 100 minor: every single at odds >= 1.01 adds liability
    st.sampled_from(ODDS),
)
op_st = st.one_of(
    bet_st,
    bet_st,
    # deliver up to n messages of one ordered channel
    st.tuples(st.sampled_from(["to_event", "to_account"]), st.integers(0, 3), st.integers(1, 4)),
    st.tuples(st.just("give_back"), st.integers(0, 3)),
    st.tuples(st.just("split")),
    # a grant of any size (e.g. a partition asking for more): the event side must clip it
    st.tuples(st.just("grant"), st.integers(0, 3), st.sampled_from(SELS), st.integers(1, 8_000)),
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 4),
    st.integers(0, 1_000_000),
    st.integers(500, 8_000),
    st.integers(500, 8_000),
    st.lists(op_st, min_size=10, max_size=150),
)
def test_quotas_never_exceed_the_limit_and_never_refuse_what_fits(
    partitions: int, share_ppm: int, sel_max: int, market_max: int, ops: list[tuple[object, ...]]
) -> None:
    limits = Limits(liability_minor_max_selection=sel_max, liability_minor_max_market=market_max)
    sim = Sim(limits, QuotaPolicy(partitions=partitions, share_ppm=share_ppm))
    sim.regrant()
    for op in ops:
        kind = op[0]
        p = int(op[1]) % partitions if len(op) > 1 else 0  # type: ignore[call-overload]
        if kind == "bet":
            sim.bet(p, str(op[2]), int(op[3]), str(op[4]))  # type: ignore[call-overload]
        elif kind == "to_event":
            for _ in range(int(op[2])):  # type: ignore[call-overload]
                sim.deliver_to_event(p)
        elif kind == "to_account":
            for _ in range(int(op[2])):  # type: ignore[call-overload]
                sim.deliver_to_account(p)
        elif kind == "give_back":
            sim.give_back(p)
        elif kind == "grant":
            sim.grant(p, str(op[2]), int(op[3]))  # type: ignore[call-overload]
        else:
            sim.regrant()
        sim.check()
    sim.drain()
    # every bet decided exactly once; nothing left parked; the event side's books are exact
    assert set(sim.outcome) == set(sim.bets)
    assert not sim.book.recalling and sim.book.parked == ()
    assert sim.book.liability == sim.true
    held = {(q.partition, s): q.available_minor(M, s) for q in sim.quotas for s in SELS}
    assert {k: v for k, v in held.items() if v} == dict(sim.book.outstanding)


def test_simulation_fast_path_share_with_many_partitions() -> None:
    """Small bets far from the limit are all decided on the fast path once quotas arrived."""
    sim = Sim(Limits(), QuotaPolicy(partitions=4))
    sim.regrant()
    sim.drain()
    for i in range(400):
        sim.bet(i % 4, SELS[i % 3], 1_000, "2.10")
        if i % 10 == 0:
            sim.drain()
    sim.drain()
    assert sim.fast == 400 and all(r is None for r in sim.outcome.values())


@pytest.mark.parametrize("seed", range(12))
def test_simulation_near_the_limit_seeded(seed: int) -> None:
    """The issue's proof, in the pure model: many bets on every partition, concurrently (random
    delivery order), on one market near its limit, with oversized grant requests mixed in."""
    rng = random.Random(seed)
    partitions = 1 + seed % 4
    limits = Limits(liability_minor_max_selection=6_000, liability_minor_max_market=7_000)
    sim = Sim(limits, QuotaPolicy(partitions=partitions, share_ppm=rng.choice([0, 300_000, PPM])))
    sim.regrant()
    for _ in range(1_500):
        p, roll = rng.randrange(partitions), rng.random()
        if roll < 0.4:
            sim.bet(p, rng.choice(SELS), rng.randint(100, 2_000), rng.choice(ODDS))
        elif roll < 0.65:
            sim.deliver_to_event(p)
        elif roll < 0.9:
            sim.deliver_to_account(p)
        elif roll < 0.95:
            sim.grant(p, rng.choice(SELS), rng.randint(1, 8_000))
        elif roll < 0.98:
            sim.give_back(p)
        else:
            sim.regrant()
        sim.check()
    sim.drain()
    assert set(sim.outcome) == set(sim.bets)
    refused = [r for r in sim.outcome.values() if r is not None]
    assert refused, "the scenario must reach the limit"
    assert sim.book.liability == sim.true
