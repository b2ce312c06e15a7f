"""Producer health: no market stays open on a silent or recovering producer's odds.

A UOF producer (product 1 live odds, 3 pre-match, ...) sends ``alive`` every few seconds. It is
*down* when its ``alive`` messages stop for longer than the timeout, when an ``alive`` says
``subscribed="0"``, or when ``product_down`` arrives. Every market the producer priced is then
suspended. It is *up* again only once it is back (an ``alive`` with ``subscribed="1"``) **and**
its ``snapshot_complete`` has arrived (the recovery's odds are in): only then are its markets
given back the status their latest odds asked for.

Pure bookkeeping, no I/O: :class:`ProducerHealth` says which markets change status; the adapter
turns that into ``market_status`` records. A producer the adapter has never heard from is taken
as up (there is nothing of it to suspend); the timeout starts with its first ``alive``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Producer:
    up: bool = True
    back: bool = True  # an alive(subscribed=1) arrived since it went down
    snapshot: bool = True  # a snapshot_complete arrived since it went down
    last_alive_ms: int | None = None  # our clock when its last alive arrived
    # (event_id, market_id) -> (status its latest odds asked for, in_play)
    markets: dict[tuple[str, str], tuple[str, bool]] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusChange:
    event_id: str
    market_id: str
    status: str
    in_play: bool


class ProducerHealth:
    def __init__(self, alive_timeout_ms: int) -> None:
        self.alive_timeout_ms = alive_timeout_ms
        self._producers: dict[int, _Producer] = {}

    def _get(self, product: int) -> _Producer:
        return self._producers.setdefault(product, _Producer())

    def is_up(self, product: int) -> bool:
        return self._get(product).up

    def producers(self) -> dict[int, bool]:
        return {p: st.up for p, st in self._producers.items()}

    def track(self, product: int, event_id: str, market_id: str, status: str, in_play: bool) -> str:
        """Remember what ``market_id``'s latest odds asked for; the status to publish now."""
        p = self._get(product)
        p.markets[(event_id, market_id)] = (status, in_play)
        return status if p.up else "suspended"

    def forget_event(self, event_id: str) -> None:
        for p in self._producers.values():
            for key in [k for k in p.markets if k[0] == event_id]:
                del p.markets[key]

    def _suspend_all(self, p: _Producer) -> list[StatusChange]:
        was_up = p.up
        p.up, p.back, p.snapshot = False, False, False
        if not was_up:
            return []
        return [
            StatusChange(ev, mid, "suspended", in_play)
            for (ev, mid), (_, in_play) in sorted(p.markets.items())
        ]

    def down(self, product: int) -> list[StatusChange]:
        """``product_down`` (or an unsubscribed alive): suspend every market of the producer."""
        return self._suspend_all(self._get(product))

    def _maybe_up(self, p: _Producer) -> list[StatusChange]:
        if p.up or not (p.back and p.snapshot):
            return []
        p.up = True
        return [
            StatusChange(ev, mid, status, in_play)
            for (ev, mid), (status, in_play) in sorted(p.markets.items())
        ]

    def alive(self, product: int, subscribed: bool, now_ms: int) -> list[StatusChange]:
        p = self._get(product)
        p.last_alive_ms = now_ms
        if not subscribed:
            return self._suspend_all(p)
        p.back = True
        return self._maybe_up(p)

    def snapshot_complete(self, product: int) -> list[StatusChange]:
        p = self._get(product)
        p.snapshot = True
        return self._maybe_up(p)

    def check(self, now_ms: int) -> dict[int, list[StatusChange]]:
        """Producers whose alive is overdue at ``now_ms`` go down: their suspensions."""
        out: dict[int, list[StatusChange]] = {}
        for product, p in self._producers.items():
            if (
                p.up
                and p.last_alive_ms is not None
                and now_ms - p.last_alive_ms > self.alive_timeout_ms
            ):
                out[product] = self._suspend_all(p)
        return out
