"""The commit's turn between the slices of an agent's long batch (exactly_once).

An agent that works through a long batch (a settlement burst: 500-leg messages, one event
each) emits what it has done every ``agent_batch_budget_ms`` and lets the commit run. Yielding
once (``asyncio.sleep(0)``) was not enough: Faust's commit timer takes several loop
iterations to get from its tick to the emit lock (the timer, the sleep it wakes, the commit's
own awaits), and a busy agent gives the loop one iteration per slice. Measured (30,000 bets
settled by one worker, a slice every ~130 ms): a commit every 4-7 slices, 0.6-0.9 s apart
with a 50 ms commit interval, so settlements became visible in lumps of 5,000-10,000 and the
first one 0.6-1.1 s after the result.

So at a slice boundary, once the commit interval has passed since the last commit took the
lock, the agent starts the commit itself (Faust's ``Consumer.commit``, as its timer calls it:
one commit at a time, a second call waits for the first) and goes on as soon as that commit
holds the emit lock: the commit flushes the slice's sends while the agent works on the next
slice, whose emit waits for the commit.

Under light load the pacer also commits *eagerly* (``eager_events_max``): an emit that leaves
at most that many events uncommitted since the last commit took the lock, with no commit on
its way, starts the commit at once instead of leaving the events to wait for the timer's next
tick (half the interval on average). Under load the events since the last commit outnumber
it (all that arrived during a commit are emitted as one batch after it) and commits come at
the interval again, so their cost per event stays amortised.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any


class CommitPacer:
    def __init__(
        self,
        commit: Callable[[], Awaitable[Any]],
        interval_s: float,
        on_error: Callable[[BaseException], None],
        clock: Callable[[], float] = time.monotonic,
        eager_events_max: int = 0,
    ) -> None:
        self._commit = commit
        self.interval_s = interval_s
        self.eager_events_max = eager_events_max
        # Events emitted since the last commit took the emit lock (so not in any commit yet).
        self.uncommitted = 0
        self._on_error = on_error
        self._clock = clock
        self._last_lock_at = -math.inf
        self._task: asyncio.Future[Any] | None = None
        self._lock_taken: asyncio.Future[None] | None = None

    def commit_took_lock(self) -> None:
        """Called by every commit (whoever started it) once it holds the emit lock."""
        self._last_lock_at = self._clock()
        self.uncommitted = 0
        if self._lock_taken is not None and not self._lock_taken.done():
            self._lock_taken.set_result(None)

    async def make_way(self, commit_holds_lock: bool) -> None:
        """Between two slices: start the commit if it is due and wait until it holds the
        lock (or has returned without taking it: nothing to commit, or stopping)."""
        if commit_holds_lock:
            return  # a commit is flushing already; this slice's emit waits for it
        if self._clock() - self._last_lock_at < self.interval_s:
            await asyncio.sleep(0)  # not due: the timer's commit comes in its own time
            return
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._commit())
            self._task.add_done_callback(self._done)
        if self._lock_taken is None or self._lock_taken.done():
            # shared by every agent waiting for this commit (two agents' slices can end
            # while it is on its way to the lock)
            self._lock_taken = asyncio.get_running_loop().create_future()
        await asyncio.wait({self._task, self._lock_taken}, return_when=asyncio.FIRST_COMPLETED)

    def emitted(self, events: int, commit_on_its_way: bool) -> None:
        """After an emit released the lock: count its events, and start the commit now if
        load is light (see the module docstring). A commit on its way to the lock carries
        these events already (it picks the offsets once it holds the lock)."""
        self.uncommitted += events
        if not 0 < self.uncommitted <= self.eager_events_max or commit_on_its_way:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._commit())
            self._task.add_done_callback(self._done)

    def _done(self, fut: asyncio.Future[Any]) -> None:
        # The commit's own failures abort the transaction and stop the worker inside it;
        # anything else it raises goes to on_error, as it would from Faust's commit timer.
        if not fut.cancelled() and fut.exception() is not None:
            self._on_error(fut.exception() or RuntimeError("commit failed"))
