"""Settlement: a leg against a result, a bet from its legs, and resettlement.

Every leg settles to an ``Outcome`` and an accumulator *factor*, what one unit of stake on that
leg becomes:

    win: odds    void: 1    half_win: (1 + odds) / 2    half_lose: 1/2    lose: 0

A bet returns ``payout_minor(stake, product of its leg factors)`` (the one rounding rule, in
``money``), so a single and an accumulator use the same arithmetic.

Quarter lines (x.25, x.75) on ``total_goals`` and ``asian_handicap`` are two half stakes on the
adjacent half/whole lines (line - 0.25 and line + 0.25); the leg's factor is the mean of the two
halves' factors, which is exactly the table above.

An event that is abandoned or cancelled voids every leg on it (factor 1).

Dead heat: when a winning selection ties with others (outright-style markets), the caller passes
``dead_heat`` = the share of the stake that wins (1/2 for a two-way tie). The winning part of the
stake is multiplied by it, the rest is lost: a win's factor is ``odds x dead_heat``, a half win's
``(odds x dead_heat + 1) / 2``. The outcome stays win / half_win. Non-winning legs ignore it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from oddsflow.domain.errors import ResultError
from oddsflow.domain.markets import Leg, MarketType, Period, parse_score_selection
from oddsflow.domain.money import EXACT, exact_product, payout_minor


class Outcome(StrEnum):
    WIN = "win"
    LOSE = "lose"
    VOID = "void"
    HALF_WIN = "half_win"
    HALF_LOSE = "half_lose"


_PERIODS = frozenset(Period)


class EventStatus(StrEnum):
    FINAL = "final"
    ABANDONED = "abandoned"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Result:
    """The scores of one event by period; ``revision`` grows with each correction."""

    event_id: str
    status: EventStatus
    scores: Mapping[Period, tuple[int, int]] = field(default_factory=dict)
    revision: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.event_id, str) or not self.event_id:
            raise ResultError(f"event_id must be a non-empty string, got {self.event_id!r}")
        try:
            object.__setattr__(self, "status", EventStatus(self.status))
        except ValueError:
            raise ResultError(f"unknown event status: {self.status!r}") from None
        for period, score in self.scores.items():
            if period not in _PERIODS:
                raise ResultError(f"unknown period: {period!r}")
            if not isinstance(score, tuple) or len(score) != 2:
                raise ResultError(f"a score is a (home, away) pair, got {score!r}")
            for goals in score:
                if isinstance(goals, bool) or not isinstance(goals, int) or goals < 0:
                    raise ResultError(f"goals must be non-negative ints, got {score!r}")


def parse_result(d: Mapping[str, Any]) -> Result:
    """A result line: ``{"event_id","period","home","away"}`` or ``{"event_id","status"}``.

    ``status`` may be "abandoned" or "cancelled" (no score needed), or "final" with a score;
    ``revision`` (int) is optional.
    """
    if not isinstance(d, Mapping):
        raise ResultError(f"a result must be an object, got {d!r}")
    event_id = d.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise ResultError("result needs a non-empty string event_id")
    revision = d.get("revision", 0)
    if isinstance(revision, bool) or not isinstance(revision, int):
        raise ResultError(f"revision must be an int, got {revision!r}")
    try:
        status = EventStatus(d.get("status", EventStatus.FINAL))
    except ValueError:
        raise ResultError(f"unknown event status: {d.get('status')!r}") from None
    if status is not EventStatus.FINAL:
        return Result(event_id, status, {}, revision)
    for key in ("period", "home", "away"):
        if key not in d:
            raise ResultError(f"result for {event_id} is missing {key!r}")
    try:
        period = Period(d["period"])
    except ValueError:
        raise ResultError(f"unknown period: {d['period']!r}") from None
    return Result(event_id, status, {period: (d["home"], d["away"])}, revision)


def merge_results(results: Iterable[Result]) -> dict[str, Result]:
    """Merge one-period-per-line results into one Result per event.

    Scores of different periods accumulate; a later score for the same period replaces the
    earlier one (a correction). An abandoned/cancelled line makes the event abandoned/cancelled
    whatever its order, because a stopped match voids its legs even if a half-time score was
    reported. The revision is the highest seen.
    """
    merged: dict[str, Result] = {}
    for r in results:
        prev = merged.get(r.event_id)
        if prev is None:
            merged[r.event_id] = r
            continue
        status = prev.status if r.status is EventStatus.FINAL else r.status
        merged[r.event_id] = Result(
            r.event_id, status, {**prev.scores, **r.scores}, max(prev.revision, r.revision)
        )
    return merged


@dataclass(frozen=True)
class LegSettlement:
    outcome: Outcome
    factor: Decimal


_HALF = Decimal("0.5")
_QUARTER = Decimal("0.25")


def _by_margin(margin: Decimal) -> Outcome:
    """Win if the selection is ahead of the line, void on it, lose behind it."""
    if margin > 0:
        return Outcome.WIN
    return Outcome.VOID if margin == 0 else Outcome.LOSE


def _line_outcome(leg: Leg, line: Decimal, home: int, away: int) -> Outcome:
    """The outcome of a whole/half-line leg with its line replaced by ``line``."""
    if leg.market is MarketType.TOTAL_GOALS:
        total = home + away
        return _by_margin(total - line if leg.selection == "over" else line - total)
    # Asian handicap: the line applies to home, the away side gets the opposite.
    diff = home - away
    return _by_margin(diff + line if leg.selection == "home" else -diff - line)


def _outcome(leg: Leg, home: int, away: int) -> Outcome:
    m, sel = leg.market, leg.selection
    if m is MarketType.TOTAL_GOALS or m is MarketType.ASIAN_HANDICAP:
        assert leg.line is not None  # guaranteed by Leg validation
        if (leg.line / _HALF) % 1 == 0:  # whole or half line: one stake
            return _line_outcome(leg, leg.line, home, away)
        low = _line_outcome(leg, leg.line - _QUARTER, home, away)
        high = _line_outcome(leg, leg.line + _QUARTER, home, away)
        if low is high:
            return low
        # Adjacent lines are 0.5 apart, so the halves never split win/lose: one half is void.
        return Outcome.HALF_WIN if Outcome.WIN in (low, high) else Outcome.HALF_LOSE
    if m is MarketType.CORRECT_SCORE:
        won = parse_score_selection(sel) == (home, away)
    elif m is MarketType.BOTH_TEAMS_TO_SCORE:
        won = (home > 0 and away > 0) == (sel == "yes")
    elif m is MarketType.DRAW_NO_BET:
        if home == away:
            return Outcome.VOID
        won = (home > away) == (sel == "home")
    elif m is MarketType.DOUBLE_CHANCE:
        won = {
            "home_draw": home >= away,
            "home_away": home != away,
            "draw_away": home <= away,
        }[sel]
    else:  # match_result
        actual = "home" if home > away else "away" if home < away else "draw"
        won = sel == actual
    return Outcome.WIN if won else Outcome.LOSE


def factor_for(outcome: Outcome, odds: Decimal, dead_heat: Decimal | None = None) -> Decimal:
    """The accumulator factor of ``outcome`` at ``odds`` (table in the module docstring)."""
    win = odds if dead_heat is None else EXACT.multiply(odds, dead_heat)
    if outcome is Outcome.WIN:
        return win
    if outcome is Outcome.HALF_WIN:
        return EXACT.divide(EXACT.add(win, Decimal(1)), Decimal(2))
    if outcome is Outcome.VOID:
        return Decimal(1)
    if outcome is Outcome.HALF_LOSE:
        return _HALF
    return Decimal(0)


def settle_leg(leg: Leg, result: Result, dead_heat: Decimal | None = None) -> LegSettlement:
    """Settle one leg; ResultError if the result is for another event or lacks the period."""
    if result.event_id != leg.event_id:
        raise ResultError(f"result for {result.event_id} cannot settle a leg on {leg.event_id}")
    if dead_heat is not None and (
        not isinstance(dead_heat, Decimal) or not dead_heat.is_finite() or not 0 < dead_heat <= 1
    ):
        raise ResultError(f"dead_heat must be a Decimal in (0, 1], got {dead_heat!r}")
    if result.status is not EventStatus.FINAL:
        return LegSettlement(Outcome.VOID, Decimal(1))
    score = result.scores.get(leg.period)
    if score is None:
        raise ResultError(f"no {leg.period} score for event {leg.event_id}")
    outcome = _outcome(leg, *score)
    return LegSettlement(outcome, factor_for(outcome, leg.odds, dead_heat))


@dataclass(frozen=True)
class BetSettlement:
    outcome: Outcome
    return_minor: int
    legs: tuple[LegSettlement, ...]


def combine(stake_minor: int, legs: Sequence[LegSettlement]) -> BetSettlement:
    """The bet's return and outcome from its settled legs.

    A single takes its leg's outcome. An accumulator is void if every leg is void, lose if its
    return is 0, otherwise win (a partly void/half accumulator still "wins" its return).
    """
    if not legs:
        raise ResultError("a bet needs at least one leg")
    factor = exact_product(tuple(leg.factor for leg in legs))
    returned = payout_minor(stake_minor, factor)
    if len(legs) == 1:
        outcome = legs[0].outcome
    elif all(leg.outcome is Outcome.VOID for leg in legs):
        outcome = Outcome.VOID
    else:
        outcome = Outcome.LOSE if returned == 0 else Outcome.WIN
    return BetSettlement(outcome, returned, tuple(legs))


def settle_bet(
    stake_minor: int, legs: Sequence[Leg], results: Mapping[str, Result]
) -> BetSettlement:
    """Settle every leg from ``results`` (by event id) and combine; ResultError if one is missing."""
    settled = []
    for leg in legs:
        result = results.get(leg.event_id)
        if result is None:
            raise ResultError(f"no result for event {leg.event_id}")
        settled.append(settle_leg(leg, result))
    return combine(stake_minor, settled)


def resettlement_delta(previous_return_minor: int, new_return_minor: int) -> int:
    """What a corrected settlement pays (+) or claws back (-): the difference, never a second
    payout of the whole return."""
    return new_return_minor - previous_return_minor
