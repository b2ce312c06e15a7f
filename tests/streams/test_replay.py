"""The EPL CSV replay: per-match event sequence, seqs, price paths, exact result mapping."""

from __future__ import annotations

import csv
import os
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from oddsflow.codec import Codec
from oddsflow.streams.replay import event_id_for, replay_events, replay_timed, uk_local_to_ms

CSV = Path(
    os.environ.get("ODDSFLOW_EPL_CSV")
    or Path(__file__).resolve().parents[3] / "shared/data/epl-odds-results.csv"
)
pytestmark = pytest.mark.skipif(not CSV.exists(), reason=f"EPL CSV not found at {CSV}")

SCHEMA = {
    "fixtures": "fixture",
    "price_updates": "price_update",
    "market_status": "market_status",
    "results": "result",
    "bet_requests": "bet_request",
    "deposits": "deposit",
}


def rows(n: int | None = None) -> list[dict[str, str]]:
    with CSV.open(newline="") as fh:
        out = list(csv.DictReader(fh))
    return out if n is None else out[:n]


def by_event(events) -> dict[str, list]:
    out: dict[str, list] = defaultdict(list)
    for topic_key, key, rec in events:
        if topic_key not in ("bet_requests", "deposits"):
            assert key == rec["event_id"]
            out[key].append((topic_key, rec))
    return out


def test_uk_local_time_is_converted_to_utc() -> None:
    assert uk_local_to_ms("2024-08-17 15:00:00") == 1_723_903_200_000  # BST: 14:00Z
    assert uk_local_to_ms("2024-01-17 15:00:00") == 1_705_503_600_000  # GMT: 15:00Z


def test_every_match_of_the_csv_is_replayed() -> None:
    total = len(rows())
    assert total == 5782
    counts = Counter(tk for tk, _, _ in replay_events(CSV, steps=1))
    assert counts["fixtures"] == counts["results"] == total
    assert counts["market_status"] == 2 * total
    assert Counter(tk for tk, _, _ in replay_events(CSV, limit=25))["fixtures"] == 25


def test_per_match_sequence_seqs_and_price_paths() -> None:
    steps = 3
    src = {event_id_for(r["Season"], r["HomeTeam"], r["AwayTeam"]): r for r in rows(60)}
    events = by_event(replay_events(CSV, limit=60, steps=steps))
    assert set(events) == set(src)
    for eid, evs in events.items():
        r = src[eid]
        kinds = [tk for tk, _ in evs]
        n_markets = 2 + (1 if r["bts_yes_open"] else 0) - (0 if r["over_2.5_open"] else 1)
        assert kinds == ["fixtures", "market_status"] + ["price_updates"] * n_markets * (
            steps + 1
        ) + ["market_status", "results"]
        seqs = [rec["seq"] for _, rec in evs]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        times = [rec["provider_ts"] for _, rec in evs]
        assert times == sorted(times)
        fixture, opened, *prices, stop, result = (rec for _, rec in evs)
        ko = uk_local_to_ms(r["Date"])
        assert (
            fixture["kickoff"] == ko
            and fixture["home"] == r["HomeTeam"]
            and fixture["away"] == r["AwayTeam"]
        )
        assert (opened["status"], opened["in_play"], opened["market_id"]) == ("open", False, None)
        assert (stop["status"], stop["in_play"], stop["provider_ts"]) == ("bet_stop", True, ko)
        assert all(p["provider_ts"] < ko for p in prices)
        # Opening price first, closing price last, monotonic in between, always > 1.01 and 2 dp.
        paths: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
        for p in prices:
            for s in p["selections"]:
                assert s["odds"] > Decimal("1.01") and s["odds"] == s["odds"].quantize(
                    Decimal("0.01")
                )
                paths[(p["market_id"], s["selection"])].append(s["odds"])
        cols = {
            "home": "home",
            "draw": "draw",
            "away": "away",
            "over": "over_2.5",
            "under": "under_2.5",
            "yes": "bts_yes",
            "no": "bts_no",
        }
        for (mid, sel), path in paths.items():
            col = cols[sel]
            assert len(path) == steps + 1
            assert path[0] == max(Decimal(r[f"{col}_open"]), Decimal("1.02"))
            assert path[-1] == max(Decimal(r[f"{col}_close"]), Decimal("1.02"))
            assert path == sorted(path) or path == sorted(path, reverse=True), (mid, sel, path)
        assert {p["market_id"] for p in prices} >= {f"{eid}/match_result/FT"}
        if r["over_2.5_open"]:
            assert f"{eid}/total_goals/FT/2.5" in {p["market_id"] for p in prices}
        # Exact result mapping.
        assert (result["status"], result["revision"]) == ("final", 0)
        assert (result["ft_home"], result["ft_away"], result["ht_home"], result["ht_away"]) == (
            int(r["FTHG"]),
            int(r["FTAG"]),
            int(r["HTHG"]),
            int(r["HTAG"]),
        )


def test_records_fit_the_avro_schemas_and_timeline_is_ordered() -> None:
    codecs = {k: Codec(v) for k, v in SCHEMA.items()}
    last = None
    for ts, (topic_key, _key, rec) in replay_timed(CSV, limit=40, bets_per_match=2):
        codecs[topic_key].decode(codecs[topic_key].encode(rec))
        assert last is None or ts >= last
        last = ts


def test_bets_sit_between_last_price_and_kickoff_and_deposits_cover_them() -> None:
    events = list(replay_events(CSV, limit=30, bets_per_match=3, accounts=7))
    deposits = {rec["account_id"]: rec["amount_minor"] for tk, _, rec in events if tk == "deposits"}
    first_other = next(i for i, (tk, _, _) in enumerate(events) if tk != "deposits")
    assert all(tk != "deposits" for tk, _, _ in events[first_other:])
    stakes: Counter[str] = Counter()
    last_price: dict[tuple[str, str], Decimal] = {}
    kickoff: dict[str, int] = {}
    bets = 0
    for tk, key, rec in events:
        if tk == "fixtures":
            kickoff[rec["event_id"]] = rec["kickoff"]
        elif tk == "price_updates":
            for s in rec["selections"]:
                last_price[(rec["market_id"], s["selection"])] = s["odds"]
        elif tk == "bet_requests":
            bets += 1
            assert key == rec["account_id"] and rec["price_policy"] == "any"
            assert isinstance(rec["stake_minor"], int) and rec["stake_minor"] > 0
            (leg,) = rec["legs"]
            mid = "/".join(
                x for x in (leg["event_id"], leg["market_type"], leg["period"], leg["line"]) if x
            )
            assert leg["odds"] == last_price[(mid, leg["selection"])]
            assert rec["placed_at"] < kickoff[leg["event_id"]]
            stakes[rec["account_id"]] += rec["stake_minor"]
    assert bets == 90
    assert dict(stakes) == deposits
    assert len(deposits) == 7


def test_deterministic_and_rebased() -> None:
    a = list(replay_events(CSV, limit=5, bets_per_match=1))
    assert a == list(replay_events(CSV, limit=5, bets_per_match=1))
    start = 1_800_000_000_000
    timed = list(replay_timed(CSV, limit=5, start_ms=start))
    assert timed[0][0] == start
    assert next(ev for _, ev in timed)[2]["event_id"] == "epl-2009-2010-chelsea-hull-city"


@pytest.mark.integration
def test_replay_produces_to_kafka(kafka_settings) -> None:
    from oddsflow.kafka import consume_all
    from oddsflow.streams.replay import replay

    counts = replay(kafka_settings, CSV, limit=3, bets_per_match=2)
    assert counts["fixtures"] == 3 and counts["bet_requests"] == 6 and counts["deposits"] == 6
    results = consume_all("results", kafka_settings, expect=3, idle_s=1.0)
    assert sorted(r["event_id"] for _, r in results) == sorted(
        rec["event_id"] for tk, _, rec in replay_events(CSV, limit=3) if tk == "results"
    )


def test_cli_commands_are_registered() -> None:
    import typer
    from typer.testing import CliRunner

    from oddsflow.streams.cli import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    out = runner.invoke(app, ["--help"]).output
    assert "replay" in out and "simulate" in out and "ingest-http" in out
    assert "--bets-per-match" in runner.invoke(app, ["replay", "--help"]).output
    assert "--rate" in runner.invoke(app, ["simulate", "--help"]).output
