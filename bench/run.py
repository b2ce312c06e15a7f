"""`run_bench`: run the scenarios, compute ratios to the baseline and the targets, write
bench/results/<UTC timestamp>.json and bench/results/LATEST.md, print the table."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from oddsflow.bench import harness as h
from oddsflow.bench import report
from oddsflow.bench.api import scenario as api_scenario
from oddsflow.bench.scenarios import SCENARIOS as ENGINE_SCENARIOS
from oddsflow.bench.scenarios import Ctx, Plan
from oddsflow.settings import REPO_ROOT, Settings

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ORDER = ("baseline", "prices", "bets", "settlement_burst", "sinks", "api")
# run only when asked for (``-s``): sweeps that take long and answer a tuning question
OPTIONAL = ("commit_path",)
# the bet API's scenario lives in its own module (bench/api.py)
SCENARIOS = {**ENGINE_SCENARIOS, "api": api_scenario}


def _version(mod: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:
        return None


def _kafka_version(s: Settings) -> str | None:
    libs = s.kafka_libs_dir
    try:
        for p in sorted(libs.glob("kafka-clients-*.jar")):
            return p.stem.removeprefix("kafka-clients-")
    except OSError:
        pass
    return None


def machine_info(s: Settings) -> dict[str, Any]:
    import confluent_kafka

    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except Exception:
            return None

    return {
        "hostname": platform.node(),
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "cpu": cpu,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "kafka_broker": _kafka_version(s),
        "kafka_bootstrap": s.kafka_bootstrap,
        "faust": _version("faust-streaming") or _version("faust"),
        "aiokafka": _version("aiokafka"),
        "confluent_kafka": confluent_kafka.version()[0],
        "librdkafka": confluent_kafka.libversion()[0],
        "fastavro": _version("fastavro"),
        "uvloop": _version("uvloop"),
        "chdb": _version("chdb"),
        "psycopg": _version("psycopg"),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "broker_on_same_machine": s.kafka_bootstrap.startswith(("127.", "localhost")),
    }


def run_bench(
    settings: Settings,
    quick: bool,
    scenarios: list[str] | None = None,
    *,
    results_dir: Path | None = None,
    write_latest: bool = True,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return the results document (also written to results_dir)."""
    say = say or (lambda m: print(m, flush=True))
    known = (*ORDER, *OPTIONAL)
    names = list(ORDER) if not scenarios else [n for n in known if n in scenarios]
    unknown = set(scenarios or []) - set(known)
    if unknown:
        raise ValueError(f"unknown scenario(s) {sorted(unknown)}; choose from {list(known)}")
    plan = Plan.make(quick)
    ctx = Ctx(settings, plan, h.tmp_dir(), say)
    started = datetime.now(UTC)
    doc: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "quick": quick,
        "scenarios_run": names,
        "plan": plan.__dict__,
        "machine": machine_info(settings),
        "scenarios": {},
        "errors": {},
        "log_dir": str(ctx.log_dir),
    }
    t0 = time.monotonic()
    for name in names:
        say(f"== {name}")
        ts = time.monotonic()
        try:
            doc["scenarios"][name] = SCENARIOS[name](ctx)
        except Exception as exc:
            say(f"  {name} FAILED: {exc!r}")
            doc["errors"][name] = "".join(traceback.format_exception(exc))[-4000:]
        say(f"  ({time.monotonic() - ts:.0f} s)")
    doc["wall_s"] = round(time.monotonic() - t0, 1)
    doc["ratios"] = report.ratios(doc["scenarios"])
    doc["targets"] = report.targets(doc["scenarios"], doc["ratios"])
    doc["table"] = report.table_rows(doc)
    out_dir = results_dir or RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{started.strftime('%Y%m%dT%H%M%SZ')}{'-quick' if quick else ''}.json"
    path.write_bytes(
        orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str)
    )
    doc["results_file"] = str(path)
    md = report.markdown(doc, path.name)
    say("")
    say(report.text_table(doc))
    say(f"\nresults: {path}")
    if write_latest:
        (out_dir / "LATEST.md").write_text(md)
        say(f"summary: {out_dir / 'LATEST.md'}")
    return doc
