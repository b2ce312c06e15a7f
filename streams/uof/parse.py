"""Untrusted UOF XML -> message models, through a hardened parser.

defusedxml refuses a DTD altogether (``forbid_dtd``), so neither an entity-expansion bomb
("billion laughs", quadratic blow-up) nor an external entity or a network fetch can happen: the
document is rejected before any entity is expanded, with a reason saying which. Bodies larger
than :data:`MAX_MESSAGE_BYTES` are refused before parsing.

Every problem raises :class:`UofError` (a ``reason`` for the dead letter and a short ``code`` for
metrics). Nothing else escapes :func:`parse_message`: a shape no check anticipated is caught and
turned into a ``UofError("invalid")`` so a malformed message can never crash a consumer.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

import defusedxml
import defusedxml.ElementTree as DET

from oddsflow.streams.normalise import MAX_TS_MS, MIN_TS_MS, FeedError, timestamp_ms
from oddsflow.streams.uof import models as m

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_MARKETS = 5_000
_BOM = b"\xef\xbb\xbf"
_EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
_INT = re.compile(r"[+-]?\d{1,18}")


class UofError(ValueError):
    """A UOF message that cannot be used; ``reason`` is human readable, ``code`` a metric label."""

    def __init__(self, reason: str, code: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def _local(tag: str) -> str:
    """``{namespace}name`` -> ``name`` (REST documents carry a namespace, feed messages none)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def parse_xml(data: bytes) -> ET.Element:
    """The root element of ``data``; UofError for DTDs/entities, oversize or malformed XML."""
    if not isinstance(data, bytes | bytearray):
        raise UofError(f"a message is bytes, got {type(data).__name__}", "not_bytes")
    if len(data) > MAX_MESSAGE_BYTES:
        raise UofError(
            f"message of {len(data)} bytes is larger than {MAX_MESSAGE_BYTES}", "too_large"
        )
    body = bytes(data).lstrip()
    if body.startswith(_BOM):  # Sportradar's samples start with a UTF-8 BOM
        body = body[len(_BOM) :].lstrip()
    if not body:
        raise UofError("empty message", "empty")
    try:
        root: ET.Element = DET.fromstring(
            body, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
        return root
    except defusedxml.DTDForbidden:
        raise UofError(
            "XML with a DTD is refused (entity expansion / external entities are not allowed)",
            "xml_dtd",
        ) from None
    except defusedxml.EntitiesForbidden:
        raise UofError(
            "XML entity declarations are refused (entity expansion)", "xml_entity"
        ) from None
    except defusedxml.ExternalReferenceForbidden:
        raise UofError("XML external references are refused", "xml_external") from None
    except defusedxml.DefusedXmlException as exc:
        raise UofError(f"unsafe XML refused: {exc}", "xml_unsafe") from None
    except ET.ParseError as exc:
        raise UofError(f"malformed XML: {exc}", "xml_malformed") from None
    except (ValueError, UnicodeError, LookupError) as exc:  # e.g. an unknown encoding declaration
        raise UofError(f"unreadable XML: {exc}", "xml_malformed") from None


# --------------------------------------------------------------------------- attribute readers


def _attr(el: ET.Element, name: str) -> str:
    v = el.get(name)
    if v is None or not v.strip():
        raise UofError(f"<{_local(el.tag)}> is missing {name!r}", "missing_field")
    return v.strip()


def _int(el: ET.Element, name: str, default: int | None = None, *, required: bool = True) -> int:
    v = el.get(name)
    if v is None or not v.strip():
        if default is not None or not required:
            return default  # type: ignore[return-value]
        raise UofError(f"<{_local(el.tag)}> is missing {name!r}", "missing_field")
    if not _INT.fullmatch(v.strip()):
        raise UofError(f"<{_local(el.tag)}> {name}={v!r} is not an integer", "bad_field")
    return int(v)


def _opt_int(el: ET.Element, name: str) -> int | None:
    v = el.get(name)
    if v is None or not v.strip():
        return None
    return _int(el, name)


def _decimal(el: ET.Element, name: str) -> Decimal | None:
    v = el.get(name)
    if v is None or not v.strip():
        return None
    try:
        d = Decimal(v.strip())
    except (InvalidOperation, ValueError):
        raise UofError(f"<{_local(el.tag)}> {name}={v!r} is not a number", "bad_field") from None
    if not d.is_finite():
        raise UofError(f"<{_local(el.tag)}> {name}={v!r} is not finite", "bad_field")
    return d


def _opt_ts(el: ET.Element, name: str) -> int | None:
    v = _opt_int(el, name)
    if v is not None and not MIN_TS_MS <= v < MAX_TS_MS:
        raise UofError(
            f"<{_local(el.tag)}> {name}={v} is not epoch milliseconds between 2000 and 2100",
            "bad_timestamp",
        )
    return v


def _ts(el: ET.Element, name: str) -> int:
    v = _opt_ts(el, name)
    if v is None:
        raise UofError(f"<{_local(el.tag)}> is missing {name!r}", "missing_field")
    return v


def _event_id(el: ET.Element) -> str:
    ev = _attr(el, "event_id")
    # Sportradar URNs (sr:match:123, sr:simple_tournament:1); '/', '|' and spaces would break
    # the engine's market ids and keys.
    if not _EVENT_ID.fullmatch(ev):
        raise UofError(f"event_id {ev!r} is not a Sportradar URN", "bad_field")
    return ev


def parse_specifiers(text: str | None) -> m.Specifiers:
    """``"total=2.5|hcp=-1"`` -> ``(("total", "2.5"), ("hcp", "-1"))``."""
    if text is None or not text.strip():
        return ()
    out = []
    for part in text.split("|"):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise UofError(f"specifier {part!r} is not name=value", "bad_field")
        out.append((name.strip(), value.strip()))
    return tuple(out)


def _market_id(el: ET.Element) -> int:
    return _int(el, "id")


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def _child(el: ET.Element, name: str) -> ET.Element | None:
    found = _children(el, name)
    return found[0] if found else None


def _bounded(markets: list[ET.Element]) -> list[ET.Element]:
    if len(markets) > MAX_MARKETS:
        raise UofError(f"more than {MAX_MARKETS} markets in one message", "too_large")
    return markets


# --------------------------------------------------------------------------- per message


def _sport_event_status(el: ET.Element) -> m.SportEventStatus:
    minute = None
    clock = _child(el, "clock")
    if clock is not None and clock.get("match_time"):
        mt = clock.get("match_time", "").split(":", 1)[0].split("+", 1)[0].strip()
        minute = int(mt) if mt.isdigit() and int(mt) <= 200 else None
    periods = []
    ps = _child(el, "period_scores")
    for p in _children(ps, "period_score") if ps is not None else []:
        periods.append(
            m.PeriodScore(
                number=_int(p, "number"),
                match_status_code=_opt_int(p, "match_status_code"),
                home_score=_int(p, "home_score"),
                away_score=_int(p, "away_score"),
            )
        )
    return m.SportEventStatus(
        status=_int(el, "status"),
        match_status=_opt_int(el, "match_status"),
        home_score=_opt_int(el, "home_score"),
        away_score=_opt_int(el, "away_score"),
        minute=minute,
        period_scores=tuple(periods),
    )


def _odds_change(el: ET.Element) -> m.OddsChange:
    markets = []
    odds = _child(el, "odds")
    for mk in _bounded(_children(odds, "market")) if odds is not None else []:
        outcomes = tuple(
            m.OddsOutcome(
                id=_attr(o, "id"),
                odds=_decimal(o, "odds"),
                active=_int(o, "active", 1) == 1,
            )
            for o in _children(mk, "outcome")
        )
        markets.append(
            m.OddsMarket(
                id=_market_id(mk),
                specifiers=parse_specifiers(mk.get("specifiers")),
                status=_int(mk, "status", 1),
                outcomes=outcomes,
            )
        )
    ses = _child(el, "sport_event_status")
    return m.OddsChange(
        product=_int(el, "product"),
        event_id=_event_id(el),
        timestamp_ms=_ts(el, "timestamp"),
        markets=tuple(markets),
        sport_event_status=_sport_event_status(ses) if ses is not None else None,
    )


def _bet_stop(el: ET.Element) -> m.BetStop:
    groups = tuple(g for g in (el.get("groups") or "all").split("|") if g.strip())
    return m.BetStop(
        product=_int(el, "product"),
        event_id=_event_id(el),
        timestamp_ms=_ts(el, "timestamp"),
        groups=groups or ("all",),
        market_status=_int(el, "market_status", -1),
    )


def _factor(o: ET.Element, name: str) -> Decimal | None:
    d = _decimal(o, name)
    if d is not None and not 0 <= d <= 1:
        raise UofError(f"<outcome> {name}={d} is outside [0, 1]", "bad_field")
    return d


def _bet_settlement(el: ET.Element) -> m.BetSettlement:
    markets = []
    outcomes_el = _child(el, "outcomes")
    for mk in _bounded(_children(outcomes_el, "market")) if outcomes_el is not None else []:
        outs = []
        for o in _children(mk, "outcome"):
            result = _int(o, "result")
            if result not in (0, 1):
                raise UofError(f"<outcome> result={result} (expected 0 or 1)", "bad_field")
            outs.append(
                m.SettledOutcome(
                    id=_attr(o, "id"),
                    result=result,
                    void_factor=_factor(o, "void_factor"),
                    dead_heat_factor=_factor(o, "dead_heat_factor"),
                )
            )
        markets.append(
            m.SettledMarket(_market_id(mk), parse_specifiers(mk.get("specifiers")), tuple(outs))
        )
    certainty = _int(el, "certainty", 1)
    if certainty not in (1, 2):
        raise UofError(f"certainty={certainty} (expected 1 or 2)", "bad_field")
    return m.BetSettlement(
        product=_int(el, "product", 0),
        event_id=_event_id(el),
        timestamp_ms=_ts(el, "timestamp"),
        certainty=certainty,
        markets=tuple(markets),
    )


def _refs(el: ET.Element) -> tuple[m.MarketRef, ...]:
    return tuple(
        m.MarketRef(
            _market_id(mk), parse_specifiers(mk.get("specifiers")), _opt_int(mk, "void_reason")
        )
        for mk in _bounded(_children(el, "market"))
    )


def _rollback_bet_settlement(el: ET.Element) -> m.RollbackBetSettlement:
    return m.RollbackBetSettlement(
        product=_int(el, "product", 0),
        event_id=_event_id(el),
        timestamp_ms=_ts(el, "timestamp"),
        markets=_refs(el),
    )


def _window(el: ET.Element) -> tuple[int | None, int | None]:
    start, end = _opt_ts(el, "start_time"), _opt_ts(el, "end_time")
    if start is not None and end is not None and end < start:
        raise UofError(f"end_time {end} is before start_time {start}", "bad_field")
    return start, end


def _bet_cancel(el: ET.Element) -> m.BetCancel:
    start, end = _window(el)
    sup = el.get("superceded_by")
    return m.BetCancel(
        product=_int(el, "product", 0),
        event_id=_event_id(el),
        timestamp_ms=_ts(el, "timestamp"),
        start_time_ms=start,
        end_time_ms=end,
        superceded_by=sup.strip() if sup and sup.strip() else None,
        markets=_refs(el),
    )


def _rollback_bet_cancel(el: ET.Element) -> m.RollbackBetCancel:
    start, end = _window(el)
    return m.RollbackBetCancel(
        product=_int(el, "product", 0),
        event_id=_event_id(el),
        timestamp_ms=_ts(el, "timestamp"),
        start_time_ms=start,
        end_time_ms=end,
        markets=_refs(el),
    )


def _fixture_change(el: ET.Element) -> m.FixtureChange:
    return m.FixtureChange(
        product=_int(el, "product", 0),
        event_id=_event_id(el),
        timestamp_ms=_ts(el, "timestamp"),
        change_type=_opt_int(el, "change_type"),
        start_time_ms=_opt_ts(el, "start_time"),
    )


def _alive(el: ET.Element) -> m.Alive:
    return m.Alive(
        product=_int(el, "product"),
        timestamp_ms=_ts(el, "timestamp"),
        subscribed=_int(el, "subscribed", 1) == 1,
    )


def _snapshot_complete(el: ET.Element) -> m.SnapshotComplete:
    return m.SnapshotComplete(
        product=_int(el, "product"),
        timestamp_ms=_ts(el, "timestamp"),
        request_id=_opt_int(el, "request_id"),
    )


def _product_down(el: ET.Element) -> m.ProductDown:
    return m.ProductDown(
        product=_int(el, "product"),
        timestamp_ms=_ts(el, "timestamp"),
    )


def _iso_ms(value: str | None, what: str) -> int:
    try:
        return int(timestamp_ms(value, what))
    except FeedError as exc:
        raise UofError(exc.reason, "bad_timestamp") from None


def _fixtures_fixture(el: ET.Element) -> m.Fixture:
    fx = _child(el, "fixture")
    if fx is None:
        raise UofError("<fixtures_fixture> has no <fixture>", "missing_field")
    event_id = _attr(fx, "id")
    if not _EVENT_ID.fullmatch(event_id):
        raise UofError(f"fixture id {event_id!r} is not a Sportradar URN", "bad_field")
    comps = _child(fx, "competitors")
    by_side = {
        c.get("qualifier"): _attr(c, "name")
        for c in (_children(comps, "competitor") if comps is not None else [])
    }
    if "home" not in by_side or "away" not in by_side:
        raise UofError("<fixture> needs a home and an away competitor", "missing_field")
    tournament = _child(fx, "tournament")
    sport_el = _child(tournament, "sport") if tournament is not None else None
    return m.Fixture(
        event_id=event_id,
        timestamp_ms=_iso_ms(el.get("generated_at"), "generated_at"),
        start_time_ms=_iso_ms(fx.get("start_time") or fx.get("scheduled"), "start_time"),
        home=by_side["home"],
        away=by_side["away"],
        competition=_attr(tournament, "name") if tournament is not None else "unknown",
        sport=(sport_el.get("name") or "Soccer").strip().lower()
        if sport_el is not None
        else "soccer",
    )


PARSERS: dict[str, Callable[[ET.Element], m.Message]] = {
    "odds_change": _odds_change,
    "bet_stop": _bet_stop,
    "bet_settlement": _bet_settlement,
    "rollback_bet_settlement": _rollback_bet_settlement,
    "bet_cancel": _bet_cancel,
    "rollback_bet_cancel": _rollback_bet_cancel,
    "fixture_change": _fixture_change,
    "alive": _alive,
    "snapshot_complete": _snapshot_complete,
    "product_down": _product_down,
    "fixtures_fixture": _fixtures_fixture,
}


def parse_element(root: ET.Element) -> m.Message:
    kind = _local(root.tag)
    parser = PARSERS.get(kind)
    if parser is None:
        raise UofError(f"unsupported message <{kind[:60]}>", "unknown_message")
    try:
        return parser(root)
    except UofError:
        raise
    except (ValueError, TypeError, ArithmeticError, KeyError, AttributeError) as exc:
        raise UofError(f"{kind}: {exc}", "invalid") from exc


def parse_message(data: bytes) -> m.Message:
    """One UOF message from its bytes; UofError with the reason if it cannot be used."""
    return parse_element(parse_xml(data))


BATCH_TAG = "uof_messages"


def split_messages(data: bytes) -> list[bytes]:
    """A body of one message, or several wrapped in ``<uof_messages>``, as one bytes per message.

    The wrapper is this project's (recordings, the HTTP endpoint); UOF itself sends one message
    per AMQP delivery. UofError if the body itself is unusable.
    """
    root = parse_xml(data)
    if _local(root.tag) != BATCH_TAG:
        return [bytes(data)]
    return [ET.tostring(child, encoding="utf-8") for child in root]
