from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oddsflow.domain.errors import LedgerError
from oddsflow.domain.ledger import (
    BOOK_GGR,
    BOOK_OPEN_BETS,
    CASH,
    Posting,
    Transaction,
    accept_stake,
    balances,
    balances_by_currency,
    deposit,
    player_available,
    player_reserved,
    release_stake,
    reserve_stake,
    resettle,
    settle_payout,
    void_refund,
)

AV, RS = player_available("a1"), player_reserved("a1")


def moves(tx: Transaction) -> list[tuple[str, str, int]]:
    return [(p.posting_id, p.account, p.amount_minor) for p in tx.postings]


def test_account_names() -> None:
    assert AV == "player:a1:available" and RS == "player:a1:reserved"
    assert (BOOK_OPEN_BETS, BOOK_GGR, CASH) == ("book:open_bets", "book:ggr", "cash:deposits")


def test_steps_and_deterministic_ids() -> None:
    assert moves(deposit("pay-7", "a1", 5000, "EUR")) == [
        ("a1|pay-7:deposit:1", AV, 5000),
        ("a1|pay-7:deposit:2", CASH, -5000),
    ]
    r = reserve_stake("b1", "a1", 1000, "EUR")
    assert (r.tx_id, r.kind, r.bet_id) == ("a1|b1:reserve", "reserve", "b1")
    assert moves(r) == [("a1|b1:reserve:1", AV, -1000), ("a1|b1:reserve:2", RS, 1000)]
    assert moves(release_stake("b1", "a1", 1000, "EUR")) == [
        ("a1|b1:release:1", RS, -1000),
        ("a1|b1:release:2", AV, 1000),
    ]
    assert moves(accept_stake("b1", "a1", 1000, "EUR")) == [
        ("a1|b1:accept:1", RS, -1000),
        ("a1|b1:accept:2", BOOK_OPEN_BETS, 1000),
    ]
    assert moves(settle_payout("b1", "a1", 1000, 1900, "EUR")) == [
        ("a1|b1:settle:1", BOOK_OPEN_BETS, -1000),
        ("a1|b1:settle:2", AV, 1900),
        ("a1|b1:settle:3", BOOK_GGR, -900),
    ]
    # a lost bet pays nothing: the zero posting is dropped
    assert moves(settle_payout("b1", "a1", 1000, 0, "EUR")) == [
        ("a1|b1:settle:1", BOOK_OPEN_BETS, -1000),
        ("a1|b1:settle:2", BOOK_GGR, 1000),
    ]
    assert moves(void_refund("b1", "a1", 1000, "EUR")) == [
        ("a1|b1:settle:1", BOOK_OPEN_BETS, -1000),
        ("a1|b1:settle:2", AV, 1000),
    ]
    tx = resettle("b1", "a1", -900, 2, "EUR")
    assert tx is not None and tx.tx_id == "a1|b1:resettle:2"
    assert moves(tx) == [("a1|b1:resettle:2:1", AV, -900), ("a1|b1:resettle:2:2", BOOK_GGR, 900)]
    assert resettle("b1", "a1", 0, 3, "EUR") is None
    # a replay of a step yields identical transactions (same ids, same amounts)
    assert reserve_stake("b1", "a1", 1000, "EUR") == r


def test_ids_are_scoped_to_the_account() -> None:
    # Two accounts may each place a bet "b1": their ledger ids never collide (a sink keyed by
    # tx id would otherwise drop the second account's reserve as a duplicate).
    steps = [
        lambda acct: deposit("ref-1", acct, 500, "EUR"),
        lambda acct: reserve_stake("b1", acct, 100, "EUR"),
        lambda acct: release_stake("b1", acct, 100, "EUR"),
        lambda acct: accept_stake("b1", acct, 100, "EUR"),
        lambda acct: settle_payout("b1", acct, 100, 190, "EUR"),
        lambda acct: resettle("b1", acct, 5, 1, "EUR"),
    ]
    for step in steps:
        one, two = step("a1"), step("a2")
        assert one is not None and two is not None
        assert one.tx_id != two.tx_id and one.bet_id == two.bet_id
    with pytest.raises(LedgerError):
        reserve_stake("b1", "a|1", 100, "EUR")  # "a|1" + "b1" would read as "a" + "1|b1"


def test_bet_lifecycle_balances() -> None:
    txs = [
        deposit("d1", "a1", 10_000, "EUR"),
        reserve_stake("b1", "a1", 1000, "EUR"),
        accept_stake("b1", "a1", 1000, "EUR"),
        settle_payout("b1", "a1", 1000, 1900, "EUR"),
        reserve_stake("b2", "a1", 500, "EUR"),
        release_stake("b2", "a1", 500, "EUR"),
    ]
    txs.append(resettle("b1", "a1", -1900, 1, "EUR"))  # type: ignore[arg-type]
    bal = balances(txs)
    assert bal == {AV: 9000, RS: 0, BOOK_OPEN_BETS: 0, BOOK_GGR: 1000, CASH: -10_000}
    assert sum(bal.values()) == 0
    assert balances_by_currency(txs)[(AV, "EUR")] == 9000


@pytest.mark.parametrize(
    "make",
    [
        lambda: Transaction("t", "k", None, (Posting("t:1", "t", "x", 5, "EUR"),)),
        lambda: Transaction("t", "k", None, ()),
        lambda: Transaction("", "k", None, (Posting("t:1", "t", "x", 0, "EUR"),)),
        lambda: Transaction("t", "k", None, (Posting("u:1", "u", "x", 0, "EUR"),)),
        lambda: Transaction(
            "t",
            "k",
            None,
            (Posting("t:1", "t", "x", 5, "EUR"), Posting("t:1", "t", "y", -5, "EUR")),
        ),
        lambda: Transaction(  # balanced in total but not per currency
            "t",
            "k",
            None,
            (Posting("t:1", "t", "x", 5, "EUR"), Posting("t:2", "t", "y", -5, "GBP")),
        ),
        lambda: Posting("", "t", "x", 1, "EUR"),
        lambda: Posting("t:1", "t", "x", 1.5, "EUR"),
        lambda: Posting("t:1", "t", "x", True, "EUR"),
        lambda: Posting("t:1", "t", "x", 1, "euro"),
        lambda: deposit("d", "a1", 0, "EUR"),
        lambda: deposit("d", "a1", -5, "EUR"),
        lambda: reserve_stake("b", "a1", 0, "EUR"),
        lambda: accept_stake("b", "a1", -1, "EUR"),
        lambda: settle_payout("b", "a1", 100, -1, "EUR"),
        lambda: settle_payout("b", "a1", 0, 0, "EUR"),
        lambda: resettle("b", "a1", 1.0, 1, "EUR"),
        lambda: reserve_stake("b", "a1", 100, "eur"),
    ],
)
def test_ledger_rejects(make: object) -> None:
    with pytest.raises(LedgerError):
        make()  # type: ignore[operator]


step_st = st.one_of(
    st.builds(
        lambda a, n: deposit(f"d{n}", a, n, "EUR"),
        st.sampled_from(["a1", "a2"]),
        st.integers(1, 10**9),
    ),
    st.builds(
        lambda a, n: reserve_stake(f"b{n}", a, n, "EUR"),
        st.sampled_from(["a1", "a2"]),
        st.integers(1, 10**9),
    ),
    st.builds(
        lambda a, n: release_stake(f"b{n}", a, n, "EUR"),
        st.sampled_from(["a1", "a2"]),
        st.integers(1, 10**9),
    ),
    st.builds(
        lambda a, n: accept_stake(f"b{n}", a, n, "EUR"),
        st.sampled_from(["a1", "a2"]),
        st.integers(1, 10**9),
    ),
    st.builds(
        lambda a, s, r: settle_payout("b", a, s, r, "EUR"),
        st.sampled_from(["a1", "a2"]),
        st.integers(1, 10**9),
        st.integers(0, 10**10),
    ),
    st.builds(
        lambda a, d, r: resettle("b", a, d, r, "EUR"),
        st.sampled_from(["a1", "a2"]),
        st.integers(-(10**9), 10**9).filter(bool),
        st.integers(0, 9),
    ),
)


@given(st.lists(step_st, max_size=30))
def test_postings_always_sum_to_zero(txs: list[Transaction]) -> None:
    for tx in txs:
        assert sum(p.amount_minor for p in tx.postings) == 0
        assert all(p.posting_id.startswith(tx.tx_id + ":") for p in tx.postings)
        assert all(p.amount_minor != 0 for p in tx.postings)
    assert sum(balances(txs).values()) == 0
