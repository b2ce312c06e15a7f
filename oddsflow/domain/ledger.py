"""Double-entry ledger postings for each step of a bet's life.

Conventions:

* Signed amounts in minor units: ``+`` increases the account's balance, ``-`` decreases it.
  Every transaction sums to zero per currency (checked on construction, LedgerError otherwise),
  so the sum of all balances is always zero.
* Accounts: ``player:{id}:available`` and ``player:{id}:reserved`` (the player's money),
  ``book:open_bets`` (accepted stakes not yet settled), ``book:ggr`` (the book's gross gaming
  revenue: stake minus return, per settled bet), ``cash:deposits`` (the outside world: it goes
  negative by what players deposited).
* Deterministic ids, so a replay of the same step produces the same ids and a sink can
  de-duplicate: ``tx_id = "{account_id}|{bet_id}:{kind}"`` (``"...:{kind}:{revision}"`` for
  resettlement, ``"{account_id}|{ref}:deposit"`` for deposits) and ``posting_id =
  "{tx_id}:{n}"`` with ``n`` counting the transaction's non-zero postings from 1. Bet ids and
  deposit references are scoped to their account (two accounts may both place a bet "b1"), so
  the account is part of every id; an account id never contains ``|`` (:func:`scoped_id`).
  Zero-amount postings are dropped (a lost bet's payout of 0 moves nothing).

Steps: ``reserve_stake`` (available -> reserved, while the bet is decided), ``release_stake``
(reserved -> available, on rejection), ``accept_stake`` (reserved -> open bets),
``settle_payout`` (open bets give up the stake, the player gets the return, GGR keeps the
difference), ``void_refund`` (a payout whose return is the stake), ``resettle`` (only the
difference of a corrected settlement, never a second payout), ``reopen`` (a provider rolled a
settlement back: the settlement reversed, the bet open again) and ``resettle_reopened`` (a
reopened bet settled again).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from oddsflow.domain.errors import LedgerError

BOOK_OPEN_BETS = "book:open_bets"
BOOK_GGR = "book:ggr"
CASH = "cash:deposits"

_CURRENCY_RE = re.compile(r"[A-Z]{3}")


ID_SEPARATOR = "|"


def scoped_id(account_id: str, local_id: str) -> str:
    """``"{account_id}|{local_id}"``: a bet id or deposit reference made unique across accounts.

    LedgerError if the account id contains the separator (the scoped id would be ambiguous).
    """
    if not account_id or ID_SEPARATOR in account_id:
        raise LedgerError(
            f"account id must be non-empty and free of {ID_SEPARATOR!r}: {account_id!r}"
        )
    return f"{account_id}{ID_SEPARATOR}{local_id}"


def player_available(account_id: str) -> str:
    return f"player:{account_id}:available"


def player_reserved(account_id: str) -> str:
    return f"player:{account_id}:reserved"


@dataclass(frozen=True)
class Posting:
    posting_id: str
    tx_id: str
    account: str
    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if not self.posting_id or not self.tx_id or not self.account:
            raise LedgerError("a posting needs a posting_id, tx_id and account")
        if type(self.amount_minor) is not int and (
            isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int)
        ):
            raise LedgerError(f"amount must be an int of minor units: {self.amount_minor!r}")
        _check_currency(self.currency)


# Currency codes that passed the check: a settlement posts three postings per bet, and a set
# lookup is what the regex cost per posting. At most 26**3 entries.
_CURRENCIES_OK: set[str] = set()


def _check_currency(currency: object) -> None:
    if type(currency) is str and currency in _CURRENCIES_OK:
        return
    if not isinstance(currency, str) or not _CURRENCY_RE.fullmatch(currency):
        raise LedgerError(f"currency must be a 3-letter code: {currency!r}")
    if type(currency) is str:
        _CURRENCIES_OK.add(currency)


@dataclass(frozen=True)
class Transaction:
    tx_id: str
    kind: str
    bet_id: str | None
    postings: tuple[Posting, ...]

    def __post_init__(self) -> None:
        if not self.tx_id or not self.kind:
            raise LedgerError("a transaction needs a tx_id and a kind")
        if not self.postings:
            raise LedgerError(f"transaction {self.tx_id} has no postings")
        totals: dict[str, int] = {}
        for p in self.postings:
            if p.tx_id != self.tx_id:
                raise LedgerError(f"posting {p.posting_id} belongs to {p.tx_id}, not {self.tx_id}")
            totals[p.currency] = totals.get(p.currency, 0) + p.amount_minor
        unbalanced = {c: t for c, t in totals.items() if t != 0}
        if unbalanced:
            raise LedgerError(f"transaction {self.tx_id} does not balance: {unbalanced}")
        ids = [p.posting_id for p in self.postings]
        if len(set(ids)) != len(ids):
            raise LedgerError(f"transaction {self.tx_id} repeats a posting id")


def _amount(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LedgerError(f"{what} must be a non-negative int of minor units: {value!r}")
    return value


def _transaction(
    tx_id: str, kind: str, bet_id: str | None, currency: str, moves: Iterable[tuple[str, int]]
) -> Transaction:
    nonzero = [(account, amount) for account, amount in moves if amount != 0]
    postings = tuple(
        Posting(f"{tx_id}:{n}", tx_id, account, amount, currency)
        for n, (account, amount) in enumerate(nonzero, start=1)
    )
    return Transaction(tx_id, kind, bet_id, postings)


def deposit(ref: str, account_id: str, amount_minor: int, currency: str) -> Transaction:
    """Money in from outside: cash -> player available. ``ref`` is the payment reference."""
    if _amount(amount_minor, "deposit") == 0:
        raise LedgerError("a deposit must be positive")
    return _transaction(
        f"{scoped_id(account_id, ref)}:deposit",
        "deposit",
        None,
        currency,
        [(player_available(account_id), amount_minor), (CASH, -amount_minor)],
    )


def _move(
    account_id: str,
    bet_id: str,
    kind: str,
    source: str,
    target: str,
    amount_minor: int,
    currency: str,
) -> Transaction:
    if _amount(amount_minor, "stake") == 0:
        raise LedgerError("a stake must be positive")
    return _transaction(
        f"{scoped_id(account_id, bet_id)}:{kind}",
        kind,
        bet_id,
        currency,
        [(source, -amount_minor), (target, amount_minor)],
    )


def reserve_stake(bet_id: str, account_id: str, stake_minor: int, currency: str) -> Transaction:
    """Hold the stake while the bet is decided: available -> reserved."""
    return _move(
        account_id,
        bet_id,
        "reserve",
        player_available(account_id),
        player_reserved(account_id),
        stake_minor,
        currency,
    )


def release_stake(bet_id: str, account_id: str, stake_minor: int, currency: str) -> Transaction:
    """Give the stake back on rejection: reserved -> available."""
    return _move(
        account_id,
        bet_id,
        "release",
        player_reserved(account_id),
        player_available(account_id),
        stake_minor,
        currency,
    )


def accept_stake(bet_id: str, account_id: str, stake_minor: int, currency: str) -> Transaction:
    """The bet is accepted: reserved -> the book's open bets."""
    return _move(
        account_id,
        bet_id,
        "accept",
        player_reserved(account_id),
        BOOK_OPEN_BETS,
        stake_minor,
        currency,
    )


def settle_payout(
    bet_id: str, account_id: str, stake_minor: int, return_minor: int, currency: str
) -> Transaction:
    """Settle: open bets -stake, player +return, GGR +(stake - return) (negative on a win)."""
    if _amount(stake_minor, "stake") == 0:
        raise LedgerError("a stake must be positive")
    _amount(return_minor, "return")
    return _transaction(
        f"{scoped_id(account_id, bet_id)}:settle",
        "settle",
        bet_id,
        currency,
        [
            (BOOK_OPEN_BETS, -stake_minor),
            (player_available(account_id), return_minor),
            (BOOK_GGR, stake_minor - return_minor),
        ],
    )


def void_refund(bet_id: str, account_id: str, stake_minor: int, currency: str) -> Transaction:
    """A void bet: a settlement that returns the stake (GGR unchanged)."""
    return settle_payout(bet_id, account_id, stake_minor, stake_minor, currency)


def resettle(
    bet_id: str, account_id: str, delta_minor: int, revision: int, currency: str
) -> Transaction | None:
    """A corrected settlement moves only the difference: player +delta, GGR -delta.

    None when nothing changes. ``revision`` (the result's revision) keeps successive
    corrections of one bet apart.
    """
    if isinstance(delta_minor, bool) or not isinstance(delta_minor, int):
        raise LedgerError(f"delta must be an int of minor units: {delta_minor!r}")
    if delta_minor == 0:
        return None
    tx_id = f"{scoped_id(account_id, bet_id)}:resettle:{revision}"
    return _transaction(
        tx_id,
        "resettle",
        bet_id,
        currency,
        [(player_available(account_id), delta_minor), (BOOK_GGR, -delta_minor)],
    )


def reopen(
    bet_id: str,
    account_id: str,
    stake_minor: int,
    previous_return_minor: int,
    revision: int,
    currency: str,
) -> Transaction:
    """A settled bet is open again (the provider rolled its settlement back): the settlement
    reversed. The player gives back what it was paid (-previous return, the difference to an
    open bet's 0), the stake is an open bet again and GGR gives up what the settlement booked.
    """
    _amount(stake_minor, "stake")
    _amount(previous_return_minor, "previous return")
    return _transaction(
        f"{scoped_id(account_id, bet_id)}:reopen:{revision}",
        "reopen",
        bet_id,
        currency,
        [
            (player_available(account_id), -previous_return_minor),
            (BOOK_OPEN_BETS, stake_minor),
            (BOOK_GGR, previous_return_minor - stake_minor),
        ],
    )


def resettle_reopened(
    bet_id: str,
    account_id: str,
    stake_minor: int,
    return_minor: int,
    revision: int,
    currency: str,
) -> Transaction:
    """A reopened bet settles again: like ``settle_payout``, under the resettlement's id
    (``...:resettle:{revision}``) so it never collides with the bet's first ``settle``."""
    _amount(stake_minor, "stake")
    _amount(return_minor, "return")
    return _transaction(
        f"{scoped_id(account_id, bet_id)}:resettle:{revision}",
        "resettle",
        bet_id,
        currency,
        [
            (BOOK_OPEN_BETS, -stake_minor),
            (player_available(account_id), return_minor),
            (BOOK_GGR, stake_minor - return_minor),
        ],
    )


def balances(transactions: Iterable[Transaction]) -> dict[str, int]:
    """Balance per account (one currency assumed; see :func:`balances_by_currency`)."""
    out: dict[str, int] = {}
    for tx in transactions:
        for p in tx.postings:
            out[p.account] = out.get(p.account, 0) + p.amount_minor
    return out


def balances_by_currency(transactions: Iterable[Transaction]) -> dict[tuple[str, str], int]:
    """Balance per (account, currency)."""
    out: dict[tuple[str, str], int] = {}
    for tx in transactions:
        for p in tx.postings:
            key = (p.account, p.currency)
            out[key] = out.get(key, 0) + p.amount_minor
    return out
