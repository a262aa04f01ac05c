"""Accuracy-aware float fallback: which layers go back to float, why, and what each costs.

The loop follows NNCF's ``quantize_with_accuracy_control`` in spirit and makes every step
visible. Layers are ranked by how much returning each one alone to float improves the
model's output SQNR against fp32 on calibration images (continuous and label-free, so the
ranking does not chase noise in a small validation set). Then the 1, 2, 4, ... most sensitive
layers go back to float, each candidate measured on the validation data, until the top-1 drop
is within budget; a bisection then finds the fewest that suffice. Every attempt is recorded,
and the latency of each float layer is measured against the all-int8 model. Also here: the
per-layer SQNR report of a quantized model.
"""

from __future__ import annotations

import functools
import logging
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeres._progress import track
from edgeres._timing import measure
from edgeres.preprocess import check_finite
from edgeres.quantize._protocol import Quantizer  # the one interface every backend satisfies

log = logging.getLogger(__name__)

LATENCY_ROUNDS = 5  # interleaved rounds; the median of the per-round medians is reported
LATENCY_RUNS = 10  # inferences per model per round


@dataclass(frozen=True)
class Attempt:
    """One candidate measured on the validation data.

    Attributes:
        float_layers: layers left in float.
        top1: validation top-1 in percent.
        drop: fp32 top-1 minus this top-1, in points.
    """

    float_layers: tuple[str, ...]
    top1: float
    drop: float


@dataclass(frozen=True)
class LayerCost:
    """A layer returned to float: why (its sensitivity) and what it costs.

    Attributes:
        name: the layer (ONNX node name).
        sqnr_gain_db: output SQNR gained by leaving only this layer in float.
        latency_cost_ms: latency of that model minus the all-int8 model (batch 1).
    """

    name: str
    sqnr_gain_db: float
    latency_cost_ms: float | None


@dataclass(frozen=True)
class Fallback:
    """The outcome of the accuracy-aware loop.

    Attributes:
        floats: the chosen float layers (empty when all-int8 already met the budget).
        budget_met: whether the chosen model's drop is within budget.
        attempts: every candidate measured, in order.
        ranking: (layer, SQNR gain in dB) for every ranked layer, most sensitive first.
        costs: sensitivity and latency cost of each chosen float layer.
        latency_ms: batch-1 latency of the all-int8 and of the chosen model.
    """

    floats: tuple[str, ...]
    budget_met: bool
    attempts: tuple[Attempt, ...]
    ranking: tuple[tuple[str, float], ...]
    costs: tuple[LayerCost, ...]
    latency_ms: dict[str, float]


@dataclass(frozen=True)
class LayerError:
    """Quantization error of one layer's output against fp32.

    Attributes:
        name: the layer (ONNX node name).
        op_type: its operator.
        sqnr_db: 10*log10(signal power / error power) of its output; higher is better.
        float: whether the layer was left in float.
    """

    name: str
    op_type: str
    sqnr_db: float
    float: bool


def sqnr_db(reference: Sequence[np.ndarray], other: Sequence[np.ndarray]) -> float:
    """Signal-to-quantization-noise ratio in dB of ``other`` against ``reference``.

    Returns +inf when the two are identical and -inf for an all-zero reference with error.
    """
    signal = sum(float(np.sum(np.square(r, dtype=np.float64))) for r in reference)
    noise = sum(float(np.sum(np.square(np.asarray(o, np.float64) - r)))
                for r, o in zip(reference, other, strict=True))
    return _ratio_db(signal, noise)


def _ratio_db(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def layer_errors(q: Quantizer, path: Path, batches: Iterable[np.ndarray],
                 floats: Sequence[str]) -> list[LayerError]:
    """SQNR of every weighted layer's output in ``path`` against the fp32 model.

    Streams: one batch of both models' layer outputs is in memory at a time.

    Args:
        q: the backend that built ``path``.
        path: the quantized model.
        batches: calibration input batches.
        floats: layers left in float (marked in the report).
    """
    pairs = q.compare_tensors(path)
    ref = q.tensor_runner(q.fp32_path, [r for r, _ in pairs.values()])
    got = q.tensor_runner(path, [g for _, g in pairs.values()])
    power: dict[str, list[float]] = {}
    for x in batches:
        a, b = ref(x), got(x)
        for r, _ in pairs.values():
            if r in a:
                check_finite(a[r], f"{q.meta.name} (layer {r}, on calibration data)")
        for layer, (r, g) in pairs.items():
            if r in a and g in b:
                signal, noise = power.setdefault(layer, [0.0, 0.0])
                diff = np.asarray(b[g], np.float64) - a[r]
                power[layer] = [signal + float(np.sum(np.square(a[r], dtype=np.float64))),
                                noise + float(np.sum(np.square(diff)))]
    return [LayerError(layer, q.op_types.get(layer, "?"), _ratio_db(*power[layer]),
                       layer in floats) for layer in pairs if layer in power]


def rank_layers(q: Quantizer, base: tuple[str, ...], batches: list[np.ndarray],
                reference: list[np.ndarray]) -> list[tuple[str, float]]:
    """Layers by the output SQNR gained when each alone returns to float, largest first."""
    base_sqnr = sqnr_db(reference, _outputs(q, q.build(base), batches))
    gains = []
    candidates = [n for n in q.layers if n not in base]
    for layer in track(candidates, total=len(candidates), description="ranking layers"):
        got = _outputs(q, q.build((*base, layer)), batches)
        gains.append((layer, _finite(sqnr_db(reference, got)) - _finite(base_sqnr)))
    gains.sort(key=lambda item: -item[1])  # stable: ties keep graph order
    return gains


def fit_budget(q: Quantizer, *, base: tuple[str, ...], ranking: list[tuple[str, float]],
               measure: Callable[[Path], float], fp32_top1: float, budget: float,
               first: Attempt, measure_many: Callable[[list[Path]], list[float]] | None = None,
               ) -> tuple[tuple[str, ...], bool, list[Attempt]]:
    """Return the fewest most-sensitive layers to float so the drop is within ``budget``.

    Tries the top 1, 2, 4, ... layers, then bisects between the last failing and the first
    passing count. When no count passes, the best attempt is kept. With ``measure_many``
    (top-1 of several files at once, e.g. as Ray tasks: ``edgeres.cluster``), the whole
    1, 2, 4, ... ladder is measured in one go, then every count the bisection could visit;
    the choice is the same as one at a time, with more candidates measured.

    Returns:
        (float layers including ``base``, whether the budget holds, every attempt).
    """
    order = [name for name, _ in ranking]
    attempts = [first]
    tried: dict[int, Attempt] = {0: first}

    def attempt(k: int) -> Attempt:
        if k not in tried:
            floats = (*base, *order[:k])
            top1 = measure(q.build(floats))
            tried[k] = Attempt(floats, top1, fp32_top1 - top1)
            attempts.append(tried[k])
            log.info("float %d layer(s): top-1 %.2f (drop %.2f)", k, top1, fp32_top1 - top1)
        return tried[k]

    def prefetch(counts: Iterable[int]) -> None:
        todo = [k for k in dict.fromkeys(counts) if k not in tried]
        if measure_many is None or len(todo) < 2:
            return
        for k, top1 in zip(todo, measure_many([q.build((*base, *order[:k])) for k in todo]),
                           strict=True):
            tried[k] = Attempt((*base, *order[:k]), top1, fp32_top1 - top1)
            attempts.append(tried[k])

    ladder = _ladder(len(order))
    prefetch(ladder)
    low, high = 0, None  # low fails; high passes
    for k in ladder:
        if attempt(k).drop <= budget:
            high = k
            break
        low = k
    if high is None:
        best = max(attempts, key=lambda a: (a.top1, -len(a.float_layers)))
        return best.float_layers, False, attempts
    prefetch(range(low + 1, high))
    high = _bisect(lambda k: attempt(k).drop <= budget, low, high)
    return tried[high].float_layers, True, attempts


def _bisect(passes: Callable[[int], bool], low: int, high: int) -> int:
    """The smallest count in (low, high] that passes, given that ``low`` fails and ``high``
    passes."""
    while high - low > 1:
        mid = (low + high) // 2
        if passes(mid):
            high = mid
        else:
            low = mid
    return high


def _ladder(n: int) -> list[int]:
    """1, 2, 4, ... up to ``n``, ending at ``n`` itself."""
    counts, k = [], 1
    while k <= n:
        counts.append(k)
        k = n if k * 2 > n and k < n else k * 2
    return counts


def latency_ms(q: Quantizer, paths: dict[str, Path], sample: np.ndarray) -> dict[str, float]:
    """Batch-1 latency of each model, one thread, interleaved rounds (median of medians)."""
    preds = {key: q.load(path, threads=1) for key, path in paths.items()}
    timings = measure({key: functools.partial(pred.run, sample) for key, pred in preds.items()},
                      warmup=1, rounds=LATENCY_ROUNDS, iterations=LATENCY_RUNS)
    return {k: 1e3 * statistics.median(timings.round_medians(k)) for k in preds}


def _outputs(q: Quantizer, path: Path, batches: list[np.ndarray]) -> list[np.ndarray]:
    pred = q.load(path)
    return [np.asarray(pred.run(x), dtype=np.float32) for x in batches]


def reference_outputs(q: Quantizer, batches: list[np.ndarray]) -> list[np.ndarray]:
    """The fp32 model's outputs on ``batches`` (the ranking's reference)."""
    return _outputs(q, q.fp32_path, batches)


def _finite(value: float) -> float:
    return max(-300.0, min(300.0, value))
