"""POST /v1/bets and the reads, over real HTTP against the real stack (Kafka, worker, Postgres)."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal

import httpx
import jwt
import pytest

from oddsflow.api.settings import DEV_JWT_SECRET
from oddsflow.domain.money import payout_minor
from oddsflow.domain.pricing import Method, price
from tests.api.conftest import Stack, auth, token, wait_market
from tests.conftest import wait_for
from tests.processors import records as r

pytestmark = pytest.mark.integration

HOME = price(
    [Decimal("2.10"), Decimal("3.40"), Decimal("3.60")], Decimal("0.05"), Method.PROPORTIONAL
).odds[0]


def _body(
    event_id: str = "e1", odds: object = None, stake_minor: int = 10_00, **extra: object
) -> dict[str, object]:
    return {
        "legs": [
            {
                "event_id": event_id,
                "market_type": "match_result",
                "period": "FT",
                "selection": "home",
                "odds": str(HOME) if odds is None else odds,
            }
        ],
        "stake_minor": stake_minor,
        "currency": "GBP",
        "price_policy": "none",
        **extra,
    }


@pytest.fixture(scope="module")
def api(stack: Stack) -> str:
    url = stack.start_api("a", decision_wait_ms=20_000)
    for acct in ("alice", "bob", "carol", "dave"):
        stack.deposit(acct, 1_000_00)
    stack.open_market("e1")
    stack.open_market("live", in_play=True)
    wait_market(url, "e1")
    wait_market(url, "live")
    return url


def _post(url: str, account: str, body: object, key: str | None, **headers: str) -> httpx.Response:
    h = {**auth(account), **headers}
    if key is not None:
        h["Idempotency-Key"] = key
    return httpx.post(f"{url}/v1/bets", json=body, headers=h, timeout=30)


def test_accepted_placement_answers_201_with_bound_odds_and_return(api: str) -> None:
    resp = _post(api, "alice", _body(), "k-accept")
    assert resp.status_code == 201, resp.text
    bet = resp.json()
    assert bet["status"] == "accepted"
    assert [Decimal(o) for o in bet["bound_odds"]] == [HOME]
    assert bet["potential_return_minor"] == payout_minor(10_00, HOME)
    assert resp.headers["Location"] == f"/v1/bets/{bet['bet_id']}"
    assert bet["bet_id"].startswith("api-")
    assert resp.headers["X-Request-ID"]

    # The read model (the sink's projection) shows it, and the wallet holds the stake.
    got = wait_for(
        lambda: (
            (g := httpx.get(f"{api}/v1/bets/{bet['bet_id']}", headers=auth("alice")).json())
            and g["status"] == "accepted"
            and g
        ),
        60,
        what="accepted bet in the read model",
    )
    assert got["stake_minor"] == 10_00
    open_bets = httpx.get(f"{api}/v1/bets?status=open", headers=auth("alice")).json()["bets"]
    assert bet["bet_id"] in [b["bet_id"] for b in open_bets]
    assert httpx.get(f"{api}/v1/bets?status=settled", headers=auth("alice")).json()["bets"] == []
    wallet = wait_for(
        lambda: (
            (w := httpx.get(f"{api}/v1/wallet", headers=auth("alice")).json())
            and w["available_minor"] == 990_00
            and w
        ),
        60,
        what="wallet after the stake",
    )
    assert wallet["balance_minor"] == wallet["available_minor"] + wallet["reserved_minor"]


def test_rejected_placement_answers_422_with_the_engines_reason(api: str) -> None:
    resp = _post(api, "alice", _body(odds="9.99"), "k-reject")
    assert resp.status_code == 422, resp.text
    err = resp.json()["error"]
    assert err["code"] == "PRICE_CHANGED"
    assert "odds changed" in err["message"]
    assert resp.json()["bet"]["status"] == "rejected"

    poor = _post(api, "alice", _body(stake_minor=5_000_00), "k-too-much")
    assert poor.status_code == 422 and poor.json()["error"]["code"] == "INSUFFICIENT_FUNDS"


def test_in_play_placement_is_pending_then_decided(api: str, stack: Stack) -> None:
    stack.refresh_market("live")  # a live feed keeps the in-play price fresh
    resp = _post(api, "bob", _body(event_id="live"), "k-live", Prefer="wait=1")
    assert resp.status_code == 202, resp.text
    bet = resp.json()
    assert bet["status"] == "pending"
    loc = resp.headers["Location"]
    assert httpx.get(f"{api}{loc}", headers=auth("bob")).json()["status"] in ("pending", "accepted")
    decided = wait_for(
        lambda: (
            (g := httpx.get(f"{api}{loc}", headers=auth("bob")).json())["status"] != "pending" and g
        ),
        60,
        what="the in-play bet decided after its delay",
    )
    assert decided["status"] == "accepted"


def test_sequential_retries_with_one_key_make_one_bet(api: str, stack: Stack) -> None:
    first = _post(api, "carol", _body(stake_minor=7_00), "k-retry")
    again = [_post(api, "carol", _body(stake_minor=7_00), "k-retry") for _ in range(3)]
    assert first.status_code == 201
    assert {(a.status_code, a.json()["bet_id"]) for a in again} == {(201, first.json()["bet_id"])}
    # The stake is reserved once: the wallet moved by one stake.
    wait_for(
        lambda: (
            httpx.get(f"{api}/v1/wallet", headers=auth("carol")).json()["available_minor"] == 993_00
        ),
        60,
        what="one stake off carol's wallet",
    )
    bets = httpx.get(f"{api}/v1/bets", headers=auth("carol")).json()["bets"]
    assert [b["bet_id"] for b in bets] == [first.json()["bet_id"]]


async def test_concurrent_requests_with_one_key_make_one_bet(api: str) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        h = {**auth("dave"), "Idempotency-Key": "k-concurrent"}
        answers = await asyncio.gather(
            *(
                client.post(f"{api}/v1/bets", json=_body(stake_minor=3_00), headers=h)
                for _ in range(8)
            )
        )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["bet_id"] for a in answers}) == 1
    wait_for(
        lambda: (
            httpx.get(f"{api}/v1/wallet", headers=auth("dave")).json()["available_minor"] == 997_00
        ),
        60,
        what="one stake off dave's wallet",
    )
    assert len(httpx.get(f"{api}/v1/bets", headers=auth("dave")).json()["bets"]) == 1


def test_same_key_with_another_body_is_refused(api: str) -> None:
    assert _post(api, "alice", _body(stake_minor=2_00), "k-reuse").status_code == 201
    resp = _post(api, "alice", _body(stake_minor=3_00), "k-reuse")
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "idempotency_key_reused"
    # The same key under another account is another bet, not a reuse.
    other = _post(api, "bob", _body(stake_minor=3_00), "k-reuse")
    assert other.status_code == 201


def test_missing_idempotency_key_is_400(api: str) -> None:
    resp = _post(api, "alice", _body(), None)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "idempotency_key_missing"


def test_another_accounts_bet_is_not_readable(api: str) -> None:
    bet = _post(api, "alice", _body(stake_minor=1_00), "k-private").json()
    assert httpx.get(f"{api}/v1/bets/{bet['bet_id']}", headers=auth("bob")).status_code == 404
    assert httpx.get(f"{api}/v1/bets/{bet['bet_id']}", headers=auth("alice")).status_code == 200
    forbidden = httpx.get(f"{api}/v1/wallet?account_id=alice", headers=auth("bob"))
    assert forbidden.status_code == 403
    # An operator reads any account.
    op = auth("ops-1", operator=True)
    assert httpx.get(f"{api}/v1/bets/{bet['bet_id']}", headers=op).status_code == 200
    assert (
        httpx.get(f"{api}/v1/wallet?account_id=alice", headers=op).json()["account_id"] == "alice"
    )


def _forged(claims: dict[str, object], key: str = DEV_JWT_SECRET, alg: str = "HS256") -> str:
    base = {"sub": "alice", "iss": "oddsflow", "aud": "oddsflow-api", "exp": int(time.time()) + 600}
    return jwt.encode({**base, **claims}, key, algorithm=alg)


def _alg_none() -> str:
    import base64
    import json

    def b64(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    claims = {
        "sub": "alice",
        "iss": "oddsflow",
        "aud": "oddsflow-api",
        "exp": int(time.time()) + 600,
    }
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer not-a-jwt",
        f"Bearer {_forged({'exp': int(time.time()) - 3600})}",
        f"Bearer {_forged({}, key='x' * 40)}",
        f"Bearer {_alg_none()}",
        f"Bearer {_forged({'aud': 'someone-else'})}",
        f"Basic {_forged({})}",
    ],
    ids=[
        "missing",
        "garbage",
        "expired",
        "wrong-signature",
        "alg-none",
        "wrong-audience",
        "not-bearer",
    ],
)
def test_bad_tokens_get_401(api: str, header: str | None) -> None:
    h = {"Idempotency-Key": "k-auth"}
    if header is not None:
        h["Authorization"] = header
    for resp in (
        httpx.post(f"{api}/v1/bets", json=_body(), headers=h),
        httpx.get(f"{api}/v1/wallet", headers=h),
    ):
        assert resp.status_code == 401, resp.text
        assert resp.json()["error"]["code"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**_body(), "bet_id": "mine"}, "bet_id"),
        ({**_body(), "stake_minor": "lots"}, "stake_minor"),
        (_body(odds="1.00"), "legs[0].odds"),
        (_body(odds="abc"), "legs[0].odds"),
        ({**_body(), "legs": _body()["legs"] * 21}, "legs"),  # type: ignore[operator]
        ({**_body(), "legs": []}, "legs"),
        ({**_body(), "legs": [{**_body()["legs"][0], "colour": "red"}]}, "legs[0].colour"),  # type: ignore[index]
        ({**_body(), "legs": [{**_body()["legs"][0], "selection": "nobody"}]}, "legs[0].selection"),  # type: ignore[index]
        ({**_body(), "price_policy": "sometimes"}, "price_policy"),
        ([1, 2], None),
    ],
    ids=[
        "bet_id",
        "stake-type",
        "odds-1",
        "odds-text",
        "21-legs",
        "no-legs",
        "unknown-leg-field",
        "selection",
        "policy",
        "not-object",
    ],
)
def test_malformed_bodies_get_422_naming_the_field(
    api: str, body: object, field: str | None
) -> None:
    resp = _post(api, "alice", body, f"k-bad-{uuid.uuid4().hex[:6]}")
    assert resp.status_code == 422, resp.text
    err = resp.json()["error"]
    assert err["code"] == "validation_error"
    if field is not None:
        assert err["field"] == field, err
        assert field.split(".")[-1].split("[")[0] in err["message"]


def test_body_too_large_is_413(api: str) -> None:
    h = {**auth("alice"), "Idempotency-Key": "k-big", "Content-Type": "application/json"}
    resp = httpx.post(f"{api}/v1/bets", content=b"{" + b" " * 20_000 + b"}", headers=h)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "body_too_large"


def test_events_and_markets_are_served_from_the_book(api: str) -> None:
    events = httpx.get(f"{api}/v1/events", headers=auth("alice")).json()["events"]
    e1 = next(e for e in events if e["event_id"] == "e1")
    assert e1["home"] == "e1-home" and e1["markets"] == 1 and not e1["in_play"]
    markets = httpx.get(f"{api}/v1/events/e1/markets", headers=auth("alice")).json()["markets"]
    assert markets[0]["market_id"] == "e1/match_result/FT"
    assert Decimal({s["selection"]: s["odds"] for s in markets[0]["selections"]}["home"]) == HOME
    assert httpx.get(f"{api}/v1/events/nope/markets", headers=auth("alice")).status_code == 404


def test_openapi_documents_routes_statuses_and_errors(api: str) -> None:
    doc = httpx.get(f"{api}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path in (
        "/v1/bets",
        "/v1/bets/{bet_id}",
        "/v1/wallet",
        "/v1/events",
        "/v1/events/{event_id}/markets",
    ):
        assert path in paths
    assert set(paths["/v1/bets"]["post"]["responses"]) >= {
        "201",
        "202",
        "400",
        "401",
        "413",
        "422",
        "429",
        "503",
    }
    assert "BetIn" in str(paths["/v1/bets"]["post"]["requestBody"]) or "legs" in str(
        paths["/v1/bets"]["post"]["requestBody"]
    )
    assert "ErrorCode" in doc["components"]["schemas"] or "ErrorOut" in doc["components"]["schemas"]


def test_request_id_is_echoed(api: str) -> None:
    resp = httpx.get(f"{api}/v1/events", headers={**auth("alice"), "X-Request-ID": "req-123"})
    assert resp.headers["X-Request-ID"] == "req-123"


def test_token_cli_prints_only_the_token() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "oddsflow.cli", "api", "token", "alice"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "ODDSFLOW_ENV": "dev"},
        check=True,
    ).stdout
    assert out.count("\n") == 1
    claims = jwt.decode(out.strip(), DEV_JWT_SECRET, algorithms=["HS256"], audience="oddsflow-api")
    assert claims["sub"] == "alice"
    assert token("x")


def test_settlement_and_resettlement_revisions_are_readable(api: str, stack: Stack) -> None:
    stack.open_market("s1")
    wait_market(api, "s1")
    bet = _post(api, "alice", _body(event_id="s1", stake_minor=4_00), "k-settle").json()
    stack.send("results", "s1", r.result("s1", (2, 1), (1, 0)))

    def state(want: str) -> dict[str, object] | None:
        got = httpx.get(f"{api}/v1/bets/{bet['bet_id']}", headers=auth("alice")).json()
        return got if got["status"] == want else None

    won = wait_for(lambda: state("settled"), 90, what="the bet settled")
    assert won["outcome"] == "win" and won["return_minor"] == payout_minor(4_00, HOME)
    assert [s["revision"] for s in won["settlements"]] == [0]
    settled = httpx.get(f"{api}/v1/bets?status=settled", headers=auth("alice")).json()["bets"]
    assert bet["bet_id"] in [b["bet_id"] for b in settled]
    # A corrected result: a new revision, the previous return kept in the history.
    stack.send("results", "s1", r.result("s1", (0, 1), (0, 0), revision=1, seq=101))
    lost = wait_for(lambda: state("resettled"), 90, what="the bet resettled")
    assert lost["outcome"] == "lose" and lost["return_minor"] == 0
    revs = lost["settlements"]
    assert [s["revision"] for s in revs] == [0, 1]
    assert revs[1]["previous_return_minor"] == payout_minor(4_00, HOME)
