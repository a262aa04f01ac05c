"""Turn MODEL arguments into model files per precision: files as given, zoo names exported.

A MODEL is an ``.onnx`` file, an OpenVINO IR ``.xml``, a registered model-file name
(``cifar10``, ``cifar10-int8``) or a zoo name. Zoo models are built with seeded random weights,
their state dict saved for the PyTorch row, and exported with ``edgeres.export.export_onnx``
into the cache (``<cache>/bench/<name>-<H>x<W>-v<version>/``), so a second run reuses them.
int8 files are made by ``edgeres.quantize.quantize`` next to their fp32 source in the cache.
Anything that cannot be produced here (an fp32 version of an int8 file, fp16 of a given file,
quantize not installed) becomes a *reason* that the row reports as skipped.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeres import __version__, names, runtimes
from edgeres._fs import atomic_write, sha256_file
from edgeres.errors import (
    EdgeresError,
    ModelFileError,
    UnknownModelError,
    UnknownNameError,
    first_line,
)
from edgeres.meta import ModelMeta
from edgeres.modelfile import open_model_file

log = logging.getLogger(__name__)

_ZOO_SEED = 0  # random weights of zoo models; the state dict is saved, so only reproducibility


class RowNotRun(Exception):  # noqa: N818 - reads as the condition, like BackendNotAvailable
    """Internal: a row is not measured; ``status`` ("skipped" or "failed") and ``reason`` go
    into the row. Raise one of the two subclasses; catch this."""

    def __init__(self, reason: str, status: str = "skipped") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class Unavailable(RowNotRun):
    """The row cannot run here (a runtime, device or package is missing): "skipped"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, "skipped")


class RowFailed(RowNotRun):
    """The row should have run and broke (an export, a quantization, a session): "failed"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, "failed")


@dataclass
class ModelSource:
    """One MODEL argument, resolved: where its files are (or will be) and its record.

    Attributes:
        arg: the argument as given.
        kind: "zoo", "file" (ONNX), "ir" (OpenVINO IR), "litert" (.tflite) or "executorch"
            (.pte; these two run on their own runtime only).
        meta: the metadata record (a zoo model's is known before export).
        path: the given file (None for zoo names).
        zoo_name: the zoo name for zoo models.
        workdir: the cache directory for this model's derived files.
        sha256: the given file's hash (None for zoo names); a quantize step's provenance
            names its input by it.
        files: precision → model file made or found so far.
    """

    arg: str
    kind: str
    meta: ModelMeta
    path: Path | None = None
    zoo_name: str | None = None
    workdir: Path | None = None
    sha256: str | None = None
    files: dict[str, Path] = field(default_factory=dict)
    _failed: dict[str, RowNotRun] = field(default_factory=dict)

    @property
    def cache(self) -> Path:
        """``workdir``, where derived files go; every resolved source (zoo, file) has one."""
        if self.workdir is None:
            msg = f"{self.arg} has no cache directory for derived files"
            raise RowFailed(msg)
        return self.workdir

    @property
    def own_precision(self) -> str:
        """The precision the given file stores (fp32 for zoo names)."""
        return "fp32" if self.kind == "zoo" else self.meta.precision

    def fail(self, precision: str, err: RowNotRun) -> RowNotRun:
        """Remember that ``precision`` cannot be made here: ``model_file`` raises ``err`` for
        it from now on (a cluster node is told what failed on the driver). Returns ``err``."""
        self._failed[precision] = err
        return err

    def failure(self, precision: str) -> RowNotRun | None:
        """Why ``precision`` cannot be made here, or None when it was not tried or worked."""
        return self._failed.get(precision)


def _onnx_meta(path: Path) -> ModelMeta | None:
    """The record in an ONNX file, read through ONNX Runtime with graph optimisation off."""
    from edgeres.modelfile import onnx_record

    return onnx_record(path)


def _zoo_error(arg: str, err: UnknownModelError | None) -> UnknownModelError:
    files = ", ".join(sorted(names.MODEL_FILES))
    text = str(err) if err else ""
    hint = text.split("; ", 1)[1] if "; " in text else "('edgeres models' lists all)"
    msg = (f"unknown model {arg!r}: not an existing file, a registered model file ({files}) "
           f"or a zoo model; {hint}")
    return UnknownModelError(msg)


def resolve_model(arg: str, cache: Path, *, record: Any = None) -> ModelSource:
    """Resolve one MODEL argument without exporting anything yet.

    An ONNX file without a record, or with ``record`` options stated, is benchmarked as a
    copy with the stated record inside (``edgeres.foreign.attach``), written once into the
    cache, so every runtime row and the int8 quantization read the same record.

    Raises:
        UnknownModelError: if it is neither a file, a registered model file nor a zoo name.
        ModelFileError: for a file that is not a readable model or carries no record.
        MetadataError: for stated options that do not fit the file.
    """
    try:
        path = names.resolve_model_file(arg)
    except UnknownNameError:
        if arg in names.MODEL_FILES:
            raise  # registered, but its shipped file is missing: that message says so
        path = None
    if path is not None:
        return _file_source(arg, path, cache, record)
    from edgeres.zoo import zoo_meta

    try:  # a zoo model is exported from PyTorch
        import torch  # noqa: F401
    except ImportError:
        msg = (f"{arg!r} is not a model file, and zoo names need torch; "
               "pip install 'edgeres[torch]' or pass an .onnx file")
        raise UnknownModelError(msg) from None
    try:
        meta = zoo_meta(arg)
    except UnknownModelError as e:
        raise _zoo_error(arg, e) from None
    h, w = meta.input_size
    workdir = cache / "bench" / f"{arg}-{h}x{w}-v{__version__}"
    return ModelSource(arg, "zoo", meta, zoo_name=arg, workdir=workdir)


def _file_source(arg: str, path: Path, cache: Path, record: Any) -> ModelSource:
    """A model file: ONNX (attached to a stated record when asked), an OpenVINO IR, or another
    runtime's own file (.tflite, .pte)."""
    if path.suffix.lower() not in (".onnx", ".xml"):  # another runtime's own file, or none
        return _edge_source(arg, path, runtimes.for_file(path).name, cache, record)
    kind = "ir" if path.suffix.lower() == ".xml" else "file"
    stated = record is not None and record.stated
    if kind == "ir" and stated:
        msg = (f"{path} is an OpenVINO IR; preprocessing options apply to .onnx files "
               "(attach the record with `edgeres attach` before converting)")
        raise ModelFileError(msg)
    meta = open_model_file(path).meta if kind == "ir" else _onnx_meta(path)
    if meta is None and kind == "ir":
        msg = (f"{path} carries no edgeres metadata record, which bench needs for its input "
               "and labels; attach one to the .onnx it came from with `edgeres attach`")
        raise ModelFileError(msg)
    sha = sha256_file(path)
    workdir = cache / "bench" / f"file-{sha[:16]}"
    if meta is None or stated:
        path, meta = _attached(path, workdir, record)
    return ModelSource(arg, kind, meta, path=path, sha256=sha, workdir=workdir)


def _edge_source(arg: str, path: Path, kind: str, cache: Path, record: Any) -> ModelSource:
    """A LiteRT .tflite or ExecuTorch .pte: only its own runtime runs it, in its precision."""
    from edgeres.modelfile import edge_record

    meta = edge_record(path, stated=record is not None and record.stated)
    sha = sha256_file(path)
    return ModelSource(arg, kind, meta, path=path, sha256=sha,
                       workdir=cache / "bench" / f"file-{sha[:16]}")


def _attached(path: Path, workdir: Path, record: Any) -> tuple[Path, ModelMeta]:
    """A copy of ``path`` with the stated record inside, in the cache (made once per record)."""
    from edgeres.foreign import RecordOptions, attach, stated_record

    options = record if record is not None else RecordOptions()
    meta = stated_record(path, options)  # no record and nothing stated: the error says what
    key = hashlib.sha256(meta.to_json().encode()).hexdigest()[:12]
    dst = workdir / f"stated-{key}.onnx"
    if not dst.is_file():
        workdir.mkdir(parents=True, exist_ok=True)
        attach(path, dst, options)
    copy = _onnx_meta(dst)
    assert copy is not None  # attach wrote it
    return dst, copy


def model_file(src: ModelSource, precision: str, *, calib: str) -> Path:
    """The model file of ``src`` in ``precision``, exporting or quantizing into the cache.

    Raises:
        RowNotRun: when that precision cannot be produced here (the reason says why).
    """
    if precision in src.files:
        return src.files[precision]
    known = src.failure(precision)
    if known is not None:
        raise known
    try:
        path = _make(src, precision, calib)
    except RowNotRun as e:
        src.fail(precision, e)
        raise
    except EdgeresError as e:  # export/quantize refused: the row fails, the matrix goes on
        raise src.fail(precision, RowFailed(str(e))) from None
    except Exception as e:  # torch/onnx/ORT's own error types: the same, with their first line
        log.debug("making %s %s failed", src.arg, precision, exc_info=True)
        raise src.fail(precision, RowFailed(first_line(e))) from None
    src.files[precision] = path
    return path


def _make(src: ModelSource, precision: str, calib: str) -> Path:
    if src.kind != "zoo" and precision == src.own_precision:
        return src.path  # type: ignore[return-value]  # file and IR sources have a path
    if src.kind == "zoo" and precision in ("fp32", "fp16"):
        return export_zoo(src, fp16=precision == "fp16")
    if precision == "int8" and src.own_precision == "fp32" and src.kind in ("zoo", "file"):
        return quantize_int8(src, model_file(src, "fp32", calib=calib), calib)
    what = {"ir": "an OpenVINO IR"}.get(src.kind, "a model file")
    reason = (f"{src.arg} is {what} stored in {src.own_precision}; bench cannot make "
              f"{precision} from it (pass the {precision} file, or a zoo name)")
    raise Unavailable(reason)


def weights_file(src: ModelSource) -> Path:
    """The saved state dict of a zoo model (exported first if need be).

    The export goes through ``model_file``, so a failure is remembered: the ONNX rows report
    the same reason without exporting again.

    Raises:
        RowFailed: when the export fails.
    """
    model_file(src, "fp32", calib="")  # fp32 of a zoo model needs no calibration data
    return src.cache / "weights.pt"


def export_zoo(src: ModelSource, *, fp16: bool) -> Path:
    """Export the zoo model (seeded random weights) to the cache, once; return the file."""
    import torch

    from edgeres.export import ExportConfig, export_onnx, seeded_model
    from edgeres.models import create_model

    workdir = src.cache
    dst = workdir / ("fp16.onnx" if fp16 else "fp32.onnx")
    weights = workdir / "weights.pt"
    if _cached(weights) and _cached(dst):
        return dst
    workdir.mkdir(parents=True, exist_ok=True)
    if _cached(weights):
        model: torch.nn.Module = create_model(src.arg)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    else:
        model = seeded_model(src.arg, seed=_ZOO_SEED)  # the caller's generator untouched
        with atomic_write(weights) as tmp:
            torch.save(model.state_dict(), tmp)
        _seal(weights)
    log.info("exporting %s to %s", src.arg, dst)
    export_onnx(model.eval(), dst, meta=src.meta, config=ExportConfig(fp16=fp16))
    _seal(dst)
    return dst


def _cached(path: Path) -> bool:
    """Whether cache entry ``path`` is intact: its sha256 matches the ``.sha256`` written with
    it. A missing, unsealed or altered entry (a killed run, a full disk, an edit) is removed,
    so the caller rebuilds it instead of benchmarking whatever is there."""
    seal = path.with_name(path.name + ".sha256")
    try:
        if path.is_file() and seal.read_text("ascii").strip() == sha256_file(path):
            return True
    except (OSError, UnicodeDecodeError):
        pass
    if path.exists() or seal.exists():
        log.warning("cache entry %s is incomplete or altered; rebuilding it", path)
    path.unlink(missing_ok=True)
    seal.unlink(missing_ok=True)
    return False


def _seal(path: Path) -> None:
    """Record ``path``'s sha256 beside it, for ``_cached``."""
    with atomic_write(path.with_name(path.name + ".sha256")) as tmp:
        tmp.write_text(sha256_file(path) + "\n", "ascii")


def _calib_key(calib: str) -> str:
    if calib in names.DATASETS and not Path(calib).exists():
        return calib
    resolved = str(names.resolve_data(calib).resolve())
    return "data-" + hashlib.sha256(resolved.encode()).hexdigest()[:12]


def quantize_int8(src: ModelSource, fp32: Path, calib: str) -> Path:
    """Quantize ``fp32`` to ONNX Runtime QDQ int8 with ``calib`` into the cache, once.

    The same QDQ file runs on OpenVINO too (its CPU plugin executes QDQ ONNX in int8).

    Raises:
        Unavailable: if ``edgeres.quantize`` is not importable (the int8 rows are skipped).
    """
    dst = src.cache / f"int8-ort-{_calib_key(calib)}.onnx"
    if _cached(dst):
        return dst
    try:
        from edgeres.calibration import CalibrationSet
        from edgeres.quantize import QuantConfig, quantize
    except ImportError as e:
        reason = f"int8 needs edgeres.quantize, which is not importable here ({e})"
        raise Unavailable(reason) from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    log.info("quantizing %s to %s with %s", fp32, dst, calib)
    # The fp32 file's own record (with its export provenance) is what quantize builds on.
    meta = _onnx_meta(fp32) or src.meta
    calibration: Any = CalibrationSet.from_data(calib, meta)
    # The default recipe for this host; the per-layer SQNR report is quantize's business, not
    # a benchmark's, so it is skipped (minutes for ResNet-50 on two cores).
    quantize(fp32, dst, calibration, backend="ort", config=QuantConfig(layer_report_samples=0))
    _seal(dst)
    return dst
