"""The market view: every market's published state, in memory, on every worker.

A bet decided on its account's partition (``oddsflow.domain.decide``) needs the state of markets
that live on other (event) partitions. Each worker therefore reads the whole compacted
``markets.priced`` topic (topology key ``priced_markets``) into a dict: read_committed, every
partition, assigned from the beginning with no consumer-group offsets (a view is rebuilt from the
log on every start, never resumed). Not Faust's GlobalTable: its updates do not reach other
instances at runtime (faust-streaming #283).

* **One reader thread** (librdkafka through confluent-kafka) decodes and applies; the asyncio
  side only reads. Entries are immutable and replaced whole, so a reader sees an old or a new
  entry, never half of one.
* **Newer version wins.** An update is applied only if its ``version`` is higher than the
  entry's: a market never goes back (a replay, or an older record read after a newer one).
* **Caught up.** At start the view notes each partition's end offset (the high watermark, which
  counts records of transactions still open: stricter than the last stable offset). It is caught
  up once its read_committed position has reached every one of them, so everything committed
  before the worker started has been applied, and any transaction open then has ended. Until
  then :meth:`MarketView.get` raises :class:`ViewNotCaughtUp`: a worker cannot decide a bet
  before (``await view.wait_caught_up()`` first).
* **Metrics**: ``oddsflow_market_view_lag_seconds`` (now - ``priced_ts`` of the last update
  applied; :attr:`MarketView.lag_ms` gives the same in ms), ``oddsflow_market_view_lag_offsets``
  per partition (end of the log - position), updates applied / stale / undecodable, markets held,
  caught up (0/1).

Age: :meth:`MarketView.age_ms` is ``now - priced_ts`` of the entry, what the decision's staleness
rule for in-play markets reads (see ``oddsflow.domain.decide``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from prometheus_client import Counter, Gauge

from oddsflow import topology
from oddsflow.codec import Codec, CodecError
from oddsflow.domain.acceptance import MarketState, MarketStatus
from oddsflow.settings import Settings, get_settings

log = logging.getLogger("oddsflow.market_view")

VIEW_LAG_SECONDS = Gauge(
    "oddsflow_market_view_lag_seconds",
    "Now minus priced_ts of the last priced market the market view applied",
)
VIEW_LAG_OFFSETS = Gauge(
    "oddsflow_market_view_lag_offsets",
    "End of the priced-markets log minus the market view's position",
    ["partition"],
)
VIEW_UPDATES = Counter(
    "oddsflow_market_view_updates_total",
    "Priced-market records the market view read, by result",
    ["result"],  # applied | stale | undecodable
)
VIEW_MARKETS = Gauge("oddsflow_market_view_markets", "Markets held by the market view")
VIEW_CAUGHT_UP = Gauge(
    "oddsflow_market_view_caught_up", "1 once the market view reached its start-time end offsets"
)

_APPLIED = VIEW_UPDATES.labels("applied")
_STALE = VIEW_UPDATES.labels("stale")
_UNDECODABLE = VIEW_UPDATES.labels("undecodable")


class ViewNotCaughtUp(RuntimeError):
    """The view has not yet read up to the end offsets it saw at start: decide nothing."""


@dataclass(frozen=True)
class MarketEntry:
    """One market as published: the acceptance rules' ``MarketState`` and when it was priced."""

    state: MarketState
    event_id: str
    priced_ts_ms: int
    partition: int
    offset: int

    @property
    def version(self) -> int:
        return self.state.version


def entry_from_record(rec: dict[str, Any], partition: int, offset: int) -> MarketEntry:
    """A ``priced_market`` record as a view entry (ValueError/KeyError if it is not one)."""
    prices = {s["selection"]: Decimal(s["odds"]) for s in rec["selections"]}
    state = MarketState(
        market_id=rec["market_id"],
        status=MarketStatus(rec["status"]),
        prices=prices,
        in_play=bool(rec["in_play"]),
        version=int(rec["version"]),
    )
    return MarketEntry(state, rec["event_id"], int(rec["priced_ts"]), partition, offset)


class MarketView:
    """Read-only view of ``markets.priced``; :meth:`start` it, ``await``
    :meth:`wait_caught_up`, then :meth:`get` / :meth:`age_ms` (``domain.decide.MarketLookup``)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        topic_key: str = "priced_markets",
        clock_ms: Callable[[], int] | None = None,
        poll_s: float = 0.1,
        **consumer_overrides: Any,
    ) -> None:
        self.settings = settings or get_settings()
        spec = topology.load(settings=self.settings).topic(topic_key)
        self.topic = spec.name
        self._codec = Codec(spec.value_schema, self.settings.schema_registry_url)
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._poll_s = poll_s
        self._config: dict[str, Any] = {
            "bootstrap.servers": self.settings.kafka_bootstrap,
            # librdkafka wants a group id; it is never joined (assign) nor committed to
            "group.id": f"oddsflow-market-view-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,  # a price change waits at most this long in the broker
            **consumer_overrides,
        }
        self._entries: dict[str, MarketEntry] = {}
        self._targets: dict[int, int] = {}
        self._pending: set[int] = set()
        self._positions: dict[int, int] = {}
        self._ends: dict[int, int] = {}
        self._caught_up = threading.Event()
        self._wake = threading.Event()  # caught up, or the reader died
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._last_priced_ts_ms: int | None = None
        self._last_applied_ms: int | None = None
        self.applied = 0
        self.stale = 0
        self.undecodable = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout_s: float = 30.0) -> MarketView:
        """Note the end offsets, assign every partition from the beginning, start reading."""
        if self._thread is not None:
            return self
        self._targets = self._end_offsets(timeout_s)
        self._pending = {p for p, high in self._targets.items() if high > 0}
        self._positions = dict.fromkeys(self._targets, 0)
        consumer = Consumer(self._config)
        try:
            consumer.assign(
                [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self._targets]
            )
        except BaseException:
            consumer.close()
            raise
        VIEW_CAUGHT_UP.set(0)
        self._update_caught_up()
        self._thread = threading.Thread(
            target=self._run, args=(consumer,), name="market-view", daemon=True
        )
        self._thread.start()
        return self

    def _end_offsets(self, timeout_s: float) -> dict[int, int]:
        # Asked with read_uncommitted: a read_committed client is told the last stable offset,
        # which stops short of a transaction open now; the high watermark includes it.
        probe = Consumer({**self._config, "isolation.level": "read_uncommitted"})
        try:
            md = probe.list_topics(self.topic, timeout=timeout_s).topics.get(self.topic)
            if md is None or md.error is not None or not md.partitions:
                raise RuntimeError(f"market view: topic {self.topic} is not served: {md}")
            deadline = time.monotonic() + timeout_s
            ends: dict[int, int] = {}
            for p in sorted(md.partitions):
                while p not in ends:
                    try:
                        _, ends[p] = probe.get_watermark_offsets(
                            TopicPartition(self.topic, p), timeout=timeout_s, cached=False
                        )
                    except KafkaException:
                        # e.g. NOT_LEADER_FOR_PARTITION (not flagged retriable) while a new
                        # topic's leaders are still being elected
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
            return ends
        finally:
            probe.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def __enter__(self) -> MarketView:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ catch-up gate

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set() and self._error is None

    @property
    def start_offsets(self) -> dict[int, int]:
        """The end offset of each partition when the view started (what it must reach)."""
        return dict(self._targets)

    def wait_caught_up_blocking(self, timeout_s: float | None = None) -> bool:
        self._wake.wait(timeout_s)
        self._raise_if_failed()
        return self._caught_up.is_set()

    async def wait_caught_up(self, timeout_s: float | None = None) -> None:
        """Return once caught up; TimeoutError after ``timeout_s``; the reader's error if it
        died."""
        if not self.caught_up:
            done = await asyncio.to_thread(self.wait_caught_up_blocking, timeout_s)
            if not done:
                raise TimeoutError(
                    f"market view not caught up after {timeout_s}s: partitions "
                    f"{sorted(self._pending)} below {self._targets}"
                )
        self._raise_if_failed()

    # ------------------------------------------------------------------ lookups

    def get(self, market_id: str) -> MarketState | None:
        """The market's published state (None: never published, or published without prices,
        as the event side's ``market_state``). ViewNotCaughtUp before the view is caught up."""
        entry = self.entry(market_id)
        if entry is None or not entry.state.prices:
            return None
        return entry.state

    def entry(self, market_id: str) -> MarketEntry | None:
        self._raise_if_failed()
        if not self._caught_up.is_set():
            raise ViewNotCaughtUp(f"market view of {self.topic} has not caught up yet")
        return self._entries.get(market_id)

    def age_ms(self, market_id: str, now_ms: int) -> int | None:
        """``now_ms - priced_ts`` of the market's entry (never < 0); None if it has none."""
        entry = self.entry(market_id)
        return None if entry is None else max(0, now_ms - entry.priced_ts_ms)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def lag_ms(self) -> int | None:
        """Now minus ``priced_ts`` of the last update applied (None before the first)."""
        if self._last_priced_ts_ms is None:
            return None
        return max(0, self._clock_ms() - self._last_priced_ts_ms)

    def lag_offsets(self) -> dict[int, int]:
        """Per partition: end of the log (as last fetched) minus the view's position."""
        return {p: max(0, self._ends.get(p, 0) - pos) for p, pos in self._positions.items()}

    # ------------------------------------------------------------------ the reader thread

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"market view reader failed: {self._error!r}") from self._error

    def _run(self, consumer: Consumer) -> None:
        last_metrics = 0.0
        try:
            while not self._stop.is_set():
                # consume(n, timeout) waits for n messages or the whole timeout: wait for one
                # message only, then take what else is already there without waiting.
                first = consumer.poll(self._poll_s)
                if first is not None:
                    self._on_message(consumer, first)
                    for msg in consumer.consume(1000, 0):
                        self._on_message(consumer, msg)
                now = time.monotonic()
                if not self.caught_up or now - last_metrics >= 1.0:
                    self._refresh_positions(consumer)
                    last_metrics = now
        except BaseException as exc:  # surfaced by wait_caught_up / the next lookup's caller
            log.exception("market view reader failed")
            self._error = exc
            self._wake.set()  # waiters re-raise it
        finally:
            consumer.close()

    def _on_message(self, consumer: Consumer, msg: Any) -> None:
        err = msg.error()
        p = msg.partition()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                self._positions[p] = max(self._positions.get(p, 0), msg.offset())
                self._update_caught_up()
                return
            if err.fatal():
                raise RuntimeError(f"market view: {err}")
            log.warning("market view: %s", err)
            return
        self._positions[p] = msg.offset() + 1
        key = msg.key()
        value = msg.value()
        if value is None:  # a tombstone: the market is gone from the compacted topic
            if key is not None:
                self._entries.pop(key.decode(), None)
            return
        try:
            entry = entry_from_record(self._codec.decode(value), p, msg.offset())
        except (CodecError, ValueError, KeyError, ArithmeticError) as exc:
            self.undecodable += 1
            _UNDECODABLE.inc()
            log.warning(
                "market view: undecodable record at %s/%d@%d: %s", self.topic, p, msg.offset(), exc
            )
            return
        self._apply(entry)

    def _apply(self, entry: MarketEntry) -> None:
        mid = entry.state.market_id
        current = self._entries.get(mid)
        if current is not None and current.version >= entry.version:
            self.stale += 1
            _STALE.inc()
            return
        self._entries[mid] = entry
        self.applied += 1
        _APPLIED.inc()
        VIEW_MARKETS.set(len(self._entries))
        self._last_priced_ts_ms = entry.priced_ts_ms
        VIEW_LAG_SECONDS.set(max(0, self._clock_ms() - entry.priced_ts_ms) / 1000)

    def _refresh_positions(self, consumer: Consumer) -> None:
        # Positions also move past records the application never sees (aborted transactions,
        # commit markers), so they are read from librdkafka, not only from delivered messages.
        tps = consumer.position([TopicPartition(self.topic, p) for p in self._targets])
        for tp in tps:
            if tp.offset >= 0:
                self._positions[tp.partition] = max(self._positions[tp.partition], tp.offset)
        for p in self._targets:
            _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), cached=True)
            if high >= 0:
                self._ends[p] = high
            VIEW_LAG_OFFSETS.labels(str(p)).set(max(0, self._ends.get(p, 0) - self._positions[p]))
        self._update_caught_up()

    def _update_caught_up(self) -> None:
        if self._caught_up.is_set():
            return
        for p in list(self._pending):
            if self._positions.get(p, 0) >= self._targets[p]:
                self._pending.discard(p)
        if not self._pending:
            log.info(
                "market view caught up: %d markets, offsets %s", len(self._entries), self._targets
            )
            VIEW_CAUGHT_UP.set(1)
            self._caught_up.set()
            self._wake.set()
