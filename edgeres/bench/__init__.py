"""``run_bench``: latency, throughput, size, memory and accuracy of model × precision × runtime.

For each MODEL this resolves (and, for zoo names, exports or quantizes) the file of every
requested precision, loads it on every requested runtime, and then, per batch size, times all
loaded configurations together with ``timing.measure`` — interleaved rounds on the same random
inputs — before measuring memory (one subprocess per row), and accuracy plus top-1 agreement
with the fp32 reference row (``--eval``). A configuration that cannot run here becomes a
"skipped" row with the reason, one that breaks a "failed" row; the matrix always finishes.
Ctrl-C returns what was measured so far (``BenchRun.interrupted``, rows marked ``partial``).
Nothing here prints: ``report.py`` formats, the CLI renders.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from edgeres.bench.config import (
    RUNTIMES,
    BenchConfig,
    RuntimeLabel,
    parse_batches,
    parse_precisions,
    parse_runtimes,
)

if TYPE_CHECKING:  # loaded on first use (__getattr__), so `import edgeres.bench.config` (the
    # CLI's options) stays stdlib-only
    from edgeres.bench._models import (
        ModelSource,
        RowFailed,
        RowNotRun,
        Unavailable,
        model_file,
        resolve_model,
    )
    from edgeres.bench._run import eval_source, planned_rows
    from edgeres.bench._runners import default_runtimes
    from edgeres.bench.env import Environment
    from edgeres.bench.results import (
        BenchRow,
        BenchRun,
        MemoryUsage,
        Note,
        RowAccuracy,
        RunSettings,
    )
    from edgeres.bench.stats import LatencyStats
    from edgeres.bench.timing import Timings, measure

__all__ = ["RUNTIMES", "BenchConfig", "BenchRow", "BenchRun", "Environment", "LatencyStats",
           "MemoryUsage", "ModelSource", "Note", "RowAccuracy", "RowFailed", "RowNotRun",
           "RunSettings", "RuntimeLabel", "Timings", "Unavailable", "bench_models",
           "default_runtimes", "eval_source", "measure", "model_file", "parse_batches",
           "parse_precisions", "parse_runtimes", "planned_rows", "resolve_model", "run_bench"]

# name -> the submodule that defines it, imported on first use
_LAZY = {
    "ModelSource": "_models", "RowFailed": "_models", "RowNotRun": "_models",
    "Unavailable": "_models", "model_file": "_models",
    "resolve_model": "_models", "eval_source": "_run", "planned_rows": "_run",
    "default_runtimes": "_runners", "Environment": "env",
    "BenchRow": "results", "BenchRun": "results", "MemoryUsage": "results", "Note": "results",
    "RowAccuracy": "results", "RunSettings": "results", "LatencyStats": "stats",
    "Timings": "timing", "measure": "timing",
}


def run_bench(models: Sequence[str], config: BenchConfig | None = None, *,
              record: Any = None) -> BenchRun:
    """Benchmark every model × precision × runtime × batch in ``config``.

    Args:
        models: MODEL arguments: ``.onnx`` files, OpenVINO ``.xml`` files, registered model
            files (``cifar10``) or zoo names (``resnet18``, exported into the cache).
        config: the matrix and measurement settings; ``BenchConfig()`` when None.
        record: ``edgeres.foreign.RecordOptions`` stated for the ONNX files among ``models``
            (a foreign model's preprocessing and labels); None when nothing is stated.

    Returns:
        A ``BenchRun`` with one row per configuration (ok, skipped or failed), the machine
        description, the settings and notes. On Ctrl-C, what was measured so far.

    Raises:
        UnknownModelError: for a MODEL that is neither a file nor a known name.
        UnknownNameError: for ``--eval``/``--calib`` data that is neither a path nor a name.
        ModelFileError: for a model file that is unreadable or carries no metadata record.
        ConfigError: for invalid settings.
    """
    from edgeres.bench._models import resolve_model
    from edgeres.bench._runners import default_runtimes
    from edgeres.bench.env import describe_machine

    config = BenchConfig() if config is None else config
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    env = describe_machine()
    sources = [resolve_model(m, config.cache_root, record=record)
               for m in models]  # bad names fail first
    _check_memory(sources, config, len(config.runtimes or default_runtimes()))
    return bench_models(sources, config, data=_open_eval(config), env=env, created=created)


def bench_models(sources: Sequence[ModelSource], config: BenchConfig, *,
                 data: Any = None, env: Environment | None = None,
                 created: str | None = None) -> BenchRun:
    """THE bench pipeline over resolved models: what ``run_bench`` runs here and what each node
    of ``edgeres bench --cluster`` runs on its shipped files.

    Args:
        sources: resolved MODEL arguments (``resolve_model``), benchmarked in order.
        config: the matrix and measurement settings.
        data: labelled ``--eval`` data: one source for every model, or a mapping from a
            model's ``arg`` to its own (preprocessed arrays shipped to a node); None: no
            accuracy.
        env: this machine (``describe_machine()`` when None).
        created: the run's timestamp (now when None).

    Returns:
        A ``BenchRun``: rows, notes (the hardware outlook once per runtime), settings. On
        Ctrl-C, what was measured so far (``interrupted``).
    """
    from edgeres._resources import cap_threads
    from edgeres.bench._memory import MemoryProbe
    from edgeres.bench._notes import noise_notes, slower_int8_notes
    from edgeres.bench._run import ModelBench, link_references, link_sources
    from edgeres.bench._runners import default_runtimes
    from edgeres.bench.env import default_threads, describe_machine
    from edgeres.bench.results import BenchRun, Note

    created = created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    env = describe_machine() if env is None else env
    threads, capped = cap_threads(config.threads)
    threads = threads or default_threads(env.physical_cores)
    runtimes = config.runtimes or default_runtimes()
    benches: list[ModelBench] = []
    interrupted = False
    probe = MemoryProbe()
    try:
        for src in sources:
            bench = ModelBench(src, runtimes, threads, config, env)
            benches.append(bench)  # before running: an interrupted model keeps its partial rows
            bench.run(probe, data.get(src.arg) if isinstance(data, Mapping) else data)
    except KeyboardInterrupt:
        interrupted = True
        if benches:
            benches[-1].interrupted()
    link_references(benches)
    link_sources(benches)
    rows = [row for b in benches for row in b.rows.values()]
    metas = {(b.src.arg, c[0]): t.meta for b in benches for c, t in b.targets.items()}
    notes = ([Note("threads", capped)] if capped else []) + source_notes(sources, config) + (
             _dedupe([n for b in benches for n in b.notes])
             + slower_int8_notes(env, rows, metas) + noise_notes(env, rows))
    return BenchRun(rows=tuple(rows), environment=env,
                    settings=config.settings(runtimes, threads), notes=tuple(notes),
                    interrupted=interrupted, created=created)


def source_notes(sources: Sequence[Any], config: BenchConfig) -> list[Note]:
    """What the reader must know about where a row's model came from: a zoo name runs seeded
    random weights (its top-1 means nothing), and an int8 row of an fp32 file or zoo name is
    quantized here, calibrated on ``--calib``."""
    from edgeres.bench.results import Note

    notes = []
    for src in sources:
        made = "int8" in (config.precisions or ()) and src.own_precision != "int8"
        calib = f"; its int8 rows are quantized here, calibrated on {config.calib}" if made else ""
        if src.kind == "zoo":
            notes.append(Note("model", "a zoo name: seeded random weights, not a trained model, "
                              f"so its accuracy means nothing{calib}", model=src.arg))
        elif made:
            notes.append(Note("model", f"int8 rows are quantized here from this file, "
                              f"calibrated on {config.calib}", model=src.arg))
    return notes


def _check_memory(sources: Sequence[Any], config: BenchConfig, runtimes: int) -> None:
    """Refuse a batch whose inputs and activations cannot fit in memory, before allocating
    (every configuration of a model is loaded, and keeps its memory, while they are timed)."""
    from edgeres._resources import check_memory, estimate_batch_bytes

    batch = max(config.batches)
    for src in sources:
        loaded = runtimes * len(config.precisions or (src.own_precision,))
        dims = [d for d in src.meta.input.shape[1:] if isinstance(d, int)]
        sample = 4 * math.prod(dims)  # float32 is the widest input dtype bench feeds
        shape = "x".join(map(str, dims))
        check_memory(estimate_batch_bytes(batch, sample, loaded),
                     f"--batch {batch} of {src.arg} ({shape} inputs, with the activations of "
                     f"{loaded} loaded configuration(s))", "choose a smaller --batch")


def _dedupe(notes: list[Note]) -> list[Note]:
    """The hardware outlook is the same for every model: state it once per runtime."""
    seen: set[tuple[str, str | None, str]] = set()
    out = []
    for note in notes:
        if note.kind == "int8-outlook":
            key = (note.kind, note.runtime, note.text)
            if key in seen:
                continue
            seen.add(key)
            note = dataclasses.replace(note, model=None)
        out.append(note)
    return out


def _open_eval(config: BenchConfig) -> Any:
    """Open ``--eval`` data and check ``--calib`` up front, so typos fail before any timing."""
    from edgeres.names import resolve_data

    if config.precisions and "int8" in config.precisions:
        resolve_data(config.calib)
    if config.eval_data is None:
        return None
    from edgeres.data import open_data

    return open_data(config.eval_data)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
