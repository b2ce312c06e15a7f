"""What every scenario shares: the plan (sizes), the context, measuring one load against a
process's outputs, summarising repetitions, and pre-loading markets and balances."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oddsflow.bench import harness as h
from oddsflow.bench.scenarios.records import deposit, price_update
from oddsflow.bench.stats import latency_summary, rate, spread
from oddsflow.codec import Codec
from oddsflow.settings import Settings


def tname(s: Settings, key: str) -> str:
    """A topic's name from topology.yaml (code never hard-codes topic names)."""
    from oddsflow import topology

    return topology.load(settings=s).topic(key).name


@dataclass(frozen=True)
class Plan:
    quick: bool
    reps: int
    warmup: int
    price_closed_n: int
    # Closed loop of the batched feed: several times faster, so more updates for the same time.
    price_batched_closed_n: int
    price_rates: tuple[int, ...]
    open_s: float
    price_guarantees: tuple[str, ...]
    bet_rates: tuple[int, ...]
    bet_closed_n: int
    settle_n: int
    settle_reps: int
    sink_n: int
    raw_n: int
    baseline_n: int
    faust_passthrough_n: int  # closed loop of the Faust passthrough (far slower than librdkafka)
    profile: bool
    profile_s: float

    @classmethod
    def make(cls, quick: bool) -> Plan:
        # Sized for the measured engine (about a thousand decisions/s on 2 cores): over-capacity
        # rates run briefly, since the backlog they build has to drain before the next
        # measurement. The full run places and settles the 100,000-bet burst for real.
        if quick:
            return cls(
                quick=True,
                reps=1,
                warmup=300,
                price_closed_n=2_000,
                price_batched_closed_n=5_000,
                price_rates=(1_000, 5_000),
                open_s=1.5,
                price_guarantees=("exactly_once",),
                bet_rates=(250, 1_000),
                bet_closed_n=2_000,
                settle_n=10_000,
                settle_reps=1,
                sink_n=50_000,
                raw_n=50_000,
                baseline_n=40_000,
                faust_passthrough_n=10_000,
                profile=False,
                profile_s=10.0,
            )
        return cls(
            quick=False,
            reps=3,
            warmup=1_000,
            price_closed_n=5_000,
            price_batched_closed_n=20_000,
            price_rates=(250, 1_000, 5_000),
            open_s=2.0,
            price_guarantees=("exactly_once", "at_least_once"),
            bet_rates=(100, 500, 1_000, 2_000),
            bet_closed_n=5_000,
            settle_n=100_000,
            settle_reps=1,
            sink_n=100_000,
            raw_n=200_000,
            baseline_n=100_000,
            faust_passthrough_n=40_000,
            profile=True,
            profile_s=15.0,
        )


@dataclass
class Ctx:
    base: Settings
    plan: Plan
    log_dir: Path
    say: Callable[[str], None]


class BenchError(RuntimeError):
    pass


def decode_field(codec: Codec, values: list[bytes], fld: str) -> list[int]:
    return [codec.decode(v)[fld] for v in values]


def measure_open(
    prod: h.LoadProducer,
    topic: str,
    items: list[h.Stamped],
    rate_per_s: float | None,
    out: h.Collector,
    codec: Codec,
    ts_field: str,
    alive: Callable[[], bool],
    timeout_s: float,
    cpu_pid: int | None = None,
    feed: h.Feed | None = None,
) -> dict[str, Any]:
    """Send `items` (open loop at `rate_per_s`, or closed loop when None; ``feed``: framed many
    per message), wait for one output per input, and return throughput and latency (output
    consume time - stamped produce time), and the CPU time the engine process used per input
    (``cpu_pid``)."""
    start = out.count()
    n = len(items)
    cpu0, t0 = h.cpu_seconds(cpu_pid), time.monotonic()
    sent = prod.send(topic, items, rate_per_s, feed)
    ok = out.wait_count(start + n, timeout_s, alive)
    cpu1, t1 = h.cpu_seconds(cpu_pid), time.monotonic()
    got = out.count() - start
    times = out.times[start : start + n]
    values = out.values[start : start + n]
    stamps = decode_field(codec, values, ts_field)
    lat = [t - s for t, s in zip(times, stamps, strict=True)]
    last = max(times) if times else None
    dur_s = (last - sent.first_ms) / 1000 if last is not None else None
    res: dict[str, Any] = {
        "offered_per_s": rate_per_s,
        "sent": n,
        "received": got,
        "complete": ok,
        "send_s": round((sent.last_ms - sent.first_ms) / 1000, 3),
        "duration_s": round(dur_s, 3) if dur_s else None,
        "throughput_per_s": round(rate(min(got, n), dur_s) or 0, 1) if ok else None,
        "pacer_behind_ms": round(sent.behind_ms, 1) if rate_per_s else None,
        **latency_summary(lat),
    }
    if cpu0 is not None and cpu1 is not None:
        res["engine_cpu_s"] = round(cpu1 - cpu0, 2)
        res["engine_cpu_util"] = round((cpu1 - cpu0) / max(1e-9, t1 - t0), 3)  # 1.0 = one core
        res["engine_cpu_ms_per_input"] = round(1000 * (cpu1 - cpu0) / max(1, n), 3)
    return res


def reps_summary(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the complete repetitions only: a repetition whose outputs did not all arrive
    (the engine stalled or died) has no valid latency or throughput; it is counted instead."""
    ok = [r for r in reps if r.get("complete")]
    out: dict[str, Any] = {
        k: spread(r.get(k) for r in ok)
        for k in (
            "throughput_per_s",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "max_ms",
            "engine_cpu_ms_per_input",
        )
    }
    out["incomplete_reps"] = len(reps) - len(ok)
    return out


def start_worker(
    ctx: Ctx, s: Settings, name: str, extra_env: Mapping[str, str] | None = None
) -> h.Worker:
    ctx.say(f"  starting worker ({s.processing_guarantee}, prefix {s.topic_prefix})")
    return h.Worker(s, ctx.log_dir, name, extra_env=extra_env).start()


@dataclass
class Run:
    """A worker on its own topic prefix with its load producer and the collector of one output
    topic: ``measure`` sends a load to the input topic and waits for one output per input."""

    s: Settings
    w: h.Worker
    port: int  # the worker's /metrics
    prod: h.LoadProducer
    col: h.Collector
    codec: Codec
    t_in: str
    ts_field: str
    feed: h.Feed | None = None  # the input as a front end frames it (a topic of batches)

    def measure(
        self, items: list[h.Stamped], rate_per_s: float | None, timeout_s: float
    ) -> dict[str, Any]:
        return measure_open(
            self.prod,
            self.t_in,
            items,
            rate_per_s,
            self.col,
            self.codec,
            self.ts_field,
            self.w.alive,
            timeout_s,
            self.w.pid,
            self.feed,
        )


# (input topic key, output topic key, output schema, the output's field carrying the stamp)
PRICES_IO = ("price_updates", "priced_markets", "priced_market", "provider_ts")
BETS_IO = ("bet_requests", "bet_decisions", "bet_decision", "requested_at")


@contextlib.contextmanager
def worker_run(
    ctx: Ctx,
    tag: str,
    name: str,
    io: tuple[str, str, str, str],
    *,
    preload_events: list[str] | None = None,
    accounts: int = 0,
    extra_env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Iterator[Run]:
    """Start a worker with ``overrides`` of the settings (and ``extra_env``) on fresh topics,
    pre-load ``preload_events``' markets and ``accounts`` funded accounts if given, and collect
    its outputs; stop it and delete its topics afterwards."""
    from oddsflow.bench.scenarios import worker_metrics as wm

    port = wm.free_port()
    s = h.fresh_settings(ctx.base, tag, metrics_port=port, **overrides)
    in_key, out_key, schema, ts_field = io
    w = start_worker(ctx, s, name, extra_env)
    col = None
    try:
        prod = h.LoadProducer(s)
        if preload_events is not None:
            preload(ctx, s, w, prod, preload_events, accounts, 10_000_000_00)
        col = h.Collector(s, [tname(s, out_key)])
        yield Run(s, w, port, prod, col, Codec(schema), tname(s, in_key), ts_field)
    finally:
        if col is not None:
            col.stop()
        w.stop()
        h.delete_topics(s)


def recoveries(w: h.Worker) -> int:
    """How many times ``w`` has rebuilt its tables (once per assignment it was given)."""
    return w.log_tail(10_000_000).count("recovered {")


def wait_recovered(
    workers: list[h.Worker], since: list[int] | None = None, timeout_s: float = 120
) -> None:
    """Until every worker has rebuilt its tables more often than ``since`` (its count before a
    worker joined or left), then a little longer: a worker that joined last triggers one more
    round of the group."""
    counts = since or [0] * len(workers)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(recoveries(w) > n for w, n in zip(workers, counts, strict=True)):
            time.sleep(3)
            return
        if not all(w.alive() for w in workers):
            break
        time.sleep(0.5)
    check(False, "workers to recover their tables", workers[0])


def summarize(reps: list[dict[str, Any]], *keys: str) -> dict[str, Any]:
    """A scenario's repetitions with the median and spread of each of ``keys`` across them."""
    return {"reps": reps, **{k: spread(r[k] for r in reps) for k in keys}}


def check(ok: bool, what: str, w: h.Worker | None = None) -> None:
    if not ok:
        raise BenchError(
            f"timed out waiting for {what}" + (f"; worker log tail:\n{w.log_tail()}" if w else "")
        )


def preload(
    ctx: Ctx,
    s: Settings,
    w: h.Worker,
    prod: h.LoadProducer,
    events: list[str],
    accounts: int,
    balance_minor: int,
) -> None:
    col_p = h.Collector(s, [tname(s, "priced_markets")])
    col_l = h.Collector(s, [tname(s, "ledger")])
    try:
        prod.send_records(
            Codec("price_update"),
            tname(s, "price_updates"),
            [(e, {**price_update(e, 1), "provider_ts": int(h.now_ms())}) for e in events],
        )
        prod.send_records(
            Codec("deposit"),
            tname(s, "deposits"),
            [(f"a{i}", deposit(f"a{i}", balance_minor)) for i in range(accounts)],
        )
        check(col_p.wait_count(len(events), 180, w.alive), "pre-loaded markets", w)
        check(col_l.wait_count(accounts, 120, w.alive), "pre-loaded deposits", w)
    finally:
        col_p.stop()
        col_l.stop()


def accepted_count(values: list[bytes]) -> int:
    c = Codec("bet_decision")
    return sum(1 for v in values if c.decode(v)["accepted"])
