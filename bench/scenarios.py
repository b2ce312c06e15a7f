"""The benchmark scenarios. Each returns a JSON-able dict of measured figures (never typed in).

Sizes come from :class:`Plan` (``--quick`` or full). Each scenario runs on its own topic
prefix; the engine runs as a real ``oddsflow worker`` subprocess.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from oddsflow.bench import harness as h
from oddsflow.bench import profile as prof
from oddsflow.bench.stats import latency_summary, rate, spread
from oddsflow.codec import Codec
from oddsflow.domain import ledger
from oddsflow.settings import Settings


def tname(s: Settings, key: str) -> str:
    """A topic's name from topology.yaml (code never hard-codes topic names)."""
    from oddsflow import topology

    return topology.load(settings=s).topic(key).name


ODDS = ("2.10", "3.40", "3.60")


@dataclass(frozen=True)
class Plan:
    quick: bool
    reps: int
    warmup: int
    price_closed_n: int
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
                profile=False,
                profile_s=10.0,
            )
        return cls(
            quick=False,
            reps=3,
            warmup=1_000,
            price_closed_n=5_000,
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


# ------------------------------------------------------------------------------ record builders
def price_update(event_id: str, seq: int, odds: tuple[str, ...] = ODDS) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "provider": "bench",
        "seq": seq,
        "market_id": "",
        "market_type": "match_result",
        "period": "FT",
        "line": None,
        "selections": [
            {"selection": s, "odds": Decimal(o)}
            for s, o in zip(("home", "draw", "away"), odds, strict=True)
        ],
        "provider_ts": 0,
    }


def deposit(account_id: str, amount_minor: int) -> dict[str, Any]:
    return {
        "ref": f"dep-{account_id}",
        "account_id": account_id,
        "amount_minor": amount_minor,
        "currency": "GBP",
        "created_at": int(h.now_ms()),
    }


def bet(bet_id: str, account_id: str, event_id: str, stake_minor: int = 100) -> dict[str, Any]:
    return {
        "bet_id": bet_id,
        "account_id": account_id,
        "stake_minor": stake_minor,
        "currency": "GBP",
        "price_policy": "any",
        "legs": [
            {
                "event_id": event_id,
                "market_type": "match_result",
                "period": "FT",
                "line": None,
                "selection": "home",
                "odds": Decimal("2.00"),
            }
        ],
        "placed_at": 0,
        "channel": "bench",
    }


def result(event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "provider": "bench",
        "seq": 1_000_000,
        "status": "final",
        "ft_home": 2,
        "ft_away": 1,
        "ht_home": 1,
        "ht_away": 0,
        "revision": 0,
        "provider_ts": int(h.now_ms()),
    }


class Bets:
    """Stamped bet requests with unique ids, spread over accounts and events."""

    def __init__(self, s: Settings, accounts: int, events: list[str]) -> None:
        self.codec = Codec("bet_request")
        self.accounts, self.events = accounts, events
        self.tag = uuid.uuid4().hex[:6]
        self.next = 0

    def make(self, n: int, event: str | None = None) -> list[h.Stamped]:
        out = []
        for k in range(self.next, self.next + n):
            acct = f"a{k % self.accounts}"
            ev = event or self.events[k % len(self.events)]
            out.append(h.stamped(self.codec, acct, bet(f"{self.tag}-{k}", acct, ev), "placed_at"))
        self.next += n
        return out


class Prices:
    """Stamped price updates with an increasing seq per event (so none is stale)."""

    def __init__(self, events: list[str]) -> None:
        self.codec = Codec("price_update")
        self.events = events
        self.seq = 0
        odds = [("2.10", "3.40", "3.60"), ("2.20", "3.30", "3.50"), ("2.00", "3.50", "3.80")]
        self._odds = odds

    def make(self, n: int) -> list[h.Stamped]:
        out = []
        E = len(self.events)
        for k in range(n):
            if k % E == 0:
                self.seq += 1
            ev = self.events[k % E]
            out.append(
                h.stamped(
                    self.codec,
                    ev,
                    price_update(ev, self.seq, self._odds[self.seq % 3]),
                    "provider_ts",
                )
            )
        return out


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
) -> dict[str, Any]:
    """Send `items` (open loop at `rate_per_s`, or closed loop when None), wait for one output per
    input, and return throughput and latency (output consume time - stamped produce time), and
    the CPU time the engine process used per input (``cpu_pid``)."""
    start = out.count()
    n = len(items)
    cpu0, t0 = h.cpu_seconds(cpu_pid), time.monotonic()
    sent = prod.send(topic, items, rate_per_s)
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


def _reps_summary(reps: list[dict[str, Any]]) -> dict[str, Any]:
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


def _start_worker(ctx: Ctx, s: Settings, name: str) -> h.Worker:
    ctx.say(f"  starting worker ({s.processing_guarantee}, prefix {s.topic_prefix})")
    return h.Worker(s, ctx.log_dir, name).start()


def _summary(reps: list[dict[str, Any]], *keys: str) -> dict[str, Any]:
    """A scenario's repetitions with the median and spread of each of ``keys`` across them."""
    return {"reps": reps, **{k: spread(r[k] for r in reps) for k in keys}}


def _check(ok: bool, what: str, w: h.Worker | None = None) -> None:
    if not ok:
        raise BenchError(
            f"timed out waiting for {what}" + (f"; worker log tail:\n{w.log_tail()}" if w else "")
        )


# ------------------------------------------------------------------------------------- prices
def scenario_prices(ctx: Ctx) -> dict[str, Any]:
    plan = ctx.plan
    out: dict[str, Any] = {}
    for guarantee in plan.price_guarantees:
        s = h.fresh_settings(ctx.base, "p", processing_guarantee=guarantee)
        topo_in, topo_out = tname(s, "price_updates"), tname(s, "priced_markets")
        w = _start_worker(ctx, s, "prices")
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
            _check(r["complete"], "warm-up priced markets", w)
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
                g["closed_loop"] = {"n": plan.price_closed_n, "reps": reps, **_reps_summary(reps)}
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
                    **_reps_summary(reps),
                }
            out[guarantee] = g
        finally:
            col.stop()
            w.stop()
            h.delete_topics(s)
    return out


# --------------------------------------------------------------------------------------- bets
def _preload(
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
        _check(col_p.wait_count(len(events), 180, w.alive), "pre-loaded markets", w)
        _check(col_l.wait_count(accounts, 120, w.alive), "pre-loaded deposits", w)
    finally:
        col_p.stop()
        col_l.stop()


def _accepted(values: list[bytes]) -> int:
    c = Codec("bet_decision")
    return sum(1 for v in values if c.decode(v)["accepted"])


def scenario_bets(ctx: Ctx) -> dict[str, Any]:
    plan = ctx.plan
    out: dict[str, Any] = {}
    for guarantee in ("exactly_once", "at_least_once"):
        s = h.fresh_settings(ctx.base, "b", processing_guarantee=guarantee)
        t_in, t_out = tname(s, "bet_requests"), tname(s, "bet_decisions")
        w = _start_worker(ctx, s, "bets")
        prod = h.LoadProducer(s)
        events = [f"e{i}" for i in range(50)]
        accounts = 1_000
        col = None
        try:
            _preload(ctx, s, w, prod, events, accounts, 10_000_000_00)
            col = h.Collector(s, [t_out])
            codec = Codec("bet_decision")
            bets = Bets(s, accounts, events)
            r = measure_open(
                prod,
                t_in,
                bets.make(plan.warmup),
                None,
                col,
                codec,
                "requested_at",
                w.alive,
                180,
                w.pid,
            )
            _check(r["complete"], "warm-up decisions", w)
            g: dict[str, Any] = {}
            for rt in plan.bet_rates:
                reps = []
                for i in range(plan.reps):
                    n = int(rt * plan.open_s)
                    r = measure_open(
                        prod,
                        t_in,
                        bets.make(n),
                        rt,
                        col,
                        codec,
                        "requested_at",
                        w.alive,
                        max(120, n / 20),
                        w.pid,
                    )
                    ctx.say(
                        f"  bets {guarantee} @{rt}/s rep {i + 1}: {r['throughput_per_s']}/s, "
                        f"p50 {r['p50_ms']} p99 {r['p99_ms']} ms"
                    )
                    reps.append(r)
                g[f"open_{rt}"] = {
                    "offered_per_s": rt,
                    "seconds": plan.open_s,
                    "reps": reps,
                    **_reps_summary(reps),
                }
            reps = []
            for i in range(plan.reps):
                r = measure_open(
                    prod,
                    t_in,
                    bets.make(plan.bet_closed_n),
                    None,
                    col,
                    codec,
                    "requested_at",
                    w.alive,
                    max(240, plan.bet_closed_n / 20),
                    w.pid,
                )
                ctx.say(f"  bets {guarantee} closed loop rep {i + 1}: {r['throughput_per_s']}/s")
                reps.append(r)
            g["closed_loop"] = {"n": plan.bet_closed_n, "reps": reps, **_reps_summary(reps)}
            g["accepted_fraction"] = round(_accepted(col.values) / max(1, col.count()), 4)
            g["worker_alive_at_end"] = w.alive()
            if not w.alive():
                g["worker_log_tail"] = w.log_tail(1500)
            if plan.profile and guarantee == "exactly_once":
                g["profile"] = _profile_bets(ctx, w, prod, t_in, bets, col, codec, g["closed_loop"])
            out[guarantee] = g
        finally:
            if col:
                col.stop()
            w.stop()
            h.delete_topics(s)
    return out


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


# --------------------------------------------------------------------------------- settlement
def _wait_recovered(workers: list[h.Worker], timeout_s: float = 120) -> None:
    """Until every worker has rebuilt its tables after the group's last rebalance."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all("recovered" in w.log_tail(100_000) for w in workers):
            time.sleep(3)  # a worker that joined last triggers one more round: let it finish
            if all("recovered" in w.log_tail(100_000) for w in workers):
                return
        if not all(w.alive() for w in workers):
            break
        time.sleep(0.5)
    _check(False, "workers to recover their tables", workers[0])


def _burst(ctx: Ctx, workers: int) -> dict[str, Any]:
    """Place ``plan.settle_n`` bets on one market, then time one result settling them all."""
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
            _wait_recovered(ws)
        _preload(ctx, s, ws[0], prod, [ev], accounts, 10_000_000_00)
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
        _check(r["complete"], "burst bets decided", ws[0])
        accepted = _accepted(col_d.values[-n:])
        expect_ledger = accounts + 2 * n  # deposits + (reserve, accept) per bet
        _check(col_l.wait_count(expect_ledger, 60, alive), "reserve/accept ledger", ws[0])
        place_s = time.monotonic() - t0
        s0, l0 = col_s.count(), col_l.count()
        sent_ms = h.now_ms()
        prod.send_records(Codec("result"), tname(s, "results"), [(ev, result(ev))])
        ok = col_s.wait_count(s0 + accepted, max(600, n / 20), alive) and col_l.wait_count(
            l0 + accepted, 120, alive
        )
        _check(ok, "every settlement and settle transaction", ws[0])
        last = max(col_s.times[s0 + accepted - 1], col_l.times[l0 + accepted - 1])
        dur = (last - sent_ms) / 1000
        rep = {
            "workers": workers,
            "bets": n,
            "accepted": accepted,
            "place_s": round(place_s, 2),
            "placement_per_s": r["throughput_per_s"],
            "burst_s": round(dur, 3),
            "first_settlement_ms": round(col_s.times[s0] - sent_ms, 1),
            "settlements_per_s": round(accepted / dur, 1),
            "extrapolated_100k_s": round(dur * 100_000 / max(1, accepted), 1),
        }
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
    reps = [_burst(ctx, 1) for _ in range(plan.settle_reps)]
    out: dict[str, Any] = {
        "n": plan.settle_n,
        **_summary(reps, "burst_s", "settlements_per_s", "extrapolated_100k_s"),
        "note": (
            "measured N bets on one market; 100,000-bet figure extrapolated linearly from the "
            "measured rate"
            if plan.settle_n != 100_000
            else "measured at 100,000 bets"
        ),
    }
    reps2 = [_burst(ctx, 2) for _ in range(plan.settle_reps)]
    out["two_workers"] = _summary(
        reps2, "burst_s", "settlements_per_s", "extrapolated_100k_s", "placement_per_s"
    )
    return out


# -------------------------------------------------------------------------------------- sinks
def _ledger_records(n: int, tag: str) -> list[tuple[str, dict[str, Any]]]:
    from oddsflow.processors.wallet import tx_record

    out = []
    t = int(h.now_ms())
    for k in range(n):
        acct = f"a{k % 1000}"
        out.append((acct, tx_record(ledger.reserve_stake(f"{tag}-{k}", acct, 100, "GBP"), acct, t)))
    return out


def _produce_ledger(s: Settings, n: int) -> int:
    recs = _ledger_records(n, uuid.uuid4().hex[:8])
    prod = h.LoadProducer(s, {"linger.ms": 20})
    prod.send_records(Codec("ledger_transaction"), tname(s, "ledger"), recs)
    return sum(len(r["postings"]) for _, r in recs)


def _track_progress(
    progress: Callable[[], int], n: int, alive: Callable[[], bool], deadline: float
) -> tuple[tuple[float, int] | None, float | None]:
    """Poll ``progress`` every 10 ms until it reaches ``n``, ``alive()`` turns false or the
    ``deadline`` (monotonic) passes. Returns the time and count of the first progress seen and
    the time ``n`` was reached, each None if it never happened."""
    first: tuple[float, int] | None = None
    while time.monotonic() < deadline and alive():
        c = progress()
        if c > 0 and first is None:
            first = (time.monotonic(), c)
        if c >= n:
            return first, time.monotonic()
        time.sleep(0.01)
    return first, None


def _flushed(holder: dict[str, Any]) -> Callable[[], int]:
    """Progress of the sink consumer that ``holder["c"]`` will hold once it has started."""

    def progress() -> int:
        return int(holder["c"].flushed_messages) if "c" in holder else 0

    return progress


def _watch_sink(
    run: Callable[[threading.Event], Any],
    progress: Callable[[], int],
    n: int,
    timeout_s: float = 300,
) -> dict[str, Any]:
    """Run a sink in a thread until it has flushed n messages; the steady rate is taken from its
    first flushed batch (group join excluded) to the last; end-to-end includes the join."""
    stop = threading.Event()
    err: list[BaseException] = []

    def target() -> None:
        try:
            run(stop)
        except BaseException as exc:  # reported, not raised in the thread
            err.append(exc)

    t_start = time.monotonic()
    th = threading.Thread(target=target, daemon=True)
    th.start()
    first, done = _track_progress(progress, n, th.is_alive, t_start + timeout_s)
    stop.set()
    th.join(60)
    if err:
        raise BenchError(f"sink failed: {err[0]!r}")
    if done is None or first is None:
        raise BenchError(f"sink did not catch up: {progress()} of {n} messages")
    steady = done - first[0]
    return {
        "messages": n,
        "end_to_end_s": round(done - t_start, 3),
        "first_batch": first[1],
        "steady_s": round(steady, 3),
        "msgs_per_s": round(rate(n - first[1], steady) or 0, 1) if steady > 0 else None,
    }


def scenario_sinks(ctx: Ctx) -> dict[str, Any]:
    import psycopg

    from oddsflow.sinks import postgres as pg
    from oddsflow.sinks.kafka_batch import BatchConsumer, SinkConfig

    plan = ctx.plan
    out: dict[str, Any] = {}
    dbname = f"bench_{uuid.uuid4().hex[:8]}"
    admin_dsn = ctx.base.model_copy(update={"postgres_db": "postgres"}).pg_dsn
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    try:
        pg_base = ctx.base.model_copy(update={"postgres_db": dbname})
        pg.migrate(pg_base.pg_dsn)
        reps = []
        for i in range(plan.reps + 1):  # the first is the warm-up
            n = plan.sink_n if i else max(1000, plan.sink_n // 10)
            s = h.fresh_settings(pg_base, "k")
            postings = _produce_ledger(s, n)
            holder: dict[str, Any] = {}

            def run(
                stop: threading.Event, s: Settings = s, holder: dict[str, Any] = holder
            ) -> None:
                cfg = SinkConfig(name=pg.SINK_NAME, topic_keys=("ledger",))
                consumer = BatchConsumer(
                    s, cfg, load_offsets=lambda tps: {}, flush=lambda b: None, stop_event=stop
                )
                store = pg.PostgresLedgerStore(s.pg_dsn, consumer.group_id)
                consumer.load_offsets, consumer.flush = store.load_offsets, store.flush
                holder["c"] = consumer
                try:
                    consumer.run()
                finally:
                    store.close()

            r = _watch_sink(run, _flushed(holder), n)
            r["postings"] = postings
            r["postings_per_s"] = (
                round(r["msgs_per_s"] * postings / n, 1) if r["msgs_per_s"] else None
            )
            h.delete_topics(s)
            if i:
                ctx.say(
                    f"  postgres sink rep {i}: {r['msgs_per_s']} tx/s, {r['postings_per_s']} postings/s"
                )
                reps.append(r)
        out["postgres"] = _summary(reps, "msgs_per_s", "postings_per_s")
        reps2 = [_pg_sink_processes(ctx, pg_base, 2, plan.sink_n) for _ in range(plan.reps)]
        out["postgres_two_processes"] = _summary(reps2, "msgs_per_s", "postings_per_s")
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')

    out["clickhouse_chdb"] = _clickhouse(
        ctx,
        ctx.base.model_copy(update={"clickhouse_url": None, "chdb_path": h.tmp_dir("bench-chdb-")}),
    )
    if ctx.base.clickhouse_url:
        out["clickhouse_server"] = _clickhouse(ctx, ctx.base)
    else:
        out["clickhouse_server"] = {"skipped": "ODDSFLOW_CLICKHOUSE_URL not set"}
    return out


def _pg_sink_processes(ctx: Ctx, pg_base: Settings, procs: int, n: int) -> dict[str, Any]:
    """The ledger sink scaled out: ``procs`` sink processes (`python -m oddsflow.sinks.postgres`,
    two writers each) in one consumer group split the topic's partitions, each with its own
    interpreter, so the Python work (decoding, COPY text) runs on both cores. They join first;
    then ``n`` ledger transactions are produced, and the rate is read from the offsets the sinks
    commit with their rows, from the first commit until all ``n`` are written."""
    import psycopg
    from confluent_kafka.admin import AdminClient

    from oddsflow.sinks.kafka_batch import sink_group_id
    from oddsflow.sinks.postgres import SINK_NAME

    s = h.fresh_settings(pg_base, "p")
    group = sink_group_id(s, SINK_NAME)
    sinks = [
        h.Worker(s, ctx.log_dir, f"pgsink{i}", h.POSTGRES_SINK_ARGV).start() for i in range(procs)
    ]
    try:
        admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
        deadline = time.monotonic() + 90
        while True:  # every member joined and the partitions are spread over them
            desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
            if len(desc.members) == procs and str(desc.state).endswith("STABLE"):
                break
            if time.monotonic() > deadline or not all(w.alive() for w in sinks):
                raise BenchError(f"{procs} postgres sinks did not join: {sinks[0].log_tail()}")
            time.sleep(0.2)
        with psycopg.connect(s.pg_dsn, autocommit=True) as conn:

            def committed() -> int:
                row = conn.execute(
                    "SELECT coalesce(sum(next_offset), 0)::bigint FROM consumed_offsets"
                    " WHERE consumer_group = %s",
                    (group,),
                ).fetchone()
                return int(row[0]) if row else 0

            postings = _produce_ledger(s, n)
            first, done = _track_progress(
                committed, n, lambda: all(w.alive() for w in sinks), time.monotonic() + 300
            )
            if done is None or first is None:
                raise BenchError(
                    f"postgres sinks stopped at {committed()} of {n}: {sinks[0].log_tail()}"
                )
        if first[1] >= n:  # everything landed in the first commit: no rate to take
            raise BenchError("sink processes wrote the whole load at once; raise sink_n")
        steady = done - first[0]
        msgs_per_s = round(rate(n - first[1], steady) or 0, 1)
        r = {
            "processes": procs,
            "messages": n,
            "first_commit": first[1],
            "steady_s": round(steady, 3),
            "msgs_per_s": msgs_per_s,
            "postings": postings,
            "postings_per_s": round(msgs_per_s * postings / n, 1),
        }
        ctx.say(
            f"  postgres sink, {procs} processes: {r['msgs_per_s']} tx/s, {r['postings_per_s']} postings/s"
        )
        return r
    finally:
        for w in sinks:
            w.stop()
        h.delete_topics(s)


def _clickhouse(ctx: Ctx, base: Settings) -> dict[str, Any]:
    from oddsflow.sinks import clickhouse as ch
    from oddsflow.sinks.kafka_batch import BatchConsumer, SinkConfig

    reps = []
    for i in range(ctx.plan.reps + 1):
        n = ctx.plan.sink_n if i else max(1000, ctx.plan.sink_n // 10)
        s = h.fresh_settings(base, "c")
        postings = _produce_ledger(s, n)
        holder: dict[str, Any] = {}

        def run(stop: threading.Event, s: Settings = s, holder: dict[str, Any] = holder) -> None:
            with ch.open_backend(s) as sch:
                cfg = SinkConfig(name=ch.SINK_NAME, topic_keys=("ledger",))
                consumer = BatchConsumer(
                    s, cfg, load_offsets=lambda tps: {}, flush=lambda b: None, stop_event=stop
                )
                store = ch.ClickHouseStore(sch, consumer.group_id)
                consumer.load_offsets, consumer.flush = store.load_offsets, store.flush
                holder["c"] = consumer
                consumer.run()

        r = _watch_sink(run, _flushed(holder), n)
        rows_per_msg = sum(len(v) for v in ch.rows_for(_sample_record(s)).values())
        r["rows"] = n * rows_per_msg
        r["rows_per_s"] = round(r["msgs_per_s"] * rows_per_msg, 1) if r["msgs_per_s"] else None
        r["postings"] = postings
        with contextlib.suppress(Exception):
            ch.drop_database(s)
        h.delete_topics(s)
        if i:
            ctx.say(
                f"  clickhouse ({'server' if base.clickhouse_url else 'chdb'}) rep {i}: "
                f"{r['msgs_per_s']} msgs/s, {r['rows_per_s']} rows/s"
            )
            reps.append(r)
    return _summary(reps, "msgs_per_s", "rows_per_s")


def _sample_record(s: Settings) -> Any:
    from oddsflow.sinks.kafka_batch import Record

    _key, rec = _ledger_records(1, "sample")[0]
    return Record("ledger", tname(s, "ledger"), 0, 0, rec, b"")


# ----------------------------------------------------------------------------------- baseline
def scenario_baseline(ctx: Ctx) -> dict[str, Any]:
    """confluent-kafka consume -> produce passthrough of the same Avro bytes (same topics,
    partitions and keys), plain and transactional, plus raw producer throughput."""
    from oddsflow.bench import passthrough

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
    out["ceiling"] = _summary(reps, "bets_per_s", "prices_per_s")
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
    out["raw_producer"] = _summary(reps, "msgs_per_s")
    h.delete_topics(s)

    for mode in ("transactional", "plain"):
        s = h.fresh_settings(ctx.base, "t")
        pt = passthrough.start(
            s,
            ctx.log_dir,
            transactional=(mode == "transactional"),
            commit_interval_s=s.commit_interval_s,
        )
        col_b = h.Collector(s, [passthrough.copy_topic(s, "bet_requests")])
        col_p = h.Collector(s, [passthrough.copy_topic(s, "price_updates")])
        bcodec, pcodec = Codec("bet_request"), Codec("price_update")
        prod = h.LoadProducer(s)
        bets = Bets(s, 1000, [f"e{i}" for i in range(50)])
        prices = Prices([f"e{i}" for i in range(200)])
        g: dict[str, Any] = {}

        def alive(pt: Any = pt) -> bool:
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
                60,
            )
            _check(r["complete"], "passthrough warm-up")
            for name, topic, col, codec, fld, mk, rt in (
                ("bets", "bet_requests", col_b, bcodec, "placed_at", bets.make, 1_000),
                ("prices", "price_updates", col_p, pcodec, "provider_ts", prices.make, 5_000),
            ):
                reps = []
                for _ in range(plan.reps):
                    reps.append(
                        measure_open(
                            prod,
                            tname(s, topic),
                            mk(plan.baseline_n),
                            None,
                            col,
                            codec,
                            fld,
                            alive,
                            120,
                            pt.pid,
                        )
                    )
                g[f"{name}_closed_loop"] = {
                    "n": plan.baseline_n,
                    "reps": reps,
                    **_reps_summary(reps),
                }
                reps = []
                for _ in range(plan.reps):
                    reps.append(
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
                    )
                g[f"{name}_open_{rt}"] = {"offered_per_s": rt, "reps": reps, **_reps_summary(reps)}
                ctx.say(
                    f"  passthrough {mode} {name}: {g[f'{name}_closed_loop']['throughput_per_s']['median']}/s, "
                    f"p99 @{rt}/s {g[f'{name}_open_{rt}']['p99_ms']['median']} ms"
                )
        finally:
            col_b.stop()
            col_p.stop()
            passthrough.stop(pt)
            h.delete_topics(s)
        out[f"passthrough_{mode}"] = g
    return out


SCENARIOS: dict[str, Callable[[Ctx], dict[str, Any]]] = {
    "baseline": scenario_baseline,
    "prices": scenario_prices,
    "bets": scenario_bets,
    "settlement_burst": scenario_settlement_burst,
    "sinks": scenario_sinks,
}
