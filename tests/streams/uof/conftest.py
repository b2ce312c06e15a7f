"""Fixtures of the UOF adapter's tests: the recorded match and a private RabbitMQ node."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oddsflow.settings import Settings

DATA = Path(__file__).resolve().parent / "data"
MATCH = DATA / "match"
EVENT = "sr:match:50001"


def match_messages() -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(MATCH.glob("*.xml"))]


@pytest.fixture(scope="session")
def rabbitmq() -> str:
    """The AMQP URL of the private RabbitMQ node (started once; left running like Kafka).

    Skips cleanly where Debian's rabbitmq-server is not installed, except in CI, which must
    have it (.ci/run installs it).
    """
    from oddsflow import services_rabbitmq as rmq

    if not rmq.installed():
        if os.environ.get("CI"):
            pytest.fail("rabbitmq-server is not installed (CI must apt-get install it)")
        pytest.skip("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
    node = rmq.RabbitMQ(Settings())
    try:
        node.up()
    except rmq.RabbitError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"RabbitMQ unavailable: {exc}")
    return node.url
