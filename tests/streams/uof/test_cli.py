"""`oddsflow uof ...`: user mistakes are one clear line and a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from oddsflow.settings import REPO_ROOT

from .conftest import MATCH


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "oddsflow.cli", "uof", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_replay_of_a_missing_path_is_one_line():
    r = _run("replay", "/no/such/recording")
    assert r.returncode == 1
    assert r.stderr.strip() == "error: /no/such/recording does not exist"


def test_consume_without_an_amqp_url_outside_dev_mode_is_one_line():
    r = _run("consume", env={"ODDSFLOW_ENV": "production", "ODDSFLOW_UOF_AMQP_URL": ""})
    assert r.returncode == 1
    assert "ODDSFLOW_UOF_AMQP_URL is not set" in r.stderr and "Traceback" not in r.stderr


def test_consume_with_an_unreachable_broker_is_one_line():
    r = _run("consume", env={"ODDSFLOW_UOF_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/"})
    assert r.returncode == 1
    assert "error: cannot reach the AMQP broker" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.integration
def test_replay_command_counts_what_it_sent(kafka_settings):
    r = _run("replay", str(MATCH), env=kafka_settings.child_env())
    assert r.returncode == 0, r.stderr
    lines = dict(line.split() for line in r.stdout.splitlines()[1:])
    assert lines["bet_settlement"] == "2" and lines["records"] == "35"
    assert "dead_letters" not in lines


@pytest.mark.integration
@pytest.mark.rabbitmq
def test_the_private_broker_is_idempotent_and_reports_status(rabbitmq):
    from oddsflow.services_rabbitmq import RabbitMQ
    from oddsflow.settings import Settings

    node = RabbitMQ(Settings())
    assert node.up().running and node.up().running  # up twice: still the one node
    assert node.url == rabbitmq and node.node.startswith("oddsflow-")
    r = _run("broker", "status")
    assert r.returncode == 0 and "up" in r.stdout
