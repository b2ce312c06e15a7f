"""Local services for development, tests, the demo and benchmarks.

`oddsflow services up` starts, on private ports and data directories under ``.run/``:

* Apache Kafka (single-node KRaft), from jars Maven resolves from Maven Central via
  ``platform/kafka/pom.xml`` and run with Java 17;
* PostgreSQL from the Debian package, started with ``pg_ctl`` (no systemd);
* ClickHouse needs no process: the embedded ``chdb`` engine is used unless
  ``ODDSFLOW_CLICKHOUSE_URL`` names a server.

Every step is idempotent: ``up`` twice is fine, and a failure names the missing piece.
"""

from __future__ import annotations

import contextlib
import glob
import grp
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from oddsflow.settings import REPO_ROOT, Settings

KAFKA_POM = REPO_ROOT / "platform" / "kafka" / "pom.xml"


class ServiceError(RuntimeError):
    """A service could not be started; the message names the missing piece."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    where: str
    detail: str = ""


def kraft_cluster_id() -> str:
    """A KRaft cluster id: a base64url-encoded random UUID (22 chars), as `kafka-storage random-uuid` makes.

    One id in 64 would start with "-", which argparse-style command lines read as an option
    (`--cluster-id -abc...` fails with "expected one argument"); Kafka's own `Uuid.randomUuid`
    draws again in that case, and so do we. The id is also passed as `--cluster-id=ID`.
    """
    import base64

    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return None if _is_zombie(pid) else pid


def _is_zombie(pid: int) -> bool:
    """A process that has exited but not been reaped: signal 0 still reaches it, so without this
    a broker SIGKILLed by the process that started it (a crash test's second kill) would look
    alive until its parent waits on it."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no procfs (macOS): signal 0 is all there is
    # "pid (comm) state ...": comm may hold spaces and parentheses; the state follows the last ")"
    return stat_line.rpartition(")")[2].split()[:1] == ["Z"]


def _reap(pid: int) -> None:
    """Collect a dead child's exit status, if it is ours, so it leaves the process table."""
    with contextlib.suppress(ChildProcessError):  # not our child: its parent (or init) reaps it
        os.waitpid(pid, os.WNOHANG)


def _wait(
    predicate: Callable[[], object], timeout_s: float, what: str, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    tail = ""
    if log is not None and log.exists():
        tail = "\n--- last log lines ---\n" + "\n".join(
            log.read_text(errors="replace").splitlines()[-25:]
        )
    raise ServiceError(f"{what} did not answer within {timeout_s:.0f}s{tail}")


# --------------------------------------------------------------------------- Kafka


class Kafka:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.dir = settings.run_dir / "kafka"
        self.data = self.dir / "data"
        self.pid_file = self.dir / "kafka.pid"
        self.log = self.dir / "kafka.out"
        host, _, port = settings.kafka_bootstrap.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)

    def java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise ServiceError(
                "Java 17+ is required for Kafka: no `java` on PATH (apt-get install openjdk-17-jre-headless)"
            )
        out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
        try:
            version = out.split('"')[1]
            major = int(version.split(".")[0])
        except (IndexError, ValueError):
            major = 0
        if major < 17:
            raise ServiceError(
                f"Kafka 3.9 needs Java 17+, found: {out.splitlines()[0] if out else 'unknown'}"
            )
        return java

    def ensure_jars(self) -> None:
        libs = self.s.kafka_libs_dir
        if list(libs.glob("kafka_2.13-*.jar")):
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServiceError(
                "Maven is required to resolve the Kafka jars: no `mvn` on PATH (apt-get install maven)"
            )
        libs.mkdir(parents=True, exist_ok=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(KAFKA_POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not list(libs.glob("kafka_2.13-*.jar")):
            raise ServiceError(
                f"mvn failed to resolve Kafka from Maven Central:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
            )

    def write_config(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        props = self.dir / "server.properties"
        cport = self.s.kafka_controller_port
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{cport}",
                    f"listeners=PLAINTEXT://{self.host}:{self.port},CONTROLLER://127.0.0.1:{cport}",
                    f"advertised.listeners=PLAINTEXT://{self.host}:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={self.data}",
                    "num.partitions=4",
                    "default.replication.factor=1",
                    "offsets.topic.replication.factor=1",
                    # Transactions (exactly_once) on a single broker need these at 1.
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "min.insync.replicas=1",
                    # A killed worker's open transaction blocks read_committed readers until
                    # it is aborted: look for timed-out transactions every second, not 10 s.
                    "transaction.abort.timed.out.transaction.cleanup.interval.ms=1000",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "log.retention.hours=168",
                    "num.network.threads=2",
                    "num.io.threads=4",
                    "",
                ]
            )
        )
        log4j = self.dir / "log4j.properties"
        log4j.write_text(
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.server.KafkaServer=INFO\n"
            "log4j.logger.kafka.server.BrokerServer=INFO\n"
        )
        return props

    def classpath(self) -> str:
        return str(self.s.kafka_libs_dir / "*")

    def status(self) -> ServiceStatus:
        pid = _pid_alive(self.pid_file)
        up = _port_open(self.host, self.port)
        return ServiceStatus("kafka", up, f"{self.host}:{self.port}", f"pid {pid}" if pid else "")

    def up(self) -> ServiceStatus:
        if _pid_alive(self.pid_file) and _port_open(self.host, self.port):
            return self.status()
        if _port_open(self.host, self.port):
            raise ServiceError(
                f"port {self.port} is busy but not by our Kafka (set ODDSFLOW_KAFKA_BOOTSTRAP to another port)"
            )
        java = self.java()
        self.ensure_jars()
        props = self.write_config()
        if not (self.data / "meta.properties").exists():
            cluster_id = self._cluster_id()
            fmt = subprocess.run(
                [
                    java,
                    "-cp",
                    self.classpath(),
                    f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}",
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={cluster_id}",
                    f"--config={props}",
                    "--ignore-formatted",
                ],
                capture_output=True,
                text=True,
            )
            if fmt.returncode != 0:
                raise ServiceError(f"kafka storage format failed:\n{fmt.stdout}{fmt.stderr}")
        heap = os.environ.get("ODDSFLOW_KAFKA_HEAP", "-Xms512m -Xmx1g")
        with open(self.log, "ab") as out:
            proc = subprocess.Popen(
                [
                    java,
                    *heap.split(),
                    "-XX:+UseG1GC",
                    "-XX:MaxGCPauseMillis=20",
                    "-Djava.awt.headless=true",
                    f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}",
                    "-cp",
                    self.classpath(),
                    "kafka.Kafka",
                    str(props),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_raise_open_files_limit,
            )
        self.pid_file.write_text(str(proc.pid))
        _wait(
            lambda: proc.poll() is None and _port_open(self.host, self.port), 90, "Kafka", self.log
        )
        if proc.poll() is not None:
            raise ServiceError(f"Kafka exited with {proc.returncode}; see {self.log}")
        self._wait_ready()
        return self.status()

    def _cluster_id(self) -> str:
        return kraft_cluster_id()

    def _wait_ready(self) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.s.kafka_bootstrap})

        def ready() -> bool:
            try:
                md = admin.list_topics(timeout=2)
                return bool(md.brokers)
            except Exception:
                return False

        _wait(ready, 60, "Kafka metadata", self.log)

    def down(self) -> None:
        pid = _pid_alive(self.pid_file)
        if pid:
            os.killpg(pid, signal.SIGTERM) if _is_group_leader(pid) else os.kill(
                pid, signal.SIGTERM
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _pid_alive(self.pid_file):
                time.sleep(0.25)
            if _pid_alive(self.pid_file):
                os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)

    def reset(self) -> None:
        self.down()
        shutil.rmtree(self.dir, ignore_errors=True)

    def kill(self, timeout_s: float = 30) -> None:
        """SIGKILL the broker, as a crash would (crash tests; ``up`` starts it again on the
        same data directory). Returns once the process is gone and the port is closed."""
        pid = _pid_alive(self.pid_file)
        if pid is None:
            return
        os.killpg(pid, signal.SIGKILL) if _is_group_leader(pid) else os.kill(pid, signal.SIGKILL)

        def gone() -> bool:
            _reap(pid)
            return _pid_alive(self.pid_file) is None and not _port_open(self.host, self.port)

        _wait(
            gone,
            timeout_s,
            "Kafka to die",
        )


def _raise_open_files_limit() -> None:
    # A broker keeps a log segment and two memory-mapped indexes open per partition; a test run
    # that creates thousands of partitions passed a 20,000 soft limit here ("Too many open
    # files", then a corrupt metadata log). The hard limit is the real ceiling.
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (max(hard, 262_144), hard):  # root may raise the hard limit; others may not
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
        except (ValueError, OSError):
            continue


def _is_group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


# --------------------------------------------------------------------------- Postgres


def first_blocked_parent(path: Path, user: str) -> Path | None:
    """The first existing folder above ``path`` that ``user`` may not enter (no x bit for it)."""
    pw = pwd.getpwnam(user)
    groups = {pw.pw_gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)}
    for folder in reversed(path.resolve().parents):
        try:
            st = folder.stat()
        except FileNotFoundError:
            break
        if st.st_uid == pw.pw_uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return folder
    return None


def postgres_unreachable_hint(run_dir: Path, blocked: Path | None = None) -> str:
    where = f"{blocked} is not enterable by it" if blocked else "a parent folder is not enterable"
    return (
        f"as root, Postgres runs as the `postgres` user and {where}; run from a folder it can "
        f"reach, set ODDSFLOW_RUN_DIR to one (e.g. /var/tmp/oddsflow), or `chmod o+x {blocked or run_dir.parent}`"
    )


class Postgres:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.dir = settings.run_dir / "pg"
        self.data = self.dir / "data"
        self.sock = self.dir / "sock"
        self.log = self.dir / "postgres.log"

    def bindir(self) -> Path:
        found = sorted(
            glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4])
        )
        if not found:
            raise ServiceError("PostgreSQL server not found: apt-get install postgresql")
        return Path(found[-1]).parent

    def _as_owner(self) -> list[str]:
        # initdb and postgres refuse to run as root; as root we run them as the Debian `postgres` user.
        if os.geteuid() != 0:
            return []
        try:
            pwd.getpwnam("postgres")
        except KeyError as exc:
            raise ServiceError(
                "running as root needs the `postgres` system user (apt-get install postgresql)"
            ) from exc
        return ["runuser", "-u", "postgres", "--"]

    def _check_reachable_by_postgres(self) -> None:
        """As root, initdb runs as `postgres`, which must be able to enter every parent folder."""
        blocked = first_blocked_parent(self.dir, "postgres")
        if blocked is not None:
            raise ServiceError(postgres_unreachable_hint(self.dir, blocked))

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
                os.chown(p, pw.pw_uid, pw.pw_gid)

    def status(self) -> ServiceStatus:
        up = _port_open(self.s.postgres_host, self.s.postgres_port)
        return ServiceStatus(
            "postgres", up, f"{self.s.postgres_host}:{self.s.postgres_port}", f"data {self.data}"
        )

    def up(self) -> ServiceStatus:
        bindir = self.bindir()
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists() and _port_open(self.s.postgres_host, self.s.postgres_port):
            self._ensure_db(bindir)
            return self.status()
        if _port_open(self.s.postgres_host, self.s.postgres_port):
            raise ServiceError(
                f"port {self.s.postgres_port} is busy but not by our Postgres (set ODDSFLOW_POSTGRES_PORT)"
            )
        owner = self._as_owner()
        if owner:
            self._check_reachable_by_postgres()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(parents=True, exist_ok=True)
        if not (self.data / "PG_VERSION").exists():
            self.data.mkdir(parents=True, exist_ok=True)
            self._chown(self.dir)
            proc = subprocess.run(
                [
                    *owner,
                    str(bindir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    self.s.postgres_user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                hint = ""
                if owner and "Permission denied" in proc.stderr:
                    hint = f"\nhint: {postgres_unreachable_hint(self.dir)}"
                raise ServiceError(f"initdb failed:\n{proc.stdout}{proc.stderr}{hint}")
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write(
                    "\n# oddsflow local cluster\n"
                    f"listen_addresses = '{self.s.postgres_host}'\n"
                    f"port = {self.s.postgres_port}\n"
                    f"unix_socket_directories = '{self.sock}'\n"
                    "max_connections = 200\n"
                    "shared_buffers = 256MB\n"
                    "wal_compression = on\n"
                    "max_wal_size = 2GB\n"
                )
        self._chown(self.dir)
        proc = subprocess.run(
            [
                *owner,
                str(bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "60",
                "start",
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 and not _port_open(self.s.postgres_host, self.s.postgres_port):
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise ServiceError(f"pg_ctl start failed:\n{proc.stdout}{proc.stderr}\n{log}")
        _wait(
            lambda: _port_open(self.s.postgres_host, self.s.postgres_port), 60, "Postgres", self.log
        )
        self._ensure_db(bindir)
        return self.status()

    def _ensure_db(self, bindir: Path) -> None:
        args = [
            "-h",
            self.s.postgres_host,
            "-p",
            str(self.s.postgres_port),
            "-U",
            self.s.postgres_user,
        ]
        q = subprocess.run(
            [
                str(bindir / "psql"),
                *args,
                "-d",
                "postgres",
                "-tAc",
                f"SELECT 1 FROM pg_database WHERE datname = '{self.s.postgres_db}'",
            ],
            capture_output=True,
            text=True,
        )
        if q.stdout.strip() != "1":
            c = subprocess.run(
                [str(bindir / "createdb"), *args, self.s.postgres_db],
                capture_output=True,
                text=True,
            )
            if c.returncode != 0 and "already exists" not in c.stderr:
                raise ServiceError(f"createdb failed: {c.stderr}")

    def down(self) -> None:
        if not (self.data / "postmaster.pid").exists():
            return
        subprocess.run(
            [
                *self._as_owner(),
                str(self.bindir() / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
            capture_output=True,
            text=True,
        )

    def reset(self) -> None:
        self.down()
        shutil.rmtree(self.dir, ignore_errors=True)


def clickhouse_status(settings: Settings) -> ServiceStatus:
    if settings.clickhouse_url:
        return ServiceStatus(
            "clickhouse", True, settings.clickhouse_url, "server via clickhouse-connect"
        )
    return ServiceStatus("clickhouse", True, str(settings.chdb_path), "embedded chdb")


def up(settings: Settings) -> list[ServiceStatus]:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    return [Kafka(settings).up(), Postgres(settings).up(), clickhouse_status(settings)]


def down(settings: Settings) -> None:
    Kafka(settings).down()
    Postgres(settings).down()


def status(settings: Settings) -> list[ServiceStatus]:
    return [Kafka(settings).status(), Postgres(settings).status(), clickhouse_status(settings)]
