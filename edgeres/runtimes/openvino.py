"""OpenVINO: IR (``.xml`` + ``.bin``) and ``.onnx`` files on the CPU and Intel GPUs.

Everything edgeres knows about OpenVINO in one module (CONTRIBUTING, "A runtime"): the backend
(``OpenVINOBackend``, one infer request per thread, the precision hint that keeps a record's
precision), where an IR keeps its record (``rt_info``, read with the stdlib XML parser), the
``.bin`` that travels with an ``.xml``, what a bundle needs (``openvino`` at the oldest release
``edgeres[openvino]`` allows) and the int8 quantizer (NNCF, ``quantize._nncf``). Stdlib, numpy
and device-safe edgeres modules at the top; openvino and NNCF inside functions.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeres._hw import int8_execution, ov_has_device, ov_precision_hint, ov_precision_name
from edgeres.errors import BackendNotAvailable, DataError, ModelFileError, missing_extra
from edgeres.meta import IR_RECORD_PATHS, ModelMeta, ir_record_text
from edgeres.runtime.backends import BackendOptions, check_image_input

if TYPE_CHECKING:
    from edgeres.calibration import CalibrationSet
    from edgeres.quantize._protocol import Quantizer
    from edgeres.quantize.config import QuantConfig, TargetSpec

__all__ = ["RUNTIME", "OpenVINOBackend"]

# Under edgeres.runtime, whose logger users configure for what loading a model reports.
log = logging.getLogger("edgeres.runtime.backends")


def _ov_reason(e: BaseException) -> str:
    """The informative line of an OpenVINO error (its text starts with source locations)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(e).__name__])[-1][:200]


def _ov_name(port: Any, index: int) -> str:
    """An OpenVINO input's name, or its position when it has none."""
    try:
        return str(port.get_any_name())
    except RuntimeError:  # OpenVINO raises when a tensor has no names
        return f"input {index}"


class OpenVINOBackend:
    """An OpenVINO compiled model with one infer request per calling thread.

    A compiled model is shared; an ``InferRequest`` is not thread-safe, so each thread lazily
    creates its own (OpenVINO's threading guidance) and keeps it in a ``threading.local``.
    ``mode="model"`` pins ``INFERENCE_PRECISION_HINT`` to the record's precision (f32 for
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
        if options.mode == "model":
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
        # An int8 model's float layers run at the hint's precision: "int8+bf16" when lowered.
        self.executed_precision = int8_execution(hint) if precision == "int8" else executed
        if options.mode == "fast" and executed != precision and precision != "int8":
            log.info("mode='fast': OpenVINO runs %s's %s layers in %s on %s",
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
        hint = ov_precision_hint(precision, caps)  # the one rule, also in bundles
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


def _ov_record(model: Any, path: Path) -> str | None:
    """The record text from an IR's ``rt_info``, or from an ONNX file's metadata_props."""
    # OpenVINO keeps an ONNX file's metadata_props under rt_info["framework"].
    for where in IR_RECORD_PATHS:
        key = list(where)
        if model.has_rt_info(key):
            return str(model.get_rt_info(key).astype(str))
    if path.suffix.lower() == ".onnx":  # older OpenVINO releases drop metadata_props
        from edgeres.runtimes.ort import RUNTIME as ORT

        try:
            return ORT.read_record(path)
        except BackendNotAvailable:
            return None
    return None


class OpenVINORuntime:
    """OpenVINO as a ``edgeres.runtimes._protocol.Runtime``."""

    name = "openvino"
    devices: tuple[str, ...] = ("cpu", "gpu")
    suffixes: tuple[str, ...] = (".xml", ".onnx")
    dist = "openvino"
    # The oldest release edgeres[openvino] allows; tests/test_install.py runs a bundle with it.
    min_version = "2024.6.0"
    quantizes = ".onnx"  # the float file its quantizer takes

    def unavailable(self) -> str | None:
        """None when openvino is importable, else the install line."""
        if importlib.util.find_spec("openvino") is None:
            return str(missing_extra("openvino", "openvino"))
        return None

    def device_unavailable(self, device: str) -> str | None:
        """Why OpenVINO has no ``device`` here (not among its available devices), or None."""
        import openvino as ov

        devices = ov.Core().available_devices
        if not ov_has_device(device, devices):
            return f"no OpenVINO {device.upper()} device (have {', '.join(devices)})"
        return None

    def load(self, path: Path, options: BackendOptions,
             meta: ModelMeta | None = None) -> OpenVINOBackend:
        """An ``OpenVINOBackend`` for ``path``."""
        return OpenVINOBackend(path, options, meta=meta)

    def read_record(self, path: Path) -> str | None:
        """The record text of an IR (its ``rt_info``) or of an ONNX file (its metadata_props).

        Raises:
            ModelFileError: if the file cannot be read.
        """
        if path.suffix.lower() == ".onnx":
            from edgeres.runtimes.ort import RUNTIME as ORT

            return ORT.read_record(path)
        return ir_record_text(path)  # the stdlib reader, edgeres.meta

    def companion_files(self, path: Path) -> list[Path]:
        """An IR's ``.bin`` (its weights), which must sit beside the ``.xml``."""
        return [path.with_suffix(".bin")] if path.suffix.lower() == ".xml" else []

    def quantizer(self, src: Path, calibration: CalibrationSet, spec: TargetSpec,
                  config: QuantConfig) -> Quantizer:
        """NNCF's post-training quantizer writing an OpenVINO IR (``edgeres.quantize._nncf``)."""
        from edgeres.quantize._nncf import NncfQuantizer
        from edgeres.quantize._protocol import workdir

        folder = workdir()  # first: outside quantize() there is nowhere to work
        per_channel = spec.per_channel if config.per_channel is None else config.per_channel
        return NncfQuantizer(src, calibration, spec, per_channel=per_channel,
                             method=config.method, preset=config.preset, workdir=folder)


RUNTIME = OpenVINORuntime()
