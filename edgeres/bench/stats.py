"""Latency statistics from raw timings: floats only, no formatting (that is ``report.py``'s job).

Percentiles use numpy's default ``method="linear"`` (type 7 of Hyndman & Fan 1996, the one R,
NumPy and pandas default to): the p-th percentile of sorted samples ``x[0..n-1]`` is the
linear interpolation at position ``(n - 1) * p / 100``. The standard deviation is the sample
one (``ddof=1``, as pytest-benchmark's ``stddev``) and 0.0 for a single sample. Throughput is
``batch / mean``: total images over total time of back-to-back calls, which is what a
saturated serving loop sustains (``batch / p50`` would describe the typical call instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["LatencyStats"]

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
        return cls(
            count=int(x.size), batch=int(batch), mean_ms=mean,
            std_ms=float(ms.std(ddof=1)) if x.size > 1 else 0.0,
            min_ms=float(ms.min()), max_ms=float(ms.max()),
            p50_ms=p50, p90_ms=p90, p99_ms=p99,
            throughput_ips=batch / (mean / _MS) if mean > 0 else float("inf"),
            rounds=len(medians), round_medians_ms=medians,
            round_median_min_ms=lo, round_median_max_ms=hi,
            round_spread=(hi - lo) / p50 if p50 > 0 else 0.0,
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
