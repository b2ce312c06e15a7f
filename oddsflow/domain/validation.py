"""The rules every input record obeys, shared by the ingestors and the engine.

The feed ingestors (``streams/normalise.py``) build canonical records from provider items and
check them here; the engine checks every record it consumes from an input topic with the same
:func:`validate_record` right after the Avro decode, because anyone who can produce to
``bets.requests`` or ``feed.prices`` bypasses the ingestor. One rule set, two callers.

Pure functions: no Kafka, no settings. Each raises :class:`ValidationError` with a readable
``reason`` and a short machine ``code`` (a low-cardinality metric label and the dead letter's
``error_type``).

What is checked, per input topic key of ``topology.yaml``:

* identifiers (event, bet, account, deposit ids, providers): 1..:data:`ID_CHARS_MAX` printable
  characters, none of ``/`` and ``|`` (separators of the engine's market ids and open-leg keys)
  or whitespace; no control characters (Postgres text cannot hold NUL);
* free text (teams, competition, sport, channel): 1..:data:`TEXT_CHARS_MAX` printable characters;
* integers: exact ``int`` (never bool) within the Avro type and a plausible range (scores and
  revisions are Avro ``int``; sequence numbers ``long``; times epoch ms in 2000..2100);
* money: ``1 <= minor <= AMOUNT_MINOR_MAX`` in an accepted ISO 4217 currency;
* odds: an exact Decimal at the Avro scale (4 places), ``1 < odds <= ODDS_MAX``;
* markets: known type and period, a line exactly on the markets that have one, the market id
  the fields spell, selections known to the market, distinct, complete for a fixed market and at
  most :data:`SELECTIONS_MAX`;
* bets: 1..:data:`MAX_LEGS` legs, each on a different event.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from oddsflow.domain.currency import DEFAULT_ACCEPTED, CurrencyError, check_accepted
from oddsflow.domain.errors import DomainError
from oddsflow.domain.markets import (
    LINE_MARKETS,
    MarketType,
    Period,
    line_text,
    market_id,
    selections,
)

MAX_LEGS: Final = 20
"""Legs of an accumulator, at most (a single has one)."""
ID_CHARS_MAX: Final = 200
TEXT_CHARS_MAX: Final = 200
MARKET_ID_CHARS_MAX: Final = 400
SELECTIONS_MAX: Final = 1_000
"""Selections of one market, at most (correct_score is the open-ended one)."""
AMOUNT_MINOR_MAX: Final = 10**12
"""Largest stake or deposit in minor units (10 billion in a 2-decimal currency).

It keeps any sum of a few million of them far from 2**63, the Avro long the engine carries."""
ODDS_MAX: Final = Decimal(1_000_000)
"""Avro decimal(12, 4) leaves 8 integer digits; no real price is near a million."""
ODDS_SCALE: Final = 4
LINE_ABS_MAX: Final = Decimal(100)
MINUTE_MAX: Final = 200
INT_MAX: Final = 2**31 - 1
"""Avro ``int``: scores, minutes, revisions."""
LONG_MAX: Final = 2**63 - 1
"""Avro ``long``: sequence numbers."""
TS_MS_MIN: Final = 946_684_800_000
"""2000-01-01T00:00Z. The window's main job is catching epoch SECONDS sent as ms."""
TS_MS_MAX: Final = 4_102_444_800_000
"""2100-01-01T00:00Z (exclusive)."""

MARKET_STATUSES: Final = ("open", "suspended", "bet_stop", "closed", "settled", "cancelled")
EVENT_STATUSES: Final = ("final", "abandoned", "cancelled")
PRICE_POLICIES: Final = ("none", "higher", "any")

INPUT_TOPICS: Final = (
    "fixtures",
    "price_updates",
    "market_status",
    "scores",
    "results",
    "bet_requests",
    "deposits",
)

_ID_SEPARATORS = re.compile(r"[/|\s]")
_QUARTER = Decimal("0.25")
_SCORE_RE = re.compile(r"(?:0|[1-9][0-9]{0,2})-(?:0|[1-9][0-9]{0,2})", re.ASCII)
_ODDS_QUANTUM = Decimal(1).scaleb(-ODDS_SCALE)


class ValidationError(DomainError):
    """A record (or a field of one) that breaks an input rule; ``str(exc)`` is the reason."""

    def __init__(self, reason: str, code: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


# --------------------------------------------------------------------------- field rules


def brief(value: Any) -> str:
    """A bounded repr for messages: a reason never echoes a megabyte of input."""
    r = repr(value)
    return r if len(r) <= 80 else f"{r[:60]}... ({len(r)} chars)"


def identifier(value: Any, what: str) -> str:
    """An id: 1..ID_CHARS_MAX printable characters, no ``/``, ``|``, whitespace or control."""
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{what} must be a non-empty string, got {brief(value)}", "bad_id")
    if len(value) > ID_CHARS_MAX:
        raise ValidationError(f"{what} is longer than {ID_CHARS_MAX} characters", "bad_id")
    # isprintable() is False for control (NUL included), format, surrogate, private-use and
    # unassigned code points, and for every separator except the ASCII space.
    if not value.isprintable():
        raise ValidationError(
            f"{what} must not contain control or non-printable characters: {brief(value)}",
            "bad_id",
        )
    if _ID_SEPARATORS.search(value):
        raise ValidationError(
            f"{what} must not contain '/', '|' or whitespace: {brief(value)}", "bad_id"
        )
    return value


def text(value: Any, what: str, max_chars: int = TEXT_CHARS_MAX) -> str:
    """Free text: 1..max_chars printable characters, not blank, no surrounding blanks."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{what} must be a non-empty string, got {brief(value)}", "bad_field")
    if len(value) > max_chars:
        raise ValidationError(f"{what} is longer than {max_chars} characters", "bad_field")
    if not value.isprintable():
        raise ValidationError(
            f"{what} must not contain control or non-printable characters: {brief(value)}",
            "bad_field",
        )
    if value != value.strip():
        raise ValidationError(f"{what} has surrounding blanks: {brief(value)}", "bad_field")
    return value


def integer(value: Any, what: str, minimum: int, maximum: int) -> int:
    """An exact int (never a bool) in ``minimum..maximum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} must be an integer, got {brief(value)}", "bad_field")
    if value < minimum:
        raise ValidationError(f"{what} must be >= {minimum}, got {value}", "bad_field")
    if value > maximum:
        raise ValidationError(f"{what} must be <= {maximum}, got {brief(value)}", "bad_field")
    return value


def timestamp(value: Any, what: str) -> int:
    """Epoch milliseconds within 2000..2100."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            f"{what} must be an integer of epoch ms, got {brief(value)}", "bad_timestamp"
        )
    if not TS_MS_MIN <= value < TS_MS_MAX:
        raise ValidationError(
            f"{what} is out of range (epoch ms between 2000 and 2100 expected), got {value}",
            "bad_timestamp",
        )
    return value


def amount_minor(value: Any, what: str) -> int:
    """A stake or deposit: an int of minor units in ``1..AMOUNT_MINOR_MAX``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            f"{what} must be an integer of minor units, got {brief(value)}", "bad_amount"
        )
    if value < 1:
        raise ValidationError(f"{what} must be positive (>= 1), got {value}", "bad_amount")
    if value > AMOUNT_MINOR_MAX:
        raise ValidationError(
            f"{what} must be at most {AMOUNT_MINOR_MAX}, got {brief(value)}", "bad_amount"
        )
    return value


def currency(value: Any, accepted: Iterable[str] = DEFAULT_ACCEPTED) -> str:
    """An ISO 4217 code among ``accepted``."""
    try:
        return check_accepted(value, accepted)
    except CurrencyError as exc:
        raise ValidationError(str(exc), "bad_currency") from None


def odds(value: Any, what: str = "odds") -> Decimal:
    """Canonical odds: a finite Decimal with at most 4 places, ``1 < odds <= ODDS_MAX``."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValidationError(f"{what} must be a finite Decimal, got {brief(value)}", "bad_odds")
    if value > ODDS_MAX:
        raise ValidationError(f"{what} must be at most {ODDS_MAX}, got {brief(value)}", "bad_odds")
    if value <= 1:
        raise ValidationError(f"{what} must be a number > 1, got {value}", "bad_odds")
    if value != value.quantize(_ODDS_QUANTUM):  # bounded above, so quantize cannot overflow
        raise ValidationError(
            f"{what} has more than {ODDS_SCALE} decimal places: {value}", "bad_odds"
        )
    return value


def enum_value(value: Any, allowed: Sequence[str], what: str, code: str = "bad_field") -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(
            f"unknown {what} {brief(value)} (expected one of {', '.join(allowed)})", code
        )
    return value


def market_type(value: Any) -> MarketType:
    if isinstance(value, str):
        try:
            return MarketType(value)
        except ValueError:
            pass
    raise ValidationError(f"unknown market_type {brief(value)}", "bad_market")


def period(value: Any) -> Period:
    if isinstance(value, str):
        try:
            return Period(value)
        except ValueError:
            pass
    raise ValidationError(
        f"unknown period {brief(value)} (expected one of {', '.join(p.value for p in Period)})",
        "bad_market",
    )


def line_value(value: Decimal, market: MarketType) -> str:
    """The canonical text of a line for ``market``: a multiple of 0.25, |line| <= 100."""
    if abs(value) > LINE_ABS_MAX:
        raise ValidationError(f"line is out of range: {value}", "bad_line")
    if value % _QUARTER != 0:
        raise ValidationError(f"line must be a multiple of 0.25, got {value}", "bad_line")
    if market is MarketType.TOTAL_GOALS and value < 0:
        raise ValidationError(f"total_goals line must be >= 0, got {value}", "bad_line")
    return line_text(value)


_LINE_TEXT_RE = re.compile(r"-?[0-9]{1,3}(?:\.[0-9]{1,2})?", re.ASCII)


def line_field(value: Any, market: MarketType) -> str | None:
    """A record's ``line``: None on a market without one, else its canonical text."""
    if market not in LINE_MARKETS:
        if value is not None:
            raise ValidationError(f"{market.value} has no line, got {brief(value)}", "bad_line")
        return None
    if value is None:
        raise ValidationError(f"{market.value} needs a line", "bad_line")
    if not isinstance(value, str) or not _LINE_TEXT_RE.fullmatch(value):
        raise ValidationError(f"line must be decimal text, got {brief(value)}", "bad_line")
    canonical = line_value(Decimal(value), market)
    if canonical != value:
        raise ValidationError(
            f"line {value!r} is not in canonical form ({canonical!r})", "bad_line"
        )
    return value


def selection(value: Any, market: MarketType) -> str:
    """A selection of ``market``; correct_score's ``"2-1"`` in its one spelling.

    One spelling per score (no leading zeros, ASCII digits): ``"01-0"`` and ``"1-0"`` would
    otherwise be two selections of one outcome, each with its own price and liability.
    """
    allowed = selections(market)
    if allowed is None:
        if not isinstance(value, str) or not _SCORE_RE.fullmatch(value):
            raise ValidationError(
                f"correct_score selection must look like '2-1' (no leading zeros), "
                f"got {brief(value)}",
                "bad_selection",
            )
        return value
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(
            f"unknown selection {brief(value)} for {market.value} "
            f"(expected one of {', '.join(allowed)})",
            "bad_selection",
        )
    return value


def selection_names(names: Sequence[str], market: MarketType) -> None:
    """A market's priced selections: distinct, complete (fixed markets), bounded."""
    if not names:
        raise ValidationError("selections must be a non-empty list", "bad_selection")
    if len(names) > SELECTIONS_MAX:
        raise ValidationError(
            f"at most {SELECTIONS_MAX} selections per market, got {len(names)}", "bad_selection"
        )
    if len(set(names)) != len(names):
        raise ValidationError(f"duplicate selections in {brief(list(names))}", "bad_selection")
    allowed = selections(market)
    # The book de-margins across ALL selections of a market; a partial market would be mispriced.
    if allowed is not None and set(names) != set(allowed):
        raise ValidationError(
            f"{market.value} needs prices for exactly {', '.join(allowed)}; got {', '.join(names)}",
            "bad_selection",
        )
    if allowed is None and len(names) < 2:
        raise ValidationError("correct_score needs at least 2 selections", "bad_selection")


def leg_count(n: int) -> None:
    if n < 1:
        raise ValidationError("legs must be a non-empty list", "bad_leg")
    if n > MAX_LEGS:
        raise ValidationError(f"at most {MAX_LEGS} legs, got {n}", "bad_leg")


def distinct_events(event_ids: Sequence[str]) -> None:
    # Same-event legs are correlated: an accumulator priced as independent legs would be wrong.
    if len(set(event_ids)) != len(event_ids):
        raise ValidationError("accumulator legs must be on different events", "bad_leg")


def market_of(
    event_id: str, mtype: Any, per: Any, line: Any
) -> tuple[MarketType, Period, str | None, str]:
    """Market fields -> (type, period, canonical line, the market id they spell)."""
    mt, pd = market_type(mtype), period(per)
    ln = line_field(line, mt)
    return mt, pd, ln, market_id(event_id, mt, pd, None if ln is None else Decimal(ln))


def market_id_of_event(value: Any, event_id: str) -> str:
    """A market id of ``event_id``: exactly ``event/type/period[/line]`` with valid parts."""
    if not isinstance(value, str) or not value or len(value) > MARKET_ID_CHARS_MAX:
        raise ValidationError(f"market_id must be a market id, got {brief(value)}", "bad_market")
    parts = value.split("/")
    if parts[0] != event_id:
        raise ValidationError(
            f"market_id {brief(value)} is not a market of event {event_id!r}", "bad_market"
        )
    if len(parts) not in (3, 4):
        raise ValidationError(f"market_id {brief(value)} is malformed", "bad_market")
    # Each part is checked exactly (known type and period, a line in canonical text), so the id
    # the parts spell is ``value`` itself.
    return market_of(event_id, parts[1], parts[2], parts[3] if len(parts) == 4 else None)[3]


def boolean(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{what} must be true or false, got {brief(value)}", "bad_field")
    return value


# --------------------------------------------------------------------------- records


def _field(record: Mapping[str, Any], name: str) -> Any:
    try:
        return record[name]
    except KeyError:
        raise ValidationError(f"missing field {name!r}", "missing_field") from None


def _seq(record: Mapping[str, Any]) -> int:
    return integer(_field(record, "seq"), "seq", 0, LONG_MAX)


def _feed_header(record: Mapping[str, Any]) -> str:
    """event_id, provider, seq, provider_ts: what every feed record carries."""
    event_id = identifier(_field(record, "event_id"), "event_id")
    identifier(_field(record, "provider"), "provider")
    _seq(record)
    timestamp(_field(record, "provider_ts"), "provider_ts")
    return event_id


def _fixture(record: Mapping[str, Any], accepted: Iterable[str]) -> None:
    _feed_header(record)
    for name in ("sport", "competition"):
        text(_field(record, name), name)
    home, away = text(_field(record, "home"), "home"), text(_field(record, "away"), "away")
    if home == away:
        raise ValidationError("home and away must differ", "bad_field")
    timestamp(_field(record, "kickoff"), "kickoff")


def _price_update(record: Mapping[str, Any], accepted: Iterable[str]) -> None:
    event_id = _feed_header(record)
    mtype, _, _, mid = market_of(
        event_id, _field(record, "market_type"), _field(record, "period"), record.get("line")
    )
    given = _field(record, "market_id")
    if given != mid:
        raise ValidationError(
            f"market_id {brief(given)} does not match its fields ({mid!r})", "bad_market"
        )
    sels = _field(record, "selections")
    if not isinstance(sels, list | tuple):
        raise ValidationError("selections must be a list", "bad_selection")
    if len(sels) > SELECTIONS_MAX:  # before looking at each one
        raise ValidationError(
            f"at most {SELECTIONS_MAX} selections per market, got {len(sels)}", "bad_selection"
        )
    names: list[str] = []
    for i, s in enumerate(sels):
        if not isinstance(s, Mapping):
            raise ValidationError(f"selections[{i}] must be an object", "bad_selection")
        names.append(selection(_field(s, "selection"), mtype))
        odds(_field(s, "odds"), f"selections[{i}].odds")
    selection_names(names, mtype)


def _market_status(record: Mapping[str, Any], accepted: Iterable[str]) -> None:
    event_id = _feed_header(record)
    mid = record.get("market_id")
    if mid is not None:
        market_id_of_event(mid, event_id)
    enum_value(_field(record, "status"), MARKET_STATUSES, "status")
    boolean(_field(record, "in_play"), "in_play")


def _score(record: Mapping[str, Any], accepted: Iterable[str]) -> None:
    _feed_header(record)
    period(_field(record, "period"))
    integer(_field(record, "home"), "home", 0, INT_MAX)
    integer(_field(record, "away"), "away", 0, INT_MAX)
    integer(_field(record, "minute"), "minute", 0, MINUTE_MAX)


def _goals(record: Mapping[str, Any], prefix: str) -> tuple[int, int] | None:
    home, away = record.get(f"{prefix}_home"), record.get(f"{prefix}_away")
    if home is None and away is None:
        return None
    if home is None or away is None:
        raise ValidationError(f"{prefix}_home and {prefix}_away go together", "missing_field")
    return (
        integer(home, f"{prefix}_home", 0, INT_MAX),
        integer(away, f"{prefix}_away", 0, INT_MAX),
    )


def _result(record: Mapping[str, Any], accepted: Iterable[str]) -> None:
    _feed_header(record)
    status = enum_value(_field(record, "status"), EVENT_STATUSES, "result status")
    ft, ht = _goals(record, "ft"), _goals(record, "ht")
    if status == "final" and ft is None:
        raise ValidationError("a final result needs the full-time score (ft)", "missing_field")
    if ht is not None and ft is not None and (ht[0] > ft[0] or ht[1] > ft[1]):
        raise ValidationError("half-time score exceeds the full-time score", "bad_field")
    integer(_field(record, "revision"), "revision", 0, INT_MAX)


def _leg(leg: Any, i: int) -> str:
    if not isinstance(leg, Mapping):
        raise ValidationError(f"legs[{i}] must be an object", "bad_leg")
    try:
        event_id = identifier(_field(leg, "event_id"), "event_id")
        mtype = market_of(
            event_id, _field(leg, "market_type"), _field(leg, "period"), leg.get("line")
        )[0]
        selection(_field(leg, "selection"), mtype)
        odds(_field(leg, "odds"))
    except ValidationError as exc:
        raise ValidationError(f"legs[{i}]: {exc.reason}", exc.code) from None
    return event_id


def _bet_request(record: Mapping[str, Any], accepted: Iterable[str]) -> None:
    identifier(_field(record, "bet_id"), "bet_id")
    identifier(_field(record, "account_id"), "account_id")
    amount_minor(_field(record, "stake_minor"), "stake_minor")
    currency(_field(record, "currency"), accepted)
    enum_value(_field(record, "price_policy"), PRICE_POLICIES, "price_policy")
    legs = _field(record, "legs")
    if not isinstance(legs, list | tuple):
        raise ValidationError("legs must be a list", "bad_leg")
    leg_count(len(legs))  # before looking at each one: a 300-leg request costs nothing more
    distinct_events([_leg(leg, i) for i, leg in enumerate(legs)])
    timestamp(_field(record, "placed_at"), "placed_at")
    text(record.get("channel", "web"), "channel")


def _deposit(record: Mapping[str, Any], accepted: Iterable[str]) -> None:
    identifier(_field(record, "ref"), "ref")
    identifier(_field(record, "account_id"), "account_id")
    amount_minor(_field(record, "amount_minor"), "amount_minor")
    currency(_field(record, "currency"), accepted)
    timestamp(_field(record, "created_at"), "created_at")


_RULES: dict[str, Callable[[Mapping[str, Any], Iterable[str]], None]] = {
    "fixtures": _fixture,
    "price_updates": _price_update,
    "market_status": _market_status,
    "scores": _score,
    "results": _result,
    "bet_requests": _bet_request,
    "deposits": _deposit,
}


def validate_record(
    topic_key: str,
    record: Mapping[str, Any],
    accepted_currencies: Iterable[str] = DEFAULT_ACCEPTED,
) -> None:
    """Check a canonical record of input topic ``topic_key``; ValidationError with the reason.

    ``accepted_currencies`` is the deployment's set (``Settings.accepted_currencies`` parsed by
    ``currency.parse_accepted``); pass a frozenset so the check is a set lookup.
    """
    rules = _RULES.get(topic_key)
    if rules is None:
        raise ValueError(f"{topic_key!r} is not an input topic ({', '.join(INPUT_TOPICS)})")
    if not isinstance(record, Mapping):
        raise ValidationError(
            f"a {topic_key} record must be a mapping, got {type(record).__name__}", "bad_record"
        )
    rules(record, accepted_currencies)
