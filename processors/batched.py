"""Topics of batches (``items:`` in topology.yaml): many records in one message, each handled
as its own event.

Why: on ``accepted_legs`` every accepted leg was a message of its own, and the event side's
cost per message (Faust's delivery of an event: fetch, conductor, stream, ack) exceeded its
work per leg; a settlement burst's legs trailed its decisions by that cost. One message per
event partition and agent batch carries them all instead.

Producing: a handler emits one record at a time, as on any topic. The agent encodes each with
the item codec, so its size and encoding are checked with its own event (a failure
dead-letters that event alone), and :class:`~oddsflow.processors.emit.PartitionBatcher`
frames one partition's items into batch messages when it sends them, in the order they were
emitted, without encoding them again (:meth:`~oddsflow.codec.Codec.encode_batch`).

Consuming: a batch message is decoded and every item handled as its own event: its own table
writes and outputs and, if it fails, its own dead letter (the item alone, in the item schema).
A message written as a single item (by a worker from before the topic carried batches) is
read as a batch of one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from oddsflow import topology
from oddsflow.codec import Codec, batch_items_problem

# Items per batch message: a message is one event on the consuming side, and an event is not
# split by the agent's time budget (as a settlement's 500 legs per message).
ITEMS_PER_MESSAGE_MAX = 500


@dataclass(frozen=True)
class BatchedTopic:
    batch: Codec
    item: Codec
    field: str  # the batch record's one array field

    def items(self, value: bytes | None) -> list[dict[str, Any]]:
        """The records of a message: a batch's items, or a lone item as a batch of one."""
        if self.item.writer_of(value).name == self.item.name:
            return [self.item.decode(value)]
        items: list[dict[str, Any]] = self.batch.decode(value)[self.field]
        return items

    def count(self, value: bytes | None) -> int:
        """How many records :meth:`items` would return, without decoding them. For a reader
        that only counts, such as the bench's collector, to which decoding every item would
        cost more than the consumption."""
        if self.item.writer_of(value).name == self.item.name:
            return 1
        return self.batch.array_count(value)

    def frame(self, items: Sequence[bytes]) -> bytes:
        """One batch message of ``items``, each as :attr:`item` encoded it."""
        return self.batch.encode_batch(items, self.item)


def batched_topics(
    topo: topology.Topology, registry_url: str | None = None
) -> dict[str, BatchedTopic]:
    """Every topic of batches in ``topo``, by topic key."""
    out: dict[str, BatchedTopic] = {}
    for key, spec in topo.topics.items():
        if spec.item_schema is None:
            continue
        problem = batch_items_problem(spec.value_schema, spec.item_schema)
        if problem:
            raise topology.TopologyError(f"topic {key}: {problem}")
        batch = Codec(spec.value_schema, registry_url)
        out[key] = BatchedTopic(
            batch, Codec(spec.item_schema, registry_url), batch.writer.raw["fields"][0]["name"]
        )
    return out


def records_reader(
    topo: topology.Topology, key: str, registry_url: str | None = None
) -> Callable[[bytes | None], list[dict[str, Any]]]:
    """What a downstream reader of topic ``key`` calls on each message value: its records
    (a batch's items, or the one record of a topic of single records); CodecError if it
    cannot be decoded."""
    batched = batched_topics(topo, registry_url).get(key)
    if batched is not None:
        return batched.items
    codec = Codec(topo.topic(key).value_schema, registry_url)
    return lambda value: [codec.decode(value)]
