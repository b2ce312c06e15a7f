"""ClickHouse analytics: the same DDL and queries on a ClickHouse server (clickhouse-connect,
when ``ODDSFLOW_CLICKHOUSE_URL`` is set) or on embedded chdb (a persistent path otherwise).

The sink consumes decisions, settlements, ledger postings, priced markets and bet requests (for
each bet's markets) in batches; rows go to ReplacingMergeTree tables keyed by natural ids, then
the Kafka offsets go to ``sink_offsets``. Replays are harmless because every query reads
deduplicated data (FINAL / argMax).

Databases are named after the topic prefix (``oddsflow`` or ``oddsflow_<prefix>``) so test
sessions and benchmarks sharing one ClickHouse never see each other's rows.

Run it with ``python -m oddsflow.sinks.clickhouse [--idle-exit SECONDS]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from typing import Any, Protocol

import orjson

from oddsflow.settings import Settings, get_settings
from oddsflow.sinks import metrics
from oddsflow.sinks.kafka_batch import Batch, BatchConsumer, Record, RetryableStoreError, SinkConfig

log = logging.getLogger(__name__)

SINK_NAME = "clickhouse"
# bet_requests gives each bet's markets (decisions and settlements carry none); see the report
# to the lead: topology.yaml's clickhouse_analytics inputs should list it.
TOPIC_KEYS = ("bet_decisions", "settlements", "ledger", "priced_markets", "bet_requests")
QUERY_NAMES = ("ggr_by_market_type", "hold_by_hour", "top_liabilities", "price_movement")


def database_name(settings: Settings) -> str:
    suffix = re.sub(r"[^A-Za-z0-9]+", "_", settings.topic_prefix).strip("_")
    return f"oddsflow_{suffix}" if suffix else "oddsflow"


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------
class AnalyticsBackend(Protocol):
    """What the sink and the queries need from ClickHouse, whichever engine runs it."""

    def command(self, sql: str) -> None: ...

    def query(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]: ...

    def insert_json_rows(self, table: str, rows: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class ServerBackend:
    """A ClickHouse server over HTTP via clickhouse-connect."""

    def __init__(self, url: str) -> None:
        import clickhouse_connect

        self.client = clickhouse_connect.get_client(dsn=url, compress=False)

    def command(self, sql: str) -> None:
        self.client.command(sql)

    def query(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        r = self.client.query(sql, parameters=dict(params or {}))
        return list(r.column_names), [tuple(row) for row in r.result_rows]

    def insert_json_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        body = b"\n".join(orjson.dumps(r, default=_json_default) for r in rows)
        self.client.raw_insert(table, insert_block=body, fmt="JSONEachRow")

    def close(self) -> None:
        self.client.close()


# chdb embeds one ClickHouse per process and refuses a second data path while a session is
# open, so sessions are shared per path and reference-counted.
_CHDB_LOCK = threading.Lock()
_CHDB: dict[str, Any] = {"path": None, "session": None, "refs": 0}


class ChdbBackend:
    """Embedded chdb with a persistent data directory."""

    def __init__(self, path: str) -> None:
        import chdb.session

        with _CHDB_LOCK:
            if _CHDB["session"] is not None and _CHDB["path"] != path:
                if _CHDB["refs"] > 0:
                    raise RuntimeError(
                        f"chdb already open at {_CHDB['path']}; one data path per process"
                    )
                _CHDB["session"].close()
                _CHDB["session"] = None
            if _CHDB["session"] is None:
                _CHDB["session"] = chdb.session.Session(path)  # type: ignore[no-untyped-call]
                _CHDB["path"] = path
            _CHDB["refs"] += 1
        self.session = _CHDB["session"]
        self._closed = False

    def command(self, sql: str) -> None:
        self.session.query(sql)

    def query(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        res = self.session.query(sql, "JSONCompact", params=dict(params) if params else None)
        raw = res.bytes()
        if not raw:
            return [], []
        # Decimal, never float, for numbers with a fraction; 64-bit ints are unquoted in chdb
        doc = json.loads(raw, parse_float=Decimal)
        cols = [m["name"] for m in doc["meta"]]
        types = [m["type"] for m in doc["meta"]]
        return cols, [
            tuple(_from_json(v, t) for v, t in zip(row, types, strict=True)) for row in doc["data"]
        ]

    def insert_json_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        body = b"\n".join(orjson.dumps(r, default=_json_default) for r in rows).decode()
        self.session.query(f"INSERT INTO {table} FORMAT JSONEachRow\n{body}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with _CHDB_LOCK:
            _CHDB["refs"] -= 1  # the session itself stays open for reuse in this process


def _from_json(v: Any, ch_type: str) -> Any:
    if v is None:
        return None
    if ch_type.startswith(("DateTime", "Nullable(DateTime")) and isinstance(v, str):
        return datetime.fromisoformat(v).replace(tzinfo=UTC)
    if isinstance(v, str) and re.match(r"^(Nullable\()?U?Int(64|128|256)", ch_type):
        return int(v)
    return v


def _json_default(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)  # ClickHouse parses quoted decimals exactly
    raise TypeError(type(v))


def _ts(ms: int) -> str:
    """epoch ms -> 'YYYY-MM-DD hh:mm:ss.fff' (UTC), exact (no float seconds)."""
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") + f".{millis:03d}"


def open_backend_for(settings: Settings) -> AnalyticsBackend:
    if settings.clickhouse_url:
        return ServerBackend(settings.clickhouse_url)
    settings.chdb_path.mkdir(parents=True, exist_ok=True)
    return ChdbBackend(str(settings.chdb_path))


@contextmanager
def open_backend(settings: Settings | None = None, ensure: bool = True) -> Iterator[Schemaed]:
    settings = settings or get_settings()
    backend = open_backend_for(settings)
    try:
        s = Schemaed(backend, database_name(settings))
        if ensure:
            s.ensure_schema()
        yield s
    finally:
        backend.close()


# --------------------------------------------------------------------------------------------
# DDL and named queries
# --------------------------------------------------------------------------------------------
def _sql_file(name: str) -> str:
    return resources.files("oddsflow.sinks").joinpath("clickhouse", name).read_text()


def _statements(text: str) -> list[str]:
    out = []
    for chunk in text.split(";\n"):
        lines = [ln for ln in chunk.splitlines() if not ln.strip().startswith("--")]
        stmt = "\n".join(lines).strip().rstrip(";")
        if stmt:
            out.append(stmt)
    return out


def _create_statement(statements: list[str], db: str, table: str) -> str:
    head = f"CREATE TABLE IF NOT EXISTS {db}.{table} ("
    for stmt in statements:
        if stmt.startswith(head):
            return stmt
    raise LookupError(f"no CREATE TABLE for {table} in the ClickHouse DDL")


def ddl_statements(db: str) -> list[str]:
    files = sorted(
        e.name
        for e in resources.files("oddsflow.sinks").joinpath("clickhouse").iterdir()
        if re.match(r"^\d{4}_.*\.sql$", e.name)
    )
    return [s.replace("{db}", db) for f in files for s in _statements(_sql_file(f))]


def named_queries(db: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for block in _sql_file("queries.sql").split("-- name: ")[1:]:
        name, _, body = block.partition("\n")
        out[name.strip()] = "\n".join(_statements(body)).replace("{db}", db)
    return out


# Tables whose ordering (= deduplication) key changed after databases were made with the old one:
# a bet id is scoped to its account, so a key of bet_id alone merged two accounts' bets "b1".
# CREATE TABLE IF NOT EXISTS leaves an existing table as it was, and ClickHouse cannot put an
# existing column in front of a sorting key (MODIFY ORDER BY only appends new columns), so
# ensure_schema rebuilds such a table with its rows (:meth:`Schemaed._rekey`).
REKEYED_TABLES: dict[str, str] = {
    "bet_legs": "account_id, bet_id, leg_index",
    "bet_decisions": "account_id, bet_id",
    "settlements": "account_id, bet_id, revision",
}
_REKEY_SUFFIX = "__rekey"


class Schemaed:
    """A backend bound to one oddsflow database."""

    def __init__(self, backend: AnalyticsBackend, db: str) -> None:
        self.backend, self.db = backend, db

    def ensure_schema(self) -> None:
        """Create what is missing and bring old tables to today's keys; idempotent."""
        statements = ddl_statements(self.db)
        for stmt in statements:
            self.backend.command(stmt)
        for table, key in REKEYED_TABLES.items():
            self._rekey(table, key, _create_statement(statements, self.db, table))

    def _sorting_key(self, table: str) -> str | None:
        _, rows = self.backend.query(
            "SELECT sorting_key FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            {"db": self.db, "t": table},
        )
        return str(rows[0][0]) if rows else None

    def _rekey(self, table: str, key: str, create_sql: str) -> None:
        """Rebuild ``table`` with sorting key ``key``, keeping every row, if it has another.

        Steps: create ``<table>__rekey`` with the new key; EXCHANGE it with the table (atomic:
        from then on every insert, also from another sink process, lands in the new table);
        copy the old rows across; drop the old table. Copies are harmless to repeat
        (ReplacingMergeTree: a row copied twice is one row under FINAL), so a rebuild cut short
        anywhere is finished by the next ensure_schema: a leftover ``__rekey`` with the new key
        was never exchanged (dropped), one with another key holds the old rows (copied, then
        dropped).
        """
        db, side = self.db, f"{table}{_REKEY_SUFFIX}"
        side_key = self._sorting_key(side)
        if side_key is not None:
            if side_key != key:
                self._copy_rows(side, table)
            self.backend.command(f"DROP TABLE {db}.{side}")
        current = self._sorting_key(table)
        if current is None or current == key:
            return
        log.warning("clickhouse: re-keying %s.%s from (%s) to (%s)", db, table, current, key)
        side_sql = create_sql.replace(f"{db}.{table} (", f"{db}.{side} (", 1)
        self.backend.command(side_sql)
        self.backend.command(f"EXCHANGE TABLES {db}.{table} AND {db}.{side}")
        self._copy_rows(side, table)
        self.backend.command(f"DROP TABLE {db}.{side}")

    def _copy_rows(self, source: str, target: str) -> None:
        _, rows = self.backend.query(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}"
            " ORDER BY position",
            {"db": self.db, "t": target},
        )
        cols = ", ".join(f"`{r[0]}`" for r in rows)
        self.backend.command(
            f"INSERT INTO {self.db}.{target} ({cols}) SELECT {cols} FROM {self.db}.{source}"
        )

    def query(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        return self.backend.query(sql.replace("{db}", self.db), params)

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        _, rows = self.query(sql, params)
        return rows[0][0] if rows else None


def run_named_query(
    s: Schemaed, name: str, market_id: str | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    queries = named_queries(s.db)
    if name not in queries:
        raise KeyError(f"unknown analytics query {name!r}; known: {', '.join(queries)}")
    params = {"market_id": market_id} if name == "price_movement" else None
    if name == "price_movement" and not market_id:
        raise ValueError("price_movement needs a market_id")
    return s.backend.query(queries[name], params)


# --------------------------------------------------------------------------------------------
# The sink's store side
# --------------------------------------------------------------------------------------------
def _leg_market_id(leg: Mapping[str, Any]) -> str:
    try:
        from oddsflow.domain.markets import market_id

        line = Decimal(leg["line"]) if leg.get("line") is not None else None
        return market_id(leg["event_id"], leg["market_type"], leg["period"], line)
    except Exception:  # an unknown market type still gets a stable id rather than failing the sink
        base = f"{leg['event_id']}/{leg['market_type']}/{leg['period']}"
        return base if leg.get("line") is None else f"{base}/{leg['line']}"


def rows_for(record: Record) -> dict[str, list[dict[str, Any]]]:
    """Kafka record -> rows per table (pure mapping, no business rules)."""
    v = record.value
    if record.key == "ledger":
        return {
            "postings": [
                {
                    "posting_id": p["posting_id"],
                    "tx_id": v["tx_id"],
                    "kind": v["kind"],
                    "bet_id": v.get("bet_id"),
                    "account_id": v.get("account_id"),
                    "account": p["account"],
                    "amount_minor": p["amount_minor"],
                    "currency": p["currency"],
                    "created_at": _ts(v["created_at"]),
                }
                for p in v["postings"]
            ]
        }
    if record.key == "bet_decisions":
        return {
            "bet_decisions": [
                {
                    "bet_id": v["bet_id"],
                    "account_id": v["account_id"],
                    "accepted": v["accepted"],
                    "reason": v.get("reason"),
                    "bound_odds": list(v["bound_odds"]),
                    "stake_minor": v["stake_minor"],
                    "potential_return_minor": v["potential_return_minor"],
                    "currency": v["currency"],
                    "requested_at": _ts(v["requested_at"]),
                    "decided_at": _ts(v["decided_at"]),
                }
            ]
        }
    if record.key == "settlements":
        return {
            "settlements": [
                {
                    "bet_id": v["bet_id"],
                    "revision": v["revision"],
                    "account_id": v["account_id"],
                    "outcome": v["outcome"],
                    "stake_minor": v["stake_minor"],
                    "return_minor": v["return_minor"],
                    "previous_return_minor": v["previous_return_minor"],
                    "currency": v["currency"],
                    "settled_at": _ts(v["settled_at"]),
                }
            ]
        }
    if record.key == "priced_markets":
        return {
            "price_history": [
                {
                    "market_id": v["market_id"],
                    "version": v["version"],
                    "selection": sel["selection"],
                    "event_id": v["event_id"],
                    "market_type": v["market_type"],
                    "period": v["period"],
                    "line": v.get("line"),
                    "status": v["status"],
                    "in_play": v["in_play"],
                    "provider_odds": sel["provider_odds"],
                    "fair_probability": sel["fair_probability"],
                    "odds": sel["odds"],
                    "margin": v["margin"],
                    "overround": v["overround"],
                    "provider_ts": _ts(v["provider_ts"]),
                    "priced_ts": _ts(v["priced_ts"]),
                }
                for sel in v["selections"]
            ]
        }
    if record.key == "bet_requests":
        legs = v["legs"]
        return {
            "bet_legs": [
                {
                    "bet_id": v["bet_id"],
                    "leg_index": i,
                    "leg_count": len(legs),
                    "account_id": v["account_id"],
                    "event_id": leg["event_id"],
                    "market_id": _leg_market_id(leg),
                    "market_type": leg["market_type"],
                    "period": leg["period"],
                    "line": leg.get("line"),
                    "selection": leg["selection"],
                    "requested_odds": leg["odds"],
                    "stake_minor": v["stake_minor"],
                    "currency": v["currency"],
                    "channel": v.get("channel", "web"),
                    "placed_at": _ts(v["placed_at"]),
                }
                for i, leg in enumerate(legs)
            ]
        }
    return {}


class ClickHouseStore:
    def __init__(self, s: Schemaed, consumer_group: str) -> None:
        self.s = s
        self.consumer_group = consumer_group

    def load_offsets(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        _, rows = self.s.query(
            "SELECT topic, partition, max(next_offset) FROM {db}.sink_offsets"
            " WHERE consumer_group = {g:String} GROUP BY topic, partition",
            {"g": self.consumer_group},
        )
        return {(t, int(p)): int(o) for t, p, o in rows}

    def flush(self, batch: Batch) -> None:
        tables: dict[str, list[dict[str, Any]]] = {}
        for r in batch.records:
            for table, rows in rows_for(r).items():
                tables.setdefault(table, []).extend(rows)
        try:
            for table, rows in tables.items():
                if rows:
                    self.s.backend.insert_json_rows(f"{self.s.db}.{table}", rows)
                    metrics.ROWS_WRITTEN.labels(SINK_NAME, table).inc(len(rows))
            # offsets strictly after the data: a crash in between only replays (deduplicated) rows
            self.s.backend.insert_json_rows(
                f"{self.s.db}.sink_offsets",
                [
                    {
                        "consumer_group": self.consumer_group,
                        "topic": t,
                        "partition": p,
                        "next_offset": o,
                    }
                    for (t, p), o in sorted(batch.next_offsets.items())
                ],
            )
        except Exception as exc:  # server down, timeout, chdb error: back off and retry the batch
            raise RetryableStoreError(f"{type(exc).__name__}: {exc}") from exc


def run_clickhouse_sink(
    settings: Settings | None = None,
    stop_event: threading.Event | None = None,
    max_idle_s: float | None = None,
    config: SinkConfig | None = None,
) -> BatchConsumer:
    """Consume the engine's outputs into ClickHouse until ``stop_event`` or ``max_idle_s`` idle."""
    settings = settings or get_settings()
    stop_event = stop_event or threading.Event()
    config = config or SinkConfig(name=SINK_NAME, topic_keys=TOPIC_KEYS)
    with open_backend(settings) as s:
        consumer = BatchConsumer(
            settings,
            config,
            load_offsets=lambda tps: {},
            flush=lambda b: None,
            stop_event=stop_event,
        )
        store = ClickHouseStore(s, consumer.group_id)
        consumer.load_offsets = store.load_offsets
        consumer.flush = store.flush
        consumer.run(max_idle_s=max_idle_s)
    return consumer


# --------------------------------------------------------------------------------------------
# Figures for the demo and the contract tests
# --------------------------------------------------------------------------------------------
def ggr_by_currency(settings: Settings | None = None) -> dict[str, int]:
    """currency -> GGR from the deduplicated postings: the balance of ``book:ggr`` in each
    currency (equals the ledger's)."""
    with open_backend(settings) as s:
        _, rows = s.query(
            "SELECT currency, sum(amount_minor) FROM {db}.postings FINAL"
            " WHERE account = 'book:ggr' GROUP BY currency"
        )
    return {str(c): int(g) for c, g in rows}


def ggr_minor(settings: Settings | None = None) -> int | None:
    """The GGR of a single-currency book (0 with no postings); None when the postings hold
    several currencies, which are never added together (use :func:`ggr_by_currency`)."""
    by_ccy = ggr_by_currency(settings)
    return None if len(by_ccy) > 1 else sum(by_ccy.values())


def contract_facts(settings: Settings) -> dict[str, Any]:
    """The figures every sink backend must agree on (tests/sinks/test_contract.py), per currency."""
    with open_backend(settings) as s:
        q = s.scalar

        def by_currency(sql: str) -> dict[str, int]:
            return {str(c): int(v) for c, v in s.query(sql)[1]}

        return {
            "postings": int(q("SELECT count() FROM {db}.postings FINAL")),
            "abs_sum_minor": by_currency(
                "SELECT currency, sum(abs(amount_minor)) FROM {db}.postings FINAL GROUP BY currency"
            ),
            "ggr_by_currency": by_currency(
                "SELECT currency, sum(amount_minor) FROM {db}.postings FINAL"
                " WHERE account = 'book:ggr' GROUP BY currency"
            ),
            "balances": {
                (str(a), str(c)): int(b)
                for a, c, b in s.query(
                    "SELECT account, currency, sum(amount_minor) FROM {db}.postings FINAL"
                    " GROUP BY account, currency"
                )[1]
            },
            "bets": int(q("SELECT count() FROM {db}.bet_decisions FINAL")),
            "accepted": int(q("SELECT countIf(accepted) FROM {db}.bet_decisions FINAL")),
            "rejected": int(q("SELECT countIf(NOT accepted) FROM {db}.bet_decisions FINAL")),
            "settled": int(q("SELECT uniqExact(account_id, bet_id) FROM {db}.settlements FINAL")),
            "settlement_revisions": int(q("SELECT count() FROM {db}.settlements FINAL")),
            "turnover_by_currency": by_currency(
                "SELECT currency, sum(stake_minor) FROM {db}.bet_decisions FINAL"
                " WHERE accepted GROUP BY currency"
            ),
            "returns_by_currency": by_currency(
                "SELECT ccy, sum(r) FROM (SELECT any(currency) AS ccy,"
                " argMax(return_minor, revision) AS r"
                " FROM {db}.settlements FINAL GROUP BY account_id, bet_id) GROUP BY ccy"
            ),
        }


def forget_offsets(settings: Settings) -> None:
    with open_backend(settings) as s:
        s.backend.command(f"TRUNCATE TABLE {s.db}.sink_offsets")


def drop_database(settings: Settings) -> None:
    with open_backend(settings, ensure=False) as s:
        s.backend.command(f"DROP DATABASE IF EXISTS {s.db}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m oddsflow.sinks.clickhouse", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--metrics-port", type=int, default=None)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    stop = threading.Event()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    c = run_clickhouse_sink(Settings(), stop_event=stop, max_idle_s=args.idle_exit)
    log.info(
        "clickhouse sink: flushed %d messages (%d undecodable)", c.flushed_messages, c.undecodable
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
