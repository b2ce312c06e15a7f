"""Request and response bodies of the bet API (what /openapi.json documents)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    # Unknown fields are an error, not silently dropped: a typo must not change a bet.
    model_config = ConfigDict(extra="forbid", frozen=True)


class LegIn(_Strict):
    event_id: str = Field(max_length=200)
    market_type: str = Field(max_length=64)
    period: str = Field(default="FT", max_length=8)
    line: str | Decimal | int | None = None
    selection: str = Field(max_length=64)
    odds: str | Decimal | int = Field(description='requested decimal odds > 1, e.g. "2.10"')


class BetIn(_Strict):
    """The feed's bet item fields without ``bet_id`` and ``account_id`` (key and token give them)."""

    legs: list[LegIn] = Field(min_length=1, max_length=20)
    stake: str | Decimal | int | None = Field(
        default=None, description="stake in major units, at most 2 decimals (or give stake_minor)"
    )
    stake_minor: int | None = Field(default=None, description="stake in minor units (cents)")
    currency: str = Field(default="GBP", pattern=r"^[A-Z]{3}$")
    price_policy: Literal["none", "higher", "any"] = Field(
        default="none",
        description="none: exactly the requested odds; higher: the current odds if >= requested; any",
    )


class BetStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SETTLED = "settled"
    RESETTLED = "resettled"


class SettlementOut(BaseModel):
    revision: int
    outcome: str
    return_minor: int
    previous_return_minor: int
    settled_at: str


class BetOut(BaseModel):
    bet_id: str
    account_id: str
    status: BetStatus
    stake_minor: int | None = None
    currency: str | None = None
    bound_odds: list[str] = []
    potential_return_minor: int | None = None
    reason: str | None = Field(default=None, description="the engine's reject reason code")
    message: str | None = None
    outcome: str | None = None
    return_minor: int | None = None
    settlements: list[SettlementOut] = Field(default=[], description="every settlement revision")
    requested_at: str | None = None
    decided_at: str | None = None


class BetList(BaseModel):
    bets: list[BetOut]


class WalletOut(BaseModel):
    account_id: str
    currency: str
    balance_minor: int = Field(description="available + reserved")
    reserved_minor: int = Field(description="stakes held while bets are decided")
    available_minor: int


class EventOut(BaseModel):
    event_id: str
    competition: str | None = None
    home: str | None = None
    away: str | None = None
    kickoff: str | None = None
    in_play: bool = False
    markets: int = 0


class EventList(BaseModel):
    events: list[EventOut]


class SelectionOut(BaseModel):
    selection: str
    odds: str


class MarketOut(BaseModel):
    market_id: str
    event_id: str
    market_type: str
    period: str
    line: str | None
    status: str
    in_play: bool
    version: int
    selections: list[SelectionOut]


class MarketList(BaseModel):
    event_id: str
    markets: list[MarketOut]


class ErrorCode(StrEnum):
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    VALIDATION = "validation_error"
    IDEMPOTENCY_KEY_MISSING = "idempotency_key_missing"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    BODY_TOO_LARGE = "body_too_large"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    UNAVAILABLE = "unavailable"


def _reject_reasons() -> list[str]:
    # From the decision schema itself, so the documented codes cannot drift from the engine's.
    from oddsflow.codec import schemas

    raw = schemas().latest("bet_decision").raw
    reason = next(f for f in raw["fields"] if f["name"] == "reason")
    symbols: list[str] = next(t for t in reason["type"] if isinstance(t, dict))["symbols"]
    return symbols


REJECT_REASONS = _reject_reasons()


class ErrorBody(BaseModel):
    code: str = Field(
        description="one of: "
        + ", ".join(c.value for c in ErrorCode)
        + "; or, for a bet the engine rejected (422), its reason: "
        + ", ".join(REJECT_REASONS)
    )
    message: str
    field: str | None = Field(default=None, description="the offending field, e.g. legs[0].odds")


class ErrorOut(BaseModel):
    error: ErrorBody
    bet: BetOut | None = Field(
        default=None, description="the rejected bet, when the engine rejected it"
    )
