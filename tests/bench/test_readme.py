"""The README's bench block is copied from a full run's LATEST.md, never from a quick one."""

from __future__ import annotations

import pytest

from oddsflow.bench import readme

LATEST = """# oddsflow benchmark: latest results

Run 2026-11-23T10:24:35+00:00 (full; 498.0 s wall) on `vm`: 2 cores.

| scenario | metric |
|---|---|

## Targets (issue 6)

| target | measured | bound | status | note |
|---|---:|---:|---|---|
| bet decisions/s sustained, exactly_once | 1,100 dec/s | >= 5,000 | **missed** |  |

## Worker profile
"""

README = "# x\n\nintro\n\n<!-- bench:begin (old) -->\nstale table\n<!-- bench:end -->\n\nWhat limits it\n"


def test_update_replaces_only_the_marked_block_with_the_targets_table():
    out = readme.update(README, LATEST)
    assert "stale table" not in out
    assert "| bet decisions/s sustained, exactly_once | 1,100 dec/s |" in out
    assert "Run 2026-11-23T10:24:35+00:00 (full;" in out
    assert out.startswith("# x\n\nintro\n\n") and out.endswith(
        "<!-- bench:end -->\n\nWhat limits it\n"
    )
    assert "Worker profile" not in out


def test_a_quick_run_is_refused():
    with pytest.raises(ValueError, match="not a full run"):
        readme.update(README, LATEST.replace("(full;", "(quick;"))
