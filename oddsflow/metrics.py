"""Prometheus metrics shared by workers, ingestors and sinks (prometheus-client).

Every process serves them on ``/metrics`` (``serve(port)``); names follow Prometheus
conventions with units last (``_seconds``, ``_total``).
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

EVENTS_IN = Counter("oddsflow_events_in_total", "Events consumed", ["agent", "topic"])
EVENTS_OUT = Counter("oddsflow_events_out_total", "Events produced", ["agent", "topic"])
DEAD_LETTERS = Counter(
    "oddsflow_dead_letters_total", "Messages sent to the dead-letter topic", ["stage", "error_type"]
)
STALE_UPDATES = Counter(
    "oddsflow_stale_updates_total", "Provider updates dropped as stale or duplicate", ["kind"]
)
PRICES_CONFLATED = Counter(
    "oddsflow_price_updates_conflated_total",
    "Price updates not priced: a later update of the same market in the same batch superseded them",
)
DECISIONS = Counter("oddsflow_bet_decisions_total", "Bet decisions", ["outcome", "reason"])
DECISION_PATHS = Counter(
    "oddsflow_bet_decision_paths_total",
    "Bet decisions by path: fast (decided on the account partition in one hop) or "
    "authoritative (a single no quota covered, decided with the event partition)",
    ["path"],
)
SETTLEMENTS = Counter("oddsflow_settlements_total", "Bet settlements", ["outcome", "kind"])
PROCESSING_SECONDS = Histogram(
    "oddsflow_processing_seconds",
    "Time to process one event (its batch's time divided by the batch's events)",
    ["agent"],
    buckets=LATENCY_BUCKETS_S,
)
AGENT_BATCH_EVENTS = Histogram(
    "oddsflow_agent_batch_events",
    "Events an agent took in one batch",
    ["agent"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
DECISION_LATENCY_SECONDS = Histogram(
    "oddsflow_bet_decision_latency_seconds",
    "Bet request placed -> decision produced",
    buckets=LATENCY_BUCKETS_S,
)
PRICE_PUBLISH_LAG_SECONDS = Histogram(
    "oddsflow_price_publish_lag_seconds",
    "Provider timestamp -> priced market produced",
    buckets=LATENCY_BUCKETS_S,
)
# What bounds exactly_once latency: a commit holds the worker's emit lock through each of these
# round trips (pending sends acknowledged, AddOffsetsToTxn + TxnOffsetCommit, the membership
# Heartbeat, EndTxn); an agent whose batch is ready meanwhile waits (EMIT_WAIT_SECONDS).
TRANSACTION_PHASES = ("sends_acked", "offsets_added", "membership_checked", "end_txn")
TRANSACTION_PHASE_SECONDS = Histogram(
    "oddsflow_transaction_phase_seconds",
    "Time of one phase of a transaction commit",
    ["phase"],
    buckets=LATENCY_BUCKETS_S,
)
EMIT_WAIT_SECONDS = Histogram(
    "oddsflow_emit_wait_seconds",
    "Time an agent's batch waited for the emit lock before its outputs were sent",
    buckets=LATENCY_BUCKETS_S,
)
# The interpreter stops every thread of the process while it collects: a worker's pause is a
# decision's latency. Buckets to a quarter second: a full collection of a worker with large
# tables was measured at ~120 ms (2026-12-01).
GC_PAUSE_SECONDS = Histogram(
    "oddsflow_gc_pause_seconds",
    "Time the Python garbage collector held the process, per collection",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
TABLE_SIZE = Gauge("oddsflow_table_keys", "Keys held in a table on this worker", ["table"])
CONSUMER_LAG = Gauge(
    "oddsflow_consumer_lag_messages", "High watermark minus position", ["topic", "partition"]
)
INGESTED = Counter(
    "oddsflow_ingested_total", "Feed items accepted by an ingestor", ["provider", "kind"]
)
INGEST_REJECTED = Counter(
    "oddsflow_ingest_rejected_total", "Feed items rejected by an ingestor", ["provider", "reason"]
)

_served: set[int] = set()
_lock = threading.Lock()


def watch_gc() -> None:
    """Time every garbage collection into :data:`GC_PAUSE_SECONDS` (once per process)."""
    if any(getattr(cb, "_oddsflow", False) for cb in gc.callbacks):
        return
    by_generation = [GC_PAUSE_SECONDS.labels(str(g)) for g in range(3)]
    started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        # Runs with the collector holding the interpreter: nothing here may allocate much.
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            by_generation[info["generation"]].observe(time.perf_counter() - started[0])

    on_gc._oddsflow = True  # type: ignore[attr-defined]
    gc.callbacks.append(on_gc)


def serve(port: int) -> None:
    """Start the /metrics HTTP endpoint once per process (port 0 disables it)."""
    if port <= 0:
        return
    with _lock:
        if port in _served:
            return
        start_http_server(port, addr="127.0.0.1")
        _served.add(port)
