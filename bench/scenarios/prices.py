"""The ``prices`` scenario: price updates in, priced markets out, per processing guarantee."""

from __future__ import annotations

from typing import Any

from oddsflow.bench import harness as h
from oddsflow.bench.scenarios import worker_metrics as wm
from oddsflow.bench.scenarios.common import (
    Ctx,
    check,
    measure_open,
    reps_summary,
    start_worker,
    tname,
)
from oddsflow.bench.scenarios.records import Prices
from oddsflow.codec import Codec


def scenario_prices(ctx: Ctx) -> dict[str, Any]:
    plan = ctx.plan
    out: dict[str, Any] = {}
    for guarantee in plan.price_guarantees:
        port = wm.free_port()  # the worker's /metrics: the market view's lag
        s = h.fresh_settings(ctx.base, "p", processing_guarantee=guarantee, metrics_port=port)
        topo_in, topo_out = tname(s, "price_updates"), tname(s, "priced_markets")
        w = start_worker(ctx, s, "prices")
        col = h.Collector(s, [topo_out])
        prod = h.LoadProducer(s)
        codec = Codec("priced_market")
        prices = Prices([f"e{i}" for i in range(200)])
        try:
            # warm-up: the first outputs also tell us the worker is up
            r = measure_open(
                prod,
                topo_in,
                prices.make(plan.warmup),
                None,
                col,
                codec,
                "provider_ts",
                w.alive,
                180,
                w.pid,
            )
            check(r["complete"], "warm-up priced markets", w)
            g: dict[str, Any] = {}
            if guarantee == plan.price_guarantees[0]:
                reps = []
                for i in range(plan.reps):
                    r = measure_open(
                        prod,
                        topo_in,
                        prices.make(plan.price_closed_n),
                        None,
                        col,
                        codec,
                        "provider_ts",
                        w.alive,
                        120,
                        w.pid,
                    )
                    ctx.say(
                        f"  prices {guarantee} closed loop rep {i + 1}: {r['throughput_per_s']}/s"
                    )
                    reps.append(r)
                g["closed_loop"] = {"n": plan.price_closed_n, "reps": reps, **reps_summary(reps)}
            with wm.Sampler(port) as sampler:  # the view reads what this worker publishes
                for rt in plan.price_rates:
                    reps = []
                    for i in range(plan.reps):
                        r = measure_open(
                            prod,
                            topo_in,
                            prices.make(int(rt * plan.open_s)),
                            rt,
                            col,
                            codec,
                            "provider_ts",
                            w.alive,
                            120,
                            w.pid,
                        )
                        ctx.say(
                            f"  prices {guarantee} @{rt}/s rep {i + 1}: lag p50 {r['p50_ms']} p99 {r['p99_ms']} ms"
                        )
                        reps.append(r)
                    g[f"open_{rt}"] = {
                        "offered_per_s": rt,
                        "seconds": plan.open_s,
                        "reps": reps,
                        **reps_summary(reps),
                    }
            g["market_view"] = wm.view_lag(sampler.samples)
            out[guarantee] = g
        finally:
            col.stop()
            w.stop()
            h.delete_topics(s)
    return out
