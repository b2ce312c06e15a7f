"""`topology.yaml`: load, validate and apply the declared topics."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from oddsflow.codec import batch_items_problem, schemas
from oddsflow.settings import REPO_ROOT, Settings, get_settings

TOPOLOGY_FILE = REPO_ROOT / "topology.yaml"


class TopologyError(ValueError):
    pass


@dataclass(frozen=True)
class TopicSpec:
    key: str  # the logical key code uses, e.g. "price_updates"
    base_name: str  # as written in topology.yaml; `name` adds the prefix
    partitions: int
    replication: int
    cleanup: str
    retention_ms: int
    message_key: str
    value_schema: str
    internal: bool
    prefix: str = ""
    # A topic of batches: each message is a record of one array of ``item_schema`` records,
    # and consumers handle every item as its own event (processors.batched).
    item_schema: str | None = None

    @property
    def name(self) -> str:
        return f"{self.prefix}{self.base_name}"

    def configs(self) -> dict[str, str]:
        return {"cleanup.policy": self.cleanup, "retention.ms": str(self.retention_ms)}


@dataclass(frozen=True)
class Topology:
    topics: dict[str, TopicSpec]
    agents: dict[str, dict[str, Any]]
    sinks: dict[str, dict[str, Any]]
    tables: dict[str, dict[str, Any]]
    copartition_groups: dict[str, list[str]] = field(default_factory=dict)

    def topic(self, key: str) -> TopicSpec:
        try:
            return self.topics[key]
        except KeyError as exc:
            raise TopologyError(f"topology.yaml declares no topic {key!r}") from exc

    def by_name(self, name: str) -> TopicSpec:
        for t in self.topics.values():
            if name in (t.name, t.base_name, t.key):
                return t
        raise TopologyError(f"no topic named {name!r} in topology.yaml")

    def check(self) -> list[str]:
        """Every problem found; empty when the topology is valid."""
        problems: list[str] = []
        known = schemas().by_name
        for t in self.topics.values():
            if t.value_schema not in known:
                problems.append(
                    f"topic {t.key}: value schema {t.value_schema!r} has no schemas/{t.value_schema}.vN.avsc"
                )
            if t.item_schema is not None:
                problems += _check_items(t, known)
            if t.cleanup not in ("delete", "compact", "compact,delete"):
                problems.append(f"topic {t.key}: bad cleanup policy {t.cleanup!r}")
            if t.partitions < 1 or t.replication < 1:
                problems.append(f"topic {t.key}: partitions and replication must be >= 1")
        for kind, entries in (("agent", self.agents), ("sink", self.sinks)):
            for name, spec in entries.items():
                for io_ in ("inputs", "outputs"):
                    for key in spec.get(io_, []):
                        if key not in self.topics:
                            problems.append(
                                f"{kind} {name}: {io_[:-1]} topic {key!r} is not declared"
                            )
                for table in spec.get("tables", []):
                    if table not in self.tables:
                        problems.append(f"{kind} {name}: table {table!r} is not declared")
        for group, keys in self.copartition_groups.items():
            counts = {}
            for key in keys:
                if key not in self.topics:
                    problems.append(f"co-partition group {group}: topic {key!r} is not declared")
                else:
                    counts[key] = self.topics[key].partitions
            if len(set(counts.values())) > 1:
                problems.append(f"co-partition group {group}: partition counts differ {counts}")
        for name, spec in self.tables.items():
            if spec.get("group") not in self.copartition_groups:
                problems.append(f"table {name}: unknown co-partition group {spec.get('group')!r}")
        problems += self.check_routes()
        return problems

    def check_routes(self) -> list[str]:
        """The agents section against the handlers the processors run for each input.

        topology.yaml is the source of truth for what each agent consumes; the processors'
        route table (plain data, imported lazily so the core does not depend on Faust)
        names the handler for each input. Any disagreement is a problem.
        """
        from oddsflow.processors.routes import mismatches

        problems: list[str] = mismatches(self.agents)
        return problems

    def group_partitions(self, group: str) -> int:
        return self.topics[self.copartition_groups[group][0]].partitions


def _check_items(t: TopicSpec, known: dict[str, Any]) -> list[str]:
    """A batch topic's value is a record of exactly one array, of its item schema."""
    if t.item_schema not in known:
        return [
            f"topic {t.key}: item schema {t.item_schema!r} has no schemas/{t.item_schema}.vN.avsc"
        ]
    if t.value_schema not in known:
        return []  # reported above
    problem = batch_items_problem(t.value_schema, t.item_schema)
    return [f"topic {t.key}: {problem}"] if problem else []


def load(path: Path = TOPOLOGY_FILE, settings: Settings | None = None) -> Topology:
    settings = settings or get_settings()
    doc = yaml.safe_load(path.read_text())
    defaults = doc.get("defaults", {})
    topics = {}
    for key, spec in (doc.get("topics") or {}).items():
        try:
            topics[key] = TopicSpec(
                key=key,
                base_name=spec["name"],
                partitions=int(spec.get("partitions", defaults.get("partitions", 1))),
                replication=int(spec.get("replication", defaults.get("replication", 1))),
                cleanup=spec.get("cleanup", "delete"),
                retention_ms=int(spec.get("retention_ms", 604800000)),
                message_key=spec.get("key", ""),
                value_schema=spec["value"],
                internal=bool(spec.get("internal", False)),
                prefix=settings.topic_prefix,
                item_schema=spec.get("items"),
            )
        except KeyError as exc:
            raise TopologyError(f"topic {key}: missing field {exc}") from exc
    return Topology(
        topics=topics,
        agents=doc.get("agents") or {},
        sinks=doc.get("sinks") or {},
        tables=doc.get("tables") or {},
        copartition_groups=doc.get("copartition_groups") or {},
    )


@lru_cache(maxsize=8)
def _cached(prefix: str) -> Topology:
    return load(settings=get_settings())


def current() -> Topology:
    return _cached(get_settings().topic_prefix)


def apply(topology: Topology, bootstrap: str, timeout_s: float = 30) -> list[str]:
    """Create missing topics, grow partitions, align configs. Idempotent; returns actions taken."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AdminClient,
        ConfigResource,
        NewPartitions,
        NewTopic,
    )

    problems = topology.check()
    if problems:
        raise TopologyError("topology.yaml is invalid:\n  " + "\n  ".join(problems))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=timeout_s).topics
    actions: list[str] = []
    new = [
        NewTopic(
            t.name,
            num_partitions=t.partitions,
            replication_factor=t.replication,
            config=t.configs(),
        )
        for t in topology.topics.values()
        if t.name not in existing
    ]
    if new:
        for name, fut in admin.create_topics(new, operation_timeout=timeout_s).items():
            try:
                fut.result()
                actions.append(f"created {name}")
            except Exception as exc:  # TOPIC_ALREADY_EXISTS from a concurrent apply is fine
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
    grow = [
        NewPartitions(t.name, t.partitions)
        for t in topology.topics.values()
        if t.name in existing and len(existing[t.name].partitions) < t.partitions
    ]
    if grow:
        for name, fut in admin.create_partitions(grow).items():
            fut.result()
            actions.append(f"grew {name}")
    for t in topology.topics.values():
        if t.name in existing:
            res = ConfigResource(ConfigResource.Type.TOPIC, t.name)
            current_cfg = admin.describe_configs([res])[res].result()
            if any(current_cfg[k].value != v for k, v in t.configs().items()):
                res = ConfigResource(ConfigResource.Type.TOPIC, t.name, set_config=t.configs())
                admin.alter_configs([res])[res].result()
                actions.append(f"configured {t.name}")
    _wait_until_served(admin, [t.name for t in topology.topics.values()], timeout_s)
    return actions


def delete_prefixed(bootstrap: str, prefix: str) -> None:
    """Best effort: drop every topic named ``prefix*`` (a test's or bench run's own topics,
    changelogs included) so runs do not pile up on the broker."""
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if names:
            for f in admin.delete_topics(names, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    f.result(30)
    except Exception:
        pass


def _wait_until_served(admin: Any, names: list[str], timeout_s: float) -> None:
    """Return once every topic has a leader for every partition in the broker's metadata.

    A consumer that subscribes before then (e.g. right after the broker started) is told the
    topic is missing, and Faust never subscribes to it again.
    """
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        md = admin.list_topics(timeout=timeout_s).topics
        missing = [
            n
            for n in names
            if n not in md
            or not md[n].partitions
            or any(p.leader < 0 for p in md[n].partitions.values())
        ]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TopologyError(
                f"topics not served by the broker after {timeout_s:.0f}s: {missing[:5]}"
            )
        time.sleep(0.2)
