"""What a benchmark run produces: one ``BenchRow`` per model × precision × runtime × batch.

Rows hold numbers only (floats, ints, None); ``report.py`` formats them. A row's ``status`` is
"ok" (measured), "skipped" (the runtime, device or precision is not available here, with the
reason) or "failed" (it should have worked and did not, with the first line of the error), so
a matrix never silently loses a row. ``to_dict``/``from_dict`` round-trip the JSON described
by ``edgeres/bench/schema.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from edgeres.bench.config import RunSettings, RuntimeLabel
from edgeres.bench.env import Environment
from edgeres.bench.stats import LatencyStats
from edgeres.intervals import PairedDrop

__all__ = ["SCHEMA_VERSION", "BenchRow", "BenchRun", "MemoryUsage", "Note",
           "NoteKind", "RowAccuracy", "RunSettings"]

SCHEMA_VERSION = 1
MODE_LABELS = {"fast": "default", "compile": "compile"}  # precision_mode → label suffix
Status = Literal["ok", "skipped", "failed"]
# What a note is about: int8 expectations before measuring (outlook, target), an int8 row no
# faster than fp32, accuracy data that could not be used, the machine's load or noisy rounds,
# capped threads, memory not measured, a cluster node's facts, where a row's model came from
# (random zoo weights, int8 calibrated here).
NoteKind = Literal["int8-outlook", "int8-target", "int8-slower", "accuracy", "load", "noisy",
                   "threads", "memory", "cluster", "model"]
NOTE_KINDS: tuple[str, ...] = get_args(NoteKind)


@dataclass(frozen=True)
class MemoryUsage:
    """Peak resident memory of one row's runtime session, measured in its own process.

    The peak is ``VmHWM`` from ``/proc/self/status`` on Linux (``ru_maxrss`` elsewhere, where
    it does not inherit the parent's high-water mark); see ``edgeres.bench._memory``.

    Attributes:
        peak_rss_bytes: peak RSS of a process that imported the runtime, loaded the model,
            allocated the row's input and ran warm-up plus a few inferences at its batch size.
        baseline_rss_bytes: peak RSS of a process that imported the same modules and
            allocated the same input, but loaded no model.
        delta_bytes: ``peak - baseline``: what the session itself costs.
    """

    peak_rss_bytes: int
    baseline_rss_bytes: int
    delta_bytes: int


@dataclass(frozen=True)
class RowAccuracy:
    """Accuracy of one row on labelled images.

    Not ``quantize.QuantAccuracy`` (fp32 and int8 paired on one data set): this is one runtime
    row's top-1/top-5 and its agreement with the reference row.

    Attributes:
        top1, top5: percent; None when the model's classes are not the data's (a 1000-class
            model on CIFAR images), where only agreement means anything.
        agreement: percent of images whose top-1 class equals the reference row's.
        count: images evaluated.
        reference: the reference row (``precision/runtime``) agreement is measured against.
        top1_low, top1_high: 95% Wilson interval of ``top1``, percent.
        drop: top-1 of the reference minus this row's on the same images, with its 95%
            interval and McNemar test (``edgeres.intervals.paired_drop``); None for the
            reference itself or when top-1 is not measured.
    """

    top1: float | None
    top5: float | None
    agreement: float | None
    count: int
    reference: str | None
    top1_low: float | None = None
    top1_high: float | None = None
    drop: PairedDrop | None = None


@dataclass(frozen=True)
class Note:
    """An observation the reader should not miss (int8 expectations, slow int8, skipped data).

    ``text`` carries no numbers; ``report.py`` adds the measured ones for ``int8-slower``.
    """

    kind: NoteKind
    text: str
    model: str | None = None
    runtime: str | None = None
    batch: int | None = None
    causes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BenchRow:
    """One measured (or skipped, or failed) configuration.

    Attributes:
        model: the MODEL argument as given.
        source: "zoo" (exported on the fly), "file" (ONNX) or "ir" (OpenVINO IR).
        model_file: the file the runtime loaded (the cached state dict for torch rows).
        runtime: runtime label (``ort-cpu``, ``openvino-cpu``, ``torch-cpu``, ...).
        precision: the precision requested.
        executed_precision: what the runtime reports it ran (OpenVINO may say bf16).
        precision_mode: "model" (run the model's precision), "fast" (runtime default:
            OpenVINO's own precision, TensorRT's fp16 flag) or "compile" (torch.compile).
        io: None on CPU runtimes; on GPU ones "device" when the timed call excludes the
            host-device copies (inputs bound on the GPU once), "host" when it includes them.
        first_call_ms: the untimed first call at this batch size, which holds one-off work
            (TensorRT engine build, cuDNN algorithm search, torch.compile); never in latency.
        quantized_from: the MODEL argument of the float file this file was quantized from,
            when that file is in the same run (its speedup over it is then reported).
        batch: images per call.
        threads: intra-op threads the runtime was given.
        status, reason: "ok"/"skipped"/"failed" and why when not ok.
        partial: True when Ctrl-C cut the row's measurement short.
        latency: timing statistics (None unless measured).
        size_bytes: model file size on disk (weights file for torch rows).
        memory: peak resident memory (None when not measured).
        accuracy: accuracy and agreement (None without ``--eval``).
        details: runtime facts (ONNX Runtime providers, OpenVINO inference precision, ...).
        node: the device label (``edgeres-device:LABEL``) of the cluster node that ran the
            row (``edgeres bench --cluster``); None for a local run.
    """

    model: str
    source: str
    runtime: str
    precision: str
    batch: int
    threads: int
    status: Status = "ok"
    reason: str | None = None
    model_file: str | None = None
    executed_precision: str | None = None
    precision_mode: str = "model"
    partial: bool = False
    latency: LatencyStats | None = None
    size_bytes: int | None = None
    memory: MemoryUsage | None = None
    accuracy: RowAccuracy | None = None
    details: dict[str, Any] = field(default_factory=dict)
    io: str | None = None
    first_call_ms: float | None = None
    quantized_from: str | None = None
    node: str | None = None

    @property
    def runtime_label(self) -> str:
        """The runtime with its variant and node: ``ort-cuda (host io)``, ``ort-cpu@orin``."""
        extra = [] if self.precision_mode == "model" else [
            "fp16 flag" if self.runtime == "ort-tensorrt" and self.precision_mode == "fast"
            else MODE_LABELS.get(self.precision_mode, self.precision_mode)]
        if self.io == "host" and RuntimeLabel.parse(self.runtime).backend != "openvino":
            extra.append("host io")
        where = f"@{self.node}" if self.node else ""  # a --cluster row: the device it ran on
        return f"{self.runtime}{where} ({', '.join(extra)})" if extra else self.runtime + where

    @property
    def label(self) -> str:
        """``precision/runtime`` with the variant (``(default)`` for OpenVINO's own precision)."""
        return f"{self.precision}/{self.runtime_label}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, in the schema's field order."""
        d = dataclasses.asdict(self)
        d["latency"] = None if self.latency is None else self.latency.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchRow:
        """Inverse of ``to_dict``."""
        d = dict(d)
        if d.get("latency") is not None:
            d["latency"] = LatencyStats.from_dict(d["latency"])
        if d.get("memory") is not None:
            d["memory"] = MemoryUsage(**d["memory"])
        if d.get("accuracy") is not None:
            acc = dict(d["accuracy"])
            if acc.get("drop") is not None:
                acc["drop"] = PairedDrop(**acc["drop"])
            d["accuracy"] = RowAccuracy(**acc)
        return cls(**d)


@dataclass(frozen=True)
class BenchRun:
    """A whole benchmark run: rows, the machine, the settings, and notes.

    Attributes:
        rows: every row, in model, precision, runtime, batch order.
        environment: the machine and library versions.
        settings: the ``BenchConfig`` in effect (``RunSettings``; a dict, e.g. part of a
            report's ``settings``, is read with ``RunSettings.from_dict``).
        notes: observations (int8 expectations, int8 slower than fp32, ...).
        interrupted: True when Ctrl-C stopped the run; ``partial`` rows were cut short.
        created: UTC time the run started, ISO 8601.
        nodes: device label -> the cluster node's machine and versions (``--cluster`` runs);
            ``environment`` is then the machine that drove the run.
    """

    rows: tuple[BenchRow, ...]
    environment: Environment
    settings: RunSettings
    notes: tuple[Note, ...] = ()
    interrupted: bool = False
    created: str = ""
    schema_version: int = SCHEMA_VERSION
    nodes: dict[str, Environment] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.settings, dict):  # a report's settings object, or part of one
            object.__setattr__(self, "settings", RunSettings.from_dict(self.settings))
