"""Fuzzing the feed endpoint: a real server on a loopback port, producing to the REAL Kafka.

For every generated request the endpoint must answer with a reason (4xx and a JSON body saying
why) or accept (2xx, naming exactly which items landed), never a 5xx, and stay alive. At the
end, what the answers said landed is what is on the topics: every accepted item is one record
on its input topic and every rejected one a dead letter.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from oddsflow import topology
from oddsflow.kafka import consume_all
from oddsflow.settings import Settings
from oddsflow.streams.http_ingest import create_app
from oddsflow.streams.normalise import KIND_TOPICS

pytestmark = pytest.mark.integration

TOKEN = "fuzz-s3cret"
TS = "2024-08-17T14:00:00+01:00"


class _Server:
    """The ingest app served by aiohttp on 127.0.0.1:<random port>, in its own thread."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._run, name="fuzz-ingest", daemon=True)
        self.thread.start()
        assert self.ready.wait(60), "ingest server did not start"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(create_app(self.s))
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = self.runner.addresses[0][1]
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(60)
        self.loop.close()

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, bytes] | None = None
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.putrequest(method, path)
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            raw = resp.read()
            ctype = resp.getheader("Content-Type", "")
        finally:
            conn.close()
        payload = json.loads(raw) if ctype.startswith("application/json") else raw
        return resp.status, payload


@pytest.fixture(scope="module")
def fuzz_settings(services: Settings) -> Settings:
    s = services.model_copy(
        update={
            "topic_prefix": f"t{uuid.uuid4().hex[:8]}.",
            "metrics_port": 0,
            "env": "prod",  # real tokens: the production code path
            "provider_tokens": f"fuzz:{TOKEN}",
            "ingest_item_max_bytes": 64 * 1024,
            "ingest_body_max_bytes": 512 * 1024,
        }
    )
    topology.apply(topology.load(settings=s), s.kafka_bootstrap)
    return s


@pytest.fixture(scope="module")
def server(fuzz_settings: Settings) -> Iterator[_Server]:
    srv = _Server(fuzz_settings)
    yield srv
    srv.stop()


AUTH = {"Authorization": f"Bearer {TOKEN}".encode()}
LANDED: Counter[str] = Counter()  # what the answers said: topic key -> items accepted
REJECTED = [0]

# --------------------------------------------------------------------------- items

LEG = {"event_id": "f1", "market_type": "match_result", "selection": "home", "odds": "2.0"}
TEMPLATES: list[dict[str, Any]] = [
    {
        "kind": "fixture",
        "event_id": "f1",
        "seq": 1,
        "competition": "EPL",
        "home": "A",
        "away": "B",
        "kickoff": TS,
        "ts": TS,
    },
    {
        "kind": "price",
        "event_id": "f1",
        "market_type": "total_goals",
        "line": "2.5",
        "seq": 1,
        "ts": TS,
        "selections": [{"selection": "over", "odds": "1.9"}, {"selection": "under", "odds": 2}],
    },
    {"kind": "status", "event_id": "f1", "seq": 1, "status": "open", "ts": TS},
    {"kind": "score", "event_id": "f1", "seq": 1, "home": 1, "away": 0, "ts": TS},
    {"kind": "result", "event_id": "f1", "seq": 1, "ft": "2-1", "revision": 0, "ts": TS},
    {
        "kind": "bet",
        "bet_id": "b1",
        "account_id": "a1",
        "stake": "10.50",
        "placed_at": TS,
        "legs": [LEG],
    },
    {"kind": "deposit", "ref": "d1", "account_id": "a1", "amount_minor": 500, "ts": TS},
]

_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12
) | st.sampled_from(
    ["", "x|y", "a/b", "\x00", "1_000", "2_0", "\u0661\u0660", "NaN", "1e999999999", "-0.25", "GBP"]
)
_SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([2**31, 2**40, 2**63, -1, 0, 10**12 + 1])
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
_JSON = st.recursive(
    _SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)
_SEQ = st.integers(min_value=0, max_value=2**62)


@st.composite
def items(draw: st.DrawFn) -> Any:
    """A valid item of some kind, mutated a little (or not at all), or any JSON value."""
    if draw(st.integers(0, 9)) == 0:
        return draw(_JSON)
    item = json.loads(json.dumps(draw(st.sampled_from(TEMPLATES))))
    item["seq"] = draw(_SEQ)  # fresh seqs, so valid ones are mostly produced, not de-duplicated
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["set", "drop", "add", "leg"]))
        if action == "set":
            item[draw(st.sampled_from(sorted(item)))] = draw(_JSON)
        elif action == "drop" and item:
            item.pop(draw(st.sampled_from(sorted(item))))
        elif action == "add":
            item[draw(_TEXT)] = draw(_JSON)
        elif action == "leg" and item.get("kind") == "bet":
            n = draw(st.sampled_from([0, 2, 21, 300]))
            item["legs"] = [dict(LEG, event_id=f"f{i}") for i in range(n)]
    if draw(st.integers(0, 19)) == 0:
        item["padding"] = "p" * draw(st.sampled_from([60_000, 70_000, 200_000]))
    return item


def _dumps(value: Any) -> bytes:
    return json.dumps(value, default=str).encode()


def _check_answer(status: int, payload: Any, n_items: int | None) -> None:
    event(f"HTTP {status}")
    assert status < 500, (status, payload)
    assert isinstance(payload, dict), (status, payload)
    if "error" in payload:  # refused as a whole: a reason, and nothing landed
        event(f"body refused: {payload.get('code')}")
        assert 400 <= status < 500 and payload["error"] and payload["accepted"] == 0
        return
    # answered per item: exactly which landed, which were duplicates, which were refused and why
    landed, dups = payload["accepted_indexes"], payload["duplicate_indexes"]
    refused = [r["index"] for r in payload["rejected"]]
    assert all(r["reason"] and r["code"] for r in payload["rejected"])
    for r in payload["rejected"]:
        event(f"item refused: {r['code']}")
    assert payload["accepted"] == len(landed) and payload["duplicates"] == len(dups)
    if n_items is not None:
        assert sorted(landed + dups + refused) == list(range(n_items))
    assert (status == 202) == bool(landed or dups), (status, payload)
    assert status in (202, 400, 413)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(items(), min_size=1, max_size=6))
def test_any_batch_of_items_is_answered_with_reasons_never_a_5xx(server: _Server, batch) -> None:
    body = _dumps(batch)
    status, payload = server.request("POST", "/feeds/fuzz/events", body, AUTH)
    _check_answer(status, payload, len(batch))
    if "error" not in payload:
        REJECTED[0] += len(payload["rejected"])
        for i in payload["accepted_indexes"]:
            LANDED[KIND_TOPICS[batch[i].get("kind", batch[i].get("type"))]] += 1


# --------------------------------------------------------------------------- whole bodies


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, bytes]]:
    shape = draw(
        st.sampled_from(["json", "bytes", "truncated", "deep", "array_of_json", "huge", "empty"])
    )
    if shape == "json":
        body = _dumps(draw(_JSON))
    elif shape == "bytes":
        body = draw(st.binary(max_size=200))
    elif shape == "truncated":
        full = _dumps([json.loads(json.dumps(t)) for t in TEMPLATES])
        body = full[: draw(st.integers(0, len(full)))]
    elif shape == "deep":
        depth = draw(st.sampled_from([17, 900, 1_000, 5_000, 50_000]))
        opener = draw(st.sampled_from([b"[", b'{"a":']))
        closer = b"]" if opener == b"[" else b"}"
        body = b"[" + opener * depth + b"1" + closer * depth + b"]"
    elif shape == "array_of_json":
        body = _dumps(draw(st.lists(_JSON, max_size=5)))
    elif shape == "huge":
        body = b"[" + b" " * 600_000 + b"]"  # over the 512 KiB body limit
    else:
        body = b""
    headers = dict(AUTH)
    encoding = draw(
        st.sampled_from(
            [None, None, "gzip", "gzip", "deflate", "br", "identity", "gzip, gzip", "x"]
        )
    )
    if encoding is not None:
        headers["Content-Encoding"] = encoding.encode()
        if draw(st.booleans()):  # really encoded, or (the bug) a plain body labelled encoded
            if encoding == "gzip":
                body = gzip.compress(body)
            elif encoding == "deflate":
                body = zlib.compress(body)
            elif encoding == "gzip, gzip":
                body = gzip.compress(gzip.compress(body))
    if draw(st.integers(0, 3)) == 0:  # a quarter of the requests with a bad Authorization
        auth = draw(
            st.sampled_from(
                [
                    None,
                    b"Bearer",
                    b"Bearer ",
                    b"Basic abc",
                    b"Bearer wrong",
                    "Bearer fuzz-s3cr\u00e9t".encode(),
                    "Bearer \u00e9\u00e8".encode("latin-1"),
                    b"Bearer \xff\xfe\xfd",
                ]
            )
        )
        if auth is None:
            headers.pop("Authorization")
        else:
            headers["Authorization"] = auth
    return body, headers


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies())
def test_any_body_and_headers_are_answered_with_a_reason_never_a_5xx(
    server: _Server, request_: tuple[bytes, dict[str, bytes]]
) -> None:
    body, headers = request_
    status, payload = server.request("POST", "/feeds/fuzz/events", body, headers)
    _check_answer(status, payload, None)
    if "error" not in payload:
        REJECTED[0] += len(payload["rejected"])
        assert payload["accepted"] == 0 or headers.get("Authorization") == AUTH["Authorization"]


def test_the_endpoint_is_alive_and_the_answers_match_what_landed(
    server: _Server, fuzz_settings: Settings
) -> None:
    """Runs after the fuzzers (file order): what they were told landed is on the topics."""
    assert server.request("GET", "/healthz") == (200, {"status": "ok"})
    assert sum(LANDED.values()) > 0, "the item fuzzer accepted nothing: it tests too little"
    for topic_key in sorted(set(KIND_TOPICS.values())):
        records = consume_all(topic_key, fuzz_settings, expect=LANDED[topic_key], idle_s=0.5)
        assert len(records) == LANDED[topic_key], topic_key
        assert all("__undecodable__" not in r for _, r in records)
    dead = consume_all("dead_letters", fuzz_settings, expect=REJECTED[0], idle_s=0.5)
    assert len(dead) == REJECTED[0]
