"""Micro-measurements of the per-message work: µs per codec encode/decode, payout, pricing.

Each figure is the median of ``reps`` timed runs of ``number`` calls (the VM is shared and
noisy: the median of repeats, on the same machine in the same session, is what to compare).
Run: ``python -m oddsflow.bench.micro [reps]``; ``--ceiling [reps]`` for the in-process ceiling;
``--legs [reps] [n]`` for the event side recording a settlement burst's accepted legs.
"""

from __future__ import annotations

import json
import statistics
import sys
import timeit
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import Any

from oddsflow.codec import Codec
from oddsflow.domain import pricing
from oddsflow.domain.money import payout_minor

_D = Decimal

# Records shaped as the ceiling's hot path writes them.
RECORDS: dict[str, dict[str, Any]] = {
    "price_update": {
        "event_id": "e49",
        "provider": "bench",
        "seq": 201,
        "market_id": "",
        "market_type": "match_result",
        "period": "FT",
        "line": None,
        "selections": [
            {"selection": "home", "odds": _D("2.10")},
            {"selection": "draw", "odds": _D("3.40")},
            {"selection": "away", "odds": _D("3.60")},
        ],
        "provider_ts": 1796117107394,
    },
    "priced_market": {
        "market_id": "e49/match_result/FT",
        "event_id": "e49",
        "market_type": "match_result",
        "period": "FT",
        "line": None,
        "status": "open",
        "in_play": False,
        "selections": [
            {
                "selection": "home",
                "provider_odds": _D("2.1000"),
                "fair_probability": _D("0.4543429844"),
                "odds": _D("2.0900"),
            },
            {
                "selection": "draw",
                "provider_odds": _D("3.4000"),
                "fair_probability": _D("0.2806236080"),
                "odds": _D("3.3900"),
            },
            {
                "selection": "away",
                "provider_odds": _D("3.6000"),
                "fair_probability": _D("0.2650334076"),
                "odds": _D("3.5900"),
            },
        ],
        "margin": _D("0.0500"),
        "method": "proportional",
        "overround": _D("0.0520056823"),
        "version": 5,
        "provider_ts": 1796117107394,
        "priced_ts": 1796117107394,
    },
    "bet_request": {
        "bet_id": "c199",
        "account_id": "a199",
        "stake_minor": 100,
        "currency": "GBP",
        "price_policy": "any",
        "legs": [
            {
                "event_id": "e49",
                "market_type": "match_result",
                "period": "FT",
                "line": None,
                "selection": "home",
                "odds": _D("2.00"),
            }
        ],
        "placed_at": 1796117107394,
        "channel": "bench",
    },
    "leg_command": {
        "action": "check",
        "bet_id": "c199",
        "account_id": "a199",
        "leg_index": 0,
        "leg_count": 1,
        "leg": {
            "event_id": "e49",
            "market_type": "match_result",
            "period": "FT",
            "line": None,
            "selection": "home",
            "odds": _D("2.0000"),
        },
        "stake_minor": 100,
        "currency": "GBP",
        "price_policy": "any",
        "hold_until_ms": None,
        "requested_at": 1796117107394,
    },
    "ledger_transaction": {
        "tx_id": "a199|c199:accept",
        "kind": "accept",
        "bet_id": "c199",
        "account_id": "a199",
        "postings": [
            {
                "posting_id": "a199|c199:accept:1",
                "account": "player:a199:reserved",
                "amount_minor": -100,
                "currency": "GBP",
            },
            {
                "posting_id": "a199|c199:accept:2",
                "account": "book:open_bets",
                "amount_minor": 100,
                "currency": "GBP",
            },
        ],
        "created_at": 1796117107394,
    },
}

ODDS = (_D("2.10"), _D("3.40"), _D("3.60"))
ODDS_WIDE = (_D("1.25"), _D("5.50"), _D("13.00"), _D("26.00"))


def median_us(fn: Callable[[], object], number: int, reps: int) -> float:
    fn()  # warm caches
    runs = timeit.repeat(fn, number=number, repeat=reps)
    return round(1e6 * statistics.median(runs) / number, 2)


def cases() -> dict[str, tuple[Callable[[], object], int]]:
    out: dict[str, tuple[Callable[[], object], int]] = {}
    for name, rec in RECORDS.items():
        c = Codec(name)
        data = c.encode(rec)
        out[f"encode {name}"] = (partial(c.encode, rec), 2000)
        out[f"decode {name}"] = (partial(c.decode, data), 2000)
    out["payout_minor single"] = ((lambda: payout_minor(12345, _D("2.10"))), 20000)
    out["payout_minor acca"] = ((lambda: payout_minor(12345, _D("9.112500000"))), 20000)
    out["overround 3-way"] = ((lambda: pricing.overround(ODDS)), 5000)
    for method in pricing.Method:
        n = 2000 if method in (pricing.Method.PROPORTIONAL, pricing.Method.ADDITIVE) else 100
        out[f"price {method.value} 3-way"] = (
            partial(pricing.price, ODDS, _D("0.05"), method),
            n,
        )
        out[f"price {method.value} 4-way wide"] = (
            partial(pricing.price, ODDS_WIDE, _D("0.05"), method),
            n,
        )
    return out


def run(reps: int = 7) -> dict[str, float]:
    return {name: median_us(fn, number, reps) for name, (fn, number) in cases().items()}


def ceiling(reps: int = 5, n: int = 2000) -> dict[str, Any]:
    from oddsflow.bench import ceiling as ceil
    from oddsflow.settings import Settings

    s = Settings()
    ceil.measure(s, 200)  # warm-up
    runs = [ceil.measure(s, n) for _ in range(reps)]
    return {
        "reps": reps,
        "n": n,
        "bets_per_s_median": statistics.median(r["bets_per_s"] for r in runs),
        "prices_per_s_median": statistics.median(r["prices_per_s"] for r in runs),
        "bets_per_s": [r["bets_per_s"] for r in runs],
        "prices_per_s": [r["prices_per_s"] for r in runs],
    }


def accepted_legs_once(n: int) -> dict[str, Any]:
    """The event side recording ``n`` accepted singles on one market (the settlement burst's
    shape: every leg on one event partition), in process: µs per leg of the
    ``accepted_legs`` decode and handler, the bets decided around it not counted; and the
    result settling them all (the event side's scan and the wallets' settlements). Timed in
    CPU seconds of this process: on the shared VM, other processes' load does not count."""
    import time

    from oddsflow.bench import ceiling as ceil
    from oddsflow.bench.scenarios.records import bet, deposit, price_update, result
    from oddsflow.settings import Settings

    eng = ceil.InProcessEngine(Settings())
    now = int(time.time() * 1000)
    eng.feed("price_updates", {**price_update("burst0", 1), "provider_ts": now}, now)
    accounts = [f"a{i}" for i in range(1000)]
    for a in accounts:
        eng.feed("deposits", deposit(a, 10_000_000_00), now)
    codec, handler = eng.codecs["accepted_legs"], eng.routes["accepted_legs"]
    spent = [0.0, 0]

    class _TimedCodec:
        # The engine's accepted_legs codec, its decode (the worker's too) timed with the leg.
        encode = staticmethod(codec.encode)

        @staticmethod
        def decode(raw: bytes) -> dict[str, Any]:
            t0 = time.process_time()
            rec = codec.decode(raw)
            spent[0] += time.process_time() - t0
            return rec

    def timed(rec: dict[str, Any], fx: Any, now_ms: int) -> None:
        t0 = time.process_time()
        handler(rec, fx, now_ms)
        spent[0] += time.process_time() - t0
        spent[1] += 1

    eng.codecs["accepted_legs"] = _TimedCodec()  # type: ignore[assignment]
    eng.routes["accepted_legs"] = timed
    for i in range(n):
        eng.feed(
            "bet_requests", {**bet(f"c{i}", accounts[i % 1000], "burst0"), "placed_at": now}, now
        )
    t0 = time.process_time()
    eng.feed("results", result("burst0"), now)
    settle_s = time.process_time() - t0
    legs = int(spent[1])
    return {
        "legs": legs,
        "legs_per_s": round(legs / spent[0], 1),
        "us_per_leg": round(1e6 * spent[0] / max(1, legs), 1),
        "settled": eng.outputs.get("settlements", 0),
        "settle_s": round(settle_s, 3),
        "settlements_per_s": round(eng.outputs.get("settlements", 0) / settle_s, 1),
    }


def accepted_legs(reps: int = 3, n: int = 20_000) -> dict[str, Any]:
    accepted_legs_once(500)  # warm-up
    runs = [accepted_legs_once(n) for _ in range(reps)]
    return {
        "reps": reps,
        "n": n,
        "legs_per_s_median": statistics.median(r["legs_per_s"] for r in runs),
        "settlements_per_s_median": statistics.median(r["settlements_per_s"] for r in runs),
        "runs": runs,
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--ceiling":
        print(json.dumps(ceiling(int(args[1]) if len(args) > 1 else 5), indent=1))
    elif args and args[0] == "--legs":
        reps, n = (
            (int(args[1]) if len(args) > 1 else 3),
            (int(args[2]) if len(args) > 2 else 20_000),
        )
        print(json.dumps(accepted_legs(reps, n), indent=1))
    else:
        for k, v in run(int(args[0]) if args else 7).items():
            print(f"{k:40s} {v:10.2f} us")
