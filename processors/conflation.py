"""Conflation of the pricing agent's batches: price only the newest update of each market.

Under load one batch holds many updates of one market. Pricing each does the same work N times
and publishes N-1 prices that are stale before they leave. ``plan`` decodes and validates the
batch's price updates once and asks the pure ``domain.conflate.conflate`` which to price; the
agent prices the kept ones (re-using the decoded records) and counts the rest
(``oddsflow_price_updates_conflated_total``); every offset of the batch commits with it.

Order: an update is only ever superseded by a later one of the same market with no other event
of the same sporting event between them (a status, score, fixture or result of the event is a
barrier: the updates on either side of it are conflated separately). Events of other sporting
events touch other state, so the handler sees, per event, what it would have seen one by one
minus the superseded prices. An update that fails to decode or validate is never conflated: it
goes its usual way to the dead-letter topic.

Price updates arrive in batch messages (``price_updates`` is a topic of batches,
``processors.batched``): ``expand`` lays a batch of events out as units, one per item of a batch
message and one per other message, and the plan is made over the units, so the updates of a
market in many messages of a batch conflate as if each had been a message of its own. An
item's sporting event is its own ``event_id`` (a batch message is keyed by its first item's).

If the kept update of a market is then refused by the handler (say its prices cannot be priced),
the updates it superseded are handled in arrival order right after it, as handling the batch
one by one would have: the market keeps the newest price that is valid (``Plan.superseded_by``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from oddsflow.domain.conflate import conflate

PRICE_UPDATES = "price_updates"


@dataclass(frozen=True)
class Unit:
    """One record of an agent's batch: a message, or one item of a batch message."""

    event: Any  # the Faust event it arrived in
    key: Any  # its sporting event: the message key, or (an item) its event_id as bytes
    topic: str  # topology key of the topic it arrived on
    record: dict[str, Any] | None = None  # an item, decoded; None: the message is decoded later


# An event whose batch message did not decode: the normal path dead-letters it whole.
UNDECODABLE = (-1, -1)


def expand(
    events: Sequence[Any],
    topic_key: Callable[[Any], str],
    items_of: Callable[[str, Any], list[dict[str, Any]] | None],
) -> tuple[list[Unit], list[tuple[int, int]]]:
    """The units of ``events`` and, per event, the range of its units (``UNDECODABLE`` if its
    batch message does not decode). ``items_of(key, event)``: the items of a batch message,
    None for a topic that does not carry batches; it raises on a message it cannot decode."""
    units: list[Unit] = []
    spans: list[tuple[int, int]] = []
    for event in events:
        key = topic_key(event)
        try:
            items = items_of(key, event)
        except Exception:  # the normal path dead-letters it with its reason
            spans.append(UNDECODABLE)
            continue
        start = len(units)
        if items is None:
            units.append(Unit(event, event.key, key))
        else:
            for item in items:
                ev = item.get("event_id")
                units.append(
                    Unit(event, ev.encode() if isinstance(ev, str) else event.key, key, item)
                )
        spans.append((start, len(units)))
    return units, spans


@dataclass
class Plan:
    """Indexes into the batch: the decoded price updates, the ones to skip, and per kept index
    the indexes it superseded (in arrival order)."""

    decoded: dict[int, dict[str, Any]] = field(default_factory=dict)
    skip: frozenset[int] = frozenset()
    superseded_by: dict[int, tuple[int, ...]] = field(default_factory=dict)


def plan(
    events: Sequence[Any],
    topic_key: Callable[[Any], str],
    decode: Callable[[str, Any], dict[str, Any]],
) -> Plan:
    """The conflation plan of one batch. ``decode(key, event)`` decodes and validates (raising
    on a bad record, which is then left to the normal path)."""
    barrier: dict[Any, int] = {}  # sporting event (message key) -> barriers seen so far
    candidates: list[tuple[int, tuple[Any, ...], int]] = []  # (index, market key, seq)
    decoded: dict[int, dict[str, Any]] = {}
    for i, event in enumerate(events):
        key = topic_key(event)
        if key != PRICE_UPDATES:
            ev_key = event.key
            barrier[ev_key] = barrier.get(ev_key, 0) + 1
            continue
        try:
            rec = decode(key, event)
        except Exception:  # a bad record takes the normal path (the dead-letter topic)
            continue
        decoded[i] = rec
        market = (
            rec["event_id"],
            barrier.get(event.key, 0),
            rec["market_type"],
            rec["period"],
            rec.get("line"),
        )
        candidates.append((i, market, int(rec["seq"])))
    if len(candidates) < 2:
        return Plan(decoded)
    c = conflate(candidates, market_of=lambda u: u[1], seq_of=lambda u: u[2])
    kept_of: dict[tuple[Any, ...], int] = {candidates[j][1]: candidates[j][0] for j in c.keep}
    superseded: dict[int, list[int]] = {}
    for j in c.superseded:
        idx, market, _ = candidates[j]
        superseded.setdefault(kept_of[market], []).append(idx)
    return Plan(
        decoded,
        frozenset(candidates[j][0] for j in c.superseded),
        {k: tuple(v) for k, v in superseded.items()},
    )
