"""ExecuTorch: run, export and quantize ``.pte`` programs (backend ``executorch``).

fp32: ``torch.export.export`` -> ``to_edge_transform_and_lower`` with ``XnnpackPartitioner`` ->
``to_executorch``; int8: PT2E with ``XNNPACKQuantizer`` (symmetric, per-channel weights) on the
PyTorch model, calibrated on the same ``CalibrationSet`` as every backend, then the same
lowering. Both run through ExecuTorch's Python runtime (``executorch.runtime.Runtime``), which
needs torch on the device. Every delegated graph takes and returns float tensors (the int8
program quantizes inside XNNPACK), so ``executed_precision`` comes from the record.

The record travels in a sidecar ``<file>.pte.json``: a .pte has no free-form metadata map
(a constant method could carry bytes, but reading it needs the runtime and changes the
program), so ``companion_files`` names the sidecar and it is written with the model, atomically.

The thread count is the process's ExecuTorch threadpool: it is set before the first method
is loaded and never again (resetting it after ``load_method`` corrupted the heap, issue 24),
so a second load asking for another count is refused in one line.

Top-level imports: stdlib, numpy and device-safe edgeres modules; torch and executorch are
imported inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeres.errors import (
    BackendNotAvailable,
    DataError,
    MetadataError,
    ModelFileError,
    QuantizationError,
    first_line,
)
from edgeres.meta import ModelMeta

if TYPE_CHECKING:
    from edgeres.calibration import CalibrationSet
    from edgeres.quantize._report import QuantDetails
    from edgeres.quantize.config import QuantConfig, TargetSpec
    from edgeres.runtime import Predictor
    from edgeres.runtime.backends import BackendOptions
    from edgeres.runtimes._protocol import Runtime

log = logging.getLogger(__name__)

INSTALL = "pip install 'edgeres[executorch]' (its runtime needs torch)"
_METHOD = "forward"
_POOL = threading.Lock()
_pool_threads: list[int] = []  # the threadpool size once a method has loaded in this process


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch 2.13's pytree warns on every node ExecuTorch's export passes pickle (LeafSpec
    is deprecated): noise to an edgeres user, hidden while exporting and lowering."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)
        yield


def sidecar(path: Path) -> Path:
    """The record file travelling with ``path``: ``model.pte`` -> ``model.pte.json``."""
    return path.with_name(path.name + ".json")


def _import_runtime() -> Any:
    try:
        from executorch.runtime import Runtime
    except ImportError:
        msg = f"executorch is not installed; {INSTALL}"
        raise BackendNotAvailable(msg) from None
    return Runtime.get()


def _threadpool(threads: int | None) -> int:
    """Set the threadpool to ``threads`` before the first method loads; return its size."""
    from executorch.extension.pybindings import portable_lib

    with _POOL:
        if not _pool_threads:
            if threads:
                portable_lib._unsafe_reset_threadpool(threads)  # noqa: SLF001 - ExecuTorch's only thread-count setting
            _pool_threads.append(int(portable_lib._threadpool_get_thread_count()))  # noqa: SLF001 - and its only reader
        elif threads and threads != _pool_threads[0]:
            msg = (f"ExecuTorch's threadpool has {_pool_threads[0]} threads in this process, "
                   f"fixed when its first model loaded; {threads} needs a new process")
            raise BackendNotAvailable(msg)
        return _pool_threads[0]


def read_sidecar(path: Path) -> str | None:
    """The record text beside ``path``, or None when there is no sidecar."""
    side = sidecar(path)
    if not side.is_file():
        return None
    try:
        return side.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        msg = f"cannot read the record {side} ({first_line(e)}); re-export the model"
        raise MetadataError(msg) from None


def write_record(tmp: Path, meta: ModelMeta) -> None:
    """Write the sidecar record (``tmp`` is its temporary path from ``_fs.atomic_files``)."""
    tmp.write_text(meta.to_json(), encoding="utf-8")


class ExecuTorchBackend:
    """One loaded ExecuTorch method (``edgeres.runtime.backends.InferenceBackend``): NCHW
    float32 in, float logits out. Calls are serialised: a Method is not thread-safe."""

    name = "executorch"

    def __init__(self, path: Path, options: BackendOptions, *,
                 meta: ModelMeta | None = None) -> None:
        from edgeres.runtime.backends import check_image_input

        if options.device != "cpu":
            msg = f"ExecuTorch runs on the CPU here, not {options.device!r}; use --device cpu"
            raise BackendNotAvailable(msg)
        if not path.is_file():
            what = "is a folder, not a model file" if path.is_dir() else "does not exist"
            msg = f"model file {path} {what}; pass a .pte file"
            raise ModelFileError(msg)
        runtime = _import_runtime()
        threads = _threadpool(options.threads)  # before any method is loaded
        self._method = self._load(runtime, path)
        info = self._method.metadata
        count = info.num_inputs()
        shape = tuple(info.input_tensor_meta(0).sizes()) if count == 1 else None
        dtype = _dtype_name(info.input_tensor_meta(0).dtype()) if count else "none"
        check_image_input(path, [f"input {i}" for i in range(count)], shape, dtype)
        self.device: str = "cpu"
        self.input_name: str = "input 0"
        self.input_shape: tuple[Any, ...] = shape or ()
        self.input_dtype: np.dtype = np.dtype(dtype)
        self.output_shape: tuple[Any, ...] = tuple(info.output_tensor_meta(0).sizes())
        self.record_text: str | None = read_sidecar(path)
        stored = (ModelMeta.from_json(self.record_text).fitted_to(self.input_shape)
                  if self.record_text else None)
        self.meta: ModelMeta | None = meta or stored
        self.executed_precision: str | None = self.meta.precision if self.meta else "fp32"
        self.details: dict[str, Any] = {"threads": threads, "delegate": "XNNPACK",
                                        "version": _version()}
        self._lock = threading.Lock()

    @staticmethod
    def _load(runtime: Any, path: Path) -> Any:
        try:
            program = runtime.load_program(path)
            if _METHOD not in program.method_names:
                names = ", ".join(sorted(program.method_names)) or "none"
                msg = f"{path} has no '{_METHOD}' method (has {names}); export a classifier"
                raise ModelFileError(msg)
            return program.load_method(_METHOD)
        except ModelFileError:
            raise
        except Exception as e:  # RuntimeError from the pybindings, with an error code
            msg = f"{path} could not be loaded by ExecuTorch ({first_line(e)}); re-export it"
            raise ModelFileError(msg) from None

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        try:
            with self._lock:
                out = self._method.execute([torch.from_numpy(np.ascontiguousarray(x))])
        except Exception as e:  # RuntimeError naming the failing call and an error code
            msg = f"ExecuTorch failed on an input of shape {x.shape} ({first_line(e)})"
            raise DataError(msg) from None
        return out[0].numpy()


def _dtype_name(code: Any) -> str:
    """numpy name of an ExecuTorch ScalarType (6 Float, 5 Half, 0 Byte, 1 Char)."""
    return {6: "float32", 5: "float16", 0: "uint8", 1: "int8"}.get(int(code), f"type {code}")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("executorch")
    except Exception:  # metadata missing in a vendored copy: not worth failing a load
        return "unknown"


# --- export (PyTorch -> .pte) -----------------------------------------------------------------

def _lower(exported: Any) -> bytes:
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
            XnnpackPartitioner,
        )
        from executorch.exir import to_edge_transform_and_lower
    except ImportError:
        msg = f"executorch is not installed; {INSTALL}"
        raise BackendNotAvailable(msg) from None
    with _quiet():
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        return bytes(edge.to_executorch().buffer)


def convert(module: Any, example: Any) -> bytes:
    """``module`` (eval, BatchNorms folded) as .pte bytes, fully delegated to XNNPACK."""
    import torch

    with _quiet():
        return _lower(torch.export.export(module, (example,)))


def bytes_runner(data: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """A function running .pte ``data`` on float NCHW batches of its fixed batch."""
    from edgeres.runtime.backends import BackendOptions

    with tempfile.TemporaryDirectory(prefix="edgeres.pte.") as tmp:
        path = Path(tmp) / "model.pte"
        path.write_bytes(data)
        backend = ExecuTorchBackend(path, BackendOptions(threads=None))
    del threads  # the process's threadpool: set once, never reset (module docstring)
    return backend.run


def write_model(tmp: Path, data: bytes, meta: ModelMeta, record_tmp: Path) -> None:
    """Write .pte ``data`` to ``tmp`` and its record to ``record_tmp`` (the sidecar's temp)."""
    tmp.write_bytes(data)
    write_record(record_tmp, meta)


# --- int8 (PT2E + XNNPACKQuantizer on the PyTorch model) --------------------------------------

def torch_model(meta: ModelMeta, src: Path) -> Any:
    """The PyTorch model ``meta`` was exported from: a zoo model with registered weights whose
    sha256 matches the record, or the fixed-seed init when the record has no weights.

    Raises:
        QuantizationError: the record names no zoo model, or weights edgeres cannot find.
    """
    from edgeres.export import seeded_model
    from edgeres.models import list_models
    from edgeres.models.weights import load_weights
    from edgeres.names import WEIGHTS, WEIGHTS_MODEL

    if meta.name not in list_models():
        msg = (f"{src}'s record names {meta.name!r}, not a zoo model; ExecuTorch int8 quantizes "
               "the PyTorch model, so start from `edgeres export ZOO_MODEL --format pte`")
        raise QuantizationError(msg)
    if meta.weights_sha256 is None:
        return seeded_model(meta.name, num_classes=meta.num_classes)
    for weights, model in WEIGHTS_MODEL.items():
        if model == meta.name and weights in WEIGHTS:
            loaded = load_weights(meta.name, weights, num_classes=meta.num_classes)
            if loaded.sha256 == meta.weights_sha256:
                return loaded.model
    msg = (f"{src} was exported from {meta.name} weights (sha256 {meta.weights_sha256[:12]}...) "
           "that are not registered here; ExecuTorch int8 needs the PyTorch weights")
    raise QuantizationError(msg)


class ExecuTorchQuantizer:
    """``edgeres.quantize._protocol.Quantizer`` for ExecuTorch: PT2E with XNNPACKQuantizer.

    No per-layer float fallback (``--exclude``/``--max-drop`` are refused in one line): the
    PT2E quantizer annotates by module type, not by edgeres' layer names.
    """

    backend = "executorch"
    layers: tuple[str, ...] = ()
    op_types: dict[str, str] = {}  # no layers: no per-layer rows

    def __init__(self, src: Path, calibration: CalibrationSet, spec: TargetSpec,
                 config: QuantConfig, workdir: Path | None = None) -> None:
        if config.max_drop is not None:
            msg = ("--max-drop needs layers returned to float, which the executorch backend does "
                   "not do; drop --max-drop (--val still reports the drop) or use --backend ort")
            raise QuantizationError(msg)
        if src.suffix.lower() != ".pte":
            msg = (f"{src} is not a .pte; ExecuTorch int8 quantizes the PyTorch model behind an "
                   "fp32 .pte (`edgeres export ZOO_MODEL --weights W --format pte`)")
            raise QuantizationError(msg)
        _import_runtime()
        self._src, self.calibration, self.meta = src, calibration, calibration.meta
        self._per_channel = spec.per_channel if config.per_channel is None else config.per_channel
        self._own = None if workdir else tempfile.TemporaryDirectory(prefix="edgeres.pte.")
        self._dir = workdir or Path(self._own.name)  # type: ignore[union-attr]
        self._model = torch_model(self.meta, src)
        self._prepared: Any = None
        self._built: Path | None = None

    @property
    def fp32_path(self) -> Path:
        return self._src

    def calibrate(self) -> None:
        import torch
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

        from edgeres.models.deploy import eval_mode, fold_batchnorm

        quantizer = XNNPACKQuantizer().set_global(
            get_symmetric_quantization_config(is_per_channel=self._per_channel))
        batches = [next(iter(b.values())) for b in self.calibration]
        with eval_mode(self._model):
            module = fold_batchnorm(self._model).eval()
        example = torch.from_numpy(batches[0])
        with _quiet():
            graph = torch.export.export(module, (example,)).module()
            self._prepared = prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for x in batches:
                self._prepared(torch.from_numpy(x))
        self._example = example

    def check_names(self, names: Sequence[str]) -> None:
        if names:
            msg = ("--exclude is not supported by the executorch backend (no per-layer float "
                   "fallback); drop it or use --backend ort")
            raise QuantizationError(msg)

    def build(self, floats: tuple[str, ...]) -> Path:
        import torch
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

        self.check_names(floats)
        if self._built is None:
            if self._prepared is None:
                self.calibrate()
            with _quiet():
                converted = convert_pt2e(self._prepared)
                exported = torch.export.export(converted, (self._example,))
            path = self._dir / "int8.pte"
            path.write_bytes(_lower(exported))
            self._built = path
        return self._built

    def load(self, path: Path, threads: int | None = None) -> Predictor:
        from edgeres.runtime import Predictor
        from edgeres.runtime.backends import BackendOptions

        meta = self.meta.evolve(precision="int8") if path == self._built else self.meta
        backend = ExecuTorchBackend(path, BackendOptions(threads=None), meta=meta)
        return Predictor(backend, meta, path)

    def tensor_runner(self, path: Path, names: Sequence[str]
                      ) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        return lambda x: {}  # no layer pairs (compare_tensors): nothing to run

    def compare_tensors(self, path: Path) -> dict[str, tuple[str, str]]:
        return {}

    def details(self) -> QuantDetails:
        from edgeres.quantize._report import QuantDetails

        return QuantDetails(format="ExecuTorch .pte (PT2E XNNPACKQuantizer, XNNPACK delegate)",
                            activation_type="int8", activation_symmetric=False,
                            per_channel=self._per_channel)

    def save(self, path: Path, dst: Path, meta: ModelMeta) -> None:
        dst.write_bytes(path.read_bytes())  # the sidecar: quantize's publication (companions)


class _ExecuTorch:
    """The ExecuTorch runtime (``edgeres.runtimes._protocol.Runtime``)."""

    name = "executorch"
    devices: tuple[str, ...] = ("cpu",)
    suffixes: tuple[str, ...] = (".pte",)
    dist = "executorch"
    min_version = "1.5.1"
    # Its Python runtime imports torch (executorch pins none; 2.13.0 is the one tested with it)
    # and executorch 1.5.1 requires numpy >= 2.0.0: a bundle's requirements.txt states both
    # (runtimes.device_requirements; tests/test_edge_bundles.py runs a bundle at these).
    device_needs: tuple[tuple[str, str], ...] = (("torch", "2.13.0"), ("numpy", "2.0.0"))
    quantizes = ".pte"  # the float file its quantizer takes

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("executorch") is None:
            return f"executorch is not installed; {INSTALL}"
        return None

    def load(self, path: Path, options: BackendOptions,
             meta: ModelMeta | None = None) -> ExecuTorchBackend:
        return ExecuTorchBackend(Path(path), options, meta=meta)

    def read_record(self, path: Path) -> str | None:
        return read_sidecar(Path(path))

    def companion_files(self, path: Path) -> list[Path]:
        return [sidecar(Path(path))]

    def quantizer(self, src: Path, calibration: CalibrationSet, spec: TargetSpec,
                  config: QuantConfig) -> ExecuTorchQuantizer:
        from edgeres.quantize._protocol import workdir

        return ExecuTorchQuantizer(src, calibration, spec, config, workdir())


RUNTIME: Runtime = _ExecuTorch()  # mypy checks it against the contract
