"""Schema evolution: each version of a schema can read data written with the previous one."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import fastavro
import pytest

from oddsflow.codec import load_schema_files, schemas

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
REQUIRED = {
    "fixture",
    "price_update",
    "market_status",
    "score",
    "result",
    "priced_market",
    "bet_request",
    "bet_decision",
    "settlement",
    "ledger_transaction",
    "dead_letter",
}


def _sample(schema):
    """A datum for any schema, built from the schema itself (no hand-written fixtures)."""
    from decimal import Decimal

    def gen(t, names):
        if isinstance(t, list):
            return gen(next(x for x in t if x != "null"), names)
        if isinstance(t, str):
            return (
                {
                    "string": "x",
                    "long": 7,
                    "int": 3,
                    "boolean": True,
                    "bytes": b"\x01",
                    "double": 1.5,
                    "float": 1.5,
                    "null": None,
                }.get(t)
                if t in ("string", "long", "int", "boolean", "bytes", "double", "float", "null")
                else gen(names[t], names)
            )
        if t.get("logicalType") == "decimal":
            return Decimal("1.5")
        kind = t["type"]
        if kind == "record":
            names[t["name"]] = t
            return {f["name"]: gen(f["type"], names) for f in t["fields"]}
        if kind == "enum":
            names[t["name"]] = t
            return t["symbols"][0]
        if kind == "array":
            return [gen(t["items"], names)]
        return gen(kind, names)

    return gen(schema, {})


def test_every_canonical_event_has_a_schema():
    assert set(load_schema_files()) >= REQUIRED


def test_schemas_use_integer_money_and_millis_timestamps():
    for path in SCHEMA_DIR.glob("*.avsc"):
        text = path.read_text()
        doc = json.loads(text)
        assert '"double"' not in text and '"float"' not in text, (
            f"{path.name}: money/odds must not be floating point"
        )
        for f in doc["fields"]:
            if f["name"].endswith("_minor"):
                assert f["type"] == "long", f"{path.name}:{f['name']}"
            if f["name"] in (
                "placed_at",
                "decided_at",
                "settled_at",
                "created_at",
                "provider_ts",
                "kickoff",
                "failed_at",
            ):
                assert f["type"] == {"type": "long", "logicalType": "timestamp-millis"}, (
                    f"{path.name}:{f['name']}"
                )


@pytest.mark.parametrize("name", sorted(load_schema_files()))
def test_each_version_reads_the_previous_version(name):
    versions = sorted(schemas().by_name[name].items())
    for (_, old), (_, new) in itertools.pairwise(versions):
        datum = _sample(json.loads(json.dumps(old.raw)))
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, old.parsed, datum)
        buf.seek(0)
        fastavro.schemaless_reader(
            buf, old.parsed, new.parsed
        )  # raises SchemaResolutionError if not compatible
    # Every version must at least round-trip its own sample.
    for _, sv in versions:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, sv.parsed, _sample(json.loads(json.dumps(sv.raw))))


def test_an_incompatible_change_would_be_caught():
    old = schemas().by_name["bet_request"][1]
    broken = json.loads(json.dumps(old.raw))
    broken["fields"].append(
        {"name": "promo_code", "type": "string"}
    )  # no default: not backward compatible
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, old.parsed, _sample(json.loads(json.dumps(old.raw))))
    buf.seek(0)
    with pytest.raises(fastavro.read.SchemaResolutionError):
        fastavro.schemaless_reader(buf, old.parsed, fastavro.parse_schema(broken))
