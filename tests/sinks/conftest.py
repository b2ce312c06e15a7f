"""Sink fixtures: a throwaway Postgres database per test (cloned from a migrated template made
once per session), an isolated topic namespace per test, and a chdb path per session."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from oddsflow import topology
from oddsflow.settings import Settings

# the shared test-data module sits next to this file (tests/sinks has no __init__.py on purpose:
# a package named `sinks` would shadow the repo's sinks/ directory)
sys.path.insert(0, str(Path(__file__).parent))


def _admin_dsn(s: Settings, db: str = "postgres") -> str:
    return f"host={s.postgres_host} port={s.postgres_port} user={s.postgres_user} dbname={db}"


@pytest.fixture(scope="session")
def pg_template(services: Settings) -> Iterator[str]:
    from oddsflow.sinks.postgres import migrate

    name = f"oddsflow_tpl_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_admin_dsn(services), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(_admin_dsn(services, name))
    assert migrate(_admin_dsn(services, name)) == []  # idempotent
    yield name
    with psycopg.connect(_admin_dsn(services), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def pg_dsn(services: Settings, pg_template: str) -> Iterator[str]:
    name = f"oddsflow_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_admin_dsn(services), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield _admin_dsn(services, name)
    with psycopg.connect(_admin_dsn(services), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def sink_settings(
    services: Settings, pg_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    s = services.model_copy(
        update={
            "topic_prefix": f"t{uuid.uuid4().hex[:8]}.",
            "postgres_dsn": pg_dsn,
            "metrics_port": 0,
            "chdb_path": _chdb_path(tmp_path_factory),
        }
    )
    topology.apply(topology.load(settings=s), s.kafka_bootstrap)
    yield s
    topology.delete_prefixed(s.kafka_bootstrap, s.topic_prefix)  # runs do not pile up


_CHDB_PATH: list[object] = []


def _chdb_path(factory: pytest.TempPathFactory):
    # chdb allows one data path per process, so every test in the session shares one; tests
    # stay isolated because table names are per topic prefix (see ChdbBackend database naming).
    if not _CHDB_PATH:
        _CHDB_PATH.append(factory.mktemp("chdb"))
    return _CHDB_PATH[0]
