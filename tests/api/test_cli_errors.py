"""Newcomer mistakes get one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from oddsflow import services


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oddsflow.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )


def test_tail_of_an_unknown_topic_is_one_line() -> None:
    out = _cli("tail", "no-such-topic")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr + out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "unknown topic 'no-such-topic'" in lines[0] and "bet_decisions" in lines[0]


def test_api_refuses_the_built_in_secret_outside_dev_mode() -> None:
    from oddsflow.api.settings import DEV_JWT_SECRET

    for env in ({}, {"ODDSFLOW_API_JWT_SECRET": DEV_JWT_SECRET}):
        out = _cli("api", "--port", "0", ODDSFLOW_ENV="production", **env)
        assert out.returncode == 1
        assert "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert "ODDSFLOW_API_JWT" in out.stderr
    token = _cli("api", "token", "a1", ODDSFLOW_ENV="production")
    assert token.returncode == 1 and token.stdout == "" and "Traceback" not in token.stderr


def test_postgres_user_blocked_by_a_parent_folder_is_named() -> None:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres system user")
    base = Path("/tmp") / f"oddsflow-hint-{uuid.uuid4().hex[:8]}"
    base.mkdir(mode=0o755)
    base.chmod(0o755)
    try:
        closed = base / "home-like"
        run_dir = closed / "project" / ".run"
        run_dir.mkdir(parents=True)
        closed.chmod(0o700)  # like /root: its owner may enter, `postgres` may not
        assert services.first_blocked_parent(run_dir / "pg", "postgres") == closed
        hint = services.postgres_unreachable_hint(run_dir, closed)
        assert str(closed) in hint and "ODDSFLOW_RUN_DIR" in hint
        closed.chmod(0o755)
        assert services.first_blocked_parent(run_dir / "pg", "postgres") is None
    finally:
        shutil.rmtree(base)
