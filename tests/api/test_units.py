"""The API's pure parts: token buckets, the stream's bounded queue and conflation, body rules."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oddsflow.api.protection import InFlight, TokenBuckets, retry_after_header
from oddsflow.api.stream import Connection
from oddsflow.api.validation import BodyError, bet_id_for, body_fingerprint, parse_body, to_request


def test_a_bucket_allows_its_burst_then_says_when_to_retry() -> None:
    b = TokenBuckets(rate_per_s=2.0, burst=3)
    assert [b.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = b.take("a", now=0.0)
    assert wait == pytest.approx(0.5)
    assert retry_after_header(wait) == "1"
    assert b.take("a", now=0.5) == 0.0  # one token refilled
    assert b.take("b", now=0.0) == 0.0  # buckets are per key


@given(st.lists(st.floats(min_value=0, max_value=0.2), min_size=1, max_size=200))
def test_a_bucket_never_grants_more_than_burst_plus_refill(gaps: list[float]) -> None:
    b = TokenBuckets(rate_per_s=10.0, burst=5)
    now, granted = 0.0, 0
    for g in gaps:
        now += g
        granted += b.take("k", now=now) == 0.0
    assert granted <= 5 + 10.0 * now + 1e-9


def test_buckets_memory_is_bounded() -> None:
    b = TokenBuckets(rate_per_s=1.0, burst=1, max_keys=100)
    for i in range(1_000):
        b.take(f"k{i}", now=0.0)
    assert len(b._buckets) == 100


def test_in_flight_cap() -> None:
    f = InFlight(2)
    assert f.try_enter() and f.try_enter() and not f.try_enter()
    f.leave()
    assert f.try_enter()


def _conn(queue_max: int = 10, conflate_after: int = 3) -> Connection:
    return Connection(
        ws=None, account_id="a", queue_max=queue_max, stall_max_s=5.0, conflate_after=conflate_after
    )  # type: ignore[arg-type]


def _market(mid: str, version: int) -> dict[str, Any]:
    return {"type": "market", "market_id": mid, "event_id": mid.split("/")[0], "version": version}


def test_a_client_that_keeps_up_gets_every_version() -> None:
    c = _conn(conflate_after=3)
    for v in (1, 2):
        assert c.push(_market("e/m", v), "e/m")
    assert [m["version"] for m, _ in c.queue.values()] == [1, 2]


def test_a_client_behind_gets_conflated_updates_in_order() -> None:
    c = _conn(queue_max=10, conflate_after=2)
    c.push({"type": "decision"})
    c.push(_market("e/m", 1), "e/m")
    for v in range(2, 50):
        assert c.push(_market("e/m", v), "e/m")
    versions = [m["version"] for m, _ in c.queue.values() if m["type"] == "market"]
    assert versions == [49]  # the waiting update was replaced in place, never a backlog
    assert len(c.queue) == 2


def test_a_queue_full_of_other_messages_overflows() -> None:
    c = _conn(queue_max=3, conflate_after=100)
    assert all(c.push({"type": "decision"}) for _ in range(3))
    assert not c.push({"type": "decision"})
    assert len(c.queue) == 3  # memory stays bounded


@given(st.lists(st.sampled_from(["e/a", "e/b", "e/c", None]), max_size=300))
def test_queue_never_exceeds_its_bound_and_versions_only_grow(kinds: list[str | None]) -> None:
    c = _conn(queue_max=8, conflate_after=4)
    for version, k in enumerate(kinds, start=1):
        if not c.push(_market(k, version) if k else {"type": "decision"}, k):
            break
        assert len(c.queue) <= 8
    seen: dict[str, int] = {}
    for m, _ in c.queue.values():
        if m["type"] == "market":
            assert m["version"] > seen.get(m["market_id"], 0)
            seen[m["market_id"]] = m["version"]


def _body(**kw: Any) -> bytes:
    import orjson

    base = {
        "legs": [
            {"event_id": "e1", "market_type": "match_result", "selection": "home", "odds": "2.10"}
        ],
        "stake": "10.00",
    }
    return orjson.dumps({**base, **kw})


def test_the_bet_id_depends_on_account_and_key() -> None:
    assert bet_id_for("a", "k") == bet_id_for("a", "k")
    assert bet_id_for("a", "k") != bet_id_for("b", "k")
    assert bet_id_for("a", "k").startswith("api-") and len(bet_id_for("a", "k")) == 28


def test_stake_and_stake_minor_are_the_same_body() -> None:
    def rec(raw: bytes, t: int) -> dict[str, Any]:
        return to_request(parse_body(raw), account_id="a", bet_id="b", placed_at_ms=t)

    one = rec(_body(), 1_767_225_600_000)
    two = rec(_body(stake=None, stake_minor=1000), 1_767_225_700_000)
    assert one["stake_minor"] == two["stake_minor"] == 1000
    assert body_fingerprint(one) == body_fingerprint(two)
    assert body_fingerprint(one) != body_fingerprint(rec(_body(stake="10.01"), 1_767_225_600_000))


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"{not json", None),
        (_body(stake="10.001"), "stake"),
        (_body(currency="gbp"), "currency"),
        (
            _body(
                legs=[
                    {
                        "event_id": "e/1",
                        "market_type": "match_result",
                        "selection": "home",
                        "odds": "2",
                    }
                ]
            ),
            "legs[0].event_id",
        ),
        (
            _body(
                legs=[
                    {
                        "event_id": "e1",
                        "market_type": "total_goals",
                        "selection": "over",
                        "odds": "2",
                    }
                ]
            ),
            "legs[0].line",
        ),
    ],
)
def test_body_errors_name_the_field(raw: bytes, field: str | None) -> None:
    with pytest.raises(BodyError) as info:
        to_request(parse_body(raw), account_id="a", bet_id="b", placed_at_ms=1_767_225_600_000)
    assert info.value.field == field


def test_a_token_subject_must_be_an_account_id() -> None:
    import time

    import jwt

    from oddsflow.api.auth import AuthError, Verifier
    from oddsflow.api.settings import DEV_JWT_SECRET, ApiSettings

    v = Verifier(ApiSettings(jwt_secret=DEV_JWT_SECRET))  # type: ignore[arg-type]
    claims = {"iss": "oddsflow", "aud": "oddsflow-api", "exp": int(time.time()) + 60}
    assert v.verify(jwt.encode({**claims, "sub": "a1"}, DEV_JWT_SECRET)).account_id == "a1"
    # "|" would let account "a|k" + key "x" and account "a" + key "k|x" share a bet id.
    for bad in ("a|k", "a/b", "a b", ""):
        with pytest.raises(AuthError):
            v.verify(jwt.encode({**claims, "sub": bad}, DEV_JWT_SECRET))


def test_every_engine_reject_reason_has_a_message() -> None:
    from oddsflow.api.models import REJECT_REASONS
    from oddsflow.api.readmodel import REJECT_MESSAGES

    assert "PRICE_CHANGED" in REJECT_REASONS
    assert set(REJECT_REASONS) == set(REJECT_MESSAGES)
