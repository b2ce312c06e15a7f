"""Pricing: remove a provider's overround, apply the book's margin, snap to a price ladder.

Terms. For decimal odds ``o_i`` the implied probabilities are ``pi_i = 1 / o_i``; their sum ``B``
is the *booksum* and ``B - 1`` the *overround* (the margin). Fair probabilities sum to 1.

Methods (each removal has an exact inverse used to apply a margin):

* proportional: ``f_i = pi_i / B``; apply: ``pi_i = f_i (1 + m)``.
* additive: ``f_i = pi_i - (B - 1) / n``; apply: ``pi_i = f_i + m / n``. A longshot can get a
  probability <= 0; that is an OddsError, not a silent clamp.
* power: ``f_i = pi_i ** k`` with ``k`` solved so the f sum to 1; apply: ``pi_i = f_i ** c`` with
  ``c`` solved so the pi sum to ``1 + m``.
* Shin (1993): ``pi_i = s_i * S`` with ``s_i = sqrt(z f_i + (1 - z) f_i^2)``, ``S = sum s_j``;
  removal solves the insider share ``z`` so the f sum to 1, apply solves ``z`` so the pi sum to
  ``1 + m``. With no overround (B <= 1) there is no insider margin to attribute, and removal
  reduces to proportional.

Power and Shin are solved by Decimal bisection (working precision 40 digits, parameter to
~1e-16), each step deciding by a float estimate of the sum where its error bound makes the sign
certain (so the same steps, at a fraction of the Decimal exp/sqrt cost); the result is then rescaled proportionally by the tiny residual so that fair
probabilities sum to 1 and an applied margin is hit to the last of 28 digits.

Ladder: priced odds are rounded DOWN to the ladder (default 2 dp, 1.01 to 1000). Rounding odds
down raises every implied probability, so the overround never falls below the target; the one
exception is the clamp of a price below the minimum tick UP to that tick (a price must stay > 1).
:func:`price` refuses (OddsError) a book whose snapped overround would fall below the margin.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from enum import StrEnum

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

    Summed exactly and rounded once (to the context's 28 digits): rounding is monotone, so an
    overround that is truly >= a target margin is never reported below it. The exact sum is
    kept as one integer ratio over the product of the odds' numerators (no Fraction objects:
    no gcd per addition); a Decimal division rounds the exact quotient, whatever the ratio's
    form, so the result is the one the reduced fraction gives.
    """
    num, den = 0, 1
    for o in odds:
        on, od = validate_decimal_odds(o).as_integer_ratio()  # 1 / o == od / on
        num, den = num * on + od * den, den * on
    return Decimal(num - den) / Decimal(den)


# A float estimate of ``g`` and a bound on its error: see :func:`_sign`.
_Fast = Callable[[float], float]
_FastBound = Callable[[float], float]


def _sign(
    g: Callable[[Decimal], Decimal], x: Decimal, fast: tuple[_Fast, _FastBound] | None
) -> int:
    """The sign of ``g(x)`` (-1, 0 or 1), from a float estimate wherever that is certain.

    Why: each step of a bisection only needs the sign of ``g``, and ``g`` at 40 digits costs a
    Decimal ``exp`` or ``sqrt`` per selection. A float estimate whose magnitude exceeds its
    error bound has the sign of the exact ``g`` (and of the 40-digit one, which is within
    ~1e-38 of it); only near the root, where the estimate is not decisive, is the Decimal
    ``g`` computed. So the bisection visits the same points and returns the same Decimal as it
    did with ``g`` alone: the results do not change, only their cost.
    """
    if fast is not None:
        estimate, bound = fast
        xf = float(x)
        try:
            f = estimate(xf)
        except (OverflowError, ValueError, ZeroDivisionError):
            f = math.nan
        margin = bound(xf)
        if f > margin:
            return 1
        if f < -margin:
            return -1
    d = g(x)
    return (d > 0) - (d < 0)


def _bisect(
    g: Callable[[Decimal], Decimal],
    lo: Decimal,
    hi: Decimal,
    fast: tuple[_Fast, _FastBound] | None = None,
) -> Decimal:
    """Root of a decreasing ``g`` with ``g(lo) >= 0 >= g(hi)``, to a bracket of ``_WIDTH``."""
    for _ in range(_MAX_STEPS):
        if hi - lo <= _WIDTH:
            break
        mid = (lo + hi) / 2
        if _sign(g, mid, fast) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _rescale(values: Sequence[Decimal], total: Decimal) -> tuple[Decimal, ...]:
    """Scale ``values`` so they sum to ``total`` (removes the bisection's tiny residual)."""
    s = sum(values, Decimal(0))
    return tuple(v * total / s for v in values)


def _power_sum(logs: Sequence[Decimal], target: Decimal) -> Callable[[Decimal], Decimal]:
    return lambda k: sum(((k * lg).exp() for lg in logs), Decimal(0)) - target


# Below this a float loses relative precision (subnormals) or squares to 0: no float estimate.
_FLOAT_MIN = 1e-150


def _floats(values: Sequence[Decimal]) -> list[float] | None:
    out = [float(v) for v in values]
    return out if all(_FLOAT_MIN <= abs(f) < 1e150 for f in out) else None


def _power_sum_fast(base: Sequence[Decimal], target: Decimal) -> tuple[_Fast, _FastBound] | None:
    """Float ``sum(b ** k) - target`` and its error bound.

    Each term ``exp(k ln b)`` is <= 1 (b in (0, 1), k > 0) with an absolute error below
    ``(k + 3) * 4e-16`` (float(b), log, the product and exp each within a few ulps, and
    ``t |ln t| <= 1/e``); the bound allows 25x that per term, plus the sum's rounding.
    """
    bf = _floats(base)
    if bf is None:
        return None
    logs = [math.log(b) for b in bf]
    tf = float(target)
    n = len(logs)

    def estimate(k: float) -> float:
        return math.fsum([math.exp(k * lg) for lg in logs]) - tf

    def bound(k: float) -> float:
        return n * (abs(k) + 4) * 1e-14

    return estimate, bound


def _power(base: Sequence[Decimal], target: Decimal) -> list[Decimal]:
    """``b ** k`` for each base, with ``k`` solved so they sum to ``target``.

    The logs are taken once, for the solve and for the powers (a 40-digit ln costs ~3 exps).
    """
    logs = [b.ln() for b in base]
    k = _solve_exponent(base, logs, target)
    return [(k * lg).exp() for lg in logs]


def _solve_exponent(base: Sequence[Decimal], logs: Sequence[Decimal], target: Decimal) -> Decimal:
    """``k > 0`` with ``sum(b ** k) == target``, for bases in (0, 1) and 0 < target < n."""
    g = _power_sum(logs, target)
    fast = _power_sum_fast(base, target)
    lo, hi = Decimal(1), Decimal(1)
    # sum(b ** k) falls from n (k -> 0) to 0 (k -> inf): widen the bracket around k = 1.
    while _sign(g, lo, fast) < 0:
        lo /= 2
    while _sign(g, hi, fast) > 0:
        hi *= 2
    return _bisect(g, lo, hi, fast)


def _shin_fair(implied: Sequence[Decimal], booksum: Decimal, z: Decimal) -> list[Decimal]:
    return [((z * z + 4 * (1 - z) * p * p / booksum).sqrt() - z) / (2 * (1 - z)) for p in implied]


def _shin_implied(fair: Sequence[Decimal], z: Decimal) -> list[Decimal]:
    s = [(z * f + (1 - z) * f * f).sqrt() for f in fair]
    total = sum(s, Decimal(0))
    return [x * total for x in s]


def _shin_fair_fast(
    implied: Sequence[Decimal], booksum: Decimal
) -> tuple[_Fast, _FastBound] | None:
    """Float ``sum(shin fair) - 1`` and its error bound.

    Each fair value is ``(sqrt(q) - z) / (2 (1 - z))`` with ``q <= 5``: the numerator is within
    ~3e-15 and the division by ``2 (1 - z)`` scales that by ``1 / (2 (1 - z))``; the bound allows
    ~30x that per selection.
    """
    pf = _floats(implied)
    if pf is None:
        return None
    bf = float(booksum)
    n = len(pf)

    def estimate(z: float) -> float:
        w = 1 - z
        return math.fsum([(math.sqrt(z * z + 4 * w * p * p / bf) - z) / (2 * w) for p in pf]) - 1

    def bound(z: float) -> float:
        return n * 1e-13 / (1 - z)

    return estimate, bound


def _shin_implied_fast(fair: Sequence[Decimal], target: Decimal) -> tuple[_Fast, _FastBound] | None:
    """Float ``target - sum(shin implied)`` (which is ``target - (sum s)**2``) and its bound.

    Each ``s = sqrt(z f + (1 - z) f**2) <= 1`` is within a few ulps, so ``(sum s)**2 <= n**2``
    is within ``n**2 * 1e-15``; the bound allows 100x that.
    """
    ff = _floats(fair)
    if ff is None:
        return None
    tf = float(target)
    n = len(ff)

    def estimate(z: float) -> float:
        total = math.fsum([math.sqrt(z * f + (1 - z) * f * f) for f in ff])
        return tf - total * total

    def bound(z: float) -> float:
        return n * n * 1e-13

    return estimate, bound


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
            fair = _power(implied, Decimal(1))
        elif method is Method.SHIN and booksum > 1:
            z = _bisect(
                lambda z: sum(_shin_fair(implied, booksum, z), Decimal(0)) - 1,
                Decimal(0),
                Decimal("0.999999"),
                _shin_fair_fast(implied, booksum),
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
            implied = _power(fair, target)
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
                _shin_implied_fast(fair, target),
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
