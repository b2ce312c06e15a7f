"""`oddsflow services`: idempotent start, real Kafka transactions, clear failures."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from oddsflow import services as svc
from oddsflow.settings import Settings

pytestmark = pytest.mark.integration


def test_up_twice_is_fine_and_reports_where_services_listen(services):
    again = svc.up(services)
    assert [(s.name, s.running) for s in again] == [
        ("kafka", True),
        ("postgres", True),
        ("clickhouse", True),
    ]
    assert again[0].where == services.kafka_bootstrap


def test_postgres_answers_sql(services):
    import psycopg

    with psycopg.connect(services.pg_dsn) as conn:
        assert conn.execute("select 1 + 1").fetchone() == (2,)


def test_a_busy_port_is_named_in_the_error(services, tmp_path):
    # Our Kafka already listens on this port, but this settings object's run dir has no pid:
    # starting "another" Kafka there must fail with a message naming the port.
    other = services.model_copy(update={"run_dir": tmp_path})
    with pytest.raises(svc.ServiceError, match=r"port .* is busy"):
        svc.Kafka(other).up()


def test_missing_java_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(svc.shutil, "which", lambda name: None)
    k = svc.Kafka(Settings(run_dir=tmp_path, kafka_bootstrap="127.0.0.1:1"))
    with pytest.raises(svc.ServiceError, match="Java 17"):
        k.java()
    with pytest.raises(svc.ServiceError, match="Maven"):
        svc.Kafka(Settings(run_dir=tmp_path, kafka_libs_dir=tmp_path / "libs")).ensure_jars()


def test_kill_returns_for_a_broker_this_process_started(tmp_path):
    # A crash test that restarts the broker becomes its parent; SIGKILLed later, the broker is
    # a zombie until reaped, and signal 0 still reaches a zombie. kill() must see it gone
    # (CI 2026-12-02: the rerun of the broker crash test waited 30 s on "Kafka to die").
    import subprocess
    import time

    k = svc.Kafka(Settings(run_dir=tmp_path, kafka_bootstrap="127.0.0.1:1"))
    k.pid_file.parent.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    k.pid_file.write_text(str(child.pid))
    assert svc._pid_alive(k.pid_file) == child.pid
    started = time.monotonic()
    k.kill(timeout_s=5)
    assert time.monotonic() - started < 5
    assert svc._pid_alive(k.pid_file) is None
    assert not k.status().running


def test_a_zombie_is_not_alive(tmp_path):
    import os
    import signal
    import subprocess
    import time

    child = subprocess.Popen(["sleep", "60"])
    os.kill(child.pid, signal.SIGKILL)
    pid_file = tmp_path / "pid"
    pid_file.write_text(str(child.pid))
    deadline = time.monotonic() + 5
    while not svc._is_zombie(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert svc._is_zombie(child.pid), "the unreaped child should be a zombie"
    assert svc._pid_alive(pid_file) is None
    child.wait()


def test_transactions_work_on_this_broker(services):
    topic = f"t{uuid.uuid4().hex[:8]}.txn"
    admin = AdminClient({"bootstrap.servers": services.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    p = Producer({"bootstrap.servers": services.kafka_bootstrap, "transactional.id": f"tx-{topic}"})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, b"aborted")
    p.abort_transaction(30)
    p.begin_transaction()
    p.produce(topic, b"committed")
    p.commit_transaction(30)
    c = Consumer(
        {
            "bootstrap.servers": services.kafka_bootstrap,
            "group.id": topic,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    c.assign([TopicPartition(topic, 0, 0)])
    seen = []
    for _ in range(40):
        m = c.poll(0.5)
        if m is not None and not m.error():
            seen.append(m.value())
        if seen:
            break
    c.close()
    assert seen == [b"committed"]
