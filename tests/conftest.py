"""Shared fixtures: the real local services, isolated topic namespaces, worker processes.

Integration tests run against the Kafka and Postgres that `oddsflow services up` starts
(or, on a machine with a Docker engine, may point ODDSFLOW_* at containers). Each test
session uses its own topic prefix, so runs never see each other's messages.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

# Tests run in dev mode (the built-in provider tokens are allowed), however pytest is started;
# a test that needs production mode passes env="prod" itself.
os.environ.setdefault("ODDSFLOW_ENV", "dev")

from oddsflow.settings import REPO_ROOT, Settings

EPL_CSV = Path(
    os.environ.get(
        "ODDSFLOW_EPL_CSV", REPO_ROOT.parent / "shared" / "data" / "epl-odds-results.csv"
    )
)


def _docker_engine() -> bool:
    import shutil

    if os.environ.get("ODDSFLOW_TESTCONTAINERS") != "1" or shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def services() -> Settings:
    """The services integration tests run against.

    With ODDSFLOW_TESTCONTAINERS=1 and a Docker engine (a laptop), Kafka and Postgres come from
    testcontainers; otherwise (this kind of machine has no Docker engine) the local services
    that `oddsflow services up` starts are used. Integration tests skip cleanly when neither
    is available outside CI.
    """
    from oddsflow import services as svc

    if _docker_engine():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        kafka = KafkaContainer("apache/kafka:3.9.1").with_kraft().start()
        pg = PostgresContainer(
            "postgres:16", username="oddsflow", password="oddsflow", dbname="oddsflow"
        ).start()
        host, port = pg.get_container_host_ip(), pg.get_exposed_port(5432)
        return Settings(
            kafka_bootstrap=kafka.get_bootstrap_server(),
            postgres_host=host,
            postgres_port=int(port),
            postgres_dsn=f"host={host} port={port} user=oddsflow password=oddsflow dbname=oddsflow",
        )

    s = Settings()
    try:
        svc.up(s)
    except svc.ServiceError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"local services unavailable: {exc}")
    return s


_PREFIXES: list[tuple[str, str]] = []  # (bootstrap, topic prefix) handed out this session


def fresh_settings(base: Settings, **overrides: object) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    _PREFIXES.append((base.kafka_bootstrap, prefix))
    return base.model_copy(update={"topic_prefix": prefix, "metrics_port": 0, **overrides})


@pytest.fixture(scope="session", autouse=True)
def _drop_test_topics():
    # Every test's topics (and its workers' changelogs) are dropped when the session ends: a
    # broker holds open files and memory maps per partition, and a whole suite's worth of
    # partitions passed this machine's open-file limit once ("Too many open files").
    yield
    from oddsflow import topology

    if os.environ.get("ODDSFLOW_TEST_KEEP_TOPICS"):  # kept to debug a failed test
        return
    for bootstrap, prefix in _PREFIXES:
        topology.delete_prefixed(bootstrap, prefix)


@pytest.fixture()
def kafka_settings(services: Settings):
    from oddsflow import topology

    s = fresh_settings(services)
    topology.apply(topology.load(settings=s), s.kafka_bootstrap)
    yield s
    if not os.environ.get("ODDSFLOW_TEST_KEEP_TOPICS"):  # kept to debug a failed test
        topology.delete_prefixed(s.kafka_bootstrap, s.topic_prefix)


class WorkerProcess:
    """An `oddsflow worker` subprocess that tests can SIGKILL and restart."""

    def __init__(self, s: Settings, log_dir: Path, name: str = "w") -> None:
        self.s, self.log_dir, self.name = s, log_dir, name
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> WorkerProcess:
        self.starts += 1
        log = open(self.log_dir / f"{self.name}-{self.starts}.log", "wb")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oddsflow.cli", "worker", "-l", "warn"],
            env=self.s.child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob(f"{self.name}-*.log"))
        )


@pytest.fixture()
def worker_factory(tmp_path: Path):
    started: list[WorkerProcess] = []

    def make(s: Settings, name: str = "w") -> WorkerProcess:
        w = WorkerProcess(s, tmp_path, name)
        started.append(w)
        return w

    yield make
    for w in started:
        w.kill()


def wait_for(predicate, timeout_s: float = 60.0, interval_s: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")
