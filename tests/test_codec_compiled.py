"""The compiled writer and reader give what fastavro gives (bytes, records, refusals) on any input, for every schema."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Context, Decimal
from enum import StrEnum
from functools import partial
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oddsflow.codec import Codec, CodecError, _read_exactly, schemas
from oddsflow.codec_compiled import Unsupported, compile_reader, compile_writer, decimal_bytes

_EXACT = Context(prec=100)
_VERSIONS = sorted(
    ((name, v) for name, versions in schemas().by_name.items() for v in versions),
)


def _decimals(node: dict[str, Any], valid: bool) -> st.SearchStrategy[Decimal]:
    precision, scale = int(node["precision"]), int(node.get("scale", 0))
    if valid:
        # at most `precision` digits, at most `scale` places, signs, zeros and -0 included
        coef = st.integers(-(10**precision - 1), 10**precision - 1)
        exp = st.integers(-scale, 2)
    else:  # one digit or one place too many, or not finite
        coef = st.integers(10**precision, 10 ** (precision + 2)) | st.integers(-(10**precision), 9)
        exp = st.integers(-scale - 2, -scale - 1) | st.integers(-scale, 0)
    built = st.builds(lambda c, e: Decimal(c).scaleb(e, _EXACT), coef, exp)
    if valid:
        return built | st.just(Decimal("-0")) | st.just(Decimal("-0.0128"))
    return (
        built.filter(lambda d: len(d.as_tuple().digits) > precision or d.as_tuple()[2] < -scale)  # type: ignore[operator]
        | st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
    )


def _strategy(node: Any, bad_decimal: bool = False) -> st.SearchStrategy[Any]:
    """Values of raw schema ``node``; with ``bad_decimal`` every decimal is one fastavro refuses."""
    if isinstance(node, list):
        return st.one_of(*(_strategy(b, bad_decimal) for b in node))
    if isinstance(node, str):
        node = {"type": node}
    kind, logical = node["type"], node.get("logicalType")
    if isinstance(kind, dict | list):
        return _strategy(kind, bad_decimal)
    if kind == "record":
        required: dict[str, st.SearchStrategy[Any]] = {}
        optional: dict[str, st.SearchStrategy[Any]] = {}
        for f in node["fields"]:
            ftype = f["type"]
            may_miss = "default" in f or (isinstance(ftype, list) and "null" in ftype)
            (optional if may_miss else required)[f["name"]] = _strategy(ftype, bad_decimal)
        return st.fixed_dictionaries(required, optional=optional)
    if kind == "enum":
        return st.sampled_from(node["symbols"])
    if kind == "array":
        return st.lists(_strategy(node["items"], bad_decimal), max_size=3)
    if kind == "map":
        return st.dictionaries(
            st.text(max_size=5), _strategy(node["values"], bad_decimal), max_size=3
        )
    if kind == "bytes" and logical == "decimal":
        return _decimals(node, valid=not bad_decimal)
    if kind == "string":
        return st.text(max_size=20)
    if kind == "bytes":
        return st.binary(max_size=20)
    if kind == "int":
        return st.integers(-(2**31), 2**31 - 1)
    if kind == "long":
        return st.integers(-(2**63), 2**63 - 1) | st.integers(-300, 300)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    raise AssertionError(f"no strategy for {node!r}")


def _fastavro_body(parsed: Any, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, record)
    return buf.getvalue()


def test_every_schema_compiles() -> None:
    for name, version in _VERSIONS:
        compile_writer(schemas().by_name[name][version].raw)  # Unsupported would fail here


@pytest.mark.parametrize(("name", "version"), _VERSIONS)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_compiled_writer_is_byte_identical_to_fastavro(name: str, version: int, data: Any) -> None:
    sv = schemas().by_name[name][version]
    record = data.draw(_strategy(sv.raw))
    assert compile_writer(sv.raw)(record) == _fastavro_body(sv.parsed, record)


@pytest.mark.parametrize("name", sorted(schemas().by_name))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_codec_encode_is_the_old_header_plus_fastavro_body_and_round_trips(
    name: str, data: Any
) -> None:
    c = Codec(name)
    record = data.draw(_strategy(c.writer.raw))
    encoded = c.encode(record)
    assert encoded == c._header + _fastavro_body(c.writer.parsed, record)
    c.decode(encoded)  # what was written is read back as a record of the schema


class _Status(StrEnum):
    FINAL = "final"


# Values of types the engine does not build records from, put anywhere in a record: fastavro
# coerces some (a bool or a float for a long, a tuple for an array, a datetime for a timestamp),
# refuses others, and takes a tuple in a union as (branch name, value).
_JUNK = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        -1,
        2.5,
        float("nan"),
        "",
        "final",
        b"\x01",
        bytearray(b"ab"),
        memoryview(b"ab"),
        Decimal("1.5"),
        Decimal("NaN"),
        [],
        [1],
        (),
        ("string", "x"),
        ("long", 3),
        {},
        {"-type": "io.oddsflow.Nope"},
        _Status.FINAL,
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2026, 12, 1),  # noqa: DTZ001 (a naive one is exactly the kind of junk meant)
    ]
)


def _junk_strategy(node: Any) -> st.SearchStrategy[Any]:
    """Records of ``node`` where any value, at any depth, may be junk or missing."""
    if isinstance(node, list):
        inner = st.one_of(*(_junk_strategy(b) for b in node))
    elif isinstance(node, str) or not isinstance(node, dict):
        inner = _strategy(node)
    else:
        kind = node["type"]
        if isinstance(kind, dict | list):
            return _junk_strategy(kind)
        if kind == "record":
            values = {f["name"]: _junk_strategy(f["type"]) for f in node["fields"]}
            inner = st.fixed_dictionaries({}, optional=values) | st.fixed_dictionaries(values)
        elif kind == "array":
            items = _junk_strategy(node["items"])
            inner = st.lists(items, max_size=3) | st.lists(items, max_size=3).map(tuple)
        elif kind == "map":
            inner = st.dictionaries(st.text(max_size=3), _junk_strategy(node["values"]), max_size=2)
        else:
            inner = _strategy(node)
    return st.one_of(inner, inner, inner, _JUNK)


def _fastavro_encode(c: Codec, record: Any) -> bytes:
    """The codec's encode as it was before the compiled writer: range check, fastavro."""
    if c._range_check is not None:
        c._range_check(record, c.name)
    try:
        return c._header + _fastavro_body(c.writer.parsed, record)
    except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError) as exc:
        raise CodecError(str(exc)) from exc


def _encode_outcome(encode: Any, record: Any) -> Any:
    try:
        return encode(record)
    except CodecError:
        return _REFUSED
    except Exception as exc:  # what the codec let through before, it must let through now
        return type(exc).__name__


@pytest.mark.parametrize("name", sorted(schemas().by_name))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_record_junk_included_is_written_or_refused_exactly_as_fastavro(
    name: str, data: Any
) -> None:
    c = Codec(name)
    record = data.draw(_junk_strategy(c.writer.raw) | _strategy(c.writer.raw))
    expected = _encode_outcome(partial(_fastavro_encode, c), record)
    assert _encode_outcome(c.encode, record) == expected


_DECIMAL_SCHEMAS = sorted(
    name for name, _ in _VERSIONS if "decimal" in str(schemas().latest(name).raw)
)


@pytest.mark.parametrize("name", _DECIMAL_SCHEMAS)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_decimal_fastavro_refuses_is_refused_too(name: str, data: Any) -> None:
    sv = schemas().latest(name)
    record = data.draw(_strategy(sv.raw, bad_decimal=True))
    try:
        _fastavro_body(sv.parsed, record)
    except (ValueError, TypeError, ArithmeticError):
        with pytest.raises(CodecError):
            Codec(name).encode(record)
    else:  # the record held no decimal at all (empty arrays, nulls): same bytes then
        assert compile_writer(sv.raw)(record) == _fastavro_body(sv.parsed, record)


@pytest.mark.parametrize(
    ("value", "scale", "precision", "wire"),
    [
        (Decimal("2.1"), 4, 12, (21000).to_bytes(2, "big", signed=True)),
        (Decimal("0"), 4, 12, b"\x00"),
        (Decimal("-0"), 4, 12, b"\x00"),
        (Decimal("-0.0128"), 4, 12, b"\xff\x80"),  # sized by the magnitude, as fastavro does
        (Decimal("0.0127"), 4, 12, b"\x7f"),
        (Decimal("0.0128"), 4, 12, b"\x00\x80"),
        (Decimal("1E+3"), 4, 12, (10**7).to_bytes(4, "big", signed=True)),
    ],
)
def test_decimal_bytes_table(value: Decimal, scale: int, precision: int, wire: bytes) -> None:
    assert decimal_bytes(value, scale, precision) == wire


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "record", "name": "R", "fields": [{"name": "u", "type": ["int", "string"]}]},
        {
            "type": "record",
            "name": "R",
            "fields": [{"name": "f", "type": {"type": "fixed", "name": "F", "size": 2}}],
        },
        {"type": "record", "name": "R", "fields": [{"name": "a", "type": "double"}]},
    ],
)
def test_what_is_not_compiled_is_unsupported_and_left_to_fastavro(schema: dict[str, Any]) -> None:
    with pytest.raises(Unsupported):
        compile_writer(schema)


def _fastavro_read(sv: Any, body: bytes) -> tuple[dict[str, Any], int]:
    buf = io.BytesIO(body)
    record = fastavro.schemaless_reader(buf, sv.read_parsed, None)
    return record, buf.tell()


def _typed(value: Any) -> Any:
    """``value`` with every leaf as (type, repr): equal Decimals of other exponents differ."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, repr(value))


@pytest.mark.parametrize(("name", "version"), _VERSIONS)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_compiled_reader_reads_what_fastavro_reads(name: str, version: int, data: Any) -> None:
    sv = schemas().by_name[name][version]
    body = _fastavro_body(sv.parsed, data.draw(_strategy(sv.raw)))
    record, end = compile_reader(sv.raw)(body)
    expected, expected_end = _fastavro_read(sv, body)
    assert _typed(record) == _typed(expected)
    assert list(record) == list(expected)  # fields in schema order
    assert end == expected_end == len(body)


_REFUSED = "refused"


def _outcome(decode: Any, data: bytes) -> Any:
    """What decoding ``data`` gives: the typed record, or "refused" (a CodecError)."""
    try:
        return _typed(decode(data))
    except CodecError:
        return _REFUSED


def _fastavro_decode(c: Codec, data: bytes) -> Any:
    """The codec's decode as it was before the compiled reader: fastavro's, its refusals."""
    return _read_exactly(c.name, data[10:], c.writer.read_parsed, None)


# Varints a garbled body may hold where fastavro's C reader is lenient: negative indexes, a
# varint past 64 bits (wraps around), -2**63 (a block count that stays negative when negated).
_HOSTILE = [
    b"\x01",  # -1
    b"\x03",  # -2
    b"\x05",  # -3
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # -2**63
    b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # 2**63 - 1
    b"\xff" * 9 + b"\x7f",  # 70 bits
    b"\x80" * 10 + b"\x02",  # 77 bits, the set one shifted by 70
    b"\xff" * 12 + b"\x03",
    b"\x81\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00",  # padded
]


def _mangle(data: Any, body: bytes) -> bytes:
    """``body`` after one to three cuts, flips, insertions, deletions or appended bytes."""
    out = body
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(out)))
        op = data.draw(st.sampled_from(["cut", "flip", "insert", "delete", "append", "hostile"]))
        if op == "cut":
            out = out[:at]
        elif op == "flip" and at < len(out):
            byte = data.draw(
                st.sampled_from([0, 1, 2, 3, 5, 0x7F, 0x80, 0xFF]) | st.integers(0, 255)
            )
            out = out[:at] + bytes([byte]) + out[at + 1 :]
        elif op == "insert":
            out = out[:at] + data.draw(st.binary(min_size=1, max_size=4)) + out[at:]
        elif op == "delete":
            out = out[:at] + out[at + data.draw(st.integers(1, 4)) :]
        elif op == "append":
            out += data.draw(st.binary(min_size=1, max_size=4))
        elif op == "hostile":  # in place of the varint that starts here (or of one byte)
            out = out[:at] + data.draw(st.sampled_from(_HOSTILE)) + out[at + 1 :]
    return out


@pytest.mark.parametrize("name", sorted(schemas().by_name))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_truncated_or_garbled_body_is_refused_or_read_exactly_as_fastavro_reads_it(
    name: str, data: Any
) -> None:
    c = Codec(name)
    body = _fastavro_body(c.writer.parsed, data.draw(_strategy(c.writer.raw)))
    how = data.draw(st.sampled_from(["as written", "mangled", "random"]))
    if how == "as written":
        mangled = body
    elif how == "mangled":
        mangled = _mangle(data, body)
    else:
        mangled = data.draw(st.binary(max_size=60))
    framed = c._header + mangled
    assert _outcome(c.decode, framed) == _outcome(partial(_fastavro_decode, c), framed)


def _result_body(status: bytes = b"\x00", seq: bytes = b"\x02", ft_home: bytes = b"\x00") -> bytes:
    """A result body with raw bytes for seq, the status enum index and ft_home (union index and
    value): event_id "e", provider "p", the rest null or 0."""
    return b"\x02e\x02p" + seq + status + ft_home + b"\x00\x00\x00" + b"\x00" + b"\x02"


@pytest.mark.parametrize(
    ("body", "field", "value"),
    [
        (_result_body(), "status", "final"),
        (_result_body(status=b"\x01"), "status", "cancelled"),  # -1: the last symbol
        (_result_body(status=b"\x05"), "status", "final"),  # -3: the first
        (_result_body(status=b"\x07"), "status", _REFUSED),  # -4: before the first
        (_result_body(status=b"\x06"), "status", _REFUSED),  # 3: past the last
        (_result_body(ft_home=b"\x02\x0e"), "ft_home", 7),
        (_result_body(ft_home=b"\x01\x0e"), "ft_home", 7),  # -1: the last branch
        (_result_body(ft_home=b"\x03"), "ft_home", None),  # -2: the first branch, null
        (_result_body(ft_home=b"\x04\x0e"), "ft_home", _REFUSED),  # 2: no such branch
        (_result_body(ft_home=b"\x05\x0e"), "ft_home", _REFUSED),  # -3: no such branch
        (_result_body(seq=b"\x80" * 10 + b"\x02"), "seq", 64),  # 2 << (70 % 64), zigzagged
        (_result_body(seq=b"\xff" * 9 + b"\x7f"), "seq", -(2**63)),  # bits past 64 dropped
        (_result_body(seq=b"\xfe" + b"\xff" * 8 + b"\x01"), "seq", 2**63 - 1),
        (b"\x02e\x02p\x80\x80", "seq", _REFUSED),  # the body ends inside the varint
    ],
)
def test_garbled_varints_and_indexes_read_as_fastavro_reads_them(
    body: bytes, field: str, value: Any
) -> None:
    c = Codec("result")
    framed = c._header + body
    expected = _outcome(partial(_fastavro_decode, c), framed)
    assert _outcome(c.decode, framed) == expected
    if value == _REFUSED:
        assert expected == _REFUSED
    else:
        assert c.decode(framed)[field] == value


def test_a_block_count_of_minus_two_to_the_63_is_an_empty_block_as_in_fastavro() -> None:
    c = Codec("ledger_transaction")
    # tx_id "t", kind "k", bet_id null, account_id null, postings: a block of -2**63 items with
    # a byte size of 0, then the end of the array, created_at 0
    body = b"\x02t\x02k\x00\x00" + _HOSTILE[3] + b"\x00" + b"\x00" + b"\x00"
    framed = c._header + body
    assert c.decode(framed)["postings"] == []
    assert _outcome(c.decode, framed) == _outcome(partial(_fastavro_decode, c), framed)


def test_decode_reads_a_memoryview_as_bytes() -> None:
    c = Codec("price_update")
    from oddsflow.bench.micro import RECORDS

    data = c.encode(RECORDS["price_update"])
    assert c.decode(memoryview(data)) == c.decode(data)  # type: ignore[arg-type]
