"""The adapter against the real Kafka: replay, the HTTP endpoint, dead letters."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oddsflow.kafka import consume_all
from oddsflow.streams.uof.adapter import UofAdapter
from oddsflow.streams.uof.parse import UofError
from oddsflow.streams.uof.replay import replay
from oddsflow.streams.uof.sink import UofSink

from .conftest import MATCH, match_messages
from .test_parse import _MALFORMED

pytestmark = pytest.mark.integration

TOPICS = (
    "fixtures",
    "price_updates",
    "market_status",
    "scores",
    "provider_settlements",
    "provider_cancels",
)


def expected_records(
    messages: list[bytes], alive_timeout_ms: int = 20_000
) -> dict[str, list[tuple[str, dict]]]:
    adapter = UofAdapter(alive_timeout_ms=alive_timeout_ms)
    out: dict[str, list[tuple[str, dict]]] = {t: [] for t in TOPICS}
    for data in messages:
        try:
            tr = adapter.handle(data)
        except UofError:
            continue  # dead-lettered
        for o in tr.records:
            out[o.topic_key].append((o.key, o.record))
    return out


def read_all(s, expected: dict[str, list]) -> dict[str, list[tuple[str, dict]]]:
    return {t: consume_all(t, s, expect=len(expected[t]), idle_s=1.0, timeout_s=60) for t in TOPICS}


def test_replay_puts_the_match_on_kafka(kafka_settings):
    s = kafka_settings
    counts = replay(s, MATCH)
    assert counts["dead_letters"] == 0
    assert counts["bet_settlement"] == 2 and counts["odds_change"] == 2
    expected = expected_records([data for _, data in match_messages()])
    got = read_all(s, expected)
    for topic in TOPICS:
        assert sorted(got[topic], key=lambda kr: kr[1]["seq"]) == sorted(
            expected[topic], key=lambda kr: kr[1]["seq"]
        ), topic
    assert len(got["provider_settlements"]) == 6 and len(got["provider_cancels"]) == 2


def test_a_file_that_is_not_usable_goes_to_the_dead_letters(kafka_settings, tmp_path: Path):
    s = kafka_settings
    (tmp_path / "a_bomb.xml").write_bytes(
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><alive product="1" timestamp="&a;"/>'
    )
    (tmp_path / "b_ok.xml").write_bytes(b'<alive product="1" timestamp="1764590400000"/>')
    counts = replay(s, tmp_path)
    assert counts["dead_letters"] == 1 and counts["alive"] == 1
    (dl,) = consume_all("dead_letters", s, expect=1, idle_s=1.0)
    key, rec = dl
    assert key == "file:a_bomb.xml" and rec["stage"] == "ingest.uof"
    assert rec["error_type"] == "xml_dtd" and "DTD" in rec["error"]
    assert rec["value"].startswith(b"<?xml")


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(_MALFORMED, min_size=1, max_size=4))
def test_malformed_messages_always_yield_a_dead_letter_with_a_reason(kafka_settings, batch):
    sink = UofSink(kafka_settings)
    handled = [sink.handle(data, "test:hypothesis", i) for i, data in enumerate(batch)]
    sink.flush()
    rejected = [h for h in handled if h.translation is None]
    assert all(h.reason and h.code for h in rejected)
    if rejected:
        dls = [
            rec
            for _, rec in consume_all("dead_letters", kafka_settings, idle_s=0.5, timeout_s=30)
            if rec["topic"] == "test:hypothesis"
        ]
        mine = [d for d in dls if d["value"] in batch]
        assert len(mine) >= len(rejected) and all(d["error"] for d in mine)


async def _client(s):
    from oddsflow.streams.http_ingest import create_app

    app = create_app(s)  # the feed endpoint serves /feeds/{provider}/uof itself
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_post_uof_takes_one_message_or_several(kafka_settings):
    s = kafka_settings
    token = {"Authorization": "Bearer demo-token"}
    client = await _client(s)
    try:
        assert (await client.post("/feeds/demo/uof", data=b"<alive/>")).status == 401
        bad = await client.post(
            "/feeds/demo/uof", data=b"<a/>", headers={"Authorization": "Bearer nope"}
        )
        assert bad.status == 403
        msgs = dict(match_messages())
        one = await client.post("/feeds/demo/uof", data=msgs["01_fixture.xml"], headers=token)
        assert one.status == 202 and (await one.json())["records"] == 1
        batch = (
            b"<uof_messages>"
            + msgs["03_odds_change_prematch.xml"].split(b"?>", 1)[1]
            + b'<bet_stop product="3" event_id="sr:match:1/2" timestamp="1764590402000"/>'
            + b"</uof_messages>"
        )
        resp = await client.post("/feeds/demo/uof", data=batch, headers=token)
        body = await resp.json()
        assert resp.status == 202 and body["accepted"] == 1
        assert body["rejected"][0]["index"] == 1 and "URN" in body["rejected"][0]["reason"]
        bomb = await client.post(
            "/feeds/demo/uof", data=b'<!DOCTYPE a [<!ENTITY b "c">]><alive/>', headers=token
        )
        assert bomb.status == 400 and "DTD" in (await bomb.json())["error"]
    finally:
        await client.close()
    prices = consume_all("price_updates", s, expect=9, idle_s=1.0)
    assert len(prices) == 9 and {r["provider"] for _, r in prices} == {"sportradar"}
    dls = consume_all("dead_letters", s, expect=2, idle_s=1.0)
    assert sorted(r["error_type"] for _, r in dls) == ["bad_field", "xml_dtd"]
