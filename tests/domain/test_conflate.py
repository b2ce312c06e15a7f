"""Conflation keeps the newest update of each market, in arrival order, and reports the rest."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oddsflow.domain.conflate import Conflated, conflate

Update = tuple[str, int]  # (market, seq)


def _run(batch: list[Update]) -> Conflated:
    return conflate(batch, lambda u: u[0], lambda u: u[1])


@pytest.mark.parametrize(
    ("batch", "keep"),
    [
        ([], ()),
        ([("m1", 1)], (0,)),
        ([("m1", 1), ("m1", 2), ("m1", 3)], (2,)),
        # two markets interleaved: each one's newest, in arrival order
        ([("m1", 1), ("m2", 5), ("m1", 2), ("m2", 6)], (2, 3)),
        ([("m2", 5), ("m1", 1), ("m2", 6), ("m1", 2)], (2, 3)),
        # out-of-order arrival: the highest seq wins even when it came first
        ([("m1", 3), ("m1", 2), ("m1", 1)], (0,)),
        ([("m1", 1), ("m1", 3), ("m1", 2)], (1,)),
        # a redelivered seq: the first copy is kept (the second would be stale in the handler)
        ([("m1", 4), ("m1", 4)], (0,)),
        ([("m1", 2), ("m2", 1), ("m1", 2), ("m1", 1)], (0, 1)),
        # a market updated once stays where it arrived, between others' newest
        ([("m1", 1), ("m2", 1), ("m1", 2), ("m3", 9), ("m1", 3)], (1, 3, 4)),
    ],
)
def test_conflate_table(batch: list[Update], keep: tuple[int, ...]) -> None:
    out = _run(batch)
    assert out.keep == keep
    assert out.superseded == tuple(i for i in range(len(batch)) if i not in keep)


def _apply(state: dict[str, int], batch: list[Update]) -> dict[str, int]:
    """The pricing handler's rule: an update is applied iff its seq is above the market's."""
    out = dict(state)
    for market, seq in batch:
        if market not in out or seq > out[market]:
            out[market] = seq
    return out


def _applied(state: dict[str, int], batch: list[Update]) -> list[int]:
    """Indexes the handler would actually price (not stale), in order."""
    out, done = dict(state), []
    for i, (market, seq) in enumerate(batch):
        if market not in out or seq > out[market]:
            out[market] = seq
            done.append(i)
    return done


_batches = st.lists(st.tuples(st.sampled_from(["m1", "m2", "m3", "m4"]), st.integers(0, 12)))
_states = st.dictionaries(st.sampled_from(["m1", "m2", "m3"]), st.integers(0, 12))


@given(_batches, _states)
def test_pricing_only_the_kept_updates_leaves_every_market_as_the_whole_batch_would(
    batch: list[Update], state: dict[str, int]
) -> None:
    out = _run(batch)
    kept = [batch[i] for i in out.keep]
    assert _apply(state, kept) == _apply(state, batch)
    # and the handler prices at most one update per market from the kept ones
    assert len(_applied(state, kept)) <= len({m for m, _ in batch})


@given(_batches)
def test_never_out_of_order_never_drops_the_latest_nothing_lost(batch: list[Update]) -> None:
    out = _run(batch)
    assert list(out.keep) == sorted(out.keep)
    assert list(out.superseded) == sorted(out.superseded)
    assert sorted(out.keep + out.superseded) == list(range(len(batch)))  # a partition
    kept_markets = [batch[i][0] for i in out.keep]
    assert len(kept_markets) == len(set(kept_markets)) == len({m for m, _ in batch})
    for i in out.keep:
        market, seq = batch[i]
        assert seq == max(s for m, s in batch if m == market)  # the latest is kept
    for i in out.superseded:
        market, seq = batch[i]
        kept_i = next(k for k in out.keep if batch[k][0] == market)
        assert seq < batch[kept_i][1] or (seq == batch[kept_i][1] and i > kept_i)
