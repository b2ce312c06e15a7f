"""The Avro codec: single-object framing, schema resolution, clear errors."""

from __future__ import annotations

import io
from decimal import Decimal

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oddsflow.codec import SINGLE_OBJECT_MAGIC, Codec, CodecError, decode_any, schemas


def _bet(**kw):
    rec = {
        "bet_id": "b1",
        "account_id": "a1",
        "stake_minor": 1000,
        "currency": "GBP",
        "price_policy": "any",
        "legs": [
            {
                "event_id": "e1",
                "market_type": "match_result",
                "period": "FT",
                "line": None,
                "selection": "home",
                "odds": Decimal("2.1"),
            }
        ],
        "placed_at": 1_767_225_600_000,
    }
    rec.update(kw)
    return rec


def test_single_object_header_carries_the_fingerprint():
    c = Codec("bet_request")
    data = c.encode(_bet())
    assert data[:2] == SINGLE_OBJECT_MAGIC
    assert data[2:10] == schemas().latest("bet_request").fingerprint
    out = c.decode(data)
    assert out["legs"][0]["odds"] == Decimal("2.1000")
    assert out["placed_at"] == 1_767_225_600_000  # timestamps decode as int epoch ms
    assert decode_any(data)[0] == "bet_request"


def test_an_old_writer_version_is_resolved_into_the_newest():
    v1 = schemas().by_name["bet_request"][1]
    buf = io.BytesIO()
    buf.write(SINGLE_OBJECT_MAGIC + v1.fingerprint)
    fastavro.schemaless_writer(buf, v1.parsed, _bet())
    out = Codec("bet_request").decode(buf.getvalue())
    assert out["channel"] == "web"  # the v2 field's default


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"{json}", "bad magic"),
        (SINGLE_OBJECT_MAGIC + b"\x00" * 3, "truncated"),
        (SINGLE_OBJECT_MAGIC + b"\x01" * 8 + b"x", "unknown schema fingerprint"),
    ],
)
def test_garbage_is_a_codec_error_with_a_reason(data, message):
    with pytest.raises(CodecError, match=message):
        Codec("bet_request").decode(data)


def test_a_message_of_another_schema_is_rejected():
    data = Codec("deposit").encode(
        {"ref": "r", "account_id": "a", "amount_minor": 1, "currency": "GBP", "created_at": 0}
    )
    with pytest.raises(CodecError, match="expected a bet_request"):
        Codec("bet_request").decode(data)


def test_truncated_body_is_a_codec_error():
    data = Codec("bet_request").encode(_bet())
    with pytest.raises(CodecError, match="corrupt"):
        Codec("bet_request").decode(data[:-5])


def test_a_record_that_does_not_fit_is_refused_at_encode():
    with pytest.raises(CodecError):
        Codec("bet_request").encode(_bet(stake_minor="ten"))


@given(
    stake=st.integers(min_value=0, max_value=2**62),
    odds=st.decimals(min_value=Decimal("1.0001"), max_value=Decimal("99999999"), places=4),
)
def test_roundtrip_is_exact_for_money_and_odds(stake, odds):
    c = Codec("bet_request")
    rec = _bet(stake_minor=stake)
    rec["legs"][0]["odds"] = odds
    out = c.decode(c.encode(rec))
    assert out["stake_minor"] == stake and out["legs"][0]["odds"] == odds
