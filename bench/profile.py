"""Sampling profile of a running worker with py-spy (collapsed stacks), summarised as the
top functions by self and inclusive time and by package, in percent of samples."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")

PACKAGES = (
    ("oddsflow/domain", "oddsflow domain"),
    ("processors/", "oddsflow processors"),
    ("oddsflow/", "oddsflow"),
    ("fastavro", "fastavro (codec)"),
    ("faust/", "faust"),
    ("mode/", "mode (faust runtime)"),
    ("aiokafka", "aiokafka (client)"),
    ("kafka/", "kafka-python (aiokafka deps)"),
    ("orjson", "orjson"),
    ("prometheus_client", "prometheus_client"),
    ("asyncio", "asyncio"),
    ("uvloop", "uvloop"),
    ("decimal", "decimal"),
    ("lz4", "lz4"),
    ("croniter", "other"),
)


# Finer buckets for the framework question (is the aiokafka client's Python code what caps the
# Faust passthrough, which a librdkafka transport would replace?): first match wins.
BUCKETS = (
    ("aiokafka/record/", "aiokafka record batches (encode/decode, crc)"),
    ("aiokafka/protocol/", "aiokafka protocol (request/response structs)"),
    ("aiokafka/producer/", "aiokafka producer (accumulator, sender, txn)"),
    ("aiokafka/consumer/", "aiokafka consumer (fetcher, group)"),
    ("aiokafka/", "aiokafka client (conn, cluster, util)"),
    ("kafka/", "aiokafka client (conn, cluster, util)"),
    ("faust/streams", "faust streams (take, events, acks)"),
    ("faust/transport/", "faust transport (consumer/producer glue, acks, commit)"),
    ("faust/tables", "faust tables"),
    ("faust/", "faust other"),
    ("mode/", "mode (faust's service runtime)"),
    ("processors/transport", "oddsflow transport"),
    ("processors/emit", "oddsflow transport"),
    ("bench/passthrough", "oddsflow passthrough agent"),
    ("processors/", "oddsflow processors"),
    ("asyncio", "asyncio / event loop"),
    ("uvloop", "asyncio / event loop"),
    ("lz4", "lz4"),
)


# Leaf frames that are not where the time goes but the Python frame that entered C code: the
# event loop's run (uvloop is C: ready callbacks, polling, socket I/O) and asyncio's stream
# write (aiokafka's connections write requests through it into uvloop's transport).
C_LEAVES = {
    "execute_from_commandline": "event loop run (uvloop C: callbacks, polling, I/O)",
    "_start_thread": "event loop run (uvloop C: callbacks, polling, I/O)",
    "run_forever": "event loop run (uvloop C: callbacks, polling, I/O)",
    "run_until_complete": "event loop run (uvloop C: callbacks, polling, I/O)",
    "write": "socket writes (aiokafka requests via asyncio streams)",
}


def bucket_of(file: str, func: str = "") -> str:
    c_leaf = C_LEAVES.get(func.rpartition(".")[2])  # py-spy names methods Class.method
    if c_leaf and ("mode/" in file or "asyncio/streams" in file or "asyncio/" in file):
        return c_leaf
    for needle, name in BUCKETS:
        if needle in file:
            return name
    return "python stdlib/other" if file else "native/unknown"


def summarize_by_thread(text: str) -> dict[str, Any]:
    """Self time by :data:`BUCKETS`, over all threads and per thread, from ``py-spy record -f raw
    --threads`` output (each stack starts with its thread). Percentages of all samples."""
    total = 0
    all_c: Counter[str] = Counter()
    per: dict[str, Counter[str]] = {}
    for line in text.splitlines():
        stack, _, count_s = line.strip().rpartition(" ")
        try:
            count = int(count_s)
        except ValueError:
            continue
        frames = [f for f in stack.split(";") if f]
        thread = next((f for f in frames if f.startswith("thread ")), "thread ?")
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        func, file = parse_frame(frames[-1])
        b = bucket_of(file, func)
        all_c[b] += count
        per.setdefault(thread, Counter())[b] += count

    def pct(c: Counter[str]) -> list[dict[str, Any]]:
        return [{"name": k, "pct": round(100 * v / total, 1)} for k, v in c.most_common()]

    return {
        "samples": total,
        "by_bucket": pct(all_c) if total else [],
        "threads": {
            th: {"samples_pct": round(100 * sum(c.values()) / total, 1), "by_bucket": pct(c)}
            for th, c in sorted(per.items(), key=lambda kv: -sum(kv[1].values()))
        }
        if total
        else {},
    }


def py_spy() -> str | None:
    cand = Path(sys.executable).parent / "py-spy"
    return str(cand) if cand.exists() else shutil.which("py-spy")


def parse_frame(frame: str) -> tuple[str, str]:
    """'handle (/x/processors/app.py:123)' -> ('handle', '/x/processors/app.py')."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), ""
    return m["func"], m["file"]


def package_of(file: str) -> str:
    for needle, name in PACKAGES:
        if needle in file:
            return name
    return "python stdlib/other" if file else "native/unknown"


def short(func: str, file: str) -> str:
    parts = Path(file).parts
    return f"{func} ({'/'.join(parts[-2:])})" if parts else func


def summarize_collapsed(text: str, top: int = 15) -> dict[str, Any]:
    """Percentages of samples: self time (leaf frame), inclusive time (frame anywhere on the
    stack, counted once per sample) and self time by package."""
    total = 0
    self_c: Counter[str] = Counter()
    incl_c: Counter[str] = Counter()
    pkg_c: Counter[str] = Counter()
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        stack, _, count_s = line.rpartition(" ")
        try:
            count = int(count_s)
        except ValueError:
            continue
        frames = [f for f in stack.split(";") if f]
        # py-spy's raw format starts with the thread name ("process 123:..." / "thread ...")
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        parsed = [parse_frame(f) for f in frames]
        func, file = parsed[-1]
        self_c[short(func, file)] += count
        pkg_c[package_of(file)] += count
        for name in {short(fn, fl) for fn, fl in parsed}:
            incl_c[name] += count

    def pct(c: Counter[str], n: int) -> list[dict[str, Any]]:
        return (
            [{"name": k, "pct": round(100 * v / total, 1)} for k, v in c.most_common(n)]
            if total
            else []
        )

    return {
        "samples": total,
        "self": pct(self_c, top),
        "inclusive": pct(incl_c, top + 10),
        "by_package": pct(pkg_c, 20),
    }


class PySpy:
    def __init__(
        self, pid: int, out: Path, duration_s: float, rate_hz: int = 100, threads: bool = False
    ) -> None:
        self.pid, self.out, self.duration_s, self.rate_hz = pid, out, duration_s, rate_hz
        self.threads = threads  # stacks start with their thread (summarize_by_thread)
        self.proc: subprocess.Popen[bytes] | None = None
        self.error: str | None = None

    def start(self) -> bool:
        exe = py_spy()
        if exe is None:
            self.error = "py-spy not installed (pip install py-spy)"
            return False
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "-p",
                str(self.pid),
                "-d",
                str(int(self.duration_s)),
                "-r",
                str(self.rate_hz),
                "-f",
                "raw",
                "-o",
                str(self.out),
                "--nonblocking",
                *(["--threads"] if self.threads else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        return True

    def wait(self) -> None:
        if self.proc is None:
            return
        try:
            outp, _ = self.proc.communicate(timeout=self.duration_s + 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            outp, _ = self.proc.communicate()
        if self.proc.returncode != 0 or not self.out.exists():
            self.error = (
                f"py-spy exited {self.proc.returncode}: {outp.decode(errors='replace')[-500:]}"
            )

    def summary(self) -> dict[str, Any]:
        if self.error:
            return {"error": self.error}
        res = summarize_collapsed(self.out.read_text(errors="replace"))
        res.update(
            tool="py-spy record --nonblocking",
            rate_hz=self.rate_hz,
            seconds=self.duration_s,
            collapsed_file=str(self.out),
            busy_fraction=round(res["samples"] / (self.rate_hz * self.duration_s), 3),
        )
        return res
