"""Bench: placements through the bet API at fixed offered rates (loopback only, bounded).

Measures, per offered rate, HTTP latency from request to response (p50/p99), the engine's part
of it (the API's ``Server-Timing: engine`` = produce -> decision back in the API), the API's own
overhead, and the share shed with 503; and the first rate at which shedding starts. The target
in issue 13: API p99 <= the engine's decision p99 + 10 ms at 1,000 placements/s.

Run it alone with ``python -m oddsflow.bench.api [--quick]``, or as the ``api`` scenario of
``oddsflow bench``. Needs the local services (``oddsflow services up``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import psycopg

from oddsflow import topology
from oddsflow.bench import harness as h
from oddsflow.bench.scenarios.records import deposit, price_update
from oddsflow.kafka import EventProducer
from oddsflow.settings import REPO_ROOT, Settings, get_settings

EVENTS = tuple(f"be{i}" for i in range(8))
T0_MS = 1_767_225_600_000


def _q(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    ys = sorted(xs)
    return round(ys[min(len(ys) - 1, round(q * (len(ys) - 1)))], 2)


def _server_side(url: str) -> tuple[float, float]:
    """(sum of seconds, count) of the API's own latency histogram for POST /v1/bets."""
    text = httpx.get(f"{url}/metrics").text
    total = count = 0.0
    for name, var in (("sum", "total"), ("count", "count")):
        m = re.search(
            rf'^oddsflow_api_request_duration_seconds_{name}\{{method="POST",route="/v1/bets"\}} ([0-9.e+]+)$',
            text,
            re.M,
        )
        if m:
            if var == "total":
                total = float(m[1])
            else:
                count = float(m[1])
    return total, count


def _feed(p: EventProducer, accounts: int) -> None:
    for e in EVENTS:
        p.send(
            "fixtures",
            e,
            {
                "event_id": e,
                "provider": "bench",
                "seq": 1,
                "sport": "football",
                "competition": "BENCH",
                "home": f"{e}-h",
                "away": f"{e}-a",
                "kickoff": T0_MS + 86_400_000 * 365,
                "provider_ts": T0_MS,
            },
        )
        p.send(
            "market_status",
            e,
            {
                "event_id": e,
                "provider": "bench",
                "seq": 1,
                "market_id": None,
                "status": "open",
                "in_play": False,
                "provider_ts": T0_MS,
            },
        )
        p.send("price_updates", e, {**price_update(e, 1), "provider_ts": T0_MS})
    for i in range(accounts):
        a = f"ba{i:05d}"
        p.send("deposits", a, deposit(a, 10**12, ref=f"bdep-{a}", created_at=T0_MS))
    p.flush()


def _start_api(
    s: Settings, log_dir: Path, **api_env: object
) -> tuple[subprocess.Popen[bytes], str]:
    env = s.child_env()
    env["ODDSFLOW_ENV"] = "dev"  # a loopback bench: the built-in dev secret is fine here
    for k, v in api_env.items():
        env[f"ODDSFLOW_API_{k.upper()}"] = str(v)
    log = log_dir / f"api-{s.topic_prefix.rstrip('.')}.log"
    out = open(log, "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "oddsflow.cli", "api", "--port", "0"],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        m = re.search(r"oddsflow api ready on (http://\S+)", log.read_text(errors="replace"))
        if m:
            return proc, m[1]
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"the API did not start; see {log}")


@dataclass(frozen=True)
class _Answer:
    status: int
    http_ms: float
    engine_ms: float | None


async def _place(
    session: aiohttp.ClientSession, url: str, token: str, key: str, body: bytes
) -> _Answer:
    headers = {
        "Authorization": f"Bearer {token}",
        "Idempotency-Key": key,
        "Content-Type": "application/json",
    }
    t0 = time.perf_counter()
    try:
        async with session.post(f"{url}/v1/bets", data=body, headers=headers) as resp:
            await resp.read()
            timing = re.search(r"engine;dur=([0-9.]+)", resp.headers.get("Server-Timing", ""))
            return _Answer(
                resp.status, (time.perf_counter() - t0) * 1000, float(timing[1]) if timing else None
            )
    except aiohttp.ClientError:
        return _Answer(0, (time.perf_counter() - t0) * 1000, None)


async def _offer(
    url: str, tokens: list[str], rate: int, duration_s: float, tag: str, outstanding_max: int
) -> dict[str, Any]:
    """Open loop: a placement every 1/rate s for duration_s, whatever the answers do; never more
    than outstanding_max requests open (the bound; beyond it a placement is counted as skipped).
    aiohttp, not httpx, generates the load: on two shared cores httpx itself became the limit."""
    n = int(rate * duration_s)
    tasks: list[asyncio.Task[_Answer]] = []
    open_now = [0]
    skipped = 0
    conn = aiohttp.TCPConnector(limit=outstanding_max, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:

        async def one(i: int) -> _Answer:
            body = orjson.dumps(
                {
                    "legs": [
                        {
                            "event_id": EVENTS[i % len(EVENTS)],
                            "market_type": "match_result",
                            "selection": "home",
                            "odds": "1.01",
                        }
                    ],
                    "stake_minor": 100,
                    "price_policy": "any",
                }
            )
            try:
                return await _place(session, url, tokens[i % len(tokens)], f"{tag}-{i}", body)
            finally:
                open_now[0] -= 1

        t0 = time.perf_counter()
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if open_now[0] >= outstanding_max:
                skipped += 1
                continue
            open_now[0] += 1
            tasks.append(asyncio.create_task(one(i)))
        offered_s = time.perf_counter() - t0
        answers = await asyncio.gather(*tasks)
    ok = [a for a in answers if a.status in (201, 422) and a.engine_ms is not None]
    http_ms = [a.http_ms for a in ok]
    engine_ms = [a.engine_ms for a in ok if a.engine_ms is not None]
    overhead_ms = [a.http_ms - (a.engine_ms or 0.0) for a in ok]
    statuses: dict[int, int] = {}
    for a in answers:
        statuses[a.status] = statuses.get(a.status, 0) + 1
    return {
        "offered_per_s": rate,
        "sent": len(answers),
        "achieved_offer_per_s": round(len(answers) / offered_s, 1) if offered_s else None,
        "skipped_at_bound": skipped,
        "statuses": statuses,
        "shed_share": round(statuses.get(503, 0) / max(1, len(answers)), 4),
        "http_ms_p50": _q(http_ms, 0.5),
        "http_ms_p99": _q(http_ms, 0.99),
        "engine_ms_p50": _q(engine_ms, 0.5),
        "engine_ms_p99": _q(engine_ms, 0.99),
        "api_overhead_ms_p50": _q(overhead_ms, 0.5),
        "api_overhead_ms_p99": _q(overhead_ms, 0.99),
    }


def scenario_api(
    base: Settings,
    log_dir: Path,
    *,
    rates: tuple[int, ...] = (250, 500, 1_000, 1_500),
    duration_s: float = 8.0,
    accounts: int = 2_000,
    inflight_max: int = 1_000,
    client_open_max: int = 3_000,
    say: Any = print,
) -> dict[str, Any]:
    from oddsflow.api.auth import mint_token
    from oddsflow.api.settings import DEV_JWT_SECRET, ApiSettings
    from oddsflow.sinks.postgres import migrate

    s = h.fresh_settings(base, "api")
    db = f"oddsflow_bench_api_{uuid.uuid4().hex[:8]}"
    admin = f"host={s.postgres_host} port={s.postgres_port} user={s.postgres_user} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    s = s.model_copy(update={"postgres_dsn": admin.replace("dbname=postgres", f"dbname={db}")})
    migrate(s.pg_dsn)
    topology.apply(topology.load(settings=s), s.kafka_bootstrap)
    worker = h.Worker(s, log_dir, "api-worker").start()
    api_proc: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 180
        while "recovered" not in worker.log_tail(100_000):
            if time.monotonic() > deadline or not worker.alive():
                raise RuntimeError(f"worker not ready: {worker.log_tail()}")
            time.sleep(0.5)
        _feed(EventProducer(s), accounts)
        api_proc, url = _start_api(
            s,
            log_dir,
            inflight_max=inflight_max,
            rate_account_per_s=1e6,
            rate_account_burst=10**6,
            rate_client_per_s=1e6,
            rate_client_burst=10**6,
            decision_wait_ms=10_000,
            pg_pool_max=20,
        )
        keys = ApiSettings(jwt_secret=DEV_JWT_SECRET)  # type: ignore[arg-type]
        tok = mint_token(keys, "bench-reader")
        deadline = time.monotonic() + 120
        while True:
            resp = httpx.get(f"{url}/v1/events", headers={"Authorization": f"Bearer {tok}"})
            if sum(e["markets"] for e in resp.json()["events"]) >= len(EVENTS):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the API's book never saw the bench markets")
            time.sleep(0.5)
        tokens = [mint_token(keys, f"ba{i:05d}") for i in range(accounts)]
        say(f"  api: warm-up, then {list(rates)} placements/s for {duration_s:g} s each")
        warm = asyncio.run(_offer(url, tokens, 100, 3, "warm", client_open_max))
        steps = []
        for rate in rates:
            before = _server_side(url)
            r = asyncio.run(_offer(url, tokens, rate, duration_s, f"r{rate}", client_open_max))
            after = _server_side(url)
            n = after[1] - before[1]
            r["server_ms_mean"] = round((after[0] - before[0]) / n * 1000, 2) if n else None
            say(
                f"  api @{rate}/s: http p50 {r['http_ms_p50']} p99 {r['http_ms_p99']} ms, engine p99 "
                f"{r['engine_ms_p99']} ms, overhead p99 {r['api_overhead_ms_p99']} ms, shed {r['shed_share']:.1%}, "
                f"offered {r['achieved_offer_per_s']}/s, server-side mean {r['server_ms_mean']} ms"
            )
            steps.append(r)
            time.sleep(3)  # let the backlog drain between steps
        shed_from = next((r["offered_per_s"] for r in steps if r["shed_share"] > 0), None)
        at_1000 = next((r for r in steps if r["offered_per_s"] == 1_000), None)
        return {
            "warmup": warm,
            "steps": steps,
            "shedding_starts_at_per_s": shed_from,
            "inflight_max": inflight_max,
            "client_open_max": client_open_max,
            "target_1000": None
            if at_1000 is None or at_1000["http_ms_p99"] is None
            else {
                "http_ms_p99": at_1000["http_ms_p99"],
                "engine_ms_p99": at_1000["engine_ms_p99"],
                "bound_ms": round((at_1000["engine_ms_p99"] or 0) + 10, 2),
                "met": at_1000["http_ms_p99"] <= (at_1000["engine_ms_p99"] or 0) + 10,
            },
        }
    finally:
        if api_proc is not None and api_proc.poll() is None:
            os.killpg(api_proc.pid, 15)
            api_proc.wait(20)
        worker.stop()
        h.delete_topics(s)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="two rates, 5 s each")
    ap.add_argument("--rates", default=None, help="comma-separated offered rates per second")
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    ap.add_argument(
        "--inflight-max", type=int, default=1_000, help="the API's in-flight cap (shedding)"
    )
    args = ap.parse_args(argv)
    rates = (
        tuple(int(x) for x in args.rates.split(","))
        if args.rates
        else ((250, 1_000) if args.quick else (250, 500, 1_000, 1_500))
    )
    duration = args.duration or (5.0 if args.quick else 8.0)
    log_dir = h.tmp_dir("oddsflow-bench-api-")
    doc = scenario_api(
        get_settings(), log_dir, rates=rates, duration_s=duration, inflight_max=args.inflight_max
    )
    doc["log_dir"] = str(log_dir)
    text = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def scenario(ctx: Any) -> dict[str, Any]:
    """The ``api`` scenario of ``oddsflow bench`` (ctx: bench.scenarios.Ctx)."""
    quick = ctx.plan.quick
    return scenario_api(
        ctx.base,
        ctx.log_dir,
        rates=(250, 1_000) if quick else (100, 250, 500, 1_000, 1_500),
        duration_s=5.0 if quick else 8.0,
        say=ctx.say,
    )
