"""`oddsflow demo`: the whole pipeline on local services, with a summary a person can check.

Starts Kafka and Postgres, applies the topology into a fresh topic namespace, migrates a fresh
demo database, starts the workers and both sinks as separate processes, plays a simulated
match day (or the EPL replay) into Kafka, follows the output topics until every bet has its
decision and every accepted bet its settlement, then reconciles four views of the money:
the engine's wallet table (read from its changelog), the ledger topic, the Postgres ledger and
ClickHouse.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError

from oddsflow import services, topology
from oddsflow.codec import CodecError
from oddsflow.domain.money import format_minor
from oddsflow.kafka import EventProducer, consumer_config
from oddsflow.processors.batched import records_reader
from oddsflow.settings import Settings


def _say(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class Processes:
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "oddsflow.cli", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def check(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None and not (name == "sink-clickhouse" and p.returncode == 0):
                raise RuntimeError(
                    f"{name} exited with {p.returncode}; see {self.log_dir / (name + '.log')}"
                )

    def wait_ready(self, name: str, timeout_s: float = 180.0) -> None:
        """A worker is ready once it has recovered its tables (it logs that line)."""
        deadline = time.monotonic() + timeout_s
        log = self.log_dir / f"{name}.log"
        while time.monotonic() < deadline:
            self.check()
            if log.exists() and "recovered" in log.read_text(errors="replace"):
                return
            time.sleep(0.5)
        raise TimeoutError(f"{name} not ready after {timeout_s:.0f}s; see {log}")

    def wait_line(self, name: str, pattern: str, timeout_s: float = 180.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        log = self.log_dir / f"{name}.log"
        while time.monotonic() < deadline:
            self.check()
            m = re.search(pattern, log.read_text(errors="replace")) if log.exists() else None
            if m:
                return m
            time.sleep(0.3)
        raise TimeoutError(f"{name} not ready after {timeout_s:.0f}s; see {log}")

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


class Follower:
    """Reads output topics incrementally (read_committed) and keeps what the summary needs."""

    def __init__(self, s: Settings, keys: Iterable[str]) -> None:
        topo = topology.load(settings=s)
        self.by_name = {topo.topic(k).name: k for k in keys}
        self.readers = {k: records_reader(topo, k) for k in keys}  # items of topics of batches
        self.c = Consumer(consumer_config(f"{s.topic_prefix}demo-follower", s))
        self.c.subscribe(list(self.by_name))
        self.records: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def poll(self, budget_s: float = 0.5) -> None:
        end = time.monotonic() + budget_s
        while time.monotonic() < end:
            msgs = self.c.consume(5000, 0.1)
            for m in msgs:
                err, topic = m.error(), m.topic()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(str(err))
                    continue
                if topic is None:
                    continue
                key = self.by_name[topic]
                with contextlib.suppress(CodecError):  # the summary counts decodable outputs
                    self.records[key].extend(self.readers[key](m.value()))

    def close(self) -> None:
        self.c.close()


def read_changelog(s: Settings, table: str) -> dict[str, dict[str, Any]]:
    """The engine's own table state: the latest value per key in the table's changelog topic.

    Reads the same way a worker recovers its tables (processors.recovery), over every partition.
    """
    from oddsflow.processors.recovery import read_changelogs

    topo = topology.load(settings=s)
    name = f"{s.topic_prefix}{s.app_id}-{table}-changelog"
    partitions = set(range(topo.group_partitions(topo.tables[table]["group"])))
    raw = read_changelogs(s.kafka_bootstrap, {name: partitions})[name]
    return {k: orjson.loads(v) for k, v in raw.items()}


def run_demo(
    base: Settings,
    *,
    fixtures: int = 12,
    accounts: int = 150,
    bets: int = 3000,
    workers: int = 1,
    source: str = "simulate",
    epl_limit: int = 60,
    seed: int = 7,
    timeout_s: float = 600,
    duration_s: float = 60.0,
    via_api: bool = True,
) -> dict[str, Any]:
    started = time.monotonic()
    _say("== oddsflow demo ==")
    for st in services.up(base):
        _say(f"  {st.name:<10} up at {st.where} ({st.detail})")
    run_id = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    s = base.model_copy(
        update={
            "topic_prefix": f"demo{run_id}.",
            "postgres_db": "oddsflow_demo",
            "chdb_path": base.run_dir / f"chdb-demo-{run_id}",
            "metrics_port": 0,
        }
    )
    _fresh_database(base, s.postgres_db)
    actions = topology.apply(topology.load(settings=s), s.kafka_bootstrap)
    _say(f"  topology applied under prefix {s.topic_prefix!r} ({len(actions)} topics)")
    from oddsflow.sinks.postgres import migrate

    migrate(s.pg_dsn)
    _say(f"  ledger database {s.postgres_db!r} migrated")

    log_dir = base.run_dir / "demo" / run_id
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = Processes(log_dir)
    env = s.child_env()
    for i in range(workers):
        procs.start(f"worker-{i}", ["worker", "--metrics-port", str(base.metrics_port + i)], env)
    procs.start("sink-postgres", ["sink", "run", "postgres"], env)
    _say(f"  started {workers} worker(s) and the Postgres ledger sink; logs in {log_dir}")
    _say(f"  metrics: http://127.0.0.1:{base.metrics_port}/metrics")

    api: DemoApi | None = None
    try:
        for i in range(workers):
            procs.wait_ready(f"worker-{i}")
        _say("  worker(s) ready")
        if via_api:
            api = DemoApi.start(procs, env)
            _say(
                f"  bet API up at {api.url}: bets go through POST /v1/bets, one event over /v1/stream"
            )
        produced = _produce(
            s,
            source=source,
            fixtures=fixtures,
            accounts=accounts,
            bets=bets,
            seed=seed,
            epl_limit=epl_limit,
            duration_s=duration_s,
            api=api,
        )
        summary = _follow(s, procs, produced, timeout_s=timeout_s)
        if api is not None:
            summary["api"] = api.finish(produced)
    finally:
        if api is not None:
            api.close()
        procs.stop()
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    _print_summary(summary)
    return summary


def _fresh_database(base: Settings, db: str) -> None:
    import psycopg

    admin_dsn = base.pg_dsn.replace(f"dbname={base.postgres_db}", "dbname=postgres")
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}"')


def _produce(
    s: Settings,
    *,
    source: str,
    fixtures: int,
    accounts: int,
    bets: int,
    seed: int,
    epl_limit: int,
    duration_s: float,
    api: DemoApi | None = None,
) -> dict[str, Any]:
    """Play the feed in timeline order, compressed so the whole day lasts about duration_s."""
    stats: Counter[str] = Counter()
    if source == "epl":
        from oddsflow.settings import REPO_ROOT
        from oddsflow.streams.replay import replay_timed

        csv = Path(
            os.environ.get(
                "ODDSFLOW_EPL_CSV", REPO_ROOT.parent / "shared" / "data" / "epl-odds-results.csv"
            )
        )
        timed = list(
            replay_timed(
                csv,
                limit=epl_limit,
                bets_per_match=max(1, bets // max(1, epl_limit)),
                accounts=accounts,
            )
        )
    else:
        from oddsflow.streams.simulate import simulate_timed

        timed = simulate_timed(
            fixtures=fixtures, accounts=accounts, bets=bets, seed=seed, stats=stats
        )
    span_ms = max(1, timed[-1][0] - timed[0][0]) if timed else 1
    speedup = span_ms / (duration_s * 1000)
    _say(
        f"  playing {len(timed)} feed events spanning {span_ms / 3_600_000:.1f} h at {speedup:.0f}x (~{duration_s:.0f} s)"
    )
    if api is not None:
        first_event = next((r["event_id"] for _, (k, _, r) in timed if k == "fixtures"), None)
        if first_event is not None:
            api.follow(first_event)
    p = EventProducer(s)
    counts: Counter[str] = Counter()
    bet_ids: set[str] = set()
    bad = 0
    t0 = time.monotonic()
    first_ts = timed[0][0] if timed else 0
    last_say = t0
    for ts, (topic_key, key, record) in timed:
        due = (ts - first_ts) / 1000 / speedup - (time.monotonic() - t0)
        if due > 0.005:
            p.producer.flush(due)
            time.sleep(max(0.0, (ts - first_ts) / 1000 / speedup - (time.monotonic() - t0)))
        if isinstance(record, bytes | bytearray):
            p.send_raw(topic_key, key, bytes(record))  # deliberately malformed input
            bad += 1
        elif topic_key == "bet_requests" and api is not None:
            api.place(record)  # over HTTP; the bet id comes back in the answer
        else:
            p.send(topic_key, key, record)
            if topic_key == "bet_requests":
                bet_ids.add(record["bet_id"])
        counts[topic_key] += 1
        if time.monotonic() - last_say > 5:
            last_say = time.monotonic()
            _say(f"  ingesting... {sum(counts.values())}/{len(timed)} events")
    p.flush()
    if api is not None:
        bet_ids |= api.collect()
    _say(
        f"  ingested {sum(counts.values())} events in {time.monotonic() - t0:.1f}s: "
        + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    )
    # The simulator's malformed feed records (bad prices, a final result without a score)
    # must reach the dead-letter topic; its malformed bets get INVALID_REQUEST decisions.
    return {
        "counts": counts,
        "bet_ids": bet_ids,
        "malformed": bad + stats.get("malformed", 0),
        "stats": stats,
    }


def _follow(
    s: Settings, procs: Processes, produced: dict[str, Any], *, timeout_s: float
) -> dict[str, Any]:
    f = Follower(s, ["priced_markets", "bet_decisions", "settlements", "ledger", "dead_letters"])
    bet_ids: set[str] = produced["bet_ids"]
    deadline = time.monotonic() + timeout_s
    last_print = 0.0
    try:
        while True:
            procs.check()
            f.poll(1.0)
            decided = {d["bet_id"] for d in f.records["bet_decisions"]}
            accepted = {d["bet_id"] for d in f.records["bet_decisions"] if d["accepted"]}
            settled = {x["bet_id"] for x in f.records["settlements"]}
            done = bet_ids <= decided and accepted <= settled
            if time.monotonic() - last_print > 2 or done:
                last_print = time.monotonic()
                _say(
                    f"  progress: priced {len(f.records['priced_markets'])}, decisions {len(decided)}/{len(bet_ids)}, "
                    f"settled {len(settled)}/{len(accepted)}, ledger tx {len(f.records['ledger'])}, "
                    f"dead letters {len(f.records['dead_letters'])}"
                )
            if done:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the pipeline did not finish in time; see the worker logs")
        f.poll(2.0)  # settle any trailing resettlements
    finally:
        f.close()
    return _summarise(s, procs, produced, f.records)


def _summarise(
    s: Settings, procs: Processes, produced: dict[str, Any], rec: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    from oddsflow.sinks import cli as sinks_cli

    decisions = {d["bet_id"]: d for d in rec["bet_decisions"]}
    reasons = Counter(d["reason"] for d in decisions.values() if not d["accepted"])
    accepted = [d for d in decisions.values() if d["accepted"]]
    final_settlement: dict[str, dict[str, Any]] = {}
    for x in rec["settlements"]:
        if (
            x["bet_id"] not in final_settlement
            or x["revision"] > final_settlement[x["bet_id"]]["revision"]
        ):
            final_settlement[x["bet_id"]] = x
    turnover = sum(d["stake_minor"] for d in accepted)
    payouts = sum(x["return_minor"] for x in final_settlement.values())
    balances: dict[str, int] = defaultdict(int)
    by_currency: dict[tuple[str, str], int] = defaultdict(int)
    unbalanced = 0
    tx_ids = [t["tx_id"] for t in rec["ledger"]]
    for t in rec["ledger"]:
        total = 0
        for p in t["postings"]:
            balances[p["account"]] += p["amount_minor"]
            by_currency[(p["account"], p["currency"])] += p["amount_minor"]
            total += p["amount_minor"]
        unbalanced += total != 0
    # One wallet per (account, currency), keyed "a1|GBP".
    engine_wallets = read_changelog(s, "wallets")
    wallet_mismatch = [
        k
        for k, w in engine_wallets.items()
        if w["balance_minor"] - w["reserved_minor"]
        != by_currency.get((f"player:{w['account_id']}:available", w["currency"]), 0)
    ]
    # Wait for the sinks to catch up with the ledger topic, then compare.
    pg: dict[str, Any] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        procs.check()
        pg = sinks_cli.ledger_summary(s.pg_dsn)
        if pg.get("transactions", -1) >= len(set(tx_ids)):
            break
        time.sleep(1)
    # chdb lets one process own a data path: the ClickHouse sink exits once idle, then we read.
    _say("  running the ClickHouse sink over the output topics (chdb: one process per data path)")
    procs.start("sink-clickhouse", ["sink", "run", "clickhouse", "--idle-exit", "5"], s.child_env())
    ch_proc = procs.procs["sink-clickhouse"]
    try:
        ch_proc.wait(180)
        ch_ggr = sinks_cli.clickhouse_ggr(s)
    except subprocess.TimeoutExpired:
        ch_ggr = None
    pg_mismatch = list(_pg_reconcile(s, engine_wallets))
    trails_incomplete = _incomplete_trails(s, final_settlement)
    return {
        "events_ingested": sum(produced["counts"].values()),
        "ingested_by_topic": dict(produced["counts"]),
        "markets_priced": len({m["market_id"] for m in rec["priced_markets"]}),
        "price_publications": len(rec["priced_markets"]),
        "bet_requests": produced["counts"].get("bet_requests", 0),
        "bets_decided": len(decisions),
        "bet_ids_sent": len(produced["bet_ids"]),
        "money_trails_incomplete": trails_incomplete,
        "bets_accepted": len(accepted),
        "bets_rejected": len(decisions) - len(accepted),
        "rejected_by_reason": dict(reasons.most_common()),
        "bets_settled": len(final_settlement),
        "resettlements": sum(1 for x in rec["settlements"] if x["revision"] > 0),
        "turnover_minor": turnover,
        "payouts_minor": payouts,
        "book_result_minor": turnover - payouts,
        "ledger_transactions": len(tx_ids),
        "ledger_duplicate_tx": len(tx_ids) - len(set(tx_ids)),
        "ledger_unbalanced_tx": unbalanced,
        "ledger_ggr_minor": balances.get("book:ggr", 0),
        "trial_balance_minor": sum(balances.values()),
        "wallets": len(engine_wallets),
        "wallets_not_matching_topic": len(wallet_mismatch),
        "wallets_not_matching_postgres": len(pg_mismatch),
        "postgres": pg,
        "clickhouse_ggr_minor": ch_ggr,
        "dead_letters": len(rec["dead_letters"]),
        "malformed_sent": produced["malformed"],
    }


def _incomplete_trails(s: Settings, settled: dict[str, dict[str, Any]]) -> int:
    """Settled bets whose Postgres money trail lacks a step or does not add up to the return."""
    from oddsflow.sinks.finance import money_trail

    bad = 0
    for bet_id, st in settled.items():
        trail = money_trail(s.pg_dsn, bet_id, st["account_id"])  # bet ids are per account
        kinds = {row["kind"] for row in trail}
        player = sum(
            r["amount_minor"]
            for r in trail
            if r["account"] == f"player:{st['account_id']}:available"
        )
        # reserve -stake, settle/resettle +return: the player's net is return - stake
        if (
            not {"reserve", "accept", "settle"} <= kinds
            or player != st["return_minor"] - st["stake_minor"]
        ):
            bad += 1
    return bad


def _pg_reconcile(s: Settings, engine_wallets: dict[str, dict[str, Any]]) -> list[Any]:
    from oddsflow.sinks.finance import reconcile_by_currency

    # one engine wallet per (account, currency), compared with the ledger per currency
    wallets: dict[str, dict[str, int]] = defaultdict(dict)
    for w in engine_wallets.values():
        wallets[f"player:{w['account_id']}:available"][w["currency"]] = (
            w["balance_minor"] - w["reserved_minor"]
        )
    return list(reconcile_by_currency(s.pg_dsn, wallets))


def _print_summary(x: dict[str, Any]) -> None:
    ok = (
        x["trial_balance_minor"] == 0
        and x["ledger_unbalanced_tx"] == 0
        and x["ledger_duplicate_tx"] == 0
        and x["wallets_not_matching_topic"] == 0
        and x["wallets_not_matching_postgres"] == 0
        and x["book_result_minor"] == x["ledger_ggr_minor"]
        and x["clickhouse_ggr_minor"] == x["ledger_ggr_minor"]
        and x["dead_letters"]
        + x["rejected_by_reason"].get("INVALID_REQUEST", 0)
        + x.get("api", {}).get("refused_invalid", 0)
        >= x["malformed_sent"]
        and x.get("api", {}).get("ok", True)
    )
    lines = [
        "",
        "== summary ==",
        f"events ingested        {x['events_ingested']}",
        f"markets priced         {x['markets_priced']} ({x['price_publications']} price publications)",
        f"bet requests           {x['bet_requests']} -> {x['bets_decided']} distinct bets decided",
        f"  accepted             {x['bets_accepted']}",
        f"  rejected             {x['bets_rejected']}  "
        + ", ".join(f"{k}={v}" for k, v in x["rejected_by_reason"].items()),
        f"bets settled           {x['bets_settled']} (resettlements {x['resettlements']})",
        f"turnover               {format_minor(x['turnover_minor'])}",
        f"payouts                {format_minor(x['payouts_minor'])}",
        f"book result (GGR)      {format_minor(x['book_result_minor'])}",
        f"ledger                 {x['ledger_transactions']} transactions, unbalanced {x['ledger_unbalanced_tx']}, "
        f"duplicates {x['ledger_duplicate_tx']}, trial balance {format_minor(x['trial_balance_minor'])}",
        f"ledger GGR             {format_minor(x['ledger_ggr_minor'])} (Postgres: {x['postgres'].get('ggr_minor')}, "
        f"ClickHouse: {x['clickhouse_ggr_minor']})",
        f"money trails           {x['bets_settled'] - x['money_trails_incomplete']}/{x['bets_settled']} settled bets complete in Postgres",
        f"wallets reconcile      {x['wallets']} wallets; mismatches vs ledger topic {x['wallets_not_matching_topic']}, "
        f"vs Postgres {x['wallets_not_matching_postgres']}",
        f"dead letters           {x['dead_letters']} (+{x['rejected_by_reason'].get('INVALID_REQUEST', 0)} invalid bets rejected,"
        f" +{x.get('api', {}).get('refused_invalid', 0)} refused by the API with 422;"
        f" malformed inputs sent: {x['malformed_sent']})",
        *_api_lines(x.get("api")),
        f"elapsed                {x['elapsed_s']} s",
        f"RESULT                 {'OK: the books balance' if ok else 'MISMATCH: see above'}",
    ]
    _say("\n".join(lines))
    x["ok"] = ok


class DemoApi:
    """The demo's bets go through the bet API over real HTTP; one event is followed over its stream."""

    def __init__(self, url: str) -> None:
        from oddsflow.api.auth import Role, mint_token
        from oddsflow.api.client import ApiClient
        from oddsflow.api.settings import DEV_JWT_SECRET, ApiSettings

        # The demo is an explicit dev mode: its API child runs with ODDSFLOW_ENV=dev, and the
        # tokens here are signed with the same built-in dev secret.
        keys = ApiSettings(jwt_secret=DEV_JWT_SECRET)  # type: ignore[arg-type]
        self.url = url
        self._operator = mint_token(keys, "demo-operator", role=Role.OPERATOR)
        self.client = ApiClient(url, lambda acct: mint_token(keys, acct), connections=32)
        self.answers: list[Any] = []
        self.stream: Any = None
        self.event_id: str | None = None

    @classmethod
    def start(cls, procs: Processes, env: dict[str, str]) -> DemoApi:
        api_env = {**env, "ODDSFLOW_ENV": "dev", "ODDSFLOW_API_INSTANCE_ID": "demo"}
        procs.start("api", ["api", "--port", "0"], api_env)
        m = procs.wait_line("api", r"oddsflow api ready on (http://\S+)")
        return cls(m[1])

    def follow(self, event_id: str) -> None:
        self.event_id = event_id
        self.stream = self.client.follow(self._operator, [event_id])

    def place(self, record: dict[str, Any]) -> None:
        from oddsflow.api.client import body_from_record

        # The simulator's bet id is the client's idempotency key: its retries reuse it.
        self.client.submit(record["account_id"], record["bet_id"], body_from_record(record))

    def collect(self) -> set[str]:
        self.answers = self.client.results()
        # Bets the engine decides: placed (201/202) or rejected by it (422 with its reason).
        return {
            a.bet_id
            for a in self.answers
            if a.bet_id
            and (
                a.status in (201, 202)
                or (
                    a.status == 422 and a.code not in ("validation_error", "idempotency_key_reused")
                )
            )
        }

    def finish(self, produced: dict[str, Any]) -> dict[str, Any]:
        from oddsflow.api.client import percentile_ms

        self.client.stop_stream()
        log = self.stream.result(30) if self.stream is not None else None
        by_status = Counter(a.status for a in self.answers)
        lat = [a.latency_s for a in self.answers]
        srv = [a.engine_ms / 1000 for a in self.answers if a.engine_ms is not None]
        queued = [a.queued_s for a in self.answers]
        return {
            "placements": len(self.answers),
            "by_status": dict(sorted(by_status.items())),
            "refused_invalid": sum(1 for a in self.answers if a.code == "validation_error"),
            "retries": sum(a.retries for a in self.answers),
            "latency_ms_p50": round(percentile_ms(lat, 0.50), 1),
            "latency_ms_p99": round(percentile_ms(lat, 0.99), 1),
            # The client's wait for one of its connections, not in the figure above: the
            # simulator offers bursts faster than they carry them.
            "connections": self.client.connections,
            "queued_ms_p50": round(percentile_ms(queued, 0.50), 1),
            "queued_ms_p99": round(percentile_ms(queued, 0.99), 1),
            # How long the API waited on Kafka and the engine per answer (Server-Timing).
            "server_ms_p50": round(percentile_ms(srv, 0.50), 1),
            "server_ms_p99": round(percentile_ms(srv, 0.99), 1),
            "stream_event": self.event_id,
            "stream_counts": dict(log.counts) if log else {},
            "stream_versions_in_order": bool(log and log.versions_in_order),
            # every placement answered, and the stream saw the event's prices and decisions
            "ok": bool(
                log
                and log.versions_in_order
                and log.counts.get("snapshot", 0) == 1
                and log.counts.get("decision", 0) > 0
                and not by_status.get(500)
            ),
        }

    def close(self) -> None:
        self.client.close()


def _api_lines(a: dict[str, Any] | None) -> list[str]:
    if a is None:
        return []
    sc = a["stream_counts"]
    return [
        f"bet API                {a['placements']} placements over HTTP "
        + ", ".join(f"{k}={v}" for k, v in a["by_status"].items())
        + f" (retries after 429/503: {a['retries']})",
        f"API latency            p50 {a['latency_ms_p50']} ms, p99 {a['latency_ms_p99']} ms "
        "(request sent to answer, incl. the engine's decision); "
        f"the API's wait on the engine (Server-Timing) p50 {a['server_ms_p50']} ms, "
        f"p99 {a['server_ms_p99']} ms",
        f"API client backlog     p50 {a['queued_ms_p50']} ms, p99 {a['queued_ms_p99']} ms "
        f"(submitted to sent: waiting for one of {a['connections']} connections)",
        f"API stream             event {a['stream_event']}: snapshot {sc.get('snapshot', 0)}, "
        f"price/status updates {sc.get('market', 0)} (versions in order: {a['stream_versions_in_order']}), "
        f"decisions {sc.get('decision', 0)}, settlements {sc.get('settlement', 0)}, heartbeats {sc.get('heartbeat', 0)}",
    ]
