"""What to benchmark and how: ``BenchConfig``, the runtime labels, and the option parsers.

Options live in one frozen dataclass validated at construction (CONTRIBUTING R5), so a bad batch
list or an unknown runtime label fails before any model is exported or timed. The parsers turn
the command line's comma lists (``--runtime ort-cpu,openvino-cpu``, ``--batch 1,8``) into
typed tuples with one-line errors. Stdlib only.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast

from edgeres import runtimes as _runtimes
from edgeres.errors import ConfigError
from edgeres.runtime.backends import DEFAULT_SPIN, SPIN_HELP
from edgeres.vocab import (  # the shared vocabulary (CONTRIBUTING, "Vocabulary")
    BACKENDS,
    DEVICES,
    PRECISIONS,
    BackendName,
    DeviceName,
    Precision,
)

__all__ = ["BACKENDS", "BENCH_PRECISIONS", "DEVICES", "RUNTIMES", "BackendName", "BenchConfig",
           "DeviceName", "OptionSpec", "Precision", "RunSettings", "RuntimeLabel", "cache_dir",
           "option_specs", "parse_batches", "parse_precisions", "parse_runtimes"]


class RuntimeLabel(NamedTuple):
    """A runtime label, ``{backend}-{device}``: built with ``parse``, written with ``str``.

    The one place a label is split; ``RuntimeLabel.parse("ort-cpu").device == "cpu"`` and
    ``str(RuntimeLabel("ort", "cpu")) == "ort-cpu"``.
    """

    backend: BackendName
    device: DeviceName

    @classmethod
    def parse(cls, label: str | RuntimeLabel) -> RuntimeLabel:
        """``"openvino-gpu"`` → ``RuntimeLabel("openvino", "gpu")``.

        Raises:
            ConfigError: when ``label`` is not ``{backend}-{device}`` of known names.
        """
        if isinstance(label, RuntimeLabel):
            return label
        backend, _, device = str(label).partition("-")
        if backend not in BACKENDS or device not in DEVICES:
            msg = f"unknown runtime {label!r}; labels are backend-device, e.g. ort-cpu"
            raise ConfigError(msg)
        return cls(cast(BackendName, backend), cast(DeviceName, device))

    def __str__(self) -> str:
        return f"{self.backend}-{self.device}"


# Every runtime label bench knows, in report order; `{backend}-{device}` (shared vocabulary).
# The PyTorch baselines, then each registered runtime on each of its devices.
RUNTIMES: tuple[str, ...] = ("torch-cpu", "torch-cuda", *(
    f"{name}-{device}" for name in _runtimes.RUNTIME_NAMES
    for device in _runtimes.get(name).devices))
# The default CPU rows: the baselines and every runtime of ONNX files. litert-cpu and
# executorch-cpu run their own .tflite/.pte files only, so they are asked for by name.
CPU_RUNTIMES: tuple[str, ...] = tuple(
    r for r in RUNTIMES if r.endswith("-cpu") and (
        r.startswith("torch-") or ".onnx" in _runtimes.get(r.rsplit("-", 1)[0]).suffixes))
GPU_RUNTIMES: tuple[str, ...] = tuple(r for r in RUNTIMES if not r.endswith("-cpu"))
# Precisions a user may request. bf16 is requestable for torch-cuda (weights and inputs cast
# to bfloat16); on ONNX runtimes it is only ever *executed* (OpenVINO's default on AMX).
BENCH_PRECISIONS: tuple[str, ...] = PRECISIONS  # every one, on some runtime
DEFAULT_WARMUP = 5
DEFAULT_ROUNDS = 5
DEFAULT_DURATION = 2.0  # seconds of timed calls per row when neither iterations nor duration


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _choices(text: str | None, valid: tuple[str, ...], what: str,
             also: str = "") -> tuple[str, ...] | None:
    """A comma list of ``valid`` names, duplicates dropped in order; None stays None."""
    if text is None:
        return None
    parts = _split(text)
    bad = [p for p in parts if p not in valid]
    if bad or not parts:
        msg = (f"unknown {what} {', '.join(map(repr, bad)) or repr(text)}; "
               f"choose from {', '.join(valid)}{also}")
        raise ConfigError(msg)
    return tuple(dict.fromkeys(parts))


def parse_runtimes(text: str | None) -> tuple[str, ...] | None:
    """Parse ``--runtime``: a comma list of labels, or ``all``; None means the default.

    Raises:
        ConfigError: for an unknown label or an empty list.
    """
    if text is not None and _split(text) == ["all"]:
        return RUNTIMES
    return _choices(text, RUNTIMES, "runtime", " or all")


def parse_precisions(text: str | None) -> tuple[str, ...] | None:
    """Parse ``--precision``: a comma list of fp32, fp16, bf16, int8; None = the model's own.

    Raises:
        ConfigError: for an unknown precision or an empty list.
    """
    return _choices(text, BENCH_PRECISIONS, "precision")


def parse_batches(text: str) -> tuple[int, ...]:
    """Parse ``--batch``: a comma list of positive integers such as ``1,8``.

    Raises:
        ConfigError: if an entry is not a positive integer.
    """
    parts = _split(text)
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        msg = f"invalid batch list {text!r}; give positive integers separated by commas, e.g. 1,8"
        raise ConfigError(msg)
    return tuple(dict.fromkeys(values))


def cache_dir() -> Path:
    """Where zoo models are exported and quantized: ``$EDGERES_CACHE`` or ``~/.cache/edgeres``."""
    env = os.environ.get("EDGERES_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "edgeres"


@dataclass(frozen=True)
class OptionSpec:
    """A ``BenchConfig`` field as a command-line option (the CLI builds the click option).

    Attributes:
        name: the field (and the click parameter); flag: ``--batch``; help: its help text.
        default: the field's default; kind: "int", "float", "str", "bool" or "list".
        parser: for a "list", the name of this module's parser of the comma list.
    """

    name: str
    flag: str
    help: str
    default: Any
    kind: str
    parser: str | None = None


def _option(default: Any, help: str, *, flag: str | None = None,  # noqa: A002 - click's word
            parser: str | None = None) -> Any:
    """A field that is also a ``bench`` option: its help, and flag and parser where the flag is
    not ``--`` + the name with dashes, or the value is a comma list."""
    return dataclasses.field(default=default,
                             metadata={"help": help, "flag": flag, "parser": parser})


def option_specs() -> list[OptionSpec]:
    """The ``bench`` options, in ``BenchConfig``'s field order: THE list the CLI's options and
    its messages' flag names (``cli._as_flags``) come from."""
    specs = []
    for f in dataclasses.fields(BenchConfig):
        if "help" not in f.metadata:
            continue
        parser = f.metadata["parser"]
        kind = ("list" if parser else "bool" if f.type == "bool"
                else str(f.type).split(" ")[0] if str(f.type)[:3] in ("int", "flo") else "str")
        specs.append(OptionSpec(f.name, f.metadata["flag"] or "--" + f.name.replace("_", "-"),
                                f.metadata["help"], f.default, kind, parser))
    return specs


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark matrix's settings; validated when built.

    Attributes:
        runtimes: runtime labels; None = every CPU runtime installed here.
        precisions: requested precisions; None = the model file's own (fp32 for zoo names).
        batches: batch sizes.
        threads: intra-op threads for every runtime; None = physical cores, capped by the
            CPUs this process may run on (``env.default_threads``).
        ort_spinning: whether ONNX Runtime's threads spin (busy-wait) for work between
            operators (``BackendOptions.spin``) in every ONNX Runtime row; the default is
            edgeres' own (``runtime.backends.DEFAULT_SPIN``, off: 3-5% slower on an idle
            CPU, 25-30% faster when other work shares it), so bench times what users run.
        warmup: untimed calls per row before measuring.
        rounds: interleaved rounds.
        iterations: timed calls per row per round (exclusive with ``duration``).
        duration: timed seconds per row, spread over the rounds; the default when neither
            is given is ``DEFAULT_DURATION``.
        calib: calibration data for int8 quantization (path or registered name).
        eval_data: labelled data for accuracy (path or registered name); None = no accuracy.
        limit: evaluate only this many images.
        memory: measure peak resident memory in one subprocess per row.
        openvino_default_row: add a row for OpenVINO's own default precision (bf16 on AMX).
        torch_compile: add a ``torch.compile`` row (precision mode "compile") beside each
            torch-cuda row; compilation happens in the untimed first call of each batch.
        host_io: add a row per ONNX Runtime GPU configuration whose timed call includes the
            host-to-device input and device-to-host output copies (``io`` "host"); the main
            row binds both on the device once (``io`` "device").
        cache: where zoo exports and int8 files are kept; None = ``cache_dir()``.
        conditions: free text recorded with the results (e.g. "training job running").
        seed: seed of the random benchmark inputs.
    """

    # Each field with help is also a `bench` option (cli/_options.bench_config_options): its
    # flag, type, default and help come from here; RunSettings records it in the JSON.
    runtimes: tuple[str, ...] | None = _option(
        None, f"Comma list of {', '.join(RUNTIMES)}, or all [default: every CPU runtime "
        "installed].", flag="--runtime", parser="parse_runtimes")
    precisions: tuple[str, ...] | None = _option(
        None, "Comma list of fp32, fp16, bf16 (torch-cuda), int8 [default: the model's own].",
        flag="--precision", parser="parse_precisions")
    batches: tuple[int, ...] = _option((1,), "Comma list of batch sizes.", flag="--batch",
                                       parser="parse_batches")
    threads: int | None = _option(
        None, "Threads for every runtime [default: physical cores, within CPU affinity].")
    ort_spinning: bool = _option(DEFAULT_SPIN, SPIN_HELP)
    warmup: int = _option(DEFAULT_WARMUP, "Untimed calls per row.")
    rounds: int = _option(DEFAULT_ROUNDS, "Interleaved rounds.")
    iterations: int | None = _option(None, "Timed calls per row per round.")
    duration: float | None = _option(
        None, f"Timed seconds per row [default: {DEFAULT_DURATION:g}].")
    calib: str = _option("cifar10", "Calibration data for int8.")
    eval_data: str | None = _option(None, "Labelled data for top-1/top-5 and agreement.",
                                    flag="--eval")
    limit: int | None = _option(None, "Evaluate only this many images.")
    memory: bool = _option(True, "Measure peak memory, one subprocess per row (--no-memory "
                           "skips them).")
    openvino_default_row: bool = True
    torch_compile: bool = _option(
        False, "Add a torch.compile row beside each torch-cuda row (compiled untimed).")
    host_io: bool = True
    cache: Path | None = None
    conditions: str | None = _option(
        None, "Free text recorded with the results (machine load, ...).")
    seed: int = _option(0, "Seed of the random benchmark inputs.")

    def __post_init__(self) -> None:
        checks = [
            (self.runtimes is None or (bool(self.runtimes)
                                       and set(self.runtimes) <= set(RUNTIMES)),
             f"runtimes must be labels from {', '.join(RUNTIMES)}"),
            (self.precisions is None or (bool(self.precisions)
                                         and set(self.precisions) <= set(BENCH_PRECISIONS)),
             f"precisions {self.precisions} are not all requestable; choose from "
             f"{', '.join(BENCH_PRECISIONS)}"),
            (bool(self.batches) and all(isinstance(b, int) and b >= 1 for b in self.batches),
             "batch sizes must be positive integers"),
            (self.threads is None or self.threads >= 1, "--threads must be at least 1"),
            (self.warmup >= 0, "--warmup must be 0 or more"),
            (self.rounds >= 1, "--rounds must be at least 1"),
            (self.iterations is None or self.iterations >= 1, "--iterations must be at least 1"),
            (self.duration is None or (math.isfinite(self.duration) and self.duration > 0),
             f"--duration {self.duration} is invalid; give a positive, finite number of seconds"),
            (self.iterations is None or self.duration is None,
             "give either --iterations or --duration, not both"),
            (self.limit is None or self.limit >= 1, "--limit must be at least 1"),
            (self.limit is None or self.eval_data is not None, "--limit needs --eval DATA"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

    @property
    def timed_duration(self) -> float | None:
        """Seconds per row to time, or None when ``iterations`` is set."""
        if self.iterations is not None:
            return None
        return self.duration if self.duration is not None else DEFAULT_DURATION

    def settings(self, runtimes: tuple[str, ...], threads: int) -> RunSettings:
        """The settings of a run (``BenchRun.settings``; ``to_dict()`` is the JSON's
        ``settings``): these fields, with the runtimes and threads in effect resolved."""
        d = dataclasses.asdict(self)
        d.update(runtimes=list(runtimes), threads=threads, duration=self.timed_duration,
                 batches=list(self.batches), cache=str(self.cache_root),
                 precisions=None if self.precisions is None else list(self.precisions))
        return RunSettings.from_dict(d)

    @property
    def cache_root(self) -> Path:
        """The cache directory in effect."""
        return self.cache if self.cache is not None else cache_dir()


@dataclass(frozen=True)
class RunSettings:
    """The settings a run was made with: ``BenchRun.settings``, written as the JSON's ``settings``.

    ``BenchConfig.settings`` builds it with the runtimes and threads in effect resolved; a
    ``--cluster`` run adds ``cluster``, ``nodes`` and ``node_ids`` (``evolve``). Read it by
    attribute. ``to_dict`` writes exactly the keys it was built from, in their order, so a
    partial record (``from_dict`` of the few keys a test or an older report has) writes back
    the same object; keys this version does not model are kept in ``extra``.

    Attributes:
        runtimes, precisions, batches, threads, ort_spinning, warmup, rounds, iterations,
            duration, calib, eval_data, limit, memory, openvino_default_row, torch_compile,
            host_io, cache, conditions, seed: as ``BenchConfig``'s, resolved (``duration`` is
            the timed seconds per row or None, ``cache`` the directory as text); None when not
            recorded.
        cluster: the Ray address of a ``--cluster`` run.
        nodes: the device labels of a ``--cluster`` run.
        node_ids: device label → the Ray node that ran its rows.
        extra: keys this version does not model, verbatim.
        written: the keys ``to_dict`` writes, in order.
    """

    runtimes: tuple[str, ...] = ()
    precisions: tuple[str, ...] | None = None
    batches: tuple[int, ...] = (1,)
    threads: int | None = None
    ort_spinning: bool | None = None
    warmup: int | None = None
    rounds: int | None = None
    iterations: int | None = None
    duration: float | None = None
    calib: str | None = None
    eval_data: str | None = None
    limit: int | None = None
    memory: bool | None = None
    openvino_default_row: bool | None = None
    torch_compile: bool | None = None
    host_io: bool | None = None
    cache: str | None = None
    conditions: str | None = None
    seed: int | None = None
    cluster: str | None = None
    nodes: tuple[str, ...] = ()
    node_ids: dict[str, str] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    written: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.written:  # built directly: every modelled field (cluster ones when set)
            skip = {"extra", "written"} | (
                set() if self.cluster is not None else {"cluster", "nodes", "node_ids"})
            keys = [f.name for f in dataclasses.fields(self) if f.name not in skip]
            object.__setattr__(self, "written", (*keys, *self.extra))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSettings:
        """Settings from the JSON's ``settings`` object, or any part of it."""
        return cls(**_settings_fields(d), extra={k: v for k, v in d.items()
                                                 if k not in _SETTINGS_FIELDS},
                   written=tuple(d))

    def to_dict(self) -> dict[str, Any]:
        """The JSON's ``settings`` object: the keys this was built from, lists for tuples."""
        out: dict[str, Any] = {}
        for key in self.written:
            value = self.extra[key] if key in self.extra else getattr(self, key)
            if key in _AS_LISTS and value is not None:
                value = list(value)
            elif isinstance(value, dict):
                value = dict(value)
            out[key] = value
        return out

    def evolve(self, **changes: Any) -> RunSettings:
        """A copy with ``changes`` applied; new keys are written after the existing ones."""
        extra = {**self.extra, **{k: v for k, v in changes.items() if k not in _SETTINGS_FIELDS}}
        written = (*self.written, *(k for k in changes if k not in self.written))
        return dataclasses.replace(self, **_settings_fields(changes), extra=extra,
                                   written=written)


_SETTINGS_FIELDS = frozenset(f.name for f in dataclasses.fields(RunSettings)) - {"extra",
                                                                                 "written"}
# tuples here, JSON lists
_AS_LISTS = frozenset(f for f in _SETTINGS_FIELDS
                      if str(RunSettings.__dataclass_fields__[f].type).startswith("tuple"))


def _settings_fields(d: dict[str, Any]) -> dict[str, Any]:
    """The modelled keys of ``d``, JSON lists as tuples."""
    return {k: (tuple(v) if k in _AS_LISTS and v is not None else v)
            for k, v in d.items() if k in _SETTINGS_FIELDS}
