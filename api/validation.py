"""Placement body -> the engine's bet request record.

The leg and bet rules are the feed's (``streams.normalise``): one call site, here, so the API and
the feed endpoint cannot drift apart. (Those rules are moving to ``oddsflow.domain.validation``;
only the import below changes then.)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from oddsflow.api.models import BetIn
from oddsflow.streams.normalise import FeedError, loads, normalise


@dataclass(frozen=True)
class BodyError(Exception):
    message: str
    field: str | None = None


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_CODE_FIELDS = {
    "bad_odds": "odds",
    "bad_selection": "selection",
    "bad_line": "line",
    "bad_market": "market_type",
    "bad_amount": "stake",
}


def _feed_field(exc: FeedError) -> str | None:
    """The field a feed rule refused: from its code, or the name its reason quotes."""
    m = re.match(r"^(legs\[\d+\]): (.*)$", exc.reason)
    prefix, rest = (m[1], m[2]) if m else ("", exc.reason)
    name = _CODE_FIELDS.get(exc.code)
    if name is None:
        q = re.match(r"^(?:missing field '([a-z_]+)'|([a-z_]+) )", rest)
        name = (q[1] or q[2]) if q else None
    if name is None:
        return prefix or None
    return f"{prefix}.{name}" if prefix else name


def bet_id_for(account_id: str, idempotency_key: str) -> str:
    # The engine treats bet ids globally, so the account is part of the hash: two customers
    # using the same key get different bets.
    return "api-" + hashlib.sha256(f"{account_id}|{idempotency_key}".encode()).hexdigest()[:24]


def parse_body(raw: bytes) -> dict[str, Any]:
    """JSON with exact decimals, then the schema (unknown fields, types, lengths)."""
    try:
        obj = loads(raw)
    except ValueError as exc:
        raise BodyError(f"body is not valid JSON: {exc}") from None
    try:
        BetIn.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = _loc(tuple(first["loc"])) or None
        raise BodyError(f"{field}: {first['msg']}" if field else first["msg"], field) from None
    assert isinstance(obj, dict)
    return obj


def to_request(
    body: dict[str, Any], *, account_id: str, bet_id: str, placed_at_ms: int
) -> dict[str, Any]:
    """The canonical bet request (the feed's rules: markets, selections, odds, stake, legs)."""
    item = {**body, "bet_id": bet_id, "account_id": account_id, "placed_at": placed_at_ms}
    item["channel"] = "api"
    item["kind"] = "bet"
    try:
        # The public entry point (not the private per-kind builder): its signature is stable
        # while the rules behind it move to oddsflow.domain.validation.
        topic_key, _, record = normalise(item, "api")
    except FeedError as exc:
        raise BodyError(exc.reason, _feed_field(exc)) from None
    if topic_key != "bet_requests":  # cannot happen: kind is fixed above
        raise BodyError("not a bet")
    bet: dict[str, Any] = record
    return bet


def body_fingerprint(record: dict[str, Any]) -> str:
    """What makes two placements "the same body": the normalised bet without time and ids."""
    same = {k: v for k, v in record.items() if k not in ("placed_at", "bet_id", "account_id")}
    return hashlib.sha256(orjson.dumps(same, default=str, option=orjson.OPT_SORT_KEYS)).hexdigest()
