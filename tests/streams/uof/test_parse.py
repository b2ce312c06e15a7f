"""Hardened parsing: Sportradar-shaped samples parse, hostile and malformed XML is refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oddsflow.streams.uof import models as m
from oddsflow.streams.uof.adapter import UofAdapter
from oddsflow.streams.uof.parse import UofError, parse_message, parse_specifiers, split_messages

from .conftest import DATA

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<alive product="1" timestamp="&lol3;" subscribed="1"/>"""

EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE foo [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<odds_change product="1" event_id="sr:match:1" timestamp="1764590400000">&xxe;</odds_change>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE alive SYSTEM "http://127.0.0.1:1/evil.dtd">
<alive product="1" timestamp="1764590400000"/>"""


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (BOMB, "xml_dtd"),
        (EXTERNAL, "xml_dtd"),
        (EXTERNAL_DTD, "xml_dtd"),
        (b"", "empty"),
        (b"<odds_change", "xml_malformed"),
        (b"\xff\xfe<a/>", "xml_malformed"),
        (b"<cashout/>", "unknown_message"),
        (b'<alive product="1"/>', "missing_field"),
        (b'<alive product="x" timestamp="1764590400000"/>', "bad_field"),
        (b'<alive product="1" timestamp="1234"/>', "bad_timestamp"),  # not epoch ms
        (b'<bet_stop product="1" event_id="sr:match:1/x" timestamp="1764590400000"/>', "bad_field"),
        (
            b'<bet_settlement product="1" event_id="sr:match:1" timestamp="1764590400000">'
            b'<outcomes><market id="1"><outcome id="1" result="2"/></market></outcomes>'
            b"</bet_settlement>",
            "bad_field",
        ),
        (
            b'<bet_settlement product="1" event_id="sr:match:1" timestamp="1764590400000">'
            b'<outcomes><market id="1"><outcome id="1" result="1" void_factor="1.5"/>'
            b"</market></outcomes></bet_settlement>",
            "bad_field",
        ),
        (
            b'<bet_cancel product="1" event_id="sr:match:1" timestamp="1764590400000" '
            b'start_time="1764590400000" end_time="1764590300000"/>',
            "bad_field",
        ),
        (b"x" * (4 * 1024 * 1024 + 1), "too_large"),
    ],
)
def test_unusable_messages_are_refused_with_a_reason(data, code):
    with pytest.raises(UofError) as exc:
        parse_message(data)
    assert exc.value.code == code
    assert exc.value.reason


def test_an_entity_bomb_is_refused_before_expansion():
    with pytest.raises(UofError, match="DTD is refused"):
        parse_message(BOMB)


def test_a_sportradar_odds_change_with_a_bom_parses():
    data = (
        b"\xef\xbb\xbf"
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        b'<odds_change product="4" event_id="sr:match:10927088" timestamp="1487254396715">'
        b'<sport_event_status status="1" reporting="1" match_status="6" home_score="0" '
        b'away_score="2"><clock match_time="27:33"/><period_scores><period_score '
        b'match_status_code="6" number="1" home_score="0" away_score="2"/></period_scores>'
        b'</sport_event_status><odds><market status="1" id="68" specifiers="total=3.5">'
        b'<outcome id="13" probabilities="0.91985" active="0"/>'
        b'<outcome id="12" odds="6.5" probabilities="0.08015" active="1"/></market></odds>'
        b"</odds_change>"
    )
    msg = parse_message(data)
    assert msg == m.OddsChange(
        product=4,
        event_id="sr:match:10927088",
        timestamp_ms=1487254396715,
        markets=(
            m.OddsMarket(
                68,
                (("total", "3.5"),),
                1,
                (m.OddsOutcome("13", None, False), m.OddsOutcome("12", Decimal("6.5"), True)),
            ),
        ),
        sport_event_status=m.SportEventStatus(1, 6, 0, 2, 27, (m.PeriodScore(1, 6, 0, 2),)),
    )


def test_the_recorded_match_parses_into_every_message_kind():
    kinds = {type(parse_message(p.read_bytes())).__name__ for p in (DATA / "match").glob("*.xml")}
    assert kinds == {
        "Fixture",
        "Alive",
        "OddsChange",
        "BetStop",
        "BetSettlement",
        "RollbackBetSettlement",
        "BetCancel",
        "RollbackBetCancel",
        "FixtureChange",
    }


def test_health_messages_parse():
    assert parse_message(b'<product_down product="1" timestamp="1465848166722"/>') == (
        m.ProductDown(1, 1465848166722)
    )
    assert parse_message(
        b'<snapshot_complete request_id="1" product="1" timestamp="1475958139957"/>'
    ) == m.SnapshotComplete(1, 1475958139957, 1)
    assert parse_message(
        b'<alive product="3" timestamp="1465848166722" subscribed="0"/>'
    ) == m.Alive(3, 1465848166722, False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, ()),
        ("", ()),
        ("total=2.5", (("total", "2.5"),)),
        ("setnr=3|gamenr=2", (("setnr", "3"), ("gamenr", "2"))),
        ("hcp=-0.25", (("hcp", "-0.25"),)),
    ],
)
def test_specifiers(text, expected):
    assert parse_specifiers(text) == expected


def test_a_batch_splits_into_its_messages():
    body = (
        b'<uof_messages><alive product="1" timestamp="1764590400000"/>'
        b'<alive product="3" timestamp="1764590400001"/></uof_messages>'
    )
    parts = split_messages(body)
    assert [parse_message(p) for p in parts] == [
        m.Alive(1, 1764590400000, True),
        m.Alive(3, 1764590400001, True),
    ]


# ---------------------------------------------------------------- malformed input never crashes

_TAGS = st.sampled_from(
    [
        "odds_change",
        "bet_stop",
        "bet_settlement",
        "rollback_bet_settlement",
        "bet_cancel",
        "rollback_bet_cancel",
        "fixture_change",
        "alive",
        "snapshot_complete",
        "product_down",
        "fixtures_fixture",
        "market",
        "outcome",
        "odds",
        "outcomes",
    ]
)
_ATTRS = st.sampled_from(
    [
        "product",
        "event_id",
        "timestamp",
        "id",
        "specifiers",
        "status",
        "odds",
        "active",
        "result",
        "void_factor",
        "dead_heat_factor",
        "certainty",
        "start_time",
        "end_time",
        "groups",
        "subscribed",
        "home_score",
    ]
)
_VALUES = st.one_of(
    st.sampled_from(["1", "-1", "0", "2.5", "sr:match:1", "1764590400000", "total=2.5", "", "x"]),
    st.text(max_size=12),
    st.integers().map(str),
)


@st.composite
def _element(draw, depth=0):
    tag = draw(_TAGS)
    attrs = draw(st.dictionaries(_ATTRS, _VALUES, max_size=6))
    from xml.sax.saxutils import quoteattr

    attr_text = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
    kids = draw(st.lists(_element(depth + 1), max_size=3)) if depth < 3 else []
    return f"<{tag}{attr_text}>{''.join(kids)}</{tag}>"


_MALFORMED = st.one_of(
    st.binary(max_size=300),
    _element().map(lambda s: s.encode("utf-8", "surrogatepass")),
    _element()
    .map(lambda s: s.encode("utf-8", "surrogatepass"))
    .flatmap(lambda b: st.integers(0, len(b)).map(lambda i: b[:i])),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(_MALFORMED)
def test_malformed_xml_never_crashes_the_adapter(data):
    adapter = UofAdapter()
    try:
        tr = adapter.handle(data)
    except UofError as exc:
        assert exc.reason and exc.code
    else:
        assert tr.kind  # a well-formed message: records (possibly none), never an exception
