"""The input rules shared by the ingestors and the engine: table-driven and property-based.

Each BAD row is a record an attacker (or a buggy producer) could put straight on an input topic,
bypassing the ingestor; ``validate_record`` must refuse it with a typed error and a reason.
"""

from __future__ import annotations

import copy
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oddsflow.codec import Codec
from oddsflow.domain import validation as v
from oddsflow.domain.validation import ValidationError, validate_record

TS = 1_767_225_600_000
GBP = frozenset({"GBP"})

LEG = {
    "event_id": "e1",
    "market_type": "match_result",
    "period": "FT",
    "line": None,
    "selection": "home",
    "odds": Decimal("2.1000"),
}
RECORDS: dict[str, dict[str, Any]] = {
    "fixtures": {
        "event_id": "e1",
        "provider": "demo",
        "seq": 1,
        "sport": "football",
        "competition": "EPL",
        "home": "Arsenal",
        "away": "Chelsea",
        "kickoff": TS,
        "provider_ts": TS,
    },
    "price_updates": {
        "event_id": "e1",
        "provider": "demo",
        "seq": 2,
        "market_id": "e1/total_goals/FT/2.5",
        "market_type": "total_goals",
        "period": "FT",
        "line": "2.5",
        "selections": [
            {"selection": "over", "odds": Decimal("1.9000")},
            {"selection": "under", "odds": Decimal("1.9500")},
        ],
        "provider_ts": TS,
    },
    "market_status": {
        "event_id": "e1",
        "provider": "demo",
        "seq": 3,
        "market_id": "e1/asian_handicap/1H/-0.25",
        "status": "bet_stop",
        "in_play": True,
        "provider_ts": TS,
    },
    "scores": {
        "event_id": "e1",
        "provider": "demo",
        "seq": 4,
        "period": "FT",
        "home": 2,
        "away": 1,
        "minute": 67,
        "provider_ts": TS,
    },
    "results": {
        "event_id": "e1",
        "provider": "demo",
        "seq": 5,
        "status": "final",
        "ft_home": 2,
        "ft_away": 1,
        "ht_home": 1,
        "ht_away": 1,
        "revision": 0,
        "provider_ts": TS,
    },
    "bet_requests": {
        "bet_id": "b1",
        "account_id": "a1",
        "stake_minor": 1_000,
        "currency": "GBP",
        "price_policy": "any",
        "legs": [LEG],
        "placed_at": TS,
        "channel": "web",
    },
    "deposits": {
        "ref": "d1",
        "account_id": "a1",
        "amount_minor": 10_000,
        "currency": "GBP",
        "created_at": TS,
    },
}
SCHEMAS = {
    "fixtures": "fixture",
    "price_updates": "price_update",
    "market_status": "market_status",
    "scores": "score",
    "results": "result",
    "bet_requests": "bet_request",
    "deposits": "deposit",
}


def rec(topic_key: str, **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(RECORDS[topic_key])
    for k, value in changes.items():
        if value is ...:
            out.pop(k)
        else:
            out[k] = value
    return out


def legs(n: int) -> list[dict[str, Any]]:
    return [dict(LEG, event_id=f"e{i}") for i in range(n)]


def sels(n: int) -> list[dict[str, Any]]:
    return [{"selection": f"{i}-0", "odds": Decimal("50")} for i in range(n)]


def cs_price(n: int) -> dict[str, Any]:
    return rec(
        "price_updates",
        market_id="e1/correct_score/FT",
        market_type="correct_score",
        line=None,
        selections=sels(n),
    )


@pytest.mark.parametrize("topic_key", sorted(RECORDS))
def test_good_records_pass_and_fit_their_schema(topic_key: str) -> None:
    validate_record(topic_key, RECORDS[topic_key], GBP)
    Codec(SCHEMAS[topic_key]).encode(copy.deepcopy(RECORDS[topic_key]))


GOOD_VARIANTS = [
    ("bet_requests", rec("bet_requests", legs=legs(v.MAX_LEGS))),
    ("bet_requests", rec("bet_requests", stake_minor=v.AMOUNT_MINOR_MAX)),
    ("bet_requests", rec("bet_requests", channel=...)),  # the schema default
    ("price_updates", cs_price(v.SELECTIONS_MAX)),
    ("market_status", rec("market_status", market_id=None)),
    ("results", rec("results", status="abandoned", ft_home=None, ft_away=None)),
    ("results", rec("results", revision=v.INT_MAX)),
    ("scores", rec("scores", home=v.INT_MAX, minute=v.MINUTE_MAX)),
    ("fixtures", rec("fixtures", seq=v.LONG_MAX, home="Café Олимп")),
    ("deposits", rec("deposits", account_id="acct-\u00e9\u4e2d")),  # printable non-ASCII is fine
]


@pytest.mark.parametrize(("topic_key", "record"), GOOD_VARIANTS)
def test_records_at_the_limits_pass(topic_key: str, record: dict[str, Any]) -> None:
    validate_record(topic_key, record, GBP)


BAD = [
    # identifiers: the engine's key separators, control characters, length
    (
        "price_updates",
        rec("price_updates", event_id="e1|x", market_id="e1|x/total_goals/FT/2.5"),
        "'|'",
    ),
    ("fixtures", rec("fixtures", event_id="e/1"), "'/'"),
    ("fixtures", rec("fixtures", event_id="e 1"), "whitespace"),
    ("bet_requests", rec("bet_requests", bet_id="\x00"), "control"),
    ("bet_requests", rec("bet_requests", bet_id="b\x1b[31m"), "control"),
    ("bet_requests", rec("bet_requests", account_id="a\u200b"), "control"),  # zero-width space
    ("deposits", rec("deposits", ref="\ud800"), "control"),  # a lone surrogate
    ("deposits", rec("deposits", ref=""), "non-empty"),
    ("deposits", rec("deposits", ref=7), "non-empty string"),
    ("deposits", rec("deposits", account_id="a" * (v.ID_CHARS_MAX + 1)), "longer than"),
    ("fixtures", rec("fixtures", provider="de mo"), "provider"),
    # free text
    ("fixtures", rec("fixtures", home="A" * (v.TEXT_CHARS_MAX + 1)), "longer than"),
    ("fixtures", rec("fixtures", competition="EPL\n"), "control"),
    ("fixtures", rec("fixtures", competition=" EPL"), "blanks"),
    ("fixtures", rec("fixtures", sport="  "), "non-empty"),
    ("fixtures", rec("fixtures", away="Arsenal"), "differ"),
    ("bet_requests", rec("bet_requests", channel="\x00"), "channel"),
    # ints: Avro int and long ranges, plausibility
    ("scores", rec("scores", home=2**40), "home must be <="),
    ("scores", rec("scores", away=-1), "away must be >= 0"),
    ("scores", rec("scores", minute=v.MINUTE_MAX + 1), "minute"),
    ("scores", rec("scores", home=True), "integer"),
    ("scores", rec("scores", home=1.0), "integer"),
    ("scores", rec("scores", period="2H"), "unknown period"),
    ("results", rec("results", revision=2**40), "revision must be <="),
    ("results", rec("results", ft_home=2**31), "ft_home must be <="),
    ("results", rec("results", ht_away=None), "go together"),
    ("results", rec("results", ht_home=3), "exceeds"),
    ("results", rec("results", ft_home=None, ft_away=None), "full-time"),
    ("results", rec("results", status="won"), "unknown result status"),
    ("fixtures", rec("fixtures", seq=2**63), "seq must be <="),
    ("fixtures", rec("fixtures", seq=-1), "seq must be >= 0"),
    ("fixtures", rec("fixtures", kickoff=TS // 1000), "out of range"),  # epoch seconds
    ("fixtures", rec("fixtures", provider_ts="2026-01-01T00:00:00Z"), "epoch ms"),
    ("fixtures", rec("fixtures", provider_ts=...), "missing field 'provider_ts'"),
    # bets: legs, events, money, currency
    ("bet_requests", rec("bet_requests", legs=legs(300)), "at most 20 legs, got 300"),
    ("bet_requests", rec("bet_requests", legs=[]), "non-empty"),
    ("bet_requests", rec("bet_requests", legs={"0": LEG}), "legs must be a list"),
    (
        "bet_requests",
        rec("bet_requests", legs=[LEG, dict(LEG, selection="away")]),
        "different events",
    ),
    ("bet_requests", rec("bet_requests", legs=[LEG, "leg"]), "legs[1] must be an object"),
    ("bet_requests", rec("bet_requests", legs=[dict(LEG, event_id="e|1")]), "legs[0]: event_id"),
    (
        "bet_requests",
        rec("bet_requests", legs=[dict(LEG, selection="banana")]),
        "unknown selection",
    ),
    ("bet_requests", rec("bet_requests", legs=[dict(LEG, odds=Decimal("1.0000"))]), "> 1"),
    ("bet_requests", rec("bet_requests", legs=[dict(LEG, odds=Decimal("2.12345"))]), "4 decimal"),
    ("bet_requests", rec("bet_requests", legs=[dict(LEG, odds=Decimal("1000001"))]), "at most"),
    ("bet_requests", rec("bet_requests", legs=[dict(LEG, odds=Decimal("NaN"))]), "finite"),
    ("bet_requests", rec("bet_requests", legs=[dict(LEG, odds="2.10")]), "Decimal"),
    ("bet_requests", rec("bet_requests", legs=[dict(LEG, line="2.5")]), "has no line"),
    ("bet_requests", rec("bet_requests", legs=[dict(LEG, market_type="corners")]), "market_type"),
    ("bet_requests", rec("bet_requests", stake_minor=0), "positive"),
    ("bet_requests", rec("bet_requests", stake_minor=-5), "positive"),
    ("bet_requests", rec("bet_requests", stake_minor=v.AMOUNT_MINOR_MAX + 1), "at most"),
    ("bet_requests", rec("bet_requests", stake_minor=2**70), "at most"),
    ("bet_requests", rec("bet_requests", stake_minor="1000"), "integer of minor units"),
    ("bet_requests", rec("bet_requests", currency="ABC"), "ISO 4217"),
    ("bet_requests", rec("bet_requests", currency="EUR"), "not accepted"),
    ("bet_requests", rec("bet_requests", price_policy="maybe"), "price_policy"),
    ("deposits", rec("deposits", amount_minor=0), "positive"),
    ("deposits", rec("deposits", amount_minor=2**63), "at most"),
    ("deposits", rec("deposits", currency=None), "3-letter"),
    # markets
    ("price_updates", rec("price_updates", market_id="e1/total_goals/FT/3.5"), "does not match"),
    (
        "price_updates",
        rec("price_updates", line="2.50", market_id="e1/total_goals/FT/2.5"),
        "canonical",
    ),
    ("price_updates", rec("price_updates", line="2_5"), "decimal text"),
    ("price_updates", rec("price_updates", line="2.3", market_id="e1/total_goals/FT/2.3"), "0.25"),
    (
        "price_updates",
        rec("price_updates", line="-0.5", market_id="e1/total_goals/FT/-0.5"),
        ">= 0",
    ),
    ("price_updates", rec("price_updates", line="101", market_id="e1/total_goals/FT/101"), "range"),
    ("price_updates", rec("price_updates", line=None), "needs a line"),
    ("price_updates", rec("price_updates", selections=[]), "non-empty"),
    ("price_updates", rec("price_updates", selections="over"), "must be a list"),
    ("price_updates", rec("price_updates", selections=["over"]), "must be an object"),
    (
        "price_updates",
        rec("price_updates", selections=[{"selection": "over", "odds": Decimal(2)}]),
        "exactly",
    ),
    ("price_updates", cs_price(v.SELECTIONS_MAX + 1), "at most 1000 selections"),
    ("price_updates", cs_price(1), "at least 2"),
    (
        "price_updates",
        rec("price_updates", selections=[{"selection": "over", "odds": Decimal(2)}] * 2),
        "duplicate",
    ),
    (
        "price_updates",
        dict(cs_price(2), selections=[{"selection": "2-x", "odds": Decimal(2)}] * 2),
        "'2-1'",
    ),
    (
        "price_updates",
        dict(cs_price(2), selections=[{"selection": 21, "odds": Decimal(2)}] * 2),
        "'2-1'",
    ),
    (
        "price_updates",
        dict(cs_price(2), selections=[{"selection": "01-0", "odds": Decimal(2)}] * 2),
        "no leading zeros",
    ),
    (
        "bet_requests",
        rec("bet_requests", legs=[dict(LEG, market_type="correct_score", selection="\u0661-0")]),
        "'2-1'",
    ),
    (
        "market_status",
        rec("market_status", market_id="e2/match_result/FT"),
        "not a market of event",
    ),
    ("market_status", rec("market_status", market_id="e1/match_result"), "malformed"),
    ("market_status", rec("market_status", market_id="e1/match_result/FT/"), "has no line"),
    ("market_status", rec("market_status", market_id="e1/asian_handicap/1H/-0.50"), "canonical"),
    ("market_status", rec("market_status", market_id=5), "market id"),
    ("market_status", rec("market_status", status="paused"), "unknown status"),
    ("market_status", rec("market_status", in_play=1), "true or false"),
]


@pytest.mark.parametrize(("topic_key", "record", "reason"), BAD)
def test_bad_records_are_refused_with_a_reason(
    topic_key: str, record: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        validate_record(topic_key, record, GBP)
    assert reason in exc.value.reason
    assert exc.value.code and exc.value.code.isidentifier()
    assert isinstance(exc.value, ValueError)
    assert len(exc.value.reason) < 400  # a reason never echoes a huge input


def test_selection_names_are_bounded_on_their_own() -> None:
    with pytest.raises(ValidationError, match="at most 1000"):
        v.selection_names(
            [f"{i}-0" for i in range(v.SELECTIONS_MAX + 1)], v.MarketType.CORRECT_SCORE
        )


def test_not_a_mapping_and_unknown_topics() -> None:
    with pytest.raises(ValidationError, match="must be a mapping"):
        validate_record("scores", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an input topic"):
        validate_record("ledger", {})


def test_the_accepted_currencies_default_to_the_domain_default() -> None:
    validate_record("deposits", rec("deposits", currency="JPY"))
    with pytest.raises(ValidationError, match="not accepted"):
        validate_record("deposits", rec("deposits", currency="BHD"))
    validate_record("deposits", rec("deposits", currency="BHD"), frozenset({"BHD"}))


def test_huge_values_are_not_echoed_in_the_reason() -> None:
    for topic_key, record in [
        ("deposits", rec("deposits", currency="X" * 100_000)),
        ("deposits", rec("deposits", ref="x\x00" * 99)),
        ("fixtures", rec("fixtures", home="A\x00" * 99)),
        ("bet_requests", rec("bet_requests", legs=[dict(LEG, selection="s" * 100_000)])),
    ]:
        with pytest.raises(ValidationError) as exc:
            validate_record(topic_key, record, GBP)
        assert len(exc.value.reason) < 200 and "chars)" in exc.value.reason


# --------------------------------------------------------------------------- properties

_SAFE_ID_CHARS = st.characters(
    categories=("L", "N", "P", "S"), exclude_characters="/|", codec="utf-8"
)


@given(st.text(_SAFE_ID_CHARS, min_size=1, max_size=v.ID_CHARS_MAX))
def test_printable_ids_without_separators_pass(ident: str) -> None:
    assert v.identifier(ident, "bet_id") == ident


@given(
    st.text(_SAFE_ID_CHARS, max_size=20),
    st.sampled_from(["/", "|", " ", "\t", "\n", "\x00", "\x7f", "\x85", "\u2028", "\ufeff"]),
    st.text(_SAFE_ID_CHARS, max_size=20),
)
def test_an_id_with_a_separator_or_control_character_is_refused(
    head: str, bad: str, tail: str
) -> None:
    with pytest.raises(ValidationError):
        v.identifier(head + bad + tail, "bet_id")


@given(st.integers())
def test_scores_are_accepted_exactly_within_avro_int(n: int) -> None:
    record = rec("scores", home=n)
    if 0 <= n <= v.INT_MAX:
        validate_record("scores", record)
        Codec("score").encode(record)
    else:
        with pytest.raises(ValidationError):
            validate_record("scores", record)


@given(st.integers(min_value=0, max_value=40))
def test_leg_counts(n: int) -> None:
    record = rec("bet_requests", legs=legs(n))
    if 1 <= n <= v.MAX_LEGS:
        validate_record("bet_requests", record, GBP)
    else:
        with pytest.raises(ValidationError, match="legs"):
            validate_record("bet_requests", record, GBP)


_JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.decimals()
    | st.text(max_size=30)
    | st.binary(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=300)
@given(
    st.sampled_from(sorted(RECORDS)),
    st.data(),
)
def test_any_corruption_of_a_field_is_refused_or_passes_never_crashes(
    topic_key: str, data: st.DataObject
) -> None:
    record = rec(topic_key)
    fields = sorted(record) + (["legs.0"] if topic_key == "bet_requests" else [])
    field = data.draw(st.sampled_from(fields))
    value = data.draw(_JSONISH)
    if field == "legs.0":
        record["legs"][0][data.draw(st.sampled_from(sorted(LEG)))] = value
    else:
        record[field] = value
    try:
        validate_record(topic_key, record, GBP)
    except ValidationError as exc:
        assert exc.reason
    else:
        Codec(SCHEMAS[topic_key]).encode(record)  # what passes is writable Avro


ATTACKS = [
    # what issue 10 found produced straight to the input topics, each valid Avro
    ("bet_requests", rec("bet_requests", legs=legs(300)), "at most 20 legs"),
    (
        "price_updates",
        rec("price_updates", event_id="e1|x", market_id="e1|x/total_goals/FT/2.5"),
        "'|'",
    ),
    ("deposits", rec("deposits", amount_minor=2**63 - 1), "at most"),
    ("bet_requests", rec("bet_requests", bet_id="\x00"), "control"),
    ("bet_requests", rec("bet_requests", currency="ZZZ"), "ISO 4217"),
]


@pytest.mark.parametrize("topic_key", sorted(RECORDS))
def test_what_the_engine_decodes_from_avro_passes(topic_key: str) -> None:
    codec = Codec(SCHEMAS[topic_key])
    validate_record(topic_key, codec.decode(codec.encode(copy.deepcopy(RECORDS[topic_key]))), GBP)


@pytest.mark.parametrize(("topic_key", "record", "reason"), ATTACKS)
def test_records_produced_around_the_ingestor_are_refused_after_decode(
    topic_key: str, record: dict[str, Any], reason: str
) -> None:
    codec = Codec(SCHEMAS[topic_key])
    decoded = codec.decode(codec.encode(record))  # the schema lets them through
    with pytest.raises(ValidationError, match=re.escape(reason)):
        validate_record(topic_key, decoded, GBP)
