"""Activation ranges for ONNX Runtime QDQ, computed in bounded memory, one batch at a time.

ONNX Runtime's histogram calibrators keep every activation of every calibration sample until
the end (100+ GB for ResNet-50 reported in onnxruntime#10503 and #11020). Here memory is one
batch: MinMax feeds ORT's own ``MinMaxCalibrater`` one batch per ``collect_data`` call (it
reduces in the graph and merges ranges after each call), and Entropy/Percentile make a second
pass that adds each batch into a fixed-range histogram per tensor (range from the MinMax pass,
so the result does not depend on batch order or size). Thresholds come from those histograms:
TensorRT's KL-divergence search (Migacz, GTC 2017, s7310) or a two-sided percentile.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeres._progress import track
from edgeres.preprocess import check_finite

if TYPE_CHECKING:
    from edgeres.calibration import CalibrationSet

Ranges = dict[str, tuple[float, float]]

HIST_BINS = 2048  # TensorRT's histogram size; even, so bin edges are symmetric about zero
QUANTIZED_BINS = 128  # levels on one side of an 8-bit symmetric grid
PERCENTILE = 99.99  # two-sided: 0.005% of values are clipped on each side
OUTPUT_BUDGET = 256 << 20  # bytes of exposed activations per run in the histogram pass


class _OneBatch:
    """ORT ``CalibrationDataReader`` protocol over a single feed (ORT checks ``get_next``)."""

    def __init__(self, feed: dict[str, np.ndarray]) -> None:
        self._feed: dict[str, np.ndarray] | None = feed

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed, self._feed = self._feed, None
        return feed


def collect_ranges(model: Path, batches: CalibrationSet, total: int,
                   method: str, workdir: Path) -> Ranges:
    """Per-tensor (low, high) ranges of every float activation of ``model``.

    Args:
        model: the pre-processed float ONNX model.
        batches: the calibration set (iterated once per pass).
        total: batches per pass, for progress.
        method: "minmax", "entropy" or "percentile".
        workdir: temporary directory for the augmented models.

    Returns:
        Tensor name → (low, high), as float32-representable floats.
    """
    minmax = _minmax(model, batches, total, workdir)
    if method == "minmax":
        return minmax
    hists = _histograms(model, batches, total, minmax, method, workdir)
    pick = _entropy_range if method == "entropy" else _percentile_range
    out = {}
    for name, (lo, hi) in minmax.items():
        out[name] = pick(hists[name], lo, hi) if name in hists else (lo, hi)
    return out


def _minmax(model: Path, batches: Iterable[dict[str, np.ndarray]], total: int,
            workdir: Path) -> Ranges:
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    calibrator = create_calibrator(
        model, None, augmented_model_path=str(workdir / "minmax-augmented.onnx"),
        calibrate_method=CalibrationMethod.MinMax,
    )
    for feed in track(batches, total=total, description="calibrating: ranges"):
        calibrator.collect_data(_OneBatch(feed))  # merges this batch into the running range
    data = calibrator.compute_data()
    ranges = {}
    for name, td in data.items():
        lo, hi = (float(np.asarray(v, dtype=np.float64).reshape(-1)[0]) for v in td.range_value)
        # NaN or infinity here is a broken model (ORT's quantizer failed later, naming a
        # missing parameter or "scale issue"): said now, in one line
        check_finite(np.array([lo, hi]), f"tensor {name} on the calibration data")
        ranges[name] = (lo, hi)
    return ranges


def _histograms(model: Path, batches: CalibrationSet, total: int,
                ranges: Ranges, method: str, workdir: Path) -> dict[str, np.ndarray]:
    session, names, inputs = _exposing_session(model, ranges, workdir)
    fixed = any(isinstance(i.shape[0], int) for i in session.get_inputs() if i.shape)
    edges = {n: _hist_range(*ranges[n], method) for n in ranges}
    hists: dict[str, np.ndarray] = {}
    chunk = None  # samples per run, sized after the first run so outputs fit OUTPUT_BUDGET
    counted = batches.counted()
    for feed, real in track(counted, total=total, description="calibrating: histograms"):
        n = len(next(iter(feed.values())))
        start = 0
        while start < n:
            size = n if fixed else (1 if chunk is None else chunk)
            part = {k: v[start : start + size] for k, v in feed.items()}
            outputs = session.run(names, part)
            if chunk is None:
                chunk = max(1, OUTPUT_BUDGET // max(1, sum(o.nbytes for o in outputs)))
            for name, value in zip(names, outputs, strict=True):
                _accumulate(hists, name, _real_samples(value, n, real), edges[name])
            for name in inputs:
                _accumulate(hists, name, _real_samples(part[name], n, real), edges[name])
            del outputs
            start += size
    return hists


def _real_samples(value: np.ndarray, batch: int, real: int) -> np.ndarray:
    """``value`` without the samples that only fill up a fixed-size last batch.

    A filled batch runs whole (``fixed`` graphs run one batch per call), so a tensor with the
    batch axis first holds the ``real`` samples first; tensors without that axis are kept.
    """
    if real < batch and value.ndim and value.shape[0] == batch:
        return value[:real]
    return value


def _accumulate(hists: dict[str, np.ndarray], name: str, value: np.ndarray,
                edges: tuple[float, float, int, bool]) -> None:
    lo, hi, bins, magnitude = edges
    if bins == 0:
        return
    if magnitude:
        value = np.abs(value)
    counts, _ = np.histogram(value, bins=bins, range=(lo, hi))
    if name in hists:
        hists[name] += counts
    else:
        hists[name] = counts.astype(np.int64)


def _hist_range(lo: float, hi: float, method: str) -> tuple[float, float, int, bool]:
    """(low, high, bins, count magnitudes) of one tensor's histogram; 0 bins: constant."""
    if method == "entropy":  # the KL search runs on magnitudes, as TensorRT's does
        a = max(abs(lo), abs(hi))
        return (0.0, a, HIST_BINS if a > 0 else 0, True)
    return (lo, hi, HIST_BINS if hi > lo else 0, False)


def _exposing_session(model: Path, ranges: Ranges, workdir: Path) -> tuple[Any, list, list]:
    """An ORT session whose outputs are the calibrated tensors (graph inputs are fed, not run)."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(model))
    graph_inputs = {i.name for i in proto.graph.input}
    present = {o.name for o in proto.graph.output}
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*proto.graph.value_info, *proto.graph.output)}
    for name in ranges:
        if name not in present and name not in graph_inputs:
            elem = types.get(name, onnx.TensorProto.FLOAT)
            proto.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
    path = workdir / "histogram-augmented.onnx"
    onnx.save(proto, str(path))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs() if o.name in ranges]
    inputs = [n for n in ranges if n in graph_inputs]
    return session, names, inputs


def _percentile_range(hist: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    total = hist.sum()
    if total == 0:
        return lo, hi
    cdf = np.cumsum(hist) / total
    cut = (100.0 - PERCENTILE) / 200.0
    width = (hi - lo) / len(hist)
    left = int(np.searchsorted(cdf, cut, side="right"))
    right = int(np.searchsorted(cdf, 1.0 - cut, side="left"))
    return max(lo, lo + left * width), min(hi, lo + (right + 1) * width)


def _entropy_range(hist: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """Clip |x| at the threshold whose 128-level quantization loses least information.

    ``hist`` counts |x| on [0, max|x|]. As in NVIDIA's pytorch-quantization, the first bin is
    flattened to its neighbour's height first: a ReLU output's spike of exact zeros would
    otherwise favour tiny thresholds that represent the spike exactly and clip everything else.
    """
    n = len(hist)
    a = max(abs(lo), abs(hi))
    h = hist.astype(np.float64)
    if n < 2 or h.sum() == 0:
        return lo, hi
    h[0] = h[1]
    best, best_i = math.inf, n
    for i in range(QUANTIZED_BINS, n + 1):
        kl = _kl_at(h, i)
        if kl < best:
            best, best_i = kl, i
    t = best_i * a / n
    return max(lo, -t), min(hi, t)


def _kl_at(h: np.ndarray, end: int) -> float:
    """KL(P || Q): P the histogram clipped at bin ``end``, Q its 128-level quantization."""
    p = h[:end].copy()
    p[-1] += h[end:].sum()
    groups = np.arange(end) * QUANTIZED_BINS // end
    nonzero = p > 0
    level_sum = np.bincount(groups, weights=h[:end], minlength=QUANTIZED_BINS)
    level_bins = np.bincount(groups, weights=nonzero, minlength=QUANTIZED_BINS)
    # A level's mass is spread over its non-empty bins only (TensorRT's expansion).
    q = np.where(nonzero, level_sum[groups] / np.maximum(level_bins[groups], 1), 0.0)
    p_sum, q_sum = p.sum(), q.sum()
    if p_sum == 0 or q_sum == 0:
        return math.inf
    p, q = p[nonzero] / p_sum, q[nonzero] / q_sum
    q = np.maximum(q, 1e-12)  # clipped outliers may land in an empty level: heavy penalty
    return float(np.sum(p * np.log(p / q)))


def quiet() -> contextlib.AbstractContextManager:
    """Swallow the progress lines ORT's quantizer prints on stdout (library code never prints)."""
    return contextlib.redirect_stdout(io.StringIO())
