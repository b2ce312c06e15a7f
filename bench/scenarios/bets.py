"""The ``bets`` scenario: bet requests in, bet decisions out, per processing guarantee
(open loop at each offered rate, then closed loop; py-spy profile in the full run)."""

from __future__ import annotations

import time
from typing import Any

from oddsflow.api.bridge import REQUESTS_PER_MESSAGE_MAX
from oddsflow.bench import harness as h
from oddsflow.bench import profile as prof
from oddsflow.bench.scenarios import worker_metrics as wm
from oddsflow.bench.scenarios.common import (
    BETS_IO,
    Ctx,
    Run,
    accepted_count,
    check,
    measure_open,
    recoveries,
    reps_summary,
    wait_recovered,
    worker_run,
)
from oddsflow.bench.scenarios.records import Bets
from oddsflow.codec import Codec


def scenario_bets(ctx: Ctx) -> dict[str, Any]:
    out: dict[str, Any] = {}
    events = [f"e{i}" for i in range(50)]
    accounts = 1_000
    for guarantee in ("exactly_once", "at_least_once"):
        with worker_run(
            ctx,
            "b",
            "bets",
            BETS_IO,
            preload_events=events,
            accounts=accounts,
            processing_guarantee=guarantee,
        ) as run:
            out[guarantee] = _bets(ctx, run, Bets(run.s, accounts, events), guarantee)
    return out


def _bets(ctx: Ctx, run: Run, bets: Bets, guarantee: str) -> dict[str, Any]:
    plan, w, port = ctx.plan, run.w, run.port
    r = run.measure(bets.make(plan.warmup), None, 180)
    check(r["complete"], "warm-up decisions", w)
    before = wm.scrape(port)  # the decision paths counted from here (warm-up excluded)
    g: dict[str, Any] = {}
    for rt in plan.bet_rates:
        reps = []
        at_rate, t_rate = wm.scrape(port), time.monotonic()
        for i in range(plan.reps):
            n = int(rt * plan.open_s)
            r = run.measure(bets.make(n), rt, max(120, n / 20))
            ctx.say(
                f"  bets {guarantee} @{rt}/s rep {i + 1}: {r['throughput_per_s']}/s, "
                f"p50 {r['p50_ms']} p99 {r['p99_ms']} ms"
            )
            reps.append(r)
        g[f"open_{rt}"] = {
            "offered_per_s": rt,
            "seconds": plan.open_s,
            "reps": reps,
            **reps_summary(reps),
        }
        if guarantee == "exactly_once":
            g[f"open_{rt}"]["commit_phases"] = wm.commit_phases(
                at_rate, wm.scrape(port), time.monotonic() - t_rate
            )
    reps = []
    gc_before, t_closed = wm.scrape(port), time.monotonic()
    with wm.Sampler(port) as sampler:
        for i in range(plan.reps):
            r = run.measure(bets.make(plan.bet_closed_n), None, max(240, plan.bet_closed_n / 20))
            ctx.say(f"  bets {guarantee} closed loop rep {i + 1}: {r['throughput_per_s']}/s")
            reps.append(r)
    g["closed_loop"] = {"n": plan.bet_closed_n, "reps": reps, **reps_summary(reps)}
    after_closed = wm.scrape(port)
    g["closed_loop"]["gc"] = wm.gc_pauses(gc_before, after_closed)
    if guarantee == "exactly_once":
        g["closed_loop"]["commit_phases"] = wm.commit_phases(
            gc_before, after_closed, time.monotonic() - t_closed
        )
    # every bet after the warm-up (open and closed loop); view lag in the closed loop
    g["decision_paths"] = wm.decision_paths(before, wm.scrape(port))
    g["market_view"] = wm.view_lag(sampler.samples)
    ctx.say(
        f"  bets {guarantee}: fast path {g['decision_paths']['fast_share_pct']} %, "
        f"view lag max {g['market_view']['lag_ms_max']} ms"
    )
    g["accepted_fraction"] = round(accepted_count(run.col.values) / max(1, run.col.count()), 4)
    g["worker_alive_at_end"] = w.alive()
    if not w.alive():
        g["worker_log_tail"] = w.log_tail(1500)
    if plan.profile and guarantee == "exactly_once":
        g["profile"] = _profile_bets(
            ctx, w, run.prod, run.t_in, bets, run.col, run.codec, g["closed_loop"]
        )
    if guarantee == "exactly_once" and w.alive():
        g["closed_loop_two_workers"] = _two_workers(ctx, run, bets)
    if guarantee == "exactly_once" and w.alive():
        g["batched"] = _batched(ctx, run, bets)
    return g


# bets.requests as the API writes it: the requests of a turn framed per account partition
# (at most REQUESTS_PER_MESSAGE_MAX each); 1 ms stands in for the API's event-loop turn.
API_FEED = h.Feed(
    Codec("bet_request_batch"), Codec("bet_request"), REQUESTS_PER_MESSAGE_MAX, linger_ms=1.0
)


def _batched(ctx: Ctx, run: Run, bets: Bets) -> dict[str, Any]:
    """The target figures again with the requests framed as the API sends them: the target
    rates' latency, the closed loop on one worker and on two."""
    plan = ctx.plan
    run.feed = API_FEED
    out: dict[str, Any] = {"items_max": API_FEED.items_max, "linger_ms": API_FEED.linger_ms}
    try:
        # warm-up: the second worker has just left, and the group's rebalance must be over
        # before anything is timed (a first measurement without it waited ~2 s for it)
        check(run.measure(bets.make(plan.warmup), None, 180)["complete"], "warm-up", run.w)
        for rt in (rt for rt in plan.bet_rates if rt in (100, 250, 1_000)):
            reps = []
            for i in range(plan.reps):
                n = int(rt * plan.open_s)
                r = run.measure(bets.make(n), rt, max(120, n / 20))
                ctx.say(
                    f"  bets exactly_once, API-framed @{rt}/s rep {i + 1}: "
                    f"p50 {r['p50_ms']} p99 {r['p99_ms']} ms"
                )
                reps.append(r)
            out[f"open_{rt}"] = {"offered_per_s": rt, "reps": reps, **reps_summary(reps)}
        reps = []
        for i in range(plan.reps):
            r = run.measure(bets.make(plan.bet_closed_n), None, max(240, plan.bet_closed_n / 20))
            ctx.say(
                f"  bets exactly_once, API-framed, closed loop rep {i + 1}: {r['throughput_per_s']}/s"
            )
            reps.append(r)
        out["closed_loop"] = {"n": plan.bet_closed_n, "reps": reps, **reps_summary(reps)}
        if run.w.alive():
            out["closed_loop_two_workers"] = _two_workers(ctx, run, bets)
    finally:
        run.feed = None
    return out


def _two_workers(ctx: Ctx, run: Run, bets: Bets) -> dict[str, Any]:
    """The same closed loop with a second worker process sharing the partitions (scale-out
    on the same two cores; on more machines, one worker per core or host joins the group)."""
    plan = ctx.plan
    since = recoveries(run.w)
    w2 = h.Worker(run.s.model_copy(update={"metrics_port": 0}), ctx.log_dir, "bets-w2").start()
    try:
        wait_recovered([run.w, w2], [since, 0])
        reps = []
        for i in range(plan.reps):
            r = run.measure(bets.make(plan.bet_closed_n), None, max(240, plan.bet_closed_n / 20))
            ctx.say(
                f"  bets exactly_once closed loop, two workers, rep {i + 1}: {r['throughput_per_s']}/s"
            )
            reps.append(r)
    finally:
        w2.stop()
    return {"n": plan.bet_closed_n, "workers": 2, "reps": reps, **reps_summary(reps)}


def _profile_bets(
    ctx: Ctx,
    w: h.Worker,
    prod: h.LoadProducer,
    t_in: str,
    bets: Bets,
    col: h.Collector,
    codec: Codec,
    closed: dict[str, Any],
) -> dict[str, Any]:
    """py-spy the worker while it decides a closed-loop batch sized to keep it busy for the
    whole sampling window (the figures of this extra run are not counted)."""
    if not w.alive():
        return {"error": "the worker was no longer running"}
    per_s = closed["throughput_per_s"]["median"] or 200
    n = int(per_s * (ctx.plan.profile_s + 2))
    items = bets.make(n)
    ctx.say(f"  profiling the worker (py-spy, {ctx.plan.profile_s:.0f} s, {n} bets)")
    rec = prof.PySpy(w.pid, ctx.log_dir / "profile-bets.txt", ctx.plan.profile_s)
    if not rec.start():
        return {"error": rec.error}
    try:
        measure_open(prod, t_in, items, None, col, codec, "requested_at", w.alive, 240)
    finally:
        rec.wait()
    summary: dict[str, Any] = rec.summary()
    return summary
