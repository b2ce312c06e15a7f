"""Quota state and messages survive the record round trip the tables and topics put them through."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oddsflow.domain.acceptance import Liability, RejectReason
from oddsflow.domain.quota import (
    AuthRequest,
    AuthVerdict,
    Grant,
    QuotaBook,
    Quotas,
    Recall,
    Return,
    Spend,
)
from oddsflow.processors import quota_records as qr
from oddsflow.processors.emit import key_partition

mids = st.sampled_from(
    ["e1/match_result/FT", "e2/asian_handicap/FT/-0.25", "e3/total_goals/1H/2.5"]
)
sels = st.sampled_from(["home", "draw", "away", "over", "2-1"])
minor = st.integers(0, 10**12)


def _json(rec: dict[str, object]) -> dict[str, object]:
    # what Store.put / Store.get do to a value
    return orjson.loads(orjson.dumps(rec, default=str))  # type: ignore[no-any-return]


@given(st.integers(0, 63), mids, st.dictionaries(st.tuples(mids, sels), st.integers(1, 10**9)))
def test_quotas_round_trip_one_market(
    partition: int, mid: str, amounts: dict[tuple[str, str], int]
) -> None:
    # A record holds one market's amounts: the other markets' are in their own records.
    q = Quotas(partition, amounts)
    mine = Quotas(partition, {k: v for k, v in amounts.items() if k[0] == mid})
    assert qr.quotas_from_record(_json(qr.quotas_record(q, mid)), partition, mid) == mine
    assert qr.quotas_from_record(None, partition, mid) == Quotas(partition)


@given(st.integers(0, 63), st.dictionaries(st.tuples(mids, sels), st.integers(1, 10**9)))
def test_a_legacy_whole_partition_record_splits_into_its_markets(
    partition: int, amounts: dict[tuple[str, str], int]
) -> None:
    legacy = {
        "partition": partition,
        "amounts": {f"{m}\x1f{s}": v for (m, s), v in amounts.items()},
    }
    split = qr.split_legacy_record(_json(legacy))
    assert set(split) == {m for m, _ in amounts}
    back: dict[tuple[str, str], int] = {}
    for mid, rec in split.items():
        back.update(qr.quotas_from_record(_json(rec), partition, mid).amounts)
    assert back == amounts


auth_st = st.builds(
    AuthRequest, st.text(min_size=1, max_size=8), mids, sels, st.integers(0, 63), minor, minor
)


@given(
    mids,
    minor,
    st.dictionaries(sels, st.integers(-(10**9), 10**9)),
    st.dictionaries(st.tuples(st.integers(0, 63), sels), st.integers(1, 10**9)),
    st.booleans(),
    st.lists(auth_st, max_size=3),
)
def test_book_round_trip(
    mid: str,
    stakes: int,
    returns: dict[str, int],
    outstanding: dict[tuple[int, str], int],
    recalling: bool,
    parked: list[AuthRequest],
) -> None:
    b = QuotaBook(mid, Liability(stakes, returns), outstanding, recalling, tuple(parked))
    assert qr.book_from_record(_json(qr.book_record(b)), mid) == b
    assert qr.book_from_record(None, mid) == QuotaBook(mid)


@pytest.mark.parametrize(
    "msg",
    [
        Grant("e1/match_result/FT", "home", 3, 500),
        Recall("e1/match_result/FT", 2),
        Return("m", "x", 0, 7),
    ],
)
def test_quota_messages_round_trip(msg: Grant | Recall | Return) -> None:
    rec = (
        qr.grant_record(msg)
        if isinstance(msg, Grant)
        else qr.recall_record(msg)
        if isinstance(msg, Recall)
        else qr.return_record(msg)
    )
    assert qr.quota_message(_json(rec)) == msg


def test_unknown_quota_message_kind() -> None:
    with pytest.raises(ValueError, match="unknown quota message"):
        qr.quota_message({"kind": "bribe"})


@given(st.builds(Spend, st.text(min_size=1), mids, sels, st.integers(0, 63), minor, minor), auth_st)
def test_spend_and_request_round_trip(s: Spend, r: AuthRequest) -> None:
    assert qr.spend_from_record(_json(qr.spend_record(s))) == s
    assert qr.auth_request_from_record(_json(qr.auth_request_record(r))) == r


@pytest.mark.parametrize("reason", [None, RejectReason.LIABILITY_MARKET])
def test_verdict_round_trip(reason: RejectReason | None) -> None:
    v = AuthVerdict("b1", 3, reason)
    assert qr.auth_verdict_from_record(_json(qr.auth_verdict_record(v))) == v


@pytest.mark.parametrize("partitions", [1, 4, 12])
def test_partition_key_lands_on_its_partition(partitions: int) -> None:
    keys = [qr.partition_key(p, partitions) for p in range(partitions)]
    assert [key_partition(k.encode(), partitions) for k in keys] == list(range(partitions))
    assert qr.partition_key(0, partitions) == keys[0]  # stable
    with pytest.raises(ValueError):
        qr.partition_key(partitions, partitions)
