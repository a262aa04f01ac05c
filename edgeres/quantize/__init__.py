"""Static int8 quantization: ``quantize()`` is the single dispatch point (CONTRIBUTING R6, R2).

``quantize(src, dst, calibration, backend=..., config=...)`` writes an int8 model (ONNX
Runtime QDQ ``.onnx``, or OpenVINO IR ``.xml`` + ``.bin`` through NNCF) and returns a
``QuantReport``. With labelled data it first checks the fp32 model (a near-chance accuracy
means the preprocessing does not match), measures fp32 vs int8, and with a ``max_drop`` budget
returns the most sensitive layers to float until the drop on the validation data fits. The
report (accuracies, float layers with their latency cost, per-layer SQNR) also goes to JSON
beside the model. Backends are imported only inside the branch that uses them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeres._fs import atomic_files, check_outputs, sha256_file
from edgeres.calibration import CalibrationSet
from edgeres.data import DataSource, open_data
from edgeres.errors import ModelFileError, QuantConfigError, QuantizationError
from edgeres.evaluate import evaluate
from edgeres.meta import ModelMeta
from edgeres.quantize._protocol import QUANT_BACKENDS, QuantBackend, Quantizer
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
_SOURCE_SUFFIX = {"ort": ".onnx", "openvino": ".onnx", "litert": ".tflite", "executorch": ".pte"}
_OUTPUT_SUFFIX = {"ort": ".onnx", "openvino": ".xml", "litert": ".tflite", "executorch": ".pte"}
QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
                           "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"})


def quantize(
    src: Path,
    dst: Path,
    calibration: CalibrationSet,
    *,
    backend: QuantBackend = "ort",
    config: QuantConfig | None = None,
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
    with tempfile.TemporaryDirectory(prefix="edgeres.quant.") as tmp, \
            contextlib.ExitStack() as stack:
        ray = None
        if config.cluster is not None and (val is not None or test is not None):
            from edgeres.cluster import connect

            ray = stack.enter_context(connect(config.cluster))
        q = _backend(backend, src, calib, spec, config, Path(tmp))
        report, chosen = _run(q, src, dst, spec, config, val, test, ray)
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
    ExecuTorch .pte's record ``<file>.pte.json``."""
    if dst.suffix.lower() == ".pte":
        from edgeres.runtimes.executorch import sidecar

        return [sidecar(dst)]
    return [dst.with_suffix(".bin")] if dst.suffix.lower() == ".xml" else []


def _run(q: Quantizer, src: Path, dst: Path, spec: TargetSpec, config: QuantConfig,
         val: DataSource | None, test: DataSource | None,
         ray: Any = None) -> tuple[QuantReport, Path]:
    """Check fp32, calibrate, fit the budget, evaluate, report; return the report and model.

    With ``ray`` (a connected cluster, ``QuantConfig.cluster``) every top-1 on the validation
    and test data is measured there (``edgeres.cluster``: the same counts, to the image).
    """
    meta = q.meta
    q.check_names(config.exclude)
    labelled = [(d, str(v)) for d, v in ((val, config.val), (test, config.eval)) if d]
    correct: dict[tuple[str, str], Any] = {}  # (data, "fp32" or model path) -> per image
    fp32 = q.load(q.fp32_path) if labelled else None  # a session only when it is scored
    fp32_top1 = {name: _guard(fp32, data, meta, name, correct, ray) for data, name in labelled}
    q.calibrate()
    base = tuple(config.exclude)
    validation, fallback, floats = _accuracy_aware(q, val, config, meta, fp32_top1, base,
                                                   correct, ray)
    chosen = q.build(floats)
    evaluation = None
    if test is not None:
        name = str(config.eval)
        _top1(q.load(chosen), test, meta, "int8 on eval data", correct, (name, "int8"), ray)
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
        warnings=_warnings(fallback, config),
    )
    return dataclasses.replace(report, meta=_record(meta, src, report)), chosen


def _auto_batch(meta: ModelMeta) -> int:
    dims = [d for d in meta.input.shape[1:] if isinstance(d, int)]
    sample = 4 * math.prod(dims) if dims else AUTO_BATCH_BYTES
    return max(1, min(AUTO_BATCH, AUTO_BATCH_BYTES // sample))


def _check_paths(src: Path, dst: Path, backend: str) -> None:
    if backend not in QUANT_BACKENDS:
        msg = f"unknown quantization backend {backend!r}; use {', '.join(QUANT_BACKENDS)}"
        raise QuantConfigError(msg)
    source = _SOURCE_SUFFIX[backend]
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
    want = _OUTPUT_SUFFIX[backend]
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
    per_channel = spec.per_channel if config.per_channel is None else config.per_channel
    if backend in ("litert", "executorch"):
        from edgeres.runtimes import get

        return get(backend).quantizer(src, calib, spec, config,  # type: ignore[call-arg]
                                      workdir=workdir)  # until the registry passes a workdir
    if backend == "ort":
        from edgeres.quantize._ort import OrtQuantizer

        return OrtQuantizer(src, calib, spec, per_channel=per_channel,
                            method=config.method or DEFAULT_METHOD, workdir=workdir)
    from edgeres.quantize._nncf import NncfQuantizer

    return NncfQuantizer(src, calib, spec, per_channel=per_channel, method=config.method,
                         preset=config.preset, workdir=workdir)


def _top1(predictor: Any, data: DataSource, meta: ModelMeta, what: str,
          correct: dict[tuple[str, str], Any] | None = None,
          key: tuple[str, str] | None = None, ray: Any = None) -> float:
    """top-1 in percent, here or on the connected Ray cluster ``ray``; the per-image results go
    to ``correct[key]`` for paired statistics."""
    if ray is None:
        report = evaluate(predictor.run, data, meta, description=what)
    else:
        from edgeres.cluster import evaluate_on_cluster

        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        log.info("%s on the cluster (%d workers)", what, workers)
        report = evaluate_on_cluster(ray, predictor.path, data, meta, workers=workers)
    if correct is not None and key is not None:
        correct[key] = report.correct
    return report.top1


def _guard(fp32: Any, data: DataSource, meta: ModelMeta, name: str,
           correct: dict[tuple[str, str], Any], ray: Any = None) -> float:
    """fp32 top-1 on ``data``; near chance means the preprocessing or labels do not fit."""
    top1 = _top1(fp32, data, meta, f"fp32 on {name}", correct, (name, "fp32"), ray)
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
                    correct: dict[tuple[str, str], Any], ray: Any = None,
                    ) -> tuple[QuantAccuracy | None, Fallback | None, tuple[str, ...]]:
    """Measure int8 on the validation data; with a budget, return layers to float until it fits.

    With ``ray`` each top-1 is measured on the cluster, and the fallback search's candidates
    are scored there as parallel tasks (``fit_budget(measure_many=...)``): the same choice.
    """
    if val is None:
        return None, None, base
    name = str(config.val)
    fp32 = fp32_top1[name]

    def measure(path: Path) -> float:
        return _top1(q.load(path), val, meta, "int8 on val data", correct, (name, str(path)),
                     ray)

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
    if ray is not None:  # candidates as parallel Ray tasks, same choice
        from edgeres.cluster import candidate_top1

        def on_cluster(paths: list[Path]) -> list[float]:
            return candidate_top1(ray, paths, val, meta)

        measure_many = on_cluster
    floats, met, attempts = fit_budget(q, base=base, ranking=ranking, measure=measure,
                                       fp32_top1=fp32, budget=config.max_drop, first=first,
                                       measure_many=measure_many)
    sample = batches[0] if q.calibration.fixed_batch else batches[0][:1]
    fallback = _with_costs(q, base, floats, met, attempts, ranking, sample)
    return accuracy(q.build(floats)), fallback, floats


def _with_costs(q: Quantizer, base: tuple[str, ...], floats: tuple[str, ...], met: bool,
                attempts: list[Attempt], ranking: list[tuple[str, float]],
                sample: Any) -> Fallback:
    """Latency of the all-int8 model, the chosen one, and each chosen float layer alone."""
    added = [n for n in floats if n not in base]
    paths = {"int8": q.build(base), "chosen": q.build(floats)}
    paths.update({n: q.build((*base, n)) for n in added})
    ms = latency_ms(q, paths, sample)
    gains = dict(ranking)
    costs = tuple(LayerCost(n, gains.get(n, 0.0), ms[n] - ms["int8"]) for n in added)
    latency = {"int8": ms["int8"], "chosen": ms["chosen"]}
    return Fallback(floats, met, tuple(attempts), tuple(ranking), costs, latency)


def _warnings(fallback: Fallback | None, config: QuantConfig) -> tuple[str, ...]:
    if fallback is None or fallback.budget_met:
        return ()
    best = next(a for a in fallback.attempts if a.float_layers == fallback.floats)
    msg = (f"no mix of int8 and float layers met the {config.max_drop:g}-point budget; "
           f"kept the best (drop {best.drop:.2f} points with {len(best.float_layers)} float "
           "layer(s))")
    log.warning(msg)
    return (msg,)


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
