"""processors.app._exit_past_stuck_threads: a stopped worker exits past a thread that did not
stop, but not past the event loop's idle executor threads, which the interpreter stops itself.

Run in a child interpreter: the function ends the process (``os._exit``) when it acts."""

from __future__ import annotations

import subprocess
import sys

EXECUTOR_ONLY = """
from concurrent.futures import ThreadPoolExecutor
from oddsflow.processors.app import _exit_past_stuck_threads
pool = ThreadPoolExecutor(thread_name_prefix="uvloop")
pool.submit(lambda: None).result()  # its idle worker thread "uvloop_0" stays alive
_exit_past_stuck_threads(SystemExit(0))
print("returned")
"""

STUCK = """
import threading
from oddsflow.processors.app import _exit_past_stuck_threads
never = threading.Event()
threading.Thread(target=never.wait, name="consumer").start()  # non-daemon, never stops
_exit_past_stuck_threads(SystemExit(3))
print("returned")
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_an_idle_loop_executor_thread_is_left_to_the_interpreter() -> None:
    r = _run(EXECUTOR_ONLY)
    assert r.returncode == 0 and "returned" in r.stdout, r.stderr
    assert "threads still running" not in r.stderr


def test_a_thread_that_did_not_stop_ends_the_process_with_its_status() -> None:
    r = _run(STUCK)
    assert r.returncode == 3, r.stderr
    assert "returned" not in r.stdout
    assert "threads still running (consumer)" in r.stderr
