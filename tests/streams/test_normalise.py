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
