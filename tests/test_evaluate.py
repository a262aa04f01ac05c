"""Tests for edgeres.evaluate: accuracy numbers checked against hand-computed values, and
fixed-batch graphs evaluated on every image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeres import names, runtime
from edgeres.data import ArraySource, open_data
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


def _toy(seed: int, batch: int | str) -> tuple[np.ndarray, np.ndarray, np.ndarray, ModelMeta]:
    """Ten 3x2x2 inputs, labels, a linear "model" and its record with batch axis ``batch``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((10, 3, 2, 2)).astype(np.float32)
    y = rng.integers(0, 3, 10)
    weights = rng.standard_normal((12, 3)).astype(np.float32)
    meta = ModelMeta(name="t", family="custom", num_classes=3, labels=("a", "b", "c"),
                     input=InputSpec(shape=(batch, 3, 2, 2)),
                     preprocess=PreprocessSpec(resize=2, crop=(2, 2)))
    return x, y, weights, meta


def test_evaluate_runs_batches_and_matches_direct_computation() -> None:
    """evaluate() over arrays in batches of 3 equals topk_accuracy on all rows at once."""
    x, y, weights, meta = _toy(0, "batch")

    def run(batch: np.ndarray) -> np.ndarray:
        return batch.reshape(len(batch), -1) @ weights

    report = evaluate(run, ArraySource("arr", x, y), meta, batch_size=3)
    direct = x.reshape(10, -1) @ weights
    assert report.count == 10
    assert report.top1 == topk_accuracy(direct, y, 1)
    assert report.top5 == 100.0
    # A 3-row and a 10-row matmul may sum in different orders (BLAS kernels differ per CPU).
    np.testing.assert_allclose(report.logits, direct, rtol=1e-5, atol=1e-6)


def test_fixed_batch_run_gets_full_batches_and_keeps_every_row() -> None:
    """A graph fixed at batch 4 sees only 4-row calls; 10 rows give 10 results, none padded."""
    x, y, weights, meta = _toy(1, 4)
    calls: list[np.ndarray] = []

    def run(batch: np.ndarray) -> np.ndarray:
        if len(batch) != 4:
            msg = f"batch of {len(batch)}"
            raise DataError(msg)
        calls.append(batch)
        return batch.reshape(4, -1) @ weights

    report = evaluate(run, ArraySource("arr", x, y), meta, batch_size=100)
    assert report.count == 10 and len(calls) == 3
    np.testing.assert_array_equal(calls[-1][2:], np.repeat(x[-1:], 2, axis=0))  # padded
    np.testing.assert_allclose(report.logits, x.reshape(10, -1) @ weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(report.labels, y)


@pytest.mark.slow
def test_fixed_batch_export_is_evaluated_on_every_image(tmp_path: Path) -> None:
    """A --batch 8 export on 50 cifar10-test images: count 50, top-1 as the dynamic model's."""
    pytest.importorskip("torch")
    from click.testing import CliRunner

    from edgeres.cli import cli

    dst = tmp_path / "b8.onnx"
    result = CliRunner().invoke(cli, ["export", "cifar_resnet20", "--weights", "cifar10",
                                      "--batch", "8", "-o", str(dst)])
    assert result.exit_code == 0, result.output
    fixed, dynamic = runtime.load(dst), runtime.load(names.resolve_model_file("cifar10"))
    assert fixed.meta.input.shape[0] == 8 and dynamic.meta.input.shape[0] == "batch"
    data = open_data("cifar10-test")
    got = evaluate(fixed.run, data, fixed.meta, limit=50)
    want = evaluate(dynamic.run, data, dynamic.meta, limit=50)
    assert got.count == want.count == 50
    assert got.top1 == want.top1 and got.top5 == want.top5
    np.testing.assert_array_equal(got.labels, want.labels)
    np.testing.assert_allclose(got.logits, want.logits, rtol=1e-4, atol=1e-4)


def test_unlabelled_data_is_refused() -> None:
    """Accuracy without labels is an error that says what layout is needed."""
    meta = ModelMeta(name="t", family="custom", num_classes=3, labels=("a", "b", "c"),
                     input=InputSpec(shape=("batch", 3, 2, 2)),
                     preprocess=PreprocessSpec(resize=2, crop=(2, 2)))
    with pytest.raises(DataError, match="no labels"):
        evaluate(lambda b: b, ArraySource("arr", np.zeros((2, 3, 2, 2), np.float32), None), meta)
