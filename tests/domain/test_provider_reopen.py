"""A provider-settled leg's state (cancel windows over verdicts) and the ledger of a bet that a
provider rollback reopens and that then settles again."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oddsflow.domain.errors import LedgerError
from oddsflow.domain.ledger import (
    BOOK_GGR,
    BOOK_OPEN_BETS,
    accept_stake,
    balances,
    player_available,
    reopen,
    reserve_stake,
    resettle_reopened,
    settle_payout,
)
from oddsflow.domain.provider_settlement import (
    CancelWindow,
    ProviderOutcome,
    cancelled_by,
    provider_leg_state,
)
from oddsflow.domain.settlement import LegSettlement, Outcome

D = Decimal
AV = player_available("a1")
VOID = LegSettlement(Outcome.VOID, D(1))


@pytest.mark.parametrize(
    ("placed_at", "verdict", "cancels", "state"),
    [
        (100, None, [], None),  # no verdict, no cancel: open
        (100, ProviderOutcome(1), [], LegSettlement(Outcome.WIN, D("2.5"))),
        (100, ProviderOutcome(0), [], LegSettlement(Outcome.LOSE, D(0))),
        (100, ProviderOutcome(1), [CancelWindow(100, 200)], VOID),  # cancel beats the verdict
        (100, None, [CancelWindow(50, 100)], None),  # end is exclusive
        (100, ProviderOutcome(0), [CancelWindow(101, None)], LegSettlement(Outcome.LOSE, D(0))),
        (100, None, [CancelWindow(None, 101)], VOID),
        (100, None, [CancelWindow(300, 400), CancelWindow()], VOID),  # any active cancel
        (None, ProviderOutcome(1), [CancelWindow(0, 10**15)], LegSettlement(Outcome.WIN, D("2.5"))),
        (None, ProviderOutcome(1), [CancelWindow()], VOID),  # unknown placement: only "every bet"
    ],
)
def test_provider_leg_state(placed_at, verdict, cancels, state):
    assert provider_leg_state(D("2.5"), placed_at, verdict, cancels) == state


@given(
    placed=st.integers(0, 1000),
    start=st.none() | st.integers(0, 1000),
    end=st.none() | st.integers(0, 1000),
)
def test_a_cancel_voids_exactly_the_legs_its_window_holds(placed, start, end):
    inside = (start is None or placed >= start) and (end is None or placed < end)
    assert cancelled_by(placed, CancelWindow(start, end)) is inside
    state = provider_leg_state(D("3"), placed, ProviderOutcome(0), [CancelWindow(start, end)])
    assert state == (VOID if inside else LegSettlement(Outcome.LOSE, D(0)))


def test_reopen_reverses_the_settlement_and_a_reopened_bet_settles_again_under_its_revision():
    settled = settle_payout("b1", "a1", 1000, 2500, "EUR")
    tx = reopen("b1", "a1", 1000, 2500, 1, "EUR")
    assert (tx.tx_id, tx.kind) == ("a1|b1:reopen:1", "reopen")
    assert {p.account: p.amount_minor for p in tx.postings} == {
        AV: -2500,
        BOOK_OPEN_BETS: 1000,
        BOOK_GGR: 1500,
    }
    # the exact opposite of the settlement
    assert {p.account: -p.amount_minor for p in settled.postings} == {
        p.account: p.amount_minor for p in tx.postings
    }
    again = resettle_reopened("b1", "a1", 1000, 0, 2, "EUR")
    assert (again.tx_id, again.kind) == ("a1|b1:resettle:2", "resettle")
    assert {p.account: p.amount_minor for p in again.postings} == {
        BOOK_OPEN_BETS: -1000,
        BOOK_GGR: 1000,
    }
    # a lost bet reopened gives nothing back: only the stake becomes an open bet again
    lost = reopen("b2", "a1", 1000, 0, 1, "EUR")
    assert {p.account: p.amount_minor for p in lost.postings} == {
        BOOK_OPEN_BETS: 1000,
        BOOK_GGR: -1000,
    }


@given(
    stake=st.integers(1, 10**9),
    returns=st.lists(st.integers(0, 10**10), min_size=1, max_size=6),
)
def test_settle_reopen_settle_again_leaves_exactly_the_last_settlement(stake, returns):
    txs = [reserve_stake("b1", "a1", stake, "EUR"), accept_stake("b1", "a1", stake, "EUR")]
    txs.append(settle_payout("b1", "a1", stake, returns[0], "EUR"))
    revision = 0
    for prev, new in itertools.pairwise(returns):
        txs.append(reopen("b1", "a1", stake, prev, revision + 1, "EUR"))
        txs.append(resettle_reopened("b1", "a1", stake, new, revision + 2, "EUR"))
        revision += 2
    assert len({t.tx_id for t in txs}) == len(txs)
    bal = balances(txs)
    assert bal.get(AV, 0) == -stake + returns[-1]
    assert bal.get(BOOK_OPEN_BETS, 0) == 0
    assert bal.get(BOOK_GGR, 0) == stake - returns[-1]
    assert sum(bal.values()) == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: reopen("b", "a1", -1, 0, 1, "EUR"),
        lambda: reopen("b", "a1", 1, -5, 1, "EUR"),
        lambda: resettle_reopened("b", "a1", 1, -5, 1, "EUR"),
        lambda: resettle_reopened("b", "a|1", 1, 5, 1, "EUR"),
    ],
)
def test_reopen_refuses_bad_amounts_and_ids(make):
    with pytest.raises(LedgerError):
        make()
