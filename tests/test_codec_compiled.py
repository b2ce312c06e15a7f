"""The compiled writer writes exactly fastavro's bytes, for records generated from every schema."""

from __future__ import annotations

import io
from decimal import Context, Decimal
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oddsflow.codec import Codec, CodecError, schemas
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


@pytest.mark.parametrize("name", sorted(schemas().by_name))
@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_truncated_or_garbled_body_is_refused_or_read_as_fastavro_reads_it(
    name: str, data: Any
) -> None:
    c = Codec(name)
    body = _fastavro_body(c.writer.parsed, data.draw(_strategy(c.writer.raw)))
    cut = data.draw(st.integers(0, max(0, len(body) - 1)))
    mangled = data.draw(
        st.sampled_from(
            [
                body[:cut],  # truncated
                body[:cut] + bytes([data.draw(st.integers(0, 255))]) + body[cut + 1 :],
                data.draw(st.binary(max_size=40)),
            ]
        )
    )
    try:
        expected, end = _fastavro_read(c.writer, mangled)
    except Exception:
        with pytest.raises(CodecError):
            c.decode(c._header + mangled)
        return
    if end != len(mangled):
        with pytest.raises(CodecError, match="trailing bytes"):
            c.decode(c._header + mangled)
    else:
        try:
            got = c.decode(c._header + mangled)
        except CodecError as exc:
            # refused where fastavro reads garbage as something: it wraps a varint past 64 bits
            # around and takes enum index -1 as the last symbol (a Python negative index)
            assert "varint beyond 64 bits" in str(exc) or "enum index -" in str(exc)
        else:
            assert _typed(got) == _typed(expected)


@pytest.mark.parametrize(
    "body",
    [
        b"\x80" * 10 + b"\x02",  # 11 bytes
        b"\xff" * 9 + b"\x7f",  # 10 bytes, 70 bits
    ],
)
def test_a_varint_past_64_bits_is_a_corrupt_body(body: bytes) -> None:
    c = Codec("deposit")  # its first field is a string: a length varint
    with pytest.raises(CodecError, match="varint beyond 64 bits"):
        c.decode(c._header + body)


def test_decode_reads_a_memoryview_as_bytes() -> None:
    c = Codec("price_update")
    from oddsflow.bench.micro import RECORDS

    data = c.encode(RECORDS["price_update"])
    assert c.decode(memoryview(data)) == c.decode(data)  # type: ignore[arg-type]
