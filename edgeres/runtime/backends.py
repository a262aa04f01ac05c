"""ONNX Runtime and OpenVINO behind one small interface; each runtime is imported lazily.

A backend owns one compiled session, created once and reused, and exposes ``run(x) -> logits``
plus what actually executes (providers or device, inference precision, threads). It checks the
graph is shaped like an image classifier's (one 4-D float or uint8 input) and turns every
runtime failure into an ``EdgeresError``. Nothing here imports torch, onnx or click.
"""

from __future__ import annotations

import logging
import platform
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from edgeres._hw import (
    ORT_PROVIDERS,
    int8_execution,
    ort_executed,
    ov_has_device,
    ov_precision_hint,
    ov_precision_name,
)
from edgeres.errors import (
    BackendNotAvailable,
    DataError,
    EdgeresError,
    ModelFileError,
    first_line,
    missing_extra,
)
from edgeres.meta import IR_RECORD_PATHS, METADATA_KEY, ModelMeta

log = logging.getLogger(__name__)

BACKENDS = ("auto", "ort", "openvino", "litert", "executorch")
DEVICES = ("cpu", "cuda", "tensorrt", "gpu")
PRECISIONS = ("model", "fast")
_ORT_TYPES = {"float": "float32", "double": "float64"}  # ORT "tensor(T)" names that differ
_INPUT_DTYPES = ("float32", "float16", "uint8")  # what an image classifier's input can be
# cuDNN convolution algorithm search of ONNX Runtime's CUDA EP (OrtCudnnConvAlgoSearch).
# EXHAUSTIVE (ORT's default) times every algorithm once per input shape and keeps the fastest:
# the cost lands in the first call at each shape, never in a timed one, so steady-state
# latency is the best cuDNN offers. HEURISTIC picks without timing; DEFAULT always uses
# IMPLICIT_PRECOMP_GEMM (least workspace memory).
CUDNN_CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
_GPU_ID = 0  # the first CUDA device; edgeres runs one GPU


@dataclass(frozen=True)
class BackendOptions:
    """How to run a model; validated when built (CONTRIBUTING R5).

    Attributes:
        device: "cpu", "cuda" or "tensorrt" (ONNX Runtime), "gpu" (OpenVINO).
        precision: "model" runs the record's precision; "fast" lets the runtime lower it.
        threads: intra-op threads, or None for the runtime's default.
        cudnn_conv_algo_search: the CUDA EP's cuDNN algorithm search (``CUDNN_CONV_ALGO_SEARCH``),
            also used by the CUDA EP behind TensorRT.
        engine_cache: directory for TensorRT engines (``trt_engine_cache_path``), so a second
            session loads the engine instead of building it; None = build every time.
    """

    device: Literal["cpu", "cuda", "tensorrt", "gpu"] = "cpu"
    precision: Literal["model", "fast"] = "model"
    threads: int | None = None
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    engine_cache: Path | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            msg = f"unknown device {self.device!r}; use one of {', '.join(DEVICES)}"
            raise BackendNotAvailable(msg)
        if self.precision not in PRECISIONS:
            msg = f"unknown precision {self.precision!r}; use 'model' (as stored) or 'fast'"
            raise EdgeresError(msg)
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            msg = f"threads must be a positive integer or None, got {self.threads!r}"
            raise EdgeresError(msg)
        if self.cudnn_conv_algo_search not in CUDNN_CONV_ALGO_SEARCH:
            msg = (f"unknown cudnn_conv_algo_search {self.cudnn_conv_algo_search!r}; use one of "
                   f"{', '.join(CUDNN_CONV_ALGO_SEARCH)}")
            raise EdgeresError(msg)


Providers = list[tuple[str, dict[str, Any]]]  # InferenceSession(providers=...), best first


def ort_providers(options: BackendOptions, stored: str = "fp32") -> Providers:
    """ONNX Runtime's execution providers for ``options``, best first, with their options.

    CUDA: ``device_id`` and ``cudnn_conv_algo_search``. TensorRT (CUDA, then CPU, behind it for
    the nodes it does not take): ``trt_fp16_enable`` for an fp16 file or ``precision="fast"``;
    ``trt_int8_enable`` for an int8 file, whose QDQ nodes TensorRT executes as explicit
    quantization with their own scales (no calibration table: ORT #8969; without the flag the
    engine build refuses the int8 layers, ORT #13381); ``trt_engine_cache_enable`` and
    ``trt_engine_cache_path`` when ``options.engine_cache`` is set.

    Args:
        options: the device, precision mode and GPU settings.
        stored: the precision the model file stores (its record's), which picks the flags.

    Returns:
        ``[(provider name, provider options), ...]`` as ``InferenceSession(providers=...)``
        takes them.
    """
    cpu: tuple[str, dict[str, Any]] = ("CPUExecutionProvider", {})
    if options.device not in ("cuda", "tensorrt"):
        return [cpu]
    cuda = ("CUDAExecutionProvider", {"device_id": _GPU_ID,
                                      "cudnn_conv_algo_search": options.cudnn_conv_algo_search})
    if options.device == "cuda":
        return [cuda, cpu]
    trt: dict[str, Any] = {
        "device_id": _GPU_ID,
        "trt_fp16_enable": options.precision == "fast" or stored == "fp16",
        "trt_int8_enable": stored == "int8",
    }
    if options.engine_cache is not None:
        trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(options.engine_cache))
    return [("TensorrtExecutionProvider", trt), cuda, cpu]


class InferenceBackend(Protocol):
    """What the Predictor needs from a runtime (``OrtBackend``, ``OpenVINOBackend``).

    Not ``edgeres.runtime.Backend``, which names a backend ("auto", "ort", "openvino").
    """

    name: str
    device: str
    input_name: str
    input_shape: tuple[Any, ...]
    input_dtype: np.dtype
    output_shape: tuple[Any, ...]
    meta: ModelMeta | None
    record_text: str | None
    executed_precision: str | None
    details: dict[str, Any]

    def run(self, x: np.ndarray) -> np.ndarray: ...


def _ov_reason(e: BaseException) -> str:
    """The informative line of an OpenVINO error (its text starts with source locations)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(e).__name__])[-1][:200]


def check_image_input(path: Path, names: Sequence[str], shape: tuple[Any, ...] | None,
                      dtype: str) -> None:
    """THE input rule of an image classifier, for the runtime and ``foreign.read_graph``: one
    input, 4-D (NCHW or NHWC), float32/float16/uint8.

    Args:
        path: the model file, for the message.
        names: the graph's input names.
        shape: the first input's shape (None: unknown rank).
        dtype: the first input's element type ("float32", ...).

    Raises:
        ModelFileError: naming what is not supported.
    """
    if len(names) != 1:
        shown = ", ".join(names[:4]) or "none"
        msg = (f"{path} has {len(names)} inputs ({shown}); edgeres handles classifiers with "
               "exactly one 4-D image input")
        raise ModelFileError(msg)
    if shape is None or len(shape) != 4:
        rank = "an input of unknown rank" if shape is None else f"a {len(shape)}-D input"
        msg = (f"{path} takes {rank} {names[0]} {list(shape or [])}; edgeres handles one 4-D "
               "image input (NCHW or NHWC)")
        raise ModelFileError(msg)
    if dtype not in _INPUT_DTYPES:
        msg = f"{path} takes {dtype} input; edgeres handles float32, float16 or uint8 images"
        raise ModelFileError(msg)


def _ov_name(port: Any, index: int) -> str:
    """An OpenVINO input's name, or its position when it has none."""
    try:
        return str(port.get_any_name())
    except RuntimeError:  # OpenVINO raises when a tensor has no names
        return f"input {index}"


def _ort_executed(device: str, precision: str, meta: ModelMeta | None) -> str | None:
    """What ONNX Runtime really computes in, when it differs from the record (None: as stored)."""
    stored = meta.precision if meta is not None else "fp32"
    return ort_executed(device, precision, stored, platform.machine())  # the one rule, _hw


def _import_ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        msg = "onnxruntime is not installed; pip install onnxruntime (or onnxruntime-gpu)"
        raise BackendNotAvailable(msg) from None
    return ort


class OrtBackend:
    """One ``onnxruntime.InferenceSession``, shared by all threads.

    ``InferenceSession.run`` may be called concurrently from several threads (ONNX Runtime's
    documented threading model), so no lock and no per-thread state is needed.
    """

    name = "ort"

    def __init__(self, path: Path, options: BackendOptions, *, meta: ModelMeta | None = None,
                 session_options: Any = None) -> None:
        ort = _import_ort()
        device = options.device
        if device not in ORT_PROVIDERS:
            msg = (f"ONNX Runtime has no device {device!r}; use cpu, cuda or tensorrt "
                   "(or --backend openvino for gpu)")
            raise BackendNotAvailable(msg)
        available = ort.get_available_providers()
        wanted = ORT_PROVIDERS[device][0]
        stored = meta.precision if meta is not None else "fp32"
        if wanted not in available:
            msg = (f"{wanted} is not in this onnxruntime build (has {', '.join(available)}); "
                   "install onnxruntime-gpu on a machine with an NVIDIA GPU, or use --device cpu")
            raise BackendNotAvailable(msg)
        so = session_options if session_options is not None else ort.SessionOptions()
        if session_options is None:
            so.log_severity_level = 3  # ORT's own C++ warnings would go straight to stderr
        if options.threads:
            so.intra_op_num_threads = options.threads
        if device == "tensorrt" and meta is None:
            stored = _ort_record_precision(ort, path)  # picks the fp16/int8 engine flags
        self.providers = ort_providers(options, stored)
        self.session = self._session(ort, path, so, options, self.providers)
        if wanted not in self.session.get_providers():
            msg = (f"{wanted} could not start for {path} (no GPU, or CUDA/cuDNN/TensorRT "
                   "libraries missing); check the installation or use --device cpu")
            raise BackendNotAvailable(msg)
        self.device = device
        self._describe_io(path)
        record = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        self.record_text: str | None = record  # as stored, for bundles' metadata.json
        in_file = ModelMeta.from_json(record).fitted_to(self.input_shape) if record else None
        self.meta = meta or in_file
        self.executed_precision = _ort_executed(device, options.precision, self.meta)
        self.details = {
            "providers": self.session.get_providers(),
            "threads": so.intra_op_num_threads or "default",
            "version": ort.__version__,
        }
        if device != "cpu":
            self.details["provider_options"] = {n: o for n, o in self.providers if o}
        self._outputs = [self.session.get_outputs()[0].name]

    @staticmethod
    def _session(ort: Any, path: Path, so: Any, options: BackendOptions,
                 providers: Providers) -> Any:
        if options.engine_cache is not None:
            options.engine_cache.mkdir(parents=True, exist_ok=True)
        try:
            return ort.InferenceSession(str(path), so, providers=providers)
        except Exception as e:  # ORT raises its own Fail/InvalidProtobuf/... types
            text = first_line(e)
            if options.device != "cpu" and any(
                word in text.lower() for word in ("provider", "cuda", "tensorrt", "cudnn")
            ):
                msg = f"{options.device} could not start in ONNX Runtime ({text}); use --device cpu"
                raise BackendNotAvailable(msg) from None
            msg = f"{path} could not be loaded by ONNX Runtime ({text}); re-export it"
            raise ModelFileError(msg) from None

    def _describe_io(self, path: Path) -> None:
        inputs = self.session.get_inputs()
        first = inputs[0] if inputs else None
        shape = tuple(first.shape) if first is not None and first.shape is not None else None
        kind = first.type.removeprefix("tensor(").removesuffix(")") if first else "none"
        dtype = _ORT_TYPES.get(kind, kind)
        check_image_input(path, [i.name for i in inputs], shape, dtype)
        self.input_name = inputs[0].name  # exactly one input, checked above
        self.input_shape = shape
        self.input_dtype = np.dtype(dtype)
        self.output_shape = tuple(self.session.get_outputs()[0].shape or ())

    def run(self, x: np.ndarray) -> np.ndarray:
        try:
            return self.session.run(self._outputs, {self.input_name: x})[0]
        except Exception as e:  # ORT's exception types derive from Exception only
            msg = f"ONNX Runtime failed on an input of shape {x.shape} ({first_line(e)})"
            raise DataError(msg) from None


class OpenVINOBackend:
    """An OpenVINO compiled model with one infer request per calling thread.

    A compiled model is shared; an ``InferRequest`` is not thread-safe, so each thread lazily
    creates its own (OpenVINO's threading guidance) and keeps it in a ``threading.local``.
    ``precision="model"`` pins ``INFERENCE_PRECISION_HINT`` to the record's precision (f32 for
    fp32 and int8 models), because on AMX CPUs OpenVINO otherwise runs fp32 layers in bf16
    (about 1e-2 relative logit error); ``"fast"`` leaves the runtime's choice and
    ``executed_precision`` reports it.
    """

    name = "openvino"

    def __init__(self, path: Path, options: BackendOptions, *,
                 meta: ModelMeta | None = None) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise missing_extra("openvino", "openvino") from None  # noqa: EM101 - not a message
        core = ov.Core()
        ov_device = self._device(core, options.device)
        model = self._read(core, path)
        self.record_text = _ov_record(model, path)
        self._describe_input(model, path)
        stored = (ModelMeta.from_json(self.record_text).fitted_to(self.input_shape)
                  if self.record_text else None)
        self.meta = meta or stored
        precision = self.meta.precision if self.meta else "fp32"
        config: dict[str, Any] = {}
        if options.threads:
            config["INFERENCE_NUM_THREADS"] = options.threads
        if options.precision == "model":
            config["INFERENCE_PRECISION_HINT"] = self._model_hint(core, ov_device, precision)
        try:
            self.compiled = core.compile_model(model, ov_device, config)
        except Exception as e:  # OpenVINO raises RuntimeError with multi-line text
            msg = f"OpenVINO cannot compile {path} for {ov_device} ({_ov_reason(e)}); re-export it"
            raise ModelFileError(msg) from None
        self.device = options.device
        self.input_name = self.compiled.input(0).get_any_name()
        out = self.compiled.output(0).get_partial_shape()
        self.output_shape = tuple(str(d) if d.is_dynamic else d.get_length() for d in out)
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        executed = ov_precision_name(hint)
        # An int8 model's float layers run at the hint's precision: "int8+bf16" when lowered
        # (the bundle's infer.py reports it through the same _hw rule).
        self.executed_precision = int8_execution(hint) if precision == "int8" else executed
        if options.precision == "fast" and executed != precision and precision != "int8":
            log.info("precision='fast': OpenVINO runs %s's %s layers in %s on %s",
                     path.name, precision, executed, ov_device)
        self.details = {
            "device": ov_device, "inference_precision": hint,
            "threads": self.compiled.get_property("INFERENCE_NUM_THREADS"),
            "streams": self.compiled.get_property("NUM_STREAMS"), "version": ov.__version__,
        }
        self._local = threading.local()

    def _describe_input(self, model: Any, path: Path) -> None:
        count = len(model.inputs)
        pshape = model.input(0).get_partial_shape() if count == 1 else None
        shape = None if pshape is None or pshape.rank.is_dynamic else tuple(
            str(d) if d.is_dynamic else d.get_length() for d in pshape)
        dtype = str(np.dtype(model.input(0).get_element_type().to_dtype())) if count else "none"
        check_image_input(path, [_ov_name(p, n) for n, p in enumerate(model.inputs)], shape,
                          dtype)
        self.input_shape = shape
        self.input_dtype = np.dtype(dtype)

    @staticmethod
    def _device(core: Any, device: str) -> str:
        if device in ("cuda", "tensorrt"):
            msg = f"OpenVINO has no device {device!r}; use --backend ort for CUDA/TensorRT"
            raise BackendNotAvailable(msg)
        wanted = device.upper()
        have = core.available_devices
        if not ov_has_device(device, have):
            msg = (f"OpenVINO device {wanted} is not present here (has {', '.join(have)}); "
                   "use --device cpu")
            raise BackendNotAvailable(msg)
        return wanted

    @staticmethod
    def _read(core: Any, path: Path) -> Any:
        if path.suffix.lower() == ".xml" and not path.with_suffix(".bin").is_file():
            msg = f"{path.with_suffix('.bin')} is missing; an OpenVINO IR needs its .bin beside it"
            raise ModelFileError(msg)
        try:
            return core.read_model(str(path))
        except Exception as e:  # RuntimeError with the parser's multi-line text
            msg = f"{path} could not be read by OpenVINO ({_ov_reason(e)}); re-export it"
            raise ModelFileError(msg) from None

    @staticmethod
    def _model_hint(core: Any, ov_device: str, precision: str) -> str:
        caps = core.get_property(ov_device, "OPTIMIZATION_CAPABILITIES")
        hint = ov_precision_hint(precision, caps)  # the one rule, also in bundles' infer.py
        if hint == "f32" and precision in ("fp16", "bf16"):
            log.info("%s lacks %s; running the %s model in f32", ov_device, precision, precision)
        return hint

    def run(self, x: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        try:
            return request.infer({0: x}, share_inputs=True)[0]
        except Exception as e:  # RuntimeError from the plugin
            msg = f"OpenVINO failed on an input of shape {x.shape} ({_ov_reason(e)})"
            raise DataError(msg) from None


def _ort_record_precision(ort: Any, path: Path) -> str:
    """The precision an ONNX file's record states (fp32 without one), read on the CPU."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        text = sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        return ModelMeta.from_json(text).precision if text else "fp32"
    except Exception:  # an unreadable file fails where the real session is made, with its reason
        return "fp32"


def _ov_record(model: Any, path: Path) -> str | None:
    """The record text from an IR's ``rt_info``, or from an ONNX file's metadata_props."""
    # OpenVINO keeps an ONNX file's metadata_props under rt_info["framework"].
    for where in IR_RECORD_PATHS:
        key = list(where)
        if model.has_rt_info(key):
            return str(model.get_rt_info(key).astype(str))
    if path.suffix.lower() == ".onnx":  # older OpenVINO releases drop metadata_props
        try:
            ort = _import_ort()
        except BackendNotAvailable:
            return None
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    return None
