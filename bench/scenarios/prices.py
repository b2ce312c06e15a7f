"""The ``prices`` scenario: price updates in, priced markets out, per processing guarantee, and
for the first guarantee with price conflation (``conflate_prices``) off and on, with one update
per message and with the batched feed the ingestors write (many updates per message).

With conflation a batch's superseded updates of a market are not priced, so a load of N updates
gives fewer than N publications. A measurement is therefore complete when the worker has
consumed every update (its ``oddsflow_events_in_total`` for the pricing agent) and published
every update it did not conflate away (``oddsflow_price_updates_conflated_total``). Two lags:
``p50_ms``/``p99_ms`` per publication (consume time - the priced update's ``provider_ts``, as
without conflation) and ``update_lag_*`` per input update: until the first publication of its
market that carries it or a later update. Each measurement also checks the invariants: every
market's latest update is published, and a market's publications never go back in time.
"""

from __future__ import annotations

import bisect
import time
from typing import Any

from oddsflow.bench import harness as h
from oddsflow.bench.scenarios import worker_metrics as wm
from oddsflow.bench.scenarios.common import PRICES_IO, Ctx, Run, check, reps_summary, worker_run
from oddsflow.bench.scenarios.records import Prices
from oddsflow.bench.stats import latency_summary, rate, spread
from oddsflow.codec import Codec

EVENTS_IN = "oddsflow_events_in_total"
CONFLATED = "oddsflow_price_updates_conflated_total"
PRICING = (("agent", "pricing"), ("topic", "price_updates"))


def scenario_prices(ctx: Ctx) -> dict[str, Any]:
    plan = ctx.plan
    default = ctx.base.conflate_prices
    out: dict[str, Any] = {}
    conflation: dict[str, Any] = {}
    for guarantee in plan.price_guarantees:
        first = guarantee == plan.price_guarantees[0]
        # conflation off and on under the first guarantee, the default under the others
        for conflate in (default, not default) if first else (default,):
            with worker_run(
                ctx,
                "p",
                "prices",
                PRICES_IO,
                processing_guarantee=guarantee,
                conflate_prices=conflate,
            ) as run:
                label = f"{guarantee}, conflation {'on' if conflate else 'off'}"
                g = _prices(ctx, run, label, closed_loop=first)
            g["conflate_prices"] = conflate
            if conflate == default:
                out[guarantee] = g
            if first:
                conflation["guarantee"] = guarantee
                conflation["on" if conflate else "off"] = g
    if conflation:
        out["conflation"] = conflation
    # The feed as the replay and UOF ingestors write it (a topic of batches: many updates per
    # message), conflation off and on, under the first guarantee.
    guarantee = plan.price_guarantees[0]
    batched: dict[str, Any] = {"guarantee": guarantee}
    for conflate in (False, True):
        with worker_run(
            ctx,
            "pb",
            "prices",
            PRICES_IO,
            processing_guarantee=guarantee,
            conflate_prices=conflate,
        ) as run:
            label = f"{guarantee}, batched feed, conflation {'on' if conflate else 'off'}"
            g = _prices(ctx, run, label, closed_loop=True, batched=True)
        g["conflate_prices"] = conflate
        batched["on" if conflate else "off"] = g
    out["batched"] = batched
    return out


def _prices(
    ctx: Ctx, run: Run, label: str, *, closed_loop: bool, batched: bool = False
) -> dict[str, Any]:
    """``batched``: the load goes out as a feed ingestor writes it, many updates per message
    (``LoadProducer.send_batched``); otherwise one update per message."""
    plan, w = ctx.plan, run.w
    prices = Prices([f"e{i}" for i in range(200)])
    feed = BATCHED_FEED if batched else None
    # warm-up: the first outputs also tell us the worker is up
    r = measure_prices(run, prices.make(plan.warmup), None, 180, feed)
    check(r["complete"], "warm-up priced markets", w)
    g: dict[str, Any] = {"batched_feed": batched}
    if closed_loop:
        reps = []
        n = plan.price_batched_closed_n if batched else plan.price_closed_n
        for i in range(plan.reps):
            r = measure_prices(run, prices.make(n), None, 120, feed)
            ctx.say(
                f"  prices {label} closed loop rep {i + 1}: {r['throughput_per_s']}/s "
                f"({r['published']} published)"
            )
            reps.append(r)
        g["closed_loop"] = {"n": n, "reps": reps, **_summary(reps)}
    with wm.Sampler(run.port) as sampler:  # the view reads what this worker publishes
        for rt in plan.price_rates:
            reps = []
            for i in range(plan.reps):
                r = measure_prices(run, prices.make(int(rt * plan.open_s)), rt, 120, feed)
                ctx.say(
                    f"  prices {label} @{rt}/s rep {i + 1}: lag p50 {r['p50_ms']} "
                    f"p99 {r['p99_ms']} ms, update lag p99 {r['update_lag_p99_ms']} ms "
                    f"({r['published']} published)"
                )
                reps.append(r)
            g[f"open_{rt}"] = {
                "offered_per_s": rt,
                "seconds": plan.open_s,
                "reps": reps,
                **_summary(reps),
            }
    g["market_view"] = wm.view_lag(sampler.samples)
    return g


def _summary(reps: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in reps if r.get("complete")]
    extra = ("update_lag_p50_ms", "update_lag_p99_ms", "published", "conflated")
    return {
        **reps_summary(reps),
        **{k: spread(r.get(k) for r in ok) for k in extra},
        "invariants_held": all(r.get("latest_published") and r.get("in_order") for r in ok),
    }


def _pricing_counts(port: int) -> tuple[float, float] | None:
    """(updates consumed, updates conflated) by the worker so far, None if it does not say."""
    sample = wm.scrape(port)
    if sample is None:
        return None
    consumed = sample.get((EVENTS_IN, PRICING))
    return (consumed or 0.0, sample.get((CONFLATED, ()), 0.0)) if consumed is not None else None


def follow_updates(
    updates: list[tuple[str, int]], pubs: list[tuple[str, int, float]]
) -> tuple[list[float], bool, bool]:
    """Each update's lag until its market's first publication of it or of a later update.

    ``updates``: (market, stamp) in the order sent; ``pubs``: (market, stamp of the update
    priced, consume time ms) in arrival order. Returns the lags (updates never covered have
    none), whether every market's publications kept their updates' order, and whether every
    market's latest update was published. The bench has one market per event."""
    by_market: dict[str, tuple[list[int], list[float]]] = {}
    for market, stamp, at in pubs:
        stamps, ats = by_market.setdefault(market, ([], []))
        stamps.append(stamp)
        ats.append(at)
    in_order = all(st == sorted(st) for st, _ in by_market.values())
    latest: dict[str, int] = {}
    lags: list[float] = []
    for market, stamp in updates:
        latest[market] = max(latest.get(market, stamp), stamp)
        stamps, ats = by_market.get(market, ([], []))
        j = bisect.bisect_left(stamps, stamp) if in_order else len(stamps)
        if j < len(stamps):
            lags.append(ats[j] - stamp)
    published = all(
        market in by_market and max(by_market[market][0]) >= stamp
        for market, stamp in latest.items()
    )
    return lags, in_order, published


# (batch codec, item codec) of price_updates, a topic of batches
BATCHED_FEED = (Codec("price_update_batch"), Codec("price_update"))


def measure_prices(
    run: Run,
    items: list[h.Stamped],
    rate_per_s: float | None,
    timeout_s: float,
    batched: tuple[Codec, Codec] | None = None,
) -> dict[str, Any]:
    """Send ``items`` (open loop at ``rate_per_s``, closed loop when None; ``batched``: framed
    many per message, as a feed ingestor writes them) and wait until the worker has consumed
    them all and published each it did not conflate."""
    col, n = run.col, len(items)
    start = col.count()
    before = _pricing_counts(run.port) or (0.0, 0.0)
    cpu0, t0 = h.cpu_seconds(run.w.pid), time.monotonic()
    if batched is None:
        sent = run.prod.send(run.t_in, items, rate_per_s)
    else:
        sent = run.prod.send_batched(run.t_in, items, rate_per_s, *batched)
    deadline = time.monotonic() + timeout_s
    ok, consumed, conflated, scraped = False, 0, 0, 0.0
    while time.monotonic() < deadline and run.w.alive():
        # the worker's metrics are read a few times a second only (its endpoint shares the
        # event loop's process); the collector's count is checked often (it is in this one).
        # The figures come from the outputs' consume times, not from when this loop sees them.
        if time.monotonic() - scraped >= 0.2:
            scraped = time.monotonic()
            counts = _pricing_counts(run.port)
            if counts is not None:
                consumed, conflated = int(counts[0] - before[0]), int(counts[1] - before[1])
        if consumed >= n and col.count() - start >= n - conflated:
            ok = True
            break
        time.sleep(0.005)
    cpu1, t1 = h.cpu_seconds(run.w.pid), time.monotonic()
    times, values = col.times[start:], col.values[start:]
    pubs = [run.codec.decode(v) for v in values]
    lat = [t - p["provider_ts"] for t, p in zip(times, pubs, strict=True)]
    update_lag, in_order, latest_published = follow_updates(
        [(it.key.decode(), stamp) for it, stamp in zip(items, sent.stamps, strict=True)],
        [(p["event_id"], p["provider_ts"], t) for t, p in zip(times, pubs, strict=True)],
    )
    last = max(times) if times else None
    dur_s = (last - sent.first_ms) / 1000 if last is not None else None
    ul = latency_summary(update_lag)
    res: dict[str, Any] = {
        "offered_per_s": rate_per_s,
        "sent": n,
        "received": len(times),
        "published": len(times),
        "conflated": conflated,
        "complete": ok,
        "send_s": round((sent.last_ms - sent.first_ms) / 1000, 3),
        "duration_s": round(dur_s, 3) if dur_s else None,
        # updates handled per second (consumed, priced or conflated away)
        "throughput_per_s": round(rate(n, dur_s) or 0, 1) if ok else None,
        "pacer_behind_ms": round(sent.behind_ms, 1) if rate_per_s else None,
        **latency_summary(lat),
        "update_lag_p50_ms": ul["p50_ms"],
        "update_lag_p99_ms": ul["p99_ms"],
        "latest_published": latest_published,
        "in_order": in_order,
    }
    if cpu0 is not None and cpu1 is not None:
        res["engine_cpu_s"] = round(cpu1 - cpu0, 2)
        res["engine_cpu_util"] = round((cpu1 - cpu0) / max(1e-9, t1 - t0), 3)
        res["engine_cpu_ms_per_input"] = round(1000 * (cpu1 - cpu0) / max(1, n), 3)
    return res
