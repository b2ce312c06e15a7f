"""The stable command-line contract of issue 3 (the CLI only wires these to typer).

``oddsflow settle --bets BETS.jsonl --results RESULTS.jsonl`` -> :func:`settle_lines`
``oddsflow price --method shin --margin 0.05 --odds 2.10 3.40 3.60`` -> :func:`price_json`

Bet line:    {"bet_id": "b1", "stake": "10.00", "legs": [{"event_id": "e1",
              "market": "asian_handicap", "line": "-0.25", "period": "FT",
              "selection": "home", "odds": "1.90"}]}
Result line: {"event_id": "e1", "period": "FT", "home": 2, "away": 1}
             {"event_id": "e1", "status": "abandoned"}
Output line: {"bet_id": "b1", "outcome": "half_lose", "return": "5.00"}
             {"bet_id": "b1", "error": "<reason>"}   (bet_id null when it cannot be read)

Stake, odds and line are decimal strings; a bare JSON number is read exactly (never via float)
and accepted too. Blank lines are skipped in both files.

Bad result lines: the stdout contract is one line per *bet* line, so a result line that cannot
be read produces no stdout line. It is skipped and reported in the optional ``result_errors``
list as ``{"line": <1-based line number>, "error": "<reason>"}`` for the CLI to print on stderr;
a bet that needed that event then fails with "no result for event ...".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

from oddsflow.domain.errors import DomainError, MoneyError, OddsError
from oddsflow.domain.markets import parse_leg
from oddsflow.domain.money import format_minor, to_minor
from oddsflow.domain.odds import parse_odds
from oddsflow.domain.pricing import Method, overround, price
from oddsflow.domain.settlement import Result, merge_results, parse_result, settle_bet

PROBABILITY_PLACES = 12
"""Places of probabilities and overrounds in ``price_json`` (the solvers' accuracy)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _loads(line: str) -> Any:
    """JSON with exact numbers: floats as Decimal, NaN/Infinity refused."""
    return json.loads(line, parse_float=Decimal, parse_constant=_reject_constant)


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _stake_minor(raw: object) -> int:
    if isinstance(raw, str | Decimal | int) and not isinstance(raw, bool):
        stake = to_minor(raw)
    else:
        raise MoneyError(f"stake must be a decimal string, got {raw!r}")
    if stake <= 0:
        raise MoneyError(f"stake must be positive, got {raw}")
    return stake


def _settle_one(line: str, results: dict[str, Result]) -> str:
    try:
        bet = _loads(line)
    except ValueError as exc:
        return _dumps({"bet_id": None, "error": f"bad JSON: {exc}"})
    if not isinstance(bet, dict):
        return _dumps({"bet_id": None, "error": "a bet line must be a JSON object"})
    bet_id = bet.get("bet_id")
    if not isinstance(bet_id, str) or not bet_id:
        return _dumps({"bet_id": None, "error": "bet_id must be a non-empty string"})
    try:
        stake_minor = _stake_minor(bet.get("stake"))
        raw_legs = bet.get("legs")
        if not isinstance(raw_legs, list) or not raw_legs:
            raise DomainError("legs must be a non-empty list")
        legs = [parse_leg(leg) for leg in raw_legs]
        settled = settle_bet(stake_minor, legs, results)
    except DomainError as exc:
        return _dumps({"bet_id": bet_id, "error": str(exc)})
    return _dumps(
        {
            "bet_id": bet_id,
            "outcome": settled.outcome.value,
            "return": format_minor(settled.return_minor),
        }
    )


def read_results(
    result_lines: Iterable[str], result_errors: list[dict[str, Any]] | None = None
) -> dict[str, Result]:
    """Parse and merge result lines; unreadable ones go to ``result_errors`` (see module)."""
    parsed: list[Result] = []
    for number, line in enumerate(result_lines, start=1):
        if not line.strip():
            continue
        try:
            parsed.append(parse_result(_loads(line)))
        except ValueError as exc:  # DomainError and json errors are both ValueErrors
            if result_errors is not None:
                result_errors.append({"line": number, "error": str(exc)})
    return merge_results(parsed)


def settle_lines(
    bet_lines: Iterable[str],
    result_lines: Iterable[str],
    result_errors: list[dict[str, Any]] | None = None,
) -> Iterator[str]:
    """One JSON output line per non-blank bet line, in input order.

    Results are read completely before this returns (so ``result_errors`` is filled at once);
    bets are read lazily, one line at a time.
    """
    results = read_results(result_lines, result_errors)
    return (_settle_one(line, results) for line in bet_lines if line.strip())


def _decimal_text(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except ArithmeticError:
        raise OddsError(f"{what} is not a decimal: {text!r}") from None
    if not value.is_finite():
        raise OddsError(f"{what} is not finite: {text!r}")
    return value


def _prob_text(d: Decimal) -> str:
    return str(d.quantize(Decimal(1).scaleb(-PROBABILITY_PLACES)))


def price_json(method: str, margin: str, odds: Sequence[str]) -> dict[str, Any]:
    """The ``oddsflow price`` output: fair probabilities, priced odds (2 dp ladder), overround.

    Odds may be decimal, fractional or American text. Probabilities and overrounds are rounded
    half-even to ``PROBABILITY_PLACES`` for display; odds are ladder ticks.
    """
    provider = [parse_odds(o) for o in odds]
    m = _decimal_text(margin, "margin")
    priced = price(provider, m, method)
    return {
        "method": Method(method).value,
        "margin": str(m),
        "provider_overround": _prob_text(overround(provider)),
        "fair_probabilities": [_prob_text(p) for p in priced.fair_probabilities],
        "odds": [str(o) for o in priced.odds],
        "overround": _prob_text(priced.overround),
    }
