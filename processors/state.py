"""State access for processors: a tiny key -> dict store interface.

Agents back it with Faust tables, agent tests with plain dicts. Values are stored as orjson
bytes so a value read after a changelog recovery is the value written (Decimals travel as
strings).

Why a journal: Faust writes a table's changelog through its plain producer, outside the
exactly_once transaction, so after a crash the recovered table can be ahead of (or behind)
the outputs that were committed. Here writes go to the table's local store directly and are
journaled; the agent then sends the journal to the changelog topic *inside* the event's
transaction, together with the outputs and the input offset. Either all of them commit or
none does, and a handler that fails half-way is rolled back in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import orjson

_MISSING = object()
T = TypeVar("T")


def _load(raw: Any) -> dict[str, Any]:
    # Faust's changelog recovery hands values back JSON-decoded: the same dict.
    if isinstance(raw, dict):
        return raw
    loaded: dict[str, Any] = orjson.loads(raw)
    return loaded


@dataclass
class Journal:
    """Table writes made while handling one event: (store, key, new bytes or None, old value)."""

    writes: list[tuple[Store, str, bytes | None, Any]] = field(default_factory=list)

    def rollback(self) -> None:
        for store, key, _, old in reversed(self.writes):
            if old is _MISSING:
                store._b.pop(key, None)
            else:
                store._b[key] = old
        self.writes.clear()


class Store:
    def __init__(self, backing: MutableMapping[str, Any], table: Any = None) -> None:
        self._b = backing
        self.table = table  # the Faust table whose changelog receives the journal, if any
        self.journal: Journal | None = None
        # get_frozen's conversions: key -> (the stored bytes converted, converter, result).
        self._frozen: dict[str, tuple[Any, Any, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self._b.get(key)
        return None if raw is None else _load(raw)

    def _record(self, key: str, value: bytes | None) -> None:
        if self.journal is not None:
            self.journal.writes.append((self, key, value, self._b.get(key, _MISSING)))

    def put(self, key: str, value: dict[str, Any]) -> None:
        raw = orjson.dumps(value, default=str)
        self._record(key, raw)
        self._b[key] = raw

    def get_frozen(self, key: str, convert: Callable[[dict[str, Any] | None], T]) -> T:
        """``convert(value)`` (``None`` if there is none), remembered for the stored bytes, so
        a hot key read by every event (a market's book, status, result) is decoded once per
        write, not once per read. Keyed by the identity of the stored bytes, which a write, a
        rollback and a recovery all replace, so a stale conversion is never returned. The
        result is shared by every read of the same bytes: ``convert`` must return a value no
        caller changes (a frozen dataclass, a tuple, ...)."""
        raw = self._b.get(key)
        memo = self._frozen.get(key)
        if memo is not None and memo[0] is raw and memo[1] is convert:
            value: T = memo[2]
            return value
        value = convert(None if raw is None else _load(raw))
        self._frozen[key] = (raw, convert, value)
        return value

    def put_frozen(
        self,
        key: str,
        value: dict[str, Any],
        convert: Callable[[dict[str, Any] | None], T],
        converted: T,
    ) -> None:
        """``put``, and remember ``converted`` (what ``convert(value)`` gives) for the next
        ``get_frozen``: a value written and read back by the next event is not decoded."""
        self.put(key, value)
        self._frozen[key] = (self._b[key], convert, converted)

    def delete(self, key: str) -> None:
        self._frozen.pop(key, None)
        if key in self._b:
            self._record(key, None)
            del self._b[key]

    def with_prefix(self, prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
        # Faust tables have no range scan; a prefix scan over this worker's keys is
        # O(keys on the worker), which is fine for the once-per-result settlement scan.
        for key in [k for k in list(self._b.keys()) if k.startswith(prefix)]:
            raw = self._b.get(key)
            if raw is not None:
                yield key, _load(raw)

    def sorted_keys(self, prefix: str) -> list[str]:
        """Every stored key that starts with ``prefix``, sorted (a cursor over them means the
        same in any process); O(keys on the worker), as ``with_prefix``."""
        return sorted(k for k in self._b if k.startswith(prefix))

    def __len__(self) -> int:
        return len(self._b)

    def __contains__(self, key: str) -> bool:
        # Whether a key is stored, without decoding its value (None is never stored).
        return key in self._b


class Out(NamedTuple):
    """A message a handler wants produced: topology topic key, message key, record. (A
    tuple, not a frozen dataclass: a settlement emits two per bet, and a frozen dataclass's
    constructor costs several times a tuple's.)"""

    topic: str
    key: str
    value: dict[str, Any]


@dataclass
class Effects:
    out: list[Out] = field(default_factory=list)

    def emit(self, topic: str, key: str, value: dict[str, Any]) -> None:
        self.out.append(Out(topic, key, value))
