"""The ``commit_path`` scenario: what bounds exactly_once decision latency.

Under exactly_once a decision is visible when the transaction holding it commits, so its latency
is about the wait for the next commit (half the commit interval on average) plus the commit
itself (the outstanding sends, AddOffsetsToTxn, TxnOffsetCommit, the membership Heartbeat,
EndTxn) plus what the next transaction's first requests wait: the broker answers
CONCURRENT_TRANSACTIONS while the previous EndTxn's markers are written (KAFKA-5477) and the
producer retries after its ``retry_backoff_ms`` (ODDSFLOW_RETRY_BACKOFF_MS; aiokafka 0.14 waits
a fixed 20 ms instead for a transaction's first AddPartitionsToTxn). The worker's producer
linger is fixed at 5 ms (``processors.transport``).

For each commit interval in ``COMMIT_INTERVALS_S`` it measures, open loop at ``RATE_PER_S``
bets/s: the librdkafka transactional passthrough (``bench.passthrough``) at that interval, and
for each retry backoff in ``RETRY_BACKOFFS_MS`` the Faust passthrough (``bench.passthrough_faust``:
the worker's framework and transport, forwarding only) and an exactly_once worker deciding the
same bets, each p50/p99 with ratios to both passthroughs; then the worker's closed-loop
decisions/s (a shorter interval commits more often, and a commit holds the emit lock). Not part of the default full run
(``oddsflow bench -s commit_path``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from typing import Any

from oddsflow.bench import harness as h
from oddsflow.bench import passthrough, passthrough_faust
from oddsflow.bench.scenarios import worker_metrics as wm
from oddsflow.bench.scenarios.common import (
    BETS_IO,
    Ctx,
    check,
    measure_open,
    reps_summary,
    tname,
    worker_run,
)
from oddsflow.bench.scenarios.records import Bets
from oddsflow.bench.stats import ratio
from oddsflow.codec import Codec
from oddsflow.settings import Settings

RATE_PER_S = 100
COMMIT_INTERVALS_S = (0.02, 0.05, 0.1)
RETRY_BACKOFFS_MS = (10, 100)
EVENTS = [f"e{i}" for i in range(50)]
ACCOUNTS = 1_000
BACKOFF_ENV = "ODDSFLOW_RETRY_BACKOFF_MS"


def interval_key(commit_interval_s: float) -> str:
    return f"commit_{commit_interval_s:g}s"


def backoff_key(retry_backoff_ms: int) -> str:
    return f"backoff_{retry_backoff_ms}ms"


def scenario_commit_path(ctx: Ctx) -> dict[str, Any]:
    plan = ctx.plan
    seconds = 10.0  # 1,000 decisions a repetition: p99 is the 10th slowest
    reps = max(2, plan.reps)  # the box is shared: never a single repetition
    out: dict[str, Any] = {
        "rate_per_s": RATE_PER_S,
        "seconds": seconds,
        "reps": reps,
        "linger_ms": 5,
        "defaults": {
            "commit_interval_s": ctx.base.commit_interval_s,
            "retry_backoff_ms": _default_backoff_ms(),
        },
    }
    for ci in COMMIT_INTERVALS_S:
        g: dict[str, Any] = {"commit_interval_s": ci}
        g["passthrough_transactional"] = librdkafka_p99(ctx, ci, seconds, reps)
        for rb in RETRY_BACKOFFS_MS:
            env = {BACKOFF_ENV: str(rb)}
            faust_pt = faust_p99(ctx, ci, env, seconds, reps)
            worker = worker_decisions(ctx, ci, env, seconds, reps, closed_n=ctx.plan.bet_closed_n)
            for q in ("p50_ms", "p99_ms"):
                worker[f"{q}_x_librdkafka"] = ratio(
                    worker[q]["median"], g["passthrough_transactional"][q]["median"]
                )
                worker[f"{q}_x_faust"] = ratio(worker[q]["median"], faust_pt[q]["median"])
            g[backoff_key(rb)] = {"passthrough_faust": faust_pt, "worker": worker}
            ctx.say(
                f"  commit {ci:g} s, backoff {rb} ms: decision p50/p99 "
                f"{worker['p50_ms']['median']}/{worker['p99_ms']['median']} ms; faust passthrough "
                f"{faust_pt['p50_ms']['median']}/{faust_pt['p99_ms']['median']} ms; librdkafka "
                f"{g['passthrough_transactional']['p50_ms']['median']}/"
                f"{g['passthrough_transactional']['p99_ms']['median']} ms"
            )
        out[interval_key(ci)] = g
    return out


def _default_backoff_ms() -> int:
    from oddsflow.processors.transport import TransportSettings

    return TransportSettings.from_env().retry_backoff_ms


def _open_reps(
    ctx: Ctx,
    what: str,
    measure: Callable[[list[h.Stamped], float | None, float], dict[str, Any]],
    bets: Bets,
    seconds: float,
    reps: int,
    rate_per_s: int,
) -> dict[str, Any]:
    r = measure(bets.make(ctx.plan.warmup), None, 180)
    check(r["complete"], f"{what} warm-up")
    runs = [measure(bets.make(int(rate_per_s * seconds)), rate_per_s, 120) for _ in range(reps)]
    ctx.say(f"    {what}: p50 {[x['p50_ms'] for x in runs]} p99 {[x['p99_ms'] for x in runs]} ms")
    return {"offered_per_s": rate_per_s, "reps": runs, **reps_summary(runs)}


def _passthrough_reps(
    ctx: Ctx,
    s: Settings,
    start: Callable[[], subprocess.Popen[bytes]],
    what: str,
    seconds: float,
    reps: int,
    rate_per_s: int,
) -> dict[str, Any]:
    """``reps`` open-loop runs through the passthrough ``start`` launches on ``s``'s topics,
    which are deleted afterwards."""
    pt = start()
    try:
        col = h.Collector(s, [passthrough.copy_topic(s, "bet_requests")])
        prod, codec = h.LoadProducer(s), Codec("bet_request")
        t_in = tname(s, "bet_requests")

        def measure(items: list[h.Stamped], rate: float | None, timeout_s: float) -> dict[str, Any]:
            alive = lambda: pt.poll() is None  # noqa: E731
            return measure_open(
                prod, t_in, items, rate, col, codec, "placed_at", alive, timeout_s, pt.pid
            )

        try:
            bets = Bets(s, ACCOUNTS, EVENTS)
            return _open_reps(ctx, what, measure, bets, seconds, reps, rate_per_s)
        finally:
            col.stop()
    finally:
        passthrough.stop(pt)
        h.delete_topics(s)


def librdkafka_p99(
    ctx: Ctx, commit_interval_s: float, seconds: float, reps: int, rate_per_s: int = RATE_PER_S
) -> dict[str, Any]:
    """The librdkafka transactional passthrough at ``commit_interval_s``."""
    s = h.fresh_settings(ctx.base, "c", commit_interval_s=commit_interval_s)

    def start() -> subprocess.Popen[bytes]:
        return passthrough.start(
            s, ctx.log_dir, transactional=True, commit_interval_s=commit_interval_s
        )

    what = f"librdkafka passthrough @{commit_interval_s:g} s"
    return _passthrough_reps(ctx, s, start, what, seconds, reps, rate_per_s)


def faust_p99(
    ctx: Ctx,
    commit_interval_s: float,
    env: Mapping[str, str],
    seconds: float,
    reps: int,
    rate_per_s: int = RATE_PER_S,
) -> dict[str, Any]:
    """The Faust passthrough (exactly_once) at ``commit_interval_s`` with ``env`` on top."""
    s = h.fresh_settings(
        ctx.base, "f", processing_guarantee="exactly_once", commit_interval_s=commit_interval_s
    )
    what = f"faust passthrough @{commit_interval_s:g} s {dict(env)}"
    start = lambda: passthrough_faust.start(s, ctx.log_dir, env)  # noqa: E731
    return _passthrough_reps(ctx, s, start, what, seconds, reps, rate_per_s)


def worker_decisions(
    ctx: Ctx,
    commit_interval_s: float,
    env: Mapping[str, str],
    seconds: float,
    reps: int,
    rate_per_s: int = RATE_PER_S,
    closed_n: int = 0,
) -> dict[str, Any]:
    """An exactly_once worker's decisions at ``commit_interval_s`` with ``env`` on top, then
    (``closed_n``) its closed-loop decisions/s, and the share decided on the fast path."""
    with worker_run(
        ctx,
        "w",
        "commit-path",
        BETS_IO,
        preload_events=EVENTS,
        accounts=ACCOUNTS,
        extra_env=env,
        processing_guarantee="exactly_once",
        commit_interval_s=commit_interval_s,
    ) as run:
        before = wm.scrape(run.port)
        what = f"worker @{commit_interval_s:g} s {dict(env)}"
        bets = Bets(run.s, ACCOUNTS, EVENTS)
        g = _open_reps(ctx, what, run.measure, bets, seconds, reps, rate_per_s)
        if closed_n:
            # what the interval costs in throughput: commits hold the emit lock
            runs = [run.measure(bets.make(closed_n), None, 240) for _ in range(reps)]
            g["closed_loop"] = {"n": closed_n, "reps": runs, **reps_summary(runs)}
            ctx.say(f"    {what}: closed loop {[x['throughput_per_s'] for x in runs]} dec/s")
        g["decision_paths"] = wm.decision_paths(before, wm.scrape(run.port))
        g["worker_alive_at_end"] = run.w.alive()
        return g
