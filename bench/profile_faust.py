"""What caps the Faust passthrough: py-spy of ``bench.passthrough_faust`` under a closed loop.

    python -m oddsflow.bench.profile_faust [--seconds 15] [--reps 2] [--n 40000]

The Faust passthrough (one agent forwarding every event unchanged under exactly_once, on the
worker's transport and settings) is the framework's ceiling: no engine logic runs in it. This
measures its closed-loop throughput (``--reps`` times), then samples it with ``py-spy record
--threads`` while it copies a closed-loop load sized to keep it busy for the window, and sorts
the self time of every sample into :data:`bench.profile.BUCKETS` (aiokafka's record, protocol,
producer, consumer and connection code; Faust's streams, transport and runtime; asyncio; our
transport), over all threads and per thread (Faust's consumer runs in a thread with its own
event loop). Written to ``bench/results/profile-faust-passthrough-<UTC timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from oddsflow.bench import harness as h
from oddsflow.bench import passthrough, passthrough_faust
from oddsflow.bench import profile as prof
from oddsflow.bench.scenarios.common import check, measure_open, tname
from oddsflow.bench.scenarios.records import Bets
from oddsflow.codec import Codec
from oddsflow.settings import Settings

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def profile_faust_passthrough(
    base: Settings, log_dir: Path, seconds: float, reps: int, n: int
) -> dict[str, Any]:
    s = h.fresh_settings(base, "f", processing_guarantee="exactly_once")
    pt = passthrough_faust.start(s, log_dir)
    col = h.Collector(s, [passthrough.copy_topic(s, "bet_requests")])
    prod, codec = h.LoadProducer(s), Codec("bet_request")
    bets = Bets(s, 1000, [f"e{i}" for i in range(50)])
    t_in = tname(s, "bet_requests")

    def alive() -> bool:
        return pt.poll() is None

    def closed(k: int) -> dict[str, Any]:
        return measure_open(
            prod, t_in, bets.make(k), None, col, codec, "placed_at", alive, 240, pt.pid
        )

    out: dict[str, Any] = {"commit_interval_s": s.commit_interval_s, "n": n}
    try:
        check(closed(1_000)["complete"], "Faust passthrough warm-up")
        runs = [closed(n) for _ in range(reps)]
        out["closed_loop"] = [
            {k: r.get(k) for k in ("throughput_per_s", "engine_cpu_util", "p50_ms", "p99_ms")}
            for r in runs
        ]
        per_s = max(r["throughput_per_s"] or 0 for r in runs) or 2_000
        raw = log_dir / "profile-faust-passthrough.txt"
        spy = prof.PySpy(pt.pid, raw, seconds, threads=True)
        if not spy.start():
            out["profile"] = {"error": spy.error}
            return out
        try:
            profiled = closed(int(per_s * (seconds + 3)))
        finally:
            spy.wait()
        out["profiled_run"] = {
            k: profiled.get(k) for k in ("throughput_per_s", "engine_cpu_util", "sent")
        }
        summary = spy.summary()
        if "error" not in summary:
            text = raw.read_text(errors="replace")
            summary["buckets"] = prof.summarize_by_thread(text)
        out["profile"] = summary
        return out
    finally:
        col.stop()
        passthrough.stop(pt)
        h.delete_topics(s)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--n", type=int, default=40_000)
    a = ap.parse_args(argv)
    log_dir = h.tmp_dir("oddsflow-profile-faust-")
    started = datetime.now(UTC)
    doc = {
        "started_at": started.isoformat(timespec="seconds"),
        **profile_faust_passthrough(Settings(), log_dir, a.seconds, a.reps, a.n),
        "log_dir": str(log_dir),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"profile-faust-passthrough-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str))
    print(json.dumps(doc.get("profile", {}).get("buckets", doc), indent=1)[:6000])
    print(f"results: {path}")


if __name__ == "__main__":
    main()
