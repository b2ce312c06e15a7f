"""``oddsflow uof replay PATH``: recorded UOF messages (a file or a directory of them) into Kafka.

A file holds one message, or several inside ``<uof_messages>``; a directory is read in name
order (``*.xml``, recursively). Message timestamps are the clock (alive timeouts included), so a
recording replays the same way every time. Unusable messages go to the dead-letter topic.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from oddsflow.settings import Settings
from oddsflow.streams.uof.parse import UofError, split_messages
from oddsflow.streams.uof.settings import UofSettings
from oddsflow.streams.uof.sink import UofSink


class ReplayError(ValueError):
    """The path cannot be replayed (missing, or no XML files)."""


def recorded_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.xml") if p.is_file())
        if not files:
            raise ReplayError(f"{path} has no *.xml files")
        return files
    if path.is_file():
        return [path]
    raise ReplayError(f"{path} does not exist")


def replay(
    settings: Settings, path: Path, uof: UofSettings | None = None, sink: UofSink | None = None
) -> Counter[str]:
    """Replay ``path``; counts of message kinds, ``records`` and ``dead_letters``."""
    files = recorded_files(path)
    sink = sink or UofSink(settings, uof)
    counts: Counter[str] = Counter()
    for file in files:
        data = file.read_bytes()
        source = f"file:{file.name}"
        try:
            parts = split_messages(data)
        except UofError as exc:
            sink.dead_letter(data, source, 0, exc.reason, exc.code)
            counts["dead_letters"] += 1
            continue
        for index, part in enumerate(parts):
            handled = sink.handle(part, source, index)
            if handled.translation is None:
                counts["dead_letters"] += 1
                continue
            counts[handled.translation.kind] += 1
            counts["records"] += len(handled.translation.records)
    sink.flush()
    return counts
