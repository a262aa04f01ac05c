"""THE top-1/top-5 evaluation loop over labelled data, through any ``run(x) -> logits`` callable.

Quantize (fp32 vs int8 on validation data), bench (``--eval``) and the demo all measure
accuracy here, so their numbers agree. ``Evaluator`` says *where* a model is scored (the way
NNCF's ``quantize_with_accuracy_control`` takes a ``validation_fn``): ``LocalEvaluator`` runs
this loop in the process, ``edgeres.cluster.RayEvaluator`` on a Ray cluster with the same
counts; ``quantize`` and ``edgeres eval`` take one and never import the cluster code. Images
go through ``edgeres.data`` and therefore through ``edgeres.preprocess``, the same code the
runtime uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np

from edgeres._progress import track
from edgeres.data import DataSource
from edgeres.errors import DataError
from edgeres.meta import ModelMeta
from edgeres.preprocess import check_finite, pad_batch

DEFAULT_BATCH = 100  # images per call; a cluster cuts the same batches (cluster._eval)


@dataclass(frozen=True)
class EvalReport:
    """Accuracy of one model on one data set.

    Attributes:
        top1: percent of images whose best class is the label.
        top5: percent whose label is among the best five (or all, with fewer classes).
        count: images evaluated.
        skipped: unreadable images left out.
        logits: raw outputs, one row per evaluated image, for agreement with other runs.
        labels: the ground-truth indices.
    """

    top1: float
    top5: float
    count: int
    skipped: int
    logits: np.ndarray
    labels: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        """One boolean per image: top-1 equals the label (``top1`` is its mean, in percent).

        Paired statistics (``edgeres.intervals.paired_drop``) compare two models image by
        image through this.
        """
        return self.logits.argmax(axis=1) == self.labels

    def top1_interval(self) -> tuple[float, float]:
        """95% Wilson interval of ``top1``, in percent."""
        from edgeres.intervals import wilson

        lo, hi = wilson(int(self.correct.sum()), self.count)
        return 100 * lo, 100 * hi

    def agreement(self, other: EvalReport) -> float:
        """Percent of images on which both runs chose the same top-1 class."""
        return top1_agreement(self.logits, other.logits)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Percent of rows whose label is among the ``k`` largest logits (ties: lowest index first)."""
    if len(labels) == 0:
        return math.nan
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return 100.0 * float((top == labels[:, None]).any(axis=1).mean())


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Percent of rows where ``a`` and ``b`` pick the same class."""
    if a.shape != b.shape:
        msg = f"cannot compare outputs of shapes {a.shape} and {b.shape}"
        raise ValueError(msg)
    return 100.0 * float((a.argmax(axis=1) == b.argmax(axis=1)).mean())


def evaluate(
    run: Callable[[np.ndarray], np.ndarray],
    data: DataSource,
    meta: ModelMeta,
    *,
    batch_size: int = DEFAULT_BATCH,
    limit: int | None = None,
    description: str = "evaluating",
) -> EvalReport:
    """Measure top-1 and top-5 accuracy of ``run`` on labelled ``data``.

    Args:
        run: maps a prepared input batch to logits (``Predictor.run``, a PyTorch wrapper, ...).
        data: a labelled source from ``edgeres.data.open_data``.
        meta: the model's record; drives preprocessing and label mapping.
        batch_size: images per call; a graph with a fixed batch axis (``meta.input.shape[0]``
            an integer) is always called with that many, its last batch padded by repeating
            the last image and the padded rows dropped.
        limit: evaluate a seeded random subset of ``limit`` images, the same on every call
            (``data.subset(limit)``); all images when None or not smaller than the data.
        description: progress bar text.

    Returns:
        An ``EvalReport`` with the accuracies and the raw logits.

    Raises:
        DataError: if the data has no labels or no image could be read.
        ModelFileError: if the model outputs NaN or infinity (``check_finite``).
    """
    if data.classes is None and getattr(data, "labels", None) is None:
        msg = f"{data.name} has no labels; accuracy needs an ImageFolder layout (<class>/<image>)"
        raise DataError(msg)
    if limit is not None:
        data = data.subset(limit)
    first = meta.input.shape[0]
    fixed = first if isinstance(first, int) and first > 0 else 0
    batch_size = fixed or batch_size
    outputs: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    steps = math.ceil(len(data) / batch_size)
    for batch in track(data.batches(meta, batch_size), total=steps, description=description):
        x, n = batch.inputs, len(batch.inputs)
        x = pad_batch(x, fixed, fill=x[-1:])  # repeat the last image: the graph takes `fixed`
        out = np.asarray(run(x), dtype=np.float32)
        check_finite(out, f"{meta.name} on {data.name}")
        outputs.append(out.reshape(len(x), -1)[:n])
        labels.append(cast(np.ndarray, batch.labels))  # labelled data, checked above
    if not outputs:
        msg = f"no readable images in {data.name} ({data.skipped} skipped)"
        raise DataError(msg)
    logits = np.concatenate(outputs)
    truth = np.concatenate(labels)
    return EvalReport(
        top1=topk_accuracy(logits, truth, 1), top5=topk_accuracy(logits, truth, 5),
        count=len(truth), skipped=data.skipped, logits=logits, labels=truth,
    )


@runtime_checkable
class Evaluator(Protocol):
    """Where a model is scored: ``LocalEvaluator`` here, ``edgeres.cluster.RayEvaluator`` on a
    Ray cluster; both give the same ``EvalReport``, image for image.

    Attributes:
        where: "local", or "cluster ADDRESS".
        workers: parallel workers (None: this process alone). With workers, ``top1_many``
            scores several files at once (the fallback search's candidates).
    """

    @property
    def where(self) -> str: ...

    @property
    def workers(self) -> int | None: ...

    def evaluate(self, predictor: Any, data: DataSource, meta: ModelMeta, *,
                 batch_size: int = DEFAULT_BATCH, description: str = "evaluating",
                 ) -> EvalReport:
        """The report of ``predictor`` (a loaded model: ``run`` and ``path``) on ``data``."""
        ...

    def top1_many(self, paths: Sequence[Path], data: DataSource, meta: ModelMeta,
                  ) -> list[float]:
        """top-1 of each model file in ``paths`` on ``data``, in order."""
        ...


class LocalEvaluator:
    """Scores in this process through ``evaluate`` (the default everywhere)."""

    where = "local"
    workers: int | None = None

    def evaluate(self, predictor: Any, data: DataSource, meta: ModelMeta, *,
                 batch_size: int = DEFAULT_BATCH, description: str = "evaluating",
                 ) -> EvalReport:
        """``evaluate(predictor.run, data, meta)``."""
        return evaluate(predictor.run, data, meta, batch_size=batch_size,
                        description=description)

    def top1_many(self, paths: Sequence[Path], data: DataSource, meta: ModelMeta,
                  ) -> list[float]:
        """One file after another, each loaded with ``edgeres.runtime.load``."""
        from edgeres.runtime import load

        return [evaluate(load(p).run, data, meta, description=f"{Path(p).name}").top1
                for p in paths]
