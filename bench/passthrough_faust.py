"""The framework baseline: a Faust app on the project's own transport (``oddsflow-kafka://``,
exactly_once, the worker's commit interval and batching) whose one agent forwards every event
unchanged (same key, value and partition) from the engine's input topics to the copy topics of
``bench.passthrough``. Beside the librdkafka passthrough it tells what Faust + aiokafka cost
from what the engine's own logic costs. Run as its own process, like a worker:

    python -m oddsflow.bench.passthrough_faust PREFIX [--commit-interval 0.1]

The agent takes events in batches and hands them to the transport's ``emit`` exactly as the
worker's agents do (``processors.app``): one transaction per commit interval holding the
outputs and the input offsets, the same transactional producer, fetch wait and linger.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from oddsflow.bench.passthrough import INPUTS, copy_topic, create_copy_topics, tname
from oddsflow.settings import REPO_ROOT, Settings

APP_SUFFIX = "bench-faust-passthrough"


def start(
    s: Settings, log_dir: Path, extra_env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start the Faust passthrough for ``s``'s prefix (its commit interval, its batching), with
    ``extra_env`` on top (say ODDSFLOW_RETRY_BACKOFF_MS, read by the transport)."""
    create_copy_topics(s)
    log = open(log_dir / f"passthrough-faust-{s.topic_prefix.rstrip('.')}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "oddsflow.bench.passthrough_faust", s.topic_prefix],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        start_new_session=True,
        # the worker's ODDSFLOW_* settings, commit interval included
        env={**s.child_env(), **(extra_env or {})},
    )


def build(s: Settings) -> Any:
    """The Faust app: the worker's transport and broker settings, one forwarding agent."""
    from oddsflow.processors import transport as oddsflow_transport
    from oddsflow.processors.app import RAW, faust_app_for
    from oddsflow.processors.emit import PartitionBatcher

    # The worker's own app settings (processors.app), always exactly_once. Standby replicas 1
    # (Faust's default): with 0, an app without tables crashed at its first assignment here
    # (KeyError in Faust's assignor group_for_topic); with no table it changes nothing else.
    s = s.model_copy(update={"processing_guarantee": "exactly_once", "standby_replicas": 1})
    app = faust_app_for(s, f"{s.topic_prefix}{APP_SUFFIX}", topic_partitions=4)
    transport = cast(oddsflow_transport.Transport, app.transport)
    # No tables; registering none still connects the transport's rebalance hook, which ends
    # the "rewinding" state a revoke starts (without it no send would go out after a revoke).
    transport.recover_tables({})
    out = {tname(s, k): copy_topic(s, k) for k in INPUTS}
    batch_max, within_s = s.agent_batch_max, s.agent_batch_within_ms / 1000

    @app.agent(app.topic(*out, **RAW), name="forward")
    async def forward(stream: Any) -> None:
        async for events in stream.take_events(batch_max, within=within_s):
            batcher = PartitionBatcher()
            for ev in events:
                msg = ev.message
                batcher.add(out[msg.topic], ev.key, ev.value, msg.partition)
            await transport.emit(events, batcher)

    return app


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("prefix")
    a = ap.parse_args(argv)
    try:
        import uvloop

        uvloop.install()  # as the worker runs
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass
    import faust

    from oddsflow.processors.app import tune_gc

    s = Settings(topic_prefix=a.prefix)
    worker = faust.Worker(build(s), loglevel="warn", quiet=True)
    tune_gc(s.gc_gen0_threshold)  # as the worker does
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
