"""Decision p50/p99 at a fixed offered rate, exactly_once, beside the transactional passthroughs'.

    python -m oddsflow.bench.decision_p50 [--rate 100] [--seconds 20] [--reps 3]
        [--commit-interval 0.1] [--retry-backoff-ms 100] [--env NAME=VALUE ...] [--no-faust]

The same bet requests (bench scenarios' ``Bets``: singles over 50 events and 1,000 accounts) are
sent open loop at ``--rate`` to (a) the librdkafka transactional passthrough, (b) the Faust
passthrough (unless ``--no-faust``) and (c) an exactly_once worker, all at the same commit
interval (``--env`` sets an ODDSFLOW_* variable for the Faust passthrough and the worker). Prints the p50/p99 of each and the worker's share of bets decided on the fast path.
One point of the ``commit_path`` scenario (``oddsflow bench -s commit_path`` sweeps them).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from oddsflow.bench.scenarios import commit_path as cp
from oddsflow.bench.scenarios.common import Ctx, Plan
from oddsflow.settings import Settings


def _short(g: dict[str, Any]) -> dict[str, Any]:
    return {
        "p50_ms": g["p50_ms"]["median"],
        "p99_ms": g["p99_ms"]["median"],
        "reps_p50_ms": [r.get("p50_ms") for r in g["reps"]],
        "reps_p99_ms": [r.get("p99_ms") for r in g["reps"]],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=cp.RATE_PER_S)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--commit-interval", type=float, default=None)
    ap.add_argument("--retry-backoff-ms", type=int, default=None)
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--no-faust", action="store_true")
    a = ap.parse_args()
    if any("=" not in kv for kv in a.env):
        ap.error("--env takes NAME=VALUE")
    base = Settings()
    ci = base.commit_interval_s if a.commit_interval is None else a.commit_interval
    env = {} if a.retry_backoff_ms is None else {cp.BACKOFF_ENV: str(a.retry_backoff_ms)}
    env.update(kv.split("=", 1) for kv in a.env)
    log_dir = Path(tempfile.mkdtemp(prefix="oddsflow-p50-"))
    ctx = Ctx(base, Plan.make(quick=True), log_dir, lambda m: None)
    args = (a.seconds, a.reps, a.rate)
    out: dict[str, Any] = {"rate_per_s": a.rate, "commit_interval_s": ci, **env}
    out["passthrough_transactional"] = _short(cp.librdkafka_p99(ctx, ci, *args))
    if not a.no_faust:
        out["passthrough_faust"] = _short(cp.faust_p99(ctx, ci, env, *args))
    wk = cp.worker_decisions(ctx, ci, env, *args)
    out["worker_exactly_once"] = {**_short(wk), **wk["decision_paths"]}
    out["logs"] = str(log_dir)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
