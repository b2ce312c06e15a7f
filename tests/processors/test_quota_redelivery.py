"""Quota messages are numbered per channel, so a redelivered one changes nothing
(processors.quota_records): grants and recalls event -> account partition, returns account ->
event partition. A redelivery is what a flaw in exactly-once would bring (an input read again
after a crash whose table writes had committed); liability must not move because of it."""

from __future__ import annotations

import io
from typing import Any

import fastavro
from hypothesis import given, settings
from hypothesis import strategies as hs

from oddsflow.codec import SINGLE_OBJECT_MAGIC, Codec, schemas
from oddsflow.domain.acceptance import Limits
from oddsflow.processors.state import Effects
from tests.processors import records as r
from tests.processors.test_handlers import MR_E1, NOW, Engine, _book, _quota, _roundtrip, market_up


def _recall(seq: int | None) -> dict[str, Any]:
    return {
        "kind": "recall",
        "event_id": "e1",
        "market_id": MR_E1,
        "selection": None,
        "partition": 0,
        "currency": "GBP",
        "amount_minor": 0,
        "sent_at": NOW,
        "seq": seq,
    }


def _engine() -> Engine:
    e = Engine(Limits(bet_delay_ms_in_play=0, liability_minor_max_selection=100_00))
    market_up(e)
    return e


def test_grants_are_numbered_per_partition_and_a_redelivered_grant_is_dropped():
    e = _engine()
    grants = e.out("quota_grants")
    assert [(g["selection"], g["seq"]) for g in grants] == [("home", 1), ("draw", 2), ("away", 3)]
    assert _quota(e, "home") == 50_00
    for g in grants:  # read again, as after a crash whose table write had committed
        e.feed("quota_grants", g)
    assert {s: _quota(e, s) for s in ("home", "draw", "away")} == {
        "home": 50_00,
        "draw": 50_00,
        "away": 50_00,
    }


def test_a_redelivered_recall_returns_nothing_more():
    e = _engine()
    fx = Effects()
    e.w.on_quota_message(_roundtrip("quota_grants", _recall(4)), fx, NOW)
    returns = [_roundtrip(o.topic, o.value) for o in fx.out]
    assert [(x["kind"], x["seq"]) for x in returns] == [("return", 1), ("return", 2), ("return", 3)]
    again = Effects()
    e.w.on_quota_message(_roundtrip("quota_grants", _recall(4)), again, NOW)
    assert again.out == [] and _quota(e, "home") == 0
    # A grant numbered before the recall, arriving after it, is dropped too; the next one counts.
    late = {**e.out("quota_grants")[0], "seq": 3}
    e.feed("quota_grants", late)
    assert _quota(e, "home") == 0
    e.feed("quota_grants", {**late, "seq": 5})
    assert _quota(e, "home") == 50_00


def test_a_redelivered_return_is_learned_once():
    e = _engine()
    home = r.leg("e1", "home", "2.10")
    e.feed("deposits", r.deposit("a1", 1000_00))
    e.feed("bet_requests", r.bet("b1", "a1", 40_00, [home]))
    # More than the quota left: the event side recalls the quotas, the returns come back.
    e.feed("bet_requests", r.bet("b2", "a1", 30_00, [home]))
    returns = [x for x in e.out("accepted_legs") if x["kind"] == "return"]
    assert returns and [x["seq"] for x in returns] == list(range(1, len(returns) + 1))
    before = (_book(e), len(e.out("quota_grants")), len(e.out("leg_verdicts")))
    for x in returns:
        e.feed("accepted_legs", x)
    assert (_book(e), len(e.out("quota_grants")), len(e.out("leg_verdicts"))) == before


def test_a_quota_message_written_before_the_numbers_is_applied():
    e = _engine()
    v1 = schemas().by_name["quota_message"][1]
    grant = {k: v for k, v in e.out("quota_grants")[0].items() if k != "seq"}
    buf = io.BytesIO()
    buf.write(SINGLE_OBJECT_MAGIC + v1.fingerprint)
    fastavro.schemaless_writer(buf, v1.parsed, {**grant, "amount_minor": 1_00})
    decoded = Codec("quota_message").decode(buf.getvalue())
    assert decoded["seq"] is None
    e.w.on_quota_message(decoded, Effects(), NOW)
    assert _quota(e, "home") == 51_00


@settings(max_examples=60, deadline=None)
@given(hs.lists(hs.integers(min_value=0, max_value=6), min_size=1, max_size=30))
def test_any_redelivery_of_the_grants_leaves_the_quota_of_one_delivery(replays: list[int]):
    # ``replays``: which of the grants sent so far is read again, in turn.
    e = _engine()
    sent = list(e.out("quota_grants"))
    for g in range(4, 8):  # four more grants, each read again at random after it
        sent.append({**sent[0], "amount_minor": 1_00, "seq": g})
    expected = _engine()
    for g in sent[3:]:
        expected.feed("quota_grants", g)
    for i, g in enumerate(sent[3:]):
        e.feed("quota_grants", g)
        for k in replays[i::4]:
            e.feed("quota_grants", sent[min(k, 3 + i)])
    assert e.state["quotas"] == expected.state["quotas"]
