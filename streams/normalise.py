"""Provider JSON items -> canonical records (dicts shaped like the Avro schemas).

Pure functions, no I/O: the HTTP ingestor, tests and tools share them. Every invalid item raises
:class:`FeedError` with a human-readable reason and a short machine ``code`` (a low-cardinality
label for the ``oddsflow_ingest_rejected_total`` metric and the dead letter's ``error_type``).

Provider item kinds and the topic key their record goes to::

    fixture -> fixtures        price   -> price_updates    status  -> market_status
    score   -> scores          result  -> results          bet     -> bet_requests
    deposit -> deposits

Conventions (the provider contract):

* ``ts`` (alias ``provider_ts``) is when the provider published the item: ISO-8601 text WITH an
  offset (``2024-08-17T14:00:00+01:00``, ``...Z``) or an int of epoch milliseconds. Naive text is
  refused: guessing a zone would shift a kick-off or a bet stop by hours.
* Odds are decimal odds > 1, given as a decimal string or a JSON number. Callers parse JSON with
  ``parse_float=Decimal`` (see :func:`loads`) so a JSON number is exact; odds are quantized to
  4 dp because the Avro decimal has scale 4.
* Lines are decimal strings that are a multiple of 0.25 (``"2.5"``, ``"-0.25"``), present exactly
  on the markets that have one; records carry the canonical text (``"2.50"`` -> ``"2.5"``) so a
  market id is the same whoever sends it.
* Money is integer minor units (``stake_minor``); ``stake``/``amount`` as a decimal string with
  at most 2 places is accepted too and converted exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from oddsflow.domain.markets import (
    LINE_MARKETS,
    MarketType,
    Period,
    line_text,
    market_id,
    parse_score_selection,
    selections,
)

ODDS_Q = Decimal("0.0001")  # Avro decimal scale 4
MAX_ODDS = Decimal(
    1_000_000
)  # Avro precision 12 at scale 4 leaves 8 integer digits; no real price is near
_QUARTER = Decimal("0.25")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Epoch-ms plausibility window (2000-01-01 .. 2100-01-01). Its main job is catching epoch
# SECONDS sent by mistake, which would otherwise land in January 1970.
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 4_102_444_800_000

_ID_MAX = 200
# "/" separates the parts of a market id and "|" the parts of the engine's open-leg keys, so an
# id containing them would collide with another event's keys.
_ID_FORBIDDEN = re.compile(r"[/|\s]")
_STATUSES = ("open", "suspended", "bet_stop", "closed", "settled", "cancelled")
_EVENT_STATUSES = ("final", "abandoned", "cancelled")
_POLICIES = ("none", "higher", "any")
_CURRENCY_RE = re.compile(r"[A-Z]{3}")
_MAX_LEGS = 20

KIND_TOPICS: dict[str, str] = {
    "fixture": "fixtures",
    "price": "price_updates",
    "status": "market_status",
    "score": "scores",
    "result": "results",
    "bet": "bet_requests",
    "deposit": "deposits",
}
"""Provider item kind -> topology topic key."""


class FeedError(ValueError):
    """An item that cannot become a canonical record; ``str(exc)`` is the reason."""

    def __init__(self, reason: str, code: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


# --------------------------------------------------------------------------- JSON


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def loads(data: bytes | str) -> Any:
    """Parse JSON with exact numbers: fractions as Decimal (never float), NaN/Infinity refused."""
    return json.loads(data, parse_float=Decimal, parse_constant=_reject_constant)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """Compact JSON bytes of a provider item (Decimals as strings); for dead letters and tests."""
    return json.dumps(
        value, separators=(",", ":"), default=_json_default, ensure_ascii=False
    ).encode()


# --------------------------------------------------------------------------- field parsers


def _get(item: Mapping[str, Any], name: str, *aliases: str) -> Any:
    for key in (name, *aliases):
        if key in item and item[key] is not None:
            return item[key]
    raise FeedError(f"missing field {name!r}", "missing_field")


def ident(value: Any, what: str) -> str:
    """A non-empty id without separators the engine uses in its keys."""
    if not isinstance(value, str) or not value.strip():
        raise FeedError(f"{what} must be a non-empty string, got {value!r}", "bad_field")
    if len(value) > _ID_MAX:
        raise FeedError(f"{what} is longer than {_ID_MAX} characters", "bad_field")
    if _ID_FORBIDDEN.search(value):
        raise FeedError(f"{what} must not contain '/', '|' or whitespace: {value!r}", "bad_field")
    return value


def text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FeedError(f"{what} must be a non-empty string, got {value!r}", "bad_field")
    return value.strip()


def integer(value: Any, what: str, *, minimum: int | None = 0) -> int:
    """An exact integer: int, or a Decimal/str with no fraction; bools and floats with a fraction refused."""
    if isinstance(value, bool):
        raise FeedError(f"{what} must be an integer, got {value!r}", "bad_field")
    if isinstance(value, int):
        n = value
    elif (
        isinstance(value, Decimal | float)
        and value == value
        and value not in (float("inf"), float("-inf"))
    ):
        if value != int(value):
            raise FeedError(f"{what} must be an integer, got {value}", "bad_field")
        n = int(value)
    elif isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        n = int(value)
    else:
        raise FeedError(f"{what} must be an integer, got {value!r}", "bad_field")
    if minimum is not None and n < minimum:
        raise FeedError(f"{what} must be >= {minimum}, got {n}", "bad_field")
    if n >= 2**63:
        raise FeedError(f"{what} is too large: {n}", "bad_field")
    return n


def _decimal(value: Any, what: str, code: str) -> Decimal:
    if isinstance(value, bool):
        raise FeedError(f"{what} must be a number, got {value!r}", code)
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, float):
        # Only reachable from Python callers (the HTTP path parses JSON to Decimal). repr() is the
        # shortest text that round-trips, i.e. what the sender wrote, not the binary expansion.
        d = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except (InvalidOperation, ValueError):
            raise FeedError(f"{what} is not a number: {value!r}", code) from None
    else:
        raise FeedError(f"{what} must be a number, got {value!r}", code)
    if not d.is_finite():
        raise FeedError(f"{what} must be a finite number, got {value!r}", code)
    return d


def odds(value: Any, what: str = "odds") -> Decimal:
    """Decimal odds > 1, quantized to 4 dp (the Avro scale)."""
    d = _decimal(value, what, "bad_odds")
    if d > MAX_ODDS:
        raise FeedError(f"{what} must be at most {MAX_ODDS}, got {d}", "bad_odds")
    q = d.quantize(ODDS_Q, rounding=ROUND_HALF_EVEN)
    # Checked after quantizing: 1.00001 would otherwise pass and then be written as 1.0000.
    if q <= 1:
        raise FeedError(f"{what} must be a number > 1, got {value!r}", "bad_odds")
    return q


def line(value: Any, market: MarketType) -> str | None:
    """The canonical line text of ``market`` (None when the market has no line)."""
    if market not in LINE_MARKETS:
        if value not in (None, ""):
            raise FeedError(f"{market.value} has no line, got {value!r}", "bad_line")
        return None
    if value in (None, ""):
        raise FeedError(f"{market.value} needs a line", "bad_line")
    d = _decimal(value, "line", "bad_line")
    if d % _QUARTER != 0:
        raise FeedError(f"line must be a multiple of 0.25, got {value!r}", "bad_line")
    if market is MarketType.TOTAL_GOALS and d < 0:
        raise FeedError(f"total_goals line must be >= 0, got {value!r}", "bad_line")
    if abs(d) > 100:
        raise FeedError(f"line is out of range: {value!r}", "bad_line")
    return line_text(d)


def timestamp_ms(value: Any, what: str = "ts") -> int:
    """Epoch ms from an int of epoch ms or ISO-8601 text with an offset; naive text is refused."""
    if isinstance(value, bool):
        raise FeedError(
            f"{what} must be ISO-8601 with an offset or epoch ms, got {value!r}", "bad_timestamp"
        )
    if isinstance(value, int | Decimal):
        if isinstance(value, Decimal) and (
            not value.is_finite() or value != value.to_integral_value()
        ):
            raise FeedError(f"{what} epoch ms must be an integer, got {value}", "bad_timestamp")
        ms = int(value)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise FeedError(f"{what} is not ISO-8601: {value!r}", "bad_timestamp") from None
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise FeedError(f"{what} is naive (no UTC offset): {value!r}", "bad_timestamp")
        # Integer arithmetic on the timedelta, not dt.timestamp() (a float), keeps ms exact.
        delta = dt - _EPOCH  # aware minus aware: exact, whatever the offset
        ms = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    else:
        raise FeedError(
            f"{what} must be ISO-8601 with an offset or epoch ms, got {value!r}", "bad_timestamp"
        )
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise FeedError(
            f"{what} is out of range (epoch ms between 2000 and 2100 expected), got {value!r}",
            "bad_timestamp",
        )
    return ms


def _enum(value: Any, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise FeedError(
            f"unknown {what} {value!r} (expected one of {', '.join(allowed)})", "bad_field"
        )
    return str(value)


def _market_type(value: Any) -> MarketType:
    try:
        return MarketType(value)
    except ValueError:
        raise FeedError(f"unknown market_type {value!r}", "bad_market") from None


def _period(value: Any) -> Period:
    try:
        return Period(value)
    except ValueError:
        raise FeedError(
            f"unknown period {value!r} (expected one of {', '.join(p.value for p in Period)})",
            "bad_market",
        ) from None


def _selection(value: Any, market: MarketType) -> str:
    allowed = selections(market)
    if allowed is None:
        try:
            parse_score_selection(value if isinstance(value, str) else "")
        except ValueError:
            raise FeedError(
                f"correct_score selection must look like '2-1', got {value!r}", "bad_selection"
            ) from None
        return str(value)
    if value not in allowed:
        raise FeedError(
            f"unknown selection {value!r} for {market.value} (expected one of {', '.join(allowed)})",
            "bad_selection",
        )
    return str(value)


def _currency(item: Mapping[str, Any]) -> str:
    cur = item.get("currency", "GBP")
    if not isinstance(cur, str) or not _CURRENCY_RE.fullmatch(cur):
        raise FeedError(f"currency must be a 3-letter ISO code, got {cur!r}", "bad_field")
    return cur


def _minor(item: Mapping[str, Any], minor_field: str, unit_field: str) -> int:
    """Minor units from ``<x>_minor`` (int) or ``<x>`` (decimal string, at most 2 places)."""
    if item.get(minor_field) is not None:
        n = integer(item[minor_field], minor_field, minimum=1)
    elif item.get(unit_field) is not None:
        d = _decimal(item[unit_field], unit_field, "bad_amount")
        cents = d * 100
        if cents != cents.to_integral_value():
            raise FeedError(
                f"{unit_field} has more than 2 decimal places: {item[unit_field]!r}", "bad_amount"
            )
        n = int(cents)
        if n < 1:
            raise FeedError(
                f"{unit_field} must be positive, got {item[unit_field]!r}", "bad_amount"
            )
    else:
        raise FeedError(f"missing field {minor_field!r}", "missing_field")
    if n >= 10**15:
        raise FeedError(f"{minor_field} is too large: {n}", "bad_amount")
    return n


def _provider_ts(item: Mapping[str, Any]) -> int:
    return timestamp_ms(_get(item, "ts", "provider_ts"), "ts")


def _seq(item: Mapping[str, Any]) -> int:
    return integer(_get(item, "seq"), "seq")


# --------------------------------------------------------------------------- per kind


def _fixture(item: Mapping[str, Any], provider: str) -> dict[str, Any]:
    home, away = text(_get(item, "home"), "home"), text(_get(item, "away"), "away")
    if home == away:
        raise FeedError("home and away must differ", "bad_field")
    return {
        "event_id": ident(_get(item, "event_id"), "event_id"),
        "provider": provider,
        "seq": _seq(item),
        "sport": text(item.get("sport", "football"), "sport"),
        "competition": text(_get(item, "competition"), "competition"),
        "home": home,
        "away": away,
        "kickoff": timestamp_ms(_get(item, "kickoff"), "kickoff"),
        "provider_ts": _provider_ts(item),
    }


def _market_fields(
    item: Mapping[str, Any], event_id: str
) -> tuple[MarketType, Period, str | None, str]:
    mtype = _market_type(_get(item, "market_type", "market"))
    period = _period(item.get("period", "FT"))
    ln = line(item.get("line"), mtype)
    mid = market_id(event_id, mtype, period, None if ln is None else Decimal(ln))
    given = item.get("market_id")
    if given not in (None, "") and given != mid:
        raise FeedError(f"market_id {given!r} does not match its fields ({mid!r})", "bad_market")
    return mtype, period, ln, mid


def _price(item: Mapping[str, Any], provider: str) -> dict[str, Any]:
    event_id = ident(_get(item, "event_id"), "event_id")
    mtype, period, ln, mid = _market_fields(item, event_id)
    raw = _get(item, "selections")
    if not isinstance(raw, list) or not raw:
        raise FeedError("selections must be a non-empty list", "bad_selection")
    sels: list[dict[str, Any]] = []
    for i, s in enumerate(raw):
        if not isinstance(s, Mapping):
            raise FeedError(f"selections[{i}] must be an object", "bad_selection")
        name = _selection(_get(s, "selection"), mtype)
        sels.append({"selection": name, "odds": odds(_get(s, "odds"), f"selections[{i}].odds")})
    names = [s["selection"] for s in sels]
    if len(set(names)) != len(names):
        raise FeedError(f"duplicate selections in {names}", "bad_selection")
    allowed = selections(mtype)
    # The book de-margins across ALL selections of a market; a partial market would be mispriced.
    if allowed is not None and set(names) != set(allowed):
        raise FeedError(
            f"{mtype.value} needs prices for exactly {', '.join(allowed)}; got {', '.join(names)}",
            "bad_selection",
        )
    if allowed is None and len(sels) < 2:
        raise FeedError("correct_score needs at least 2 selections", "bad_selection")
    return {
        "event_id": event_id,
        "provider": provider,
        "seq": _seq(item),
        "market_id": mid,
        "market_type": mtype.value,
        "period": period.value,
        "line": ln,
        "selections": sels,
        "provider_ts": _provider_ts(item),
    }


def _status(item: Mapping[str, Any], provider: str) -> dict[str, Any]:
    event_id = ident(_get(item, "event_id"), "event_id")
    mid: str | None = None
    if item.get("market_type") is not None or item.get("market") is not None:
        mid = _market_fields(item, event_id)[3]
    elif item.get("market_id") not in (None, ""):
        mid = text(item["market_id"], "market_id")
        if not mid.startswith(f"{event_id}/"):
            raise FeedError(
                f"market_id {mid!r} is not a market of event {event_id!r}", "bad_market"
            )
    in_play = item.get("in_play", False)
    if not isinstance(in_play, bool):
        raise FeedError(f"in_play must be true or false, got {in_play!r}", "bad_field")
    return {
        "event_id": event_id,
        "provider": provider,
        "seq": _seq(item),
        "market_id": mid,
        "status": _enum(_get(item, "status"), _STATUSES, "status"),
        "in_play": in_play,
        "provider_ts": _provider_ts(item),
    }


def _score(item: Mapping[str, Any], provider: str) -> dict[str, Any]:
    minute = integer(item.get("minute", 0), "minute")
    if minute > 200:
        raise FeedError(f"minute is out of range: {minute}", "bad_field")
    return {
        "event_id": ident(_get(item, "event_id"), "event_id"),
        "provider": provider,
        "seq": _seq(item),
        "period": _period(item.get("period", "FT")).value,
        "home": integer(_get(item, "home"), "home"),
        "away": integer(_get(item, "away"), "away"),
        "minute": minute,
        "provider_ts": _provider_ts(item),
    }


def _score_pair(item: Mapping[str, Any], period: str) -> tuple[int | None, int | None]:
    """``{"ft": {"home": 2, "away": 1}}``, ``{"ft": "2-1"}`` or flat ``ft_home``/``ft_away``."""
    nested = item.get(period)
    if nested is not None:
        if isinstance(nested, str):
            try:
                return parse_score_selection(nested)
            except ValueError:
                raise FeedError(
                    f"{period} score must look like '2-1', got {nested!r}", "bad_field"
                ) from None
        if not isinstance(nested, Mapping):
            raise FeedError(f"{period} must be an object {{home, away}}", "bad_field")
        return (
            integer(_get(nested, "home"), f"{period}.home"),
            integer(_get(nested, "away"), f"{period}.away"),
        )
    raw_h, raw_a = item.get(f"{period}_home"), item.get(f"{period}_away")
    if (raw_h is None) != (raw_a is None):
        raise FeedError(f"{period}_home and {period}_away go together", "missing_field")
    if raw_h is None:
        return None, None
    return integer(raw_h, f"{period}_home"), integer(raw_a, f"{period}_away")


def _result(item: Mapping[str, Any], provider: str) -> dict[str, Any]:
    status = _enum(item.get("status", "final"), _EVENT_STATUSES, "result status")
    ft_h, ft_a = _score_pair(item, "ft")
    ht_h, ht_a = _score_pair(item, "ht")
    if status == "final" and ft_h is None:
        raise FeedError("a final result needs the full-time score (ft)", "missing_field")
    if ht_h is not None and ft_h is not None and (ht_h > ft_h or ht_a > ft_a):  # type: ignore[operator]
        raise FeedError("half-time score exceeds the full-time score", "bad_field")
    return {
        "event_id": ident(_get(item, "event_id"), "event_id"),
        "provider": provider,
        "seq": _seq(item),
        "status": status,
        "ft_home": ft_h,
        "ft_away": ft_a,
        "ht_home": ht_h,
        "ht_away": ht_a,
        "revision": integer(item.get("revision", 0), "revision"),
        "provider_ts": _provider_ts(item),
    }


def _leg(d: Any, i: int) -> dict[str, Any]:
    if not isinstance(d, Mapping):
        raise FeedError(f"legs[{i}] must be an object", "bad_leg")
    try:
        event_id = ident(_get(d, "event_id"), "event_id")
        mtype, period, ln, _ = _market_fields(d, event_id)
        return {
            "event_id": event_id,
            "market_type": mtype.value,
            "period": period.value,
            "line": ln,
            "selection": _selection(_get(d, "selection"), mtype),
            "odds": odds(_get(d, "odds")),
        }
    except FeedError as exc:
        raise FeedError(f"legs[{i}]: {exc.reason}", exc.code) from None


def _bet(item: Mapping[str, Any], provider: str) -> dict[str, Any]:
    raw_legs = _get(item, "legs")
    if not isinstance(raw_legs, list) or not raw_legs:
        raise FeedError("legs must be a non-empty list", "bad_leg")
    if len(raw_legs) > _MAX_LEGS:
        raise FeedError(f"at most {_MAX_LEGS} legs, got {len(raw_legs)}", "bad_leg")
    legs = [_leg(d, i) for i, d in enumerate(raw_legs)]
    if len(legs) > 1 and len({leg["event_id"] for leg in legs}) != len(legs):
        # Same-event legs are correlated: an accumulator priced as independent legs would be wrong.
        raise FeedError("accumulator legs must be on different events", "bad_leg")
    channel = item.get("channel", "web")
    return {
        "bet_id": ident(_get(item, "bet_id"), "bet_id"),
        "account_id": ident(_get(item, "account_id"), "account_id"),
        "stake_minor": _minor(item, "stake_minor", "stake"),
        "currency": _currency(item),
        "price_policy": _enum(item.get("price_policy", "none"), _POLICIES, "price_policy"),
        "legs": legs,
        "placed_at": timestamp_ms(_get(item, "placed_at", "ts"), "placed_at"),
        "channel": text(channel, "channel"),
    }


def _deposit(item: Mapping[str, Any], provider: str) -> dict[str, Any]:
    return {
        "ref": ident(_get(item, "ref"), "ref"),
        "account_id": ident(_get(item, "account_id"), "account_id"),
        "amount_minor": _minor(item, "amount_minor", "amount"),
        "currency": _currency(item),
        "created_at": timestamp_ms(_get(item, "created_at", "ts"), "created_at"),
    }


_BUILDERS: dict[str, Callable[[Mapping[str, Any], str], dict[str, Any]]] = {
    "fixture": _fixture,
    "price": _price,
    "status": _status,
    "score": _score,
    "result": _result,
    "bet": _bet,
    "deposit": _deposit,
}


def record_key(topic_key: str, record: Mapping[str, Any]) -> str:
    """The Kafka key of a canonical record (topology: event_id or account_id)."""
    return str(
        record["account_id"] if topic_key in ("bet_requests", "deposits") else record["event_id"]
    )


def normalise(item: Any, provider: str) -> tuple[str, str, dict[str, Any]]:
    """One provider item -> ``(topic_key, key, record)``; FeedError with the reason if invalid."""
    if not isinstance(item, Mapping):
        raise FeedError(f"an item must be a JSON object, got {type(item).__name__}", "not_object")
    kind = item.get("kind", item.get("type"))
    if kind is None:
        raise FeedError("missing field 'kind'", "missing_field")
    builder = _BUILDERS.get(kind) if isinstance(kind, str) else None
    if builder is None:
        raise FeedError(
            f"unknown kind {kind!r} (expected one of {', '.join(_BUILDERS)})", "unknown_kind"
        )
    try:
        record = builder(item, provider)
    except FeedError:
        raise
    except (
        TypeError,
        ValueError,
        ArithmeticError,
        KeyError,
    ) as exc:  # a shape no check anticipated
        raise FeedError(f"{kind}: {exc}", "invalid") from exc
    topic_key = KIND_TOPICS[kind]
    return topic_key, record_key(topic_key, record), record


def dedup_key(topic_key: str, record: Mapping[str, Any]) -> tuple[str, str] | None:
    """The scope a provider ``seq`` increases in, mirroring the engine's stale checks.

    Prices: per market; status and fixtures: per event; scores: per event. Results are versioned
    by ``revision`` instead; bets and deposits carry their own idempotency ids (the engine owns
    them). None when the ingestor should not de-duplicate the record.
    """
    if topic_key == "price_updates":
        return (topic_key, record["market_id"])
    if topic_key in ("fixtures", "market_status", "scores"):
        return (topic_key, record["event_id"])
    if topic_key == "results":
        return (topic_key, f"{record['event_id']}#r{record['revision']}")
    return None
