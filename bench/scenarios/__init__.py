"""The benchmark scenarios, one module each. Each returns a JSON-able dict of measured figures
(never typed in).

Sizes come from :class:`Plan` (``--quick`` or full). Each scenario runs on its own topic
prefix; the engine runs as a real ``oddsflow worker`` subprocess. Shared plumbing is in
``common`` (plan, context, measuring, summaries) and ``records`` (the load's records); the
names below are re-exported so ``from oddsflow.bench.scenarios import ...`` keeps working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oddsflow.bench.scenarios.baseline import scenario_baseline
from oddsflow.bench.scenarios.bets import scenario_bets
from oddsflow.bench.scenarios.commit_path import scenario_commit_path
from oddsflow.bench.scenarios.common import (
    BenchError,
    Ctx,
    Plan,
    accepted_count,
    check,
    decode_field,
    measure_open,
    preload,
    reps_summary,
    start_worker,
    summarize,
    tname,
)
from oddsflow.bench.scenarios.prices import scenario_prices
from oddsflow.bench.scenarios.records import ODDS, Bets, Prices, bet, deposit, price_update, result
from oddsflow.bench.scenarios.settlement import scenario_settlement_burst
from oddsflow.bench.scenarios.sinks import scenario_sinks

# the names these had when the scenarios were one module (other bench modules import them)
_reps_summary = reps_summary
_preload = preload
_accepted = accepted_count
_check = check
_summary = summarize
_start_worker = start_worker

SCENARIOS: dict[str, Callable[[Ctx], dict[str, Any]]] = {
    "baseline": scenario_baseline,
    "prices": scenario_prices,
    "bets": scenario_bets,
    "settlement_burst": scenario_settlement_burst,
    "sinks": scenario_sinks,
    "commit_path": scenario_commit_path,
}

__all__ = [
    "ODDS",
    "SCENARIOS",
    "BenchError",
    "Bets",
    "Ctx",
    "Plan",
    "Prices",
    "accepted_count",
    "bet",
    "check",
    "decode_field",
    "deposit",
    "measure_open",
    "preload",
    "price_update",
    "reps_summary",
    "result",
    "scenario_baseline",
    "scenario_bets",
    "scenario_commit_path",
    "scenario_prices",
    "scenario_settlement_burst",
    "scenario_sinks",
    "start_worker",
    "summarize",
    "tname",
]
