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
* Money is integer minor units (``stake_minor``); ``stake``/``amount`` in units (plain decimal
  text or a JSON number) is accepted too and converted exactly with the currency's ISO 4217
  minor unit (``"10.5"`` JPY is refused, ``"1.234"`` BHD is 1234). Giving both is allowed only
  if they agree. The currency must be among the accepted ones (a setting).
* Numbers as text are plain ASCII decimal syntax: no ``_`` separators, exponents, blanks or
  non-ASCII digits.
* Every record is finally checked by :func:`oddsflow.domain.validation.validate_record`, the
  same rules the engine applies to what it consumes.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, TypeVar, cast

from oddsflow.domain import validation as v
from oddsflow.domain.currency import DEFAULT_ACCEPTED, to_minor
from oddsflow.domain.errors import MoneyError
from oddsflow.domain.markets import (
    LINE_MARKETS,
    MarketType,
    Period,
    market_id,
)
from oddsflow.domain.validation import ValidationError, validate_record

ODDS_Q = Decimal("0.0001")  # Avro decimal scale 4
MAX_ODDS = v.ODDS_MAX
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

MIN_TS_MS = v.TS_MS_MIN
MAX_TS_MS = v.TS_MS_MAX

# Plain ASCII decimal syntax only: int() and Decimal() also take "1_000", " 7 ", "1e3" and
# non-ASCII digits (Arabic-Indic, fullwidth, ...), which no provider means as a price or stake.
_UNSIGNED_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
_SIGNED_RE = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?", re.ASCII)
_INT_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_SCORE_TEXT_RE = re.compile(r"([0-9]{1,3})-([0-9]{1,3})", re.ASCII)
# A number this far from any odds, line or time is refused before arithmetic on it: int() of
# Decimal("1e999999999") would build a billion-digit integer.
_MAGNITUDE_DIGITS_MAX = 20
_MAX_LEGS = v.MAX_LEGS

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


class FeedError(ValidationError):
    """An item that cannot become a canonical record; ``str(exc)`` is the reason.

    A :class:`~oddsflow.domain.validation.ValidationError`: the item broke one of the rules the
    engine applies to the record too.
    """


def _feed(exc: ValidationError) -> FeedError:
    return exc if isinstance(exc, FeedError) else FeedError(exc.reason, exc.code)


_F = TypeVar("_F", bound=Callable[..., Any])


def _feed_errors(fn: _F) -> _F:
    """The public parsers raise FeedError, whichever rule (here or in validation) refused."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            raise _feed(exc) from None

    return cast(_F, wrapper)


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


@_feed_errors
def ident(value: Any, what: str) -> str:
    """A non-empty id without separators the engine uses in its keys, nor control characters."""
    return v.identifier(value, what)


@_feed_errors
def text(value: Any, what: str) -> str:
    """Free text, stripped; bounded and printable (:func:`validation.text`)."""
    return v.text(value.strip() if isinstance(value, str) else value, what)


def _bounded(d: Decimal, what: str, code: str) -> Decimal:
    if d.is_finite() and d != 0 and d.adjusted() >= _MAGNITUDE_DIGITS_MAX:
        raise FeedError(f"{what} is out of range: {d}", code)
    return d


@_feed_errors
def integer(value: Any, what: str, *, minimum: int = 0, maximum: int = v.LONG_MAX) -> int:
    """An exact integer in ``minimum..maximum``: int, integral Decimal, or ASCII digit text.

    Bools, fractions, ``"1_000"`` and non-ASCII digits are refused.
    """
    if isinstance(value, bool):
        raise FeedError(f"{what} must be an integer, got {value!r}", "bad_field")
    if isinstance(value, int):
        n = value
    elif isinstance(value, Decimal) and value.is_finite():
        if value != value.to_integral_value():
            raise FeedError(f"{what} must be an integer, got {value}", "bad_field")
        n = int(_bounded(value, what, "bad_field"))
    elif isinstance(value, str) and _INT_RE.fullmatch(value) and len(value) <= 30:
        n = int(value)
    else:
        raise FeedError(f"{what} must be an integer, got {v.brief(value)}", "bad_field")
    return v.integer(n, what, minimum, maximum)


def _decimal(value: Any, what: str, code: str, *, signed: bool = False) -> Decimal:
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
        if value in ("NaN", "Infinity", "-Infinity", "nan", "inf", "-inf"):
            raise FeedError(f"{what} must be a finite number, got {value!r}", code)
        if not (_SIGNED_RE if signed else _UNSIGNED_RE).fullmatch(value):
            raise FeedError(
                f"{what} is not a number in plain decimal notation: {v.brief(value)}", code
            )
        d = Decimal(value)
    else:
        raise FeedError(f"{what} must be a number, got {v.brief(value)}", code)
    if not d.is_finite():
        raise FeedError(f"{what} must be a finite number, got {value!r}", code)
    return _bounded(d, what, code)


@_feed_errors
def odds(value: Any, what: str = "odds") -> Decimal:
    """Decimal odds > 1, quantized to 4 dp (the Avro scale)."""
    d = _decimal(value, what, "bad_odds")
    if d > MAX_ODDS:
        raise FeedError(f"{what} must be at most {MAX_ODDS}, got {d}", "bad_odds")
    if d <= 1:  # before quantizing: a huge negative would not fit the 28-digit context
        raise FeedError(f"{what} must be a number > 1, got {d}", "bad_odds")
    # Checked after quantizing: 1.00001 would otherwise pass and then be written as 1.0000.
    return v.odds(d.quantize(ODDS_Q, rounding=ROUND_HALF_EVEN), what)


@_feed_errors
def line(value: Any, market: MarketType) -> str | None:
    """The canonical line text of ``market`` (None when the market has no line)."""
    if value in (None, ""):
        return v.line_field(None, market)
    if market not in LINE_MARKETS:
        raise FeedError(f"{market.value} has no line, got {v.brief(value)}", "bad_line")
    return v.line_value(_decimal(value, "line", "bad_line", signed=True), market)


@_feed_errors
def timestamp_ms(value: Any, what: str = "ts") -> int:
    """Epoch ms from an int of epoch ms or ISO-8601 text with an offset; naive text is refused."""
    if isinstance(value, bool):
        raise FeedError(
            f"{what} must be ISO-8601 with an offset or epoch ms, got {value!r}", "bad_timestamp"
        )
    if isinstance(value, int):
        ms = value
    elif isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            raise FeedError(f"{what} epoch ms must be an integer, got {value}", "bad_timestamp")
        ms = int(_bounded(value, what, "bad_timestamp"))
    elif isinstance(value, str):
        if not value.isascii() or len(value) > 64:
            raise FeedError(f"{what} is not ISO-8601: {v.brief(value)}", "bad_timestamp")
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
            f"{what} must be ISO-8601 with an offset or epoch ms, got {v.brief(value)}",
            "bad_timestamp",
        )
    return v.timestamp(ms, what)


def _enum(value: Any, allowed: tuple[str, ...], what: str) -> str:
    return v.enum_value(value, allowed, what)


def _market_type(value: Any) -> MarketType:
    return v.market_type(value)


def _period(value: Any) -> Period:
    return v.period(value)


def score_pair_text(value: Any) -> tuple[int, int] | None:
    """``"2-1"`` (ASCII digits, up to 3 each, leading zeros allowed) as (2, 1); None if not."""
    m = _SCORE_TEXT_RE.fullmatch(value) if isinstance(value, str) else None
    return None if m is None else (int(m.group(1)), int(m.group(2)))


def _selection(value: Any, market: MarketType) -> str:
    if market is MarketType.CORRECT_SCORE and (pair := score_pair_text(value)) is not None:
        value = f"{pair[0]}-{pair[1]}"  # the one spelling: "01-0" is "1-0"
    return v.selection(value, market)


def _currency(item: Mapping[str, Any], accepted: Iterable[str]) -> str:
    return v.currency(item.get("currency", "GBP"), accepted)


def _minor(item: Mapping[str, Any], minor_field: str, unit_field: str, currency: str) -> int:
    """Minor units from ``<x>_minor`` (int) and/or ``<x>`` (amount in units of ``currency``).

    Both may be given only if they agree: which one to believe is not the ingestor's guess.
    """
    minor = unit = None
    if item.get(minor_field) is not None:
        given = integer(item[minor_field], minor_field, minimum=-v.LONG_MAX, maximum=v.LONG_MAX)
        minor = v.amount_minor(given, minor_field)
    if item.get(unit_field) is not None:
        raw = item[unit_field]
        if isinstance(raw, float):
            raise FeedError(
                f"{unit_field} must be decimal text, not a float: {raw!r}", "bad_amount"
            )
        try:
            unit = to_minor(raw, currency)
        except MoneyError as exc:
            raise FeedError(f"{unit_field}: {exc}", "bad_amount") from None
        v.amount_minor(unit, unit_field)
    if minor is not None and unit is not None and minor != unit:
        raise FeedError(
            f"{minor_field} {minor} and {unit_field} {v.brief(item[unit_field])} {currency} conflict",
            "bad_amount",
        )
    n = minor if minor is not None else unit
    if n is None:
        raise FeedError(f"missing field {minor_field!r}", "missing_field")
    return n


def _provider_ts(item: Mapping[str, Any]) -> int:
    return timestamp_ms(_get(item, "ts", "provider_ts"), "ts")


def _seq(item: Mapping[str, Any]) -> int:
    return integer(_get(item, "seq"), "seq")


# --------------------------------------------------------------------------- per kind
# Each builder turns an item into a canonical record; normalise() then checks the record with
# validation.validate_record, the rule set the engine applies to what it consumes.


def _fixture(item: Mapping[str, Any], provider: str, accepted: Iterable[str]) -> dict[str, Any]:
    return {
        "event_id": ident(_get(item, "event_id"), "event_id"),
        "provider": provider,
        "seq": _seq(item),
        "sport": text(item.get("sport", "football"), "sport"),
        "competition": text(_get(item, "competition"), "competition"),
        "home": text(_get(item, "home"), "home"),
        "away": text(_get(item, "away"), "away"),
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
        raise FeedError(
            f"market_id {v.brief(given)} does not match its fields ({mid!r})", "bad_market"
        )
    return mtype, period, ln, mid


def _price(item: Mapping[str, Any], provider: str, accepted: Iterable[str]) -> dict[str, Any]:
    event_id = ident(_get(item, "event_id"), "event_id")
    mtype, period, ln, mid = _market_fields(item, event_id)
    raw = _get(item, "selections")
    if not isinstance(raw, list) or not raw:
        raise FeedError("selections must be a non-empty list", "bad_selection")
    if len(raw) > v.SELECTIONS_MAX:  # before parsing a million of them
        raise FeedError(
            f"at most {v.SELECTIONS_MAX} selections per market, got {len(raw)}", "bad_selection"
        )
    sels: list[dict[str, Any]] = []
    for i, s in enumerate(raw):
        if not isinstance(s, Mapping):
            raise FeedError(f"selections[{i}] must be an object", "bad_selection")
        name = _selection(_get(s, "selection"), mtype)
        sels.append({"selection": name, "odds": odds(_get(s, "odds"), f"selections[{i}].odds")})
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


def _status(item: Mapping[str, Any], provider: str, accepted: Iterable[str]) -> dict[str, Any]:
    event_id = ident(_get(item, "event_id"), "event_id")
    mid: str | None = None
    if item.get("market_type") is not None or item.get("market") is not None:
        mid = _market_fields(item, event_id)[3]
    elif item.get("market_id") not in (None, ""):
        mid = v.market_id_of_event(item["market_id"], event_id)
    return {
        "event_id": event_id,
        "provider": provider,
        "seq": _seq(item),
        "market_id": mid,
        "status": _enum(_get(item, "status"), v.MARKET_STATUSES, "status"),
        "in_play": v.boolean(item.get("in_play", False), "in_play"),
        "provider_ts": _provider_ts(item),
    }


def _goals(value: Any, what: str) -> int:
    return integer(value, what, maximum=v.INT_MAX)


def _score(item: Mapping[str, Any], provider: str, accepted: Iterable[str]) -> dict[str, Any]:
    return {
        "event_id": ident(_get(item, "event_id"), "event_id"),
        "provider": provider,
        "seq": _seq(item),
        "period": _period(item.get("period", "FT")).value,
        "home": _goals(_get(item, "home"), "home"),
        "away": _goals(_get(item, "away"), "away"),
        "minute": integer(item.get("minute", 0), "minute", maximum=v.MINUTE_MAX),
        "provider_ts": _provider_ts(item),
    }


def _score_pair(item: Mapping[str, Any], period: str) -> tuple[int | None, int | None]:
    """``{"ft": {"home": 2, "away": 1}}``, ``{"ft": "2-1"}`` or flat ``ft_home``/``ft_away``."""
    nested = item.get(period)
    if nested is not None:
        if isinstance(nested, str):
            pair = score_pair_text(nested)
            if pair is None:
                raise FeedError(
                    f"{period} score must look like '2-1', got {v.brief(nested)}", "bad_field"
                )
            return pair
        if not isinstance(nested, Mapping):
            raise FeedError(f"{period} must be an object {{home, away}}", "bad_field")
        return (
            _goals(_get(nested, "home"), f"{period}.home"),
            _goals(_get(nested, "away"), f"{period}.away"),
        )
    raw_h, raw_a = item.get(f"{period}_home"), item.get(f"{period}_away")
    if (raw_h is None) != (raw_a is None):
        raise FeedError(f"{period}_home and {period}_away go together", "missing_field")
    if raw_h is None:
        return None, None
    return _goals(raw_h, f"{period}_home"), _goals(raw_a, f"{period}_away")


def _result(item: Mapping[str, Any], provider: str, accepted: Iterable[str]) -> dict[str, Any]:
    ft_h, ft_a = _score_pair(item, "ft")
    ht_h, ht_a = _score_pair(item, "ht")
    return {
        "event_id": ident(_get(item, "event_id"), "event_id"),
        "provider": provider,
        "seq": _seq(item),
        "status": _enum(item.get("status", "final"), v.EVENT_STATUSES, "result status"),
        "ft_home": ft_h,
        "ft_away": ft_a,
        "ht_home": ht_h,
        "ht_away": ht_a,
        "revision": integer(item.get("revision", 0), "revision", maximum=v.INT_MAX),
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
    except ValidationError as exc:
        raise FeedError(f"legs[{i}]: {exc.reason}", exc.code) from None


def _bet(item: Mapping[str, Any], provider: str, accepted: Iterable[str]) -> dict[str, Any]:
    raw_legs = _get(item, "legs")
    if not isinstance(raw_legs, list):
        raise FeedError("legs must be a non-empty list", "bad_leg")
    v.leg_count(len(raw_legs))
    legs = [_leg(d, i) for i, d in enumerate(raw_legs)]
    currency = _currency(item, accepted)
    return {
        "bet_id": ident(_get(item, "bet_id"), "bet_id"),
        "account_id": ident(_get(item, "account_id"), "account_id"),
        "stake_minor": _minor(item, "stake_minor", "stake", currency),
        "currency": currency,
        "price_policy": _enum(item.get("price_policy", "none"), v.PRICE_POLICIES, "price_policy"),
        "legs": legs,
        "placed_at": timestamp_ms(_get(item, "placed_at", "ts"), "placed_at"),
        "channel": text(item.get("channel", "web"), "channel"),
    }


def _deposit(item: Mapping[str, Any], provider: str, accepted: Iterable[str]) -> dict[str, Any]:
    currency = _currency(item, accepted)
    return {
        "ref": ident(_get(item, "ref"), "ref"),
        "account_id": ident(_get(item, "account_id"), "account_id"),
        "amount_minor": _minor(item, "amount_minor", "amount", currency),
        "currency": currency,
        "created_at": timestamp_ms(_get(item, "created_at", "ts"), "created_at"),
    }


_BUILDERS: dict[str, Callable[[Mapping[str, Any], str, Iterable[str]], dict[str, Any]]] = {
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


def normalise(
    item: Any, provider: str, accepted_currencies: Iterable[str] = DEFAULT_ACCEPTED
) -> tuple[str, str, dict[str, Any]]:
    """One provider item -> ``(topic_key, key, record)``; FeedError with the reason if invalid.

    The record has passed :func:`validation.validate_record`, the check the engine repeats.
    """
    if not isinstance(item, Mapping):
        raise FeedError(f"an item must be a JSON object, got {type(item).__name__}", "not_object")
    kind = item.get("kind", item.get("type"))
    if kind is None:
        raise FeedError("missing field 'kind'", "missing_field")
    builder = _BUILDERS.get(kind) if isinstance(kind, str) else None
    if builder is None:
        raise FeedError(
            f"unknown kind {v.brief(kind)} (expected one of {', '.join(_BUILDERS)})",
            "unknown_kind",
        )
    topic_key = KIND_TOPICS[kind]
    try:
        record = builder(item, provider, accepted_currencies)
        validate_record(topic_key, record, accepted_currencies)
    except ValidationError as exc:
        raise _feed(exc) from None
    except (
        TypeError,
        ValueError,
        ArithmeticError,
        KeyError,
    ) as exc:  # a shape no check anticipated
        raise FeedError(f"{kind}: {v.brief(str(exc))}", "invalid") from exc
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
