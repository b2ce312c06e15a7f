"""Market types, periods, selections and the validated bet leg.

Lines: ``total_goals`` and ``asian_handicap`` carry a line that is a multiple of 0.25. An Asian
handicap line applies to the home side; the away side gets the opposite (home -0.25 is away
+0.25), so one market id covers both sides. A total line is >= 0. Quarter lines (x.25, x.75)
are settled as two half stakes on the adjacent lines (see ``settlement``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any

from oddsflow.domain.errors import MarketError, OddsError
from oddsflow.domain.odds import parse_odds, validate_decimal_odds


class MarketType(StrEnum):
    MATCH_RESULT = "match_result"
    DOUBLE_CHANCE = "double_chance"
    DRAW_NO_BET = "draw_no_bet"
    TOTAL_GOALS = "total_goals"
    ASIAN_HANDICAP = "asian_handicap"
    BOTH_TEAMS_TO_SCORE = "both_teams_to_score"
    CORRECT_SCORE = "correct_score"


class Period(StrEnum):
    FT = "FT"
    H1 = "1H"


_SELECTIONS: dict[MarketType, tuple[str, ...] | None] = {
    MarketType.MATCH_RESULT: ("home", "draw", "away"),
    MarketType.DOUBLE_CHANCE: ("home_draw", "home_away", "draw_away"),
    MarketType.DRAW_NO_BET: ("home", "away"),
    MarketType.TOTAL_GOALS: ("over", "under"),
    MarketType.ASIAN_HANDICAP: ("home", "away"),
    MarketType.BOTH_TEAMS_TO_SCORE: ("yes", "no"),
    MarketType.CORRECT_SCORE: None,
}

LINE_MARKETS = frozenset({MarketType.TOTAL_GOALS, MarketType.ASIAN_HANDICAP})
"""Markets whose legs need a line; every other market must have none."""

_SCORE_RE = re.compile(r"(\d{1,3})-(\d{1,3})")
_QUARTER = Decimal("0.25")


def selections(market: MarketType) -> tuple[str, ...] | None:
    """The fixed selections of ``market``; None for correct_score (selection ``"H-A"``)."""
    return _SELECTIONS[MarketType(market)]


def parse_score_selection(selection: str) -> tuple[int, int]:
    """A correct-score selection ``"2-1"`` as (home, away); MarketError if malformed."""
    m = _SCORE_RE.fullmatch(selection)
    if m is None:
        raise MarketError(f"correct_score selection must look like '2-1', got {selection!r}")
    return int(m.group(1)), int(m.group(2))


def canonical_selection(market: MarketType | str, selection: str) -> str:
    """The one spelling of a selection: correct_score ``"01-0"`` -> ``"1-0"`` (leading zeros
    dropped), so two spellings of one score are one selection; others are returned as given.
    MarketError if a correct_score selection is malformed."""
    if MarketType(market) is not MarketType.CORRECT_SCORE:
        return selection
    if not isinstance(selection, str):
        raise MarketError(f"selection must be a string, got {selection!r}")
    home, away = parse_score_selection(selection)
    return f"{home}-{away}"


def canonical_selections(market: MarketType | str, names: Sequence[str]) -> tuple[str, ...]:
    """``names`` in canonical form; MarketError if two name one selection ("1-0", "01-0")."""
    out = tuple(canonical_selection(market, n) for n in names)
    if len(set(out)) != len(out):
        raise MarketError(f"selections repeat one another: {list(names)!r}")
    return out


def line_text(line: Decimal) -> str:
    """Canonical text of a line for ids: 2.50 -> "2.5", -0.250 -> "-0.25", -0 -> "0"."""
    if line == 0:
        return "0"
    return format(line.normalize(), "f")


def market_id(event_id: str, market: MarketType, period: Period, line: Decimal | None) -> str:
    """``"e1/asian_handicap/FT/-0.25"``; without a line ``"e1/match_result/FT"``."""
    base = f"{event_id}/{MarketType(market).value}/{Period(period).value}"
    return base if line is None else f"{base}/{line_text(line)}"


def _coerce(enum: type[MarketType] | type[Period], value: Any, what: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise MarketError(f"unknown {what}: {value!r}") from None


@dataclass(frozen=True)
class Leg:
    """One selection of a bet, validated on construction (MarketError / OddsError)."""

    event_id: str
    market: MarketType
    period: Period
    selection: str
    odds: Decimal
    line: Decimal | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.event_id, str) or not self.event_id:
            raise MarketError(f"event_id must be a non-empty string, got {self.event_id!r}")
        # Coerce plain strings to the enums so a Leg built from text compares and hashes the same.
        object.__setattr__(self, "market", _coerce(MarketType, self.market, "market"))
        object.__setattr__(self, "period", _coerce(Period, self.period, "period"))
        validate_decimal_odds(self.odds)
        self._check_line()
        self._check_selection()

    def _check_line(self) -> None:
        if self.market not in LINE_MARKETS:
            if self.line is not None:
                raise MarketError(f"{self.market} has no line, got {self.line}")
            return
        if self.line is None:
            raise MarketError(f"{self.market} needs a line")
        if not isinstance(self.line, Decimal) or not self.line.is_finite():
            raise MarketError(f"line must be a finite Decimal, got {self.line!r}")
        if (self.line / _QUARTER) % 1 != 0:
            raise MarketError(f"line must be a multiple of 0.25, got {self.line}")
        if self.market is MarketType.TOTAL_GOALS and self.line < 0:
            raise MarketError(f"total_goals line must be >= 0, got {self.line}")

    def _check_selection(self) -> None:
        allowed = selections(self.market)
        if allowed is None:
            # One spelling per score: a leg on "01-0" is a leg on "1-0".
            object.__setattr__(self, "selection", canonical_selection(self.market, self.selection))
        elif self.selection not in allowed:
            raise MarketError(
                f"unknown selection {self.selection!r} for {self.market} (expected one of "
                f"{', '.join(allowed)})"
            )

    @property
    def market_id(self) -> str:
        return market_id(self.event_id, self.market, self.period, self.line)

    def bound_at(self, bound_odds: Decimal) -> Leg:
        """The leg as accepted: the odds the decision bound (and published), which replace
        the requested odds. Settlement always pays from these, never from the request."""
        return replace(self, odds=validate_decimal_odds(bound_odds))


def decimal_field(value: object, what: str) -> Decimal:
    """A decimal from JSON: a string (the contract), or an exact int/Decimal (lenient).

    Floats are refused: they are not exact. Callers parse JSON with ``parse_float=Decimal`` so a
    bare JSON number arrives here as an exact Decimal.
    """
    if isinstance(value, bool):
        raise MarketError(f"{what} must be a decimal string, got {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except ArithmeticError:
            raise MarketError(f"{what} is not a decimal: {value!r}") from None
        if not d.is_finite():
            raise MarketError(f"{what} is not a finite decimal: {value!r}")
        return d
    raise MarketError(f"{what} must be a decimal string, got {value!r}")


def parse_leg(d: Mapping[str, Any]) -> Leg:
    """A leg from its JSON shape ``{"event_id","market","line"?,"period","selection","odds"}``.

    ``odds`` is a decimal string (fractional and American text are accepted too, via
    ``parse_odds``); ``line`` is a decimal string, present only where the market has one.
    """
    if not isinstance(d, Mapping):
        raise MarketError(f"a leg must be an object, got {d!r}")
    for key in ("event_id", "market", "period", "selection", "odds"):
        if key not in d:
            raise MarketError(f"leg is missing {key!r}")
    raw_odds = d["odds"]
    if isinstance(raw_odds, str):
        odds = parse_odds(raw_odds)
    elif isinstance(raw_odds, Decimal | int) and not isinstance(raw_odds, bool):
        odds = validate_decimal_odds(Decimal(raw_odds))
    else:
        raise OddsError(f"odds must be a decimal string, got {raw_odds!r}")
    raw_line = d.get("line")
    line = None if raw_line is None else decimal_field(raw_line, "line")
    return Leg(
        event_id=d["event_id"],
        market=_coerce(MarketType, d["market"], "market"),
        period=_coerce(Period, d["period"], "period"),
        selection=d["selection"],
        odds=odds,
        line=line,
    )
