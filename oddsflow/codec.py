"""Avro encoding of every oddsflow event, with the schema identified on the wire.

Wire format: **Avro single-object encoding** (``C3 01`` + the schema's 8-byte CRC-64-AVRO
fingerprint, little-endian, + the Avro binary body) by default, because it needs no extra
service: any consumer holding the ``schemas/`` files can resolve the writer schema from the
fingerprint. When ``ODDSFLOW_SCHEMA_REGISTRY_URL`` is set, messages use **Confluent framing**
(``00`` + 4-byte schema id) with the schemas registered under the record's full name.

Schemas live in ``schemas/<name>.v<N>.avsc``; producers write the newest version, readers
resolve any registered version into the newest one (Avro schema resolution), so adding a
field with a default is a backward-compatible change.
"""

from __future__ import annotations

import copy
import io
import json
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from oddsflow.codec_compiled import (
    Fallback,
    Unsupported,
    compile_reader,
    compile_writer,
)
from oddsflow.codec_compiled import _long as avro_long
from oddsflow.codec_compiled import _read_long_slow as avro_read_long

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
_FILE_RE = re.compile(r"^(?P<name>[a-z_]+)\.v(?P<version>\d+)\.avsc$")


class CodecError(ValueError):
    """The bytes are not a message of a known oddsflow schema, or a record does not fit one."""


# What a writer raises for a record that does not fit its schema.
_ENCODE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, ArithmeticError)


INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
_RANGES = {
    "int": (INT_MIN, INT_MAX, "int (32-bit signed)"),
    "long": (LONG_MIN, LONG_MAX, "long (64-bit signed)"),
}

# A check walks one value of a schema node and raises CodecError naming the field path.
_Check = Callable[[Any, str], None]


def _range_check(kind: str) -> _Check:
    lo, hi, what = _RANGES[kind]

    def check(value: Any, path: str) -> None:
        # fastavro writes any Python int as a varint: a value beyond the type's range becomes a
        # message that Java/Go readers refuse (int) or that no reader can hold (long).
        if type(value) is int and not lo <= value <= hi:
            raise CodecError(f"{path} = {value} is out of range for Avro {what}")

    return check


def _compile_range_check(node: Any) -> _Check | None:
    """A checker of every int/long inside ``node`` (a raw schema); None when there are none.

    Compiled once per schema so encoding pays only for the int/long fields a record has.
    """
    if isinstance(node, str):
        return _range_check(node) if node in _RANGES else None
    if isinstance(node, list):  # union: an int goes to the widest int branch present
        kinds = [b if isinstance(b, str) else b.get("type") for b in node]
        int_check = (
            _range_check("long" if "long" in kinds else "int")
            if ("long" in kinds or "int" in kinds)
            else None
        )
        others = [
            c
            for b in node
            if not (isinstance(b, str) and b in _RANGES)
            if (c := _compile_range_check(b)) is not None
        ]
        if int_check is None and not others:
            return None

        def union(value: Any, path: str) -> None:
            if type(value) is int:
                if int_check is not None:
                    int_check(value, path)
                return
            for c in others:
                c(value, path)

        return union
    if not isinstance(node, dict):
        return None
    kind = node.get("type")
    if kind == "record":
        fields = [(f["name"], c) for f in node["fields"] if (c := _compile_range_check(f["type"]))]
        if not fields:
            return None

        def record(value: Any, path: str) -> None:
            if isinstance(value, dict):
                for name, c in fields:
                    if name in value:
                        c(value[name], f"{path}.{name}")

        return record
    if kind == "array":
        item = _compile_range_check(node["items"])
        if item is None:
            return None

        def array(value: Any, path: str) -> None:
            if isinstance(value, list | tuple):
                for i, v in enumerate(value):
                    item(v, f"{path}[{i}]")

        return array
    if kind == "map":
        val = _compile_range_check(node["values"])
        if val is None:
            return None

        def mapping(value: Any, path: str) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    val(v, f"{path}[{k!r}]")

        return mapping
    if kind in _RANGES or isinstance(kind, dict | list):
        return _compile_range_check(kind)
    return None


@dataclass(frozen=True)
class SchemaVersion:
    name: str
    version: int
    raw: dict[str, Any]
    parsed: Any  # for writing (logical types: Decimal <-> decimal bytes, int ms pass through)
    read_parsed: Any  # timestamp logical types stripped so times decode as int epoch ms
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO, as single-object encoding carries it


def _strip_timestamps(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get("logicalType") in ("timestamp-millis", "timestamp-micros"):
            return {k: v for k, v in node.items() if k != "logicalType"}
        return {k: _strip_timestamps(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_strip_timestamps(v) for v in node]
    return node


def load_schema_files() -> dict[str, dict[int, dict[str, Any]]]:
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for entry in resources.files("oddsflow.schemas").iterdir():
        m = _FILE_RE.match(entry.name)
        if m:
            out.setdefault(m["name"], {})[int(m["version"])] = json.loads(entry.read_text())
    return out


class SchemaSet:
    """Every schema version, indexed by name and by fingerprint."""

    def __init__(self) -> None:
        self.by_name: dict[str, dict[int, SchemaVersion]] = {}
        self.by_fingerprint: dict[bytes, SchemaVersion] = {}
        for name, versions in load_schema_files().items():
            for version, raw in sorted(versions.items()):
                parsed = fastavro.parse_schema(copy.deepcopy(raw), _write_hint=True)
                read_parsed = fastavro.parse_schema(_strip_timestamps(copy.deepcopy(raw)))
                fp_hex = fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO")
                fp = bytes.fromhex(fp_hex)[::-1]  # the spec carries it little-endian
                sv = SchemaVersion(name, version, raw, parsed, read_parsed, fp)
                self.by_name.setdefault(name, {})[version] = sv
                self.by_fingerprint[fp] = sv

    def latest(self, name: str) -> SchemaVersion:
        try:
            versions = self.by_name[name]
        except KeyError as exc:
            raise CodecError(f"unknown schema {name!r}") from exc
        return versions[max(versions)]


_SCHEMAS: SchemaSet | None = None


def schemas() -> SchemaSet:
    global _SCHEMAS
    if _SCHEMAS is None:
        _SCHEMAS = SchemaSet()
    return _SCHEMAS


class Codec:
    """Encodes and decodes one schema family (e.g. ``bet_request``) on the wire."""

    def __init__(self, name: str, registry_url: str | None = None) -> None:
        self.set = schemas()
        self.name = name
        self.writer = self.set.latest(name)
        self._reader_read = fastavro.parse_schema(_strip_timestamps(copy.deepcopy(self.writer.raw)))
        self._range_check = _compile_range_check(self.writer.raw)
        self._write_fastavro = _fastavro_writer(self.writer.parsed)
        try:
            self._compiled: Callable[[dict[str, Any]], bytes] | None = compile_writer(
                self.writer.raw
            )
        except Unsupported:
            self._compiled = None
        try:
            self._read: Callable[[bytes], tuple[dict[str, Any], int]] | None = compile_reader(
                self.writer.raw
            )
        except Unsupported:
            self._read = None
        self._registry = _Registry(registry_url) if registry_url else None
        self._header = (
            CONFLUENT_MAGIC + struct.pack(">I", self._registry.id_for(self.writer))
            if self._registry
            else SINGLE_OBJECT_MAGIC + self.writer.fingerprint
        )

    def encode(self, record: dict[str, Any]) -> bytes:
        """The framed Avro bytes of ``record``; CodecError (with the field path) if it does not fit."""
        if self._compiled is not None:
            # The compiled writer refuses an int out of its Avro range itself (Fallback, or
            # OverflowError past 64 bits), so the range check, a walk of the whole record,
            # runs only on the way to fastavro, where it names the field.
            try:
                return self._header + self._compiled(record)
            except (Fallback, OverflowError):
                pass  # a value the compiled writer does not take: checked, then fastavro's way
            except _ENCODE_ERRORS as exc:
                raise CodecError(f"{self.name}: cannot encode record: {exc}") from exc
        if self._range_check is not None:
            self._range_check(record, self.name)
        try:
            return self._header + self._write_fastavro(record)
        except _ENCODE_ERRORS as exc:
            raise CodecError(f"{self.name}: cannot encode record: {exc}") from exc

    def encode_batch(self, items: Sequence[bytes], item: Codec) -> bytes:
        """This codec's record of one array (see :func:`batch_items_problem`), framed, from
        its ``items`` as ``item`` framed them: Avro writes an array as a block count, the
        items' bodies and a zero, so the items are encoded (and checked) once, by ``item``."""
        cut = len(item._header)
        if not items:
            return self._header + b"\x00"
        return self._header + avro_long(len(items)) + b"".join(x[cut:] for x in items) + b"\x00"

    def array_count(self, data: bytes | None) -> int:
        """The item count of a message of this codec's record of one array, without decoding
        the items: the block count that starts its body (one block, as :meth:`encode_batch`
        and fastavro write an array)."""
        _, body = self._body(data)
        try:
            return avro_read_long(body, 0)[0]
        except IndexError as exc:
            raise CodecError(f"{self.name}: corrupt Avro body: {exc!r}") from exc

    def _body(self, data: bytes | None) -> tuple[SchemaVersion, bytes]:
        """The writer of ``data``, which must be a version of this codec's schema, and the Avro
        body after its header."""
        writer = self.writer_of(data)
        if writer.name != self.name:
            raise CodecError(f"expected a {self.name} message, got {writer.name} v{writer.version}")
        return writer, data[10:] if data[:1] != CONFLUENT_MAGIC else data[5:]  # type: ignore[index]

    def decode(self, data: bytes | None) -> dict[str, Any]:
        writer, body = self._body(data)
        if writer is self.writer and self._read is not None:
            if type(body) is not bytes:  # a memoryview's slices have no .decode()
                body = bytes(body)
            try:
                record, end = self._read(body)
            except Exception as exc:  # truncated/garbled: IndexError, ValueError, Unicode...
                raise CodecError(f"{self.name}: corrupt Avro body: {exc!r}") from exc
            if end != len(body):
                raise CodecError(
                    f"{self.name}: {len(body) - end} trailing bytes after the Avro record"
                )
            return record
        reader = None if writer is self.writer else self._reader_read
        return _read_exactly(self.name, body, writer.read_parsed, reader)

    def writer_of(self, data: bytes | None) -> SchemaVersion:
        if not data:
            raise CodecError("empty message")
        if data[:2] == SINGLE_OBJECT_MAGIC:
            if len(data) < 10:
                raise CodecError("truncated single-object header")
            sv = self.set.by_fingerprint.get(bytes(data[2:10]))
            if sv is None:
                raise CodecError(f"unknown schema fingerprint {bytes(data[2:10]).hex()}")
            return sv
        if data[:1] == CONFLUENT_MAGIC and self._registry is not None and len(data) >= 5:
            return self._registry.schema_for(struct.unpack(">I", data[1:5])[0])
        raise CodecError("not an Avro single-object or Confluent-framed message (bad magic bytes)")


def _canonical(raw: Any) -> str:
    return str(to_parsing_canonical_form(fastavro.parse_schema(copy.deepcopy(raw))))


def batch_items_problem(batch_name: str, item_name: str) -> str | None:
    """Why the newest ``batch_name`` is not a record of exactly one array of the newest
    ``item_name`` (same canonical form: the same bytes per item), or None if it is: what
    :meth:`Codec.encode_batch` needs."""
    raw = schemas().latest(batch_name).raw
    fields = raw.get("fields") if raw.get("type") == "record" else None
    kind = fields[0]["type"] if fields and len(fields) == 1 else None
    if not isinstance(kind, dict) or kind.get("type") != "array":
        return f"schema {batch_name!r} is not a record of one array"
    if _canonical(kind["items"]) != _canonical(schemas().latest(item_name).raw):
        return f"the items of schema {batch_name!r} are not the newest {item_name!r}"
    return None


def _fastavro_writer(parsed: Any) -> Callable[[dict[str, Any]], bytes]:
    """fastavro's writer of a parsed schema: for schemas or values the compiled one leaves."""

    def write(record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, record)
        return buf.getvalue()

    return write


def decode_any(data: bytes) -> tuple[str, dict[str, Any]]:
    """Decode a message of any known schema (used by `oddsflow tail`)."""
    set_ = schemas()
    if data[:2] != SINGLE_OBJECT_MAGIC or len(data) < 10:
        raise CodecError("not an Avro single-object message")
    sv = set_.by_fingerprint.get(bytes(data[2:10]))
    if sv is None:
        raise CodecError(f"unknown schema fingerprint {bytes(data[2:10]).hex()}")
    return sv.name, _read_exactly(sv.name, data[10:], sv.read_parsed, None)


def _read_exactly(name: str, body: bytes, writer: Any, reader: Any) -> dict[str, Any]:
    """Decode one Avro body that must be consumed to its last byte.

    Trailing bytes are refused: a message is exactly one record, and junk after it means the
    producer framed something else (or the bytes were spliced).
    """
    buf = io.BytesIO(body)
    try:
        record = fastavro.schemaless_reader(buf, writer, reader)
    except Exception as exc:  # fastavro raises many types on truncated/garbled bodies
        raise CodecError(f"{name}: corrupt Avro body: {exc!r}") from exc
    if not isinstance(record, dict):  # every oddsflow schema is a record
        raise CodecError(f"{name}: not an Avro record")
    extra = len(body) - buf.tell()
    if extra:
        raise CodecError(f"{name}: {extra} trailing bytes after the Avro record")
    return record


def to_jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_jsonable(v) for v in value]
    return value


class _Registry:
    """Confluent Schema Registry framing (only when a registry URL is configured)."""

    def __init__(self, url: str) -> None:
        from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

        self._client = SchemaRegistryClient({"url": url})
        self._schema_cls = Schema
        self._by_id: dict[int, SchemaVersion] = {}

    def id_for(self, sv: SchemaVersion) -> int:
        subject = f"{sv.raw.get('namespace', 'io.oddsflow')}.{sv.raw['name']}"
        schema_id = self._client.register_schema(
            subject, self._schema_cls(json.dumps(sv.raw), "AVRO")
        )
        self._by_id[schema_id] = sv
        return schema_id

    def schema_for(self, schema_id: int) -> SchemaVersion:
        if schema_id not in self._by_id:
            text = self._client.get_schema(schema_id).schema_str
            if text is None:
                raise CodecError(f"schema id {schema_id} has no schema text")
            raw = json.loads(text)
            parsed = fastavro.parse_schema(copy.deepcopy(raw))
            for versions in schemas().by_name.values():
                for sv in versions.values():
                    if to_parsing_canonical_form(sv.parsed) == to_parsing_canonical_form(parsed):
                        self._by_id[schema_id] = sv
            if schema_id not in self._by_id:
                raise CodecError(f"schema id {schema_id} is not an oddsflow schema")
        return self._by_id[schema_id]
