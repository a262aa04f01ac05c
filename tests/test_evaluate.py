"""Tests for edgeres.evaluate: accuracy numbers checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from edgeres.data import ArraySource
from edgeres.errors import DataError
from edgeres.evaluate import evaluate, top1_agreement, topk_accuracy
from edgeres.meta import InputSpec, ModelMeta, PreprocessSpec

LOGITS = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.4, 0.35, 0.25]])
LABELS = np.array([1, 1, 0, 2])


def test_topk_by_hand() -> None:
    """Top-1: row 0 → 25%; top-2: rows 0 and 1 (tie broken to index 1) → 50%; top-3 covers all."""
    assert topk_accuracy(LOGITS, LABELS, 1) == 25.0
    assert topk_accuracy(LOGITS, LABELS, 2) == 50.0
    assert topk_accuracy(LOGITS, LABELS, 5) == 100.0


def test_agreement_by_hand() -> None:
    """Two of four rows pick the same class."""
    other = np.array([[0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]], dtype=float)
    assert top1_agreement(LOGITS, other) == 50.0


def test_evaluate_runs_batches_and_matches_direct_computation() -> None:
    """evaluate() over arrays in batches of 3 equals topk_accuracy on all rows at once."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 3, 2, 2)).astype(np.float32)
    y = rng.integers(0, 3, 10)
    weights = rng.standard_normal((12, 3)).astype(np.float32)
    meta = ModelMeta(name="t", family="custom", num_classes=3, labels=("a", "b", "c"),
                     input=InputSpec(shape=("batch", 3, 2, 2)),
                     preprocess=PreprocessSpec(resize=2, crop=(2, 2)))

    def run(batch: np.ndarray) -> np.ndarray:
        return batch.reshape(len(batch), -1) @ weights

    report = evaluate(run, ArraySource("arr", x, y), meta, batch_size=3)
    direct = x.reshape(10, -1) @ weights
    assert report.count == 10
    assert report.top1 == topk_accuracy(direct, y, 1)
    assert report.top5 == 100.0
    # A 3-row and a 10-row matmul may sum in different orders (BLAS kernels differ per CPU).
    np.testing.assert_allclose(report.logits, direct, rtol=1e-5, atol=1e-6)


def test_unlabelled_data_is_refused() -> None:
    """Accuracy without labels is an error that says what layout is needed."""
    meta = ModelMeta(name="t", family="custom", num_classes=3, labels=("a", "b", "c"),
                     input=InputSpec(shape=("batch", 3, 2, 2)),
                     preprocess=PreprocessSpec(resize=2, crop=(2, 2)))
    with pytest.raises(DataError, match="no labels"):
        evaluate(lambda b: b, ArraySource("arr", np.zeros((2, 3, 2, 2), np.float32), None), meta)
