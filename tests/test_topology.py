"""topology.yaml: validation, and idempotent apply against the real broker."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from oddsflow import topology
from oddsflow.settings import REPO_ROOT
from tests.conftest import fresh_settings


def test_the_repository_topology_is_valid():
    assert topology.load().check() == []


def test_check_reports_missing_schema_topic_and_copartition_mismatch():
    t = topology.load()
    topics = dict(t.topics)
    topics["price_updates"] = dataclasses.replace(
        topics["price_updates"], partitions=7, value_schema="nope"
    )
    agents = {"x": {"inputs": ["no_such_topic"], "outputs": [], "tables": ["no_table"]}}
    broken = dataclasses.replace(t, topics=topics, agents=agents)
    problems = "\n".join(broken.check())
    assert "value schema 'nope'" in problems
    assert "'no_such_topic' is not declared" in problems
    assert "table 'no_table'" in problems
    assert "co-partition group event: partition counts differ" in problems


def test_code_never_hard_codes_a_topic_name():
    names = [spec.base_name for spec in topology.load().topics.values()]
    offenders = []
    for folder in ("oddsflow", "streams", "processors", "sinks", "bench"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            text = path.read_text()
            for name in names:
                if re.search(rf"[\"']{re.escape(name)}[\"']", text):
                    offenders.append(f"{path.relative_to(REPO_ROOT)}: {name}")
    assert offenders == []


@pytest.mark.integration
def test_apply_creates_topics_once_and_then_does_nothing(services):
    s = fresh_settings(services)
    topo = topology.load(settings=s)
    first = topology.apply(topo, s.kafka_bootstrap)
    assert len([a for a in first if a.startswith("created")]) == len(topo.topics)
    assert topology.apply(topo, s.kafka_bootstrap) == []
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
    md = admin.list_topics(timeout=10).topics
    priced = topo.topic("priced_markets")
    assert len(md[priced.name].partitions) == priced.partitions
    res = ConfigResource(ConfigResource.Type.TOPIC, priced.name)
    cfg = admin.describe_configs([res])[res].result()
    assert cfg["cleanup.policy"].value == "compact"
    # Growing a topic's partitions in topology.yaml grows it in Kafka.
    grown = dataclasses.replace(
        topo,
        topics={
            **topo.topics,
            "dead_letters": dataclasses.replace(topo.topics["dead_letters"], partitions=2),
        },
    )
    assert topology.apply(grown, s.kafka_bootstrap) == [f"grew {topo.topic('dead_letters').name}"]


def test_cli_topology_check(tmp_path: Path):
    from typer.testing import CliRunner

    from oddsflow.cli import app

    res = CliRunner().invoke(app, ["topology", "check"])
    assert res.exit_code == 0, res.output
    assert "topology ok" in res.output
