"""The pricing module as it was before its speed-up (Fraction overround, plain Decimal
bisection): kept verbatim as the reference the faster one must equal, result for result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from enum import StrEnum
from fractions import Fraction

from oddsflow.domain.errors import OddsError
from oddsflow.domain.odds import validate_decimal_odds


class Method(StrEnum):
    PROPORTIONAL = "proportional"
    ADDITIVE = "additive"
    POWER = "power"
    SHIN = "shin"


_WORK_PREC = 40
_WIDTH = Decimal("1e-16")  # bisection stops when the bracket is this narrow
_MAX_STEPS = 200
_SUM_TOLERANCE = Decimal("1e-9")  # fair probabilities given by a caller must sum to 1 within this


def _method(method: Method | str) -> Method:
    try:
        return Method(method)
    except ValueError:
        names = ", ".join(m.value for m in Method)
        raise OddsError(f"unknown pricing method {method!r} (expected one of {names})") from None


def _check_odds(odds: Sequence[Decimal]) -> tuple[Decimal, ...]:
    if len(odds) < 2:
        raise OddsError(f"a market needs at least 2 prices, got {len(odds)}")
    return tuple(validate_decimal_odds(o) for o in odds)


def _check_margin(margin: Decimal) -> Decimal:
    if isinstance(margin, bool) or not isinstance(margin, Decimal) or not margin.is_finite():
        raise OddsError(f"margin must be a finite Decimal, got {margin!r}")
    if margin <= -1:
        raise OddsError(f"margin must be > -1, got {margin}")
    return margin


def _check_probs(fair_probs: Sequence[Decimal]) -> tuple[Decimal, ...]:
    if len(fair_probs) < 2:
        raise OddsError(f"a market needs at least 2 probabilities, got {len(fair_probs)}")
    for p in fair_probs:
        if not isinstance(p, Decimal) or not p.is_finite() or not 0 < p < 1:
            raise OddsError(f"probabilities must be Decimals in (0, 1), got {p!r}")
    if abs(sum(fair_probs, Decimal(0)) - 1) > _SUM_TOLERANCE:
        raise OddsError(f"fair probabilities must sum to 1, got {sum(fair_probs, Decimal(0))}")
    return tuple(fair_probs)


def overround(odds: Sequence[Decimal]) -> Decimal:
    """``sum(1 / o) - 1``: 0 for a fair book, 0.05 for a 5% margin.

    Summed exactly as fractions and rounded once (to the context's 28 digits): rounding is
    monotone, so an overround that is truly >= a target margin is never reported below it.
    """
    exact = sum((1 / Fraction(validate_decimal_odds(o)) for o in odds), Fraction(0)) - 1
    return Decimal(exact.numerator) / Decimal(exact.denominator)


def _bisect(g: Callable[[Decimal], Decimal], lo: Decimal, hi: Decimal) -> Decimal:
    """Root of a decreasing ``g`` with ``g(lo) >= 0 >= g(hi)``, to a bracket of ``_WIDTH``."""
    for _ in range(_MAX_STEPS):
        if hi - lo <= _WIDTH:
            break
        mid = (lo + hi) / 2
        if g(mid) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _rescale(values: Sequence[Decimal], total: Decimal) -> tuple[Decimal, ...]:
    """Scale ``values`` so they sum to ``total`` (removes the bisection's tiny residual)."""
    s = sum(values, Decimal(0))
    return tuple(v * total / s for v in values)


def _power_sum(base: Sequence[Decimal], target: Decimal) -> Callable[[Decimal], Decimal]:
    logs = [b.ln() for b in base]
    return lambda k: sum(((k * lg).exp() for lg in logs), Decimal(0)) - target


def _solve_exponent(base: Sequence[Decimal], target: Decimal) -> Decimal:
    """``k > 0`` with ``sum(b ** k) == target``, for bases in (0, 1) and 0 < target < n."""
    g = _power_sum(base, target)
    lo, hi = Decimal(1), Decimal(1)
    # sum(b ** k) falls from n (k -> 0) to 0 (k -> inf): widen the bracket around k = 1.
    while g(lo) < 0:
        lo /= 2
    while g(hi) > 0:
        hi *= 2
    return _bisect(g, lo, hi)


def _shin_fair(implied: Sequence[Decimal], booksum: Decimal, z: Decimal) -> list[Decimal]:
    return [((z * z + 4 * (1 - z) * p * p / booksum).sqrt() - z) / (2 * (1 - z)) for p in implied]


def _shin_implied(fair: Sequence[Decimal], z: Decimal) -> list[Decimal]:
    s = [(z * f + (1 - z) * f * f).sqrt() for f in fair]
    total = sum(s, Decimal(0))
    return [x * total for x in s]


def fair_probabilities(
    odds: Sequence[Decimal], method: Method | str = Method.PROPORTIONAL
) -> tuple[Decimal, ...]:
    """Fair probabilities (summing to 1, same order as ``odds``) with ``method`` removed."""
    method = _method(method)
    checked = _check_odds(odds)
    n = len(checked)
    with localcontext() as ctx:
        ctx.prec = _WORK_PREC
        implied = [1 / o for o in checked]
        booksum = sum(implied, Decimal(0))
        if method is Method.ADDITIVE:
            fair = [p - (booksum - 1) / n for p in implied]
            if min(fair) <= 0:
                raise OddsError("additive removal gives a probability <= 0; use another method")
        elif method is Method.POWER and booksum != 1:
            k = _solve_exponent(implied, Decimal(1))
            fair = [(k * p.ln()).exp() for p in implied]
        elif method is Method.SHIN and booksum > 1:
            z = _bisect(
                lambda z: sum(_shin_fair(implied, booksum, z), Decimal(0)) - 1,
                Decimal(0),
                Decimal("0.999999"),
            )
            fair = _shin_fair(implied, booksum, z)
        else:
            fair = implied
        result = _rescale(fair, Decimal(1))
    return tuple(+p for p in result)  # unary plus rounds to the caller's 28-digit context


def apply_margin(
    fair_probs: Sequence[Decimal], margin: Decimal, method: Method | str = Method.PROPORTIONAL
) -> tuple[Decimal, ...]:
    """Odds whose overround is ``margin``, applying the inverse of ``method`` to ``fair_probs``.

    The odds are not yet on a ladder (see :func:`price`); an extreme margin can push a longshot's
    implied probability to >= 1, which is returned as odds <= 1 for ``price`` to clamp.
    """
    method = _method(method)
    fair = _check_probs(fair_probs)
    margin = _check_margin(margin)
    n = len(fair)
    target = 1 + margin
    with localcontext() as ctx:
        ctx.prec = _WORK_PREC
        if margin == 0:
            implied = list(fair)
        elif method is Method.ADDITIVE:
            implied = [f + margin / n for f in fair]
            if min(implied) <= 0:
                raise OddsError("additive margin gives a probability <= 0; use another method")
        elif method is Method.POWER:
            if target >= n:
                raise OddsError(f"power method cannot reach a booksum of {target} with {n} prices")
            c = _solve_exponent(fair, target)
            implied = [(c * f.ln()).exp() for f in fair]
        elif method is Method.SHIN:
            if margin < 0:
                raise OddsError("Shin method cannot apply a negative margin")
            ceiling = sum((f.sqrt() for f in fair), Decimal(0)) ** 2
            if target >= ceiling:
                raise OddsError(f"Shin method cannot reach a booksum of {target} (max {ceiling})")
            z = _bisect(
                lambda z: target - sum(_shin_implied(fair, z), Decimal(0)),
                Decimal(0),
                Decimal(1),
            )
            implied = _shin_implied(fair, z)
        else:
            implied = [f * target for f in fair]
        implied_exact = _rescale(implied, target)
        odds = [1 / p for p in implied_exact]
    return tuple(+o for o in odds)


def _default_bands() -> tuple[tuple[Decimal, Decimal], ...]:
    return ((Decimal(1000), Decimal("0.01")),)


@dataclass(frozen=True)
class Ladder:
    """A price ladder: ``bands`` of (upper bound, tick) from 1 upward, and the minimum tick.

    The default is every 0.01 from 1.01 to 1000 (2 dp). :meth:`betfair` gives the exchange ladder.
    """

    bands: tuple[tuple[Decimal, Decimal], ...] = field(default_factory=_default_bands)
    minimum: Decimal = Decimal("1.01")

    def __post_init__(self) -> None:
        if not self.bands:
            raise OddsError("a ladder needs at least one band")
        lower = Decimal(1)
        for upper, tick in self.bands:
            if not tick > 0 or not upper > lower or (upper - lower) % tick != 0:
                raise OddsError(f"bad ladder band ({upper}, {tick}) after {lower}")
            lower = upper
        if not 1 < self.minimum < self.maximum or self._snap(self.minimum) != self.minimum:
            raise OddsError(f"ladder minimum must be a tick > 1, got {self.minimum}")

    @property
    def maximum(self) -> Decimal:
        return self.bands[-1][0]

    def _snap(self, odds: Decimal) -> Decimal:
        """The highest tick <= ``odds`` (no minimum clamp), the top for ``odds`` above it."""
        lower = Decimal(1)
        for upper, tick in self.bands:
            if odds < upper:
                return lower + ((odds - lower) // tick) * tick
            lower = upper
        return self.maximum

    def round_down(self, odds: Decimal) -> Decimal:
        """The highest tick <= ``odds``; below the minimum, the minimum; above the top, the top."""
        return self.minimum if odds <= self.minimum else self._snap(odds)

    def is_tick(self, odds: Decimal) -> bool:
        return odds >= self.minimum and self.round_down(odds) == odds

    @classmethod
    def betfair(cls) -> Ladder:
        """The Betfair exchange ladder (1.01 .. 1000)."""
        d = Decimal
        return cls(
            bands=(
                (d(2), d("0.01")),
                (d(3), d("0.02")),
                (d(4), d("0.05")),
                (d(6), d("0.1")),
                (d(10), d("0.2")),
                (d(20), d("0.5")),
                (d(30), d(1)),
                (d(50), d(2)),
                (d(100), d(5)),
                (d(1000), d(10)),
            )
        )


@dataclass(frozen=True)
class PricedOdds:
    fair_probabilities: tuple[Decimal, ...]
    odds: tuple[Decimal, ...]
    overround: Decimal


def price(
    provider_odds: Sequence[Decimal],
    margin: Decimal,
    method: Method | str = Method.PROPORTIONAL,
    ladder: Ladder | None = None,
) -> PricedOdds:
    """Fair probabilities from ``provider_odds``, the book's ``margin`` applied with the same
    ``method``, odds rounded down to ``ladder`` (default 2 dp)."""
    ladder = Ladder() if ladder is None else ladder
    fair = fair_probabilities(provider_odds, method)
    raw = apply_margin(fair, margin, method)
    odds = tuple(ladder.round_down(o) for o in raw)
    booked = overround(odds)
    if booked < margin:
        # Rounding down only raises the overround; the clamp of a price below the ladder's
        # minimum up to it lowers it, and with extreme provider odds (1.0001 / 1e6 / 1e6) the
        # published book would sum below 1 + margin (even below 1: backing every selection
        # would beat the book). Such a market is refused, never published.
        raise OddsError(
            f"priced book's overround {booked:.6f} is below the margin {margin} after snapping "
            f"to the ladder ({ladder.minimum} .. {ladder.maximum}); market refused"
        )
    return PricedOdds(fair, odds, booked)
