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


def _score(**kw):
    rec = {
        "event_id": "e1",
        "provider": "p",
        "seq": 1,
        "period": "FT",
        "home": 1,
        "away": 0,
        "minute": 10,
        "provider_ts": 1_767_225_600_000,
    }
    rec.update(kw)
    return rec


def _result(**kw):
    rec = {
        "event_id": "e1",
        "provider": "p",
        "seq": 1,
        "status": "final",
        "ft_home": 2,
        "ft_away": 1,
        "ht_home": None,
        "ht_away": None,
        "revision": 0,
        "provider_ts": 1_767_225_600_000,
    }
    rec.update(kw)
    return rec


def _ledger_tx(amount: int):
    return {
        "tx_id": "b1:reserve",
        "kind": "reserve",
        "bet_id": "b1",
        "account_id": "a1",
        "postings": [
            {"posting_id": "b1:reserve:0", "account": "a1", "amount_minor": -1, "currency": "GBP"},
            {
                "posting_id": "b1:reserve:1",
                "account": "x",
                "amount_minor": amount,
                "currency": "GBP",
            },
        ],
        "created_at": 1_767_225_600_000,
    }


@pytest.mark.parametrize(
    ("schema", "record", "path"),
    [
        ("score", _score(home=2**40), "score.home"),
        ("score", _score(away=-(2**31) - 1), "score.away"),
        ("score", _score(minute=2**31), "score.minute"),
        ("score", _score(seq=2**63), "score.seq"),
        ("result", _result(revision=2**40), "result.revision"),
        ("result", _result(ft_home=2**31), "result.ft_home"),  # a ["null", "int"] union
        ("bet_request", _bet(stake_minor=2**63), "bet_request.stake_minor"),
        ("bet_request", _bet(placed_at=-(2**63) - 1), "bet_request.placed_at"),
    ],
)
def test_ints_beyond_their_avro_type_are_refused_at_encode_with_the_field_path(
    schema, record, path
):
    with pytest.raises(CodecError, match="out of range") as exc:
        Codec(schema).encode(record)
    assert str(exc.value).startswith(f"{path} = ")


def test_a_nested_out_of_range_long_names_its_array_index():
    c = Codec("ledger_transaction")
    assert c.decode(c.encode(_ledger_tx(2**63 - 1)))["postings"][1]["amount_minor"] == 2**63 - 1
    with pytest.raises(CodecError, match=r"ledger_transaction\.postings\[1\]\.amount_minor"):
        c.encode(_ledger_tx(2**63))


@pytest.mark.parametrize(
    ("schema", "record"),
    [
        ("score", _score(home=2**31 - 1, away=0, minute=-(2**31))),
        ("score", _score(seq=2**63 - 1, provider_ts=-(2**63))),
        ("result", _result(revision=2**31 - 1, ft_home=None, ft_away=None, status="abandoned")),
    ],
)
def test_the_extremes_of_int_and_long_round_trip(schema, record):
    c = Codec(schema)
    assert c.decode(c.encode(record)) == record


@given(
    st.one_of(st.integers(max_value=-(2**31) - 1), st.integers(min_value=2**31)),
)
def test_any_int_outside_32_bits_is_refused_for_an_avro_int(n):
    with pytest.raises(CodecError, match="out of range for Avro int"):
        Codec("result").encode(_result(revision=n))


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_any_32_bit_int_round_trips(n):
    c = Codec("result")
    assert c.decode(c.encode(_result(revision=n)))["revision"] == n


@pytest.mark.parametrize("junk", [b"\x00", b"junk", b"\x02xx"])
def test_trailing_bytes_after_the_record_are_refused(junk):
    data = Codec("bet_request").encode(_bet())
    with pytest.raises(CodecError, match="trailing bytes"):
        Codec("bet_request").decode(data + junk)
    with pytest.raises(CodecError, match="trailing bytes"):
        decode_any(data + junk)
    assert Codec("bet_request").decode(data)["bet_id"] == "b1"
