"""ONNX Runtime: ``.onnx`` files on the CPU, CUDA and TensorRT execution providers.

Everything edgeres knows about ONNX Runtime in one module (CONTRIBUTING, "A runtime"): the
backend that runs a model (``OrtBackend``), its execution providers and options, where an
ONNX file keeps its record (``metadata_props``), what a bundle needs (``onnxruntime`` at the
oldest release the install test runs) and the int8 quantizer (``quantize._ort``). Stdlib, numpy
and device-safe edgeres modules at the top; onnxruntime and the quantizer inside functions.
"""

from __future__ import annotations

import importlib.util
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeres._hw import ORT_PROVIDERS, ort_executed
from edgeres.errors import BackendNotAvailable, DataError, ModelFileError, first_line
from edgeres.meta import METADATA_KEY, ModelMeta
from edgeres.runtime.backends import DEFAULT_SPIN, BackendOptions, check_image_input

if TYPE_CHECKING:
    from edgeres.calibration import CalibrationSet
    from edgeres.quantize._protocol import Quantizer
    from edgeres.quantize.config import QuantConfig, TargetSpec

__all__ = ["RUNTIME", "SPIN_KEYS", "OrtBackend", "Providers", "apply_spin", "ort_providers"]

_ORT_TYPES = {"float": "float32", "double": "float64"}  # ORT "tensor(T)" names that differ
_GPU_ID = 0  # the first CUDA device; edgeres runs one GPU
_MISSING = "onnxruntime is not installed; pip install onnxruntime (or onnxruntime-gpu)"
# The session config keys that let the intra-op and inter-op thread pools busy-wait for work
# (onnxruntime_session_options_config_keys.h); "1" (spin) is ONNX Runtime's own default.
SPIN_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")

Providers = list[tuple[str, dict[str, Any]]]  # InferenceSession(providers=...), best first


def ort_providers(options: BackendOptions, stored: str = "fp32") -> Providers:
    """ONNX Runtime's execution providers for ``options``, best first, with their options.

    CUDA: ``device_id`` and ``cudnn_conv_algo_search``. TensorRT (CUDA, then CPU, behind it for
    the nodes it does not take): ``trt_fp16_enable`` for an fp16 file or ``mode="fast"``;
    ``trt_int8_enable`` for an int8 file, whose QDQ nodes TensorRT executes as explicit
    quantization with their own scales (no calibration table: ORT #8969; without the flag the
    engine build refuses the int8 layers, ORT #13381); ``trt_engine_cache_enable`` and
    ``trt_engine_cache_path`` when ``options.engine_cache`` is set.

    Args:
        options: the device, mode and GPU settings.
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
        "trt_fp16_enable": options.mode == "fast" or stored == "fp16",
        "trt_int8_enable": stored == "int8",
    }
    if options.engine_cache is not None:
        trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(options.engine_cache))
    return [("TensorrtExecutionProvider", trt), cuda, cpu]


def _ort_executed(device: str, mode: str, meta: ModelMeta | None) -> str | None:
    """What ONNX Runtime really computes in, when it differs from the record (None: as stored)."""
    stored = meta.precision if meta is not None else "fp32"
    return ort_executed(device, mode, stored, platform.machine())  # the one rule, _hw


def apply_spin(so: Any, spin: bool | None) -> bool:
    """Set whether ``so``'s thread pools spin (``SPIN_KEYS``); return whether they will.

    ``spin`` None is edgeres' default (``DEFAULT_SPIN``, off), except that a given
    ``SessionOptions`` keeps the entries it sets (its intra-op one then decides the value of
    the one it lacks).
    """
    given = {key: _config_entry(so, key) for key in SPIN_KEYS}
    intra = given[SPIN_KEYS[0]]
    keep = spin is None  # the caller's own entries stay; the missing ones get the value
    if spin is None:
        spin = DEFAULT_SPIN if intra is None else intra != "0"
    value = "1" if spin else "0"
    for key, now in given.items():
        if now != value and not (keep and now is not None):  # ORT warns when it overwrites
            so.add_session_config_entry(key, value)
    return spin


def _config_entry(so: Any, key: str) -> str | None:
    """``so``'s session config entry ``key``, or None when it is not set."""
    try:
        return str(so.get_session_config_entry(key))
    except Exception:  # ORT raises its RuntimeError (Fail) for a key that is not set
        return None


def _import_ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendNotAvailable(_MISSING) from None
    return ort


def inspect_session(ort: Any, path: Path) -> Any:
    """A CPU session with graph optimisation off: the cheapest way to read a file's facts.

    Raises:
        ModelFileError: if ``path`` is not a readable ONNX model.
    """
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf types
        msg = (f"{path} is not a readable ONNX model ({first_line(e)}); pass an exported "
               ".onnx file")
        raise ModelFileError(msg) from None


def _ort_record_precision(ort: Any, path: Path) -> str:
    """The precision an ONNX file's record states (fp32 without one), read on the CPU."""
    try:
        text = inspect_session(ort, path).get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        return ModelMeta.from_json(text).precision if text else "fp32"
    except Exception:  # an unreadable file fails where the real session is made, with its reason
        return "fp32"


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
        spinning = apply_spin(so, options.spin)
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
        self.executed_precision = _ort_executed(device, options.mode, self.meta)
        self.details = {
            "providers": self.session.get_providers(),
            "threads": so.intra_op_num_threads or "default",
            "spinning": spinning,
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


class OrtRuntime:
    """ONNX Runtime as a ``edgeres.runtimes._protocol.Runtime``."""

    name = "ort"
    devices: tuple[str, ...] = tuple(ORT_PROVIDERS)
    suffixes: tuple[str, ...] = (".onnx",)
    dist = "onnxruntime"
    # The oldest release tests/test_install.py installs and runs a bundle with.
    min_version = "1.17.0"
    quantizes = ".onnx"  # the float file its quantizer takes

    def unavailable(self) -> str | None:
        """None when onnxruntime is importable, else the install line."""
        return None if importlib.util.find_spec("onnxruntime") else _MISSING

    def device_unavailable(self, device: str) -> str | None:
        """Why ``device`` cannot run here (its provider is not in this build), or None."""
        import onnxruntime as ort

        have = ort.get_available_providers()
        wanted = ORT_PROVIDERS[device][0]
        if wanted not in have:
            return (f"{wanted} not in this onnxruntime build (have "
                    f"{', '.join(have)}); install onnxruntime-gpu on an NVIDIA machine")
        return None

    def load(self, path: Path, options: BackendOptions,
             meta: ModelMeta | None = None) -> OrtBackend:
        """An ``OrtBackend`` for ``path``."""
        return OrtBackend(path, options, meta=meta, session_options=options.session_options)

    def read_record(self, path: Path) -> str | None:
        """The record text in the file's ``metadata_props`` (read by ONNX Runtime), or None.

        Raises:
            BackendNotAvailable: if onnxruntime is not installed.
            ModelFileError: if ``path`` is not a readable ONNX model.
        """
        sess = inspect_session(_import_ort(), path)
        text = sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        return None if text is None else str(text)

    def companion_files(self, path: Path) -> list[Path]:
        """None: an ONNX file carries its weights and its record."""
        return []

    def quantizer(self, src: Path, calibration: CalibrationSet, spec: TargetSpec,
                  config: QuantConfig) -> Quantizer:
        """ONNX Runtime's static QDQ quantizer (``edgeres.quantize._ort``)."""
        from edgeres.quantize._ort import OrtQuantizer
        from edgeres.quantize._protocol import workdir
        from edgeres.quantize.config import DEFAULT_METHOD

        folder = workdir()  # first: outside quantize() there is nowhere to work
        per_channel = spec.per_channel if config.per_channel is None else config.per_channel
        return OrtQuantizer(src, calibration, spec, per_channel=per_channel,
                            method=config.method or DEFAULT_METHOD, workdir=folder)


RUNTIME = OrtRuntime()
