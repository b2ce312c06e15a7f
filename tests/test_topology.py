"""topology.yaml: validation, and idempotent apply against the real broker."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from oddsflow import topology
from oddsflow.settings import REPO_ROOT, Settings
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


def test_agents_section_matches_the_handlers_the_code_runs():
    from oddsflow.processors.routes import ROUTES

    t = topology.load()
    assert t.check_routes() == []
    # The inputs the issue found missing are declared: scores priced, the bet delay agent.
    assert "scores" in t.agents["pricing"]["inputs"]
    assert t.agents["bet_delay"]["inputs"] == ["bet_delays"]
    assert {a: set(spec["inputs"]) for a, spec in t.agents.items()} == {
        a: set(r) for a, r in ROUTES.items()
    }


def _broken_agents() -> topology.Topology:
    t = topology.load()
    agents = {name: dict(spec) for name, spec in t.agents.items()}
    agents["pricing"]["inputs"] = [k for k in agents["pricing"]["inputs"] if k != "scores"]
    agents["wallet"]["inputs"] = [*agents["wallet"]["inputs"], "bet_decisions"]
    del agents["bet_delay"]
    agents["ghost"] = {"inputs": ["fixtures"], "outputs": []}
    return dataclasses.replace(t, agents=agents)


def test_check_reports_every_disagreement_between_agents_and_code():
    problems = _broken_agents().check()
    assert "agent bet_delay: runs in processors but topology.yaml does not declare it" in problems
    assert "agent ghost: declared in topology.yaml but no processor runs it" in problems
    assert (
        "agent pricing: handles 'scores', which topology.yaml does not list as an input" in problems
    )
    assert "agent wallet: topology.yaml input 'bet_decisions' has no handler in processors" in (
        problems
    )


def test_worker_start_fails_clearly_when_agents_disagree_with_code(tmp_path: Path):
    from oddsflow.processors.app import build_app

    s = fresh_settings(Settings(), run_dir=tmp_path)
    with pytest.raises(topology.TopologyError, match=r"agent ghost: declared in topology\.yaml"):
        build_app(s, topo=_broken_agents())
