"""Faust's own table recovery on the oddsflow transport (processors.transport, point 5).

Faust's Recovery still runs on every assignment: it is what resumes the streams. The tables
are rebuilt by processors.recovery, so Faust's must never replay a changelog itself, nor
check its offsets against a highwater it does not know. It did both, depending on whether a
fetch response had told aiokafka a changelog partition's last stable offset before Faust
asked for it: it replayed the changelog, and at a later assignment that kept the partition
it crashed the worker (ConsistencyError "(4 > -1)", the heir of the zombie-fencing test at
the zombie's expulsion).

The consumer thread (aiokafka) is replaced by what it answers in each case; the rest is
Faust's Recovery and the transport's consumer as a worker runs them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.types import TP

from oddsflow.processors.app import build_app
from oddsflow.settings import Settings


@pytest.mark.parametrize(
    ("faust_offset", "stable_offset"),
    [
        # Fresh partitions, a fetch response already in: Faust would replay the changelog.
        (None, 5),
        # Faust replayed to offset 4 at an earlier assignment; no fetch response yet since
        # this one (aiokafka's last stable offset is None): Faust would raise
        # ConsistencyError, the worker crashed.
        (4, None),
    ],
)
def test_faust_recovery_neither_replays_nor_checks_a_changelog(
    faust_offset: int | None, stable_offset: int | None
) -> None:
    app = build_app(Settings(topic_prefix="tfaustrec.")).app
    recovery = app.tables.recovery
    changelogs = [t.changelog_topic.get_topic_name() for t in app.tables.values()]
    assert changelogs
    tps = {TP(topic, p) for topic in changelogs for p in range(4)}

    async def aiokafka_highwaters(*partitions: Any) -> dict[Any, int | None]:
        # Under exactly_once: the last stable offset of the latest fetch response, if any.
        return dict.fromkeys(partitions, stable_offset)

    async def aiokafka_earliest(*partitions: Any) -> dict[Any, int]:
        return dict.fromkeys(partitions, 0)  # compacted changelogs keep their first offset

    thread = app.consumer._thread
    thread.highwaters = aiokafka_highwaters  # type: ignore[method-assign]
    thread.earliest_offsets = aiokafka_earliest  # type: ignore[method-assign]

    async def right_after_an_assignment() -> None:
        for tp in tps:
            recovery.active_offsets[tp] = faust_offset  # type: ignore[assignment]
        await recovery._build_highwaters(app.consumer, tps, recovery.active_highwaters, "active")
        await recovery._build_offsets(app.consumer, tps, recovery.active_offsets, "active")

    asyncio.run(right_after_an_assignment())
    # Nothing to replay: Faust resumes the streams at once (processors.recovery rebuilds).
    assert not recovery.need_recovery(), recovery.active_remaining()
    # Faust's consistency check (faust.tables.recovery: a replay offset above the highwater
    # raises ConsistencyError, which crashes the worker) finds nothing or does not run.
    inconsistent = [
        tp
        for tp in tps
        if recovery.active_offsets[tp]
        and recovery.active_highwaters[tp]
        and recovery.active_offsets[tp] > recovery.active_highwaters[tp]
    ]
    assert not (app.conf.recovery_consistency_check and inconsistent), inconsistent[:3]
