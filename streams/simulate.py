"""A synthetic, deterministic match day: many concurrent in-play fixtures and bettors.

``simulate_events(fixtures=20, accounts=200, bets=2000, seed=1)`` yields the same
``(topic_key, key, record)`` stream for the same arguments (``random.Random(seed)``, integer
arithmetic and Decimal only; no clock). The timeline (virtual time from ``start_ms``)::

    T0          fixtures for every event, then a deposit for every account
    T0+1s       event status open; opening prices for match_result, total_goals 2.5,
                asian_handicap -0.25 and both_teams_to_score
    T0..KO      4 price moves per event (a random walk of the goal expectations)
    any time    bet requests: mostly singles at the book's current price, ~15% 2-3 leg
                accumulators across fixtures, ~10% at a stale price (policy none/higher/any),
                ~2% sent twice with the same bet id
    KO          (2h after T0, staggered by 15 min) status open + in_play
    goal        event bet_stop -> score -> decided markets closed (over 2.5 after the 3rd goal,
                BTTS once both scored) -> new prices -> the live markets reopened one by one
                (one by one so a closed market is never reopened by an event-wide "open")
    FT          status closed, then the result (final, FT + HT scores); one fixture in ~8 is
                abandoned mid-match (status suspended, result abandoned), one gets a corrected
                result (revision 1) half an hour later
    a few       malformed records (unpriceable odds, unknown market, mismatched market id,
                a final result with no score, a zero stake, an unknown selection): they fit the
                Avro schema, so the ENGINE has to reject/dead-letter them

Prices come from a Poisson goal model (Decimal arithmetic) with a 5% provider overround, so
they move sensibly in play. Requested bet odds are the BOOK's odds (provider odds with the
book's margin, via ``oddsflow.domain.pricing.price``) so policy ``none`` bets are accepted when
nothing moved and rejected when the price did.

Every feed record of an event takes its ``seq`` from one counter per event, so seqs increase per
event and per market, the scopes the engine checks.
"""

from __future__ import annotations

import bisect
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Any

from oddsflow.domain.markets import MarketType, Period, market_id
from oddsflow.settings import Settings, get_settings

Event = tuple[str, str, dict[str, Any]]

PROVIDER = "sim"
DEFAULT_START_MS = 1_767_268_800_000  # 2026-01-01T12:00:00Z: fixed so the stream is reproducible
SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
KICKOFF_AFTER_MS = 120 * MINUTE_MS
PRICE_MOVES = 4
PROVIDER_OVERROUND = Decimal("1.05")
ODDS_MIN = Decimal("1.02")
ODDS_MAX = Decimal("200")
CENT = Decimal("0.01")
AVRO_Q = Decimal("0.0001")
MAX_GOALS = 10  # Poisson tail cut-off for the price model (P(>10 more goals) is negligible)

# (market_type, line) of the markets every fixture offers; lines as canonical text.
MARKETS: tuple[tuple[MarketType, str | None, tuple[str, ...]], ...] = (
    (MarketType.MATCH_RESULT, None, ("home", "draw", "away")),
    (MarketType.TOTAL_GOALS, "2.5", ("over", "under")),
    (MarketType.ASIAN_HANDICAP, "-0.25", ("home", "away")),
    (MarketType.BOTH_TEAMS_TO_SCORE, None, ("yes", "no")),
)
_TEAMS = (
    "Arsenal",
    "Aston Villa",
    "Bournemouth",
    "Brentford",
    "Brighton",
    "Burnley",
    "Chelsea",
    "Crystal Palace",
    "Everton",
    "Fulham",
    "Leeds",
    "Liverpool",
    "Manchester City",
    "Manchester United",
    "Newcastle",
    "Nottingham Forest",
    "Sunderland",
    "Tottenham",
    "West Ham",
    "Wolves",
)


# --------------------------------------------------------------------------- price model


def _poisson(mu: Decimal) -> list[Decimal]:
    p = [(-mu).exp()]
    for k in range(1, MAX_GOALS + 1):
        p.append(p[-1] * mu / k)
    return p


def fair_probabilities(
    lam_h: Decimal, lam_a: Decimal, remaining: Decimal, h: int, a: int
) -> dict[str, tuple[Decimal, ...] | None]:
    """Fair probabilities per market key given the score and the remaining share of the match.

    None for a market whose outcome is already decided (it must be closed, not priced).
    """
    with localcontext() as ctx:
        ctx.prec = 28
        ph, pa = _poisson(lam_h * remaining), _poisson(lam_a * remaining)
        win = draw = lose = over = btts = Decimal(0)
        for x, px in enumerate(ph):
            for y, py in enumerate(pa):
                p = px * py
                fh, fa = h + x, a + y
                if fh > fa:
                    win += p
                elif fh == fa:
                    draw += p
                else:
                    lose += p
                if fh + fa >= 3:
                    over += p
                if fh >= 1 and fa >= 1:
                    btts += p
        total = win + draw + lose
        win, draw, lose, over, btts = (v / total for v in (win, draw, lose, over, btts))
        # Asian handicap home -0.25: half the stake on home -0.5, half on home 0 (draw refunds it).
        # Fair odds o solve win*(o-1) = lose + draw/2, i.e. an implied probability of
        # win / (win + lose + draw/2); the away side (+0.25) is the complement.
        ah_home = win / (win + lose + draw / 2)
        out: dict[str, tuple[Decimal, ...] | None] = {
            "match_result": (win, draw, lose),
            "total_goals": None if h + a >= 3 else (over, 1 - over),
            "asian_handicap": (ah_home, 1 - ah_home),
            "both_teams_to_score": None if h >= 1 and a >= 1 else (btts, 1 - btts),
        }
    return out


def provider_odds(probs: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
    """Provider prices (2 dp) with a ~5% overround; always in [1.02, 200] and overround > 0."""
    odds = []
    for p in probs:
        raw = ODDS_MAX if p <= 0 else 1 / (p * PROVIDER_OVERROUND)
        odds.append(min(max(raw.quantize(CENT, rounding=ROUND_DOWN), ODDS_MIN), ODDS_MAX))
    # A near-certain favourite sits at the 1.02 floor and its implied 0.98 may leave the book
    # under 100%: shorten the other prices so it keeps ~3% overround (the engine de-margins it).
    implied = sum(1 / o for o in odds)
    if implied < Decimal("1.01"):
        floor_part = sum(1 / o for o in odds if o == ODDS_MIN)
        rest = implied - floor_part
        target = Decimal("1.03") - floor_part
        if rest > 0 and target > 0:
            odds = [
                o
                if o == ODDS_MIN
                else max((o * rest / target).quantize(CENT, rounding=ROUND_DOWN), ODDS_MIN)
                for o in odds
            ]
    return tuple(odds)


def book_odds(odds: tuple[Decimal, ...], margin: Decimal, method: str) -> tuple[Decimal, ...]:
    """The book's price the customer sees (domain pricing); provider odds if it cannot price."""
    from oddsflow.domain.pricing import price

    try:
        return tuple(price(list(odds), margin, method).odds)
    except ValueError:
        return odds


# --------------------------------------------------------------------------- timeline


@dataclass
class _Market:
    mtype: MarketType
    line: str | None
    sels: tuple[str, ...]
    mid: str
    history: list[tuple[int, tuple[Decimal, ...]]] = field(
        default_factory=list
    )  # (ts, provider odds)
    closed_at: int | None = None

    def odds_at(self, ts: int, back: int = 0) -> tuple[Decimal, ...] | None:
        i = bisect.bisect_right([t for t, _ in self.history], ts) - 1 - back
        return self.history[i][1] if i >= 0 else None


@dataclass
class _Fixture:
    idx: int
    event_id: str
    home: str
    away: str
    kickoff: int
    lam_h: Decimal
    lam_a: Decimal
    markets: list[_Market]
    seq: int = 0
    last_ts: int = 0

    def nxt(self) -> int:
        self.seq += 1
        return self.seq


class _Timeline:
    """Collects events with timestamps; sorted at the end (stable, so ties keep insertion order)."""

    def __init__(self) -> None:
        self.items: list[tuple[int, int, Event]] = []

    def add(self, ts: int, ev: Event) -> None:
        self.items.append((ts, len(self.items), ev))

    def sorted(self) -> list[tuple[int, Event]]:
        return [(ts, ev) for ts, _, ev in sorted(self.items, key=lambda t: (t[0], t[1]))]


def _q(o: Decimal) -> Decimal:
    return o.quantize(AVRO_Q)


def simulate_timed(
    *,
    fixtures: int = 20,
    accounts: int = 200,
    bets: int = 2000,
    seed: int = 1,
    in_play: bool = True,
    start_ms: int | None = None,
    margin: Decimal = Decimal("0.05"),
    method: str = "proportional",
    stats: Counter[str] | None = None,
) -> list[tuple[int, Event]]:
    """The match day as ``(ts, event)`` in timeline order (see the module doc)."""
    if fixtures < 1 or accounts < 1 or bets < 0:
        raise ValueError("need fixtures >= 1, accounts >= 1, bets >= 0")
    rnd = random.Random(seed)
    st = stats if stats is not None else Counter()
    t0 = DEFAULT_START_MS if start_ms is None else start_ms
    tl = _Timeline()
    prefix = f"sim{seed}"

    fxs: list[_Fixture] = []
    for i in range(fixtures):
        home, away = _TEAMS[(2 * i) % len(_TEAMS)], _TEAMS[(2 * i + 1) % len(_TEAMS)]
        if i >= len(_TEAMS) // 2:  # more fixtures than team pairs: keep names distinct
            home, away = f"{home} {i}", f"{away} {i}"
        eid = f"{prefix}-e{i:03d}"
        mkts = [
            _Market(
                mt, ln, sels, market_id(eid, mt, Period.FT, None if ln is None else Decimal(ln))
            )
            for mt, ln, sels in MARKETS
        ]
        fxs.append(
            _Fixture(
                i,
                eid,
                home,
                away,
                t0 + KICKOFF_AFTER_MS + (i % 4) * 15 * MINUTE_MS,
                Decimal(rnd.randint(90, 220)) / 100,
                Decimal(rnd.randint(60, 170)) / 100,
                mkts,
            )
        )

    def feed(f: _Fixture, ts: int, topic_key: str, body: dict[str, Any]) -> int:
        # Per-event timestamps never go backwards, so timeline order == seq order per event.
        ts = max(ts, f.last_ts)
        f.last_ts = ts
        rec = {
            "event_id": f.event_id,
            "provider": PROVIDER,
            "seq": f.nxt(),
            **body,
            "provider_ts": ts,
        }
        tl.add(ts, (topic_key, f.event_id, rec))
        st[topic_key] += 1
        return ts

    def status(f: _Fixture, ts: int, value: str, live: bool, mid: str | None = None) -> int:
        return feed(f, ts, "market_status", {"market_id": mid, "status": value, "in_play": live})

    def prices(
        f: _Fixture, ts: int, remaining: Decimal, h: int, a: int, lam_h: Decimal, lam_a: Decimal
    ) -> list[_Market]:
        """Price every undecided open market; returns the markets that just became decided."""
        probs = fair_probabilities(lam_h, lam_a, remaining, h, a)
        decided = []
        for m in f.markets:
            if m.closed_at is not None:
                continue
            p = probs[m.mtype.value]
            if p is None:
                decided.append(m)
                continue
            odds = provider_odds(p)
            ts = feed(
                f,
                ts,
                "price_updates",
                {
                    "market_id": m.mid,
                    "market_type": m.mtype.value,
                    "period": Period.FT.value,
                    "line": m.line,
                    "selections": [
                        {"selection": s, "odds": _q(o)} for s, o in zip(m.sels, odds, strict=True)
                    ],
                },
            )
            m.history.append((ts, odds))
        return decided

    def malformed_prices(f: _Fixture, ts: int) -> None:
        m0 = f.markets[0]
        sels = m0.sels
        for body in (
            # unpriceable: odds must be > 1
            {
                "market_id": m0.mid,
                "market_type": m0.mtype.value,
                "line": None,
                "selections": [{"selection": s, "odds": Decimal("1.0000")} for s in sels],
            },
            # unknown market type
            {
                "market_id": f"{f.event_id}/corners_total/FT",
                "market_type": "corners_total",
                "line": None,
                "selections": [
                    {"selection": "over", "odds": Decimal("1.9000")},
                    {"selection": "under", "odds": Decimal("1.9000")},
                ],
            },
            # market id that does not match its fields
            {
                "market_id": f"{f.event_id}/match_result/1H",
                "market_type": "match_result",
                "line": None,
                "selections": [{"selection": s, "odds": Decimal("3.0000")} for s in sels],
            },
        ):
            feed(f, ts, "price_updates", {**body, "period": Period.FT.value})
            st["malformed"] += 1

    # ---- T0: fixtures, deposits
    for f in fxs:
        feed(
            f,
            t0,
            "fixtures",
            {
                "sport": "football",
                "competition": "Simulated League",
                "home": f.home,
                "away": f.away,
                "kickoff": f.kickoff,
            },
        )
    for n in range(accounts):
        acct = f"acct-{n:03d}"
        tl.add(
            t0,
            (
                "deposits",
                acct,
                {
                    "ref": f"{prefix}-dep-{acct}",
                    "account_id": acct,
                    "amount_minor": rnd.choice((2_000, 5_000, 10_000, 25_000, 50_000)),
                    "currency": "GBP",
                    "created_at": t0,
                },
            ),
        )
        st["deposits"] += 1

    # ---- per fixture: pre-match, in-play, result
    abandoned = {fxs[j].idx for j in range(fixtures) if fixtures >= 5 and j % 8 == 4}
    corrected = fxs[min(2, fixtures - 1)].idx if fixtures >= 3 else None
    final_scores: dict[str, tuple[int, int, int, int]] = {}
    for f in fxs:
        status(f, t0 + SECOND_MS, "open", False)
        lam_h, lam_a = f.lam_h, f.lam_a
        span = f.kickoff - MINUTE_MS - (t0 + 2 * SECOND_MS)
        for k in range(PRICE_MOVES + 1):
            if k:
                # The market's view drifts: a random walk of both goal expectations (+-8%).
                lam_h = max(Decimal("0.3"), lam_h * (100 + rnd.randint(-8, 8)) / 100)
                lam_a = max(Decimal("0.3"), lam_a * (100 + rnd.randint(-8, 8)) / 100)
            prices(f, t0 + 2 * SECOND_MS + span * k // PRICE_MOVES, Decimal(1), 0, 0, lam_h, lam_a)
        if f.idx == 0:
            malformed_prices(f, f.kickoff - 30 * SECOND_MS)
        # The match itself: goals per minute with probability lambda/90 (integer arithmetic).
        goals: list[tuple[int, str]] = []
        for minute in range(1, 91):
            for side, lam in (("home", lam_h), ("away", lam_a)):
                if len(goals) < 8 and rnd.randrange(9000) < int(lam * 100):
                    goals.append((minute, side))
        stop_at = rnd.randint(50, 75) if f.idx in abandoned else None
        h = a = 0
        ht = (0, 0)
        ko = f.kickoff
        if in_play:
            status(f, ko, "open", True)
            ticks = sorted(
                {(g, "goal", s) for g, s in goals} | {(m, "tick", "") for m in (15, 30, 60, 75)}
            )
            for minute, what, side in ticks:
                if stop_at is not None and minute >= stop_at:
                    break
                ts = ko + minute * MINUTE_MS
                remaining = Decimal(90 - minute) / 90
                if what == "tick":
                    prices(f, ts, remaining, h, a, lam_h, lam_a)
                    continue
                st["goals"] += 1
                ts = status(f, ts + 5 * SECOND_MS, "bet_stop", True)
                h, a = (h + 1, a) if side == "home" else (h, a + 1)
                if minute <= 45:
                    ht = (h, a)
                feed(
                    f,
                    ts + SECOND_MS,
                    "scores",
                    {"period": Period.FT.value, "home": h, "away": a, "minute": minute},
                )
                decided = prices(f, ts + 30 * SECOND_MS, remaining, h, a, lam_h, lam_a)
                for m in decided:
                    m.closed_at = status(f, ts + 30 * SECOND_MS, "closed", True, m.mid)
                for m in f.markets:
                    if m.closed_at is None:
                        status(f, ts + 31 * SECOND_MS, "open", True, m.mid)
        else:
            status(f, ko, "bet_stop", True)
            for minute, side in goals:
                if stop_at is not None and minute >= stop_at:
                    break
                h, a = (h + 1, a) if side == "home" else (h, a + 1)
                if minute <= 45:
                    ht = (h, a)
        if stop_at is not None:
            ts = status(f, ko + stop_at * MINUTE_MS + 10 * SECOND_MS, "suspended", True)
            htv = ht if stop_at > 45 else (None, None)
            feed(
                f,
                ts + 10 * MINUTE_MS,
                "results",
                {
                    "status": "abandoned",
                    "ft_home": None,
                    "ft_away": None,
                    "ht_home": htv[0],
                    "ht_away": htv[1],
                    "revision": 0,
                },
            )
            st["abandoned"] += 1
            continue
        if f.idx == fixtures - 1:
            feed(
                f,
                ko + 92 * MINUTE_MS,
                "results",
                {
                    "status": "final",
                    "ft_home": None,
                    "ft_away": None,
                    "ht_home": None,
                    "ht_away": None,
                    "revision": 0,
                },
            )
            st["malformed"] += 1
        ts = status(f, ko + 93 * MINUTE_MS, "closed", False)
        ts = feed(
            f,
            ts + 2 * MINUTE_MS,
            "results",
            {
                "status": "final",
                "ft_home": h,
                "ft_away": a,
                "ht_home": ht[0],
                "ht_away": ht[1],
                "revision": 0,
            },
        )
        final_scores[f.event_id] = (h, a, *ht)
        if f.idx == corrected:
            # A goal chalked off after the final whistle: the provider corrects the result.
            ch, ca, hh, ha = (
                (h - 1, a, min(ht[0], h - 1), ht[1]) if h > 0 else (h, a + 1, ht[0], ht[1])
            )
            feed(
                f,
                ts + 30 * MINUTE_MS,
                "results",
                {
                    "status": "final",
                    "ft_home": ch,
                    "ft_away": ca,
                    "ht_home": hh,
                    "ht_away": ha,
                    "revision": 1,
                },
            )
            st["corrected_results"] += 1

    # ---- bet requests
    def book_at(m: _Market, ts: int, back: int = 0) -> tuple[Decimal, ...] | None:
        odds = m.odds_at(ts, back)
        return None if odds is None else book_odds(odds, margin, method)

    def open_markets(f: _Fixture, ts: int) -> list[_Market]:
        return [
            m
            for m in f.markets
            if m.history and m.history[0][0] <= ts and (m.closed_at is None or m.closed_at > ts)
        ]

    first_ko = min(f.kickoff for f in fxs)
    for n in range(bets):
        bet_id = f"{prefix}-b{n:06d}"
        acct = f"acct-{rnd.randrange(accounts):03d}"
        stake = rnd.choice((100, 200, 500, 500, 1_000, 1_000, 2_000, 5_000))
        kind = rnd.randrange(100)
        stale = rnd.randrange(100) < 10
        if kind < 15 and fixtures >= 2:
            # Accumulator: pre-match (every fixture is still open), legs on distinct fixtures.
            ts = rnd.randint(t0 + 3 * MINUTE_MS, first_ko - 2 * MINUTE_MS)
            chosen = rnd.sample(fxs, min(fixtures, rnd.choice((2, 3))))
            st["accumulators"] += 1
        else:
            f = rnd.choice(fxs)
            if in_play and rnd.randrange(100) < 30:
                ts = rnd.randint(f.kickoff + MINUTE_MS, f.kickoff + 88 * MINUTE_MS)
            else:
                ts = rnd.randint(t0 + 3 * MINUTE_MS, f.kickoff - 2 * MINUTE_MS)
            chosen = [f]
        legs = []
        for f in chosen:
            candidates = open_markets(f, ts) or [f.markets[0]]
            m = rnd.choice(candidates)
            si = rnd.randrange(len(m.sels))
            odds = (
                book_at(m, ts, 1 if stale else 0) or book_at(m, ts) or (Decimal(2),) * len(m.sels)
            )
            legs.append(
                {
                    "event_id": f.event_id,
                    "market_type": m.mtype.value,
                    "period": Period.FT.value,
                    "line": m.line,
                    "selection": m.sels[si],
                    "odds": _q(odds[si]),
                }
            )
        if stale:
            policy = rnd.choice(("none", "higher", "any"))
            st["stale_odds_bets"] += 1
        else:
            policy = rnd.choice(("any", "any", "higher", "none"))
        rec = {
            "bet_id": bet_id,
            "account_id": acct,
            "stake_minor": stake,
            "currency": "GBP",
            "price_policy": policy,
            "legs": legs,
            "placed_at": ts,
            "channel": rnd.choice(("web", "app")),
        }
        tl.add(ts, ("bet_requests", acct, rec))
        st["bet_requests"] += 1
        if rnd.randrange(100) < 2:
            # A client retry: same bet id and body; the engine must answer with the first decision.
            tl.add(ts + rnd.randint(1, 5) * SECOND_MS, ("bet_requests", acct, dict(rec)))
            st["bet_requests"] += 1
            st["duplicate_bets"] += 1

    # ---- malformed bet requests (schema-valid, semantically invalid); malformed feed records
    # are woven into the fixtures' timelines above so their seqs are fresh (a stale seq would
    # be dropped before validation and never reach the dead-letter topic).
    f0 = fxs[0]
    bad_ts = t0 + 10 * MINUTE_MS
    for bet_id, leg, stake in (
        (f"{prefix}-bad-stake", {"selection": "home"}, 0),
        (f"{prefix}-bad-selection", {"selection": "banana"}, 500),
    ):
        rec = {
            "bet_id": bet_id,
            "account_id": "acct-000",
            "stake_minor": stake,
            "currency": "GBP",
            "price_policy": "any",
            "legs": [
                {
                    "event_id": f0.event_id,
                    "market_type": "match_result",
                    "period": "FT",
                    "line": None,
                    "odds": Decimal("2.0000"),
                    **leg,
                }
            ],
            "placed_at": bad_ts,
            "channel": "web",
        }
        tl.add(bad_ts, ("bet_requests", "acct-000", rec))
        st["bet_requests"] += 1
    st["malformed"] += 2
    return tl.sorted()


def simulate_events(
    *,
    fixtures: int = 20,
    accounts: int = 200,
    bets: int = 2000,
    seed: int = 1,
    in_play: bool = True,
    start_ms: int | None = None,
    margin: Decimal = Decimal("0.05"),
    method: str = "proportional",
    stats: Counter[str] | None = None,
) -> Iterator[Event]:
    """The match day as ``(topic_key, key, record)`` in timeline order; same args, same stream.

    ``stats`` (optional) is filled with counts by kind: topic keys plus ``goals``,
    ``accumulators``, ``stale_odds_bets``, ``duplicate_bets``, ``abandoned``,
    ``corrected_results`` and ``malformed``.
    """
    for _, ev in simulate_timed(
        fixtures=fixtures,
        accounts=accounts,
        bets=bets,
        seed=seed,
        in_play=in_play,
        start_ms=start_ms,
        margin=margin,
        method=method,
        stats=stats,
    ):
        yield ev


def simulate(
    settings: Settings | None = None,
    *,
    fixtures: int = 20,
    accounts: int = 200,
    bets: int = 2000,
    seed: int = 1,
    in_play: bool = True,
    rate_per_s: float = 0.0,
    start_ms: int | None = None,
    producer: Any = None,
    progress: Callable[[Counter[str]], None] | None = None,
    progress_every: int = 5_000,
) -> Counter[str]:
    """Produce a simulated match day to Kafka; returns counts by kind (see simulate_events).

    The timeline starts at ``start_ms`` (default: now, so engine latency metrics are meaningful).
    ``rate_per_s`` caps the send rate in events per second (0: as fast as possible). Returns after
    a final flush, when Kafka has every event.
    """
    from oddsflow.kafka import EventProducer

    s = settings or get_settings()
    prod = producer or EventProducer(s)
    stats: Counter[str] = Counter()
    start = start_ms if start_ms is not None else time.time_ns() // 1_000_000
    events = simulate_timed(
        fixtures=fixtures,
        accounts=accounts,
        bets=bets,
        seed=seed,
        in_play=in_play,
        start_ms=start,
        margin=Decimal(s.margin),
        method=s.pricing_method,
        stats=stats,
    )
    wall0 = time.monotonic()
    for n, (_, (topic_key, key, record)) in enumerate(events, 1):
        if rate_per_s > 0:
            delay = wall0 + n / rate_per_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        prod.send(topic_key, key, record)
        if progress is not None and n % progress_every == 0:
            progress(Counter({"sent": n}))
    prod.flush()
    return stats
