"""An agent's long batch makes way for the commit between its slices (processors.commit_pacing):
the commit starts when it is due, the agent goes on once the commit holds the emit lock (while
the commit flushes), and a commit that is not due or already flushing is not started again."""

from __future__ import annotations

import asyncio

import pytest

from oddsflow.processors.commit_pacing import CommitPacer


class FakeCommit:
    """Faust's commit as the pacer sees it: a few loop iterations to reach the emit lock
    (``steps``), then the flush (``flushed``), unless there is nothing to commit."""

    def __init__(self, steps: int = 5, takes_lock: bool = True, error: Exception | None = None):
        self.steps, self.takes_lock, self.error = steps, takes_lock, error
        self.calls = 0
        self.flushed = asyncio.Event()
        self.done = False
        self.pacer: CommitPacer | None = None

    async def __call__(self) -> bool:
        self.calls += 1
        for _ in range(self.steps):
            await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        if not self.takes_lock:
            return False
        assert self.pacer is not None
        self.pacer.commit_took_lock()
        await self.flushed.wait()
        self.done = True
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _pacer(
    commit: FakeCommit,
    clock: Clock,
    errors: list[BaseException] | None = None,
    eager_events_max: int = 0,
):
    pacer = CommitPacer(
        commit,
        0.05,
        (errors if errors is not None else []).append,
        clock,
        eager_events_max=eager_events_max,
    )
    commit.pacer = pacer
    return pacer


async def _make_way(pacer: CommitPacer, holds_lock: bool = False) -> None:
    await asyncio.wait_for(pacer.make_way(holds_lock), 2)


def test_a_due_commit_is_started_and_the_agent_goes_on_once_it_holds_the_lock():
    async def run() -> None:
        commit, clock = FakeCommit(steps=5), Clock()
        pacer = _pacer(commit, clock)
        await _make_way(pacer)
        # The commit holds the lock and is flushing: the agent's next slice runs meanwhile.
        assert commit.calls == 1 and not commit.done
        commit.flushed.set()
        for _ in range(3):
            await asyncio.sleep(0)
        assert commit.done

    asyncio.run(run())


def test_a_commit_not_due_is_not_started():
    async def run() -> None:
        commit, clock = FakeCommit(steps=0), Clock()
        pacer = _pacer(commit, clock)
        commit.flushed.set()
        await _make_way(pacer)
        assert commit.calls == 1
        clock.now += 0.01  # within the commit interval of the last commit's lock
        await _make_way(pacer)
        assert commit.calls == 1
        clock.now += 0.05  # past it
        await _make_way(pacer)
        assert commit.calls == 2

    asyncio.run(run())


def test_a_commit_taking_the_lock_from_the_timer_counts_as_the_last_commit():
    async def run() -> None:
        commit, clock = FakeCommit(), Clock()
        pacer = _pacer(commit, clock)
        pacer.commit_took_lock()  # Faust's timer committed just now
        await _make_way(pacer)
        assert commit.calls == 0

    asyncio.run(run())


def test_while_a_commit_holds_the_lock_no_second_one_is_started():
    async def run() -> None:
        commit, clock = FakeCommit(), Clock()
        pacer = _pacer(commit, clock)
        await _make_way(pacer, holds_lock=True)
        assert commit.calls == 0

    asyncio.run(run())


def test_a_slice_boundary_while_the_started_commit_runs_joins_it():
    async def run() -> None:
        commit, clock = FakeCommit(steps=50), Clock()
        pacer = _pacer(commit, clock)
        first = asyncio.ensure_future(pacer.make_way(False))
        await asyncio.sleep(0)
        await _make_way(pacer)  # the same commit, not a second one
        await asyncio.wait_for(first, 2)
        assert commit.calls == 1
        commit.flushed.set()

    asyncio.run(run())


def test_a_commit_with_nothing_to_commit_lets_the_agent_go_on():
    async def run() -> None:
        commit, clock = FakeCommit(takes_lock=False), Clock()
        pacer = _pacer(commit, clock)
        await _make_way(pacer)
        assert commit.calls == 1

    asyncio.run(run())


@pytest.mark.parametrize("steps", [0, 3])
def test_a_commit_that_raises_is_reported_and_the_agent_goes_on(steps):
    async def run() -> list[BaseException]:
        errors: list[BaseException] = []
        commit, clock = FakeCommit(steps=steps, error=RuntimeError("broker gone")), Clock()
        pacer = _pacer(commit, clock, errors)
        await _make_way(pacer)
        await asyncio.sleep(0)  # the done callback
        return errors

    errors = asyncio.run(run())
    assert [str(e) for e in errors] == ["broker gone"]


# Eager commits (light load): an emit that leaves few events uncommitted starts the commit.


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("eager_max", "emits", "commits"),
    [
        (4, [1], 1),  # a lone bet: committed at once, not at the timer's next tick
        (4, [4], 1),  # at the limit
        (4, [5], 0),  # a batch over it: load, the timer commits
        (4, [3, 2], 1),  # the first starts it; the second, while it runs, joins it
        (0, [1], 0),  # off
        (4, [0], 0),  # an emit that acked nothing has nothing to commit
    ],
)
def test_an_emit_under_light_load_starts_the_commit(eager_max, emits, commits):
    async def run() -> int:
        commit, clock = FakeCommit(steps=3), Clock()
        pacer = _pacer(commit, clock, eager_events_max=eager_max)
        for n in emits:
            pacer.emitted(n, commit_on_its_way=False)
        await _settle()
        commit.flushed.set()
        await _settle()
        return commit.calls

    assert asyncio.run(run()) == commits


def test_no_eager_commit_while_a_commit_is_on_its_way_to_the_lock():
    async def run() -> None:
        commit, clock = FakeCommit(), Clock()
        pacer = _pacer(commit, clock, eager_events_max=4)
        pacer.emitted(1, commit_on_its_way=True)  # that commit carries this event
        await _settle()
        assert commit.calls == 0
        assert pacer.uncommitted == 1

    asyncio.run(run())


def test_events_count_from_the_last_commit_taking_the_lock():
    async def run() -> None:
        commit, clock = FakeCommit(steps=0), Clock()
        pacer = _pacer(commit, clock, eager_events_max=4)
        pacer.emitted(3, commit_on_its_way=True)
        pacer.emitted(3, commit_on_its_way=False)  # 6 uncommitted: load, left to the timer
        await _settle()
        assert commit.calls == 0
        pacer.commit_took_lock()  # the timer's commit carries all six
        assert pacer.uncommitted == 0
        pacer.emitted(1, commit_on_its_way=False)  # light again: committed at once
        await _settle()
        assert commit.calls == 1
        commit.flushed.set()
        await _settle()
        assert commit.done and pacer.uncommitted == 0

    asyncio.run(run())


def test_an_eager_commit_that_raises_is_reported():
    async def run() -> list[BaseException]:
        errors: list[BaseException] = []
        commit, clock = FakeCommit(steps=1, error=RuntimeError("fenced")), Clock()
        pacer = _pacer(commit, clock, errors, eager_events_max=4)
        pacer.emitted(1, commit_on_its_way=False)
        await _settle()
        return errors

    assert [str(e) for e in asyncio.run(run())] == ["fenced"]
