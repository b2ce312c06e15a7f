"""The demo's API client: it bounds its requests in flight and times them honestly."""

from __future__ import annotations

import asyncio

import httpx

from oddsflow.api.client import ApiClient

BODY = {"legs": [], "stake_minor": 100, "currency": "GBP", "price_policy": "exact"}


def test_in_flight_is_bounded_and_latency_excludes_the_client_backlog() -> None:
    in_flight = 0
    peak = 0

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return httpx.Response(201, json={"bet_id": request.headers["Idempotency-Key"]})

    client = ApiClient("http://api.test", lambda acct: f"token-{acct}", connections=4)
    try:
        client._run(client.client.aclose())  # replaced by one whose transport answers here
        client.client = client._run(_mock_client(answer))
        for i in range(40):
            client.submit("acct-1", f"bet-{i}", BODY)
        answers = client.results(timeout_s=30)
    finally:
        client.close()

    assert peak == 4
    assert sorted(a.bet_id or "" for a in answers) == sorted(f"bet-{i}" for i in range(40))
    # 40 requests over 4 slots of 50 ms: the last ones wait ~450 ms for a slot, yet each one's
    # own latency is its 50 ms on the wire, not that wait.
    assert max(a.latency_s for a in answers) < 0.3
    assert max(a.queued_s for a in answers) > 0.3
    assert min(a.queued_s for a in answers) < 0.05


async def _mock_client(handler: object) -> httpx.AsyncClient:
    transport = httpx.MockTransport(handler)  # type: ignore[arg-type]
    return httpx.AsyncClient(base_url="http://api.test", transport=transport)
