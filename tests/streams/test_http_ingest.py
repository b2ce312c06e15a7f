"""The HTTP push ingestor in-process against the REAL local Kafka (isolated topic prefix)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestClient, TestServer

from oddsflow.kafka import consume_all
from oddsflow.settings import Settings
from oddsflow.streams.http_ingest import create_app, parse_tokens, split_array
from oddsflow.streams.normalise import FeedError

TS = "2024-08-17T14:00:00+01:00"
TS_MS = 1_723_899_600_000
AUTH = {"Authorization": "Bearer demo-token"}


def test_parse_tokens_and_split_array() -> None:
    assert parse_tokens("demo:t1, csv:t2,") == {"demo": "t1", "csv": "t2"}
    with pytest.raises(ValueError):
        parse_tokens("demo")
    assert split_array(b' [ {"a": 2.10} , 3 ] ') == [
        ({"a": Decimal("2.10")}, b'{"a": 2.10}'),
        (3, b"3"),
    ]
    for bad in (b'{"a": 1}', b"[1,", b"[1] x", b"\xff"):
        with pytest.raises(FeedError):
            split_array(bad)


@pytest.fixture(scope="module")
def settings(services: Settings) -> Settings:
    from oddsflow import topology

    s = services.model_copy(
        update={
            "topic_prefix": f"t{uuid.uuid4().hex[:8]}.",
            "metrics_port": 0,
            "provider_tokens": "demo:demo-token,other:other-token",
        }
    )
    topology.apply(topology.load(settings=s), s.kafka_bootstrap)
    return s


@pytest.fixture()
async def client(settings: Settings):
    async with TestClient(TestServer(create_app(settings))) as c:
        yield c


GOOD_PRICE = {
    "kind": "price",
    "event_id": "h1",
    "market_type": "match_result",
    "period": "FT",
    "seq": 5,
    "ts": TS,
    "selections": [
        {"selection": "home", "odds": 2.10},
        {"selection": "draw", "odds": "3.40"},
        {"selection": "away", "odds": "3.60"},
    ],
}
GOOD_BET = {
    "kind": "bet",
    "bet_id": "hb1",
    "account_id": "ha1",
    "stake_minor": 1000,
    "placed_at": TS_MS,
    "price_policy": "any",
    "legs": [
        {
            "event_id": "h1",
            "market_type": "match_result",
            "period": "FT",
            "selection": "home",
            "odds": "2.00",
        }
    ],
}
BAD_ODDS = dict(
    GOOD_PRICE,
    seq=6,
    selections=[
        {"selection": "home", "odds": "0.9"},
        {"selection": "draw", "odds": "3"},
        {"selection": "away", "odds": "3"},
    ],
)
NAIVE = {
    "kind": "status",
    "event_id": "h1",
    "seq": 7,
    "status": "open",
    "ts": "2024-08-17T14:00:00",
}


@pytest.mark.integration
async def test_batch_is_validated_produced_and_dead_lettered(
    client: TestClient, settings: Settings
) -> None:
    body = (
        "["
        + ",".join(
            [
                json.dumps(GOOD_PRICE),
                json.dumps(BAD_ODDS),
                '{"kind": "goal"}',
                json.dumps(GOOD_BET),
                json.dumps(NAIVE),
            ]
        )
        + "]"
    ).encode()
    resp = await client.post("/feeds/demo/events", data=body, headers=AUTH)
    assert resp.status == 202
    payload = await resp.json()
    assert payload["accepted"] == 2 and payload["duplicates"] == 0
    reasons = {r["index"]: r["reason"] for r in payload["rejected"]}
    assert set(reasons) == {1, 2, 4}
    assert "odds" in reasons[1] and "> 1" in reasons[1]
    assert "unknown kind 'goal'" in reasons[2]
    assert "naive" in reasons[4]

    # The same batch again: the price is a duplicate seq (dropped and counted), the bet passes
    # through (its idempotency is the engine's job), the bad items are rejected again.
    resp2 = await client.post("/feeds/demo/events", data=body, headers=AUTH)
    assert resp2.status == 202
    assert (await resp2.json())["duplicates"] == 1

    prices = consume_all("price_updates", settings, expect=1, idle_s=1.5)
    assert [k for k, _ in prices] == ["h1"]
    rec = prices[0][1]
    assert (
        rec["market_id"] == "h1/match_result/FT" and rec["provider"] == "demo" and rec["seq"] == 5
    )
    assert rec["provider_ts"] == TS_MS
    assert [(s["selection"], s["odds"]) for s in rec["selections"]] == [
        ("home", Decimal("2.1000")),
        ("draw", Decimal("3.4000")),
        ("away", Decimal("3.6000")),
    ]
    bets = consume_all("bet_requests", settings, expect=2, idle_s=1.5)
    assert [k for k, _ in bets] == ["ha1", "ha1"]
    assert bets[0][1]["legs"][0]["odds"] == Decimal("2.0000") and bets[0][1]["stake_minor"] == 1000

    dead = [
        (k, d) for k, d in consume_all("dead_letters", settings, idle_s=1.5) if k == "http:demo"
    ]
    assert len(dead) == 6
    first = [d for _, d in dead[:3]]
    assert [(d["topic"], d["partition"], d["offset"]) for d in first] == [
        ("http:demo", -1, 1),
        ("http:demo", -1, 2),
        ("http:demo", -1, 4),
    ]
    assert json.loads(first[0]["value"]) == json.loads(json.dumps(BAD_ODDS))
    assert first[0]["error"] == reasons[1] and first[0]["error_type"] == "bad_odds"
    assert first[1]["error_type"] == "unknown_kind" and first[2]["error_type"] == "bad_timestamp"
    assert first[0]["stage"] == "ingest.http" and first[0]["key"] == b"h1"


@pytest.mark.integration
async def test_auth_and_bad_bodies(client: TestClient) -> None:
    body = json.dumps([GOOD_PRICE]).encode()
    assert (await client.post("/feeds/demo/events", data=body)).status == 401
    assert (
        await client.post("/feeds/demo/events", data=body, headers={"Authorization": "Basic x"})
    ).status == 401
    assert (
        await client.post("/feeds/demo/events", data=body, headers={"Authorization": "Bearer nope"})
    ).status == 403
    assert (await client.post("/feeds/nobody/events", data=body, headers=AUTH)).status == 403
    # another provider's token is not valid for this provider
    assert (
        await client.post(
            "/feeds/demo/events", data=body, headers={"Authorization": "Bearer other-token"}
        )
    ).status == 403
    r = await client.post("/feeds/demo/events", data=b'{"kind": "price"}', headers=AUTH)
    assert r.status == 400 and "JSON array" in (await r.json())["error"]
    r = await client.post("/feeds/demo/events", data=b"[1, 2", headers=AUTH)
    assert r.status == 400
    r = await client.post(
        "/feeds/other/events",
        data=json.dumps([NAIVE, {"kind": "x"}]).encode(),
        headers={"Authorization": "Bearer other-token"},
    )
    assert r.status == 400
    assert [x["index"] for x in (await r.json())["rejected"]] == [0, 1]


@pytest.mark.integration
async def test_healthz_and_metrics(client: TestClient) -> None:
    r = await client.get("/healthz")
    assert r.status == 200 and (await r.json())["status"] == "ok"
    r = await client.get("/metrics")
    assert r.status == 200
    text = await r.text()
    assert "oddsflow_ingested_total" in text and "oddsflow_ingest_rejected_total" in text


@pytest.mark.integration
def test_replay_and_simulate_produce_to_kafka(settings: Settings) -> None:
    from oddsflow.streams.simulate import simulate

    s = settings.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:8]}."})
    from oddsflow import topology

    topology.apply(topology.load(settings=s), s.kafka_bootstrap)
    counts = simulate(s, fixtures=2, accounts=3, bets=10, seed=5)
    assert counts["fixtures"] == 2
    fixtures = consume_all("fixtures", s, expect=2, idle_s=1.0)
    assert sorted(k for k, _ in fixtures) == ["sim5-e000", "sim5-e001"]
    bets = consume_all("bet_requests", s, expect=counts["bet_requests"], idle_s=1.0)
    assert len(bets) == counts["bet_requests"]


# --------------------------------------------------------------------------- issue 10: limits


@pytest.fixture()
async def fresh_client(kafka_settings: Settings):
    async with TestClient(TestServer(create_app(kafka_settings))) as c:
        yield c, kafka_settings


def _price(seq: int, event_id: str = "h9") -> dict:
    return dict(GOOD_PRICE, seq=seq, event_id=event_id)


@pytest.mark.integration
async def test_an_item_over_the_size_limit_is_refused_alone_and_the_answer_says_what_landed(
    fresh_client,
) -> None:
    client, s = fresh_client
    big = dict(_price(2), padding="x" * 1_100_000)  # over Kafka's 1 MB message limit
    big_bad = {"kind": "goal", "padding": "y" * 1_100_000}  # its dead letter would be too
    body = json.dumps([_price(1), big, GOOD_BET, big_bad, _price(3)]).encode()
    resp = await client.post("/feeds/demo/events", data=body, headers=AUTH)
    assert resp.status == 202
    payload = await resp.json()
    assert payload["accepted_indexes"] == [0, 2, 4] and payload["accepted"] == 3
    assert payload["duplicate_indexes"] == []
    assert [(r["index"], r["code"]) for r in payload["rejected"]] == [
        (1, "item_too_large"),
        (3, "item_too_large"),
    ]
    assert "over the 262144-byte item limit" in payload["rejected"][0]["reason"]

    assert [r["seq"] for _, r in consume_all("price_updates", s, expect=2, idle_s=1.0)] == [1, 3]
    dead = {d["offset"]: d for _, d in consume_all("dead_letters", s, expect=2, idle_s=1.0)}
    assert set(dead) == {1, 3}
    assert len(dead[3]["value"]) == s.ingest_item_max_bytes and "truncated" in dead[3]["error"]
    assert dead[3]["error_type"] == "item_too_large"

    # only over-large items: nothing landed, 413 with the reasons
    resp = await client.post("/feeds/demo/events", data=json.dumps([big]).encode(), headers=AUTH)
    assert resp.status == 413
    assert (await resp.json())["rejected"][0]["code"] == "item_too_large"


@pytest.mark.integration
async def test_deeply_nested_json_is_a_400_with_a_reason(fresh_client) -> None:
    client, _ = fresh_client
    deep = b"[" + b"[" * 5_000 + b"]" * 5_000 + b"]"
    resp = await client.post("/feeds/demo/events", data=deep, headers=AUTH)
    assert resp.status == 400
    payload = await resp.json()
    assert "nested too deeply" in payload["error"] and payload["accepted"] == 0

    nested: object = 1
    for _ in range(40):
        nested = {"a": nested}
    body = json.dumps([dict(_price(1), extra=nested), _price(2)]).encode()
    resp = await client.post("/feeds/demo/events", data=body, headers=AUTH)
    assert resp.status == 202
    payload = await resp.json()
    assert payload["accepted_indexes"] == [1]
    assert payload["rejected"][0]["code"] == "too_deep"
    assert (await client.get("/healthz")).status == 200


@pytest.mark.integration
@pytest.mark.parametrize(
    "header",
    [
        "Bearer démo-tökén".encode(),
        "Bearer démo".encode("latin-1"),
        b"Bearer \xff\xfe",
    ],
)
async def test_a_non_ascii_bearer_token_is_a_401(kafka_settings: Settings, header: bytes) -> None:
    status, payload = await _raw_post(kafka_settings, [b"Authorization: " + header])
    assert status == 401
    assert "malformed bearer token" in payload["error"]


async def _raw_post(s: Settings, headers: list[bytes], body: bytes = b"[]") -> tuple[int, dict]:
    """POST with exact header bytes (aiohttp's client would re-encode them)."""
    import asyncio

    from aiohttp import web

    runner = web.AppRunner(create_app(s))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /feeds/demo/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + b"".join(h + b"\r\n" for h in headers)
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        raw = await reader.read()
        writer.close()
    finally:
        await runner.cleanup()
    head, _, payload = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


@pytest.mark.integration
async def test_content_encodings(fresh_client) -> None:
    import gzip
    import zlib

    client, s = fresh_client
    plain = json.dumps([_price(1)]).encode()
    resp = await client.post(
        "/feeds/demo/events", data=plain, headers={**AUTH, "Content-Encoding": "gzip"}
    )
    assert resp.status == 400
    assert "not valid gzip" in (await resp.json())["error"]

    resp = await client.post(
        "/feeds/demo/events",
        data=gzip.compress(plain),
        headers={**AUTH, "Content-Encoding": "gzip"},
    )
    assert resp.status == 202 and (await resp.json())["accepted_indexes"] == [0]
    resp = await client.post(
        "/feeds/demo/events",
        data=zlib.compress(json.dumps([_price(2)]).encode()),
        headers={**AUTH, "Content-Encoding": "deflate"},
    )
    assert resp.status == 202 and (await resp.json())["accepted"] == 1

    resp = await client.post(
        "/feeds/demo/events",
        data=gzip.compress(plain)[:-6],
        headers={**AUTH, "Content-Encoding": "gzip"},
    )
    assert resp.status == 400 and "truncated" in (await resp.json())["error"]
    resp = await client.post(
        "/feeds/demo/events", data=plain, headers={**AUTH, "Content-Encoding": "br"}
    )
    assert resp.status == 415 and "unsupported Content-Encoding" in (await resp.json())["error"]
    # a small gzip bomb: 20 KB that inflates past the body limit
    bomb = gzip.compress(b"[" + b" " * (s.ingest_body_max_bytes + 10) + b"]")
    assert len(bomb) < 100_000
    resp = await client.post(
        "/feeds/demo/events", data=bomb, headers={**AUTH, "Content-Encoding": "gzip"}
    )
    assert resp.status == 413 and "decompressed body larger" in (await resp.json())["error"]
    assert (await client.get("/healthz")).status == 200


@pytest.mark.integration
async def test_body_and_item_count_limits_are_settings(kafka_settings: Settings) -> None:
    s = kafka_settings.model_copy(update={"ingest_body_max_bytes": 1_000, "ingest_items_max": 2})
    async with TestClient(TestServer(create_app(s))) as client:
        resp = await client.post(
            "/feeds/demo/events", data=b"[" + b" " * 2_000 + b"]", headers=AUTH
        )
        assert resp.status == 413 and "larger than 1000 bytes" in (await resp.json())["error"]
        resp = await client.post("/feeds/demo/events", data=b"[1,2,3]", headers=AUTH)
        assert resp.status == 413 and "at most 2 items" in (await resp.json())["error"]


def test_the_endpoint_refuses_the_built_in_tokens_outside_dev_mode() -> None:
    from oddsflow.settings import DEV_PROVIDER_TOKENS
    from oddsflow.streams.http_ingest import IngestConfigError

    with pytest.raises(IngestConfigError, match="built-in provider tokens"):
        create_app(Settings(env="prod", provider_tokens=DEV_PROVIDER_TOKENS))
    with pytest.raises(IngestConfigError, match=r"built-in provider tokens \(x\)"):
        create_app(Settings(env="prod", provider_tokens="x:sim-token,y:s3cr3t-y"))
    create_app(Settings(env="prod", provider_tokens="x:s3cr3t-x"))  # real secrets: fine
    create_app(Settings(env="dev", provider_tokens=DEV_PROVIDER_TOKENS))
    with pytest.raises(IngestConfigError, match="ISO 4217"):
        create_app(Settings(env="dev", accepted_currencies="GBP,ABC"))
    with pytest.raises(IngestConfigError, match="printable ASCII"):
        create_app(Settings(env="dev", provider_tokens="x:tök"))


def test_the_cli_says_so_in_one_line() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("ODDSFLOW_")}
    env["ODDSFLOW_ENV"] = "prod"
    proc = subprocess.run(
        [sys.executable, "-m", "oddsflow.cli", "ingest-http", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "ODDSFLOW_ENV=dev" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
