"""oddsflow.domain: the rules that decide money, as pure code.

No Kafka, Faust or database imports: only the standard library. Money is integer minor units
(2 decimals for every currency); the one rounding rule (exact, then floor to the minor unit) is
``money.payout_minor``. Streaming agents and sinks only call this package.
"""

from oddsflow.domain.contract import price_json, read_results, settle_lines
from oddsflow.domain.errors import (
    DomainError,
    LedgerError,
    MarketError,
    MoneyError,
    OddsError,
    ResultError,
)
from oddsflow.domain.markets import (
    Leg,
    MarketType,
    Period,
    market_id,
    parse_leg,
    selections,
)
from oddsflow.domain.money import (
    MINOR_PER_UNIT,
    format_minor,
    from_minor,
    payout_minor,
    to_minor,
)
from oddsflow.domain.odds import (
    decimal_to_american,
    decimal_to_fractional,
    parse_odds,
    validate_decimal_odds,
)
from oddsflow.domain.pricing import (
    Ladder,
    Method,
    PricedOdds,
    apply_margin,
    fair_probabilities,
    overround,
    price,
)
from oddsflow.domain.settlement import (
    BetSettlement,
    EventStatus,
    LegSettlement,
    Outcome,
    Result,
    combine,
    merge_results,
    parse_result,
    resettlement_delta,
    settle_bet,
    settle_leg,
)

__all__ = [
    "MINOR_PER_UNIT",
    "BetSettlement",
    "DomainError",
    "EventStatus",
    "Ladder",
    "LedgerError",
    "Leg",
    "LegSettlement",
    "MarketError",
    "MarketType",
    "Method",
    "MoneyError",
    "OddsError",
    "Outcome",
    "Period",
    "PricedOdds",
    "Result",
    "ResultError",
    "apply_margin",
    "combine",
    "decimal_to_american",
    "decimal_to_fractional",
    "fair_probabilities",
    "format_minor",
    "from_minor",
    "market_id",
    "merge_results",
    "overround",
    "parse_leg",
    "parse_odds",
    "parse_result",
    "payout_minor",
    "price",
    "price_json",
    "read_results",
    "resettlement_delta",
    "selections",
    "settle_bet",
    "settle_leg",
    "settle_lines",
    "to_minor",
    "validate_decimal_odds",
]
