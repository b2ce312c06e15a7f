"""Conflation of a batch of price updates: price only the newest per market.

Under load a consumer gets many updates of one market in one batch. Pricing each in turn does
the same work N times and publishes N-1 prices that are stale before they leave; the pricing
handler keeps only an update whose provider ``seq`` is above the market's last one, so after
the whole batch a market holds the update with the highest seq (the first to arrive of that seq;
a later copy of the same seq is stale). :func:`conflate` picks exactly that update per market,
so pricing the kept ones leaves every market as pricing the whole batch would, with one pricing
and one publication per market.

Guarantees:

* the latest (highest seq) update of every market in the batch is kept, never dropped;
* kept updates stay in arrival order (across markets too), never reordered;
* every other update is reported as superseded, so the caller counts it (nothing disappears
  silently) and commits its offset with the batch.

Validate before conflating: an invalid update that is the newest of its market would otherwise
supersede a valid older one (the worker validates every record right after decoding, and a bad
one goes to the dead-letter topic without reaching here).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

U = TypeVar("U")


@dataclass(frozen=True)
class Conflated:
    """Indexes into the batch: ``keep`` to price (ascending), ``superseded`` (ascending) not."""

    keep: tuple[int, ...]
    superseded: tuple[int, ...]


def conflate(
    updates: Sequence[U],
    market_of: Callable[[U], Hashable],
    seq_of: Callable[[U], int],
) -> Conflated:
    """Which of ``updates`` (in arrival order) to price: the highest-seq one of each market.

    ``market_of`` gives an update's market key (the derived market id), ``seq_of`` its provider
    sequence number. Of equal highest seqs the first to arrive is kept, as the handler would.
    """
    best: dict[Hashable, tuple[int, int]] = {}  # market -> (seq, index of the kept update)
    for i, u in enumerate(updates):
        market, seq = market_of(u), seq_of(u)
        held = best.get(market)
        if held is None or seq > held[0]:
            best[market] = (seq, i)
    kept = sorted(i for _, i in best.values())
    keep_set = set(kept)
    return Conflated(
        keep=tuple(kept),
        superseded=tuple(i for i in range(len(updates)) if i not in keep_set),
    )
