"""UOF messages -> canonical records: mapping, statuses, ordering, duplicates, producer health."""

from __future__ import annotations

from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from oddsflow.streams.uof.adapter import SEQ_SLOTS, UofAdapter
from oddsflow.streams.uof.markets import MARKETS, map_market
from oddsflow.streams.uof.parse import UofError

from .conftest import EVENT, match_messages

T = 1764590400000


def _odds(ts: int, markets: str, product: int = 3, event: str = EVENT) -> bytes:
    return (
        f'<odds_change product="{product}" event_id="{event}" timestamp="{ts}"><odds>'
        f"{markets}</odds></odds_change>"
    ).encode()


M1 = (
    '<market id="1" status="{status}"><outcome id="1" odds="2.1" active="{a}"/>'
    '<outcome id="2" odds="3.4" active="1"/><outcome id="3" odds="3.6" active="1"/></market>'
)


def _m1(status: int = 1, a: int = 1) -> str:
    return M1.format(status=status, a=a)


def _by_topic(records):
    out: dict[str, list[dict]] = {}
    for o in records:
        out.setdefault(o.topic_key, []).append(o.record)
    return out


def _counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ---------------------------------------------------------------- the mapping table


@pytest.mark.parametrize(
    ("uof_id", "specifiers", "market_id", "outcomes"),
    [
        (1, (), f"{EVENT}/match_result/FT", {"1": "home", "2": "draw", "3": "away"}),
        (
            10,
            (),
            f"{EVENT}/double_chance/FT",
            {"9": "home_draw", "10": "home_away", "11": "draw_away"},
        ),
        (11, (), f"{EVENT}/draw_no_bet/FT", {"4": "home", "5": "away"}),
        (
            16,
            (("hcp", "-0.25"),),
            f"{EVENT}/asian_handicap/FT/-0.25",
            {"1714": "home", "1715": "away"},
        ),
        (
            16,
            (("hcp", "1.50"),),
            f"{EVENT}/asian_handicap/FT/1.5",
            {"1714": "home", "1715": "away"},
        ),
        (18, (("total", "2.5"),), f"{EVENT}/total_goals/FT/2.5", {"12": "over", "13": "under"}),
        (29, (), f"{EVENT}/both_teams_to_score/FT", {"74": "yes", "76": "no"}),
        (
            45,
            (),
            f"{EVENT}/correct_score/FT",
            {"274": "0-0", "276": "1-0", "284": "0-1", "288": "2-1", "322": "4-4"},
        ),
        (60, (), f"{EVENT}/match_result/1H", {"1": "home", "2": "draw", "3": "away"}),
        (68, (("total", "0.5"),), f"{EVENT}/total_goals/1H/0.5", {"12": "over", "13": "under"}),
    ],
)
def test_mapping_table(uof_id, specifiers, market_id, outcomes):
    mapped = map_market(EVENT, uof_id, specifiers)
    assert mapped is not None and mapped.market_id == market_id
    for outcome_id, selection in outcomes.items():
        assert mapped.selection(outcome_id) == selection


@pytest.mark.parametrize(
    ("uof_id", "specifiers"),
    [
        (26, ()),  # odd/even: not offered
        (18, ()),  # a total without its line
        (18, (("total", "2.3"),)),  # not a multiple of 0.25
        (18, (("total", "-0.5"),)),
        (18, (("total", "2.5"), ("extra", "1"))),
        (1, (("variant", "x"),)),
        (16, (("hcp", "0:1"),)),  # European handicap notation
    ],
)
def test_markets_the_engine_does_not_offer_map_to_none(uof_id, specifiers):
    assert map_market(EVENT, uof_id, specifiers) is None


def test_correct_score_other_has_no_selection():
    assert MARKETS[45].outcomes.get("324") is None
    assert len(MARKETS[45].outcomes) == 25


# ---------------------------------------------------------------- odds_change


def test_odds_change_gives_provider_prices_and_statuses():
    tr = UofAdapter().handle(_odds(T, _m1()))
    rec = _by_topic(tr.records)
    assert rec["price_updates"] == [
        {
            "event_id": EVENT,
            "provider": "sportradar",
            "seq": T * SEQ_SLOTS,
            "market_id": f"{EVENT}/match_result/FT",
            "market_type": "match_result",
            "period": "FT",
            "line": None,
            "selections": [
                {"selection": "home", "odds": Decimal("2.1000")},
                {"selection": "draw", "odds": Decimal("3.4000")},
                {"selection": "away", "odds": Decimal("3.6000")},
            ],
            "provider_ts": T,
        }
    ]
    assert [(r["market_id"], r["status"], r["in_play"]) for r in rec["market_status"]] == [
        (f"{EVENT}/match_result/FT", "open", False)
    ]


@pytest.mark.parametrize(
    ("status", "active", "expected", "priced"),
    [
        (1, 1, "open", True),
        (1, 0, "suspended", True),  # an inactive outcome suspends the market
        (0, 1, "suspended", True),
        (-1, 1, "suspended", True),
        (-2, 1, "suspended", False),
        (-3, 1, "closed", False),
        (-4, 1, "closed", False),
        (7, 1, "suspended", False),  # unknown status: never open
    ],
)
def test_market_status_mapping(status, active, expected, priced):
    rec = _by_topic(UofAdapter().handle(_odds(T, _m1(status, active))).records)
    assert [r["status"] for r in rec["market_status"]] == [expected]
    assert ("price_updates" in rec) is priced


def test_live_producer_marks_in_play():
    rec = _by_topic(UofAdapter().handle(_odds(T, _m1(), product=1)).records)
    assert rec["market_status"][0]["in_play"] is True


def test_unsupported_markets_are_skipped_and_counted_per_market_id():
    before = _counter("oddsflow_uof_unsupported_markets_total", market_id="26")
    market = '<market id="26" status="1"><outcome id="70" odds="1.9"/><outcome id="72" odds="1.9"/></market>'
    tr = UofAdapter().handle(_odds(T, market + _m1()))
    assert tr.unsupported == (26,)
    assert {r.record["market_id"] for r in tr.records} == {f"{EVENT}/match_result/FT"}
    assert _counter("oddsflow_uof_unsupported_markets_total", market_id="26") == before + 1


@pytest.mark.parametrize(
    "market",
    [
        '<market id="1" status="1"><outcome id="1" odds="2.1"/><outcome id="2" odds="3.4"/></market>',
        '<market id="1" status="1"><outcome id="1" odds="2.1"/><outcome id="2" odds="3.4"/><outcome id="3"/></market>',
        '<market id="1" status="1"><outcome id="1" odds="1.0"/><outcome id="2" odds="3.4"/><outcome id="3" odds="3"/></market>',
    ],
    ids=["missing_selection", "no_odds", "odds_not_above_1"],
)
def test_unpriceable_markets_are_suspended_not_priced(market):
    rec = _by_topic(UofAdapter().handle(_odds(T, market)).records)
    assert "price_updates" not in rec
    assert [r["status"] for r in rec["market_status"]] == ["suspended"]


def test_score_from_sport_event_status():
    data = (
        f'<odds_change product="1" event_id="{EVENT}" timestamp="{T}">'
        '<sport_event_status status="1" match_status="7" home_score="2" away_score="1">'
        '<clock match_time="75:02"/><period_scores>'
        '<period_score number="1" match_status_code="6" home_score="1" away_score="1"/>'
        '<period_score number="2" match_status_code="7" home_score="1" away_score="0"/>'
        "</period_scores></sport_event_status></odds_change>"
    ).encode()
    rec = _by_topic(UofAdapter().handle(data).records)
    assert [(r["period"], r["home"], r["away"], r["minute"]) for r in rec["scores"]] == [
        ("FT", 2, 1, 75),
        ("1H", 1, 1, 75),
    ]
    assert len({r["seq"] for r in rec["scores"]}) == 2


# ---------------------------------------------------------------- ordering and duplicates


def test_an_older_message_for_a_market_is_dropped_and_counted():
    a = UofAdapter()
    before = _counter("oddsflow_uof_dropped_total", reason="stale")
    a.handle(_odds(T + 10, _m1()))
    tr = a.handle(_odds(T + 5, _m1(-1)))
    assert tr.stale == 1 and tr.records == ()
    assert _counter("oddsflow_uof_dropped_total", reason="stale") == before + 1


def test_the_same_message_twice_is_harmless():
    a = UofAdapter()
    before = _counter("oddsflow_uof_duplicates_total")
    first = a.handle(_odds(T, _m1()))
    again = a.handle(_odds(T, _m1()))
    # the very same records, same seqs: the engine applies them once; a redelivery after a
    # failed Kafka flush is therefore never lost
    assert first.records and again.records == first.records and again.duplicates == 1
    assert _counter("oddsflow_uof_duplicates_total") == before + 1
    # a fresh adapter (a restarted consumer) gives the very same records, same seqs
    assert UofAdapter().handle(_odds(T, _m1())).records == first.records


def test_ordering_is_per_market():
    a = UofAdapter()
    m18 = '<market id="18" specifiers="total=2.5" status="1"><outcome id="12" odds="1.9"/><outcome id="13" odds="1.9"/></market>'
    a.handle(_odds(T + 10, _m1()))
    tr = a.handle(_odds(T + 5, m18))  # older than market 1's update, but 18 is another market
    assert {r.record["market_id"] for r in tr.records} == {f"{EVENT}/total_goals/FT/2.5"}


def test_status_seqs_increase_per_event_within_a_message():
    m18 = '<market id="18" specifiers="total=2.5" status="1"><outcome id="12" odds="1.9"/><outcome id="13" odds="1.9"/></market>'
    rec = _by_topic(UofAdapter().handle(_odds(T, _m1() + m18)).records)
    seqs = [r["seq"] for r in rec["market_status"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 2


# ---------------------------------------------------------------- bet_stop


def test_bet_stop_all_suspends_the_whole_event():
    a = UofAdapter()
    a.handle(_odds(T, _m1()))
    tr = a.handle(f'<bet_stop product="3" event_id="{EVENT}" timestamp="{T + 1}"/>'.encode())
    assert [(o.topic_key, o.record["market_id"], o.record["status"]) for o in tr.records] == [
        ("market_status", None, "suspended")
    ]
    assert tr.records[0].record["seq"] > T * SEQ_SLOTS


def test_bet_stop_by_group_suspends_the_markets_in_it():
    a = UofAdapter()
    m60 = _m1().replace('id="1" status', 'id="60" status')
    a.handle(_odds(T, _m1() + m60))
    tr = a.handle(
        f'<bet_stop groups="1st_half" product="3" event_id="{EVENT}" timestamp="{T + 1}"/>'.encode()
    )
    assert [o.record["market_id"] for o in tr.records] == [f"{EVENT}/match_result/1H"]


def test_an_older_bet_stop_is_dropped():
    a = UofAdapter()
    a.handle(_odds(T + 10, _m1()))
    tr = a.handle(f'<bet_stop product="3" event_id="{EVENT}" timestamp="{T}"/>'.encode())
    assert tr.records == () and tr.stale == 1


# ---------------------------------------------------------------- settlements and cancels


def test_the_recorded_match_translates_to_the_expected_provider_records():
    a = UofAdapter()
    records = [o for _, data in match_messages() for o in a.handle(data).records]
    settle = [o.record for o in records if o.topic_key == "provider_settlements"]
    assert [(r["kind"], r["market_id"].split("/", 1)[1], r["certainty"]) for r in settle] == [
        ("settle", "match_result/FT", 1),
        ("settle", "asian_handicap/FT/-0.25", 1),
        ("settle", "total_goals/FT/2.5", 1),
        ("settle", "both_teams_to_score/FT", 1),
        ("rollback", "match_result/FT", 0),
        ("settle", "match_result/FT", 2),
    ]
    by_market = {r["market_id"].split("/", 1)[1]: r for r in settle[:4]}
    assert by_market["asian_handicap/FT/-0.25"]["outcomes"] == [
        {"selection": "home", "result": 1, "void_factor": Decimal("0.5"), "dead_heat_factor": None},
        {"selection": "away", "result": 0, "void_factor": Decimal("0.5"), "dead_heat_factor": None},
    ]
    assert by_market["total_goals/FT/2.5"]["outcomes"][0]["void_factor"] == 1
    assert by_market["both_teams_to_score/FT"]["outcomes"][0]["dead_heat_factor"] == Decimal("0.5")
    cancels = [o.record for o in records if o.topic_key == "provider_cancels"]
    assert [(r["kind"], r["market_id"], r["start_time"], r["end_time"]) for r in cancels] == [
        ("cancel", f"{EVENT}/total_goals/FT/2.5", T + 3500, T + 4500),
        ("rollback", f"{EVENT}/total_goals/FT/2.5", T + 3500, T + 4500),
    ]
    assert cancels[0]["void_reason"] == 12
    fixtures = [o.record for o in records if o.topic_key == "fixtures"]
    assert [(f["home"], f["away"], f["competition"], f["sport"]) for f in fixtures] == [
        ("Harbour Town", "Mill Rovers", "Premier League", "football")
    ] * 2
    assert fixtures[1]["kickoff"] == 1764604800000 and fixtures[0]["kickoff"] == 1764601200000


def test_a_cancel_without_markets_covers_the_whole_event():
    tr = UofAdapter().handle(
        f'<bet_cancel product="1" event_id="{EVENT}" timestamp="{T}" superceded_by="sr:match:2"/>'.encode()
    )
    (rec,) = [o.record for o in tr.records]
    assert rec["market_id"] is None and rec["superceded_by"] == "sr:match:2"
    assert rec["start_time"] is None and rec["end_time"] is None


def test_a_settlement_twice_is_the_same_record_with_the_same_seq():
    a = UofAdapter()
    data = dict(match_messages())["07_bet_settlement_live.xml"]
    first, again = a.handle(data), a.handle(data)
    assert first.records and again.records == first.records and again.duplicates == 1


def test_a_settlement_older_than_its_rollback_is_dropped():
    a = UofAdapter()
    msgs = dict(match_messages())
    a.handle(msgs["08_rollback_bet_settlement.xml"])
    late = a.handle(msgs["07_bet_settlement_live.xml"])
    assert late.stale == 1  # market 1's settlement is older than its rollback
    assert {o.record["market_id"].split("/", 1)[1] for o in late.records} == {
        "asian_handicap/FT/-0.25",
        "total_goals/FT/2.5",
        "both_teams_to_score/FT",
    }


def test_fixture_change_before_its_fixture_is_refused_with_a_reason():
    with pytest.raises(UofError) as exc:
        UofAdapter().handle(
            f'<fixture_change product="3" event_id="{EVENT}" change_type="2" timestamp="{T}"/>'.encode()
        )
    assert exc.value.code == "fixture_unknown"


def test_a_cancelled_fixture_closes_the_event():
    tr = UofAdapter().handle(
        f'<fixture_change product="3" event_id="{EVENT}" change_type="3" timestamp="{T}"/>'.encode()
    )
    assert [(o.topic_key, o.record["market_id"], o.record["status"]) for o in tr.records] == [
        ("market_status", None, "closed")
    ]


# ---------------------------------------------------------------- producer health


def _statuses(tr_or_outs):
    outs = getattr(tr_or_outs, "records", tr_or_outs)
    return [
        (o.record["market_id"], o.record["status"]) for o in outs if o.topic_key == "market_status"
    ]


MID = f"{EVENT}/match_result/FT"


def test_product_down_suspends_until_back_and_snapshot_complete():
    a = UofAdapter()
    a.handle(b'<alive product="1" timestamp="%d" subscribed="1"/>' % T)
    a.handle(_odds(T + 1, _m1(), product=1))
    assert _statuses(a.handle(b'<product_down product="1" timestamp="%d"/>' % (T + 2))) == [
        (MID, "suspended")
    ]
    # odds during recovery are priced but published suspended
    assert _statuses(a.handle(_odds(T + 3, _m1(), product=1))) == [(MID, "suspended")]
    # back, but no snapshot yet: still suspended
    assert (
        _statuses(a.handle(b'<alive product="1" timestamp="%d" subscribed="1"/>' % (T + 4))) == []
    )
    up = a.handle(b'<snapshot_complete product="1" request_id="7" timestamp="%d"/>' % (T + 5))
    assert _statuses(up) == [(MID, "open")]
    assert a.health.is_up(1)


def test_snapshot_complete_alone_does_not_bring_a_producer_back():
    a = UofAdapter()
    a.handle(_odds(T + 1, _m1(), product=1))
    a.handle(b'<alive product="1" timestamp="%d" subscribed="0"/>' % (T + 2))
    assert _statuses(a.handle(b'<snapshot_complete product="1" timestamp="%d"/>' % (T + 3))) == []
    assert _statuses(a.handle(b'<alive product="1" timestamp="%d" subscribed="1"/>' % (T + 4))) == [
        (MID, "open")
    ]


def test_a_market_closed_during_the_outage_comes_back_closed():
    a = UofAdapter()
    a.handle(_odds(T + 1, _m1(), product=1))
    a.handle(b'<product_down product="1" timestamp="%d"/>' % (T + 2))
    a.handle(_odds(T + 3, _m1(-3), product=1))
    a.handle(b'<alive product="1" timestamp="%d" subscribed="1"/>' % (T + 4))
    assert _statuses(a.handle(b'<snapshot_complete product="1" timestamp="%d"/>' % (T + 5))) == [
        (MID, "closed")
    ]


def test_silent_alive_suspends_after_the_timeout_on_the_adapter_clock():
    a = UofAdapter(alive_timeout_ms=20_000)
    a.handle(b'<alive product="1" timestamp="%d" subscribed="1"/>' % T, now_ms=1_000)
    a.handle(_odds(T + 1, _m1(), product=1), now_ms=1_001)
    assert a.tick(21_000) == []  # exactly the timeout: not yet
    outs = a.tick(21_001)
    assert _statuses(outs) == [(MID, "suspended")]
    # suspensions carry a seq above everything the producer sent, below its next message
    assert outs[0].record["seq"] > (T + 1) * SEQ_SLOTS
    assert a.tick(50_000) == []  # already down: nothing more
    reopen = a.handle(_odds(T + 2, _m1(), product=1), now_ms=50_001)
    assert _statuses(reopen) == [(MID, "suspended")]  # down until back + snapshot


def test_replay_uses_message_timestamps_as_the_clock():
    a = UofAdapter(alive_timeout_ms=20_000)
    a.handle(b'<alive product="1" timestamp="%d" subscribed="1"/>' % T)
    a.handle(_odds(T + 1, _m1(), product=1))
    tr = a.handle(_odds(T + 30_000, _m1(), product=3))  # another producer, 30 s later
    assert (MID, "suspended") in _statuses(tr)


def test_other_producers_are_unaffected():
    a = UofAdapter()
    a.handle(_odds(T, _m1(), product=3))
    assert _statuses(a.handle(b'<product_down product="1" timestamp="%d"/>' % (T + 1))) == []
