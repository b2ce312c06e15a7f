"""State access for processors: a tiny key -> dict store interface.

Agents back it with Faust tables (changelogged, recovered after a restart); agent tests
back it with plain dicts. Values are stored as orjson bytes so a value read after a
changelog recovery is exactly the value written (Decimals travel as strings).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson


class Store:
    def __init__(self, backing: MutableMapping[str, bytes]) -> None:
        self._b = backing

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self._b.get(key)
        return None if raw is None else orjson.loads(raw)

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._b[key] = orjson.dumps(value, default=str)

    def delete(self, key: str) -> None:
        if key in self._b:
            del self._b[key]

    def with_prefix(self, prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
        # Faust tables have no range scan; a prefix scan over this worker's keys is
        # O(keys on the worker), which is fine for the once-per-event settlement scan.
        for key in [k for k in list(self._b.keys()) if k.startswith(prefix)]:
            raw = self._b.get(key)
            if raw is not None:
                yield key, orjson.loads(raw)

    def __len__(self) -> int:
        return len(self._b)


@dataclass(frozen=True)
class Out:
    """A message a handler wants produced: topology topic key, message key, record."""

    topic: str
    key: str
    value: dict[str, Any]


@dataclass
class Effects:
    out: list[Out] = field(default_factory=list)

    def emit(self, topic: str, key: str, value: dict[str, Any]) -> None:
        self.out.append(Out(topic, key, value))
