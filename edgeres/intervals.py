"""Confidence intervals and tests for the numbers edgeres reports: floats in, floats out.

Neutral ground (stdlib + numpy) so that ``quantize`` and ``bench`` share one implementation
(CONTRIBUTING R4) without one importing the other. Every interval is two-sided at ``LEVEL``
(95%).

- ``median_interval``: distribution-free interval for a median from the order statistics,
  ranks from the Binomial(n, 1/2) distribution (Conover, *Practical Nonparametric Statistics*,
  3rd ed., §3.2; Hahn & Meeker 1991). Exact coverage ≥ ``level`` for independent samples.
- ``wilson``: the Wilson score interval for a proportion (Wilson 1927), which, unlike the
  Wald interval, neither collapses to a point at 0 or 100% nor leaves [0, 1].
- ``paired_drop``: the top-1 difference of two classifiers scored on the same images. Only
  the discordant images (right for one, wrong for the other) carry information; the interval
  is Newcombe's method 10 (Newcombe 1998, *Stat. Med.* 17:2635, "Improved confidence intervals
  for the difference between binomial proportions based on paired data"): Wilson limits of
  each marginal proportion, square-and-add, with the continuity-corrected φ correlation.
  The test is the exact (binomial) McNemar test on the discordant counts (McNemar 1947).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

__all__ = ["LEVEL", "PairedDrop", "budget_verdict", "mcnemar_exact", "median_interval",
           "paired_drop", "wilson", "z_value"]

LEVEL = 0.95


def z_value(level: float = LEVEL) -> float:
    """The two-sided standard-normal quantile: 1.959964 for 95%."""
    if not 0 < level < 1:
        msg = f"level must be in (0, 1), got {level}"
        raise ValueError(msg)
    return NormalDist().inv_cdf(0.5 + level / 2)


def _binom_half_cdf(n: int, k: int) -> float:
    """P(B <= k) for B ~ Binomial(n, 1/2), summed in log space (no overflow for large n)."""
    if k < 0:
        return 0.0
    log_half = n * math.log(0.5)
    lg = math.lgamma(n + 1)
    return min(1.0, sum(math.exp(lg - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half)
                        for i in range(min(k, n) + 1)))


def median_interval(samples: Any, level: float = LEVEL) -> tuple[float, float] | None:
    """Distribution-free interval for the median of ``samples`` from their order statistics.

    With sorted samples ``x(1) <= ... <= x(n)`` the interval is ``[x(l), x(n+1-l)]`` for the
    largest ``l`` with ``2 * P(B <= l - 1) <= 1 - level``, ``B ~ Binomial(n, 1/2)``. For n = 10
    at 95% that is ``[x(2), x(9)]`` (coverage 97.9%).

    Returns:
        ``(low, high)``, or None when no interval reaches ``level`` (n < 6 at 95%).
    """
    x = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    n = int(x.size)
    alpha = 1 - level
    if n == 0 or 2 * _binom_half_cdf(n, 0) > alpha:
        return None
    # Start from the normal approximation and walk to the exact rank.
    rank = max(1, int(math.floor(n / 2 - z_value(level) * math.sqrt(n) / 2)))
    while rank > 1 and 2 * _binom_half_cdf(n, rank - 1) > alpha:
        rank -= 1
    while rank + 1 <= (n + 1) // 2 and 2 * _binom_half_cdf(n, rank) <= alpha:
        rank += 1
    return float(x[rank - 1]), float(x[n - rank])


def wilson(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval for the proportion ``successes / n`` (as fractions, 0..1).

    Raises:
        ValueError: if ``n < 1`` or ``successes`` is outside ``0..n``.
    """
    if n < 1 or not 0 <= successes <= n:
        msg = f"need 0 <= successes <= n and n >= 1, got {successes} of {n}"
        raise ValueError(msg)
    z = z_value(level)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(lost: int, gained: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of ``lost`` vs ``gained`` at 1/2.

    ``p = min(1, 2 * P(B <= min(lost, gained)))`` with ``B ~ Binomial(lost + gained, 1/2)``,
    in exact integer arithmetic; 1.0 when there are no discordant pairs.
    """
    if lost < 0 or gained < 0:
        msg = f"discordant counts must be >= 0, got {lost} and {gained}"
        raise ValueError(msg)
    m = lost + gained
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, k) for k in range(min(lost, gained) + 1))
    return min(1.0, 2 * tail / 2**m)  # int / int is exact-then-rounded, even for huge m


@dataclass(frozen=True)
class PairedDrop:
    """Top-1 of a reference and a candidate on the same images, and the drop between them.

    Attributes:
        count: images scored by both.
        both, lost, gained, neither: images right for both; right for the reference only
            (lost by the candidate); right for the candidate only; wrong for both.
        drop: reference top-1 minus candidate top-1, in percentage points.
        low, high: the ``level`` interval of ``drop`` (Newcombe method 10), in points.
        p_value: exact McNemar p-value of "same accuracy".
        level: the interval's confidence level.
    """

    count: int
    both: int
    lost: int
    gained: int
    neither: int
    drop: float
    low: float
    high: float
    p_value: float
    level: float = LEVEL

    @property
    def noise(self) -> bool:
        """True when the interval holds 0: the data cannot tell the two apart."""
        return self.low <= 0 <= self.high

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)


def paired_drop(reference: Any, candidate: Any, level: float = LEVEL) -> PairedDrop:
    """Paired top-1 drop of ``candidate`` against ``reference`` from per-image correctness.

    Args:
        reference, candidate: booleans, one per image, the same images in the same order
            (``EvalReport.correct``).
        level: confidence level of the interval.

    Returns:
        The counts, the drop in points with its Newcombe interval, and the McNemar p-value.

    Raises:
        ValueError: if the two do not have the same, non-zero length.
    """
    a = np.asarray(reference, dtype=bool).ravel()
    b = np.asarray(candidate, dtype=bool).ravel()
    if a.size != b.size or a.size == 0:
        msg = f"need per-image results of the same images, got {a.size} and {b.size}"
        raise ValueError(msg)
    both, lost = int(np.sum(a & b)), int(np.sum(a & ~b))
    gained, neither = int(np.sum(~a & b)), int(np.sum(~a & ~b))
    low, high = _newcombe(both, lost, gained, neither, level)
    n = a.size
    return PairedDrop(count=n, both=both, lost=lost, gained=gained, neither=neither,
                      drop=100.0 * (lost - gained) / n, low=100.0 * low, high=100.0 * high,
                      p_value=mcnemar_exact(lost, gained), level=level)


def _newcombe(both: int, lost: int, gained: int, neither: int,
              level: float) -> tuple[float, float]:
    """Newcombe's (1998) method 10 interval for ``p1 - p2`` (fractions) of a paired 2x2 table.

    ``p1 = (both + lost) / n`` is the reference's accuracy, ``p2 = (both + gained) / n`` the
    candidate's; φ is continuity-corrected (0 when ``|AD - BC| <= n / 2`` with AD > BC).
    """
    n = both + lost + gained + neither
    p1, p2 = (both + lost) / n, (both + gained) / n
    l1, u1 = wilson(both + lost, n, level)
    l2, u2 = wilson(both + gained, n, level)
    margins = (both + lost) * (gained + neither) * (both + gained) * (lost + neither)
    cross = both * neither - lost * gained
    corrected = cross - n / 2 if cross > n / 2 else cross if cross < 0 else 0.0
    phi = corrected / math.sqrt(margins) if margins > 0 else 0.0
    d = p1 - p2
    lower = (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2
    upper = (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2
    return max(-1.0, d - math.sqrt(max(lower, 0.0))), min(1.0, d + math.sqrt(max(upper, 0.0)))


def budget_verdict(drop: float, high: float | None, budget: float) -> str:
    """Whether a top-1 drop (points) fits ``budget``, and how surely.

    Returns:
        "met with confidence" when the interval's upper bound ``high`` is within budget,
        "met on the point estimate only" when only ``drop`` is, else "not met".
    """
    if high is not None and high <= budget:
        return "met with confidence"
    return "met on the point estimate only" if drop <= budget else "not met"
