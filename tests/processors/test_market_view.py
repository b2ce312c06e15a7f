"""The market view against the real Kafka: read_committed over every partition, the catch-up
gate at the start-time end offsets, newer version wins, lag metrics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from oddsflow import topology
from oddsflow.codec import Codec
from oddsflow.domain.acceptance import Limits, MarketStatus, PricePolicy, Wallet
from oddsflow.domain.decide import Outcome, decide
from oddsflow.domain.quota import Quotas
from oddsflow.kafka import producer_config
from oddsflow.processors.emit import key_partition
from oddsflow.processors.market_view import MarketView, ViewNotCaughtUp
from oddsflow.settings import Settings
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

ODDS_Q = Decimal("0.0001")
PROB_Q = Decimal("0.0000000001")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def priced(
    event: str,
    version: int,
    home: str = "2.10",
    status: str = "open",
    in_play: bool = False,
    priced_ts: int | None = None,
) -> dict[str, Any]:
    mid = f"{event}/match_result/FT"
    return {
        "market_id": mid,
        "event_id": event,
        "market_type": "match_result",
        "period": "FT",
        "line": None,
        "status": status,
        "in_play": in_play,
        "selections": [
            {
                "selection": s,
                "provider_odds": Decimal(o).quantize(ODDS_Q),
                "fair_probability": Decimal("0.3").quantize(PROB_Q),
                "odds": Decimal(o).quantize(ODDS_Q),
            }
            for s, o in (("home", home), ("draw", "3.40"), ("away", "3.60"))
        ],
        "margin": Decimal("0.05").quantize(ODDS_Q),
        "method": "proportional",
        "overround": Decimal("0.05").quantize(PROB_Q),
        "version": version,
        "provider_ts": now_ms() if priced_ts is None else priced_ts,
        "priced_ts": now_ms() if priced_ts is None else priced_ts,
    }


class TxProducer:
    """A transactional producer of priced markets, like the pricing agent under exactly_once."""

    def __init__(self, s: Settings) -> None:
        self.spec = topology.load(settings=s).topic("priced_markets")
        self.codec = Codec(self.spec.value_schema)
        self.p = Producer(producer_config(s, **{"transactional.id": f"mv-{uuid.uuid4().hex}"}))
        self.p.init_transactions(30)

    def send(self, recs: list[dict[str, Any]], commit: bool | None = True) -> None:
        """One transaction; ``commit=None`` leaves it open (flushed into the log)."""
        self.p.begin_transaction()
        for rec in recs:
            self.p.produce(
                self.spec.name, key=rec["market_id"].encode(), value=self.codec.encode(rec)
            )
        self.p.flush(30)
        if commit is True:
            self.p.commit_transaction(30)
        elif commit is False:
            self.p.abort_transaction(30)


@pytest.fixture()
def view_factory(kafka_settings: Settings) -> Iterator[Any]:
    views: list[MarketView] = []

    def make(**kw: Any) -> MarketView:
        v = MarketView(kafka_settings, **kw)
        views.append(v)
        return v.start()

    yield make
    for v in views:
        v.stop()


def version_of(view: MarketView, event: str) -> int | None:
    e = view.entry(f"{event}/match_result/FT")
    return None if e is None else e.version


async def test_reads_committed_only_every_partition(
    kafka_settings: Settings, view_factory: Any
) -> None:
    prod = TxProducer(kafka_settings)
    events = [f"e{i}" for i in range(40)]
    prod.send([priced(e, 1) for e in events])
    prod.send([priced(e, 2, home="9.99") for e in events[:20]], commit=False)  # aborted
    prod.send([priced("ghost", 1)], commit=False)  # aborted: must never appear
    prod.send([priced(e, 3) for e in events[20:]])
    parts = {key_partition(f"{e}/match_result/FT".encode(), prod.spec.partitions) for e in events}
    assert parts == set(range(prod.spec.partitions))  # the records cover every partition

    view = view_factory()
    await view.wait_caught_up(60)
    assert view.caught_up and len(view) == 40
    assert {e: version_of(view, e) for e in events} == {
        e: 1 if i < 20 else 3 for i, e in enumerate(events)
    }
    assert view.get("ghost/match_result/FT") is None
    for e in events:
        state = view.get(f"{e}/match_result/FT")
        assert state is not None and state.prices["home"] == Decimal("2.10")
    assert view.applied == 40 + 20 and view.undecodable == 0  # v1 of all, v3 of half
    # it keeps following the topic after catching up
    prod.send([priced("e0", 7, home="2.50", in_play=True)])
    wait_for(lambda: version_of(view, "e0") == 7, 30, 0.05, "the view to follow")
    state = view.get("e0/match_result/FT")
    assert state is not None and state.in_play and state.prices["home"] == Decimal("2.50")


async def test_not_caught_up_before_the_start_time_end_offsets(
    kafka_settings: Settings, view_factory: Any
) -> None:
    """A transaction open when the view starts is inside the end offsets the view noted: the
    view must not report caught up (nor answer lookups) until it has ended and been read."""
    prod = TxProducer(kafka_settings)
    prod.send([priced("e1", 1), priced("e2", 1)])
    prod.send([priced("e1", 2, home="2.20"), priced("e3", 1)], commit=None)  # open

    view = view_factory()
    assert view.start_offsets and sum(view.start_offsets.values()) >= 4
    # everything committed before the open transaction has been read...
    wait_for(lambda: view.applied == 2, 30, 0.05, "the committed records")
    wait_for(lambda: sum(view.lag_offsets().values()) > 0, 30, 0.05, "the lag in offsets")
    # ...but the open transaction's records are below the start-time end offsets
    assert not view.caught_up
    with pytest.raises(ViewNotCaughtUp):
        view.get("e1/match_result/FT")
    with pytest.raises(TimeoutError):
        await view.wait_caught_up(0.5)
    wallet, req = Wallet(10_000), _bet()
    with pytest.raises(ViewNotCaughtUp):  # so no bet can be decided against it
        decide(wallet, req, view, Quotas(0), Limits(), now_ms())

    prod.p.commit_transaction(30)
    await view.wait_caught_up(60)
    assert version_of(view, "e1") == 2 and version_of(view, "e3") == 1
    full = Quotas(0, {("e1/match_result/FT", "home"): 10**6})
    d = decide(wallet, _bet(odds="2.20"), view, full, Limits(), now_ms())
    assert d.outcome is Outcome.ACCEPTED and d.bound_odds == (Decimal("2.20"),)


async def test_an_empty_topic_is_caught_up_at_once(view_factory: Any) -> None:
    view = view_factory()
    await view.wait_caught_up(30)
    assert len(view) == 0 and view.get("e1/match_result/FT") is None
    assert view.lag_ms is None


async def test_newer_version_wins(kafka_settings: Settings, view_factory: Any) -> None:
    prod = TxProducer(kafka_settings)
    # one key, so one partition, in this offset order: an older version after a newer one
    prod.send([priced("e1", 3, home="3.00"), priced("e1", 5, home="5.00")])
    prod.send([priced("e1", 4, home="4.00"), priced("e1", 5, home="6.66")])
    view = view_factory()
    await view.wait_caught_up(60)
    state = view.get("e1/match_result/FT")
    assert state is not None and state.version == 5 and state.prices["home"] == Decimal("5.00")
    assert view.applied == 2 and view.stale == 2
    prod.send([priced("e1", 2, status="closed")])  # a replay of an old record after catch-up
    prod.send([priced("e1", 6, status="suspended")])
    wait_for(lambda: version_of(view, "e1") == 6, 30, 0.05, "version 6")
    state = view.get("e1/match_result/FT")
    assert state is not None and state.status is MarketStatus.SUSPENDED and view.stale == 3


async def test_lag_metrics(kafka_settings: Settings, view_factory: Any) -> None:
    prod = TxProducer(kafka_settings)
    minute_ago = now_ms() - 60_000
    prod.send(
        [priced("e1", 1, priced_ts=minute_ago - 5_000), priced("e2", 1, priced_ts=minute_ago)]
    )
    view = view_factory()
    await view.wait_caught_up(60)
    lag = view.lag_ms
    assert lag is not None and lag >= 60_000
    assert REGISTRY.get_sample_value("oddsflow_market_view_lag_seconds") >= 60  # type: ignore[operator]
    assert REGISTRY.get_sample_value("oddsflow_market_view_caught_up") == 1
    age = view.age_ms("e1/match_result/FT", now_ms())
    assert age is not None and age >= 65_000
    wait_for(lambda: sum(view.lag_offsets().values()) == 0, 30, 0.1, "no offset lag")
    p = key_partition(b"e1/match_result/FT", prod.spec.partitions)
    assert REGISTRY.get_sample_value("oddsflow_market_view_lag_offsets", {"partition": str(p)}) == 0
    # a fresh update brings the lag down to the time it took to arrive
    prod.send([priced("e1", 2)])
    wait_for(lambda: version_of(view, "e1") == 2, 30, 0.05, "version 2")
    assert view.lag_ms is not None and view.lag_ms < 60_000


async def test_undecodable_record_is_counted_and_skipped(
    kafka_settings: Settings, view_factory: Any
) -> None:
    prod = TxProducer(kafka_settings)
    prod.p.begin_transaction()
    prod.p.produce(prod.spec.name, key=b"junk", value=b"not avro")
    prod.p.commit_transaction(30)
    prod.send([priced("e1", 1)])
    view = view_factory()
    await view.wait_caught_up(60)
    assert view.undecodable == 1 and version_of(view, "e1") == 1


def _bet(odds: str = "2.10") -> Any:
    from oddsflow.domain.acceptance import BetRequest
    from oddsflow.domain.markets import Leg, MarketType, Period

    leg = Leg("e1", MarketType.MATCH_RESULT, Period.FT, "home", Decimal(odds))
    return BetRequest("b1", "a1", 1000, "EUR", (leg,), PricePolicy.NONE, now_ms())
