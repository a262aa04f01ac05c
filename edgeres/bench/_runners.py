"""One loaded configuration per (precision, runtime, precision mode): the thing that is timed.

ONNX Runtime and OpenVINO CPU rows load through ``edgeres.runtime.load``, exactly as users load
a model; ONNX Runtime GPU rows build the same backend with the GPU options of
``edgeres.runtimes.ort.ort_providers`` (TensorRT engine cache in edgeres's cache). The
PyTorch baselines (``torch-cpu``, ``torch-cuda``) run the same weights eagerly under
``torch.inference_mode`` and are checked against the fp32 ONNX file first, so they are the same
network. Whether a runtime exists on this machine is decided once per label; a missing one is
a *reason* ("CUDAExecutionProvider not in this onnxruntime build"), never an exception. The
GPU specifics (synchronisation, I/O binding, dtypes) live in ``_gpu.py``.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from edgeres import names
from edgeres import runtimes as _runtimes
from edgeres.bench import _gpu
from edgeres.bench._models import ModelSource, RowFailed, Unavailable, model_file, weights_file
from edgeres.bench.config import CPU_RUNTIMES, RuntimeLabel
from edgeres.errors import BackendNotAvailable, EdgeresError, first_line

if TYPE_CHECKING:
    from edgeres.runtime import Backend
    from edgeres.vocab import Mode

log = logging.getLogger(__name__)

# The PyTorch row must compute what the ONNX file computes: |torch - onnx| within this share
# of the largest |logit| (BN folding and kernel order differ by ~1e-6 of it; wrong weights
# differ by order 1).
_TORCH_PARITY_RTOL = 1e-3


@functools.cache
def unavailable_reason(label: str) -> str | None:
    """Why runtime ``label`` cannot run on this machine, or None when it can."""
    backend, device = RuntimeLabel.parse(label)
    if backend == "torch":
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed; pip install 'edgeres[torch]'"
        return _gpu.torch_cuda_reason() if device == "cuda" else None
    from edgeres import runtimes

    try:
        return runtimes.unavailable(backend, device)  # the install line when not installed
    except EdgeresError as e:  # a registered module that cannot even be imported
        return str(e)


def default_runtimes() -> tuple[str, ...]:
    """Every CPU runtime whose package is installed here."""
    return tuple(r for r in CPU_RUNTIMES if unavailable_reason(r) is None)


@dataclass
class Loaded:
    """One loaded configuration, ready to time at any batch size.

    Not a deployment target (``quantize --target``, ``TargetSpec``).

    Attributes:
        precision, runtime, mode: what was asked for (mode "fast" = runtime default).
        file: the file loaded (the weights file for torch).
        run: prepared input → logits, for accuracy.
        bind: prepared input → zero-argument callable for timing (inputs converted once).
        executed_precision: what the runtime reports it runs.
        input_dtype: the dtype the runtime takes.
        fixed_batch: the only batch size the graph accepts, when its batch axis is fixed.
        details: runtime facts for the report.
        meta: the loaded model's record.
    """

    precision: str
    runtime: str
    mode: str
    file: Path
    run: Callable[[np.ndarray], np.ndarray]
    bind: Callable[[np.ndarray], Callable[[], object]]
    executed_precision: str
    input_dtype: np.dtype
    fixed_batch: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    meta: Any = None


def load_config(src: ModelSource, precision: str, runtime: str, mode: str, *, threads: int,
                calib: str, spin: bool | None = None) -> Loaded:
    """Load one configuration; ``spin`` is ONNX Runtime's (``BackendOptions.spin``), which
    its rows record in ``details["spinning"]``.

    Raises:
        Unavailable: the row is "skipped" (not possible here), with the reason.
        RowFailed: the row "failed" (it should have worked), with the reason.
    """
    reason = unavailable_reason(runtime)
    if reason:
        raise Unavailable(reason)
    backend, device = RuntimeLabel.parse(runtime)
    # the file this row runs: the one given, or the ONNX export of a zoo model
    ext = src.path.suffix.lower() if src.path is not None else ".onnx"
    if backend == "torch" and ext not in (".onnx", ".xml"):
        msg = f"{runtime} cannot run a {ext} file; pass the .onnx (or a zoo name)"
        raise Unavailable(msg)
    reads = () if backend == "torch" else _runtimes.get(backend).suffixes
    if reads and ext not in reads:
        what = "an OpenVINO IR (.xml)" if ext == ".xml" else f"a {ext} file"
        msg = (f"{runtime} cannot run {what}; pass the {' or '.join(reads)} file "
               f"(edgeres export -o MODEL{reads[0]}, or quantize --backend {backend})")
        raise Unavailable(msg)
    if backend == "torch":
        return _load_torch(src, precision, runtime, mode, threads, calib)
    if precision == "bf16":
        msg = ("bf16 is requested of torch-cuda only; ONNX runtimes run bf16 only as their own "
               "choice (OpenVINO's default row on bf16 CPUs)")
        raise Unavailable(msg)
    if runtime in ("ort-cuda", "ort-tensorrt"):
        return _load_ort_gpu(src, precision, runtime, mode, threads, calib, spin)
    path = model_file(src, precision, calib=calib)
    from edgeres import runtime as rt

    try:
        # A parsed runtime label and bench mode, as text; load() checks them itself.
        p = rt.load(path, backend=cast("Backend", backend), device=device,
                    threads=threads, mode=cast("Mode", mode), spin=spin)
    except BackendNotAvailable as e:
        raise Unavailable(str(e)) from None
    except EdgeresError as e:
        raise RowFailed(str(e)) from None
    except Exception as e:  # a runtime's own error type (OpenVINO compile failure, ...)
        log.debug("loading %s on %s failed", path, runtime, exc_info=True)
        raise RowFailed(first_line(e)) from None
    batch_dim = p.backend.input_shape[0] if p.backend.input_shape else None
    return Loaded(
        precision=precision, runtime=runtime, mode=mode, file=path, run=p.run,
        bind=lambda x: functools.partial(p.run, x), executed_precision=p.executed_precision,
        input_dtype=np.dtype(p.backend.input_dtype),
        fixed_batch=batch_dim if isinstance(batch_dim, int) else None,
        details=dict(p.backend.details), meta=p.meta,
    )


def torch_weights(src: ModelSource) -> tuple[str, Path]:
    """The zoo name and state dict the PyTorch row runs.

    Zoo models use the weights saved at export; a model file uses the registered checkpoint
    made for its architecture (and, when recorded, with the same sha256).

    Raises:
        Unavailable: when no PyTorch weights are known for ``src``.
    """
    if src.kind == "zoo":
        return src.arg, weights_file(src)
    want = src.meta.weights_sha256
    for name, arch in names.WEIGHTS_MODEL.items():
        if arch != src.meta.name:
            continue
        path = names.package_data(names.WEIGHTS[name])
        if path.is_file() and want in (None, _sha(path)):
            return arch, path
    msg = (f"no PyTorch weights are known for {src.arg} (torch-cpu runs zoo names and files "
           "exported from registered weights)")
    raise Unavailable(msg)


@functools.cache
def _sha(path: Path) -> str:
    from edgeres._fs import sha256_file

    return sha256_file(path)


class TorchRunner:
    """A PyTorch module as ``run(x) -> logits`` on numpy, under ``torch.inference_mode``."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.module(torch.from_numpy(np.ascontiguousarray(x))).float().numpy()

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(x))  # converted once, outside timing
        module = self.module

        def call() -> object:
            with torch.inference_mode():
                return module(tensor)

        return call


def load_torch_module(zoo_name: str, weights: Path) -> Any:
    """Build ``zoo_name`` and load the state dict (``weights_only=True``) in eval mode."""
    from edgeres.models.weights import load_weights

    return load_weights(zoo_name, weights).model.eval()


def _load_torch(src: ModelSource, precision: str, runtime: str, mode: str, threads: int,
                calib: str) -> Loaded:
    cuda = runtime == "torch-cuda"
    if precision not in (_gpu.TORCH_CUDA_PRECISIONS if cuda else ("fp32",)):
        msg = ("torch-cuda runs the PyTorch model in fp32, fp16 and bf16; int8 runs on ONNX "
               "runtimes (ort-tensorrt on a GPU)" if cuda else
               f"torch-cpu runs the fp32 PyTorch model only; {precision} runs on "
               + {"fp16": "torch-cuda and ONNX runtimes", "bf16": "torch-cuda"}.get(
                   precision, "ONNX runtimes"))
        raise Unavailable(msg)
    inp = src.meta.input
    if inp.normalized_in_graph or inp.dtype != "float32" or inp.layout != "NCHW":
        # The timed inputs are the file's own (uint8 NHWC pixels); the PyTorch model takes
        # normalised float32 NCHW, and converting per call would time numpy, not PyTorch.
        fix = ("bench an export without --uint8-input for the PyTorch baseline"
               if inp.normalized_in_graph else "the PyTorch rows run edgeres's own NCHW zoo "
               "exports; compare this file on the ONNX runtimes")
        msg = (f"{runtime} takes float32 NCHW, but {src.arg} takes {inp.dtype} {inp.layout}"
               f"{' normalised in its graph' if inp.normalized_in_graph else ''}; {fix}")
        raise Unavailable(msg)
    import torch

    try:
        zoo_name, weights = torch_weights(src)  # a zoo model is exported here, first
        torch.set_num_threads(threads)
        runner = TorchRunner(load_torch_module(zoo_name, weights))
    except Unavailable:
        raise
    except EdgeresError as e:
        raise RowFailed(str(e)) from None
    except Exception as e:  # torch's own errors: the row fails, the matrix goes on
        log.debug("loading the PyTorch model for %s failed", src.arg, exc_info=True)
        raise RowFailed(first_line(e)) from None
    _check_parity(runner, src, calib)  # on the CPU, in fp32, before any cast
    details: dict[str, Any] = {"torch_threads": torch.get_num_threads(), "zoo_name": zoo_name}
    if not cuda:
        return Loaded(
            precision="fp32", runtime="torch-cpu", mode="model", file=weights, run=runner.run,
            bind=runner.bind, executed_precision="fp32", input_dtype=np.dtype(np.float32),
            details=details, meta=src.meta)
    try:
        gpu, load_ms = _gpu.timed_load(lambda: _gpu.TorchCudaRunner(
            runner.module, precision, compile=mode == "compile"))
        executed, facts = _gpu.torch_cuda_details(gpu, precision, mode == "compile")
    except Exception as e:  # CUDA out of memory, a driver error: this row fails alone
        log.debug("moving %s to CUDA failed", src.arg, exc_info=True)
        raise RowFailed(first_line(e)) from None
    return Loaded(
        precision=precision, runtime=runtime, mode=mode, file=weights, run=gpu.run,
        bind=gpu.bind, executed_precision=executed, input_dtype=np.dtype(np.float32),
        details={**details, **facts, "load_ms": load_ms}, meta=src.meta)


def _trt_int8_file(src: ModelSource, calib: str) -> Path:
    """The int8 file TensorRT runs: a given int8 file, else ``--target tensorrt`` made here.

    TensorRT takes symmetric int8 activations only (``edgeres quantize --target tensorrt``);
    the default (host) target's asymmetric U8 activations are what ORT's CPU wants instead.
    """
    if src.kind == "ir" or src.own_precision != "fp32":
        return model_file(src, "int8", calib=calib)
    key = "int8@tensorrt"
    if key in src.files:
        return src.files[key]
    failed = src.failure(key)
    if failed is not None:
        raise failed
    try:
        from edgeres.bench._models import _calib_key, _onnx_meta
        from edgeres.calibration import CalibrationSet
        from edgeres.quantize import QuantConfig, quantize

        fp32 = model_file(src, "fp32", calib=calib)
        dst = src.cache / f"int8-tensorrt-{_calib_key(calib)}.onnx"
        if not dst.is_file():
            meta = _onnx_meta(fp32) or src.meta
            quantize(fp32, dst, CalibrationSet.from_data(calib, meta), backend="ort",
                     config=QuantConfig(target="tensorrt", layer_report_samples=0))
    except Unavailable as e:
        src.fail(key, e)
        raise
    except ImportError as e:
        err = Unavailable(f"int8 needs edgeres.quantize, not importable here ({e})")
        raise src.fail(key, err) from None
    except Exception as e:  # quantize's EdgeresError or ORT's own: the row fails
        log.debug("quantizing %s for TensorRT failed", src.arg, exc_info=True)
        reason = str(e) if isinstance(e, EdgeresError) else first_line(e)
        raise src.fail(key, RowFailed(reason)) from None
    src.files[key] = dst
    return dst


def _load_ort_gpu(src: ModelSource, precision: str, runtime: str, mode: str, threads: int,
                  calib: str, spin: bool | None) -> Loaded:
    """ONNX Runtime on CUDA or TensorRT, timed through I/O binding (or with copies: host-io)."""
    device = RuntimeLabel.parse(runtime).device
    trt = device == "tensorrt"
    path = _trt_int8_file(src, calib) if trt and precision == "int8" else \
        model_file(src, precision, calib=calib)
    from edgeres.runtime import Predictor
    from edgeres.runtime.backends import BackendOptions
    from edgeres.runtimes.ort import OrtBackend

    fast = mode == "fast"
    cache = _gpu.engine_dir(src.cache, path, precision, fast) if trt else None
    try:
        options = BackendOptions(device=device, mode="fast" if fast else "model",
                                 threads=threads, engine_cache=cache, spin=spin)
        impl, load_ms = _gpu.timed_load(lambda: OrtBackend(path, options))
        p = Predictor(impl, impl.meta, path)
    except BackendNotAvailable as e:
        raise Unavailable(str(e)) from None
    except EdgeresError as e:
        raise RowFailed(str(e)) from None
    except Exception as e:  # ORT's own error types (an engine build that fails, ...)
        log.debug("loading %s on %s failed", path, runtime, exc_info=True)
        raise RowFailed(first_line(e)) from None
    import onnxruntime as ort

    if mode == _gpu.HOST_IO:
        bind: Callable[[np.ndarray], Callable[[], object]] = \
            lambda x: functools.partial(p.run, x)  # noqa: E731 - numpy in and out: copies timed
    else:
        bind = lambda x: _gpu.OrtDeviceCall(ort, impl.session, x)  # noqa: E731
    batch_dim = impl.input_shape[0] if impl.input_shape else None
    return Loaded(
        precision=precision, runtime=runtime, mode=mode, file=path, run=p.run, bind=bind,
        executed_precision=p.executed_precision, input_dtype=np.dtype(impl.input_dtype),
        fixed_batch=batch_dim if isinstance(batch_dim, int) else None,
        details={**impl.details, "load_ms": load_ms, "engine_cache": str(cache) if cache else None},
        meta=p.meta)


def _check_parity(runner: TorchRunner, src: ModelSource, calib: str) -> None:
    """Refuse a PyTorch row whose weights do not compute what the fp32 model file computes."""
    if src.kind == "ir" or src.meta.input.dtype != "float32":
        return
    from edgeres import runtime as rt

    try:
        ref = rt.load(model_file(src, "fp32", calib=calib), backend="ort")
    except (Unavailable, EdgeresError):
        return  # nothing to compare with; the row still runs the registered weights
    shape = (2, *(int(d) for d in src.meta.input.shape[1:]))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    want, got = ref.run(x), runner.run(x)
    err = float(np.abs(want - got).max())
    if err > _TORCH_PARITY_RTOL * max(1.0, float(np.abs(want).max())):
        msg = (f"the PyTorch weights for {src.arg} do not match its ONNX file "
               f"(largest logit difference {err:.3g}); re-export the file from those weights")
        raise Unavailable(msg)
