"""One real stack per test module: topics, a database, a worker, the Postgres sink, API servers.

API instances are `oddsflow api --port 0` subprocesses (each its own consumer of the engine's
output, as in production); tests talk to them over real HTTP (httpx) and WebSocket (websockets).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from oddsflow import topology
from oddsflow.api.auth import Role, mint_token
from oddsflow.api.settings import ApiSettings
from oddsflow.kafka import EventProducer
from oddsflow.settings import REPO_ROOT, Settings
from tests.conftest import WorkerProcess, fresh_settings, wait_for
from tests.processors import records as r

os.environ.setdefault("ODDSFLOW_ENV", "dev")  # tokens are minted with the dev secret

_READY_RE = re.compile(r"oddsflow api ready on (http://\S+)")


def _admin_dsn(s: Settings, db: str = "postgres") -> str:
    return f"host={s.postgres_host} port={s.postgres_port} user={s.postgres_user} dbname={db}"


class Proc:
    """A child process whose output goes to a log file (and is scanned for a ready line)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.url: str | None = None
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            args,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with self.log.open("wb") as out:
            for line in self.proc.stdout:
                out.write(line)
                out.flush()
                m = _READY_RE.search(line.decode(errors="replace"))
                if m:
                    self.url = m[1]
                    self._ready.set()

    def wait_ready(self, timeout_s: float = 120) -> str:
        if (
            not wait_for(
                lambda: self._ready.is_set() or self.proc.poll() is not None, timeout_s, 0.1, "api"
            )
            or not self._ready.is_set()
        ):
            raise AssertionError(f"api did not start:\n{self.log.read_text(errors='replace')}")
        assert self.url is not None
        return self.url

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@dataclass
class Stack:
    s: Settings
    log_dir: Path
    procs: list[Proc] = field(default_factory=list)
    apis: dict[str, str] = field(default_factory=dict)
    producer: EventProducer | None = None

    def start_api(self, name: str, **api_env: object) -> str:
        env = self.s.child_env()
        env["ODDSFLOW_ENV"] = "dev"
        env["ODDSFLOW_API_INSTANCE_ID"] = f"{name}-{uuid.uuid4().hex[:6]}"
        for k, v in api_env.items():
            env[f"ODDSFLOW_API_{k.upper()}"] = str(v)
        p = Proc(
            [sys.executable, "-m", "oddsflow.cli", "api", "--port", "0", "--log-level", "warning"],
            env,
            self.log_dir / f"api-{name}.log",
        )
        self.procs.append(p)
        self.apis[name] = p.wait_ready()
        return self.apis[name]

    def send(self, topic_key: str, key: str, record: dict[str, object]) -> None:
        assert self.producer is not None
        self.producer.send(topic_key, key, record)
        self.producer.flush()

    def open_market(
        self, event_id: str, odds: tuple[str, ...] = ("2.10", "3.40", "3.60"), in_play: bool = False
    ) -> None:
        assert self.producer is not None
        self.producer.send("fixtures", event_id, r.fixture(event_id))
        self.producer.send(
            "market_status", event_id, r.status(event_id, "open", seq=1, in_play=in_play)
        )
        self.producer.send("price_updates", event_id, r.prices(event_id, odds))
        self.producer.flush()

    def refresh_market(
        self, event_id: str, odds: tuple[str, ...] = ("2.10", "3.40", "3.60")
    ) -> None:
        """A live feed's next update of the market (the same odds): an in-play price older
        than the view-age limit is refused as suspended, so a test betting in play long after
        the market opened refreshes it first, as a live feed keeps doing."""
        assert self.producer is not None
        before = max(
            (int(str(m["version"])) for url in self.apis.values() if (m := market(url, event_id))),
            default=0,
        )
        self._seq = getattr(self, "_seq", 1) + 1
        self.producer.send("price_updates", event_id, r.prices(event_id, odds, seq=self._seq))
        self.producer.flush()
        for url in self.apis.values():
            wait_market(url, event_id, before + 1)

    def deposit(self, account_id: str, amount_minor: int) -> None:
        self.send(
            "deposits",
            account_id,
            r.deposit(account_id, amount_minor, f"dep-{uuid.uuid4().hex[:8]}"),
        )


def token(account: str, *, operator: bool = False, ttl_s: int | None = None) -> str:
    return mint_token(
        ApiSettings(), account, role=Role.OPERATOR if operator else Role.CUSTOMER, ttl_s=ttl_s
    )


def auth(account: str, **kw: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(account, **kw)}"}  # type: ignore[arg-type]


def market(url: str, event_id: str, account: str = "reader") -> dict[str, object] | None:
    resp = httpx.get(f"{url}/v1/events/{event_id}/markets", headers=auth(account))
    if resp.status_code != 200 or not resp.json()["markets"]:
        return None
    return resp.json()["markets"][0]


def wait_market(url: str, event_id: str, version: int = 1) -> dict[str, object]:
    return wait_for(
        lambda: (m := market(url, event_id)) is not None and m["version"] >= version and m,
        90,
        0.3,
        f"market of {event_id} in the API's book",
    )


@pytest.fixture(scope="module")
def stack(
    services: Settings, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    """The module's stack; a module may set ``STACK_SETTINGS`` (Settings overrides) for it."""
    os.environ["ODDSFLOW_ENV"] = "dev"
    db = f"oddsflow_api_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_admin_dsn(services), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    from oddsflow.sinks.postgres import migrate

    migrate(_admin_dsn(services, db))
    s = fresh_settings(
        services,
        postgres_dsn=_admin_dsn(services, db),
        **getattr(request.module, "STACK_SETTINGS", {}),
    )
    topology.apply(topology.load(settings=s), s.kafka_bootstrap)
    log_dir = tmp_path_factory.mktemp("api-stack")
    st = Stack(s, log_dir, producer=EventProducer(s))
    worker = WorkerProcess(s, log_dir).start()
    sink = Proc(
        [sys.executable, "-m", "oddsflow.cli", "sink", "run", "postgres"],
        s.child_env(),
        log_dir / "sink.log",
    )
    st.procs.append(sink)
    try:
        yield st
    finally:
        for p in reversed(st.procs):
            p.stop()
        worker.stop()
        topology.delete_prefixed(s.kafka_bootstrap, s.topic_prefix)
        with psycopg.connect(_admin_dsn(services), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
