"""A writer compiled per schema: Python source generated once, the Avro binary body of a record.

Why: fastavro's generic writer walks the parsed schema on every call, dispatching each field by
type and logical type (decimal fields by a per-call lookup and digit loop); a bet writes ~8
messages, so that walk was the largest item of the in-process profile. Here each schema becomes
one straight-line function (fields inlined, enum indexes and the decimal scale baked in), which
writes the same bytes: the wire format and schemas are unchanged, and
``tests/test_codec_compiled.py`` proves byte-identical output against fastavro for records
generated from every schema in ``schemas/``.

What is compiled: records, string, bytes, int, long, boolean, enum, null, arrays, maps,
``["null", X]`` unions, the decimal (bytes) and timestamp logical types, field defaults of null
or a primitive. Anything else raises :class:`Unsupported` at compile time and the codec keeps
fastavro for that schema. Errors a bad record raises here (TypeError, ValueError, KeyError,
AttributeError) are the ones the codec turns into CodecError, as for fastavro.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Context, Decimal
from typing import Any

# fastavro's own conversion of a datetime to epoch ms/us (its stub does not declare them), so a
# datetime given for a timestamp field is written as fastavro wrote it.
from fastavro._logical_writers_py import (  # type: ignore[attr-defined]
    prepare_timestamp_micros,
    prepare_timestamp_millis,
)

_PRIMITIVE = {"string", "bytes", "int", "long", "boolean", "null"}
# Varint bytes of every zigzagged value below 2**14 (two bytes): ints, lengths, array counts
# and enum indexes nearly always are, so the common case is one list index.
_TABLE_LIMIT = 1 << 14
_CTX = Context(prec=1000)  # scaleb of a <= 1000-digit coefficient is exact here


class Unsupported(Exception):
    """The schema uses something this compiler does not handle: fastavro writes it instead."""


def _varint_slow(z: int) -> bytes:
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_VARINT = [_varint_slow(z) for z in range(_TABLE_LIMIT)]


def _varint(z: int) -> bytes:
    return _VARINT[z] if z < _TABLE_LIMIT else _varint_slow(z)


def _long(n: int) -> bytes:
    """A zigzag varint (Avro int and long) of ``n``; the range check ran before encoding."""
    z = (n << 1) ^ (n >> 63)
    return _VARINT[z] if 0 <= z < _TABLE_LIMIT else _varint_slow(z)


def decimal_bytes(d: Any, scale: int, precision: int) -> Any:
    """Avro decimal bytes of ``d``, exactly as fastavro writes them (its checks, its length).

    Big-endian two's complement of the unscaled value ``d * 10**scale``, in
    ``(|unscaled|.bit_length() + 8) // 8`` bytes (fastavro sizes by the magnitude, so -128 takes
    two bytes, not one). A value that is not a Decimal passes through, as in fastavro.
    """
    if not isinstance(d, Decimal):
        return d
    _sign, digits, exp = d.as_tuple()
    if len(digits) > precision:
        raise ValueError("The decimal precision is bigger than allowed by schema")
    if not isinstance(exp, int):
        raise ValueError(f"cannot encode a non-finite decimal {d}")
    if exp + scale < 0:
        raise ValueError("Scale provided in schema does not match the decimal")
    unscaled = int(d.scaleb(scale, _CTX))
    return unscaled.to_bytes((abs(unscaled).bit_length() + 8) // 8, "big", signed=True)


class _Gen:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self.n = 0

    def var(self, stem: str) -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def const(self, value: Any) -> str:
        name = self.var("_k")
        self.consts[name] = value
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def value(self, node: Any, v: str, depth: int) -> None:
        """Lines writing the value held in variable ``v`` of schema ``node``."""
        if isinstance(node, str):
            if node not in _PRIMITIVE:
                raise Unsupported(f"named type reference {node!r}")
            self.primitive(node, v, depth)
            return
        if isinstance(node, list):
            self.union(node, v, depth)
            return
        if not isinstance(node, dict):
            raise Unsupported(f"schema node {node!r}")
        kind = node.get("type")
        logical = node.get("logicalType")
        if isinstance(kind, dict | list):
            self.value(kind, v, depth)
        elif kind == "record":
            self.record(node, v, depth)
        elif kind == "enum":
            index = self.const({s: _long(i) for i, s in enumerate(node["symbols"])})
            self.emit(depth, f"w({index}[{v}])")
        elif kind == "array":
            item = self.var("i")
            self.emit(depth, f"if len({v}):")
            self.emit(depth + 1, f"w(_long(len({v})))")
            self.emit(depth + 1, f"for {item} in {v}:")
            self.value(node["items"], item, depth + 2)
            self.emit(depth, "w(b'\\x00')")
        elif kind == "map":
            key, val = self.var("mk"), self.var("mv")
            self.emit(depth, f"if len({v}):")
            self.emit(depth + 1, f"w(_long(len({v})))")
            self.emit(depth + 1, f"for {key}, {val} in {v}.items():")
            self.primitive("string", key, depth + 2)
            self.value(node["values"], val, depth + 2)
            self.emit(depth, "w(b'\\x00')")
        elif kind == "bytes" and logical == "decimal":
            if "size" in node:
                raise Unsupported("fixed decimal")
            scale, precision = int(node.get("scale", 0)), int(node["precision"])
            self.emit(depth, f"{v} = _dec({v}, {scale}, {precision})")
            self.primitive("bytes", v, depth)
        elif kind == "long" and logical in ("timestamp-millis", "timestamp-micros"):
            prep = (
                prepare_timestamp_millis
                if logical == "timestamp-millis"
                else prepare_timestamp_micros
            )
            fn = self.const(prep)
            self.emit(depth, f"if type({v}) is not int:")
            self.emit(depth + 1, f"{v} = {fn}({v}, None)")
            self.primitive("long", v, depth)
        elif isinstance(kind, str) and kind in _PRIMITIVE and logical is None:
            self.primitive(kind, v, depth)
        else:
            raise Unsupported(f"type {kind!r} logicalType {logical!r}")

    def primitive(self, kind: str, v: str, depth: int) -> None:
        if kind == "string":
            b = self.var("b")
            self.emit(depth, f"{b} = {v}.encode()")
            self.emit(depth, f"w(_long(len({b})))")
            self.emit(depth, f"w({b})")
        elif kind == "bytes":
            self.emit(depth, f"w(_long(len({v})))")
            self.emit(depth, f"w(bytes({v}))")
        elif kind in ("int", "long"):
            self.emit(depth, f"w(_long({v}))")
        elif kind == "boolean":
            self.emit(depth, f"w(b'\\x01' if {v} else b'\\x00')")
        # null: nothing on the wire

    def union(self, branches: list[Any], v: str, depth: int) -> None:
        names = [b if isinstance(b, str) else b.get("type") for b in branches]
        if len(branches) != 2 or names.count("null") != 1:
            raise Unsupported(f"union {names!r} (only [null, X] is compiled)")
        null_at = names.index("null")
        other = branches[1 - null_at]
        self.emit(depth, f"if {v} is None:")
        self.emit(depth + 1, f"w({_long(null_at)!r})")
        self.emit(depth, "else:")
        self.emit(depth + 1, f"w({_long(1 - null_at)!r})")
        self.value(other, v, depth + 1)

    def record(self, node: dict[str, Any], r: str, depth: int) -> None:
        for f in node["fields"]:
            name, ftype = f["name"], f["type"]
            v = self.var("v")
            if "default" in f:
                default = f["default"]
                if default is not None and not isinstance(default, str | int | float | bool):
                    raise Unsupported(f"default {default!r}")
                self.emit(depth, f"{v} = {r}.get({name!r}, {default!r})")
            elif isinstance(ftype, list) and "null" in ftype:
                self.emit(depth, f"{v} = {r}.get({name!r})")  # fastavro: a missing one is null
            else:
                self.emit(depth, f"{v} = {r}[{name!r}]")
            self.value(ftype, v, depth)


def compile_writer(raw: dict[str, Any]) -> Callable[[Any], bytes]:
    """The function writing a record of the raw schema ``raw``; Unsupported if it cannot."""
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise Unsupported("top level must be a record")
    gen = _Gen()
    gen.emit(1, "out = []")
    gen.emit(1, "w = out.append")
    gen.record(raw, "r", 1)
    gen.emit(1, "return b''.join(out)")
    source = "def write(r):\n" + "\n".join(gen.lines) + "\n"
    namespace: dict[str, Any] = {"_long": _long, "_dec": decimal_bytes, **gen.consts}
    exec(compile(source, f"<avro writer {raw.get('name')}>", "exec"), namespace)
    write: Callable[[Any], bytes] = namespace["write"]
    return write
