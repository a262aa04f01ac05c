"""``edgeres eval``: accuracy of model files on labelled data, and agreement between them.

Every model goes through ``edgeres.evaluate`` (THE top-1 loop) by way of an
``evaluate.Evaluator``: ``LocalEvaluator`` here (ray is never imported), or the one
``edgeres.cluster.evaluate_models`` passes in, which scores on a Ray cluster with the same
counts, image for image. The run is an ``EvalRun``; only ``cli/`` formats it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from edgeres.errors import ConfigError
from edgeres.evaluate import DEFAULT_BATCH, Evaluator, LocalEvaluator

if TYPE_CHECKING:
    from edgeres.runtime import Backend


@dataclass(frozen=True)
class ModelAccuracy:
    """One model's accuracy on the data.

    Attributes:
        model: the MODEL argument; file: the model file.
        top1, top5: percent; top1_correct, top5_correct: the counts behind them.
        count: images evaluated; skipped: unreadable images left out.
        agreement: percent of images whose top-1 class equals the first model's (None for
            the first model, or when the counts differ).
        runtime, executed_precision: what ran (as ``Predictor`` reports it on the driver).
    """

    model: str
    file: str
    top1: float
    top5: float
    top1_correct: int
    top5_correct: int
    count: int
    skipped: int
    agreement: float | None
    runtime: str
    executed_precision: str


@dataclass(frozen=True)
class EvalRun:
    """An ``edgeres eval`` run.

    Attributes:
        data: the data argument; results: one entry per model, in order.
        where: "local" or "cluster ADDRESS"; workers: actors in the pool (None locally).
        batch_size: images per inference call; seconds: wall time of the evaluation.
        reports: the full ``EvalReport``s (logits included), for callers that need them.
    """

    data: str
    results: tuple[ModelAccuracy, ...]
    where: str
    workers: int | None
    batch_size: int
    seconds: float
    reports: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (no logits)."""
        from dataclasses import asdict

        return {"schema_version": 1, "tool": "edgeres eval", "data": self.data,
                "where": self.where, "workers": self.workers, "batch_size": self.batch_size,
                "seconds": self.seconds, "results": [asdict(r) for r in self.results]}


def evaluate_models(  # noqa: PLR0913 - one keyword per `edgeres eval` option
        models: Sequence[str | Path], data: str | Path, *,
        evaluator: Evaluator | None = None, backend: str = "auto",
        threads: int | None = None, batch_size: int = DEFAULT_BATCH,
        limit: int | None = None, metas: Sequence[Any] | None = None,
        class_map: Any = None) -> EvalRun:
    """top-1/top-5 of every model on ``data``, and top-1 agreement with the first model.

    Args:
        models: model files (``.onnx``, OpenVINO ``.xml``) or registered names (``cifar10``).
        data: labelled data: a path or a registered name (``cifar10-test``).
        evaluator: where the models are scored; ``LocalEvaluator()`` (here) when None.
        backend: ``auto``, ``ort`` or ``openvino``.
        threads: intra-op threads of each session here; None = the runtime's default (a
            session of an evaluator with workers gets 1: it only describes the model).
        batch_size: images per call (a fixed-batch graph always gets its own batch).
        limit: evaluate a seeded subset of this many images (``DataSource.subset``).
        metas: one record per model (``runtime.load(meta=...)``: stated preprocessing), None
            in it or for it uses each model's own.
        class_map: how class folders map to outputs (``classmap.ClassMap``); None: by label
            name.

    Returns:
        An ``EvalRun``; an evaluator's ``where`` and ``workers`` are recorded in it.

    Raises:
        ConfigError: for invalid options; DataError: for unlabelled or unreadable data;
        UnknownNameError/ModelFileError: for a bad model or data argument.
    """
    from edgeres.data import open_data
    from edgeres.names import resolve_model_file
    from edgeres.runtime import load

    check_eval_options(models, threads, batch_size, limit)
    evaluator = LocalEvaluator() if evaluator is None else evaluator
    files = [resolve_model_file(m) for m in models]
    source = open_data(data, class_map=class_map).subset(limit)
    here = evaluator.workers is None
    # backend: a label load() checks itself ("auto", "ort", "openvino", ...)
    preds = [load(f, backend=cast("Backend", backend), threads=threads if here else 1, meta=m)
             for f, m in zip(files, metas or [None] * len(files), strict=True)]
    start = time.perf_counter()
    reports = [evaluator.evaluate(p, source, p.meta, batch_size=batch_size,
                                  description=f"{m}: evaluating")
               for m, p in zip(models, preds, strict=True)]
    seconds = time.perf_counter() - start
    results = tuple(_accuracy(str(m), f, r, reports[0] if i else None, p)
                    for i, (m, f, r, p) in enumerate(zip(models, files, reports, preds,
                                                         strict=True)))
    return EvalRun(str(data), results, evaluator.where, evaluator.workers, batch_size, seconds,
                   tuple(reports))


def check_eval_options(models: Sequence[Any], threads: int | None, batch_size: int,
                       limit: int | None) -> None:
    """Refuse an empty model list and counts below 1, naming the flag.

    Raises:
        ConfigError: for the first bad option.
    """
    checks = [(bool(models), "give at least one MODEL"),
              (threads is None or threads >= 1, "--threads must be at least 1"),
              (batch_size >= 1, "--batch must be at least 1"),
              (limit is None or limit >= 1, "--limit must be at least 1")]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)


def _accuracy(model: str, file: Path, report: Any, first: Any, pred: Any) -> ModelAccuracy:
    agreement = None
    if first is not None and first.logits.shape == report.logits.shape:
        agreement = report.agreement(first)
    return ModelAccuracy(
        model=model, file=str(file), top1=report.top1, top5=report.top5,
        top1_correct=round(report.top1 * report.count / 100),
        top5_correct=round(report.top5 * report.count / 100), count=report.count,
        skipped=report.skipped, agreement=agreement, runtime=pred.runtime,
        executed_precision=pred.executed_precision)
