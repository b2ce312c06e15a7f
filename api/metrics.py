"""Prometheus metrics of the API (served on its own /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "oddsflow_api_requests_total",
    "HTTP requests by route, method and status",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "oddsflow_api_request_duration_seconds",
    "HTTP request latency by route",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
INFLIGHT = Gauge("oddsflow_api_placements_in_flight", "placements waiting for a decision")
SHED = Counter("oddsflow_api_shed_total", "placements refused with 503 (in-flight cap)")
RATE_LIMITED = Counter("oddsflow_api_rate_limited_total", "placements refused with 429", ["scope"])
PLACEMENTS = Counter("oddsflow_api_placements_total", "placement answers by outcome", ["outcome"])
WS_CONNECTIONS = Gauge("oddsflow_api_ws_connections", "open WebSocket connections")
WS_SENT = Counter("oddsflow_api_ws_messages_sent_total", "WebSocket messages sent", ["type"])
WS_CONFLATED = Counter(
    "oddsflow_api_ws_messages_conflated_total",
    "market updates replaced by a newer one before a slow client got them",
)
WS_DROPPED = Counter(
    "oddsflow_api_ws_messages_dropped_total",
    "messages dropped with a connection closed as too slow",
)
WS_CLOSED_SLOW = Counter("oddsflow_api_ws_closed_slow_total", "connections closed as too slow")
