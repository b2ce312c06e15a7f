"""The worker's own Prometheus metrics, read while a scenario runs: the share of bets decided on
the fast path and the market view's lag. A metric the worker does not export (an older engine,
or the market view not wired in) is reported as ``"n/a"``, never as a failure."""

from __future__ import annotations

import socket
import statistics
import threading
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from oddsflow.metrics import TRANSACTION_PHASES

NA = "n/a"
DECISION_PATHS = "oddsflow_bet_decision_paths_total"
VIEW_LAG_SECONDS = "oddsflow_market_view_lag_seconds"
VIEW_LAG_OFFSETS = "oddsflow_market_view_lag_offsets"
VIEW_UPDATES = "oddsflow_market_view_updates_total"
GC_PAUSE = "oddsflow_gc_pause_seconds"
TXN_PHASE = "oddsflow_transaction_phase_seconds"
EMIT_WAIT = "oddsflow_emit_wait_seconds"
TXN_PHASES = TRANSACTION_PHASES  # in the order a commit runs them

# one sample: (metric name, labels) -> value
Sample = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def parse(text: str) -> Sample:
    out: Sample = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def scrape(port: int, timeout_s: float = 2.0) -> Sample | None:
    """The worker's metrics now, or None if its endpoint does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as r:
            return parse(r.read().decode())
    except OSError:
        return None


def values(sample: Sample, name: str) -> list[float]:
    return [v for (n, _labels), v in sample.items() if n == name]


def decision_paths(before: Sample | None, after: Sample | None) -> dict[str, Any]:
    """Bets decided on each path between two scrapes, and the fast path's share (%)."""
    counts: dict[str, float] = {}
    for (name, labels), v in (after or {}).items():
        if name == DECISION_PATHS:
            path = dict(labels).get("path", "?")
            counts[path] = v - (before or {}).get((name, labels), 0.0)
    fast, auth = counts.get("fast"), counts.get("authoritative")
    if after is None:
        why = "the metrics endpoint did not answer"
    elif not counts:
        why = f"the worker does not export {DECISION_PATHS}"
    elif (fast or 0) + (auth or 0) <= 0:
        why = "no bet decided between the scrapes"
    else:
        why = ""
    if why:
        return {"fast": NA, "authoritative": NA, "fast_share_pct": NA, "why": why}
    total = (fast or 0) + (auth or 0)
    return {
        "fast": int(fast or 0),
        "authoritative": int(auth or 0),
        "fast_share_pct": round(100 * (fast or 0) / total, 2),
    }


def gc_pauses(before: Sample | None, after: Sample | None) -> dict[str, Any]:
    """The worker's garbage collections between two scrapes, per generation: how many, their
    total pause (ms) and how many paused 50 ms or more (the decision p99 target)."""
    if before is None or after is None:
        return {"why": "the metrics endpoint did not answer"}

    def delta(suffix: str, labels: tuple[tuple[str, str], ...]) -> float:
        key = (GC_PAUSE + suffix, tuple(sorted(labels)))
        return after.get(key, 0.0) - before.get(key, 0.0)

    out: dict[str, Any] = {}
    for g in ("0", "1", "2"):
        labels = (("generation", g),)
        if (GC_PAUSE + "_count", labels) not in after:
            return {"why": f"the worker does not export {GC_PAUSE}"}
        count = delta("_count", labels)
        out[f"gen{g}"] = {
            "collections": int(count),
            "pause_ms_total": round(1000 * delta("_sum", labels), 1),
            "pauses_50ms_or_more": int(count - delta("_bucket", (*labels, ("le", "0.05")))),
        }
    return out


def commit_phases(before: Sample | None, after: Sample | None, seconds: float) -> dict[str, Any]:
    """The worker's exactly_once commits between two scrapes: how many per second, the mean
    time of each phase and of the whole commit (ms), and agents' mean wait for the emit lock
    the commit holds: the latency budget a decision spends between its batch and its commit."""
    if before is None or after is None:
        return {"why": "the metrics endpoint did not answer"}

    def delta(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float | None:
        if (name, labels) not in after:
            return None
        return after[(name, labels)] - before.get((name, labels), 0.0)

    commits = delta(TXN_PHASE + "_count", (("phase", "end_txn"),))
    if commits is None:
        return {"why": f"the worker does not export {TXN_PHASE}"}
    out: dict[str, Any] = {
        "commits": int(commits),
        "commits_per_s": round(commits / seconds, 1) if seconds > 0 else None,
    }
    total = 0.0
    for phase in TXN_PHASES:
        s = delta(TXN_PHASE + "_sum", (("phase", phase),)) or 0.0
        total += s
        out[f"{phase}_ms_mean"] = round(1000 * s / commits, 2) if commits else None
    out["commit_ms_mean"] = round(1000 * total / commits, 2) if commits else None
    waits, waited = delta(EMIT_WAIT + "_count"), delta(EMIT_WAIT + "_sum")
    out["emit_wait_ms_mean"] = round(1000 * waited / waits, 2) if waits and waited else None
    return out


def view_lag(samples: list[Sample]) -> dict[str, Any]:
    """The market view's lag over the samples taken: time (now - priced_ts of the last priced
    market applied) and offsets (end of the log - position, the worst partition)."""
    # a gauge reads 0 until the view sets it: only scrapes after it applied a priced market
    taken = [s for s in samples if s.get((VIEW_UPDATES, (("result", "applied"),)), 0) > 0]
    lag_ms = [1000 * v for s in taken for v in values(s, VIEW_LAG_SECONDS)]
    offsets = [max(vs) for s in taken if (vs := values(s, VIEW_LAG_OFFSETS))]
    return {
        "scrapes": len(samples),  # 0: the worker's endpoint never answered
        "samples": len(lag_ms),  # scrapes that carried the view's lag
        "lag_ms_p50": round(statistics.median(lag_ms), 1) if lag_ms else NA,
        "lag_ms_max": round(max(lag_ms), 1) if lag_ms else NA,
        "lag_offsets_max": int(max(offsets)) if offsets else NA,
    }


class Sampler:
    """Scrapes the worker every ``interval_s`` in a thread, between ``start`` and ``stop``."""

    def __init__(self, port: int, interval_s: float = 0.25) -> None:
        self.port, self.interval_s = port, interval_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-metrics")

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            s = scrape(self.port)
            if s is not None:
                self.samples.append(s)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
