"""A private RabbitMQ node for the UOF adapter's tests, the demo and CI.

Debian's ``rabbitmq-server`` is started directly from ``/usr/lib/rabbitmq/bin`` (not the
``/usr/sbin`` wrapper, which switches to the ``rabbitmq`` user and resets the environment), with
everything that could collide with a system node made private:

* node name ``oddsflow-<hash of the run dir>@localhost``, AMQP port and distribution port from
  :class:`RabbitSettings` (15673 / 25673 by default, never 5672);
* its own epmd on ``ERL_EPMD_PORT`` (14369), so a system epmd on 4369 is neither used nor needed;
* ``HOME`` (the Erlang cookie), mnesia and logs under ``<run_dir>/rabbitmq``;
* no plugins (no management UI listening on 15672).

``up`` is idempotent (a node already answering is left alone) and ``down`` stops the node and
its epmd. The broker's only user is RabbitMQ's built-in ``guest``, which RabbitMQ accepts from
loopback only; the URL with it is a dev-mode default (see :mod:`oddsflow.streams.uof.settings`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from oddsflow.services import ServiceStatus, _port_open
from oddsflow.settings import Settings

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


class RabbitError(RuntimeError):
    """The node could not be started; the message names the missing piece."""


class RabbitSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ODDSFLOW_RABBITMQ_", frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    port: int = 15673
    dist_port: int = 25673
    epmd_port: int = 14369
    start_timeout_s: float = 90.0
    # Defaults to <ODDSFLOW_RUN_DIR>/rabbitmq; set to keep several checkouts' nodes apart.
    run_dir: Path | None = None


# The same status shape and port probe as the Kafka and Postgres services.
RabbitStatus = ServiceStatus


def installed() -> bool:
    """Whether Debian's rabbitmq-server is on this machine."""
    return (RABBIT_BIN / "rabbitmq-server").exists() and shutil.which("erl") is not None


class RabbitMQ:
    def __init__(self, settings: Settings, rabbit: RabbitSettings | None = None) -> None:
        self.s = settings
        self.r = rabbit or RabbitSettings()
        self.dir = self.r.run_dir or settings.run_dir / "rabbitmq"
        self.pid_file = self.dir / "rabbitmq.pid"
        self.log = self.dir / "rabbitmq.out"
        digest = hashlib.sha256(str(self.dir.resolve()).encode()).hexdigest()[:8]
        self.node = f"oddsflow-{digest}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.r.host}:{self.r.port}/"

    def env(self) -> dict[str, str]:
        home = self.dir / "home"
        env = dict(os.environ)
        env.update(
            HOME=str(home),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS=self.r.host,
            RABBITMQ_NODE_PORT=str(self.r.port),
            RABBITMQ_DIST_PORT=str(self.r.dist_port),
            ERL_EPMD_PORT=str(self.r.epmd_port),
            RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.dir / "log"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
            RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq"),  # .conf appended by RabbitMQ
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.dir / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(self.dir / "rabbitmq-env.conf"),
            RABBITMQ_PID_FILE=str(self.dir / "node.pid"),
        )
        return env

    def _prepare(self) -> None:
        for sub in ("home", "mnesia", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq-env.conf").write_text("")
        (self.dir / "advanced.config").write_text("[].\n")
        # Loopback only; guest is loopback-only in RabbitMQ anyway.
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {self.r.host}:{self.r.port}\n"
            "loopback_users.guest = true\n"
            "log.console = true\nlog.file = false\n"
        )

    def status(self) -> RabbitStatus:
        up = _port_open(self.r.host, self.r.port)
        return RabbitStatus("rabbitmq", up, f"{self.r.host}:{self.r.port}", self.node)

    def up(self) -> RabbitStatus:
        if self.status().running:
            return self.status()
        if not installed():
            raise RabbitError(
                "RabbitMQ is not installed: no /usr/lib/rabbitmq/bin/rabbitmq-server "
                "(apt-get install rabbitmq-server)"
            )
        self._prepare()
        log = self.log.open("ab")
        try:
            proc = subprocess.Popen(
                [str(RABBIT_BIN / "rabbitmq-server")],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
                start_new_session=True,  # its own process group: `down` ends it and only it
            )
        finally:
            log.close()
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + self.r.start_timeout_s
        while time.monotonic() < deadline:
            if _port_open(self.r.host, self.r.port):
                return self.status()
            if proc.poll() is not None:
                break
            time.sleep(0.25)
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-25:])
        raise RabbitError(
            f"RabbitMQ did not answer on {self.r.host}:{self.r.port} within "
            f"{self.r.start_timeout_s:.0f}s\n--- last log lines ---\n{tail}"
        )

    def down(self) -> None:
        if _port_open(self.r.host, self.r.port):
            subprocess.run(
                [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, "stop"],
                env=self.env(),
                capture_output=True,
                timeout=60,
                check=False,
            )
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            pid = None
        if pid is not None:
            self._end_group(pid)
            self.pid_file.unlink(missing_ok=True)
        if shutil.which("epmd"):
            # The node's private epmd outlives it; ask it (on its own port) to exit.
            subprocess.run(
                ["epmd", "-kill"], env=self.env(), capture_output=True, timeout=10, check=False
            )

    @staticmethod
    def _end_group(pid: int) -> None:
        """SIGTERM the node's own process group, wait for it, SIGKILL if it lingers."""
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)

    def reset(self) -> None:
        self.down()
        shutil.rmtree(self.dir, ignore_errors=True)


def up(settings: Settings) -> RabbitStatus:
    return RabbitMQ(settings).up()


def down(settings: Settings) -> None:
    RabbitMQ(settings).down()
