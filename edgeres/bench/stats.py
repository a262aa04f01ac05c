"""Latency statistics from raw timings: floats only, no formatting (that is ``report.py``'s job).

Percentiles use numpy's default ``method="linear"`` (type 7 of Hyndman & Fan 1996, the one R,
NumPy and pandas default to): the p-th percentile of sorted samples ``x[0..n-1]`` is the
linear interpolation at position ``(n - 1) * p / 100``. The standard deviation is the sample
one (``ddof=1``, as pytest-benchmark's ``stddev``) and 0.0 for a single sample. Throughput is
``batch / mean``: total images over total time of back-to-back calls, which is what a
saturated serving loop sustains (``batch / p50`` would describe the typical call instead).

Uncertainty: the p50's 95% interval is distribution-free, from the order statistics of the
per-call samples (``edgeres.intervals.median_interval``). A speedup compares two rows round by
round: rows timed in the same interleaved rounds are paired, and the interval is Student's t
on the logs of the per-round ratios of medians (log, because a ratio's error is multiplicative;
per round, because the rounds are the independent units — calls within a round share the
machine's state). Rows of different files (timed in different rounds) get Welch's unpaired
interval on the logs of their round medians. With few rounds t is wide, as it should be.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeres.intervals import LEVEL, median_interval

__all__ = ["LatencyStats", "Speedup", "speedup"]

_MS = 1e3


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one configuration's per-call latencies, in milliseconds.

    Attributes:
        count: timed calls.
        batch: images per call.
        mean_ms, std_ms, min_ms, max_ms: over all calls (``std_ms`` with ``ddof=1``).
        p50_ms, p90_ms, p99_ms: percentiles, numpy ``method="linear"``.
        throughput_ips: images per second, ``batch / mean``.
        rounds: rounds the samples came from.
        round_medians_ms: the median of each round, in round order.
        round_median_min_ms, round_median_max_ms: extremes of ``round_medians_ms``.
        round_spread: ``(max - min) / median`` of the round medians: how far the rounds
            disagree (0.02 = 2%); large values mean the machine was not quiet.
        p50_low_ms, p50_high_ms: 95% interval of the p50 from the order statistics of the
            calls; None with fewer than 6 calls (or in results written before they existed).
    """

    count: int
    batch: int
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput_ips: float
    rounds: int
    round_medians_ms: tuple[float, ...]
    round_median_min_ms: float
    round_median_max_ms: float
    round_spread: float
    p50_low_ms: float | None = None
    p50_high_ms: float | None = None

    @classmethod
    def from_samples(
        cls, samples: Sequence[float], *, rounds: Sequence[int] | None = None, batch: int = 1
    ) -> LatencyStats:
        """Summarise raw per-call seconds.

        Args:
            samples: seconds per call (``Timings[name]``).
            rounds: the round of each sample (``Timings.round_index[name]``); all one round
                when None.
            batch: images per call, for throughput.

        Returns:
            The statistics in milliseconds (throughput in images per second).

        Raises:
            ValueError: if there are no samples, a sample is negative or not finite, or
                ``rounds`` does not have one entry per sample.
        """
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 1 or x.size == 0 or not np.isfinite(x).all() or (x < 0).any():
            msg = f"need at least one finite, non-negative sample, got {x.size} samples"
            raise ValueError(msg)
        if batch < 1:
            msg = f"batch must be >= 1, got {batch}"
            raise ValueError(msg)
        idx = np.zeros(x.size, dtype=np.int64) if rounds is None else np.asarray(rounds)
        if idx.shape != x.shape:
            msg = f"rounds has {idx.size} entries for {x.size} samples; give one per sample"
            raise ValueError(msg)
        ms = x * _MS
        p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99], method="linear"))
        medians = tuple(float(np.median(ms[idx == r])) for r in np.unique(idx))
        lo, hi = min(medians), max(medians)
        mean = float(ms.mean())
        ci = median_interval(ms, LEVEL)
        return cls(
            count=int(x.size), batch=int(batch), mean_ms=mean,
            std_ms=float(ms.std(ddof=1)) if x.size > 1 else 0.0,
            min_ms=float(ms.min()), max_ms=float(ms.max()),
            p50_ms=p50, p90_ms=p90, p99_ms=p99,
            throughput_ips=batch / (mean / _MS) if mean > 0 else float("inf"),
            rounds=len(medians), round_medians_ms=medians,
            round_median_min_ms=lo, round_median_max_ms=hi,
            round_spread=(hi - lo) / p50 if p50 > 0 else 0.0,
            p50_low_ms=None if ci is None else ci[0], p50_high_ms=None if ci is None else ci[1],
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (the round medians as a list)."""
        d = asdict(self)
        d["round_medians_ms"] = list(self.round_medians_ms)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatencyStats:
        """Inverse of ``to_dict``."""
        return cls(**{**d, "round_medians_ms": tuple(d["round_medians_ms"])})


# Two-sided 95% Student t quantiles t(0.975, df) for df = 1..30 (any statistics table);
# beyond 30 the Cornish-Fisher expansion below is within 0.001 of the exact value.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: float) -> float:
    """t(0.975, df), rounding a fractional (Welch) df down, which widens the interval."""
    k = int(df)
    if k < 1:
        msg = f"need at least 1 degree of freedom, got {df}"
        raise ValueError(msg)
    if k <= len(_T975):
        return _T975[k - 1]
    z = 1.959963984540054
    return z + (z**3 + z) / (4 * k) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * k * k)


@dataclass(frozen=True)
class Speedup:
    """How many times faster a candidate row is than a baseline row, with a 95% interval.

    Attributes:
        estimate: the geometric mean of the per-round ratios baseline / candidate (paired),
            or the ratio of the geometric means of the round medians (unpaired).
        low, high: the 95% interval; None with fewer than two rounds (per row, if unpaired).
        rounds: rounds used (pairs when paired).
        paired: True when both rows were timed in the same interleaved rounds.
    """

    estimate: float
    low: float | None
    high: float | None
    rounds: int
    paired: bool

    @property
    def verdict(self) -> str:
        """"faster" or "slower" when the interval excludes 1, else "no clear difference"."""
        if self.low is not None and self.low > 1:
            return "faster"
        if self.high is not None and self.high < 1:
            return "slower"
        return "no clear difference"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)


def speedup(baseline: Sequence[float], candidate: Sequence[float], *,
            paired: bool = True) -> Speedup:
    """Speedup of ``candidate`` over ``baseline`` from their per-round median latencies.

    Args:
        baseline, candidate: ``LatencyStats.round_medians_ms`` of the two rows.
        paired: the rows were timed in the same rounds (one ``measure`` call), so round i of
            one is compared with round i of the other; a row cut short by Ctrl-C pairs only
            the rounds both have.

    Returns:
        The speedup (> 1: the candidate is faster) and its 95% interval.

    Raises:
        ValueError: for an empty or non-positive latency.
    """
    b = np.asarray(baseline, dtype=np.float64)
    c = np.asarray(candidate, dtype=np.float64)
    if paired:
        n = min(b.size, c.size)
        b, c = b[:n], c[:n]
    if b.size == 0 or c.size == 0 or (b <= 0).any() or (c <= 0).any():
        msg = "need at least one positive round median for each row"
        raise ValueError(msg)
    lb, lc = np.log(b), np.log(c)
    if paired:
        d = lb - lc
        est, n = float(d.mean()), int(d.size)
        if n < 2:
            return Speedup(math.exp(est), None, None, n, True)
        half = t975(n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
        return Speedup(math.exp(est), math.exp(est - half), math.exp(est + half), n, True)
    est = float(lb.mean() - lc.mean())
    rounds = min(lb.size, lc.size)
    if rounds < 2:
        return Speedup(math.exp(est), None, None, rounds, False)
    vb, vc = float(lb.var(ddof=1)) / lb.size, float(lc.var(ddof=1)) / lc.size
    se = math.sqrt(vb + vc)
    if se == 0:
        return Speedup(math.exp(est), math.exp(est), math.exp(est), rounds, False)
    # Welch–Satterthwaite degrees of freedom.
    df = (vb + vc) ** 2 / (vb**2 / (lb.size - 1) + vc**2 / (lc.size - 1))
    half = t975(df) * se
    return Speedup(math.exp(est), math.exp(est - half), math.exp(est + half), rounds, False)
