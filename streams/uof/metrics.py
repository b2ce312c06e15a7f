"""Prometheus metrics of the UOF adapter."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MESSAGES = Counter("oddsflow_uof_messages_total", "UOF messages handled, by message kind", ["kind"])
UNSUPPORTED_MARKETS = Counter(
    "oddsflow_uof_unsupported_markets_total",
    "UOF markets skipped because the engine does not offer them, by UOF market id",
    ["market_id"],
)
SKIPPED_MARKETS = Counter(
    "oddsflow_uof_skipped_prices_total",
    "Supported UOF markets whose odds could not become a price update (status still sent)",
    ["reason"],
)
DROPPED = Counter(
    "oddsflow_uof_dropped_total",
    "UOF market updates dropped, by reason (stale: older than the last one applied)",
    ["reason"],
)
DUPLICATES = Counter(
    "oddsflow_uof_duplicates_total",
    "UOF messages seen again (same timestamp and bytes): produced again identically, same seqs",
)
REJECTED = Counter(
    "oddsflow_uof_rejected_total", "UOF messages dead-lettered, by reason code", ["reason"]
)
PRODUCER_UP = Gauge("oddsflow_uof_producer_up", "1 while a UOF producer is up", ["product"])
