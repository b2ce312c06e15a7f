"""The ``settlement_burst`` scenario: bets on one market, then one result settles them all
(one worker, then two workers sharing the partitions)."""

from __future__ import annotations

import time
from typing import Any

from oddsflow.bench import harness as h
from oddsflow.bench import profile as prof
from oddsflow.bench.scenarios.common import (
    Ctx,
    accepted_count,
    check,
    measure_open,
    preload,
    summarize,
    tname,
    wait_recovered,
)
from oddsflow.bench.scenarios.records import Bets, result
from oddsflow.codec import Codec


def _burst(ctx: Ctx, workers: int, profile: bool = False) -> dict[str, Any]:
    """Place ``plan.settle_n`` bets on one market, then time one result settling them all
    (``profile``: py-spy the first worker from the result on, for ``plan.profile_s``)."""
    plan = ctx.plan
    s = h.fresh_settings(ctx.base, "s", processing_guarantee="exactly_once")
    ctx.say(f"  starting {workers} worker(s) (exactly_once, prefix {s.topic_prefix})")
    ws = [h.Worker(s, ctx.log_dir, f"settle{i}").start() for i in range(workers)]

    def alive() -> bool:
        return all(w.alive() for w in ws)

    prod = h.LoadProducer(s)
    ev, accounts, n = "burst0", 1_000, plan.settle_n
    cols: list[h.Collector] = []
    try:
        if workers > 1:
            wait_recovered(ws)
        preload(ctx, s, ws[0], prod, [ev], accounts, 10_000_000_00)
        col_d = h.Collector(s, [tname(s, "bet_decisions")])
        col_s = h.Collector(s, [tname(s, "settlements")])
        col_l = h.Collector(s, [tname(s, "ledger")])
        cols = [col_d, col_s, col_l]
        t0 = time.monotonic()
        r = measure_open(
            prod,
            tname(s, "bet_requests"),
            Bets(s, accounts, [ev]).make(n, ev),
            None,
            col_d,
            Codec("bet_decision"),
            "requested_at",
            alive,
            max(300, n / 20),
        )
        check(r["complete"], "burst bets decided", ws[0])
        accepted = accepted_count(col_d.values[-n:])
        expect_ledger = accounts + 2 * n  # deposits + (reserve, accept) per bet
        check(col_l.wait_count(expect_ledger, 60, alive), "reserve/accept ledger", ws[0])
        place_s = time.monotonic() - t0
        # The bets are open once their event partition has recorded every accepted leg (off
        # the decision path, so it may trail the decisions): the result comes after that, as
        # a match's result comes long after its bets.
        t_open = time.monotonic()
        check(
            h.wait_consumed(s, "accepted_legs", max(600, n / 20), alive),
            "accepted legs recorded as open legs",
            ws[0],
        )
        legs_open_s = time.monotonic() - t_open
        s0, l0 = col_s.count(), col_l.count()
        rec = prof.PySpy(ws[0].pid, ctx.log_dir / "profile-settle.txt", ctx.plan.profile_s)
        profiling = profile and rec.start()
        sent_ms = h.now_ms()
        prod.send_records(Codec("result"), tname(s, "results"), [(ev, result(ev))])
        ok = col_s.wait_count(s0 + accepted, max(600, n / 20), alive) and col_l.wait_count(
            l0 + accepted, 120, alive
        )
        if profiling:
            rec.wait()
        check(ok, "every settlement and settle transaction", ws[0])
        last = max(col_s.times[s0 + accepted - 1], col_l.times[l0 + accepted - 1])
        dur = (last - sent_ms) / 1000
        # How long a punter waits for a bet's settlement after the result, bet by bet.
        waits_ms = sorted(t - sent_ms for t in col_s.times[s0 : s0 + accepted])
        rep = {
            "workers": workers,
            "bets": n,
            "accepted": accepted,
            "place_s": round(place_s, 2),
            "legs_open_after_decisions_s": round(legs_open_s, 2),
            "placement_per_s": r["throughput_per_s"],
            "burst_s": round(dur, 3),
            "first_settlement_ms": round(col_s.times[s0] - sent_ms, 1),
            "settlement_p50_ms": round(waits_ms[len(waits_ms) // 2], 1),
            "settlements_per_s": round(accepted / dur, 1),
            "extrapolated_100k_s": round(dur * 100_000 / max(1, accepted), 1),
        }
        if profile:
            rep["profile"] = rec.summary() if profiling else {"error": rec.error}
        ctx.say(
            f"  settlement burst, {workers} worker(s): {accepted} bets settled in "
            f"{rep['burst_s']} s (placed at {rep['placement_per_s']}/s)"
        )
        return rep
    finally:
        for c in cols:
            c.stop()
        for w in ws:
            w.stop()
        h.delete_topics(s)


def scenario_settlement_burst(ctx: Ctx) -> dict[str, Any]:
    """One worker (as every other scenario), then the same burst on two workers sharing the
    partitions (scale-out on the same two cores)."""
    plan = ctx.plan
    # The first one-worker burst is profiled in the full run: where the settle phase's time goes.
    reps = [_burst(ctx, 1, profile=plan.profile and i == 0) for i in range(plan.settle_reps)]
    out: dict[str, Any] = {
        "n": plan.settle_n,
        **summarize(
            reps,
            "burst_s",
            "settlements_per_s",
            "extrapolated_100k_s",
            "first_settlement_ms",
            "settlement_p50_ms",
        ),
        "note": (
            "measured N bets on one market; 100,000-bet figure extrapolated linearly from the "
            "measured rate"
            if plan.settle_n != 100_000
            else "measured at 100,000 bets"
        ),
    }
    reps2 = [_burst(ctx, 2) for _ in range(plan.settle_reps)]
    out["two_workers"] = summarize(
        reps2,
        "burst_s",
        "settlements_per_s",
        "extrapolated_100k_s",
        "placement_per_s",
        "first_settlement_ms",
        "settlement_p50_ms",
    )
    return out
