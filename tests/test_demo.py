"""The main job end to end: `oddsflow demo` on the local services, with a small match day."""

from __future__ import annotations

import pytest

from oddsflow.demo import run_demo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_books_balance_across_engine_ledger_postgres_and_clickhouse(services):
    x = run_demo(
        services, fixtures=4, accounts=30, bets=300, workers=1, duration_s=15, timeout_s=300
    )
    assert x["bets_decided"] == x["bet_ids_sent"] >= 280  # every distinct bet id decided
    assert x["money_trails_incomplete"] == 0
    assert x["bets_accepted"] > 0 and x["bets_settled"] == x["bets_accepted"]
    assert x["ledger_unbalanced_tx"] == 0 and x["ledger_duplicate_tx"] == 0
    assert x["trial_balance_minor"] == 0
    assert x["book_result_minor"] == x["ledger_ggr_minor"]  # turnover - payouts == the GGR account
    assert x["postgres"]["ggr_minor"] == x["ledger_ggr_minor"]
    assert x["clickhouse_ggr_minor"] == x["ledger_ggr_minor"]
    assert x["wallets_not_matching_topic"] == 0 and x["wallets_not_matching_postgres"] == 0
    assert x["dead_letters"] >= 1
    assert x["ok"]
