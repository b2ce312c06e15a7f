"""Quota state and messages as plain records, for the tables (``processors.state.Store``: JSON
dicts) and for Kafka, so the wallet and market agents only convert and call ``domain.quota``.

Tables: an account partition keeps its :class:`~oddsflow.domain.quota.Quotas` one record per
(currency, market) (key ``quota:{partition}|{currency}|{market_id}``: the selections' amounts of
that market), so a bet reads and writes only its own market's few amounts; an event partition
keeps one :class:`~oddsflow.domain.quota.QuotaBook` per market (key: the market id). Messages: grants and recalls go event -> account partition, returns
and spends account -> event partition. A grant or recall must land on one *partition*, not one
account: :func:`partition_key` gives a stable key that hashes there (murmur2, as every producer
of this system partitions), so the ordinary keyed emit can send it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

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
from oddsflow.processors.emit import key_partition

_SEP = "\x1f"  # market ids contain "/", selections are plain words: a separator neither has


def quotas_key(partition: int, currency: str, market_id: str) -> str:
    # Per market: one record holding every market of a partition was decoded and re-encoded
    # whole by every bet (the top own functions of the ceiling's profile, 2026-12-01).
    # Per currency: liability in pounds never covers a bet in yen.
    return f"quota:{partition}|{currency}|{market_id}"


# Sequence numbers of the quota messages, so that a redelivered one is harmless. Grants and
# recalls go event -> account partition, returns account -> event partition, each channel in
# order (one partition of one topic). The sender numbers its messages per channel from 1 and
# the receiver applies one only if its number is above the last it applied: a message read
# again after a crash whose state it had already changed (the input offset behind the
# committed table) is dropped instead of granting or returning the same quota twice. Exactly
# once makes that replay impossible by itself; this keeps a flaw there from moving liability.
# The numbers live in records of their own, kept when a market is settled or its quota spent
# (numbering restarting at 1 would make the receiver drop every later message).


def event_seq_key(market_id: str, currency: str) -> str:
    """Event side (liabilities table): {"sent": {partition: n}, "applied": {partition: n}},
    grants and recalls sent to each account partition, returns learned from it."""
    return f"qseq|{market_id}|{currency}"


def account_seq_key(partition: int, currency: str, market_id: str) -> str:
    """Account side (quotas table): {"applied": n, "sent": n}, the grants and recalls it
    applied, the returns it sent."""
    return f"qseq:{partition}|{currency}|{market_id}"


def is_fresh(seq: int | None, applied: int) -> bool:
    """Whether a message numbered ``seq`` is still to be applied after ``applied``; a message
    without a number (written before they were sent) always is."""
    return seq is None or seq > applied


def legacy_quotas_key(partition: int, currency: str) -> str:
    """The key of the record that held every market of (partition, currency) before the
    per-market records: read once, split by :func:`split_legacy_record`, then deleted."""
    return f"quota:{partition}|{currency}"


def quotas_record(q: Quotas, market_id: str) -> dict[str, Any]:
    """``market_id``'s amounts of ``q`` (the other markets' live in their own records)."""
    return {
        "partition": q.partition,
        "market_id": market_id,
        "amounts": {s: v for (m, s), v in sorted(q.amounts.items()) if m == market_id},
    }


def quotas_from_record(rec: dict[str, Any] | None, partition: int, market_id: str) -> Quotas:
    """The :class:`Quotas` of one market (empty if it has no record)."""
    if rec is None:
        return Quotas(partition)
    amounts = {(market_id, s): int(v) for s, v in rec["amounts"].items()}
    return Quotas(int(rec["partition"]), amounts)


def split_legacy_record(rec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A whole-partition record (``amounts`` keyed ``market<US>selection``) as per-market
    records, {market_id: record}."""
    by_market: dict[str, dict[str, int]] = {}
    for key, v in rec["amounts"].items():
        m, s = key.split(_SEP)
        by_market.setdefault(m, {})[s] = int(v)
    partition = int(rec["partition"])
    return {
        m: {"partition": partition, "market_id": m, "amounts": dict(sorted(amounts.items()))}
        for m, amounts in sorted(by_market.items())
    }


def _liability_record(liab: Liability) -> dict[str, Any]:
    return {"stakes_minor": liab.stakes_minor, "returns_minor": dict(liab.returns_minor)}


def _liability(rec: dict[str, Any]) -> Liability:
    return Liability(int(rec["stakes_minor"]), {k: int(v) for k, v in rec["returns_minor"].items()})


def book_record(b: QuotaBook) -> dict[str, Any]:
    return {
        "market_id": b.market_id,
        "liability": _liability_record(b.liability),
        "outstanding": [[p, s, v] for (p, s), v in sorted(b.outstanding.items())],
        "recalling": b.recalling,
        "parked": [auth_request_record(r) for r in b.parked],
    }


def book_from_record(rec: dict[str, Any] | None, market_id: str) -> QuotaBook:
    if rec is None:
        return QuotaBook(market_id)
    return QuotaBook(
        market_id=rec["market_id"],
        liability=_liability(rec["liability"]),
        outstanding={(int(p), s): int(v) for p, s, v in rec["outstanding"]},
        recalling=bool(rec["recalling"]),
        parked=tuple(auth_request_from_record(r) for r in rec["parked"]),
    )


# ------------------------------------------------------------------ messages


def grant_record(g: Grant) -> dict[str, Any]:
    return {
        "kind": "grant",
        "market_id": g.market_id,
        "selection": g.selection,
        "partition": g.partition,
        "amount_minor": g.amount_minor,
    }


def recall_record(r: Recall) -> dict[str, Any]:
    return {
        "kind": "recall",
        "market_id": r.market_id,
        "selection": None,
        "partition": r.partition,
        "amount_minor": 0,
    }


def return_record(r: Return) -> dict[str, Any]:
    return {
        "kind": "return",
        "market_id": r.market_id,
        "selection": r.selection,
        "partition": r.partition,
        "amount_minor": r.amount_minor,
    }


def quota_message(rec: dict[str, Any]) -> Grant | Recall | Return:
    """A grant / recall / return record back as its domain message (ValueError if unknown)."""
    kind = rec["kind"]
    if kind == "grant":
        return Grant(
            rec["market_id"], rec["selection"], int(rec["partition"]), int(rec["amount_minor"])
        )
    if kind == "recall":
        return Recall(rec["market_id"], int(rec["partition"]))
    if kind == "return":
        return Return(
            rec["market_id"], rec["selection"], int(rec["partition"]), int(rec["amount_minor"])
        )
    raise ValueError(f"unknown quota message kind {kind!r}")


def spend_record(s: Spend) -> dict[str, Any]:
    return {
        "bet_id": s.bet_id,
        "market_id": s.market_id,
        "selection": s.selection,
        "partition": s.partition,
        "stake_minor": s.stake_minor,
        "return_minor": s.return_minor,
    }


def spend_from_record(rec: dict[str, Any]) -> Spend:
    return Spend(
        rec["bet_id"],
        rec["market_id"],
        rec["selection"],
        int(rec["partition"]),
        int(rec["stake_minor"]),
        int(rec["return_minor"]),
    )


def auth_request_record(r: AuthRequest) -> dict[str, Any]:
    return spend_record(
        Spend(r.bet_id, r.market_id, r.selection, r.partition, r.stake_minor, r.return_minor)
    )


def auth_request_from_record(rec: dict[str, Any]) -> AuthRequest:
    s = spend_from_record(rec)
    return AuthRequest(
        s.bet_id, s.market_id, s.selection, s.partition, s.stake_minor, s.return_minor
    )


def auth_verdict_record(v: AuthVerdict) -> dict[str, Any]:
    return {
        "bet_id": v.bet_id,
        "partition": v.partition,
        "reason": None if v.reason is None else v.reason.name,
    }


def auth_verdict_from_record(rec: dict[str, Any]) -> AuthVerdict:
    reason = rec["reason"]
    return AuthVerdict(
        rec["bet_id"], int(rec["partition"]), None if reason is None else RejectReason[reason]
    )


@cache
def partition_key(partition: int, partitions: int) -> str:
    """A stable message key that lands on ``partition`` of a ``partitions``-partition topic."""
    if not 0 <= partition < partitions:
        raise ValueError(f"partition {partition} not in 0..{partitions - 1}")
    n = 0
    while key_partition(f"quota-{partition}-{n}".encode(), partitions) != partition:
        n += 1
    return f"quota-{partition}-{n}"
