"""Sportradar market ids and outcome ids -> the engine's markets and selections.

From Sportradar's published market descriptions (``/descriptions/en/markets.xml``; the same ids
are in the SDKs' ``invariant_market_descriptions`` test resources)::

    UOF id  name                 specifier  engine market        period  outcome id -> selection
    1       1x2                  -          match_result         FT      1 home, 2 draw, 3 away
    10      double chance        -          double_chance        FT      9 home_draw, 10 home_away, 11 draw_away
    11      draw no bet          -          draw_no_bet          FT      4 home, 5 away
    16      handicap             hcp        asian_handicap       FT      1714 home, 1715 away
    18      total                total      total_goals          FT      12 over, 13 under
    29      both teams to score  -          both_teams_to_score  FT      74 yes, 76 no
    45      correct score        -          correct_score        FT      274.. "H:A" -> "H-A"; 324 other: none
    60      1st half - 1x2       -          match_result         1H      1 home, 2 draw, 3 away
    68      1st half - total     total      total_goals          1H      12 over, 13 under

``hcp`` is the home side's handicap, as the engine's Asian handicap line is. Lines must be
multiples of 0.25 (the engine settles quarter lines as split stakes); a market whose line is not,
or that carries specifiers the table does not know, is unsupported like any other market id.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from oddsflow.domain.markets import LINE_MARKETS, MarketType, Period, line_text, market_id
from oddsflow.streams.uof.models import Specifiers

# Correct score outcome ids of market 45 ("0:0" .. "4:4"); 324 "other" has no engine selection.
_CORRECT_SCORE: dict[str, str] = {
    str(274 + 2 * (home + 5 * away)): f"{home}-{away}" for away in range(5) for home in range(5)
}

_MATCH_RESULT = {"1": "home", "2": "draw", "3": "away"}
_TOTAL = {"12": "over", "13": "under"}


@dataclass(frozen=True)
class MarketSpec:
    uof_id: int
    name: str
    market: MarketType
    period: Period
    line_specifier: str | None  # the specifier that carries the line, if any
    outcomes: dict[str, str]  # UOF outcome id -> engine selection
    groups: frozenset[str]  # bet_stop groups that include it


_REGULAR = frozenset({"all", "score", "regular_play"})
_FIRST_HALF = frozenset({"all", "score", "1st_half"})

MARKETS: dict[int, MarketSpec] = {
    s.uof_id: s
    for s in (
        MarketSpec(1, "1x2", MarketType.MATCH_RESULT, Period.FT, None, _MATCH_RESULT, _REGULAR),
        MarketSpec(
            10,
            "double chance",
            MarketType.DOUBLE_CHANCE,
            Period.FT,
            None,
            {"9": "home_draw", "10": "home_away", "11": "draw_away"},
            _REGULAR,
        ),
        MarketSpec(
            11,
            "draw no bet",
            MarketType.DRAW_NO_BET,
            Period.FT,
            None,
            {"4": "home", "5": "away"},
            _REGULAR,
        ),
        MarketSpec(
            16,
            "handicap",
            MarketType.ASIAN_HANDICAP,
            Period.FT,
            "hcp",
            {"1714": "home", "1715": "away"},
            _REGULAR,
        ),
        MarketSpec(18, "total", MarketType.TOTAL_GOALS, Period.FT, "total", _TOTAL, _REGULAR),
        MarketSpec(
            29,
            "both teams to score",
            MarketType.BOTH_TEAMS_TO_SCORE,
            Period.FT,
            None,
            {"74": "yes", "76": "no"},
            _REGULAR,
        ),
        MarketSpec(
            45, "correct score", MarketType.CORRECT_SCORE, Period.FT, None, _CORRECT_SCORE, _REGULAR
        ),
        MarketSpec(
            60,
            "1st half - 1x2",
            MarketType.MATCH_RESULT,
            Period.H1,
            None,
            _MATCH_RESULT,
            _FIRST_HALF,
        ),
        MarketSpec(
            68, "1st half - total", MarketType.TOTAL_GOALS, Period.H1, "total", _TOTAL, _FIRST_HALF
        ),
    )
}

_QUARTER = Decimal("0.25")


@dataclass(frozen=True)
class MappedMarket:
    spec: MarketSpec
    event_id: str
    line: str | None  # canonical line text

    @property
    def market_id(self) -> str:
        return market_id(
            self.event_id,
            self.spec.market,
            self.spec.period,
            None if self.line is None else Decimal(self.line),
        )

    def selection(self, outcome_id: str) -> str | None:
        return self.spec.outcomes.get(outcome_id)


def map_market(event_id: str, uof_id: int, specifiers: Specifiers) -> MappedMarket | None:
    """The engine market of a UOF market, or None when the engine does not offer it."""
    spec = MARKETS.get(uof_id)
    if spec is None:
        return None
    given = dict(specifiers)
    if len(given) != len(specifiers):
        return None  # a repeated specifier: ambiguous
    expected = {spec.line_specifier} if spec.line_specifier else set()
    if set(given) != expected:
        return None
    if spec.line_specifier is None:
        return MappedMarket(spec, event_id, None)
    try:
        line = Decimal(given[spec.line_specifier])
    except (InvalidOperation, ValueError):
        return None
    if not line.is_finite() or line % _QUARTER != 0 or abs(line) > 100:
        return None
    if spec.market is MarketType.TOTAL_GOALS and line < 0:
        return None
    assert spec.market in LINE_MARKETS
    return MappedMarket(spec, event_id, line_text(line))
