"""Table recovery that does not trust Faust's.

Measured here: after a SIGKILL, Faust's recovery built its changelog "highwaters" as -1 for
every partition and resumed the streams with empty tables (and at other times aiokafka's
read_committed fetcher skipped committed records), so decisions were lost. Before the
streams resume, this module rebuilds every table's assigned partitions from the changelog
topics with librdkafka (read_committed), waiting until the last stable offset has reached the
end of the log, i.e. until any transaction a killed or paused worker left open has ended
(a killed worker's is aborted by the broker after its transaction timeout).

A recovery that does not get there in time never hands back partial tables (a wallet
missing its last writes would decide bets on a stale balance): ``read_changelogs`` raises
``RecoveryTimeout`` and ``recover_with_retries`` tries again, then raises
``RecoveryFailed``, which stops the worker (``processors.transport``).

The input offsets the streams resume from must be those of the same committed transactions
the tables were rebuilt from. aiokafka's OffsetFetch (v3) is answered with the last
*materialised* commit: a transaction whose EndTxn has returned but whose markers the broker
has not yet written (or one still open) leaves the older offset visible, while the changelog
read above already waits for those markers. A worker resuming there applied the last
transaction's inputs a second time on tables that held them (a quota grant or return counted
twice: "more spent or returned than granted", after a rebalance). ``committed_offsets`` asks
with librdkafka at read_committed, which sends OffsetFetch with ``require_stable`` (KIP-447):
the broker answers UNSTABLE_OFFSET_COMMIT while such a commit is pending and librdkafka asks
again, so the answer is never older than the tables.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

log = logging.getLogger("oddsflow.recovery")


def _named(partitions: list[tuple[str, int]]) -> str:
    """``topic[p], ...`` for the first five partitions, and how many more."""
    shown = ", ".join(f"{t}[{p}]" for t, p in partitions[:5])
    return shown + (f" and {len(partitions) - 5} more" if len(partitions) > 5 else "")


class RecoveryTimeout(RuntimeError):
    """The changelogs did not reach a stable end in time: the tables would be partial."""

    def __init__(self, timeout_s: float, pending: list[tuple[str, int]]) -> None:
        self.pending = pending
        super().__init__(
            f"changelog recovery timed out after {timeout_s:.0f}s: {_named(pending)} did not "
            "reach their last stable offset (an open transaction, or the broker is slow)"
        )


class OffsetsUnstable(RuntimeError):
    """The committed input offsets stayed pending (an open transaction) past the timeout."""

    def __init__(self, timeout_s: float, partitions: list[tuple[str, int]]) -> None:
        super().__init__(
            f"the committed offsets of {_named(partitions)} were still pending after "
            f"{timeout_s:.0f}s (a transaction still open, or the broker is slow)"
        )


class RecoveryFailed(RuntimeError):
    """Every recovery attempt timed out: the worker must not resume."""


ReadChangelogs = Callable[..., dict[str, dict[str, Any]]]
T = TypeVar("T")


def _retried(
    attempt_once: Callable[[], T],
    attempts: int,
    retry_on: type[Exception],
    what: str,
    refusal: str,
) -> T:
    """``attempt_once()``, again on ``retry_on`` (each attempt from scratch); RecoveryFailed
    (``refusal``) after ``attempts`` of them."""
    last: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            return attempt_once()
        except retry_on as exc:
            last = exc
            log.warning("%s attempt %d/%d: %s", what, attempt, attempts, exc)
    raise RecoveryFailed(f"{refusal}: {last}")


def recover_with_retries(
    read: ReadChangelogs,
    bootstrap: str,
    wanted: Mapping[str, set[int]],
    *,
    timeout_s: float,
    attempts: int,
) -> dict[str, dict[str, Any]]:
    """``read(bootstrap, wanted, timeout_s)``, retried on RecoveryTimeout; RecoveryFailed
    after ``attempts`` timeouts. Each attempt starts from scratch (nothing partial kept)."""
    return _retried(
        lambda: read(bootstrap, wanted, timeout_s),
        attempts,
        RecoveryTimeout,
        "changelog recovery",
        f"table recovery failed {attempts} times, refusing to resume on partial tables",
    )


def stable_committed_with_retries(
    bootstrap: str,
    group_id: str,
    partitions: list[tuple[str, int]],
    *,
    timeout_s: float,
    attempts: int,
) -> dict[tuple[str, int], int | None]:
    """:func:`committed_offsets`, retried while they stay pending; RecoveryFailed after
    ``attempts``: resuming from an older offset would apply committed inputs again."""
    return _retried(
        lambda: committed_offsets(bootstrap, group_id, partitions, timeout_s),
        attempts,
        OffsetsUnstable,
        "committed offsets",
        "refusing to resume from unstable offsets",
    )


def read_changelogs(
    bootstrap: str, wanted: Mapping[str, set[int]], timeout_s: float = 60.0
) -> dict[str, dict[str, Any]]:
    """{changelog topic: partitions} -> {changelog topic: {key: value bytes}} (latest per key)."""
    out: dict[str, dict[str, Any]] = {topic: {} for topic in wanted}
    tps = [TopicPartition(t, p, 0) for t, parts in wanted.items() for p in sorted(parts)]
    if not tps:
        return out
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": "oddsflow-recovery",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }
    c = Consumer({**config, "isolation.level": "read_committed"})
    # A read_committed consumer's watermark is the last stable offset, not the end of the
    # log: the end (what an open transaction has written) needs a read_uncommitted query.
    ends = Consumer({**config, "isolation.level": "read_uncommitted"})

    def caught_up(topic: str, part: int) -> bool:
        _, end = ends.get_watermark_offsets(TopicPartition(topic, part), timeout=10, cached=False)
        pos = c.position([TopicPartition(topic, part)])[0].offset
        return end == 0 or pos >= end  # nothing open: the stable offset is the end

    try:
        c.assign(tps)
        pending = {(tp.topic, tp.partition) for tp in tps}
        at_eof: set[tuple[str, int]] = set()  # reached the stable offset at least once
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for m in c.consume(5000, 0.2):
                err = m.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"changelog recovery: {err}")
                    at_eof.add((str(m.topic()), int(m.partition() or 0)))
                    continue
                table = out[str(m.topic())]
                k = orjson.loads(m.key() or b"null")
                if m.value() is None:
                    table.pop(k, None)
                else:
                    table[k] = m.value()
            for topic, part in list(pending & at_eof):
                if caught_up(topic, part):
                    pending.discard((topic, part))
        if pending:
            raise RecoveryTimeout(timeout_s, sorted(pending))
    finally:
        c.close()
        ends.close()
    return out


def committed_offsets(
    bootstrap: str, group_id: str, partitions: list[tuple[str, int]], timeout_s: float = 60.0
) -> dict[tuple[str, int], int | None]:
    """``group_id``'s committed offset of each (topic, partition), None where it has none;
    never an offset a pending transactional commit is about to replace (see above)."""
    if not partitions:
        return {}
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group_id,  # only asked, never joined: no rebalance
            "enable.auto.commit": False,
            "isolation.level": "read_committed",  # -> OffsetFetch require_stable
        }
    )
    try:
        got = c.committed([TopicPartition(t, p) for t, p in partitions], timeout=timeout_s)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError._TIMED_OUT:
            raise OffsetsUnstable(timeout_s, sorted(partitions)) from exc
        raise
    finally:
        c.close()
    out: dict[tuple[str, int], int | None] = {}
    for tp in got:
        if tp.error is not None:
            raise RuntimeError(f"committed offset of {tp.topic}[{tp.partition}]: {tp.error}")
        out[(str(tp.topic), int(tp.partition))] = tp.offset if tp.offset >= 0 else None
    return out
