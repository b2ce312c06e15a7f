"""The UOF messages the adapter understands, as frozen dataclasses.

Field names follow Sportradar's UnifiedFeed.xsd; times are epoch milliseconds (as on the wire),
odds and factors are exact Decimals. ``specifiers`` keep the wire order as (name, value) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

Specifiers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class OddsOutcome:
    id: str
    odds: Decimal | None
    active: bool


@dataclass(frozen=True)
class OddsMarket:
    id: int
    specifiers: Specifiers
    status: int  # 1 active, 0 inactive, -1 suspended, -2 handed over, -3 settled, -4 cancelled
    outcomes: tuple[OddsOutcome, ...]


@dataclass(frozen=True)
class PeriodScore:
    number: int
    match_status_code: int | None
    home_score: int
    away_score: int


@dataclass(frozen=True)
class SportEventStatus:
    status: int  # 0 not started, 1 live, 2 suspended, 3 ended, 4 closed, 5 cancelled, ...
    match_status: int | None
    home_score: int | None
    away_score: int | None
    minute: int | None
    period_scores: tuple[PeriodScore, ...]


@dataclass(frozen=True)
class OddsChange:
    product: int
    event_id: str
    timestamp_ms: int
    markets: tuple[OddsMarket, ...]
    sport_event_status: SportEventStatus | None


@dataclass(frozen=True)
class BetStop:
    product: int
    event_id: str
    timestamp_ms: int
    groups: tuple[str, ...]
    market_status: int  # what the named markets become; -1 suspended unless given


@dataclass(frozen=True)
class SettledOutcome:
    id: str
    result: int  # 0 or 1
    void_factor: Decimal | None
    dead_heat_factor: Decimal | None


@dataclass(frozen=True)
class SettledMarket:
    id: int
    specifiers: Specifiers
    outcomes: tuple[SettledOutcome, ...]


@dataclass(frozen=True)
class BetSettlement:
    product: int
    event_id: str
    timestamp_ms: int
    certainty: int  # 1 live-scouted, 2 confirmed
    markets: tuple[SettledMarket, ...]


@dataclass(frozen=True)
class MarketRef:
    id: int
    specifiers: Specifiers
    void_reason: int | None = None


@dataclass(frozen=True)
class RollbackBetSettlement:
    product: int
    event_id: str
    timestamp_ms: int
    markets: tuple[MarketRef, ...]


@dataclass(frozen=True)
class BetCancel:
    product: int
    event_id: str
    timestamp_ms: int
    start_time_ms: int | None
    end_time_ms: int | None
    superceded_by: str | None
    markets: tuple[MarketRef, ...]  # empty: every market of the event


@dataclass(frozen=True)
class RollbackBetCancel:
    product: int
    event_id: str
    timestamp_ms: int
    start_time_ms: int | None
    end_time_ms: int | None
    markets: tuple[MarketRef, ...]


@dataclass(frozen=True)
class FixtureChange:
    product: int
    event_id: str
    timestamp_ms: int
    change_type: int | None  # 1 new, 2 date/time, 3 cancelled, 4 format, 5 coverage
    start_time_ms: int | None


@dataclass(frozen=True)
class Alive:
    product: int
    timestamp_ms: int
    subscribed: bool


@dataclass(frozen=True)
class SnapshotComplete:
    product: int
    timestamp_ms: int
    request_id: int | None


@dataclass(frozen=True)
class ProductDown:
    product: int
    timestamp_ms: int


@dataclass(frozen=True)
class Fixture:
    """A fixture from Sportradar's REST API (``<fixtures_fixture>``): UOF's fixture_change
    carries no team names, so the adapter learns them from these documents."""

    event_id: str
    timestamp_ms: int
    start_time_ms: int
    home: str
    away: str
    competition: str
    sport: str


Message = (
    OddsChange
    | BetStop
    | BetSettlement
    | RollbackBetSettlement
    | BetCancel
    | RollbackBetCancel
    | FixtureChange
    | Alive
    | SnapshotComplete
    | ProductDown
    | Fixture
)
