"""Provider-settled legs (UOF bet_settlement), cancel windows and the certainty policy."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oddsflow.domain.markets import Leg, MarketType, Period
from oddsflow.domain.money import payout_minor
from oddsflow.domain.provider_settlement import (
    Certainty,
    CertaintyPolicy,
    ProviderOutcome,
    ProviderSettlementError,
    SettlementAction,
    cancel_applies,
    certainty_action,
    settle_leg_by_provider,
)
from oddsflow.domain.settlement import (
    EventStatus,
    LegSettlement,
    Outcome,
    Result,
    combine,
    resettlement_delta,
    settle_leg,
)

D = Decimal
W, L, V, HW, HL = Outcome.WIN, Outcome.LOSE, Outcome.VOID, Outcome.HALF_WIN, Outcome.HALF_LOSE


@pytest.mark.parametrize(
    ("result", "void_factor", "dead_heat", "odds", "outcome", "factor"),
    [
        (1, None, None, "2.10", W, "2.10"),
        (0, None, None, "2.10", L, "0"),
        (1, "0", None, "2.10", W, "2.10"),  # an explicit 0 void factor is no void
        (0, "1", None, "2.10", V, "1"),
        (1, "1", None, "2.10", V, "1"),  # fully void whatever the result
        (1, "0.5", None, "1.90", HW, "1.45"),  # (1.90 + 1) / 2
        (0, "0.5", None, "1.90", HL, "0.5"),
        (1, None, "0.5", "3.00", W, "1.5"),  # dead heat: half the stake wins at 3.00
        (1, None, "0.3333", "4.00", W, "1.3332"),
        (0, None, "0.5", "3.00", L, "0"),  # a losing selection ignores the dead heat
        (1, "0.5", "0.5", "3.00", HW, "1.25"),  # (3.00 x 0.5 + 1) / 2
        (1, None, "1", "2.00", W, "2.00"),
    ],
)
def test_settle_leg_by_provider(result, void_factor, dead_heat, odds, outcome, factor):
    verdict = ProviderOutcome(
        result,
        None if void_factor is None else D(void_factor),
        None if dead_heat is None else D(dead_heat),
    )
    assert settle_leg_by_provider(D(odds), verdict) == LegSettlement(outcome, D(factor))


@pytest.mark.parametrize(
    ("result", "void_factor", "dead_heat"),
    [
        (2, None, None),
        (-1, None, None),
        (True, None, None),
        (1, D("0.25"), None),  # Sportradar sends 0.5 or 1 only
        (1, D("1.5"), None),
        (1, None, D("0")),
        (1, None, D("1.01")),
        (1, None, D("NaN")),
        (1, 0.5, None),  # a float is not exact
    ],
)
def test_verdicts_the_engine_cannot_settle_by_are_refused(result, void_factor, dead_heat):
    with pytest.raises(ProviderSettlementError):
        ProviderOutcome(result, void_factor, dead_heat)


@pytest.mark.parametrize(
    ("line", "selection", "home", "away", "verdict"),
    [
        # The provider's verdicts agree with the engine's own score rules where both apply.
        ("-0.25", "home", 1, 1, ProviderOutcome(0, D("0.5"))),  # half lost
        ("-0.25", "away", 1, 1, ProviderOutcome(1, D("0.5"))),  # half won
        ("-0.25", "home", 2, 1, ProviderOutcome(1)),
        ("0", "home", 1, 1, ProviderOutcome(0, D("1"))),  # void
        ("-1.75", "home", 3, 1, ProviderOutcome(1, D("0.5"))),
    ],
)
def test_provider_verdicts_match_the_score_based_rules(line, selection, home, away, verdict):
    leg = Leg("e1", MarketType.ASIAN_HANDICAP, Period.FT, selection, D("1.90"), D(line))
    by_score = settle_leg(leg, Result("e1", EventStatus.FINAL, {Period.FT: (home, away)}))
    assert settle_leg_by_provider(leg.odds, verdict) == by_score


def test_an_accumulator_combines_provider_legs_with_the_one_rounding_rule():
    legs = [
        settle_leg_by_provider(D("1.90"), ProviderOutcome(1, D("0.5"))),  # 1.45
        settle_leg_by_provider(D("3.00"), ProviderOutcome(1, None, D("0.5"))),  # 1.5
        settle_leg_by_provider(D("2.50"), ProviderOutcome(0, D("1"))),  # 1
    ]
    bet = combine(1001, legs)
    assert bet.return_minor == payout_minor(1001, D("1.45") * D("1.5")) == 2177  # 2177.175 down
    assert bet.outcome is W


_odds = st.decimals(min_value=D("1.01"), max_value=D("1000"), places=2)
_verdicts = st.builds(
    ProviderOutcome,
    st.sampled_from([0, 1]),
    st.sampled_from([None, D(0), D("0.5"), D(1)]),
    st.one_of(st.none(), st.decimals(min_value=D("0.01"), max_value=D(1), places=4)),
)


@given(_odds, _verdicts, st.integers(1, 10**9))
def test_a_provider_leg_never_returns_more_than_a_full_win_nor_less_than_zero(odds, verdict, stake):
    s = settle_leg_by_provider(odds, verdict)
    assert 0 <= s.factor <= odds
    returned = combine(stake, [s]).return_minor
    assert 0 <= returned <= payout_minor(stake, odds)
    if verdict.void_factor == 1:
        assert returned == stake
    if verdict.result == 0 and not verdict.void_factor:
        assert returned == 0


@given(_odds, st.decimals(min_value=D("0.01"), max_value=D(1), places=4))
def test_a_dead_heat_never_pays_more_than_the_win(odds, dead_heat):
    full = settle_leg_by_provider(odds, ProviderOutcome(1))
    shared = settle_leg_by_provider(odds, ProviderOutcome(1, None, dead_heat))
    assert shared.outcome is W and shared.factor <= full.factor


@given(_odds, _verdicts, _verdicts, st.integers(1, 10**7))
def test_a_resettlement_posts_only_the_difference(odds, first, second, stake):
    a = combine(stake, [settle_leg_by_provider(odds, first)]).return_minor
    b = combine(stake, [settle_leg_by_provider(odds, second)]).return_minor
    assert a + resettlement_delta(a, b) == b


# ---------------------------------------------------------------- cancel windows


@pytest.mark.parametrize(
    ("placed", "start", "end", "voided"),
    [
        (100, None, None, True),  # no window: every bet
        (100, 100, 200, True),  # start is inside
        (199, 100, 200, True),
        (200, 100, 200, False),  # end is outside
        (99, 100, 200, False),
        (50, None, 100, True),  # only an end: everything before it
        (100, None, 100, False),
        (100, 100, None, True),  # only a start: everything from it on
        (99, 100, None, False),
    ],
)
def test_cancel_window(placed, start, end, voided):
    assert cancel_applies(placed, start, end) is voided


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_a_window_voids_exactly_the_bets_placed_inside_it(placed, a, b):
    start, end = min(a, b), max(a, b)
    assert cancel_applies(placed, start, end) == (start <= placed < end)
    # splitting a window in two voids the same bets
    mid = (start + end) // 2
    assert cancel_applies(placed, start, end) == (
        cancel_applies(placed, start, mid) or cancel_applies(placed, mid, end)
    )


# ---------------------------------------------------------------- certainty policy

LIVE, CONF = Certainty.LIVE_SCOUTED, Certainty.CONFIRMED
DEFAULT, STRICT = CertaintyPolicy.SETTLE_LIVE_RESETTLE_CONFIRMED, CertaintyPolicy.CONFIRMED_ONLY
IGNORE, SETTLE, RESETTLE = (
    SettlementAction.IGNORE,
    SettlementAction.SETTLE,
    SettlementAction.RESETTLE,
)


@pytest.mark.parametrize(
    ("policy", "incoming", "applied", "same", "action"),
    [
        (DEFAULT, LIVE, None, False, SETTLE),  # settle on 1
        (DEFAULT, CONF, None, False, SETTLE),
        (DEFAULT, CONF, LIVE, True, IGNORE),  # confirmed equals: nothing to post
        (DEFAULT, CONF, LIVE, False, RESETTLE),  # confirmed differs: resettle
        (DEFAULT, LIVE, CONF, False, IGNORE),  # a live-scouted never overrides a confirmed
        (DEFAULT, LIVE, LIVE, False, RESETTLE),  # a corrected live settlement
        (DEFAULT, CONF, CONF, False, RESETTLE),  # a corrected confirmed settlement
        (DEFAULT, CONF, CONF, True, IGNORE),  # a duplicate
        (STRICT, LIVE, None, False, IGNORE),
        (STRICT, CONF, None, False, SETTLE),
        (STRICT, CONF, CONF, False, RESETTLE),
    ],
)
def test_certainty_policy(policy, incoming, applied, same, action):
    assert certainty_action(policy, incoming, applied, same) is action


def test_the_default_policy_is_settle_on_live_scouted():
    from oddsflow.streams.uof.settings import UofSettings

    assert UofSettings().certainty_policy is DEFAULT
    assert DEFAULT.minimum is LIVE and STRICT.minimum is CONF
