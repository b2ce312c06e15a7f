"""processors.app.tune_gc: objects alive at start leave the collections; gen0 runs less often.

Run in a child interpreter: the collector's thresholds and frozen set are process-wide."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json, sys
from oddsflow.processors.app import tune_gc
before = gc.get_threshold()
tune_gc(int(sys.argv[1]))
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def _probe(threshold: int) -> dict[str, list[int] | int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(threshold)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, list[int] | int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_tuning_freezes_start_up_objects_and_raises_gen0_only() -> None:
    r = _probe(20_000)
    before, after = r["before"], r["after"]
    assert isinstance(before, list) and isinstance(after, list)
    assert after == [20_000, before[1], before[2]]
    assert isinstance(r["frozen"], int) and r["frozen"] > 10_000  # the imported modules at least


def test_zero_keeps_pythons_defaults() -> None:
    r = _probe(0)
    assert r["after"] == r["before"]
    assert r["frozen"] == 0
