"""PyTorch → ONNX export that proves itself: folded BatchNorms, checker, ORT parity, metadata.

``export_onnx`` folds every BatchNorm (``edgeres.models.fold``), wraps the model for the input
and precision asked for (uint8 NHWC pixels, fp16), exports with the TorchScript exporter,
optionally simplifies with onnxslim, and then checks the result before it is renamed into place:
``onnx.checker`` (full check), strict shape inference (the batch axis must still be symbolic),
and ONNX Runtime against the original, unfolded PyTorch model on seeded random inputs. A result
outside tolerance raises ``ExportError`` and leaves no file. The ``ModelMeta`` record, with an
``export`` provenance step carrying the parity numbers, is stored under the single ``edgeres``
metadata key. ``zoo_meta`` (from ``edgeres.zoo``) builds the record for a zoo model.
"""

from __future__ import annotations

import dataclasses
import io
import math
import numbers
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from edgeres._fs import atomic_write, check_output, check_outputs
from edgeres._parity import Parity, check_graph, compare, random_inputs, reference_outputs
from edgeres._resources import check_memory, estimate_batch_bytes
from edgeres.errors import ConfigError, EdgeresError, ExportError, first_line
from edgeres.meta import (
    InputSpec,
    ModelMeta,
    read_onnx_meta,
    write_onnx_meta,
)
from edgeres.models.deploy import HalfPrecision, Uint8Input, eval_mode, fold_batchnorm
from edgeres.zoo import zoo_meta  # built without torch in edgeres.zoo

__all__ = ["ExportConfig", "ExportReport", "export_edge", "export_onnx", "seeded_model",
           "zoo_export"]

RANDOM_INIT_SEED = 0  # zoo models exported without weights (`export`, bench): reproducible

# 13: per-axis QuantizeLinear, which int8 quantization needs; 21: newest that ORT 1.18+ runs.
MIN_OPSET, MAX_OPSET = 13, 21
EXPORTER = "torchscript"
# The TorchScript exporter's own symbolics stop at opset 20; opset 21 (type extensions only
# for the ops ResNets use) is reached with onnx's version converter.
_TORCHSCRIPT_MAX_OPSET = 20
# Parity tolerance: |ort - torch| <= atol + rtol * max|torch|. fp32 reordering (BN folding,
# different conv algorithms) measures ~1e-6 of the output scale on the whole zoo, so 1e-4 is a
# 100x margin that still fails a wrong or missing layer by orders of magnitude. fp16 keeps 11
# significant bits: the zoo measures 3e-4 to 1.1e-3 of the output scale, so 1e-2 is a 10x margin.
_TOLERANCES = {False: (1e-4, 1e-4), True: (1e-3, 1e-2)}  # fp16 → (atol, rtol)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class ExportConfig:
    """How to export; validated when built (CONTRIBUTING R5).

    Attributes:
        opset: ONNX opset, 13 to 21.
        batch: "dynamic" for a symbolic batch axis, or a fixed positive batch size.
        fp16: half-precision weights and activations; inputs and outputs stay float32.
        uint8_input: the graph takes uint8 NHWC pixels and normalises them itself.
        simplify: run onnxslim on the exported graph (and verify again).
        atol: absolute parity tolerance; None for the precision's default.
        rtol: parity tolerance relative to the output's largest magnitude; None for default.
        parity_inputs: number of random inputs compared against PyTorch.
        seed: seed of those inputs.
    """

    opset: int = 17
    batch: int | Literal["dynamic"] = "dynamic"
    fp16: bool = False
    uint8_input: bool = False
    simplify: bool = False
    atol: float | None = None
    rtol: float | None = None
    parity_inputs: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.opset, int) or not MIN_OPSET <= self.opset <= MAX_OPSET:
            msg = f"opset {self.opset} is unsupported; use {MIN_OPSET} to {MAX_OPSET} (17 default)"
            raise ConfigError(msg)
        if self.batch != "dynamic" and (
            isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1
        ):
            msg = f"batch {self.batch!r} is invalid; use 'dynamic' or a positive batch size"
            raise ConfigError(msg)
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if value is not None and not (
                _is_number(value) and value >= 0 and math.isfinite(value)
            ):
                msg = f"{name} {value!r} is invalid; a tolerance is a finite number >= 0"
                raise ConfigError(msg)
        for name, least in (("parity_inputs", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                msg = f"{name} {value!r} is invalid; use a whole number >= {least}"
                raise ConfigError(msg)

    @property
    def tolerance(self) -> tuple[float, float]:
        """``(atol, rtol)`` with the precision's defaults filled in."""
        atol, rtol = _TOLERANCES[self.fp16]
        return (atol if self.atol is None else self.atol, rtol if self.rtol is None else self.rtol)


@dataclass(frozen=True)
class ExportReport:
    """What ``export_onnx`` wrote and measured.

    Attributes:
        path: the ONNX file.
        opset: its opset.
        exporter: "torchscript".
        seconds: wall time of the whole call, verification included.
        export_seconds: time spent in ``torch.onnx.export`` alone.
        max_abs_err: largest |ONNX Runtime - PyTorch| over the parity inputs.
        max_rel_err: ``max_abs_err`` divided by the largest |PyTorch output|.
        top1_agreement: fraction of inputs with the same arg-max (None for a feature map).
        tolerance: the largest ``max_abs_err`` that would have passed.
        parity_inputs: how many random inputs were compared.
        node_counts: ONNX op type → node count.
        size_bytes: file size.
        meta: the record stored in the file.
    """

    path: Path
    opset: int
    exporter: str
    seconds: float
    export_seconds: float
    max_abs_err: float
    max_rel_err: float
    top1_agreement: float | None
    tolerance: float
    parity_inputs: int
    node_counts: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0
    meta: ModelMeta | None = None

    @property
    def num_nodes(self) -> int:
        """Total nodes in the graph."""
        return sum(self.node_counts.values())


def seeded_model(name: str, *, num_classes: int | None = None,
                 seed: int = RANDOM_INIT_SEED) -> nn.Module:
    """Zoo model ``name`` with a fixed-seed random init, leaving the caller's generator alone."""
    from edgeres.models import create_model

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return create_model(name, num_classes=num_classes)


def zoo_export(
    name: str,
    *,
    weights: str | None = None,
    num_classes: int | None = None,
    labels: list[str] | tuple[str, ...] | None = None,
    input_size: int | tuple[int, ...] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> tuple[nn.Module, ModelMeta]:
    """The network and record to export for zoo model ``name``.

    The class count comes from the checkpoint when ``weights`` is given (``num_classes`` is
    then only checked against it), else from ``num_classes``, else from ``labels``, else the
    registry. Without weights the network gets a fixed-seed random init and a warning.

    Args:
        name: registered model name.
        weights: checkpoint path or registered weights name; None for a random init.
        num_classes: expected classes.
        labels: one label per class.
        input_size, mean, std: as for ``zoo_meta``.

    Returns:
        ``(network, record)`` for ``export_onnx``.

    Raises:
        UnknownModelError, CheckpointError, ConfigError: as the steps they come from.
    """
    import logging

    from edgeres.models.weights import load_weights

    loaded = load_weights(name, weights, num_classes=num_classes) if weights else None
    if loaded is not None:
        num_classes = loaded.num_classes
    elif num_classes is None and labels:  # no checkpoint: the labels say how many classes
        num_classes = len(labels)
    meta = zoo_meta(name, num_classes=num_classes, input_size=input_size, labels=labels,
                    mean=mean, std=std, weights_sha256=loaded.sha256 if loaded else None)
    if loaded is not None:
        return loaded.model, meta
    logging.getLogger(__name__).warning(
        "no weights: %s gets a fixed-seed random init, so its accuracy is meaningless", name)
    return seeded_model(name, num_classes=meta.num_classes), meta


def _to_onnx(module: nn.Module, example: Tensor, out_name: str, config: ExportConfig) -> bytes:
    """Run the TorchScript exporter and return the serialised model (weights inline)."""
    dynamic = {"input": {0: "batch"}, out_name: {0: "batch"}} if config.batch == "dynamic" else None
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # torch 2.9+ flags the TorchScript exporter as legacy on every call; choosing it is
        # deliberate (see export_onnx), so its two deprecation notices are noise here.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message=".*feature will be removed")
        # The option-A shortcut's strided Slice is left to ORT instead of folded: not a problem.
        warnings.filterwarnings("ignore", message=".*Only steps=1 can be constant folded")
        # TorchScript exporter, not dynamo: about 1 s for ResNet-50 with the weights inline in
        # one file, against about 4 s and a separate .onnx.data file for torch.export.
        torch.onnx.export(
            # The TorchScript exporter writes to any binary file object; torch's hint names
            # paths only (it is shared with the dynamo exporter, which needs a path).
            module, (example,), buf, dynamo=False,  # type: ignore[arg-type]
            opset_version=min(config.opset, _TORCHSCRIPT_MAX_OPSET),
            input_names=["input"], output_names=[out_name], dynamic_axes=dynamic,
            do_constant_folding=True, export_params=True,
        )
    return buf.getvalue()


def _simplify(proto: onnx.ModelProto) -> onnx.ModelProto:
    try:
        import onnxslim
    except ImportError:
        from edgeres.errors import missing_extra

        package = "onnxslim"
        raise missing_extra(package, "torch") from None
    return onnxslim.slim(proto)


def _export_meta(meta: ModelMeta, config: ExportConfig) -> ModelMeta:
    """The record as the exported graph will be: input form, batch axis and precision."""
    c, (h, w) = meta.input.channels, meta.input_size
    if min(h, w, c) < 1:
        msg = f"input size {h}x{w} with {c} channel(s) is invalid; sizes must be positive"
        raise ConfigError(msg)
    b = "batch" if config.batch == "dynamic" else config.batch
    if config.uint8_input:
        spec = InputSpec(shape=(b, h, w, c), layout="NHWC", dtype="uint8", normalized_in_graph=True)
    else:
        spec = InputSpec(shape=(b, c, h, w))
    return meta.evolve(input=spec, precision="fp16" if config.fp16 else "fp32")


def _graph_module(model: nn.Module, meta: ModelMeta, config: ExportConfig) -> nn.Module:
    """The module that is exported: BatchNorms folded, then the precision and input wrappers."""
    module = fold_batchnorm(model)
    if config.fp16:
        module = HalfPrecision(module)
    if config.uint8_input:
        module = Uint8Input(module, meta.preprocess.mean, meta.preprocess.std)
    return module.eval()


def _convert_opset(proto: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    from onnx import version_converter

    try:
        return version_converter.convert_version(proto, opset)
    except Exception as e:  # the converter raises RuntimeError and onnx's own types
        first = first_line(e, 120)
        msg = f"cannot convert the graph to opset {opset} ({first}); use --opset 20 or lower"
        raise ExportError(msg) from None


def _export_graph(
    module: nn.Module, example: Tensor, out_name: str, config: ExportConfig
) -> tuple[onnx.ModelProto, bytes, float]:
    """Export (and optionally simplify) ``module``; return the proto, its bytes and export time."""
    t0 = time.perf_counter()
    data = _to_onnx(module, example, out_name, config)
    seconds = time.perf_counter() - t0
    proto = onnx.load_from_string(data)
    if config.opset > _TORCHSCRIPT_MAX_OPSET:
        proto = _convert_opset(proto, config.opset)
    if config.simplify:
        proto = _simplify(proto)
    if config.simplify or config.opset > _TORCHSCRIPT_MAX_OPSET:
        data = proto.SerializeToString()
    check_graph(data, out_name, config.batch)
    if any(node.op_type == "BatchNormalization" for node in proto.graph.node):
        msg = "a BatchNormalization survived folding; report this with the model name"
        raise ExportError(msg)
    return proto, data, seconds


def _with_export_step(meta: ModelMeta, config: ExportConfig, parity: Parity, n: int) -> ModelMeta:
    return meta.with_step(
        "export", input_sha256=meta.weights_sha256, exporter=EXPORTER, torch=torch.__version__,
        opset=config.opset, batch=config.batch, fp16=config.fp16,
        uint8_input=config.uint8_input, simplify=config.simplify, parity_inputs=n,
        max_abs_err=parity.max_abs_err, max_rel_err=parity.max_rel_err,
        top1_agreement=parity.top1_agreement, tolerance=parity.tolerance,
    )


def _save(proto: onnx.ModelProto, meta: ModelMeta, tmp: Path, dst: Path) -> int:
    """Store the record, check it reads back identically, write ``tmp``; return its size."""
    write_onnx_meta(proto, meta)
    stored = read_onnx_meta(proto)
    if stored is None or stored.to_json() != meta.to_json():
        msg = "the metadata record does not round-trip through ONNX; report this"
        raise ExportError(msg)
    try:
        onnx.save(proto, tmp)
    except OSError as e:
        msg = f"cannot write {dst}: {e.strerror}; choose a writable output path"
        raise ExportError(msg) from None
    return tmp.stat().st_size


def _check_batch_memory(meta: ModelMeta, config: ExportConfig) -> None:
    """Refuse a fixed ``--batch`` whose parity inputs (rounded up to whole batches, run through
    PyTorch and ONNX Runtime at once) would not fit in memory, naming --batch and the figure."""
    if config.batch == "dynamic" or config.batch <= config.parity_inputs:
        return
    c, (h, w) = meta.input.channels, meta.input_size
    need = estimate_batch_bytes(config.batch, c * h * w * 4, runtimes=2)
    check_memory(need, f"--batch {config.batch} (parity runs {config.batch} inputs of "
                 f"{c}x{h}x{w} through PyTorch and ONNX Runtime)", "choose a smaller --batch")


def export_onnx(
    model: nn.Module, dst: Path, *, meta: ModelMeta, config: ExportConfig | None = None
) -> ExportReport:
    """Export ``model`` to ``dst`` as ONNX, verified against PyTorch, with its metadata record.

    The model is not modified (folding works on a copy). Nothing is written unless every check
    passes: onnx checker, strict shape inference, batch axis, no BatchNormalization, ORT parity.

    Args:
        model: the PyTorch model (its eval-mode function is exported).
        dst: the ``.onnx`` file to write; its directory must exist.
        meta: the record for a float32 NCHW input (see ``zoo_meta``); input form, precision and
            an ``export`` provenance step are filled in from ``config``.
        config: export options; ``ExportConfig()`` when None.

    Returns:
        An ``ExportReport`` with the parity numbers, node counts, size and the stored record.

    Raises:
        ExportError: if the model cannot run at the record's input size, the graph fails a
            check, parity is above tolerance, or ``dst`` cannot be written.
    """
    config = ExportConfig() if config is None else config
    start = time.perf_counter()
    dst = Path(dst)
    check_output(dst)  # an unwritable path or a folder fails before any work; the temp comes later
    out_name = "logits" if meta.num_classes else "features"
    meta = _export_meta(meta, config)
    _check_batch_memory(meta, config)
    inputs = random_inputs(meta, config.parity_inputs, uint8=config.uint8_input,
                           multiple_of=1 if config.batch == "dynamic" else config.batch,
                           seed=config.seed)
    with eval_mode(model):
        ref = reference_outputs(model, inputs, meta)
        module = _graph_module(model, meta, config)
    example = inputs[: 2 if config.batch == "dynamic" else config.batch]
    proto, data, export_seconds = _export_graph(module, example, out_name, config)
    atol, rtol = config.tolerance
    parity = compare(
        data, inputs.numpy(), ref, batch=config.batch, atol=atol, rtol=rtol,
        classes=meta.num_classes, threads=torch.get_num_threads(),
    )
    meta = _with_export_step(meta, config, parity, len(inputs))
    with atomic_write(dst) as tmp:
        size = _save(proto, meta, tmp, dst)
    return ExportReport(
        path=dst, opset=config.opset, exporter=EXPORTER, seconds=time.perf_counter() - start,
        export_seconds=export_seconds, max_abs_err=parity.max_abs_err,
        max_rel_err=parity.max_rel_err, top1_agreement=parity.top1_agreement,
        tolerance=parity.tolerance, parity_inputs=len(inputs),
        node_counts=dict(Counter(node.op_type for node in proto.graph.node)),
        size_bytes=size, meta=meta,
    )


# --- LiteRT (.tflite) and ExecuTorch (.pte): the same checks, another converter -------------

EDGE_FORMATS = {"tflite": "litert", "pte": "executorch"}  # --format -> runtime module
_EDGE_EXPORTERS = {"tflite": "litert-torch", "pte": "executorch (XNNPACK)"}
_EDGE_RUNTIMES = {"tflite": "LiteRT", "pte": "ExecuTorch"}


def _edge_config(config: ExportConfig, fmt: str) -> int:
    """The fixed batch of a .tflite/.pte export; options that are ONNX's alone are refused."""
    for flag, used in (("--fp16", config.fp16), ("--uint8-input", config.uint8_input),
                       ("--simplify", config.simplify)):
        if used:
            msg = f"{flag} applies to ONNX exports; drop it for --format {fmt}"
            raise ConfigError(msg)
    return 1 if config.batch == "dynamic" else config.batch  # fixed: see runtimes/litert.py


def export_edge(model: nn.Module, dst: Path, *, meta: ModelMeta, fmt: str,
                config: ExportConfig | None = None) -> ExportReport:
    """Export ``model`` to a LiteRT ``.tflite`` or ExecuTorch ``.pte`` with a fixed batch,
    verified against PyTorch with the ONNX export's parity rule (``_parity.judge``) and the
    record stored with it (inside the .tflite; ``<file>.pte.json`` beside a .pte).

    Args:
        model: the PyTorch model.
        dst: the file to write (``.tflite`` or ``.pte``).
        meta: the record for a float32 NCHW input (see ``zoo_meta``).
        fmt: "tflite" or "pte".
        config: export options; ``batch`` "dynamic" means 1 here (these graphs are fixed).

    Returns:
        An ``ExportReport`` (``opset`` 0: not an ONNX file; no node counts).

    Raises:
        ExportError: a converter failure, parity above tolerance, or an unwritable ``dst``.
        BackendNotAvailable: the format's extra is not installed.
    """
    import importlib

    from edgeres._fs import atomic_files
    from edgeres._parity import judge

    config = ExportConfig() if config is None else config
    start = time.perf_counter()
    dst = Path(dst)
    runtime = importlib.import_module(f"edgeres.runtimes.{EDGE_FORMATS[fmt]}")
    outputs = [dst, *runtime.RUNTIME.companion_files(dst)]
    check_outputs(outputs)
    batch = _edge_config(config, fmt)
    meta = _export_meta(meta, dataclasses.replace(config, batch=batch))
    inputs = random_inputs(meta, config.parity_inputs, uint8=False, multiple_of=batch,
                           seed=config.seed)
    with eval_mode(model):
        ref = reference_outputs(model, inputs, meta)
        module = _graph_module(model, meta, config)
    t0 = time.perf_counter()
    try:
        data = runtime.convert(module, inputs[:batch])
    except (ImportError, EdgeresError):
        raise
    except Exception as e:  # converters raise their own types, with long texts
        msg = f"{_EDGE_EXPORTERS[fmt]} could not convert {meta.name} ({first_line(e, 160)})"
        raise ExportError(msg) from None
    export_seconds = time.perf_counter() - t0
    run = runtime.bytes_runner(data, torch.get_num_threads())
    x = inputs.numpy()
    got = np.concatenate([run(x[i:i + batch]) for i in range(0, len(x), batch)])
    atol, rtol = config.tolerance
    parity = judge([got], ref, atol=atol, rtol=rtol, classes=meta.num_classes,
                   runtime=_EDGE_RUNTIMES[fmt])
    meta = meta.with_step(
        "export", input_sha256=meta.weights_sha256, exporter=_EDGE_EXPORTERS[fmt], format=fmt,
        torch=torch.__version__, batch=batch, parity_inputs=len(x),
        max_abs_err=parity.max_abs_err, max_rel_err=parity.max_rel_err,
        top1_agreement=parity.top1_agreement, tolerance=parity.tolerance,
    )
    with atomic_files(*outputs) as tmps:
        if fmt == "pte":
            runtime.write_model(tmps[dst], data, meta, tmps[outputs[1]])
        else:
            runtime.write_model(tmps[dst], data, meta)
    return ExportReport(
        path=dst, opset=0, exporter=_EDGE_EXPORTERS[fmt], seconds=time.perf_counter() - start,
        export_seconds=export_seconds, max_abs_err=parity.max_abs_err,
        max_rel_err=parity.max_rel_err, top1_agreement=parity.top1_agreement,
        tolerance=parity.tolerance, parity_inputs=len(x), size_bytes=dst.stat().st_size,
        meta=meta,
    )
