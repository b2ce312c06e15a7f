"""The in-process ceiling runs the real handlers end to end: every bet gets its decision."""

from __future__ import annotations

from oddsflow.bench import ceiling
from oddsflow.settings import Settings


def test_ceiling_decides_every_bet_and_prices_every_update():
    r = ceiling.measure(Settings(), 40)
    assert r["bets_decided"] == 40
    assert r["bets_per_s"] > 0 and r["prices_per_s"] > 0
    # The workers decide these bets on the quota (100 % fast path in the bets scenario): the
    # ceiling must measure the same path. Its messages handled newest first once dropped a
    # market's older quota grants as redeliveries and sent every bet the authoritative way.
    assert r["fast_share_pct"] == 100.0
    eng = ceiling.InProcessEngine(Settings())
    assert set(eng.routes) >= {"bet_requests", "leg_commands", "leg_verdicts"}
