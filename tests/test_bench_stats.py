"""Tests for edgeres.bench.stats: every statistic against hand-computed values."""

from __future__ import annotations

import math

import pytest

from edgeres.bench.stats import LatencyStats


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
