"""Prometheus metrics shared by every sink, labelled by ``sink`` (registered once, at import)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BATCH_SIZE = Histogram(
    "oddsflow_sink_batch_size_messages",
    "Messages per flushed batch",
    ["sink"],
    buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000),
)
FLUSH_SECONDS = Histogram(
    "oddsflow_sink_flush_seconds",
    "Time to write one batch and its offsets",
    ["sink"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RETRIES = Counter("oddsflow_sink_retries_total", "Failed flushes that were retried", ["sink"])
ROWS_WRITTEN = Counter("oddsflow_sink_rows_written_total", "Rows written", ["sink", "table"])
UNDECODABLE = Counter(
    "oddsflow_sink_undecodable_total", "Messages skipped as undecodable", ["sink", "topic"]
)
REJECTED = Counter(
    "oddsflow_sink_rejected_total", "Messages the store refused (kept in a rejects table)", ["sink"]
)
MERGE_FALLBACKS = Counter(
    "oddsflow_sink_merge_fallbacks_total",
    "Batches written through the idempotent merge because some of their rows were already there "
    "(a message delivered twice, or a batch partly written before a crash)",
    ["sink"],
)
LAG = Gauge(
    "oddsflow_sink_lag_messages",
    "High watermark minus the sink's next offset",
    ["sink", "topic", "partition"],
)
