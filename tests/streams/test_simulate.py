"""The synthetic match day: deterministic, schema-valid, with the promised variety."""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal

from oddsflow.codec import Codec
from oddsflow.streams.simulate import (
    fair_probabilities,
    provider_odds,
    simulate_events,
    simulate_timed,
)

SCHEMA = {
    "fixtures": "fixture",
    "price_updates": "price_update",
    "market_status": "market_status",
    "scores": "score",
    "results": "result",
    "bet_requests": "bet_request",
    "deposits": "deposit",
}


def test_same_seed_same_stream_other_seed_differs() -> None:
    a = list(simulate_events(fixtures=6, accounts=20, bets=200, seed=7))
    assert a == list(simulate_events(fixtures=6, accounts=20, bets=200, seed=7))
    assert a != list(simulate_events(fixtures=6, accounts=20, bets=200, seed=8))


def test_contents() -> None:
    stats: Counter[str] = Counter()
    timed = simulate_timed(fixtures=12, accounts=50, bets=1500, seed=3, stats=stats)
    events = [ev for _, ev in timed]
    assert [ts for ts, _ in timed] == sorted(ts for ts, _ in timed)
    kinds = Counter(tk for tk, _, _ in events)
    assert kinds["fixtures"] == 12 and kinds["deposits"] == 50
    assert stats["goals"] > 0 and kinds["scores"] == stats["goals"]
    assert (
        stats["accumulators"] > 50 and stats["duplicate_bets"] > 0 and stats["stale_odds_bets"] > 50
    )
    assert stats["abandoned"] == 1 and stats["corrected_results"] == 1 and stats["malformed"] == 6
    codecs = {k: Codec(v) for k, v in SCHEMA.items()}
    for tk, _, rec in events:
        codecs[tk].encode(rec)  # every record, even a malformed one, fits its Avro schema

    # Every account deposits before its first bet; every bet's legs reference known events.
    first_bet = next(i for i, (tk, _, _) in enumerate(events) if tk == "bet_requests")
    assert all(tk != "deposits" for tk, _, _ in events[first_bet:])
    fixtures = {rec["event_id"] for tk, _, rec in events if tk == "fixtures"}
    bet_ids = Counter()
    for tk, key, rec in events:
        if tk == "bet_requests":
            assert key == rec["account_id"]
            assert {leg["event_id"] for leg in rec["legs"]} <= fixtures
            assert len({leg["event_id"] for leg in rec["legs"]}) == len(rec["legs"])
            assert all(isinstance(leg["odds"], Decimal) for leg in rec["legs"])
            bet_ids[rec["bet_id"]] += 1
    assert sum(1 for n in bet_ids.values() if n == 2) == stats["duplicate_bets"]
    assert {rec["price_policy"] for tk, _, rec in events if tk == "bet_requests"} == {
        "none",
        "higher",
        "any",
    }


def test_per_event_feed_is_well_ordered_and_in_play_goals_bet_stop() -> None:
    per_event: dict[str, list] = defaultdict(list)
    for tk, key, rec in simulate_events(fixtures=8, accounts=10, bets=0, seed=11):
        if tk not in ("bet_requests", "deposits"):
            per_event[key].append((tk, rec))
    results = Counter()
    for eid, evs in per_event.items():
        seqs = [rec["seq"] for _, rec in evs]
        assert seqs == list(range(1, len(seqs) + 1)), eid
        assert evs[0][0] == "fixtures"
        for i, (tk, rec) in enumerate(evs):
            if tk == "scores":
                # a goal: bet stop right before the score, markets reopened after new prices
                assert evs[i - 1][0] == "market_status" and evs[i - 1][1]["status"] == "bet_stop"
                assert any(
                    t == "market_status" and r["status"] == "open" and r["market_id"]
                    for t, r in evs[i:]
                )
            if tk == "results":
                results[(rec["status"], rec["revision"])] += 1
                if rec["status"] == "final" and rec["ft_home"] is not None:
                    assert rec["ht_home"] <= rec["ft_home"] and rec["ht_away"] <= rec["ft_away"]
        # a market closed in play (decided) is never reopened afterwards
        closed = set()
        for tk, rec in evs:
            if tk == "market_status" and rec["market_id"]:
                assert not (rec["status"] == "open" and rec["market_id"] in closed)
                if rec["status"] == "closed":
                    closed.add(rec["market_id"])
    assert results[("abandoned", 0)] == 1 and results[("final", 1)] == 1


def test_pre_match_only_has_no_scores() -> None:
    kinds = Counter(
        tk for tk, _, _ in simulate_events(fixtures=4, accounts=5, bets=50, seed=2, in_play=False)
    )
    assert kinds["scores"] == 0 and kinds["results"] >= 4


def test_price_model_gives_valid_books() -> None:
    for lam_h, lam_a, rem, h, a in (
        (Decimal("1.5"), Decimal("1.1"), Decimal(1), 0, 0),
        (Decimal("2.2"), Decimal("0.6"), Decimal("0.05"), 4, 0),
        (Decimal("0.9"), Decimal("1.7"), Decimal("0.5"), 1, 1),
    ):
        for key, probs in fair_probabilities(lam_h, lam_a, rem, h, a).items():
            if probs is None:
                continue
            assert abs(sum(probs) - 1) < Decimal("1e-9"), key
            odds = provider_odds(probs)
            assert all(Decimal("1.02") <= o <= 200 for o in odds)
            assert sum(1 / o for o in odds) > 1, (key, odds)
