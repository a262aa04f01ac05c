"""The checks an exported graph must pass before it is written: validity and ORT parity.

``check_graph`` runs the full ``onnx.checker``, strict shape inference and checks that the
batch axis is still what was asked for. ``random_inputs`` and ``reference_outputs`` give seeded
inputs and the original PyTorch model's answers; ``compare`` runs the graph in ONNX Runtime
(CPUExecutionProvider) against them. All raise ``ExportError``, so a failing export never
reaches its output path. Private to ``edgeres.export`` (torch-side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from edgeres.errors import ExportError, first_line
from edgeres.meta import ModelMeta


@dataclass(frozen=True)
class Parity:
    """ONNX Runtime against the reference on the same inputs.

    Attributes:
        max_abs_err: largest |ORT - reference|, over the batch and a batch-1 rerun.
        max_rel_err: ``max_abs_err`` / max |reference|: relative to the output's scale, because
            an element-wise ratio blows up on logits near zero.
        top1_agreement: fraction of inputs with the same arg-max; None for a feature map.
        tolerance: the largest ``max_abs_err`` that passes (``atol + rtol * scale``).
    """

    max_abs_err: float
    max_rel_err: float
    top1_agreement: float | None
    tolerance: float


def _normalise(pixels: Tensor, meta: ModelMeta) -> Tensor:
    """The PyTorch reference for uint8 inputs: the same preprocessing, written plainly."""
    mean = torch.tensor(meta.preprocess.mean).reshape(1, -1, 1, 1)
    std = torch.tensor(meta.preprocess.std).reshape(1, -1, 1, 1)
    return (pixels.permute(0, 3, 1, 2).float() / 255.0 - mean) / std


def random_inputs(meta: ModelMeta, n: int, *, uint8: bool, multiple_of: int, seed: int) -> Tensor:
    """Seeded random inputs in the graph's form: N(0,1) NCHW floats, or uint8 NHWC pixels.

    ``n`` is rounded up to whole batches of ``multiple_of`` (a fixed-batch graph's size).
    """
    c, (h, w) = meta.input.channels, meta.input_size
    n = math.ceil(n / multiple_of) * multiple_of
    rng = np.random.default_rng(seed)
    try:
        if uint8:
            return torch.from_numpy(rng.integers(0, 256, (n, h, w, c), dtype=np.uint8))
        return torch.from_numpy(rng.standard_normal((n, c, h, w), dtype=np.float32))
    except (MemoryError, ValueError):  # numpy: cannot allocate / "array is too big"
        msg = (f"input size {h}x{w} is too large: {n} parity inputs of {c}x{h}x{w} do not fit "
               "in memory; choose a smaller --input-size")
        raise ExportError(msg) from None


@torch.no_grad()
def reference_outputs(model: nn.Module, inputs: Tensor, meta: ModelMeta) -> np.ndarray:
    """Outputs of the original model in eval mode; a model that cannot run is an ExportError."""
    x = _normalise(inputs, meta) if inputs.dtype == torch.uint8 else inputs
    try:
        out = model(x)
    except RuntimeError as e:
        first = first_line(e, 120)
        msg = (f"{meta.name} cannot run at input size {'x'.join(map(str, meta.input_size))} "
               f"({first}); choose another --input-size")
        raise ExportError(msg) from None
    expected = meta.num_classes or None
    if expected is not None and tuple(out.shape) != (x.shape[0], expected):
        msg = (f"{meta.name} outputs shape {tuple(out.shape)} but the record says "
               f"{expected} classes; check --num-classes and --labels")
        raise ExportError(msg)
    out = out.float().numpy()
    if not np.isfinite(out).all():  # else parity would blame ONNX Runtime (or fp16) for it
        msg = (f"{meta.name} itself outputs inf or NaN in PyTorch on random inputs; "
               "check the checkpoint's weights (a diverged training run?)")
        raise ExportError(msg)
    return out


def check_graph(data: bytes, out_name: str, batch: int | str) -> None:
    """Full onnx checker, strict shape inference, and the batch axis asked for.

    Args:
        data: the serialised model (bytes, so that neither check serialises it again).
        out_name: its output's name.
        batch: "dynamic" (the first axis must be symbolic) or the fixed batch size.

    Raises:
        ExportError: if the graph is invalid or its batch axis is not ``batch``.
    """
    try:
        onnx.checker.check_model(data, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(data, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = first_line(e, 160)
        msg = f"the exported graph is invalid ({first}); report this with the model name"
        raise ExportError(msg) from None
    values = {v.name: v for v in (*inferred.graph.input, *inferred.graph.output)}
    for name in ("input", out_name):
        dims = values[name].type.tensor_type.shape.dim if name in values else []
        ok = bool(dims) and (
            bool(dims[0].dim_param) if batch == "dynamic" else dims[0].dim_value == batch
        )
        if not ok:
            msg = f"the exported graph lost its batch axis on {name!r}; report this"
            raise ExportError(msg)


def _session(data: bytes, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # Verification, not benchmarking: stay within the caller's thread budget, no spin-waiting.
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT's exception types are not importable by name
        first = first_line(e, 160)
        msg = f"ONNX Runtime cannot load the exported graph ({first}); try another --opset"
        raise ExportError(msg) from None


def _run(sess: Any, inputs: np.ndarray, batch: int) -> np.ndarray:
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: inputs[i:i + batch]})[0] for i in range(0, len(inputs), batch)]
    return np.concatenate(outs)


def compare(
    data: bytes,
    inputs: np.ndarray,
    reference: np.ndarray,
    *,
    batch: int | str,
    atol: float,
    rtol: float,
    classes: int,
    threads: int = 1,
) -> Parity:
    """Run the serialised graph on ``inputs`` in ONNX Runtime and compare with ``reference``.

    Args:
        data: the serialised ONNX model.
        inputs: the graph's inputs, first axis the samples.
        reference: the expected outputs for ``inputs``.
        batch: "dynamic" (one batch of all inputs, then one of the first alone) or the fixed size.
        atol: absolute tolerance.
        rtol: tolerance relative to max |reference|.
        classes: number of classes (0: a feature map, no top-1).
        threads: ONNX Runtime intra-op threads.

    Returns:
        The measured ``Parity``.

    Raises:
        ExportError: if ORT cannot load the graph or the error is above tolerance.
    """
    sess = _session(data, threads)
    runs = [_run(sess, inputs, len(inputs) if batch == "dynamic" else int(batch))]
    if batch == "dynamic" and len(inputs) > 1:  # the symbolic axis must also take batch 1
        runs.append(_run(sess, inputs[:1], 1))
    return judge(runs, reference, atol=atol, rtol=rtol, classes=classes, runtime="ONNX Runtime")


def judge(runs: list[np.ndarray], reference: np.ndarray, *, atol: float, rtol: float,
          classes: int, runtime: str) -> Parity:
    """THE parity rule: ``runs`` (outputs of the first ``len(run)`` inputs each) against
    ``reference``, within ``atol + rtol * max|reference|``; the ONNX, LiteRT and ExecuTorch
    exports all pass through it.

    Raises:
        ExportError: naming ``runtime``, if an output is not finite or above tolerance.
    """
    ref = reference.astype(np.float64)
    errs = [float(np.abs(r.astype(np.float64) - ref[: len(r)]).max()) for r in runs]
    scale = float(np.abs(ref).max()) or 1.0
    if not all(math.isfinite(e) for e in errs):
        msg = (f"{runtime} returned inf or NaN where PyTorch's outputs reach {scale:.3g}; "
               "an fp16 graph overflows above 65504, so export this model in fp32")
        raise ExportError(msg)
    max_abs = max(errs)
    allowed = atol + rtol * scale
    got = runs[0]
    top1 = float((got.argmax(1) == reference.argmax(1)).mean()) if classes else None
    if not max_abs <= allowed:
        msg = (f"{runtime} disagrees with PyTorch: max abs error {max_abs:.3g} > tolerance "
               f"{allowed:.3g} (atol {atol:g} + rtol {rtol:g} x output scale {scale:.3g}); "
               "the export is wrong, nothing was written")
        raise ExportError(msg)
    return Parity(max_abs, max_abs / scale, top1, allowed)
