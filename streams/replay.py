"""Replay a football-data style CSV (``../shared/data/epl-odds-results.csv``) as provider feeds.

Each CSV row is one match with opening and closing prices and the final score. Per match, on a
timeline relative to kick-off (KO)::

    KO-24h   fixture, market status open (whole event), opening prices for
             match_result (home/draw/away), total_goals 2.5 (over/under) and, when the row has
             them (2017 onwards), both_teams_to_score (yes/no)
    ...      ``steps`` further price updates per market moving linearly from open to close; the
             last one (KO-5min) is exactly the closing price
    KO-4min  optional synthetic bet requests at the last provider price (policy ``any``)
    KO       market status bet_stop, in_play (the event is live; no in-play prices in the CSV)
    KO+115m  result: FT and HT scores, status final, revision 0

Every feed record of a match carries a provider ``seq`` from one counter per event, so it
increases per event AND per market, which are the scopes the engine checks for staleness.
Events of all matches are merged into one stream ordered by timestamp, as a live feed would
deliver them, so replaying at a speed-up is a matter of sleeping between timestamps.

The CSV's ``Date`` is UK local time (Europe/London, BST in summer); it is converted to UTC with
zoneinfo so kick-offs are exact epoch milliseconds.
"""

from __future__ import annotations

import csv
import heapq
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from oddsflow.domain.markets import MarketType, Period, market_id
from oddsflow.settings import Settings, get_settings

Event = tuple[str, str, dict[str, Any]]
"""``(topic_key, key, record)``: what EventProducer.send takes."""

PROVIDER = "csv"
UK = ZoneInfo("Europe/London")
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
FIXTURE_LEAD_MS = 24 * HOUR_MS  # fixture, open status and opening prices this long before KO
LAST_PRICE_LEAD_MS = 5 * MINUTE_MS  # the closing price is published this long before KO
BET_LEAD_MS = 4 * MINUTE_MS  # synthetic bets go in after the closing price, before KO
RESULT_AFTER_MS = 115 * MINUTE_MS
ODDS_STEP = Decimal("0.01")  # replayed prices are quantized to 2 dp like the source
MIN_ODDS = Decimal("1.02")  # always > 1.01: a price at 1.00/1.01 is unpriceable/meaningless
AVRO_Q = Decimal("0.0001")
DEPOSIT_REF_PREFIX = "replay-dep"
PRICE_BATCH_MAX = 500  # price updates per send_batched call (each message: one partition's)


@dataclass(frozen=True)
class Match:
    index: int
    event_id: str
    season: str
    competition: str
    home: str
    away: str
    kickoff_ms: int
    ft: tuple[int, int]
    ht: tuple[int, int]
    # market_type value -> (line or None, [(selection, open, close)])
    markets: tuple[tuple[str, str | None, tuple[tuple[str, Decimal, Decimal], ...]], ...]


def slug(text: str) -> str:
    """``"Manchester United"`` -> ``"manchester-united"`` (ids must be URL- and key-safe)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def event_id_for(season: str, home: str, away: str) -> str:
    return f"epl-{slug(season)}-{slug(home)}-{slug(away)}"


def uk_local_to_ms(text: str) -> int:
    """``"2009-08-15 13:45:00"`` (UK local wall time) -> epoch ms UTC."""
    naive = datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S")  # noqa: DTZ007 - zone attached next line
    aware = naive.replace(tzinfo=UK)
    delta = aware - datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _price(text: str) -> Decimal | None:
    text = text.strip()
    if not text:
        return None
    d = Decimal(text)
    return d if d.is_finite() and d > 1 else None


_MARKET_COLUMNS: tuple[tuple[str, str | None, tuple[tuple[str, str], ...]], ...] = (
    (MarketType.MATCH_RESULT.value, None, (("home", "home"), ("draw", "draw"), ("away", "away"))),
    (MarketType.TOTAL_GOALS.value, "2.5", (("over", "over_2.5"), ("under", "under_2.5"))),
    (MarketType.BOTH_TEAMS_TO_SCORE.value, None, (("yes", "bts_yes"), ("no", "bts_no"))),
)


def read_matches(csv_path: str | Path, limit: int | None = None) -> list[Match]:
    """The CSV's matches in kick-off order (stable for equal kick-offs), at most ``limit``."""
    rows: list[Match] = []
    with open(csv_path, newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            markets = []
            for mtype, ln, cols in _MARKET_COLUMNS:
                sels = []
                for sel, col in cols:
                    o, c = _price(row.get(f"{col}_open", "")), _price(row.get(f"{col}_close", ""))
                    if o is None or c is None:
                        break
                    sels.append((sel, o, c))
                else:
                    markets.append((mtype, ln, tuple(sels)))
                # A market with any price missing is left out whole (BTS before 2017, 3 O/U rows).
            rows.append(
                Match(
                    index=i,
                    event_id=event_id_for(row["Season"], row["HomeTeam"], row["AwayTeam"]),
                    season=row["Season"],
                    competition=f"{row['country']}/{row['league']}",
                    home=row["HomeTeam"],
                    away=row["AwayTeam"],
                    kickoff_ms=uk_local_to_ms(row["Date"]),
                    ft=(int(row["FTHG"]), int(row["FTAG"])),
                    ht=(int(row["HTHG"]), int(row["HTAG"])),
                    markets=tuple(markets),
                )
            )
    rows.sort(key=lambda m: (m.kickoff_ms, m.index))
    return rows if limit is None else rows[:limit]


def interpolate(open_: Decimal, close: Decimal, k: int, n: int) -> Decimal:
    """Price ``k`` of ``n`` steps from ``open_`` (k=0) to ``close`` (k=n), 2 dp, >= 1.02."""
    value = close if k >= n else open_ + (close - open_) * k / n
    return max(value.quantize(ODDS_STEP, rounding=ROUND_HALF_EVEN), MIN_ODDS)


def _mid(event_id: str, mtype: str, ln: str | None) -> str:
    return market_id(event_id, MarketType(mtype), Period.FT, None if ln is None else Decimal(ln))


@dataclass(frozen=True)
class BetPlan:
    bet_id: str
    account_id: str
    stake_minor: int
    leg: dict[str, Any]
    placed_at: int


def account_name(i: int) -> str:
    return f"acct-{i:03d}"


def _bets_for(
    m: Match,
    shift: int,
    bets_per_match: int,
    accounts: int,
    closing: dict[str, tuple[str | None, dict[str, Decimal]]],
) -> list[BetPlan]:
    plans = []
    ko = m.kickoff_ms + shift
    for i in range(bets_per_match):
        rnd = random.Random(f"{m.event_id}:{i}")  # str seeds hash with sha512: same on every run
        mtype = rnd.choice(sorted(closing))
        ln, prices = closing[mtype]
        sel = rnd.choice(sorted(prices))
        plans.append(
            BetPlan(
                bet_id=f"{m.event_id}-b{i}",
                account_id=account_name((m.index * bets_per_match + i) % accounts),
                stake_minor=rnd.randrange(1, 51) * 100,  # £1..£50 in whole pounds, as minor units
                leg={
                    "event_id": m.event_id,
                    "market_type": mtype,
                    "period": Period.FT.value,
                    "line": ln,
                    "selection": sel,
                    "odds": prices[sel],
                },
                # Spread over the minute after the closing price; always strictly before KO.
                placed_at=ko - BET_LEAD_MS + (i * MINUTE_MS) // max(1, bets_per_match),
            )
        )
    return plans


def _match_events(
    m: Match, steps: int, shift: int, bets_per_match: int, accounts: int
) -> Iterator[tuple[int, Event]]:
    eid, ko = m.event_id, m.kickoff_ms + shift
    t_open = ko - FIXTURE_LEAD_MS
    seq = 0

    def nxt() -> int:
        nonlocal seq
        seq += 1
        return seq

    yield (
        t_open,
        (
            "fixtures",
            eid,
            {
                "event_id": eid,
                "provider": PROVIDER,
                "seq": nxt(),
                "sport": "football",
                "competition": m.competition,
                "home": m.home,
                "away": m.away,
                "kickoff": ko,
                "provider_ts": t_open,
            },
        ),
    )
    yield (
        t_open,
        (
            "market_status",
            eid,
            {
                "event_id": eid,
                "provider": PROVIDER,
                "seq": nxt(),
                "market_id": None,
                "status": "open",
                "in_play": False,
                "provider_ts": t_open,
            },
        ),
    )
    span = FIXTURE_LEAD_MS - LAST_PRICE_LEAD_MS
    closing: dict[str, tuple[str | None, dict[str, Decimal]]] = {}
    for k in range(steps + 1):
        ts = t_open + (span * k) // steps
        for mtype, ln, sels in m.markets:
            odds = {sel: interpolate(o, c, k, steps) for sel, o, c in sels}
            closing[mtype] = (ln, odds)
            yield (
                ts,
                (
                    "price_updates",
                    eid,
                    {
                        "event_id": eid,
                        "provider": PROVIDER,
                        "seq": nxt(),
                        "market_id": _mid(eid, mtype, ln),
                        "market_type": mtype,
                        "period": Period.FT.value,
                        "line": ln,
                        "selections": [
                            {"selection": s, "odds": v.quantize(AVRO_Q)} for s, v in odds.items()
                        ],
                        "provider_ts": ts,
                    },
                ),
            )
    if bets_per_match and closing:
        for p in _bets_for(m, shift, bets_per_match, accounts, closing):
            leg = dict(p.leg, odds=p.leg["odds"].quantize(AVRO_Q))
            yield (
                p.placed_at,
                (
                    "bet_requests",
                    p.account_id,
                    {
                        "bet_id": p.bet_id,
                        "account_id": p.account_id,
                        "stake_minor": p.stake_minor,
                        "currency": "GBP",
                        "price_policy": "any",
                        "legs": [leg],
                        "placed_at": p.placed_at,
                        "channel": "replay",
                    },
                ),
            )
    yield (
        ko,
        (
            "market_status",
            eid,
            {
                "event_id": eid,
                "provider": PROVIDER,
                "seq": nxt(),
                "market_id": None,
                "status": "bet_stop",
                "in_play": True,
                "provider_ts": ko,
            },
        ),
    )
    t_res = ko + RESULT_AFTER_MS
    yield (
        t_res,
        (
            "results",
            eid,
            {
                "event_id": eid,
                "provider": PROVIDER,
                "seq": nxt(),
                "status": "final",
                "ft_home": m.ft[0],
                "ft_away": m.ft[1],
                "ht_home": m.ht[0],
                "ht_away": m.ht[1],
                "revision": 0,
                "provider_ts": t_res,
            },
        ),
    )


def replay_timed(
    csv_path: str | Path,
    *,
    limit: int | None = None,
    steps: int = 3,
    start_ms: int | None = None,
    bets_per_match: int = 0,
    accounts: int = 100,
) -> Iterator[tuple[int, Event]]:
    """Like :func:`replay_events` but each event with its timeline timestamp (epoch ms)."""
    if steps < 1:
        raise ValueError("steps must be >= 1 (the last step is the closing price)")
    if accounts < 1:
        raise ValueError("accounts must be >= 1")
    matches = read_matches(csv_path, limit)
    if not matches:
        return
    first = matches[0].kickoff_ms - FIXTURE_LEAD_MS
    # start_ms re-bases the whole timeline (spacing kept) so e.g. a demo's feed looks current.
    shift = 0 if start_ms is None else start_ms - first
    if bets_per_match > 0:
        # Deposits first: each account gets exactly the sum of its stakes, so funds never reject
        # a replayed bet whatever the settlement timing.
        totals: Counter[str] = Counter()
        for m in matches:
            closing = {mt: (ln, {s: c for s, _, c in sels}) for mt, ln, sels in m.markets}
            if closing:
                for p in _bets_for(m, shift, bets_per_match, accounts, closing):
                    totals[p.account_id] += p.stake_minor
        t0 = first + shift
        for acct in sorted(totals):
            yield (
                t0,
                (
                    "deposits",
                    acct,
                    {
                        "ref": f"{DEPOSIT_REF_PREFIX}-{acct}",
                        "account_id": acct,
                        "amount_minor": totals[acct],
                        "currency": "GBP",
                        "created_at": t0,
                    },
                ),
            )
    # One lazy stream per match, merged by timestamp; ties keep match order then in-match order.
    yield from heapq.merge(
        *(_match_events(m, steps, shift, bets_per_match, accounts) for m in matches),
        key=lambda te: te[0],
    )


def replay_events(
    csv_path: str | Path,
    *,
    limit: int | None = None,
    steps: int = 3,
    start_ms: int | None = None,
    bets_per_match: int = 0,
    accounts: int = 100,
) -> Iterator[Event]:
    """The CSV as ``(topic_key, key, record)`` feed events, in timeline order; deterministic."""
    for _, ev in replay_timed(
        csv_path,
        limit=limit,
        steps=steps,
        start_ms=start_ms,
        bets_per_match=bets_per_match,
        accounts=accounts,
    ):
        yield ev


def replay(
    settings: Settings | None,
    csv_path: str | Path,
    *,
    speedup: float = 0.0,
    limit: int | None = None,
    bets_per_match: int = 0,
    steps: int = 3,
    start_ms: int | None = None,
    accounts: int = 100,
    producer: Any = None,
    progress: Callable[[Counter[str]], None] | None = None,
    progress_every: int = 5_000,
) -> Counter[str]:
    """Produce the replay to Kafka; returns counts by topic key.

    ``speedup``: timeline seconds per wall second (3600: an hour per second); 0 = as fast as
    possible. The function returns after a final flush, i.e. when Kafka has every event.
    """
    from oddsflow.kafka import EventProducer

    s = settings or get_settings()
    prod = producer or EventProducer(s)
    counts: Counter[str] = Counter()
    wall0 = time.monotonic()
    ts0: int | None = None
    # A run of price updates goes out as batch messages (price_updates is a topic of batches),
    # as a provider's odds message carries many markets; any other record, an idle wait or
    # PRICE_BATCH_MAX updates send the run first, so every topic keeps the replay's order.
    prices: list[tuple[str, dict[str, Any]]] = []

    def send_prices() -> None:
        if prices:
            prod.send_batched("price_updates", prices)
            prices.clear()

    for ts, (topic_key, key, record) in replay_timed(
        csv_path,
        limit=limit,
        steps=steps,
        start_ms=start_ms,
        bets_per_match=bets_per_match,
        accounts=accounts,
    ):
        if speedup > 0:
            if ts0 is None:
                ts0 = ts
            due = wall0 + (ts - ts0) / 1000 / speedup
            delay = due - time.monotonic()
            if delay > 0:
                send_prices()
                prod.flush()  # about to idle: deliver what is queued so consumers see it on time
                time.sleep(delay)
        if topic_key == "price_updates":
            prices.append((key, record))
            if len(prices) >= PRICE_BATCH_MAX:
                send_prices()
        else:
            send_prices()
            prod.send(topic_key, key, record)
        counts[topic_key] += 1
        if progress is not None and sum(counts.values()) % progress_every == 0:
            progress(counts)
    send_prices()
    prod.flush()
    return counts
