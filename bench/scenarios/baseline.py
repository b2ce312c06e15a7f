"""The ``baseline`` scenario: what the engine is measured against, in the same run."""

from __future__ import annotations

import subprocess
import time
from typing import Any

from oddsflow.bench import harness as h
from oddsflow.bench import passthrough, passthrough_faust
from oddsflow.bench.scenarios.common import Ctx, check, measure_open, reps_summary, summarize, tname
from oddsflow.bench.scenarios.records import Bets, Prices
from oddsflow.codec import Codec
from oddsflow.settings import Settings

# offered rates of the passthroughs' open-loop runs: the bets' p50 and p99 targets' rates
# (decisions @100/s and @1,000/s) and the prices' p99 target's (publish lag @5,000/s)
PASSTHROUGH_RATES: dict[str, tuple[int, ...]] = {"bets": (100, 1_000), "prices": (5_000,)}


def scenario_baseline(ctx: Ctx) -> dict[str, Any]:
    """confluent-kafka consume -> produce passthrough of the same Avro bytes (same topics,
    partitions and keys), plain and transactional, plus raw producer throughput; and the Faust
    passthrough (``bench.passthrough_faust``: the worker's framework and transport under
    exactly_once, forwarding only), so framework cost and engine logic are told apart."""
    plan = ctx.plan
    out: dict[str, Any] = {}
    # in-process ceiling: the handlers and the codec with no Kafka, Faust or asyncio
    from oddsflow.bench import ceiling

    n = 2_000 if plan.quick else 20_000
    ceiling.measure(ctx.base, n)  # warm-up, not counted: the first pass fills imports and caches
    reps = [ceiling.measure(ctx.base, n) for _ in range(plan.reps)]
    for i, r in enumerate(reps, start=1):
        ctx.say(
            f"  in-process ceiling rep {i}: {r['bets_per_s']} bets/s ({r['us_per_bet']} us), "
            f"{r['prices_per_s']} prices/s ({r['us_per_price']} us)"
        )
    out["ceiling"] = summarize(reps, "bets_per_s", "prices_per_s")
    # raw producer: pre-encoded bet requests, as fast as the client and broker take them
    s = h.fresh_settings(ctx.base, "r")
    bets = Bets(s, 1000, [f"e{i}" for i in range(50)])
    items = bets.make(min(plan.raw_n, 20_000))
    ts = int(h.now_ms())
    payload = [(it.key, it.value(ts)) for it in items]
    reps = []
    for i in range(plan.reps + 1):
        from confluent_kafka import Producer

        from oddsflow.kafka import producer_config

        p = Producer(producer_config(s))
        topic = tname(s, "bet_requests")
        t0 = time.perf_counter()
        for k in range(plan.raw_n):
            key, val = payload[k % len(payload)]
            while True:
                try:
                    p.produce(topic, value=val, key=key)
                    break
                except BufferError:
                    p.poll(0.005)
        p.flush(60)
        dt = time.perf_counter() - t0
        if i:
            reps.append(
                {"n": plan.raw_n, "seconds": round(dt, 3), "msgs_per_s": round(plan.raw_n / dt, 1)}
            )
            ctx.say(f"  raw producer rep {i}: {reps[-1]['msgs_per_s']} msgs/s")
    out["raw_producer"] = summarize(reps, "msgs_per_s")
    h.delete_topics(s)

    for mode in ("transactional", "plain"):
        s = h.fresh_settings(ctx.base, "t")
        pt = passthrough.start(
            s,
            ctx.log_dir,
            transactional=(mode == "transactional"),
            commit_interval_s=s.commit_interval_s,
        )
        try:
            out[f"passthrough_{mode}"] = measure_passthrough(
                ctx, s, pt, f"passthrough {mode}", plan.baseline_n, 60
            )
        finally:
            passthrough.stop(pt)
            h.delete_topics(s)
    # the framework baseline: Faust on the project's transport, exactly_once, forwarding only
    s = h.fresh_settings(ctx.base, "f", processing_guarantee="exactly_once")
    ctx.say(f"  starting the Faust passthrough (exactly_once, prefix {s.topic_prefix})")
    pt = passthrough_faust.start(s, ctx.log_dir)
    try:
        g = measure_passthrough(ctx, s, pt, "passthrough faust", plan.faust_passthrough_n, 180)
        g["commit_interval_s"] = s.commit_interval_s
        out["passthrough_faust"] = g
    finally:
        passthrough.stop(pt)
        h.delete_topics(s)
    return out


def measure_passthrough(
    ctx: Ctx,
    s: Settings,
    pt: subprocess.Popen[bytes],
    label: str,
    closed_n: int,
    warmup_timeout_s: float,
) -> dict[str, Any]:
    """A passthrough process's figures: bets and prices copied in a closed loop of
    ``closed_n``, and the copy latency at each of ``PASSTHROUGH_RATES`` offered."""
    plan = ctx.plan
    col_b = h.Collector(s, [passthrough.copy_topic(s, "bet_requests")])
    col_p = h.Collector(s, [passthrough.copy_topic(s, "price_updates")])
    bcodec, pcodec = Codec("bet_request"), Codec("price_update")
    prod = h.LoadProducer(s)
    bets = Bets(s, 1000, [f"e{i}" for i in range(50)])
    prices = Prices([f"e{i}" for i in range(200)])
    g: dict[str, Any] = {}

    def alive() -> bool:
        return pt.poll() is None

    try:
        r = measure_open(
            prod,
            tname(s, "bet_requests"),
            bets.make(plan.warmup),
            None,
            col_b,
            bcodec,
            "placed_at",
            alive,
            warmup_timeout_s,
        )
        check(r["complete"], f"{label} warm-up")
        for name, topic, col, codec, fld, mk in (
            ("bets", "bet_requests", col_b, bcodec, "placed_at", bets.make),
            ("prices", "price_updates", col_p, pcodec, "provider_ts", prices.make),
        ):
            reps = [
                measure_open(
                    prod, tname(s, topic), mk(closed_n), None, col, codec, fld, alive, 120, pt.pid
                )
                for _ in range(plan.reps)
            ]
            g[f"{name}_closed_loop"] = {"n": closed_n, "reps": reps, **reps_summary(reps)}
            for rt in PASSTHROUGH_RATES[name]:
                reps = [
                    measure_open(
                        prod,
                        tname(s, topic),
                        mk(int(rt * plan.open_s)),
                        rt,
                        col,
                        codec,
                        fld,
                        alive,
                        120,
                        pt.pid,
                    )
                    for _ in range(plan.reps)
                ]
                g[f"{name}_open_{rt}"] = {"offered_per_s": rt, "reps": reps, **reps_summary(reps)}
            rt = PASSTHROUGH_RATES[name][-1]
            ctx.say(
                f"  {label} {name}: {g[f'{name}_closed_loop']['throughput_per_s']['median']}/s, "
                f"p99 @{rt}/s {g[f'{name}_open_{rt}']['p99_ms']['median']} ms"
            )
    finally:
        col_b.stop()
        col_p.stop()
    return g
