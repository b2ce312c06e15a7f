"""One frozen, typed settings object for every oddsflow process.

Values come from environment variables prefixed ``ODDSFLOW_`` (for example
``ODDSFLOW_KAFKA_BOOTSTRAP=127.0.0.1:19092``) or a ``.env`` file in the working directory.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent

DEV_PROVIDER_TOKENS = "demo:demo-token,csv:csv-token,sim:sim-token"
"""The built-in feed tokens: public in this repository, so usable only with ``env="dev"``."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ODDSFLOW_", env_file=".env", frozen=True, extra="ignore"
    )

    # "dev" (ODDSFLOW_ENV=dev: `make demo`, `make test`) allows the built-in secrets; any other
    # value is a real deployment, where a process refuses to start with them.
    env: str = "prod"

    # Kafka: the broker `oddsflow services up` starts listens on a private port so it never
    # collides with a developer's own Kafka on 9092.
    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_controller_port: int = 19093
    # Topic names are prefixed so tests and benchmarks can run side by side on one broker.
    topic_prefix: str = ""
    schema_registry_url: str | None = None

    # Postgres: a private cluster on its own port and data directory.
    postgres_port: int = 15432
    postgres_host: str = "127.0.0.1"
    postgres_user: str = "oddsflow"
    postgres_db: str = "oddsflow"
    postgres_dsn: str | None = None

    # ClickHouse: a server when a URL is set, the embedded chdb engine otherwise.
    clickhouse_url: str | None = None
    chdb_path: Path = REPO_ROOT / ".run" / "chdb"

    # Where services keep their data, logs and pids (git-ignored).
    run_dir: Path = REPO_ROOT / ".run"
    kafka_libs_dir: Path = REPO_ROOT / ".cache" / "kafka" / "libs"

    # Faust worker
    app_id: str = "oddsflow"
    processing_guarantee: str = "exactly_once"
    worker_web_port: int = 6066
    store: str = "memory://"
    standby_replicas: int = 0
    # With exactly_once, outputs become visible to read_committed consumers when the
    # transaction commits: the commit interval bounds decision latency from below. 0.05 s, not
    # 0.1: the bench's commit_path sweep (2026-12-01, three runs at 100 bets/s) gave a lower
    # decision p50 in every run (53/97/70 ms against 94/117/82) and a p99 as low or lower, with
    # the same closed-loop decisions/s (635 against 607); at 0.02 s the worker's own commit
    # (~40 ms) runs back to back and p99 doubles.
    # 0.02 s with a 10 ms retry backoff (ODDSFLOW_RETRY_BACKOFF_MS), once the worker's commit
    # fit in 20 ms (2026-12-01 evening, alternated runs at 100 bets/s): decision p50 37-42 ms
    # against 44-51 ms at 0.05 s / 100 ms, p99 62-107 against 72-100, the same closed loop.
    # Held back because the two-worker failover test failed at it (2 of 3 runs: a quota grant
    # or return applied twice after a rebalance). One cause is fixed (the resume offsets are now
    # asked as stable offsets, processors.recovery.committed_offsets) and the test then passed
    # 8 of 8 runs alone at 0.02 s, but its first attempt failed once more in a CI rehearsal
    # under load, so the default stays 0.05 s until that failure is explained.
    # 2026-12-04, with the retry backoff now 10 ms by default (processors.transport): the
    # failover test passed 3 of 3 runs at 0.02 s beside a CPU burner, but 0.02 s is not a
    # clear gain. Alternated, one worker: @100 bets/s p50 30.6 against 46.2 ms; @1,000 bets/s
    # p50 84-86 against 71-75 ms and p99 235-246 against 121-261 ms (why under load was not
    # profiled). Kept at 0.05 s.
    commit_interval_s: float = 0.05
    commit_every: int = 10_000
    # Agents take events in batches: up to this many, or whatever arrived within this time.
    # A batch's outputs go out per partition in one go (see processors.emit).
    agent_batch_max: int = 1_000
    agent_batch_within_ms: float = 10.0
    # ...and emit what a batch has done after this long, so the loop and the commit move on
    # (processors.commit_pacing). Measured (2026-12-02, 30,000 bets settled by one worker,
    # three alternated runs each): 100 ms against 500 ms, the first settlement 418-537 against
    # 904-1,421 ms after the result, the burst's duration the same within the runs' spread.
    agent_batch_budget_ms: float = 100.0
    # Price only the newest update of a market in an agent batch (processors.conflation). On
    # since the feed became a topic of batches (2026-12-03, prices closed loop, one worker,
    # exactly_once, 200 markets): with the ingestors' batched feed an agent batch holds
    # thousands of updates and conflation priced 12,794-24,383 updates/s against 3,355-4,373
    # without it; with one update per message batches hold ~140 updates over 200 markets, so
    # it conflates little there (the 2026-12-01 run found no difference within its spread, and
    # the 2026-12-02 run 4,124 upd/s on against 2,766 off).
    conflate_prices: bool = True
    # The worker's garbage collector: objects alive at start (modules, Faust, aiokafka) are
    # frozen out of every collection, and the youngest generation is collected every this many
    # net allocations (Python's default: 700). Measured (2026-12-01, a worker deciding 15,000
    # bets closed loop): with the defaults the collector took ~1.1 s, with full collections
    # of ~90 ms that stop every thread (a decision's p99); frozen and at 20,000 it took ~0.14 s
    # and ran no full collection. 0 keeps Python's defaults.
    gc_gen0_threshold: int = 20_000
    # How long the group waits for a silent (e.g. SIGKILLed) worker before moving its partitions.
    session_timeout_s: float = 10.0

    # The book
    margin: str = "0.05"
    pricing_method: str = "proportional"
    currency: str = "GBP"
    # ISO 4217 codes taken in bets and deposits (oddsflow.domain.currency checks each one).
    accepted_currencies: str = "GBP,EUR,USD,JPY,CHF,SEK,NOK,DKK"
    # Liability limits per market (minor units; unset: the domain's Limits defaults) and the
    # share of a market's headroom handed to the account partitions as quotas (millionths).
    liability_minor_max_selection: int | None = None
    liability_minor_max_market: int | None = None
    quota_share_ppm: int = 500_000
    # An in-play market's price older than this in the worker's view is refused as suspended
    # (oddsflow.domain.decide: a live feed gone silent); three in-play bet delays by default.
    view_age_ms_max_in_play: int = 15_000

    # Feed ingestion HTTP endpoint; tokens as "provider:token,provider2:token2".
    ingest_port: int = 8088
    provider_tokens: str = DEV_PROVIDER_TOKENS
    # Request limits of the endpoint: a whole body (after Content-Encoding), one item of the
    # JSON array (a Kafka message must stay under the broker's 1 MB default), items per body.
    ingest_body_max_bytes: int = 16 * 1024 * 1024
    ingest_item_max_bytes: int = 256 * 1024
    ingest_items_max: int = 10_000

    metrics_port: int = 9300

    @property
    def pg_dsn(self) -> str:
        if self.postgres_dsn:
            return self.postgres_dsn
        return (
            f"host={self.postgres_host} port={self.postgres_port} "
            f"user={self.postgres_user} dbname={self.postgres_db}"
        )

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def child_env(self) -> dict[str, str]:
        """The environment for a child process (worker, sink) that must see these settings."""
        env = dict(os.environ)
        for name, value in self.model_dump().items():
            if value is not None:
                env[f"ODDSFLOW_{name.upper()}"] = str(value)
        env["PYTHONUNBUFFERED"] = "1"
        return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
