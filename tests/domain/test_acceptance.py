from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oddsflow.domain.acceptance import (
    AcceptanceState,
    BetRequest,
    Decision,
    LegVerdict,
    Liability,
    Limits,
    MarketState,
    MarketStatus,
    PricePolicy,
    RejectReason,
    Wallet,
    check_leg,
    check_payout,
    check_wallet,
    commit,
    credit,
    decide,
    evolve,
    release,
    reserve,
)
from oddsflow.domain.errors import MoneyBoundError, MoneyError
from oddsflow.domain.markets import Leg, MarketType, Period

D = Decimal

MR = "e1/match_result/FT"
AH = "e2/asian_handicap/FT/-0.25"


def leg(event: str = "e1", selection: str = "home", odds: str = "2.10") -> Leg:
    if event == "e2":
        return Leg("e2", MarketType.ASIAN_HANDICAP, Period.FT, selection, D(odds), D("-0.25"))
    return Leg(event, MarketType.MATCH_RESULT, Period.FT, selection, D(odds))


def request(
    *legs: Leg,
    stake: int = 1000,
    policy: PricePolicy = PricePolicy.NONE,
    bet_id: str = "b1",
    currency: str = "EUR",
) -> BetRequest:
    return BetRequest(bet_id, "a1", stake, currency, legs or (leg(),), policy, 1_000)


def state(**changes: object) -> AcceptanceState:
    base = AcceptanceState(
        wallet=Wallet(100_000, 0),
        markets={
            MR: MarketState(MR, MarketStatus.OPEN, {"home": D("2.10"), "draw": D("3.40")}),
            AH: MarketState(AH, MarketStatus.OPEN, {"home": D("1.90"), "away": D("1.95")}),
        },
        liabilities={},
        decisions={},
        limits=Limits(),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def with_market(**changes: object) -> AcceptanceState:
    s = state()
    return replace(s, markets={**s.markets, MR: replace(s.markets[MR], **changes)})  # type: ignore[arg-type]


def test_reason_precedence_order() -> None:
    assert [r.name for r in sorted(RejectReason)] == [
        "INVALID_REQUEST",
        "MARKET_UNKNOWN",
        "MARKET_CLOSED",
        "MARKET_SUSPENDED",
        "SELECTION_UNKNOWN",
        "PRICE_CHANGED",
        "STAKE_TOO_LOW",
        "STAKE_TOO_HIGH",
        "PAYOUT_TOO_HIGH",
        "LIABILITY_SELECTION",
        "LIABILITY_MARKET",
        "INSUFFICIENT_FUNDS",
    ]
    assert RejectReason.INVALID_REQUEST == 1
    assert [s.value for s in MarketStatus] == [
        "open",
        "suspended",
        "bet_stop",
        "closed",
        "settled",
        "cancelled",
    ]


def test_accept_single_binds_to_current_price() -> None:
    d = decide(state(), request(), now_ms=5_000)
    assert d == Decision("b1", True, None, (D("2.10"),), 2100)
    assert not d.pending


def test_accept_accumulator() -> None:
    req = request(leg(), leg("e2", "away", "1.95"))
    d = decide(state(), req, 0)
    assert d.accepted and d.bound_odds == (D("2.10"), D("1.95"))
    assert d.potential_return_minor == 4095


@pytest.mark.parametrize(
    ("policy", "requested", "accepted"),
    [
        (PricePolicy.NONE, "2.10", True),
        (PricePolicy.NONE, "2.00", False),
        (PricePolicy.NONE, "2.20", False),
        (PricePolicy.HIGHER, "2.00", True),  # current 2.10 >= 2.00: bound at 2.10
        (PricePolicy.HIGHER, "2.10", True),
        (PricePolicy.HIGHER, "2.20", False),
        (PricePolicy.ANY, "5.00", True),
        (PricePolicy.ANY, "1.01", True),
    ],
)
def test_price_policy(policy: PricePolicy, requested: str, accepted: bool) -> None:
    d = decide(state(), request(leg(odds=requested), policy=policy), 0)
    assert d.accepted is accepted
    if accepted:
        assert d.bound_odds == (D("2.10"),)  # always the current price
    else:
        assert d.reason is RejectReason.PRICE_CHANGED and d.bound_odds == ()


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (MarketStatus.CLOSED, RejectReason.MARKET_CLOSED),
        (MarketStatus.SETTLED, RejectReason.MARKET_CLOSED),
        (MarketStatus.CANCELLED, RejectReason.MARKET_CLOSED),
        (MarketStatus.SUSPENDED, RejectReason.MARKET_SUSPENDED),
        (MarketStatus.BET_STOP, RejectReason.MARKET_SUSPENDED),
    ],
)
def test_market_status(status: MarketStatus, reason: RejectReason) -> None:
    assert decide(with_market(status=status), request(), 0).reason is reason


def test_single_reasons() -> None:
    assert decide(state(markets={}), request(), 0).reason is RejectReason.MARKET_UNKNOWN
    assert (
        decide(state(), request(leg(selection="away")), 0).reason is RejectReason.SELECTION_UNKNOWN
    )
    assert decide(state(), request(stake=5), 0).reason is RejectReason.STAKE_TOO_LOW
    big = state(wallet=Wallet(10**12))
    assert decide(big, request(stake=100_000_01), 0).reason is RejectReason.STAKE_TOO_HIGH
    rich = replace(big, limits=Limits(payout_minor_max=2_000))
    assert decide(rich, request(), 0).reason is RejectReason.PAYOUT_TOO_HIGH
    assert decide(state(wallet=Wallet(999)), request(), 0).reason is RejectReason.INSUFFICIENT_FUNDS
    reserved = state(wallet=Wallet(1500, 600))  # 900 available
    assert decide(reserved, request(), 0).reason is RejectReason.INSUFFICIENT_FUNDS


def test_market_id_mismatch_is_unknown() -> None:
    s = state(markets={MR: MarketState("other", MarketStatus.OPEN, {"home": D("2.10")})})
    assert decide(s, request(), 0).reason is RejectReason.MARKET_UNKNOWN


@pytest.mark.parametrize(
    "req",
    [
        request(stake=0),
        request(stake=-5),
        request(stake=True),  # type: ignore[arg-type]
        request(currency="eur"),
        request(bet_id=""),
        request(leg(), leg(selection="draw")),  # two legs on one event
        BetRequest("b1", "", 1000, "EUR", (leg(),), PricePolicy.NONE, 0),
        BetRequest("b1", "a1", 1000, "EUR", (), PricePolicy.NONE, 0),
        BetRequest("b1", "a1", 1000, "EUR", ("x",), PricePolicy.NONE, 0),  # type: ignore[arg-type]
        BetRequest("b1", "a1", 1000, "EUR", (leg(),), "best", 0),  # type: ignore[arg-type]
    ],
)
def test_invalid_request(req: BetRequest) -> None:
    assert decide(state(), req, 0) == Decision(
        req.bet_id, False, RejectReason.INVALID_REQUEST, (), 0
    )


def test_lowest_reason_wins() -> None:
    # closed market AND stake too low AND no funds: MARKET_CLOSED (3) wins
    s = replace(with_market(status=MarketStatus.CLOSED), wallet=Wallet(0))
    assert decide(s, request(stake=5), 0).reason is RejectReason.MARKET_CLOSED
    # price changed AND insufficient funds: PRICE_CHANGED
    s = state(wallet=Wallet(0))
    assert decide(s, request(leg(odds="3")), 0).reason is RejectReason.PRICE_CHANGED
    # accumulator: one leg unknown, another suspended -> unknown (2) beats suspended (4)
    s = state(markets={MR: replace(state().markets[MR], status=MarketStatus.SUSPENDED)})
    assert decide(s, request(leg(), leg("e2")), 0).reason is RejectReason.MARKET_UNKNOWN


def test_accumulator_payout_limit() -> None:
    s = replace(state(), limits=Limits(payout_minor_max=4000))
    assert (
        decide(s, request(leg(), leg("e2", "away", "1.95")), 0).reason
        is RejectReason.PAYOUT_TOO_HIGH
    )


def test_liability_limits() -> None:
    limits = Limits(liability_minor_max_selection=5_000, liability_minor_max_market=8_000)
    s = state(wallet=Wallet(10**9), limits=limits)
    # 1 bet: home 10.00 @ 2.10 -> book loses 11.00 if home wins
    s = evolve(s, decide(s, request(), 0), request())
    assert s.liabilities[MR].selection_liability_minor("home") == 1100
    # 50.00 more on home -> liability 11 + 55 = 66.00 > 50.00 selection limit
    big = request(stake=5000, bet_id="b2")
    assert decide(s, big, 0).reason is RejectReason.LIABILITY_SELECTION
    # the market limit binds when it is the lower one
    s2 = replace(
        s, limits=Limits(liability_minor_max_selection=10**9, liability_minor_max_market=5_000)
    )
    assert decide(s2, big, 0).reason is RejectReason.LIABILITY_MARKET
    # a bet on the other side lowers the home liability: taken even though the book is over
    over = replace(
        s, limits=Limits(liability_minor_max_selection=500, liability_minor_max_market=500)
    )
    lay = request(leg(selection="draw", odds="3.40"), stake=100, bet_id="b3")
    assert decide(over, lay, 0).accepted


def test_liability_object() -> None:
    liab = Liability().add("home", 1000, 2100).add("draw", 500, 1700)
    assert liab.stakes_minor == 1500
    assert liab.selection_liability_minor("home") == 600
    assert liab.selection_liability_minor("draw") == 200
    assert liab.selection_liability_minor("away") == -1500
    assert liab.market_liability_minor() == 600
    assert Liability().add("home", 1000, 1000).market_liability_minor() == 0
    back = liab.remove("draw", 500, 1700)
    assert back.selection_liability_minor("home") == 1100 and back.returns_minor["draw"] == 0


def test_wallet_moves() -> None:
    w = Wallet(1000)
    assert w.available_minor == 1000
    w = reserve(w, 300)
    assert (w.balance_minor, w.reserved_minor, w.available_minor) == (1000, 300, 700)
    assert release(w, 300) == Wallet(1000, 0)
    assert commit(w, 300) == Wallet(700, 0)
    assert credit(w, 50) == Wallet(1050, 300)
    assert credit(Wallet(0), -50) == Wallet(-50, 0)
    with pytest.raises(MoneyError):
        reserve(w, 701)
    with pytest.raises(MoneyError):
        release(w, 301)
    with pytest.raises(MoneyError):
        reserve(w, -1)
    with pytest.raises(MoneyError):
        credit(w, True)  # type: ignore[arg-type]


def test_wallet_sums_stay_inside_64_bits() -> None:
    top = 2**63 - 1
    assert credit(Wallet(top - 1), 1) == Wallet(top)
    with pytest.raises(MoneyBoundError):
        credit(Wallet(top), 1)
    with pytest.raises(MoneyBoundError):
        credit(Wallet(-(2**63)), -1)  # a clawback cannot wrap around either
    with pytest.raises(MoneyBoundError):
        reserve(Wallet(2**64, top), 1)
    with pytest.raises(MoneyBoundError):
        commit(Wallet(-(2**63), 5), 5)


def test_check_pieces_directly() -> None:
    limits = Limits()
    req = request()
    assert check_wallet(Wallet(10**9), req, limits) is None
    assert check_payout(req, (D("2.10"),), limits) is None
    assert check_payout(req, (D("1000000"),), limits) is RejectReason.PAYOUT_TOO_HIGH
    market = state().markets[MR]
    assert check_leg(market, Liability(), leg(), req, limits, 0) == LegVerdict(
        None, D("2.10"), None
    )
    assert check_leg(None, Liability(), leg(), req, limits, 0) == LegVerdict(
        RejectReason.MARKET_UNKNOWN, None, None
    )
    # a single's payout failure still reports the bound price it failed at
    v = check_leg(market, Liability(), leg(), req, Limits(payout_minor_max=1), 0)
    assert v == LegVerdict(RejectReason.PAYOUT_TOO_HIGH, D("2.10"), None)


def test_in_play_delay_hold_then_recheck() -> None:
    s = with_market(in_play=True)
    req = request()
    first = decide(s, req, now_ms=10_000)
    assert first == Decision("b1", False, None, (D("2.10"),), 2100, hold_until_ms=15_000)
    assert first.pending
    s = evolve(s, first, req)
    assert s.wallet.reserved_minor == 1000  # the stake is held during the delay
    assert decide(s, req, 12_000) == first  # a resubmission during the hold: same answer
    assert evolve(s, first, req) == s  # the same hold applied twice changes nothing
    # after the delay, the price is still 2.10: accepted; stake committed from the reserve
    final = decide(s, req, 15_000, held=True)
    assert final == Decision("b1", True, None, (D("2.10"),), 2100)
    after = evolve(s, final, req)
    assert after.wallet == Wallet(99_000, 0)
    assert after.liabilities[MR].selection_liability_minor("home") == 1100
    assert decide(after, req, 20_000, held=True) == final  # final decisions are sticky


def test_in_play_price_moves_during_delay() -> None:
    s = with_market(in_play=True)
    req = request()
    s = evolve(s, decide(s, req, 0), req)
    moved = replace(s, markets={**s.markets, MR: replace(s.markets[MR], prices={"home": D("2.0")})})
    final = decide(moved, req, 5_000, held=True)
    assert final.reason is RejectReason.PRICE_CHANGED
    after = evolve(moved, final, req)
    assert after.wallet == Wallet(100_000, 0)  # reserve released
    assert after.decisions["b1"] == final


def test_in_play_hold_only_for_passing_bets_and_no_delay_limit() -> None:
    s = replace(with_market(in_play=True), wallet=Wallet(0))
    assert decide(s, request(), 0).reason is RejectReason.INSUFFICIENT_FUNDS
    nodelay = replace(with_market(in_play=True), limits=Limits(bet_delay_ms_in_play=0))
    assert decide(nodelay, request(), 0).accepted


def test_evolve_rejection_and_duplicates() -> None:
    s = state(wallet=Wallet(500))
    req = request()
    d = decide(s, req, 0)
    assert d.reason is RejectReason.INSUFFICIENT_FUNDS
    s2 = evolve(s, d, req)
    assert s2.wallet == Wallet(500) and s2.decisions == {"b1": d}
    # funds arrive, but the bet id was already decided: the original decision stands
    s3 = replace(s2, wallet=Wallet(10**6))
    assert decide(s3, req, 0) == d
    assert evolve(s3, decide(s3, req, 0), req) == s3


def test_evolve_accumulator_does_not_touch_market_liability() -> None:
    req = request(leg(), leg("e2", "away", "1.95"))
    s = evolve(state(), decide(state(), req, 0), req)
    assert s.liabilities == {} and s.wallet == Wallet(99_000)


# ---- properties -------------------------------------------------------------------------

req_st = st.builds(
    lambda stake, odds, sel, policy, balance, status, in_play: (
        request(leg(selection=sel, odds=odds), stake=stake, policy=policy),
        with_market(status=status, in_play=in_play, prices={"home": D("2.10"), "draw": D("3.40")}),
        balance,
    ),
    st.integers(-10, 200_000),
    st.sampled_from(["2.10", "2.00", "3.40", "5.00"]),
    st.sampled_from(["home", "draw", "away"]),
    st.sampled_from(list(PricePolicy)),
    st.integers(0, 300_000),
    st.sampled_from(list(MarketStatus)),
    st.booleans(),
)


@given(req_st, st.integers(0, 10**6))
def test_deciding_twice_gives_the_same_decision(
    case: tuple[BetRequest, AcceptanceState, int], now_ms: int
) -> None:
    req, s, balance = case
    s = replace(s, wallet=Wallet(balance))
    first = decide(s, req, now_ms)
    assert decide(s, req, now_ms) == first  # pure
    after = evolve(s, first, req)
    assert decide(after, req, now_ms) == first  # idempotent by bet id
    assert evolve(after, first, req) == after
    # an accepted bet never overdraws; a rejection has a reason, and vice versa
    assert after.wallet.available_minor >= 0
    assert first.accepted == (first.reason is None and not first.pending)
    if first.accepted:
        assert first.potential_return_minor <= req.stake_minor * first.bound_odds[0]
