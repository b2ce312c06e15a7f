"""The one-hop decision: table-driven cases, properties, and the contract with today's
composition of the acceptance rules (``acceptance.decide`` / ``evolve``)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oddsflow.domain import acceptance, ledger
from oddsflow.domain.acceptance import (
    AcceptanceState,
    BetRequest,
    Liability,
    Limits,
    MarketState,
    MarketStatus,
    PricePolicy,
    RejectReason,
    Wallet,
    check_wallet,
)
from oddsflow.domain.decide import (
    VIEW_AGE_MS_MAX_IN_PLAY,
    OneHopDecision,
    Outcome,
    ViewEntry,
    ViewSnapshot,
    decide,
    stale_reason,
)
from oddsflow.domain.markets import Leg, MarketType, Period
from oddsflow.domain.quota import AuthRequest, Quotas, Spend, cap_minor

D = Decimal
MR = "e1/match_result/FT"
AH = "e2/asian_handicap/FT/-0.25"
NOW = 1_000_000
LIM = Limits()
FULL = Quotas(0, {(MR, s): 10**9 for s in ("home", "draw", "away")} | {(AH, "home"): 10**9})


def leg(event: str = "e1", selection: str = "home", odds: str = "2.10") -> Leg:
    if event == "e2":
        return Leg("e2", MarketType.ASIAN_HANDICAP, Period.FT, selection, D(odds), D("-0.25"))
    return Leg(event, MarketType.MATCH_RESULT, Period.FT, selection, D(odds))


def request(
    *legs: Leg, stake: int = 1000, policy: PricePolicy = PricePolicy.NONE, bet_id: str = "b1"
) -> BetRequest:
    return BetRequest(bet_id, "a1", stake, "EUR", legs or (leg(),), policy, 1_000)


def market(mid: str = MR, **changes: object) -> MarketState:
    prices = {"home": D("2.10"), "draw": D("3.40")} if mid == MR else {"home": D("1.90")}
    return replace(MarketState(mid, MarketStatus.OPEN, prices), **changes)  # type: ignore[arg-type]


def view(*markets: MarketState, priced_ts_ms: int = NOW) -> ViewSnapshot:
    ms = markets or (market(), market(AH))
    return ViewSnapshot({m.market_id: ViewEntry(m, priced_ts_ms) for m in ms})


def run(
    req: BetRequest | None = None,
    v: ViewSnapshot | None = None,
    wallet: Wallet = Wallet(100_000),
    quota: Quotas = FULL,
    limits: Limits = LIM,
    now_ms: int = NOW,
    held: bool = False,
) -> OneHopDecision:
    return decide(wallet, req or request(), v or view(), quota, limits, now_ms, held=held)


def tx_ids(d: OneHopDecision) -> list[str]:
    return [t.tx_id for t in d.transactions]


# ------------------------------------------------------------------ tables


def test_accept_single_spends_quota() -> None:
    q = Quotas(0, {(MR, "home"): 1_500})
    d = run(quota=q)
    assert d.outcome is Outcome.ACCEPTED and d.final
    assert (d.bound_odds, d.potential_return_minor, d.reason) == ((D("2.10"),), 2100, None)
    assert d.wallet == Wallet(99_000, 0)
    assert tx_ids(d) == ["a1|b1:reserve", "a1|b1:accept"]
    assert d.spends == (Spend("b1", MR, "home", 0, 1000, 2100),)
    assert d.quotas.available_minor(MR, "home") == 400
    assert d.decision() == acceptance.Decision("b1", True, None, (D("2.10"),), 2100)


def test_accept_accumulator_uses_no_quota() -> None:
    d = run(request(leg(), leg("e2", "home", "1.90")), quota=Quotas(0))
    assert d.outcome is Outcome.ACCEPTED
    assert d.bound_odds == (D("2.10"), D("1.90")) and d.potential_return_minor == 3990
    assert d.spends == () and d.quotas == Quotas(0)


def test_accumulator_payout_limit() -> None:
    d = run(request(leg(), leg("e2", "home", "1.90")), limits=Limits(payout_minor_max=3_989))
    assert (d.outcome, d.reason) == (Outcome.REJECTED, RejectReason.PAYOUT_TOO_HIGH)


@pytest.mark.parametrize(
    ("policy", "requested", "accepted"),
    [
        (PricePolicy.NONE, "2.10", True),
        (PricePolicy.NONE, "2.00", False),
        (PricePolicy.HIGHER, "2.00", True),
        (PricePolicy.HIGHER, "2.20", False),
        (PricePolicy.ANY, "9.00", True),
    ],
)
def test_price_policy_binds_current_price(
    policy: PricePolicy, requested: str, accepted: bool
) -> None:
    d = run(request(leg(odds=requested), policy=policy))
    if accepted:
        assert d.outcome is Outcome.ACCEPTED and d.bound_odds == (D("2.10"),)
    else:
        assert (d.outcome, d.reason, d.bound_odds) == (
            Outcome.REJECTED,
            RejectReason.PRICE_CHANGED,
            (),
        )


@pytest.mark.parametrize(
    ("v", "req", "wallet", "reason"),
    [
        (view(market(status=MarketStatus.CLOSED)), request(), Wallet(10**6), "MARKET_CLOSED"),
        (view(market(status=MarketStatus.BET_STOP)), request(), Wallet(10**6), "MARKET_SUSPENDED"),
        (view(market(AH)), request(), Wallet(10**6), "MARKET_UNKNOWN"),
        (view(), request(leg(selection="away")), Wallet(10**6), "SELECTION_UNKNOWN"),
        (view(), request(stake=5), Wallet(10**6), "STAKE_TOO_LOW"),
        (view(), request(stake=100_000_01), Wallet(10**12), "STAKE_TOO_HIGH"),
        (view(), request(), Wallet(999), "INSUFFICIENT_FUNDS"),
        (view(), request(stake=0), Wallet(10**6), "INVALID_REQUEST"),
        # every check at once, lowest wins: closed beats too high a stake (processors/wallet.py
        # today answers STAKE_TOO_HIGH here: it rejects on the wallet before any leg check)
        (
            view(market(status=MarketStatus.CLOSED)),
            request(stake=100_000_01),
            Wallet(0),
            "MARKET_CLOSED",
        ),
        (view(), request(leg(odds="3")), Wallet(0), "PRICE_CHANGED"),
    ],
)
def test_rejections_lowest_reason(
    v: ViewSnapshot, req: BetRequest, wallet: Wallet, reason: str
) -> None:
    d = run(req, v, wallet)
    assert (d.outcome, d.reason) == (Outcome.REJECTED, RejectReason[reason])
    assert d.wallet == wallet and d.transactions == () and d.quotas == FULL
    assert d.decision() == acceptance.Decision("b1", False, RejectReason[reason], (), 0)


def test_single_payout_limit_is_checked_locally() -> None:
    d = run(limits=Limits(payout_minor_max=2_099))
    assert (d.outcome, d.reason) == (Outcome.REJECTED, RejectReason.PAYOUT_TOO_HIGH)


def test_dry_quota_goes_to_the_event_partition_never_rejected() -> None:
    d = run(quota=Quotas(0, {(MR, "home"): 1_099}))  # the bet adds 1100
    assert d.outcome is Outcome.NEEDS_AUTHORITATIVE and d.reason is None and not d.final
    assert d.authoritative == AuthRequest("b1", MR, "home", 0, 1000, 2100)
    assert d.wallet == Wallet(100_000, 1000) and tx_ids(d) == ["a1|b1:reserve"]
    assert d.quotas == Quotas(0, {(MR, "home"): 1_099}) and d.spends == ()
    with pytest.raises(ValueError, match="not decided"):
        d.decision()


def test_no_funds_and_no_quota_is_insufficient_funds() -> None:
    d = run(wallet=Wallet(500), quota=Quotas(0))
    assert (d.outcome, d.reason) == (Outcome.REJECTED, RejectReason.INSUFFICIENT_FUNDS)


def test_in_play_hold_then_accept_at_recheck() -> None:
    live = view(market(in_play=True))
    d = run(v=live)
    assert d.outcome is Outcome.HELD and d.hold_until_ms == NOW + LIM.bet_delay_ms_in_play
    assert d.wallet == Wallet(100_000, 1000) and tx_ids(d) == ["a1|b1:reserve"]
    assert d.quotas == FULL  # liability is taken when the bet is accepted, not while held
    assert d.decision().pending
    later = NOW + 5_000
    d2 = run(
        v=view(market(in_play=True), priced_ts_ms=later), wallet=d.wallet, now_ms=later, held=True
    )
    assert d2.outcome is Outcome.ACCEPTED and tx_ids(d2) == ["a1|b1:accept"]
    assert d2.wallet == Wallet(99_000, 0) and len(d2.spends) == 1


def test_in_play_price_move_during_delay_rejects_and_releases() -> None:
    d = run(v=view(market(in_play=True)))
    moved = market(in_play=True, prices={"home": D("2.00"), "draw": D("3.40")})
    d2 = run(v=view(moved), wallet=d.wallet, held=True)
    assert (d2.outcome, d2.reason) == (Outcome.REJECTED, RejectReason.PRICE_CHANGED)
    assert tx_ids(d2) == ["a1|b1:release"] and d2.wallet == Wallet(100_000, 0)


def test_in_play_recheck_with_dry_quota_goes_authoritative_without_new_reserve() -> None:
    d = run(v=view(market(in_play=True)))
    d2 = run(v=view(market(in_play=True)), wallet=d.wallet, quota=Quotas(0), held=True)
    assert d2.outcome is Outcome.NEEDS_AUTHORITATIVE and d2.transactions == ()
    assert d2.wallet == d.wallet


@pytest.mark.parametrize(
    ("in_play", "age_ms", "reason"),
    [
        (True, 0, None),
        (True, VIEW_AGE_MS_MAX_IN_PLAY, None),
        (True, VIEW_AGE_MS_MAX_IN_PLAY + 1, RejectReason.MARKET_SUSPENDED),
        (True, None, RejectReason.MARKET_SUSPENDED),
        (False, 10**9, None),  # pre-match: no age limit
    ],
)
def test_stale_reason(in_play: bool, age_ms: int | None, reason: RejectReason | None) -> None:
    assert stale_reason(market(in_play=in_play), age_ms, VIEW_AGE_MS_MAX_IN_PLAY) is reason
    assert stale_reason(None, None, 0) is None  # an unknown market is MARKET_UNKNOWN instead


SUSPENDED, CLOSED = RejectReason.MARKET_SUSPENDED, RejectReason.MARKET_CLOSED


@pytest.mark.parametrize(
    ("status", "age_ms", "held", "outcome", "reason"),
    [
        (MarketStatus.OPEN, VIEW_AGE_MS_MAX_IN_PLAY + 1, False, Outcome.REJECTED, SUSPENDED),
        (MarketStatus.OPEN, VIEW_AGE_MS_MAX_IN_PLAY + 1, True, Outcome.REJECTED, SUSPENDED),
        (MarketStatus.OPEN, VIEW_AGE_MS_MAX_IN_PLAY, False, Outcome.HELD, None),
        (MarketStatus.CLOSED, VIEW_AGE_MS_MAX_IN_PLAY + 1, False, Outcome.REJECTED, CLOSED),
    ],
)
def test_stale_in_play_entry_is_refused_as_suspended(
    status: MarketStatus, age_ms: int, held: bool, outcome: Outcome, reason: RejectReason | None
) -> None:
    v = view(market(in_play=True, status=status), priced_ts_ms=NOW - age_ms)
    wallet = Wallet(100_000, 1000) if held else Wallet(100_000)
    d = run(v=v, wallet=wallet, held=held)
    assert (d.outcome, d.reason) == (outcome, reason)
    if held and outcome is Outcome.REJECTED:
        assert tx_ids(d) == ["a1|b1:release"] and d.wallet == Wallet(100_000)


def test_old_pre_match_entry_is_fine() -> None:
    assert run(v=view(market(), priced_ts_ms=NOW - 86_400_000)).outcome is Outcome.ACCEPTED


def test_max_age_is_an_argument() -> None:
    v = view(market(in_play=True), priced_ts_ms=NOW - 200)
    d = decide(Wallet(10**5), request(), v, FULL, LIM, NOW, view_age_ms_max_in_play=100)
    assert d.reason is RejectReason.MARKET_SUSPENDED


# ------------------------------------------------------------------ properties

SELS = ("home", "draw", "away")
odds_st = st.sampled_from(["1.01", "1.50", "1.90", "2.10", "3.40", "7.50"]).map(D)
status_st = st.sampled_from(list(MarketStatus))


@st.composite
def markets_st(draw: st.DrawFn) -> dict[str, MarketState]:
    out = {}
    for mid, sels in ((MR, SELS), (AH, ("home", "away"))):
        if draw(st.integers(0, 9)) == 0:
            continue  # unknown market
        prices = {s: draw(odds_st) for s in sels if draw(st.integers(0, 5))}
        out[mid] = MarketState(
            mid,
            draw(st.sampled_from([MarketStatus.OPEN] * 4 + list(MarketStatus))),
            prices,
            in_play=draw(st.booleans()),
        )
    return out


@st.composite
def request_st(draw: st.DrawFn) -> BetRequest:
    legs = [
        Leg("e1", MarketType.MATCH_RESULT, Period.FT, draw(st.sampled_from(SELS)), draw(odds_st))
    ]
    if draw(st.booleans()):
        legs.append(
            Leg(
                "e2",
                MarketType.ASIAN_HANDICAP,
                Period.FT,
                draw(st.sampled_from(["home", "away"])),
                draw(odds_st),
                D("-0.25"),
            )
        )
    if draw(st.booleans()):
        legs.reverse()
    stake = draw(st.integers(1, 30_000))
    policy = draw(st.sampled_from(list(PricePolicy)))
    return BetRequest("b1", "a1", stake, "EUR", tuple(legs), policy, 0)


limits_st = st.builds(
    Limits,
    stake_minor_min=st.just(10),
    stake_minor_max=st.sampled_from([20_000, 100_000_00]),
    payout_minor_max=st.sampled_from([30_000, 1_000_000_00]),
    liability_minor_max_selection=st.integers(1_000, 60_000),
    liability_minor_max_market=st.integers(1_000, 60_000),
    bet_delay_ms_in_play=st.sampled_from([0, 5_000]),
)


@st.composite
def book_st(draw: st.DrawFn, limits: Limits) -> dict[str, Liability]:
    """Liabilities within the limits (as the quota protocol keeps them)."""
    out = {}
    cap = cap_minor(limits)
    for mid, sels in ((MR, SELS), (AH, ("home", "away"))):
        stakes = draw(st.integers(0, 50_000))
        returns = {s: draw(st.integers(0, stakes + cap)) for s in sels if draw(st.booleans())}
        out[mid] = Liability(stakes, returns)
    return out


def exact_quotas(liabilities: dict[str, Liability], limits: Limits) -> Quotas:
    """One partition holding every bit of headroom: the quota is then exactly the book."""
    cap = cap_minor(limits)
    amounts = {
        (mid, s): max(0, cap - liab.selection_liability_minor(s))
        for mid, liab in liabilities.items()
        for s in SELS
    }
    return Quotas(0, amounts)


LIABILITY = (RejectReason.LIABILITY_SELECTION, RejectReason.LIABILITY_MARKET)


def assert_agrees(
    saga: acceptance.Decision,
    one: OneHopDecision,
    saga_wallet: Wallet,
    wallet_in: Wallet,
    req: BetRequest,
    limits: Limits,
    held: bool,
) -> None:
    if saga.pending:
        assert one.outcome is Outcome.HELD
        assert (one.hold_until_ms, one.bound_odds) == (saga.hold_until_ms, saga.bound_odds)
        assert one.potential_return_minor == saga.potential_return_minor
        assert one.wallet == saga_wallet
    elif saga.accepted:
        assert one.outcome is Outcome.ACCEPTED
        assert (one.bound_odds, one.potential_return_minor) == (
            saga.bound_odds,
            saga.potential_return_minor,
        )
        assert one.wallet == saga_wallet
    elif saga.reason in LIABILITY:
        # the event partition decides (one hop further) what the saga decided on its book; an
        # in-play single is held first and asks at the re-check; no funds: nothing to reserve
        free = acceptance.release(wallet_in, req.stake_minor) if held else wallet_in
        if check_wallet(free, req, limits) is RejectReason.INSUFFICIENT_FUNDS:
            assert (one.outcome, one.reason) == (Outcome.REJECTED, RejectReason.INSUFFICIENT_FUNDS)
        elif one.outcome is Outcome.HELD:
            assert not held and limits.bet_delay_ms_in_play > 0
        else:
            assert one.outcome is Outcome.NEEDS_AUTHORITATIVE
            assert one.wallet == acceptance.reserve(free, req.stake_minor)
    else:
        assert (one.outcome, one.reason) == (Outcome.REJECTED, saga.reason)
        assert one.wallet == saga_wallet


def assert_ledger_matches_wallet(one: OneHopDecision, before: Wallet, account: str) -> None:
    moved = ledger.balances(one.transactions)
    assert moved.get(ledger.player_available(account), 0) == (
        one.wallet.available_minor - before.available_minor
    )
    assert moved.get(ledger.player_reserved(account), 0) == (
        one.wallet.reserved_minor - before.reserved_minor
    )


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_contract_with_todays_composition(data: st.DataObject) -> None:
    """Same inputs, same outcome as ``acceptance.decide`` + ``evolve`` (the saga's rules over
    one state), first check and re-check after a hold, the quota standing in for the book."""
    limits = data.draw(limits_st)
    markets = data.draw(markets_st())
    liabilities = data.draw(book_st(limits))
    req = data.draw(request_st())
    wallet = Wallet(data.draw(st.integers(0, 60_000)))
    quota = exact_quotas(liabilities, limits)
    state = AcceptanceState(wallet, markets, liabilities, {}, limits)
    fresh = ViewSnapshot({m: ViewEntry(s, NOW) for m, s in markets.items()})

    saga = acceptance.decide(state, req, NOW)
    after = acceptance.evolve(state, saga, req)
    one = decide(wallet, req, fresh, quota, limits, NOW)
    assert_agrees(saga, one, after.wallet, wallet, req, limits, held=False)
    assert_ledger_matches_wallet(one, wallet, req.account_id)
    if not saga.pending:
        return
    # the delay ends: the market may have moved or been suspended meanwhile
    later = NOW + limits.bet_delay_ms_in_play
    markets2 = data.draw(st.one_of(st.just(markets), markets_st()))
    state2 = replace(after, markets=markets2)
    saga2 = acceptance.decide(state2, req, later, held=True)
    after2 = acceptance.evolve(state2, saga2, req)
    fresh2 = ViewSnapshot({m: ViewEntry(s, later) for m, s in markets2.items()})
    one2 = decide(one.wallet, req, fresh2, quota, limits, later, held=True)
    assert_agrees(saga2, one2, after2.wallet, one.wallet, req, limits, held=True)
    assert_ledger_matches_wallet(one2, one.wallet, req.account_id)


@settings(max_examples=300, deadline=None)
@given(
    markets_st(),
    request_st(),
    st.integers(0, 60_000),
    st.dictionaries(st.sampled_from(SELS), st.integers(0, 20_000)),
    st.integers(0, 20_000),
)
def test_properties(
    markets: dict[str, MarketState],
    req: BetRequest,
    balance: int,
    quota_home: dict[str, int],
    age_ms: int,
) -> None:
    quota = Quotas(0, {(MR, s): v for s, v in quota_home.items() if v})
    v = ViewSnapshot({m: ViewEntry(s, NOW - age_ms) for m, s in markets.items()})
    wallet = Wallet(balance)
    one = decide(wallet, req, v, quota, LIM, NOW)
    assert one == decide(wallet, req, v, quota, LIM, NOW)  # pure
    assert_ledger_matches_wallet(one, wallet, req.account_id)
    assert one.wallet.available_minor >= 0 and one.wallet.reserved_minor >= 0
    assert all(a >= 0 for a in one.quotas.amounts.values())
    if one.outcome is Outcome.ACCEPTED:
        assert len(one.bound_odds) == len(req.legs)
        assert one.potential_return_minor == acceptance.potential_return(
            req.stake_minor, one.bound_odds
        )
        spent = sum(s.added_minor for s in one.spends)
        held_before = sum(quota.amounts.values())
        assert sum(one.quotas.amounts.values()) == held_before - spent
        assert len(one.spends) == (1 if req.is_single else 0)
        for leg_ in req.legs:
            m = markets[leg_.market_id]
            assert m.status is MarketStatus.OPEN and (not m.in_play or age_ms <= 5_000)
    else:
        assert one.quotas == quota and one.spends == ()
    if one.outcome is Outcome.REJECTED:
        assert one.wallet == wallet and one.transactions == ()


def test_recheck_counts_the_held_stake_as_available() -> None:
    """The stake reserved at the hold is this bet's own: the re-check must not ask for it twice."""
    d = run(v=view(market(in_play=True)), wallet=Wallet(1000))
    assert d.outcome is Outcome.HELD and d.wallet == Wallet(1000, 1000)
    d2 = run(v=view(market(in_play=True)), wallet=d.wallet, held=True)
    assert d2.outcome is Outcome.ACCEPTED and d2.wallet == Wallet(0, 0)
