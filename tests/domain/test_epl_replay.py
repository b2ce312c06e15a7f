"""Replay real EPL matches (2009-2024) through pricing, acceptance, settlement and the ledger.

Every match's closing 1X2 (and over/under 2.5 and BTTS when present) is priced with a 5% margin
(on 1X2 the method rotates over proportional/additive/power/Shin by row; 2-way
markets use proportional to keep the run short), deterministic synthetic bets
are placed at the priced odds through ``decide``/``evolve``, settled from the real full-time
score and posted to the ledger. The book's result is then checked against an independent count
made with plain integer arithmetic from the CSV (scores compared directly, odds as integer
hundredths), not with the domain's functions. Some results are first settled wrong and then
corrected, so resettlement is replayed too.

The CSV is third-party data kept outside the repo: ``$ODDSFLOW_EPL_CSV`` or
``../shared/data/epl-odds-results.csv`` beside the repo root.
"""

from __future__ import annotations

import csv
import os
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from oddsflow.domain.acceptance import (
    AcceptanceState,
    BetRequest,
    Limits,
    MarketState,
    MarketStatus,
    PricePolicy,
    Wallet,
    decide,
    evolve,
)
from oddsflow.domain.errors import OddsError
from oddsflow.domain.ledger import (
    BOOK_GGR,
    BOOK_OPEN_BETS,
    CASH,
    Transaction,
    accept_stake,
    balances,
    deposit,
    player_available,
    player_reserved,
    reserve_stake,
    resettle,
    settle_payout,
)
from oddsflow.domain.markets import Leg, MarketType, Period
from oddsflow.domain.pricing import Ladder, Method, price
from oddsflow.domain.settlement import EventStatus, Result, resettlement_delta, settle_bet


def _csv_path() -> Path:
    env = os.environ.get("ODDSFLOW_EPL_CSV")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared/data/epl-odds-results.csv"


CSV_PATH = _csv_path()
pytestmark = pytest.mark.skipif(
    not CSV_PATH.is_file(),
    reason=f"EPL data not found at {CSV_PATH} (set ODDSFLOW_EPL_CSV to its path)",
)

MARGIN = Decimal("0.05")
METHODS = (Method.PROPORTIONAL, Method.ADDITIVE, Method.POWER, Method.SHIN)
ACCOUNT = "replay"
DEPOSIT_MINOR = 10**12


def _rows() -> list[dict[str, str]]:
    with CSV_PATH.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _markets(
    row: dict[str, str],
) -> list[tuple[MarketType, Decimal | None, tuple[str, ...], list[str]]]:
    """(market, line, selections, provider odds text) for each market the row has prices for."""
    out = [
        (
            MarketType.MATCH_RESULT,
            None,
            ("home", "draw", "away"),
            [row["home_close"], row["draw_close"], row["away_close"]],
        )
    ]
    if row["over_2.5_close"] and row["under_2.5_close"]:
        out.append(
            (
                MarketType.TOTAL_GOALS,
                Decimal("2.5"),
                ("over", "under"),
                [row["over_2.5_close"], row["under_2.5_close"]],
            )
        )
    if row["bts_yes_close"] and row["bts_no_close"]:
        out.append(
            (
                MarketType.BOTH_TEAMS_TO_SCORE,
                None,
                ("yes", "no"),
                [row["bts_yes_close"], row["bts_no_close"]],
            )
        )
    return out


def _independent_win(market: MarketType, selection: str, home: int, away: int) -> bool:
    """Plain comparisons, written apart from the settlement module on purpose."""
    if market is MarketType.MATCH_RESULT:
        return {"home": home > away, "draw": home == away, "away": home < away}[selection]
    if market is MarketType.TOTAL_GOALS:
        return (home + away >= 3) == (selection == "over")
    return (home >= 1 and away >= 1) == (selection == "yes")


def _hundredths(odds: Decimal) -> int:
    """Ladder odds (2 dp) as an integer number of hundredths, via text: "2.09" -> 209."""
    units, _, cents = f"{odds:.2f}".partition(".")
    return int(units) * 100 + int(cents)


def test_epl_replay() -> None:
    rows = _rows()
    assert len(rows) > 5000
    ladder = Ladder()
    wallet = Wallet()
    txs: list[Transaction] = [deposit("replay-funding", ACCOUNT, DEPOSIT_MINOR, "GBP")]
    wallet = replace(wallet, balance_minor=DEPOSIT_MINOR)
    expected_stakes = expected_returns = 0
    bets = wins = corrections = fallbacks = 0
    prev_single: tuple[Leg, int, int] | None = None  # (leg, home, away) for the doubles

    for i, row in enumerate(rows):
        event = f"epl-{i}"
        home, away = int(row["FTHG"]), int(row["FTAG"])
        method = METHODS[i % len(METHODS)]
        state = AcceptanceState(wallet=wallet, limits=Limits(stake_minor_max=10**9))
        placed: list[tuple[Leg, int]] = []
        markets: dict[str, MarketState] = {}
        for market, line, sels, provider_text in _markets(row):
            provider = [Decimal(t) for t in provider_text]
            # the solvers are slow in Decimal: rotate methods on 1X2, proportional on 2-way
            m = method if market is MarketType.MATCH_RESULT else Method.PROPORTIONAL
            try:
                priced = price(provider, MARGIN, m, ladder)
            except OddsError:  # additive can push a longshot below zero: fall back
                fallbacks += 1
                priced = price(provider, MARGIN, Method.PROPORTIONAL, ladder)
            assert priced.overround >= MARGIN
            for odds, fair in zip(priced.odds, priced.fair_probabilities, strict=True):
                assert ladder.is_tick(odds) and odds * fair < 1  # the margin is on every price
            mid_leg = Leg(event, market, Period.FT, sels[0], priced.odds[0], line)
            markets[mid_leg.market_id] = MarketState(
                mid_leg.market_id, MarketStatus.OPEN, dict(zip(sels, priced.odds, strict=True))
            )
            for j, (sel, odds) in enumerate(zip(sels, priced.odds, strict=True)):
                stake = 100 * (1 + (i * 7 + j * 13 + len(placed)) % 50)  # 1.00 .. 50.00
                placed.append((Leg(event, market, Period.FT, sel, odds, line), stake))
        state = replace(state, markets=markets)

        requests: list[tuple[BetRequest, list[tuple[Leg, int, int]]]] = []
        for k, (leg, stake) in enumerate(placed):
            req = BetRequest(f"{event}-{k}", ACCOUNT, stake, "GBP", (leg,), PricePolicy.NONE, 0)
            requests.append((req, [(leg, home, away)]))
        if prev_single is not None and i % 5 == 0:  # a double with the previous match's home bet
            req = BetRequest(
                f"{event}-dbl",
                ACCOUNT,
                500,
                "GBP",
                (prev_single[0], placed[0][0]),
                PricePolicy.ANY,
                0,
            )
            requests.append((req, [prev_single, (placed[0][0], home, away)]))
            prev_leg = prev_single[0]
            state = replace(
                state,
                markets={
                    **state.markets,
                    prev_leg.market_id: MarketState(
                        prev_leg.market_id, MarketStatus.OPEN, {prev_leg.selection: prev_leg.odds}
                    ),
                },
            )
        prev_single = (placed[0][0], home, away)

        for req, legs_scores in requests:
            decision = decide(state, req, now_ms=0)
            assert decision.accepted, (req.bet_id, decision)
            state = evolve(state, decision, req)
            txs.append(reserve_stake(req.bet_id, ACCOUNT, req.stake_minor, "GBP"))
            txs.append(accept_stake(req.bet_id, ACCOUNT, req.stake_minor, "GBP"))
            results = {
                leg.event_id: Result(leg.event_id, EventStatus.FINAL, {Period.FT: (h, a)})
                for leg, h, a in legs_scores
            }
            settled = settle_bet(req.stake_minor, req.legs, results)
            if i % 50 == 0:  # first settled from a wrong score (home +1), then corrected
                wrong = {
                    eid: Result(
                        eid,
                        EventStatus.FINAL,
                        {Period.FT: (r.scores[Period.FT][0] + 1, r.scores[Period.FT][1])},
                    )
                    for eid, r in results.items()
                }
                first = settle_bet(req.stake_minor, req.legs, wrong)
                txs.append(
                    settle_payout(req.bet_id, ACCOUNT, req.stake_minor, first.return_minor, "GBP")
                )
                delta = resettlement_delta(first.return_minor, settled.return_minor)
                fix = resettle(req.bet_id, ACCOUNT, delta, 1, "GBP")
                if fix is not None:
                    corrections += 1
                    txs.append(fix)
            else:
                txs.append(
                    settle_payout(req.bet_id, ACCOUNT, req.stake_minor, settled.return_minor, "GBP")
                )
            # the independent count: integer hundredths, plain score comparisons
            factor_num, factor_den, won = 1, 1, True
            for leg, h, a in legs_scores:
                won = won and _independent_win(leg.market, leg.selection, h, a)
                factor_num *= _hundredths(leg.odds)
                factor_den *= 100
            expected_return = req.stake_minor * factor_num // factor_den if won else 0
            assert settled.return_minor == expected_return, req.bet_id
            expected_stakes += req.stake_minor
            expected_returns += expected_return
            bets += 1
            wins += won
        wallet = state.wallet  # stakes committed; payouts are tracked by the ledger

    book = balances(txs)
    assert sum(book.values()) == 0
    assert book.get(BOOK_OPEN_BETS, 0) == 0
    assert book.get(player_reserved(ACCOUNT), 0) == 0
    assert book[BOOK_GGR] == expected_stakes - expected_returns
    assert book[player_available(ACCOUNT)] == DEPOSIT_MINOR - expected_stakes + expected_returns
    assert book[CASH] == -DEPOSIT_MINOR
    assert wallet.balance_minor == DEPOSIT_MINOR - expected_stakes and wallet.reserved_minor == 0
    hold = Decimal(book[BOOK_GGR]) / Decimal(expected_stakes)
    # a 5% margin over ~40k real outcomes: the book wins, by a plausible share of turnover
    assert Decimal("0") < hold < Decimal("0.15"), hold
    assert bets > 35_000 and 0 < wins < bets and corrections > 0
    assert fallbacks < bets
