"""Tests for edgeres.bench.stats: every statistic against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeres.bench.stats import LatencyStats, speedup, t975


def test_known_samples() -> None:
    """Five samples 1..5 ms: mean 3, sample std sqrt(2.5), linear percentiles by hand."""
    s = LatencyStats.from_samples([0.003, 0.001, 0.005, 0.002, 0.004])
    assert s.count == 5
    assert s.mean_ms == pytest.approx(3.0)
    assert s.std_ms == pytest.approx(math.sqrt(2.5))
    assert (s.min_ms, s.max_ms) == (pytest.approx(1.0), pytest.approx(5.0))
    # linear: position (n-1)p = 4p in the sorted samples 1,2,3,4,5
    assert s.p50_ms == pytest.approx(3.0)
    assert s.p90_ms == pytest.approx(4.6)   # 1 + 3.6 -> between 4 and 5 at 0.6
    assert s.p99_ms == pytest.approx(4.96)  # 3.96 -> between 4 and 5 at 0.96
    assert s.throughput_ips == pytest.approx(1 / 0.003)


def test_even_count_median_interpolates() -> None:
    """With four samples the median is halfway between the middle two."""
    s = LatencyStats.from_samples([0.001, 0.002, 0.004, 0.010])
    assert s.p50_ms == pytest.approx(3.0)
    assert s.p90_ms == pytest.approx(4 + 0.7 * 6)  # position 2.7


def test_one_sample() -> None:
    """One sample: every percentile is it, std is 0, one round with zero spread."""
    s = LatencyStats.from_samples([0.0025], batch=8)
    assert s.p50_ms == s.p90_ms == s.p99_ms == s.min_ms == s.max_ms == pytest.approx(2.5)
    assert s.std_ms == 0.0
    assert s.rounds == 1 and s.round_spread == 0.0
    assert s.throughput_ips == pytest.approx(8 / 0.0025)


def test_all_equal() -> None:
    """Identical samples: std 0, percentiles equal, spread 0 across rounds."""
    s = LatencyStats.from_samples([0.002] * 6, rounds=[0, 0, 1, 1, 2, 2])
    assert s.std_ms == pytest.approx(0.0, abs=1e-12)
    assert s.p50_ms == s.p99_ms == pytest.approx(2.0)
    assert s.round_medians_ms == pytest.approx((2.0, 2.0, 2.0))
    assert s.round_spread == pytest.approx(0.0)


def test_round_medians_and_spread() -> None:
    """Per-round medians in round order; spread = (max - min) / overall p50."""
    samples = [0.001, 0.003, 0.002, 0.010, 0.012, 0.011]
    s = LatencyStats.from_samples(samples, rounds=[0, 0, 0, 1, 1, 1])
    assert s.round_medians_ms == pytest.approx((2.0, 11.0))
    assert (s.round_median_min_ms, s.round_median_max_ms) == (pytest.approx(2.0),
                                                              pytest.approx(11.0))
    assert s.p50_ms == pytest.approx(6.5)
    assert s.round_spread == pytest.approx(9.0 / 6.5)


def test_throughput_is_batch_over_mean() -> None:
    """img/s = batch / mean latency, not batch / p50."""
    s = LatencyStats.from_samples([0.001, 0.001, 0.004], batch=4)
    assert s.throughput_ips == pytest.approx(4 / 0.002)


def test_dict_round_trip() -> None:
    """to_dict/from_dict are inverses and give plain JSON types."""
    s = LatencyStats.from_samples([0.001, 0.002], rounds=[0, 1])
    d = s.to_dict()
    assert isinstance(d["round_medians_ms"], list)
    assert LatencyStats.from_dict(d) == s


@pytest.mark.parametrize(("samples", "kwargs"), [
    ([], {}), ([-0.001], {}), ([float("nan")], {}), ([0.001, 0.002], {"rounds": [0]}),
    ([0.001], {"batch": 0}),
])
def test_bad_samples_raise(samples: list[float], kwargs: dict) -> None:
    """No samples, negative or NaN samples, mismatched rounds or batch 0 are a ValueError."""
    with pytest.raises(ValueError):
        LatencyStats.from_samples(samples, **kwargs)


def test_p50_interval_from_order_statistics() -> None:
    """Ten calls 1..10 ms: the 95% interval of the median is [x(2), x(9)] = [2, 9] ms."""
    s = LatencyStats.from_samples([t / 1e3 for t in (7, 1, 3, 10, 5, 2, 9, 4, 8, 6)])
    assert (s.p50_low_ms, s.p50_high_ms) == (pytest.approx(2.0), pytest.approx(9.0))


def test_p50_interval_needs_six_calls() -> None:
    """Five calls cannot give a 95% distribution-free interval: None, and JSON keeps it None."""
    s = LatencyStats.from_samples([0.001] * 5)
    assert s.p50_low_ms is None and s.p50_high_ms is None
    assert LatencyStats.from_dict(s.to_dict()) == s


def test_old_results_without_interval_still_load() -> None:
    """A results file written before the interval existed loads with None for it."""
    d = LatencyStats.from_samples([0.001, 0.002]).to_dict()
    del d["p50_low_ms"], d["p50_high_ms"]
    assert LatencyStats.from_dict(d).p50_low_ms is None


def test_paired_speedup_constant_ratio() -> None:
    """Every round exactly 2x: speedup 2 with a zero-width interval, "faster"."""
    s = speedup([2.0, 4.0, 3.0], [1.0, 2.0, 1.5])
    assert (s.estimate, s.low, s.high) == (pytest.approx(2.0),) * 3
    assert s.paired and s.rounds == 3 and s.verdict == "faster"


def test_paired_speedup_hand_t_interval() -> None:
    """Log ratios 0 and 0.2: mean 0.1, sd 0.1414, t(.975, 1) = 12.706, half 1.2706."""
    s = speedup([1.0, math.exp(0.2)], [1.0, 1.0])
    assert s.estimate == pytest.approx(math.exp(0.1))
    assert s.low == pytest.approx(math.exp(0.1 - 1.2706), rel=1e-4)
    assert s.high == pytest.approx(math.exp(0.1 + 1.2706), rel=1e-4)
    assert s.verdict == "no clear difference"


def test_unpaired_speedup_hand_welch() -> None:
    """Log medians (.2, .4) vs (0, .2): diff .2, se sqrt(.01 + .01), Welch df 2, t 4.303."""
    s = speedup(list(np.exp([0.2, 0.4])), list(np.exp([0.0, 0.2])), paired=False)
    half = 4.303 * math.sqrt(0.02)
    assert not s.paired
    assert s.estimate == pytest.approx(math.exp(0.2))
    assert (s.low, s.high) == (pytest.approx(math.exp(0.2 - half)),
                               pytest.approx(math.exp(0.2 + half)))


def test_speedup_wide_on_noisy_rounds() -> None:
    """Rounds that disagree give a wide interval holding 1; quiet ones a narrow one above 1."""
    quiet = speedup([2.0, 2.02, 1.98, 2.01, 2.0], [1.0, 1.0, 1.0, 1.01, 0.99])
    noisy = speedup([2.0, 1.0, 3.0, 1.2, 2.5], [1.0, 1.5, 1.0, 1.4, 1.0])
    assert quiet.high is not None and quiet.low is not None
    assert noisy.high is not None and noisy.low is not None
    assert quiet.verdict == "faster" and quiet.high / quiet.low < 1.05
    assert noisy.verdict == "no clear difference" and noisy.low < 1 < noisy.high


def test_speedup_one_round_has_no_interval() -> None:
    """One round (or a row cut to one by Ctrl-C): a point estimate, no interval, no verdict."""
    s = speedup([2.0, 2.0], [1.0])
    assert s.rounds == 1 and s.low is None and s.verdict == "no clear difference"
    with pytest.raises(ValueError):
        speedup([], [1.0])


def test_t_quantiles() -> None:
    """Table values, and the expansion beyond 30 df close to the exact t(.975, 60) = 2.000."""
    assert t975(4) == 2.776 and t975(2.9) == 4.303
    assert t975(60) == pytest.approx(2.000, abs=1e-3)
