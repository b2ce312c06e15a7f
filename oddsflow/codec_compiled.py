"""A writer and a reader compiled per schema: Python source generated once, for Avro bodies.

Why: fastavro's generic writer walks the parsed schema on every call, dispatching each field by
type and logical type (decimal fields by a per-call lookup and digit loop); a bet writes ~8
messages, so that walk was the largest item of the in-process profile. Here each schema becomes
one straight-line function (fields inlined, enum indexes and the decimal scale baked in), which
writes the same bytes: the wire format and schemas are unchanged.

The contract, proved by ``tests/test_codec_compiled.py`` against fastavro for every schema in
``schemas/`` (hypothesis): on any input the codec gives what fastavro gives, bytes for bytes and
refusal for refusal.

- The writer handles only values of the exact types the engine builds records from (``dict``,
  ``list``, ``str``, ``int``, ``bool``, ``bytes``, ``Decimal``, ``None``, int epoch ms). Any other
  value (a tuple, a bool where an int belongs, a datetime, a subclass, ...) raises
  :class:`Fallback` before anything is returned, and the codec lets fastavro write that record,
  with its coercions and its union validation, so an odd record is written or refused exactly
  as before.
- The reader reads a body written with the same schema (the codec's newest version; an older
  writer's body still goes through fastavro's schema resolution) into the dict fastavro gives,
  timestamps as int epoch ms. On a garbled body it does what fastavro's C reader does, quirks
  included: a varint longer than 64 bits wraps around as fastavro's unsigned 64-bit shift does,
  a negative enum or union index selects from the end as a Python index does, a block count of
  -2**63 is an empty block. (Refusing those instead would be stricter, but then the codec would
  refuse bodies it has always accepted; the engine's validation of the decoded record is where
  a rule-breaking value is refused.)

What is compiled: records, string, bytes, int, long, boolean, enum, null, arrays, maps,
``["null", X]`` unions, the decimal (bytes) and timestamp logical types, field defaults of null
or a primitive. Anything else raises :class:`Unsupported` at compile time and the codec keeps
fastavro for that schema.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal
from typing import Any

_PRIMITIVE = {"string", "bytes", "int", "long", "boolean", "null"}
# The exact Python type the writer accepts for each primitive (anything else: Fallback).
_TYPE_OF = {"string": "str", "bytes": "bytes", "int": "int", "long": "int", "boolean": "bool"}
# Varint bytes of every zigzagged value below 2**14 (two bytes): ints, lengths, array counts
# and enum indexes nearly always are, so the common case is one list index.
_TABLE_LIMIT = 1 << 14
# scaleb of a <= 1000-digit coefficient is exact here, at any exponent a Decimal can have
_CTX = Context(prec=1000, Emax=MAX_EMAX, Emin=MIN_EMIN)
_MASK64 = (1 << 64) - 1
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1


class Unsupported(Exception):
    """The schema uses something this compiler does not handle: fastavro writes it instead."""


class Fallback(Exception):
    """A value of a type the compiled writer does not take: fastavro writes this record."""


def _varint_slow(z: int) -> bytes:
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_VARINT = [_varint_slow(z) for z in range(_TABLE_LIMIT)]


def _long(n: int) -> bytes:
    """A zigzag varint (Avro int and long) of ``n``.

    The codec's range check refuses an out-of-range int before encoding; refusing here too
    (as fastavro's C long conversion does) keeps a value that check missed off the wire.
    """
    z = (n << 1) ^ (n >> 63)
    if 0 <= z < _TABLE_LIMIT:
        return _VARINT[z]
    last = _LAST_LONG[0]
    if last[0] == n:
        return last[1]
    if not _LONG_MIN <= n <= _LONG_MAX:
        raise OverflowError(f"{n} does not fit an Avro long")
    out = _varint_slow(z)
    _LAST_LONG[0] = (n, out)  # swapped whole: a reader on another thread never mixes two
    return out


# The last large value written and its bytes. Large values are mostly epoch-ms timestamps,
# and the records of one batch carry the same one (a settlement's created_at and settled_at).
_LAST_LONG: list[tuple[int, bytes]] = [(0, b"\x00")]


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

    def require(self, v: str, py_type: str, depth: int) -> None:
        """Fallback unless ``v`` is exactly of ``py_type`` (a subclass may act otherwise)."""
        self.emit(depth, f"if type({v}) is not {py_type}:")
        self.emit(depth + 1, "raise _Fallback")

    def value(self, node: Any, v: str, depth: int, in_union: bool = False) -> None:
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
            self.value(kind, v, depth, in_union)
        elif kind == "record":
            self.record(node, v, depth, in_union)
        elif kind == "enum":
            index = self.const({s: _long(i) for i, s in enumerate(node["symbols"])})
            self.require(v, "str", depth)
            self.emit(depth, f"w({index}[{v}])")  # KeyError: not a symbol, refused as fastavro
        elif kind == "array":
            item = self.var("i")
            self.require(v, "list", depth)
            self.emit(depth, f"if len({v}):")
            self.length(v, depth + 1)
            self.emit(depth + 1, f"for {item} in {v}:")
            self.value(node["items"], item, depth + 2)
            self.emit(depth, "w(b'\\x00')")
        elif kind == "map":
            key, val = self.var("mk"), self.var("mv")
            self.require(v, "dict", depth)
            self.emit(depth, f"if len({v}):")
            self.length(v, depth + 1)
            self.emit(depth + 1, f"for {key}, {val} in {v}.items():")
            self.primitive("string", key, depth + 2)
            self.value(node["values"], val, depth + 2)
            self.emit(depth, "w(b'\\x00')")
        elif kind == "bytes" and logical == "decimal":
            if "size" in node:
                raise Unsupported("fixed decimal")
            scale, precision = int(node.get("scale", 0)), int(node["precision"])
            # The last Decimal written here and its bytes, as one tuple (swapped whole, so a
            # reader on another thread never pairs one value with another's bytes). A result
            # settles 100,000 legs with a handful of factor objects: each is converted once.
            last = self.const([(None, b"")])
            memo = self.var("m")
            self.emit(depth, f"if type({v}) is _Decimal:")
            self.emit(depth + 1, f"{memo} = {last}[0]")
            self.emit(depth + 1, f"if {memo}[0] is {v}:")
            self.emit(depth + 2, f"{v} = {memo}[1]")
            self.emit(depth + 1, "else:")
            self.emit(depth + 2, f"{memo} = ({v}, _dec({v}, {scale}, {precision}))")
            self.emit(depth + 2, f"{last}[0] = {memo}")
            self.emit(depth + 2, f"{v} = {memo}[1]")
            self.emit(depth, f"elif type({v}) is not bytes:")  # fastavro passes bytes through
            self.emit(depth + 1, "raise _Fallback")
            self.emit(depth, f"w(_long(len({v})))")
            self.emit(depth, f"w({v})")
        elif kind == "long" and logical in ("timestamp-millis", "timestamp-micros"):
            self.primitive("long", v, depth)  # int epoch ms/us; a datetime goes to fastavro
        elif isinstance(kind, str) and kind in _PRIMITIVE and logical is None:
            self.primitive(kind, v, depth)
        else:
            raise Unsupported(f"type {kind!r} logicalType {logical!r}")

    def primitive(self, kind: str, v: str, depth: int) -> None:
        if kind == "null":
            return  # fastavro writes nothing for a null-typed value, whatever it holds
        self.require(v, _TYPE_OF[kind], depth)
        if kind == "string":
            b = self.var("b")
            self.emit(depth, f"{b} = {v}.encode()")
            self.length(b, depth)
            self.emit(depth, f"w({b})")
        elif kind == "bytes":
            self.length(v, depth)
            self.emit(depth, f"w({v})")
        elif kind in ("int", "long"):
            if kind == "int":
                # An int beyond 32 bits: fastavro would write it, readers in Java or Go would
                # refuse it. The codec's range check names the field (Codec.encode).
                self.emit(depth, f"if not -2147483648 <= {v} <= 2147483647:")
                self.emit(depth + 1, "raise _Fallback")
            z = self.var("z")
            # _long inlined for the common case (a call per int was a visible share of
            # the wallet's settlement profile): the same bytes.
            self.emit(depth, f"{z} = ({v} << 1) ^ ({v} >> 63)")
            self.emit(depth, f"w(_VARINT[{z}] if 0 <= {z} < {_TABLE_LIMIT} else _long({v}))")
        elif kind == "boolean":
            self.emit(depth, f"w(b'\\x01' if {v} else b'\\x00')")

    def length(self, v: str, depth: int) -> None:
        """Write ``len(v)`` (never negative: its zigzag is twice it)."""
        n = self.var("n")
        self.emit(depth, f"{n} = len({v})")
        self.emit(depth, f"w(_VARINT[{n} << 1] if {n} < {_TABLE_LIMIT // 2} else _long({n}))")

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
        self.value(other, v, depth + 1, in_union=True)

    def record(self, node: dict[str, Any], r: str, depth: int, in_union: bool = False) -> None:
        self.require(r, "dict", depth)
        if in_union:
            # fastavro's union check takes a "-type" key as the record's name: its business
            self.emit(depth, f"if '-type' in {r}:")
            self.emit(depth + 1, "raise _Fallback")
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
                self.emit(depth, f"{v} = {r}[{name!r}]")  # KeyError: refused, as by fastavro
            self.value(ftype, v, depth)


def compile_writer(raw: dict[str, Any]) -> Callable[[Any], bytes]:
    """The function writing a record of the raw schema ``raw``; Unsupported if it cannot.

    The function raises :class:`Fallback` for a record holding a value of a type it does not
    take (see the module docstring), before writing anything.
    """
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise Unsupported("top level must be a record")
    gen = _Gen()
    gen.emit(1, "out = []")
    gen.emit(1, "w = out.append")
    gen.record(raw, "r", 1)
    gen.emit(1, "return b''.join(out)")
    source = "def write(r):\n" + "\n".join(gen.lines) + "\n"
    namespace: dict[str, Any] = {
        "_long": _long,
        "_VARINT": _VARINT,
        "_dec": decimal_bytes,
        "_Decimal": Decimal,
        "_Fallback": Fallback,
        **gen.consts,
    }
    exec(compile(source, f"<avro writer {raw.get('name')}>", "exec"), namespace)
    write: Callable[[Any], bytes] = namespace["write"]
    return write


def _read_long_slow(b: bytes, i: int) -> tuple[int, int]:
    """A zigzag varint starting at ``b[i]``, as fastavro's C reader reads it (the one-byte case
    is inlined by the reader); IndexError if the body ends inside it.

    fastavro gathers the bits in an unsigned 64-bit integer with a shift that keeps growing; the
    machine takes the shift count modulo 64 and drops what overflows, so a garbled varint past
    64 bits wraps around instead of being refused: read here the same way.
    """
    x = b[i]
    i += 1
    n = x & 0x7F
    shift = 7
    while x & 0x80:
        x = b[i]
        i += 1
        n |= ((x & 0x7F) << (shift & 63)) & _MASK64
        shift += 7
    return (n >> 1) ^ -(n & 1), i


class _ReadGen(_Gen):
    """Lines reading one value of a schema node from ``b`` at ``i`` into a variable."""

    def long(self, v: str, depth: int) -> None:
        x = self.var("x")
        self.emit(depth, f"{x} = b[i]")
        self.emit(depth, f"if {x} < 128:")
        self.emit(depth + 1, f"{v} = ({x} >> 1) ^ -({x} & 1)")
        self.emit(depth + 1, "i += 1")
        self.emit(depth, "else:")
        self.emit(depth + 1, f"{v}, i = _rl(b, i)")

    def sized(self, v: str, depth: int) -> None:
        """``v`` = the next length-prefixed bytes (refusing a length past the end)."""
        n = self.var("n")
        self.long(n, depth)
        self.emit(depth, f"if {n} < 0 or i + {n} > len(b):")
        self.emit(depth + 1, "raise ValueError('length past the end of the body')")
        self.emit(depth, f"{v} = b[i : i + {n}]")
        self.emit(depth, f"i += {n}")

    def read(self, node: Any, v: str, depth: int) -> None:
        if isinstance(node, str):
            node = {"type": node}
        if isinstance(node, list):
            names = [b if isinstance(b, str) else b.get("type") for b in node]
            if len(node) != 2 or names.count("null") != 1:
                raise Unsupported(f"union {names!r}")
            null_at = names.index("null")
            idx = self.var("u")
            self.long(idx, depth)
            # fastavro picks the branch as a Python list index: -1 and -2 count from the end
            self.emit(depth, f"if {idx} == {null_at} or {idx} == {null_at - 2}:")
            self.emit(depth + 1, f"{v} = None")
            self.emit(depth, f"elif {idx} == {1 - null_at} or {idx} == {-1 - null_at}:")
            self.read(node[1 - null_at], v, depth + 1)
            self.emit(depth, "else:")
            self.emit(depth + 1, f"raise ValueError('union index ' + str({idx}))")
            return
        if not isinstance(node, dict):
            raise Unsupported(f"schema node {node!r}")
        kind, logical = node.get("type"), node.get("logicalType")
        if isinstance(kind, dict | list):
            self.read(kind, v, depth)
        elif kind == "record":
            names = []
            for f in node["fields"]:
                fv = self.var("f")
                self.read(f["type"], fv, depth)
                names.append(f"{f['name']!r}: {fv}")
            self.emit(depth, f"{v} = {{{', '.join(names)}}}")
        elif kind == "enum":
            symbols = self.const(tuple(node["symbols"]))
            idx = self.var("e")
            self.long(idx, depth)
            # a Python index, as fastavro's: a negative one counts from the end, IndexError past
            self.emit(depth, f"{v} = {symbols}[{idx}]")
        elif kind in ("array", "map"):
            count, item, key = self.var("c"), self.var("it"), self.var("k")
            self.emit(depth, f"{v} = {'[]' if kind == 'array' else '{}'}")
            self.emit(depth, "while True:")
            self.long(count, depth + 1)
            self.emit(depth + 1, f"if {count} == 0:")
            self.emit(depth + 2, "break")
            self.emit(depth + 1, f"if {count} < 0:")  # a block with its byte size: skip the size
            self.emit(depth + 2, f"{count} = -{count}")
            self.long(self.var("_size"), depth + 2)
            # fastavro negates in a signed 64-bit integer: -(-2**63) stays negative, no items
            self.emit(depth + 2, f"if {count} > {_LONG_MAX}:")
            self.emit(depth + 3, f"{count} = 0")
            self.emit(depth + 1, f"for _ in range({count}):")
            if kind == "array":
                self.read(node["items"], item, depth + 2)
                self.emit(depth + 2, f"{v}.append({item})")
            else:
                self.read("string", key, depth + 2)
                self.read(node["values"], item, depth + 2)
                self.emit(depth + 2, f"{v}[{key}] = {item}")
        elif kind == "bytes" and logical == "decimal":
            if "size" in node:
                raise Unsupported("fixed decimal")
            ctx = self.const(Context(prec=int(node["precision"])))
            raw = self.var("d")
            self.sized(raw, depth)
            self.emit(
                depth,
                f"{v} = {ctx}.create_decimal(int.from_bytes({raw}, 'big', signed=True))"
                f".scaleb({-int(node.get('scale', 0))}, {ctx})",
            )
        elif kind in ("int", "long") and logical in (None, "timestamp-millis", "timestamp-micros"):
            self.long(v, depth)  # timestamps are read as int epoch ms/us, as the codec wants
        elif kind == "string" and logical is None:
            raw = self.var("s")
            self.sized(raw, depth)
            self.emit(depth, f"{v} = {raw}.decode()")
        elif kind == "bytes" and logical is None:
            self.sized(v, depth)
            self.emit(depth, f"{v} = bytes({v})")
        elif kind == "boolean":
            self.emit(depth, f"{v} = b[i] != 0")  # as fastavro: any non-zero byte is true
            self.emit(depth, "i += 1")
        elif kind == "null":
            self.emit(depth, f"{v} = None")
        else:
            raise Unsupported(f"type {kind!r} logicalType {logical!r}")


def compile_reader(raw: dict[str, Any]) -> Callable[[bytes], tuple[dict[str, Any], int]]:
    """A function reading a record of ``raw`` (writer and reader alike) from a body: the record
    (timestamps as ints) and the offset where it ended; Unsupported if it cannot be compiled."""
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise Unsupported("top level must be a record")
    gen = _ReadGen()
    gen.emit(1, "i = 0")
    gen.read(raw, "rec", 1)
    gen.emit(1, "return rec, i")
    source = "def read(b):\n" + "\n".join(gen.lines) + "\n"
    namespace: dict[str, Any] = {"_rl": _read_long_slow, **gen.consts}
    exec(compile(source, f"<avro reader {raw.get('name')}>", "exec"), namespace)
    read: Callable[[bytes], tuple[dict[str, Any], int]] = namespace["read"]
    return read
