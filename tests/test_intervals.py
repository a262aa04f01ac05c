"""Tests for edgeres.intervals: every interval and test against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeres.intervals import (
    budget_verdict,
    mcnemar_exact,
    median_interval,
    paired_drop,
    wilson,
    z_value,
)

Z = 1.959963984540054  # NormalDist().inv_cdf(0.975)


def _pairs(both: int, lost: int, gained: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image correctness of a reference and a candidate with the given 2x2 counts."""
    ref = [True] * both + [True] * lost + [False] * gained + [False] * neither
    cand = [True] * both + [False] * lost + [True] * gained + [False] * neither
    return np.array(ref), np.array(cand)


def test_z_value() -> None:
    """95% two-sided is the 97.5th normal percentile."""
    assert z_value() == pytest.approx(Z)
    with pytest.raises(ValueError):
        z_value(1.0)


def test_median_interval_ten_samples() -> None:
    """n = 10: P(B<=1) = 11/1024 gives 2.1% < 5%, P(B<=2) = 56/1024 gives 10.9%: ranks 2 and 9."""
    assert median_interval([7, 1, 3, 10, 5, 2, 9, 4, 8, 6]) == (2.0, 9.0)


def test_median_interval_small_n() -> None:
    """n = 6: 2/64 = 3.1% <= 5%, so [min, max]; n = 5: 2/32 = 6.25% > 5%, no interval."""
    assert median_interval([3, 1, 2, 6, 5, 4]) == (1.0, 6.0)
    assert median_interval([1, 2, 3, 4, 5]) is None
    assert median_interval([]) is None


def test_median_interval_large_n_matches_normal_ranks() -> None:
    """n = 400: the exact ranks are within one of n/2 -+ 1.96 sqrt(n)/2 = 180.4 / 220.6."""
    x = np.arange(1, 401, dtype=float)
    interval = median_interval(x)
    assert interval is not None
    lo, hi = interval
    assert 180 <= lo <= 181 and hi == 401 - lo


def test_median_interval_wide_on_noisy_samples() -> None:
    """Same median, ten times the scatter: an interval ten times as wide."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal(200)
    quiet, noisy = median_interval(5 + 0.01 * base), median_interval(5 + 0.1 * base)
    assert quiet is not None and noisy is not None
    assert noisy[1] - noisy[0] == pytest.approx(10 * (quiet[1] - quiet[0]))
    assert quiet[0] < 5 < quiet[1]


def test_wilson_hand_values() -> None:
    """5/10: centre 0.5, half-width 1.96/1.384 * sqrt(0.025 + 0.0096) = 0.2634; 0/10: [0, .2775]."""
    assert wilson(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    lo, hi = wilson(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.277533, abs=1e-6)
    assert wilson(10, 10)[1] == 1.0
    with pytest.raises(ValueError):
        wilson(11, 10)


def test_mcnemar_exact_hand_values() -> None:
    """10 vs 2: 2 * (1 + 12 + 66) / 4096 = 0.0386; 5 vs 0: 2/32; 1 vs 1 and 0 vs 0: 1."""
    assert mcnemar_exact(10, 2) == pytest.approx(158 / 4096)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)
    assert mcnemar_exact(5, 0) == pytest.approx(0.0625)
    assert mcnemar_exact(1, 1) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert 0 < mcnemar_exact(3000, 2000) < 1e-40  # big counts stay exact, no overflow


def test_paired_drop_newcombe_hand_case() -> None:
    """Table (both 40, lost 3, gained 1, neither 6), n = 50, worked by hand.

    p1 = 43/50 = .86, Wilson [.738138, .930492]; p2 = 41/50 = .82, Wilson [.692039, .902298];
    AD - BC = 240 - 3 = 237 > n/2, so phi = (237 - 25) / sqrt(43*7*41*9) = 212/333.27 = .636121;
    low = .04 - sqrt(.121862^2 - 2 phi .121862 .082298 + .082298^2) = -.054149,
    high = .04 + sqrt(.070492^2 - 2 phi .070492 .127961 + .127961^2) = .139334.
    """
    d = paired_drop(*_pairs(40, 3, 1, 6))
    assert (d.count, d.both, d.lost, d.gained, d.neither) == (50, 40, 3, 1, 6)
    assert d.drop == pytest.approx(4.0)
    assert d.low == pytest.approx(-5.4149, abs=1e-3)
    assert d.high == pytest.approx(13.9334, abs=1e-3)
    assert d.p_value == pytest.approx(10 / 16)  # 2 * (1 + 4) / 2^4
    assert d.noise


def test_paired_drop_tiny_drop_on_10k_images_is_noise() -> None:
    """0.04 points on 10,000 images (24 lost, 20 gained) is within noise: interval holds 0."""
    d = paired_drop(*_pairs(8976, 24, 20, 980))
    assert d.drop == pytest.approx(0.04)
    assert d.low < 0 < d.high and d.noise
    assert d.p_value > 0.5


def test_paired_drop_wide_when_models_disagree_often() -> None:
    """The same 0.04-point drop from 996 discordant images has a far wider interval than from 4."""
    few = paired_drop(*_pairs(8996, 4, 0, 1000))
    many = paired_drop(*_pairs(8500, 500, 496, 504))
    assert few.drop == pytest.approx(many.drop)
    assert (many.high - many.low) > 5 * (few.high - few.low)


def test_paired_drop_real_loss_is_not_noise() -> None:
    """120 lost against 20 gained on 10,000 images: a 1-point drop, interval above 0, p tiny."""
    d = paired_drop(*_pairs(8880, 120, 20, 980))
    assert d.drop == pytest.approx(1.0)
    assert 0 < d.low < 1.0 < d.high and not d.noise
    assert d.p_value < 1e-15


def test_paired_drop_identical_models() -> None:
    """No discordant image: drop 0, an interval around 0 (not a point), p = 1."""
    d = paired_drop(*_pairs(90, 0, 0, 10))
    assert d.drop == 0.0 and d.low < 0 < d.high and d.p_value == 1.0


def test_paired_drop_length_mismatch() -> None:
    """Different images cannot be paired."""
    with pytest.raises(ValueError):
        paired_drop([True, False], [True])


@pytest.mark.parametrize(("drop", "high", "budget", "verdict"), [
    (0.1, 0.4, 0.5, "met with confidence"),
    (0.1, 0.7, 0.5, "met on the point estimate only"),
    (0.6, 0.9, 0.5, "not met"),
    (0.1, None, 0.5, "met on the point estimate only"),
    (0.5, 0.5, 0.5, "met with confidence"),
])
def test_budget_verdict(drop: float, high: float | None, budget: float, verdict: str) -> None:
    """Confident only when the upper bound fits; the point estimate alone is said to be so."""
    assert budget_verdict(drop, high, budget) == verdict
    assert not math.isnan(drop)


def test_quantize_accuracy_is_paired() -> None:
    """quantize's QuantAccuracy from per-image results: Wilson intervals, the paired drop,
    JSON."""
    from edgeres.quantize._report import QuantAccuracy as Accuracy

    fp32, int8 = _pairs(40, 3, 1, 6)
    acc = Accuracy.from_correct("val", fp32, int8)
    assert acc.paired is not None
    assert (acc.count, acc.fp32_top1, acc.int8_top1) == (50, pytest.approx(86.0),
                                                          pytest.approx(82.0))
    assert acc.drop == pytest.approx(acc.paired.drop) == pytest.approx(4.0)
    assert acc.fp32_interval == pytest.approx((73.8138, 93.0492), abs=1e-3)  # Wilson 43/50
    assert acc.noise is True
    d = acc.to_dict()
    assert d["paired"]["lost"] == 3 and d["fp32_interval"][0] == pytest.approx(73.8138, abs=1e-3)
    assert budget_verdict(acc.drop, acc.paired.high, 5.0) == "met on the point estimate only"
