"""A running worker serves /metrics and its counters move."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from oddsflow.kafka import EventProducer
from tests.conftest import wait_for
from tests.processors import records as r

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _scrape(port: int) -> str:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return ""


def _value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_worker_metrics_are_served_and_move(kafka_settings, worker_factory):
    port = _free_port()
    s = kafka_settings.model_copy(update={"metrics_port": port})
    worker_factory(s).start()
    text = wait_for(lambda: _scrape(port), 60, what="/metrics")
    for name in (
        "oddsflow_events_in_total",
        "oddsflow_bet_decisions_total",
        "oddsflow_bet_decision_latency_seconds",
        "oddsflow_price_publish_lag_seconds",
        "oddsflow_dead_letters_total",
        "oddsflow_processing_seconds",
        "oddsflow_consumer_lag_messages",
        "oddsflow_table_keys",
        "oddsflow_transaction_phase_seconds",
        "oddsflow_emit_wait_seconds",
    ):
        assert f"# HELP {name}" in text, name
    p = EventProducer(s)
    p.send("price_updates", "e1", r.prices("e1"))
    p.send("deposits", "a1", r.deposit("a1", 50_00))
    p.send("bet_requests", "a1", r.bet("b1", "a1", 10_00, [r.leg("e1", "home", "2.00")]))
    p.send_raw("bet_requests", "a1", b"not avro at all")
    p.flush()
    # Deposit and bet travel on different topics, so the bet may be decided either way.
    text = wait_for(
        lambda: (t := _scrape(port)) and _value(t, "oddsflow_bet_decisions_total") >= 1 and t,
        90,
        what="decision counter",
    )
    assert _value(text, "oddsflow_events_in_total", agent="pricing") >= 1
    assert _value(text, "oddsflow_bet_decision_latency_seconds_count") >= 1
    text = wait_for(
        lambda: (t := _scrape(port)) and _value(t, "oddsflow_dead_letters_total") >= 1 and t,
        30,
        what="dead letter counter",
    )
    assert _value(text, "oddsflow_dead_letters_total", stage="wallet", error_type="CodecError") == 1
    # exactly_once: every commit times each of its four phases
    text = wait_for(
        lambda: (
            (t := _scrape(port))
            and _value(t, "oddsflow_transaction_phase_seconds_count", phase="end_txn") >= 1
            and t
        ),
        30,
        what="commit phase histogram",
    )
    counts = {
        phase: _value(text, "oddsflow_transaction_phase_seconds_count", phase=phase)
        for phase in ("sends_acked", "offsets_added", "membership_checked", "end_txn")
    }
    # (a scrape from the server's thread may fall between two phases of one commit)
    assert min(counts.values()) >= 1 and max(counts.values()) - min(counts.values()) <= 1, counts
    assert _value(text, "oddsflow_emit_wait_seconds_count") >= 1
