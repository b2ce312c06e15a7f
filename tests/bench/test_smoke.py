"""Runs the baseline scenario for real (quick) and checks the results document's shape."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration


def test_quick_baseline_writes_results(services, tmp_path):
    from oddsflow.bench.run import run_bench

    doc = run_bench(
        services, quick=True, scenarios=["baseline"], results_dir=tmp_path, say=lambda m: None
    )
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1 and (tmp_path / "LATEST.md").exists()
    saved = json.loads(files[0].read_text())
    assert saved["quick"] is True and saved["scenarios_run"] == ["baseline"]
    assert not saved["errors"], saved["errors"]
    for key in ("cores", "memory_gib", "python", "confluent_kafka", "faust", "git_commit"):
        assert key in saved["machine"]
    b = saved["scenarios"]["baseline"]
    assert b["raw_producer"]["msgs_per_s"]["median"] > 0
    for mode in ("passthrough_transactional", "passthrough_plain", "passthrough_faust"):
        for k in (
            "bets_closed_loop",
            "bets_open_100",
            "bets_open_1000",
            "prices_closed_loop",
            "prices_open_5000",
        ):
            g = b[mode][k]
            assert g["reps"] and g["reps"][0]["complete"], (mode, k)
            assert set(g["p99_ms"]) >= {"median", "min", "max", "iqr"}
    assert saved["table"] and {"scenario", "metric", "median", "unit", "ratio"} <= set(
        saved["table"][0]
    )
    assert doc["results_file"] == str(files[0])
