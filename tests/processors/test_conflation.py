"""The pricing agent's conflation plan (processors.conflation): which price updates of a batch
are priced, table-driven over batches written as plain lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from oddsflow.processors.conflation import UNDECODABLE, expand, plan


@dataclass
class _Msg:
    topic: str


@dataclass
class _Event:
    key: bytes
    message: _Msg
    value: dict[str, Any]


def price(event: str, seq: int, line: str | None = None, mtype: str = "match_result") -> _Event:
    rec = {"event_id": event, "market_type": mtype, "period": "FT", "line": line, "seq": seq}
    return _Event(event.encode(), _Msg("price_updates"), rec)


def status(event: str) -> _Event:
    return _Event(event.encode(), _Msg("market_status"), {"event_id": event})


BAD = -1  # a seq that makes decode raise: the record failed its validation


def decode(key: str, e: _Event) -> dict[str, Any]:
    if e.value["seq"] == BAD:
        raise ValueError("invalid record")
    return e.value


def run(batch: list[_Event]) -> tuple[list[int], dict[int, tuple[int, ...]]]:
    p = plan(batch, lambda e: e.message.topic, decode)
    return sorted(p.skip), p.superseded_by


@pytest.mark.parametrize(
    ("batch", "skip", "superseded_by"),
    [
        pytest.param([price("e1", 1)], [], {}, id="one update"),
        pytest.param(
            [price("e1", 1), price("e1", 2), price("e1", 3)],
            [0, 1],
            {2: (0, 1)},
            id="three of one market: the newest is priced",
        ),
        pytest.param(
            [price("e1", 1), price("e2", 1), price("e1", 2)],
            [0],
            {2: (0,)},
            id="another market between",
        ),
        pytest.param(
            [price("e1", 1), status("e1"), price("e1", 2)],
            [],
            {},
            id="a status of the same event is a barrier",
        ),
        pytest.param(
            [price("e1", 1), status("e2"), price("e1", 2)],
            [0],
            {2: (0,)},
            id="a status of another event is not",
        ),
        pytest.param(
            [price("e1", 5), price("e1", 3)],
            [1],
            {0: (1,)},
            id="an older seq arriving later is superseded by the newer",
        ),
        pytest.param(
            [price("e1", 4), price("e1", 4)],
            [1],
            {0: (1,)},
            id="the first of equal seqs is kept, as the handler keeps it",
        ),
        pytest.param(
            [price("e1", 1), price("e1", BAD)],
            [],
            {},
            id="an invalid newest never supersedes a valid one",
        ),
        pytest.param(
            [price("e1", 1, "2.5", "total"), price("e1", 2, "3.5", "total")],
            [],
            {},
            id="two lines are two markets",
        ),
        pytest.param(
            [price("e1", 1), status("e1"), price("e1", 2), price("e1", 3)],
            [2],
            {3: (2,)},
            id="conflated on each side of a barrier separately",
        ),
    ],
)
def test_which_updates_are_priced(batch, skip, superseded_by):
    assert run(batch) == (skip, superseded_by)


def test_the_kept_updates_are_decoded_once_and_handed_on():
    batch = [price("e1", 1), price("e1", 2), status("e1")]
    p = plan(batch, lambda e: e.message.topic, decode)
    assert set(p.decoded) == {0, 1}
    assert p.decoded[1] is batch[1].value


def batch_msg(*updates: _Event | None) -> _Event:
    """A price_updates batch message of ``updates`` (None: a batch that does not decode),
    keyed by its first item's event, as a feed ingestor frames them."""
    items = None if None in updates else [u.value for u in updates if u is not None]
    first = updates[0].key if updates and updates[0] is not None else b"?"
    return _Event(first, _Msg("price_updates"), {"items": items})


def items_of(key: str, e: _Event) -> list[dict[str, Any]] | None:
    if key != "price_updates":
        return None
    if e.value["items"] is None:
        raise ValueError("corrupt batch")
    return list(e.value["items"])


def run_units(batch: list[_Event]) -> tuple[list[tuple[int, int]], list[int], dict]:
    units, spans = expand(batch, lambda e: e.message.topic, items_of)
    p = plan(
        units,
        lambda u: u.topic,
        lambda k, u: decode(k, _Event(u.key, _Msg(u.topic), u.record or u.event.value)),
    )
    return spans, sorted(p.skip), p.superseded_by


@pytest.mark.parametrize(
    ("batch", "spans", "skip", "superseded_by"),
    [
        pytest.param(
            [batch_msg(price("e1", 1), price("e1", 2))],
            [(0, 2)],
            [0],
            {1: (0,)},
            id="one message, one market twice: the newer item is priced",
        ),
        pytest.param(
            [batch_msg(price("e1", 1), price("e2", 1)), batch_msg(price("e2", 2), price("e1", 2))],
            [(0, 2), (2, 4)],
            [0, 1],
            {3: (0,), 2: (1,)},
            id="across messages, each market's newest item wins",
        ),
        pytest.param(
            # the second message is keyed e2, but its e1 item is behind e1's status barrier
            [batch_msg(price("e1", 1)), status("e1"), batch_msg(price("e2", 1), price("e1", 2))],
            [(0, 1), (1, 2), (2, 4)],
            [],
            {},
            id="an item's own event is its barrier, not the message key",
        ),
        pytest.param(
            [
                batch_msg(price("e1", 1)),
                batch_msg(None),
                batch_msg(price("e1", BAD), price("e1", 3)),
            ],
            [(0, 1), UNDECODABLE, (1, 3)],
            [0],
            {2: (0,)},
            id="a corrupt message and a bad item take the normal path",
        ),
        pytest.param(
            [batch_msg()],
            [(0, 0)],
            [],
            {},
            id="an empty batch message",
        ),
    ],
)
def test_items_of_batch_messages_are_conflated_as_events(batch, spans, skip, superseded_by):
    assert run_units(batch) == (spans, skip, superseded_by)
