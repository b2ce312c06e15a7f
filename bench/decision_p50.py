"""Decision p50 at a fixed offered rate, exactly_once, beside the transactional passthrough's.

    python -m oddsflow.bench.decision_p50 [--rate 100] [--seconds 20] [--reps 3]

The same bet requests (bench scenarios' ``Bets``: singles over 50 events and 1,000 accounts) are
sent open loop at ``--rate`` to (a) the transactional passthrough (consume -> produce the same
bytes in a transaction, the same commit interval) and (b) an exactly_once worker. Prints and
returns the p50/p99 of each and the worker's share of bets decided on the fast path (one hop,
on the account partition's liability quota), from its ``oddsflow_bet_decision_paths_total``.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from oddsflow.bench import harness as h
from oddsflow.bench import passthrough
from oddsflow.bench.scenarios import Bets, _preload, measure_open, tname
from oddsflow.codec import Codec
from oddsflow.settings import Settings

EVENTS = [f"e{i}" for i in range(50)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _paths(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("oddsflow_bet_decision_paths_total{"):
            path = line.split('path="', 1)[1].split('"', 1)[0]
            out[path] = float(line.rsplit(" ", 1)[1])
    return out


def _median(reps: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in reps if r.get("complete") and r.get(key) is not None]
    return round(statistics.median(values), 1) if values else None


def passthrough_p50(base: Settings, rate: int, seconds: float, reps: int, log_dir: Path) -> Any:
    s = h.fresh_settings(base, "p")
    pt = passthrough.start(s, log_dir, transactional=True, commit_interval_s=s.commit_interval_s)
    col = h.Collector(s, [passthrough.copy_topic(s, "bet_requests")])
    prod, codec, bets = h.LoadProducer(s), Codec("bet_request"), Bets(s, 1000, EVENTS)
    try:
        alive = lambda: pt.poll() is None  # noqa: E731
        measure_open(
            prod, tname(s, "bet_requests"), bets.make(200), None, col, codec, "placed_at", alive, 60
        )
        runs = [
            measure_open(
                prod,
                tname(s, "bet_requests"),
                bets.make(int(rate * seconds)),
                rate,
                col,
                codec,
                "placed_at",
                alive,
                120,
            )
            for _ in range(reps)
        ]
    finally:
        col.stop()
        passthrough.stop(pt)
        h.delete_topics(s)
    return runs


def worker_p50(base: Settings, rate: int, seconds: float, reps: int, log_dir: Path) -> Any:
    port = _free_port()
    s = h.fresh_settings(base, "w", processing_guarantee="exactly_once", metrics_port=port)
    w = h.Worker(s, log_dir, "decision-p50").start()
    prod, codec, bets = h.LoadProducer(s), Codec("bet_decision"), Bets(s, 1000, EVENTS)
    col = None
    try:
        _preload(None, s, w, prod, EVENTS, 1000, 10_000_000_00)  # type: ignore[arg-type]
        col = h.Collector(s, [tname(s, "bet_decisions")])
        t_in = tname(s, "bet_requests")
        measure_open(prod, t_in, bets.make(200), None, col, codec, "requested_at", w.alive, 180)
        before = _paths(port)
        runs = [
            measure_open(
                prod,
                t_in,
                bets.make(int(rate * seconds)),
                rate,
                col,
                codec,
                "requested_at",
                w.alive,
                180,
                w.pid,
            )
            for _ in range(reps)
        ]
        after = _paths(port)
    finally:
        if col:
            col.stop()
        w.stop()
        h.delete_topics(s)
    fast = after.get("fast", 0) - before.get("fast", 0)
    auth = after.get("authoritative", 0) - before.get("authoritative", 0)
    return runs, {"fast": fast, "authoritative": auth, "fast_share": fast / max(1, fast + auth)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    base = Settings()
    log_dir = Path(tempfile.mkdtemp(prefix="oddsflow-p50-"))
    pt = passthrough_p50(base, a.rate, a.seconds, a.reps, log_dir)
    wk, paths = worker_p50(base, a.rate, a.seconds, a.reps, log_dir)
    out = {
        "rate_per_s": a.rate,
        "commit_interval_s": base.commit_interval_s,
        "passthrough_transactional": {
            "p50_ms": _median(pt, "p50_ms"),
            "p99_ms": _median(pt, "p99_ms"),
            "reps_p50_ms": [r.get("p50_ms") for r in pt],
        },
        "worker_exactly_once": {
            "p50_ms": _median(wk, "p50_ms"),
            "p99_ms": _median(wk, "p99_ms"),
            "reps_p50_ms": [r.get("p50_ms") for r in wk],
            **paths,
        },
        "logs": str(log_dir),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
