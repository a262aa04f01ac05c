"""The benchmark of one model: load every configuration, time, probe memory, evaluate.

``ModelBench`` keeps the rows of one MODEL keyed by (precision, runtime, mode, batch) and fills
them phase by phase, so that Ctrl-C at any point leaves consistent rows: measured ones keep
their numbers (``partial`` when a phase after timing was cut), unmeasured ones become
"skipped: interrupted".
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from edgeres._progress import track
from edgeres.bench._gpu import row_variant, variants
from edgeres.bench._memory import MemoryProbe, ProbeJob
from edgeres.bench._models import ModelSource, RowNotRun
from edgeres.bench._notes import outlook_notes
from edgeres.bench._runners import Loaded, load_config, unavailable_reason
from edgeres.bench.config import GPU_RUNTIMES, RUNTIMES, BenchConfig, RuntimeLabel
from edgeres.bench.env import Environment
from edgeres.bench.results import BenchRow, Note, RowAccuracy
from edgeres.bench.stats import LatencyStats
from edgeres.bench.timing import Timings, measure
from edgeres.errors import EdgeresError, first_line

log = logging.getLogger(__name__)

Key = tuple[str, str, str, int]  # (precision, runtime, mode, batch)
_EVAL_BATCH = 100
_EVAL_CACHE_BYTES = 512 * 2**20  # decode eval images once per model when they fit in this


def _combos(precisions: tuple[str, ...], runtimes: tuple[str, ...],
            config: BenchConfig) -> Iterator[tuple[str, str, str]]:
    """(precision, runtime, mode) in report order; extra modes from ``_gpu.variants``."""
    for precision in precisions:
        for runtime in sorted(runtimes, key=RUNTIMES.index):
            for mode in variants(precision, runtime,
                                 openvino_default_row=config.openvino_default_row,
                                 torch_compile=config.torch_compile, host_io=config.host_io,
                                 available=unavailable_reason(runtime) is None):
                yield precision, runtime, mode


def planned_rows(src: ModelSource, runtimes: tuple[str, ...], threads: int,
                 config: BenchConfig) -> list[BenchRow]:
    """Every row ``src``'s benchmark gives under ``config``, in report order, not yet run
    (status "ok", no numbers): what a node that never ran would have given."""
    return [row for _, row in _planned(src, runtimes, threads, config)]


def _planned(src: ModelSource, runtimes: tuple[str, ...], threads: int,
             config: BenchConfig) -> Iterator[tuple[Key, BenchRow]]:
    for precision, runtime, mode in _combos(config.precisions or (src.own_precision,),
                                            runtimes, config):
        for batch in config.batches:
            yield (precision, runtime, mode, batch), BenchRow(
                model=src.arg, source=src.kind, runtime=runtime, precision=precision,
                batch=batch, threads=threads, **row_variant(runtime, mode))


class ModelBench:
    """All rows of one MODEL, filled phase by phase."""

    def __init__(self, src: ModelSource, runtimes: tuple[str, ...], threads: int,
                 config: BenchConfig, env: Environment) -> None:
        self.src, self.threads, self.config, self.env = src, threads, config, env
        self.precisions = config.precisions or (src.own_precision,)
        self.combos = list(_combos(self.precisions, runtimes, config))
        self.targets: dict[tuple[str, str, str], Loaded] = {}
        self.rows: dict[Key, BenchRow] = dict(_planned(src, runtimes, threads, config))
        self.notes: list[Note] = []
        self.measured: set[Key] = set()
        self.reports: dict[tuple[str, str, str], Any] = {}  # evaluation results (see accuracy)
        self.reference: tuple[str, str, str] | None = None  # the fp32 combo agreement is against

    def _update(self, key: Key, **changes: Any) -> None:
        self.rows[key] = dataclasses.replace(self.rows[key], **changes)

    def _set_status(self, combo: tuple[str, str, str], err: RowNotRun) -> None:
        for batch in self.config.batches:
            self._update((*combo, batch), status=err.status, reason=err.reason)

    def run(self, probe: MemoryProbe, data: Any = None) -> None:
        """Every step of one model's benchmark, in order: load, time, memory (when the config
        asks for it) and accuracy on ``data`` (when given). Local and cluster runs both use it.
        """
        self.load()
        self.time()
        if self.config.memory:
            self.memory(probe)
        if data is not None:
            self.accuracy(data)

    def load(self) -> None:
        """Load every configuration; those that cannot run get their reason."""
        for combo in track(self.combos, total=len(self.combos),
                           description=f"{self.src.arg}: loading"):
            precision, runtime, mode = combo
            try:
                target = load_config(self.src, precision, runtime, mode,
                                     threads=self.threads, calib=self.config.calib,
                                     spin=self.config.ort_spinning)
            except RowNotRun as e:
                self._set_status(combo, e)
                continue
            self.targets[combo] = target
            size = _file_size(target.file)
            for batch in self.config.batches:
                key = (*combo, batch)
                self._update(key, model_file=str(target.file), size_bytes=size,
                             executed_precision=target.executed_precision,
                             details=target.details)
                if target.fixed_batch is not None and target.fixed_batch != batch:
                    self._update(key, status="skipped", reason=(
                        f"the graph has a fixed batch of {target.fixed_batch}; "
                        "export it with a dynamic batch axis"))
        if "int8" in self.precisions:
            int8 = next((t for c, t in self.targets.items() if c[0] == "int8"), None)
            runtimes = list(dict.fromkeys(c[1] for c in self.combos if c[0] == "int8"))
            self.notes += outlook_notes(
                self.env, self.src.arg, runtimes, int8.meta if int8 else None,
                metas={c[1]: t.meta for c, t in self.targets.items() if c[0] == "int8"})

    def _inputs(self) -> dict[np.dtype, np.ndarray]:
        """The same random inputs for every row, converted once per input dtype."""
        shape = (max(self.config.batches), *(int(d) for d in self.src.meta.input.shape[1:]))
        rng = np.random.default_rng(self.config.seed)
        base: np.ndarray
        if self.src.meta.input.dtype == "uint8":
            base = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            base = rng.standard_normal(shape, dtype=np.float32)
        dtypes = {t.input_dtype for t in self.targets.values()}
        return {d: np.ascontiguousarray(base.astype(d)) for d in dtypes}

    def _callables(self, batch: int, inputs: dict[np.dtype, np.ndarray]
                   ) -> dict[Key, Callable[[], object]]:
        fns = {}
        for combo, target in self.targets.items():
            key = (*combo, batch)
            if self.rows[key].status != "ok":
                continue
            try:
                fn = target.bind(inputs[target.input_dtype][:batch])  # GPU rows copy in here
                start = time.perf_counter()
                out = fn()  # a configuration that cannot run fails alone, before timing starts
                first = time.perf_counter() - start
                _check_output(out, f"{target.file} on {target.runtime}")
            except Exception as e:  # the runtime's own error types
                log.debug("trial run of %s failed", key, exc_info=True)
                self._update(key, status="failed", reason=first_line(e))
                continue
            # Engine builds, cuDNN algorithm search, torch.compile: reported, never timed.
            self._update(key, first_call_ms=1e3 * first)
            fns[key] = fn
        return fns

    def time(self) -> None:
        """Time every loaded configuration, batch by batch, in interleaved rounds."""
        inputs = self._inputs() if self.targets else {}
        for batch in self.config.batches:
            fns = self._callables(batch, inputs)
            if not fns:
                continue
            names = {f"{k[0]}/{k[1]}/{k[2]}/{k[3]}": k for k in fns}
            timings = _measure({n: fns[k] for n, k in names.items()}, self.config,
                               f"{self.src.arg} batch {batch}: timing")
            for name, key in names.items():
                if timings[name]:
                    stats = LatencyStats.from_samples(
                        timings[name], rounds=timings.round_index[name], batch=batch)
                    self._update(key, latency=stats, partial=timings.interrupted)
                    self.measured.add(key)
            if timings.interrupted:
                raise KeyboardInterrupt

    def memory(self, probe: MemoryProbe) -> None:
        """Peak RSS of every measured row, one subprocess each."""
        keys = [k for k in self.rows if k in self.measured and k[1] not in GPU_RUNTIMES]
        if len(keys) < len(self.measured):
            self.notes.append(Note("memory", "GPU rows: memory not measured (peak RSS is host "
                                   "memory; device memory is not in it)", model=self.src.arg))
        for key in track(keys, total=len(keys), description=f"{self.src.arg}: memory"):
            target = self.targets[key[:3]]
            backend, device = RuntimeLabel.parse(key[1])
            job = ProbeJob(
                backend=backend, device=device, file=str(target.file), mode=key[2],
                threads=self.threads, batch=key[3], warmup=min(self.config.warmup, 5),
                zoo_name=target.details.get("zoo_name") if backend == "torch" else None,
                input_shape=tuple(int(d) for d in self.src.meta.input.shape[1:]),
                input_dtype=str(target.input_dtype))
            try:
                self._update(key, memory=probe.measure(job))
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                self.notes.append(Note("memory", f"memory not measured: {e}",
                                       model=self.src.arg, runtime=key[1], batch=key[3]))

    def accuracy(self, data: Any) -> None:
        """top-1/top-5 and agreement with the fp32 reference, once per configuration.

        A model whose classes are not the data's is not evaluated at all (a 1000-class
        model on CIFAR images took 26 minutes to report nothing): a note says why.
        """
        from edgeres.evaluate import evaluate

        combos = [c for c in self.targets
                  if any(k[:3] == c for k in self.measured)]
        if not combos:
            return
        mismatch = _class_mismatch(data, self.src.meta)
        if mismatch is not None:
            self.notes.append(Note("accuracy", f"accuracy not measured for {self.src.arg}: "
                                   f"{mismatch}", model=self.src.arg))
            return
        source = eval_source(data, self.src.meta, self.config.limit)
        reports = {}
        for combo in combos:
            target = self.targets[combo]
            try:
                reports[combo] = evaluate(
                    target.run, source, target.meta, batch_size=target.fixed_batch or _EVAL_BATCH,
                    limit=None, description=f"{self.src.arg} {combo[0]}/{combo[1]}: accuracy")
            except EdgeresError as e:
                self.notes.append(Note("accuracy", f"accuracy not measured: {e}",
                                       model=self.src.arg, runtime=combo[1]))
        ref = _reference(reports)
        # Kept for link_references: the reference alone, or every report of a model that has
        # no reference of its own (logits of a 1000-class model are 40 MB per 10k images).
        self.reports = reports if ref is None else {ref: reports[ref]}
        self.reference = ref
        for combo, report in reports.items():
            agreement = None if ref is None else report.agreement(reports[ref])
            acc = RowAccuracy(
                top1=report.top1, top5=report.top5, agreement=agreement, count=report.count,
                reference=None if ref is None else f"{ref[0]}/{ref[1]}",
                **_paired(report, None if ref is None or ref == combo else reports[ref]))
            self._set_accuracy(combo, acc)

    def _set_accuracy(self, combo: tuple[str, str, str], acc: RowAccuracy) -> None:
        for batch in self.config.batches:
            if (*combo, batch) in self.measured:
                self._update((*combo, batch), accuracy=acc)

    def agree_with(self, source: ModelBench) -> None:
        """Agreement against ``source``'s fp32 reference, for a model with no fp32 of its own.

        An int8 file benchmarked alone has nothing to agree with; when the fp32 file it was
        quantized from is in the same run, that file's reference row is its reference too.
        """
        if source.reference is None:  # link_references passes only sources that have one
            return
        ref = source.reports[source.reference]
        label = f"{source.src.arg} {source.reference[0]}/{source.reference[1]}"
        for combo, report in self.reports.items():
            if report.count == ref.count:
                acc = next(r.accuracy for k, r in self.rows.items()
                           if k[:3] == combo and r.accuracy is not None)
                self._set_accuracy(combo, dataclasses.replace(
                    acc, agreement=report.agreement(ref), reference=label,
                    drop=_paired(report, ref)["drop"]))

    def interrupted(self) -> None:
        """Mark rows after Ctrl-C: unmeasured ones skipped, measured ones partial."""
        for key, row in self.rows.items():
            if row.status == "ok" and key not in self.measured:
                self._update(key, status="skipped", reason="interrupted before measurement",
                             partial=True)
            elif key in self.measured and (self.config.eval_data and row.accuracy is None
                                           or self.config.memory and row.memory is None):
                self._update(key, partial=True)


def link_references(benches: list[ModelBench]) -> None:
    """Give each model evaluated without an fp32 reference its quantize source's, if measured.

    The quantize step's provenance holds the sha256 of the file it quantized; a benchmarked
    file with that hash and an fp32 reference row is the source.
    """
    orphans = [b for b in benches if b.reports and b.reference is None]
    if not orphans:
        return
    by_sha = {b.src.sha256: b for b in benches if b.reference is not None and b.src.sha256}
    for bench in orphans:
        step: dict[str, Any] = next((p for p in reversed(bench.src.meta.provenance)
                                     if p.get("step") == "quantize"), {})
        source = by_sha.get(step.get("input_sha256", ""))  # "": no key has it
        if source is not None:
            bench.agree_with(source)


def link_sources(benches: list[ModelBench]) -> None:
    """Mark the rows of each quantized file whose float source file is in the same run."""
    by_sha = {b.src.sha256: b.src.arg for b in benches if b.src.sha256}
    for bench in benches:
        step: dict[str, Any] = next((p for p in reversed(bench.src.meta.provenance)
                                     if p.get("step") == "quantize"), {})
        source = by_sha.get(step.get("input_sha256", ""))  # "": no key has it
        if source is not None and source != bench.src.arg:
            bench.rows = {k: dataclasses.replace(r, quantized_from=source)
                          for k, r in bench.rows.items()}


def _measure(fns: dict[str, Callable[[], object]], config: BenchConfig,
             description: str) -> Timings:
    """``timing.measure`` with a progress bar advanced once per round."""
    bar = track(iter(range(config.rounds)), total=config.rounds, description=description)

    def advance(_round: int, _rounds: int) -> None:
        next(bar, None)

    try:
        return measure(fns, warmup=config.warmup, rounds=config.rounds,
                       iterations=config.iterations, duration=config.timed_duration,
                       on_round=advance)
    finally:
        bar.close()


def _check_output(out: object, what: str) -> None:
    """A trial run's output, when numpy can see it, must be finite (``check_finite``): a
    model that outputs NaN is broken, and its latency is not worth a row."""
    from edgeres.preprocess import check_finite

    first = out
    if isinstance(out, list | tuple) and out:
        first = out[0]
    elif not hasattr(out, "detach") and callable(values := getattr(out, "values", None)):
        first = next(iter(values()), None)  # OpenVINO's result mapping (not a tensor's)
    if hasattr(first, "detach"):  # a torch tensor
        first = first.detach().float().cpu().numpy()
    if isinstance(first, np.ndarray):
        check_finite(first, what)


def _reference(reports: dict[tuple[str, str, str], Any]) -> tuple[str, str, str] | None:
    """The fp32 reference: ort-cpu if measured, else the first fp32 configuration."""
    fp32 = [c for c in reports if c[0] == "fp32" and c[2] == "model"]
    preferred = [c for c in fp32 if c[1] == "ort-cpu"]
    found = preferred or fp32
    return found[0] if found else None


def _paired(report: Any, reference: Any) -> dict[str, Any]:
    """The top-1 Wilson interval, and the paired drop against ``reference`` when given."""
    from edgeres.intervals import paired_drop, wilson

    correct = report.correct
    lo, hi = wilson(int(correct.sum()), correct.size)
    drop = None if reference is None or reference.count != report.count else paired_drop(
        reference.correct, correct)
    return {"top1_low": 100 * lo, "top1_high": 100 * hi, "drop": drop}


def _class_mismatch(data: Any, meta: Any) -> str | None:
    """Why ``meta``'s model cannot be scored on ``data``, or None when the classes fit."""
    classes = getattr(data, "classes", None)
    n = meta.num_classes or len(meta.labels)
    if classes:
        if not (all(c in meta.labels for c in classes) or len(classes) == n):
            theirs = ", ".join(list(classes)[:3])
            return (f"it has {n} classes and {data.name} has {len(classes)} ({theirs}, ...), "
                    "which it does not know; evaluate it on data with its own classes")
        index = getattr(data, "label_index", None)  # image folders: data.py's one rule
        try:
            if index is not None:
                index(meta.labels, meta.num_classes)
        except EdgeresError as e:
            return str(e)
        return None
    labels = getattr(data, "labels", None)
    if labels is not None and n > 0 and int(np.max(labels)) < n:
        return None
    return f"{data.name}'s labels do not fit its {n} classes"


def eval_source(data: Any, meta: Any, limit: int | None) -> Any:
    """The evaluation images decoded and preprocessed once, when they fit in memory (an
    ``ArraySource``; ``data`` itself otherwise)."""
    from edgeres.data import ArraySource

    data = data.subset(limit)
    itemsize = np.dtype(meta.input.dtype).itemsize
    sample = int(np.prod([int(d) for d in meta.input.shape[1:]])) * itemsize
    if not hasattr(data, "items") or sample * len(data) > _EVAL_CACHE_BYTES:
        return data
    batches = list(data.batches(meta, _EVAL_BATCH))
    if not batches:
        return data
    inputs = np.concatenate([b.inputs for b in batches])
    labels = np.concatenate([b.labels for b in batches]) if data.classes else None
    return ArraySource(data.name, inputs, labels, data.classes, skipped=data.skipped)


def _file_size(path: Any) -> int | None:
    """Bytes on disk of a model: the file plus an OpenVINO .bin or ONNX external data."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        return None
    total = path.stat().st_size
    for extra in (path.with_suffix(".bin"), Path(f"{path}.data")):
        if path.suffix == ".xml" and extra.suffix == ".bin" and extra.is_file():
            total += extra.stat().st_size
        elif path.suffix == ".onnx" and extra.suffix == ".data" and extra.is_file():
            total += extra.stat().st_size
    return total
