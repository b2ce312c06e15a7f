"""Provider items -> canonical records: table-driven cases plus properties of odds and times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oddsflow.codec import Codec
from oddsflow.streams.normalise import FeedError, loads, normalise, odds, timestamp_ms

TS = "2024-08-17T14:00:00+01:00"
TS_MS = 1_723_899_600_000

PRICE = {
    "kind": "price",
    "event_id": "e1",
    "market_type": "match_result",
    "period": "FT",
    "seq": 7,
    "ts": TS,
    "selections": [
        {"selection": "home", "odds": "2.10"},
        {"selection": "draw", "odds": "3.4"},
        {"selection": "away", "odds": 3.6},
    ],
}
AH = {
    "kind": "price",
    "event_id": "e1",
    "market_type": "asian_handicap",
    "period": "FT",
    "line": "-0.250",
    "seq": 8,
    "ts": TS_MS,
    "selections": [{"selection": "home", "odds": "1.90"}, {"selection": "away", "odds": "1.95"}],
}
FIXTURE = {
    "kind": "fixture",
    "event_id": "e1",
    "seq": 1,
    "competition": "EPL",
    "home": "A",
    "away": "B",
    "kickoff": "2024-08-17T15:00:00+01:00",
    "ts": TS,
}
STATUS = {
    "kind": "status",
    "event_id": "e1",
    "seq": 9,
    "status": "bet_stop",
    "in_play": True,
    "ts": TS,
}
SCORE = {"kind": "score", "event_id": "e1", "seq": 10, "home": 1, "away": 0, "minute": 23, "ts": TS}
RESULT = {
    "kind": "result",
    "event_id": "e1",
    "seq": 11,
    "ft": {"home": 2, "away": 1},
    "ht": "1-0",
    "ts": TS,
}
BET = {
    "kind": "bet",
    "bet_id": "b1",
    "account_id": "a1",
    "stake": "10.50",
    "price_policy": "higher",
    "placed_at": TS,
    "legs": [
        {
            "event_id": "e1",
            "market_type": "total_goals",
            "line": "2.5",
            "period": "FT",
            "selection": "over",
            "odds": "1.85",
        }
    ],
}
DEPOSIT = {"kind": "deposit", "ref": "d1", "account_id": "a1", "amount_minor": 10_000, "ts": TS}


def with_(base: dict, **changes: object) -> dict:
    out = dict(base)
    for k, v in changes.items():
        if v is ...:
            out.pop(k, None)
        else:
            out[k] = v
    return out


GOOD = [
    (
        PRICE,
        "price_updates",
        "e1",
        {
            "market_id": "e1/match_result/FT",
            "line": None,
            "provider_ts": TS_MS,
            "seq": 7,
            "selections": [
                {"selection": "home", "odds": Decimal("2.1000")},
                {"selection": "draw", "odds": Decimal("3.4000")},
                {"selection": "away", "odds": Decimal("3.6000")},
            ],
        },
    ),
    (AH, "price_updates", "e1", {"market_id": "e1/asian_handicap/FT/-0.25", "line": "-0.25"}),
    (
        FIXTURE,
        "fixtures",
        "e1",
        {"kickoff": TS_MS + 3_600_000, "sport": "football", "provider": "demo"},
    ),
    (STATUS, "market_status", "e1", {"market_id": None, "status": "bet_stop", "in_play": True}),
    (
        with_(STATUS, market_type="total_goals", line="2.5"),
        "market_status",
        "e1",
        {"market_id": "e1/total_goals/FT/2.5"},
    ),
    (SCORE, "scores", "e1", {"home": 1, "away": 0, "period": "FT", "minute": 23}),
    (
        RESULT,
        "results",
        "e1",
        {"status": "final", "ft_home": 2, "ft_away": 1, "ht_home": 1, "ht_away": 0, "revision": 0},
    ),
    (
        with_(RESULT, status="abandoned", ft=..., ht=...),
        "results",
        "e1",
        {"status": "abandoned", "ft_home": None},
    ),
    (
        BET,
        "bet_requests",
        "a1",
        {
            "stake_minor": 1050,
            "currency": "GBP",
            "price_policy": "higher",
            "channel": "web",
            "legs": [
                {
                    "event_id": "e1",
                    "market_type": "total_goals",
                    "period": "FT",
                    "line": "2.5",
                    "selection": "over",
                    "odds": Decimal("1.8500"),
                }
            ],
        },
    ),
    (DEPOSIT, "deposits", "a1", {"amount_minor": 10_000, "created_at": TS_MS}),
]


@pytest.mark.parametrize(("item", "topic_key", "key", "expected"), GOOD)
def test_valid_items(item, topic_key, key, expected) -> None:
    tk, k, rec = normalise(item, "demo")
    assert (tk, k) == (topic_key, key)
    for field, value in expected.items():
        assert rec[field] == value, field
    Codec(
        {
            "fixtures": "fixture",
            "price_updates": "price_update",
            "market_status": "market_status",
            "scores": "score",
            "results": "result",
            "bet_requests": "bet_request",
            "deposits": "deposit",
        }[tk]
    ).encode(rec)


BAD = [
    ([1, 2], "must be a JSON object"),
    ({"event_id": "e1"}, "missing field 'kind'"),
    (with_(PRICE, kind="corners"), "unknown kind 'corners'"),
    (with_(PRICE, event_id=...), "missing field 'event_id'"),
    (with_(PRICE, seq=...), "missing field 'seq'"),
    (with_(PRICE, seq=-1), "seq must be >= 0"),
    (with_(PRICE, seq=True), "seq must be an integer"),
    (with_(PRICE, event_id="e/1"), "must not contain"),
    (with_(PRICE, ts="2024-08-17T14:00:00"), "naive"),
    (with_(PRICE, ts="yesterday"), "not ISO-8601"),
    (with_(PRICE, ts=1_723_899_600), "out of range"),  # epoch seconds, not ms
    (with_(PRICE, market_type="corners"), "unknown market_type"),
    (with_(PRICE, period="2H"), "unknown period"),
    (with_(PRICE, line="2.5"), "has no line"),
    (
        with_(
            PRICE,
            selections=[
                {"selection": "home", "odds": "1.0"},
                {"selection": "draw", "odds": "3"},
                {"selection": "away", "odds": "3"},
            ],
        ),
        "> 1",
    ),
    (
        with_(
            PRICE,
            selections=[
                {"selection": "home", "odds": "abc"},
                {"selection": "draw", "odds": "3"},
                {"selection": "away", "odds": "3"},
            ],
        ),
        "not a number",
    ),
    (
        with_(
            PRICE,
            selections=[
                {"selection": "home", "odds": "NaN"},
                {"selection": "draw", "odds": "3"},
                {"selection": "away", "odds": "3"},
            ],
        ),
        "finite",
    ),
    (
        with_(
            PRICE,
            selections=[{"selection": "home", "odds": "2"}, {"selection": "draw", "odds": "3"}],
        ),
        "exactly",
    ),
    (
        with_(
            PRICE,
            selections=[
                {"selection": "home", "odds": "2"},
                {"selection": "home", "odds": "3"},
                {"selection": "away", "odds": "3"},
            ],
        ),
        "duplicate",
    ),
    (with_(PRICE, selections=[{"selection": "x", "odds": "2"}]), "unknown selection"),
    (with_(PRICE, selections=[]), "non-empty list"),
    (with_(PRICE, market_id="e1/match_result/1H"), "does not match"),
    (with_(AH, line=...), "needs a line"),
    (with_(AH, line="0.3"), "multiple of 0.25"),
    (with_(AH, line="x"), "not a number"),
    (
        with_(
            AH,
            market_type="total_goals",
            line="-0.5",
            selections=[{"selection": "over", "odds": "2"}, {"selection": "under", "odds": "2"}],
        ),
        ">= 0",
    ),
    (with_(FIXTURE, away="A", home="A"), "differ"),
    (with_(FIXTURE, kickoff="2024-08-17 15:00"), "naive"),
    (with_(STATUS, status="paused"), "unknown status"),
    (with_(STATUS, in_play="yes"), "in_play"),
    (with_(STATUS, market_id="e2/match_result/FT"), "not a market of event"),
    (with_(SCORE, home=-1), ">= 0"),
    (with_(SCORE, away=1.5), "integer"),
    (with_(RESULT, ft=...), "full-time score"),
    (with_(RESULT, ht="3-0"), "exceeds"),
    (with_(RESULT, status="won"), "unknown result status"),
    (with_(BET, stake="0"), "positive"),
    (with_(BET, stake="1.005"), "2 decimal places"),
    (with_(BET, stake=..., stake_minor=0), ">= 1"),
    (with_(BET, price_policy="maybe"), "price_policy"),
    (with_(BET, legs=[]), "non-empty"),
    (with_(BET, legs=[dict(BET["legs"][0], odds="0.5")]), "legs[0]"),
    (with_(BET, legs=[BET["legs"][0], BET["legs"][0]]), "different events"),
    (with_(BET, currency="pounds"), "currency"),
    (with_(BET, placed_at=...), "missing field 'placed_at'"),
    (with_(DEPOSIT, amount_minor=-5), ">= 1"),
    (with_(DEPOSIT, ref=""), "non-empty"),
]


@pytest.mark.parametrize(("item", "reason"), BAD)
def test_invalid_items_have_a_reason(item, reason) -> None:
    with pytest.raises(FeedError) as exc:
        normalise(item, "demo")
    assert reason in str(exc.value)
    assert exc.value.code


def test_json_numbers_are_exact_decimals() -> None:
    item = loads(
        b'{"kind":"price","event_id":"e1","market_type":"total_goals","line":2.5,"seq":1,"ts":1723899600000,'
        b'"selections":[{"selection":"over","odds":1.1},{"selection":"under","odds":7.00005}]}'
    )
    _, _, rec = normalise(item, "p")
    assert [s["odds"] for s in rec["selections"]] == [Decimal("1.1000"), Decimal("7.0000")]
    assert all(isinstance(s["odds"], Decimal) for s in rec["selections"])
    with pytest.raises(ValueError):
        loads(b"[NaN]")


@given(
    st.decimals(
        min_value=Decimal("1.0001"),
        max_value=Decimal(100_000),
        allow_nan=False,
        allow_infinity=False,
        places=4,
    )
)
def test_odds_above_one_round_trip_at_scale_4(d: Decimal) -> None:
    assert odds(str(d)) == d
    assert odds(d).as_tuple().exponent == -4


@given(st.decimals(max_value=Decimal("1.00004"), allow_nan=False, allow_infinity=False))
def test_odds_at_or_below_one_are_rejected(d: Decimal) -> None:
    with pytest.raises(FeedError):
        odds(d)


@given(
    st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2099, 1, 1)),  # noqa: DTZ001
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_iso_with_any_offset_equals_epoch_ms(naive: datetime, offset_min: int) -> None:
    aware = naive.replace(tzinfo=timezone(timedelta(minutes=offset_min)))
    expected = (aware - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert timestamp_ms(aware.isoformat()) == expected
    assert timestamp_ms(expected) == expected
    with pytest.raises(FeedError, match="naive"):
        timestamp_ms(naive.isoformat())


# --------------------------------------------------------------------------- issue 10 rules


def _price_sels(*odds_: object) -> dict:
    return with_(
        PRICE,
        selections=[
            {"selection": s, "odds": o}
            for s, o in zip(("home", "draw", "away"), odds_, strict=True)
        ],
    )


STRICT_BAD = [
    # lenient numbers: int()/Decimal() accept these, a provider never means them
    (with_(BET, stake="1_000"), "plain decimal"),
    (with_(BET, stake="\u0661\u0660"), "plain decimal"),  # Arabic-Indic "10"
    (with_(BET, stake=" 10"), "plain decimal"),
    (with_(BET, stake="1e3"), "plain decimal"),
    (with_(BET, stake=10.5), "not a float"),
    (with_(BET, stake=..., stake_minor="1_000"), "integer"),
    (with_(BET, stake=..., stake_minor="\uff11\uff10"), "integer"),  # fullwidth "10"
    (_price_sels("2_0", "3", "3"), "plain decimal"),
    (_price_sels("\u0662", "3", "3"), "plain decimal"),
    (_price_sels("2.1 ", "3", "3"), "plain decimal"),
    (_price_sels(Decimal("1e999999999"), "3", "3"), "out of range"),
    (with_(AH, line="-0_25"), "plain decimal"),
    (with_(PRICE, seq="1_0"), "integer"),
    (with_(PRICE, seq="\u0661"), "integer"),
    (with_(PRICE, ts=Decimal("1e999999999")), "out of range"),
    (with_(PRICE, ts="\u0662\u0660\u0662\u0664-08-17T14:00:00+01:00"), "ISO-8601"),
    # conflicting money fields
    (with_(BET, stake="10.50", stake_minor=1000), "conflict"),
    (with_(DEPOSIT, amount="99.99"), "conflict"),
    # currencies: ISO 4217 with real minor units, and accepted by the deployment
    (with_(BET, stake="10.5", currency="JPY"), "more than 0 decimal places for JPY"),
    (with_(BET, stake="1.2345", currency="BHD"), "more than 3 decimal places"),
    (with_(BET, currency="ABC"), "ISO 4217"),
    (with_(BET, currency="EUR"), "not accepted"),
    # identifiers: control characters (Postgres text cannot hold NUL), separators
    (with_(BET, bet_id="\x00"), "control"),
    (with_(BET, account_id="a\x07"), "control"),
    (with_(PRICE, event_id="e|1"), "'|'"),
    (with_(FIXTURE, home="A\x00"), "control"),
    # values beyond an Avro int
    (with_(SCORE, home=2**40), "home must be <="),
    (with_(RESULT, revision=2**40), "revision must be <="),
    (with_(RESULT, ft={"home": 2**31, "away": 0}), "ft.home must be <="),
    (with_(PRICE, seq=2**63), "seq must be <="),
    (with_(BET, stake=..., stake_minor=10**12 + 1), "at most"),
    # accumulators and markets bounded
    (with_(BET, legs=[dict(BET["legs"][0], event_id=f"e{i}") for i in range(300)]), "at most 20"),
    (
        with_(
            PRICE,
            market_type="correct_score",
            selections=[{"selection": f"{i}-0", "odds": "9"} for i in range(1001)],
        ),
        "at most 1000 selections",
    ),
    (with_(STATUS, market_id="e1/whatever"), "malformed"),
]


@pytest.mark.parametrize(("item", "reason"), STRICT_BAD)
def test_strict_rules_refuse_with_a_reason(item, reason) -> None:
    with pytest.raises(FeedError) as exc:
        normalise(item, "demo", frozenset({"GBP", "JPY", "BHD"}))
    assert reason in exc.value.reason, exc.value.reason
    assert exc.value.code


@pytest.mark.parametrize(
    ("changes", "minor"),
    [
        ({"stake": "10", "currency": "JPY"}, 10),
        ({"stake": "1.234", "currency": "BHD"}, 1234),
        ({"stake": Decimal("10.5"), "currency": "GBP"}, 1050),  # a JSON number
        ({"stake": "10.50", "stake_minor": 1050}, 1050),  # both, agreeing
        ({"stake": ..., "stake_minor": "700"}, 700),
    ],
)
def test_stakes_convert_with_the_currencys_minor_unit(changes, minor) -> None:
    _, _, record = normalise(with_(BET, **changes), "demo", frozenset({"GBP", "JPY", "BHD"}))
    assert record["stake_minor"] == minor
    assert record["currency"] == changes.get("currency", "GBP")


def test_every_normalised_record_passes_the_engines_validation() -> None:
    from oddsflow.domain.validation import validate_record

    for item, topic_key, _, _ in GOOD:
        tk, _, record = normalise(item, "demo")
        assert tk == topic_key
        validate_record(tk, record)


def test_the_simulator_and_replay_records_pass_validation_except_the_deliberately_bad() -> None:
    from oddsflow.domain.validation import INPUT_TOPICS, ValidationError, validate_record
    from oddsflow.streams.simulate import simulate_events

    refused = []
    for topic_key, _, record in simulate_events(fixtures=4, accounts=20, bets=200, seed=3):
        if topic_key in INPUT_TOPICS:
            try:
                validate_record(topic_key, record)
            except ValidationError as exc:
                refused.append(exc.code)
    # the simulator's six malformed records (see its docstring), and nothing else
    assert sorted(refused) == sorted(
        ["bad_amount", "bad_selection", "bad_odds", "bad_market", "bad_market", "missing_field"]
    )


_ASCII_DIGITS = st.text("0123456789", min_size=1, max_size=6)


@given(st.text(min_size=1, max_size=8))
def test_any_non_plain_number_text_is_refused_as_odds(s: str) -> None:
    import re

    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", s, re.ASCII):
        return
    with pytest.raises(FeedError):
        odds(s)


@given(_ASCII_DIGITS, st.one_of(st.none(), _ASCII_DIGITS))
def test_plain_ascii_odds_are_read_exactly(whole: str, frac: str | None) -> None:
    s = whole if frac is None else f"{whole}.{frac}"
    d = Decimal(s)
    if 1 < d.quantize(Decimal("0.0001")) <= 1_000_000:
        assert odds(s) == d.quantize(Decimal("0.0001"))
    else:
        with pytest.raises(FeedError):
            odds(s)


_ANY_NUMBER = st.one_of(
    st.decimals(),
    st.builds(
        lambda sign, digits, exp: Decimal(f"{sign}{digits}E{exp}"),
        st.sampled_from(["", "-"]),
        st.integers(min_value=0, max_value=10**30),
        st.integers(min_value=-(10**9), max_value=10**9),
    ),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
)


@given(_ANY_NUMBER)
def test_the_number_parsers_only_ever_raise_feed_errors(value: object) -> None:
    from oddsflow.domain.markets import MarketType
    from oddsflow.streams.normalise import integer, line

    for parse in (
        odds,
        timestamp_ms,
        lambda x: line(x, MarketType.ASIAN_HANDICAP),
        lambda x: integer(x, "n"),
    ):
        try:
            parse(value)
        except FeedError as exc:
            assert exc.reason and len(exc.reason) < 300


def _cs(*names: str) -> dict:
    return with_(
        PRICE,
        market_type="correct_score",
        selections=[{"selection": n, "odds": "9"} for n in names],
    )


def test_a_correct_score_has_one_spelling() -> None:
    _, _, record = normalise(_cs("01-0", "0-0", "10-002"), "demo")
    assert [s["selection"] for s in record["selections"]] == ["1-0", "0-0", "10-2"]
    bet = with_(
        BET, legs=[dict(BET["legs"][0], market_type="correct_score", line=None, selection="02-1")]
    )
    assert normalise(bet, "demo")[2]["legs"][0]["selection"] == "2-1"
    with pytest.raises(FeedError, match="duplicate"):
        normalise(_cs("1-0", "01-0"), "demo")  # one outcome priced twice
    for bad in ("\u0661-\u0660", "1-0 ", "1000-0", "1:0"):
        with pytest.raises(FeedError, match="'2-1'"):
            normalise(_cs(bad, "0-0"), "demo")
    with pytest.raises(FeedError, match="'2-1'"):
        normalise(with_(RESULT, ft="\u0662-\u0661"), "demo")
