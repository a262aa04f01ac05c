"""Static int8 quantization: ``quantize()`` is the single dispatch point (CONTRIBUTING R6, R2).

``quantize(src, dst, calibration, backend=..., config=...)`` writes an int8 model (ONNX
Runtime QDQ ``.onnx``, or OpenVINO IR ``.xml`` + ``.bin`` through NNCF) and returns a
``QuantReport``. With labelled data it first checks the fp32 model (a near-chance accuracy
means the preprocessing does not match), measures fp32 vs int8, and with a ``max_drop`` budget
returns the most sensitive layers to float until the drop on the validation data fits. The
report (accuracies, float layers with their latency cost, per-layer SQNR) also goes to JSON
beside the model. Backends are imported only inside the branch that uses them. Every top-1 is
measured by an ``evaluate.Evaluator`` (here by default; ``edgeres.cluster.RayEvaluator`` when
the caller passes one), so this package never imports the cluster code.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeres import runtimes
from edgeres._fs import atomic_files, check_outputs, sha256_file, temporary_dir
from edgeres.calibration import CalibrationSet
from edgeres.data import DataSource, open_data
from edgeres.errors import ConfigError, ModelFileError, QuantizationError
from edgeres.evaluate import Evaluator, LocalEvaluator
from edgeres.meta import ModelMeta
from edgeres.quantize._protocol import QuantBackend, Quantizer, using_workdir
from edgeres.quantize._report import (
    QuantAccuracy,
    QuantDetails,
    QuantReport,
    report_path_for,
    write_report,
)
from edgeres.quantize.config import (
    AUTO_BATCH,
    AUTO_BATCH_BYTES,
    DEFAULT_METHOD,
    QuantConfig,
    TargetSpec,
    resolve_target,
)
from edgeres.quantize.sensitivity import (
    Attempt,
    Fallback,
    LayerCost,
    fit_budget,
    latency_ms,
    layer_errors,
    rank_layers,
    reference_outputs,
)

__all__ = ["QuantAccuracy", "QuantBackend", "QuantConfig", "QuantDetails", "QuantReport",
           "Quantizer", "quantize"]

log = logging.getLogger(__name__)

CHANCE_FACTOR = 2.0  # fp32 top-1 below this multiple of chance stops: preprocessing is off
# Op types that mark a model as quantized already (QDQ, QOperator or integer ops).
# The calibration each backend uses when --method is not given: ai-edge-quantizer's
# static_wi8_ai8 is min/max; XNNPACKQuantizer's static config observes activations with
# histograms (torchao's HistogramObserver) and weights with per-channel min/max.
_DEFAULT_METHODS = {"ort": DEFAULT_METHOD, "litert": "minmax", "executorch": "pt2e-xnnpack"}
QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
                           "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"})


def quantize(
    src: Path,
    dst: Path,
    calibration: CalibrationSet,
    *,
    backend: QuantBackend = "ort",
    config: QuantConfig | None = None,
    evaluator: Evaluator | None = None,
) -> QuantReport:
    """Quantize ONNX model ``src`` to int8 at ``dst``, calibrated on ``calibration``.

    Args:
        src: the float ``.onnx`` model.
        dst: ``.onnx`` for backend "ort", ``.xml`` (with a ``.bin`` beside it) for "openvino",
            ``.tflite`` for "litert", ``.pte`` (its record ``.pte.json`` beside it) for
            "executorch".
        calibration: calibration data for this model (``CalibrationSet.from_data``);
            ``config.samples`` of it are drawn with ``config.seed``.
        backend: "ort" (ONNX Runtime QDQ) or "openvino" (NNCF, OpenVINO IR) on an .onnx
            ``src``; "litert" (ai-edge-quantizer) on an fp32 .tflite; "executorch" (PT2E with
            XNNPACKQuantizer on the zoo model behind an fp32 .pte, ``edgeres.runtimes``).
        config: options; ``QuantConfig()`` when None.
        evaluator: where top-1 on ``config.val``/``config.eval`` and the fallback candidates
            are measured: ``LocalEvaluator()`` (here) when None, or a cluster's
            (``edgeres.cluster.ray_evaluator``: the same counts, to the image).

    Returns:
        A ``QuantReport``; the same report is written to ``<dst name>.quant.json``, and the
        two files appear together or not at all.

    Raises:
        ModelFileError: ``src`` missing or unreadable, or ``dst`` of the wrong kind.
        DataError / UnknownNameError: calibration, validation or test data unusable.
        QuantizationError: near-chance fp32 accuracy, unknown layer names, bad options, or a
            source that is already int8 or stores fp16/bf16 weights.
        BackendNotAvailable: the backend's packages are missing or too old.
    """
    start = time.perf_counter()
    config = QuantConfig() if config is None else config
    src, dst = Path(src), Path(dst)
    _check_paths(src, dst, backend)
    _check_float(src, calibration.meta)
    spec = resolve_target(config.target)
    val = open_data(config.val) if config.val is not None else None
    test = open_data(config.eval) if config.eval is not None else None
    if val is not None and config.val_samples is not None:
        val = val.subset(config.val_samples, config.seed)
    calib = calibration.select(config.samples, config.seed,
                               config.batch_size or _auto_batch(calibration.meta))
    evaluator = LocalEvaluator() if evaluator is None else evaluator
    with temporary_dir("edgeres.quant.") as tmp:
        q = _backend(backend, src, calib, spec, config, Path(tmp))
        report, chosen = _run(q, src, dst, spec, config, val, test, evaluator)
        report = dataclasses.replace(report, seconds=time.perf_counter() - start)
        _publish(q, chosen, report)
    return report


def _publish(q: Quantizer, chosen: Path, report: QuantReport) -> None:
    """Write the model (an IR's .xml and .bin) and its report together or not at all."""
    assert report.meta is not None and report.report_path is not None  # set by _run
    dst = report.dst
    files = [dst, *_companions(dst), report.report_path]
    with atomic_files(*files) as tmps:
        q.save(chosen, tmps[dst], report.meta)
        if dst.suffix.lower() == ".pte":  # the record travels beside a .pte
            from edgeres.runtimes.executorch import write_record

            write_record(tmps[_companions(dst)[0]], report.meta)
        write_report(report, tmps[report.report_path])


def _companions(dst: Path) -> list[Path]:
    """Files written beside the model that users name: an OpenVINO IR's ``.bin``, an
    ExecuTorch .pte's record ``<file>.pte.json`` (its runtime's ``companion_files``)."""
    return runtimes.for_file(dst).companion_files(dst)


def _run(q: Quantizer, src: Path, dst: Path, spec: TargetSpec, config: QuantConfig,
         val: DataSource | None, test: DataSource | None,
         evaluator: Evaluator) -> tuple[QuantReport, Path]:
    """Check fp32, calibrate, fit the budget, evaluate, report; return the report and model.

    Every top-1 on the validation and test data is measured by ``evaluator``.
    """
    meta = q.meta
    q.check_names(config.exclude)
    labelled = [(d, str(v)) for d, v in ((val, config.val), (test, config.eval)) if d]
    correct: dict[tuple[str, str], Any] = {}  # (data, "fp32" or model path) -> per image
    fp32 = q.load(q.fp32_path) if labelled else None  # a session only when it is scored
    fp32_top1 = {name: _guard(fp32, data, meta, name, correct, evaluator)
                 for data, name in labelled}
    q.calibrate()
    base = tuple(config.exclude)
    validation, fallback, floats = _accuracy_aware(q, val, config, meta, fp32_top1, base,
                                                   correct, evaluator)
    chosen = q.build(floats)
    evaluation = None
    if test is not None:
        name = str(config.eval)
        _top1(q.load(chosen), test, meta, "int8 on eval data", correct, (name, "int8"),
              evaluator)
        evaluation = QuantAccuracy.from_correct(name, correct[name, "fp32"], correct[name, "int8"])
    # One sample per run: two models' layer outputs of a batch stay small (ResNet-50: 50 MB).
    batches = list(q.calibration.select(None, batch_size=1).first(config.layer_report_samples))
    layers = tuple(layer_errors(q, chosen, batches, floats))
    report_images = sum(len(b) for b in batches)
    method = config.method or _DEFAULT_METHODS.get(q.backend, "nncf-default")
    report = QuantReport(
        src=src, dst=dst, report_path=report_path_for(dst), backend=q.backend,
        target=spec.name, method=method,
        details=dataclasses.replace(q.details(), target_why=spec.why,
                                    layer_report_images=report_images),
        calibration=q.calibration.stats, calibration_data=q.calibration.source.name,
        float_layers=floats, validation=validation, evaluation=evaluation,
        max_drop=config.max_drop, fallback=fallback, layers=layers,
        warnings=_warnings(fallback, config, len(q.layers)),
    )
    return dataclasses.replace(report, meta=_record(meta, src, report)), chosen


def _auto_batch(meta: ModelMeta) -> int:
    dims = [d for d in meta.input.shape[1:] if isinstance(d, int)]
    sample = 4 * math.prod(dims) if dims else AUTO_BATCH_BYTES
    return max(1, min(AUTO_BATCH, AUTO_BATCH_BYTES // sample))


def _check_paths(src: Path, dst: Path, backend: str) -> None:
    if backend not in runtimes.RUNTIME_NAMES:  # each runtime module has its quantizer()
        msg = (f"unknown quantization backend {backend!r}; use "
               f"{', '.join(runtimes.RUNTIME_NAMES)}")
        raise ConfigError(msg)
    source = runtimes.get(backend).quantizes  # the float file its quantizer takes
    if not src.is_file():
        msg = f"model file {src} does not exist; pass an {source} file"
        raise ModelFileError(msg)
    if src.suffix.lower() == ".onnx" and backend == "executorch":
        msg = (f"{src} is an ONNX model; ExecuTorch int8 quantizes the PyTorch model, so export "
               "an fp32 .pte first (`edgeres export ZOO_MODEL --weights W --format pte`)")
        raise ModelFileError(msg)
    if src.suffix.lower() != source:
        msg = (f"{src} is not a {source} model; --backend {backend} quantizes an fp32 "
               f"{source} file (see `edgeres export`)")
        raise ModelFileError(msg)
    want = runtimes.get(backend).suffixes[0]  # what its quantizer writes
    if dst.suffix.lower() != want:
        msg = f"output {dst} should end in {want} for the {backend} backend"
        raise ModelFileError(msg)
    # Found now, not after calibrating: a missing or unwritable folder, a device, FIFO or
    # folder in the place of the model, its .bin or its report, or the input itself.
    check_outputs([dst, *_companions(dst), report_path_for(dst)], inputs=[src])


def _check_float(src: Path, meta: ModelMeta) -> None:
    """Refuse an int8 or half-precision source: re-calibrating a quantized graph takes minutes
    and rounds twice, and an fp16 graph keeps a Cast around every quantized layer."""
    if meta.precision in ("fp16", "bf16"):
        msg = (f"{src} stores {meta.precision} weights; quantize the fp32 model (export it "
               "without --fp16)")
        raise QuantizationError(msg)
    found = "its metadata record says int8" if meta.precision == "int8" else None
    if found is None and src.suffix.lower() != ".onnx":
        return  # .tflite/.pte come from `edgeres export`: their record says what they hold
    if found is None:
        try:
            import onnx
        except ImportError:
            return  # the backend reports the missing extra
        ops = {n.op_type for n in onnx.load(str(src), load_external_data=False).graph.node}
        if ops & QUANTIZED_OPS:
            found = f"it has {', '.join(sorted(ops & QUANTIZED_OPS))} nodes"
    if found is not None:
        msg = f"{src} is already quantized ({found}); quantize the float model it came from"
        raise QuantizationError(msg)


def _backend(backend: str, src: Path, calib: CalibrationSet, spec: TargetSpec,
             config: QuantConfig, workdir: Path) -> Quantizer:
    with using_workdir(workdir):  # the runtime's quantizer keeps its files there
        return runtimes.get(backend).quantizer(src, calib, spec, config)


def _top1(predictor: Any, data: DataSource, meta: ModelMeta, what: str,
          correct: dict[tuple[str, str], Any] | None = None,
          key: tuple[str, str] | None = None,
          evaluator: Evaluator | None = None) -> float:
    """top-1 in percent, measured by ``evaluator`` (here when None); the per-image results go
    to ``correct[key]`` for paired statistics."""
    evaluator = LocalEvaluator() if evaluator is None else evaluator
    report = evaluator.evaluate(predictor, data, meta, description=what)
    if correct is not None and key is not None:
        correct[key] = report.correct
    return report.top1


def _guard(fp32: Any, data: DataSource, meta: ModelMeta, name: str,
           correct: dict[tuple[str, str], Any], evaluator: Evaluator | None = None) -> float:
    """fp32 top-1 on ``data``; near chance means the preprocessing or labels do not fit."""
    top1 = _top1(fp32, data, meta, f"fp32 on {name}", correct, (name, "fp32"), evaluator)
    classes = meta.num_classes or len(meta.labels)
    chance = 100.0 / classes if classes > 1 else 0.0
    if classes > 1 and top1 < CHANCE_FACTOR * chance:
        msg = (f"fp32 top-1 on {name} is {top1:.1f}% (chance {chance:.1f}%): the preprocessing "
               "does not match the model or the labels do not; check mean/std, layout and "
               "resize (--mean/--std/--layout/--input-size) and the class folders")
        raise QuantizationError(msg)
    return top1


def _accuracy_aware(q: Quantizer, val: DataSource | None, config: QuantConfig, meta: ModelMeta,
                    fp32_top1: dict[str, float], base: tuple[str, ...],
                    correct: dict[tuple[str, str], Any], evaluator: Evaluator,
                    ) -> tuple[QuantAccuracy | None, Fallback | None, tuple[str, ...]]:
    """Measure int8 on the validation data; with a budget, return layers to float until it fits.

    An ``evaluator`` with workers (a cluster's) scores the fallback search's candidates in
    parallel (``fit_budget(measure_many=...)``): the same choice.
    """
    if val is None:
        return None, None, base
    name = str(config.val)
    fp32 = fp32_top1[name]

    def measure(path: Path) -> float:
        return _top1(q.load(path), val, meta, "int8 on val data", correct, (name, str(path)),
                     evaluator)

    def accuracy(path: Path) -> QuantAccuracy:
        if (name, str(path)) not in correct:  # a backend that did not cache the build
            measure(path)
        return QuantAccuracy.from_correct(name, correct[name, "fp32"], correct[name, str(path)])

    first_top1 = measure(q.build(base))
    first = Attempt(base, first_top1, fp32 - first_top1)
    if config.max_drop is None or first.drop <= config.max_drop:
        fallback = None if config.max_drop is None else Fallback(
            base, True, (first,), (), (), {})
        return accuracy(q.build(base)), fallback, base
    batches = list(q.calibration.first(config.ranking_samples))
    ranking = rank_layers(q, base, batches, reference_outputs(q, batches))
    measure_many: Callable[[list[Path]], list[float]] | None = None
    if evaluator.workers is not None:  # candidates in parallel, same choice

        def in_parallel(paths: list[Path]) -> list[float]:
            return evaluator.top1_many(paths, val, meta)

        measure_many = in_parallel
    floats, met, attempts = fit_budget(q, base=base, ranking=ranking, measure=measure,
                                       fp32_top1=fp32, budget=config.max_drop, first=first,
                                       measure_many=measure_many)
    sample = batches[0] if q.calibration.fixed_batch else batches[0][:1]
    fallback = _with_costs(q, base, floats, met, attempts, ranking, sample)
    return accuracy(q.build(floats)), fallback, floats


def _with_costs(q: Quantizer, base: tuple[str, ...], floats: tuple[str, ...], met: bool,
                attempts: list[Attempt], ranking: list[tuple[str, float]],
                sample: Any) -> Fallback:
    """Latency of fp32, the all-int8 model, the chosen one, and each chosen float layer alone."""
    added = [n for n in floats if n not in base]
    paths = {"fp32": q.fp32_path, "int8": q.build(base), "chosen": q.build(floats)}
    paths.update({n: q.build((*base, n)) for n in added})
    ms = latency_ms(q, paths, sample)
    gains = dict(ranking)
    costs = tuple(LayerCost(n, gains.get(n, 0.0), ms[n] - ms["int8"]) for n in added)
    latency = {"fp32": ms["fp32"], "int8": ms["int8"], "chosen": ms["chosen"]}
    return Fallback(floats, met, tuple(attempts), tuple(ranking), costs, latency)


# The chosen mix must beat fp32 by this factor, or the int8 file is not worth shipping for
# speed; 5% is about the round-to-round noise of the batch-1 timing on a quiet machine.
FASTER_THAN_FP32 = 1.05


def _warnings(fallback: Fallback | None, config: QuantConfig,
              layers: int = 0) -> tuple[str, ...]:
    if fallback is None:
        return ()
    out = []
    if not fallback.budget_met:
        best = next(a for a in fallback.attempts if a.float_layers == fallback.floats)
        out.append(f"no mix of int8 and float layers met the {config.max_drop:g}-point budget; "
                   f"kept the best (drop {best.drop:.2f} points with {len(best.float_layers)} "
                   "float layer(s))")
    fp32, chosen = fallback.latency_ms.get("fp32"), fallback.latency_ms.get("chosen")
    if fallback.floats and fp32 and chosen and fp32 / chosen < FASTER_THAN_FP32:
        of = f" of {layers}" if layers else ""
        out.append(f"{len(fallback.floats)}{of} layers stay float to meet the budget, and the "
                   f"result runs at {fp32 / chosen:.2f}x fp32's speed here (batch 1, 1 thread): "
                   "this int8 model is likely no faster than fp32; ship fp32, allow a larger "
                   "--max-drop, or try --backend openvino")
    for msg in out:
        log.warning(msg)
    return tuple(out)


def _record(meta: ModelMeta, src: Path, report: QuantReport) -> ModelMeta:
    """The source record with precision int8, ``extra["quantization"]`` and a provenance step."""
    stats = report.calibration
    info: dict[str, Any] = {
        "backend": report.backend, "target": report.target, "method": report.method,
        **report.details.to_dict(record=True),
        "samples": stats.count, "skipped": stats.skipped,
        "calibration_data": report.calibration_data, "calibration_sha256": stats.sha256,
        "float_layers": list(report.float_layers),
    }
    for key, acc in (("validation", report.validation), ("evaluation", report.evaluation)):
        if acc is not None:
            info[key] = acc.to_dict()
    record = meta.evolve(precision="int8", extra={**meta.extra, "quantization": info})
    return record.with_step(
        "quantize", input_sha256=sha256_file(src), backend=report.backend,
        target=report.target, method=report.method, samples=stats.count,
        calibration_sha256=stats.sha256, float_layers=list(report.float_layers),
    )
