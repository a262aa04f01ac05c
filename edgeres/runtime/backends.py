"""ONNX Runtime and OpenVINO behind one small interface; each runtime is imported lazily.

A backend owns one compiled session, created once, and exposes ``run(x) -> logits`` plus what
actually executes (providers, inference precision). Nothing here imports torch, onnx or click.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeres.errors import BackendNotAvailable, ModelFileError, missing_extra
from edgeres.meta import METADATA_KEY, ModelMeta

log = logging.getLogger(__name__)

ORT_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
_OV_PRECISION = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "i8": "int8", "u8": "int8"}


class Backend(Protocol):
    """What the Predictor needs from a runtime."""

    name: str
    device: str
    input_name: str
    input_shape: tuple[Any, ...]
    input_dtype: np.dtype
    meta: ModelMeta | None
    executed_precision: str
    details: dict[str, Any]

    def run(self, x: np.ndarray) -> np.ndarray: ...


class OrtBackend:
    """An ``onnxruntime.InferenceSession``; ``session.run`` is thread-safe, so one is shared."""

    name = "ort"

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None,
                 options: Any = None) -> None:
        import onnxruntime as ort

        if device not in ORT_PROVIDERS:
            msg = f"ONNX Runtime has no device {device!r}; use one of {', '.join(ORT_PROVIDERS)}"
            raise BackendNotAvailable(msg)
        wanted = ORT_PROVIDERS[device][0]
        if wanted not in ort.get_available_providers():
            msg = (f"{wanted} is not available in this onnxruntime build "
                   f"(have {', '.join(ort.get_available_providers())}); "
                   "install onnxruntime-gpu on a machine with an NVIDIA GPU")
            raise BackendNotAvailable(msg)
        so = options or ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), so, providers=ORT_PROVIDERS[device])
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/... types
            msg = f"{path} could not be loaded by ONNX Runtime ({_first_line(e)}); re-export it"
            raise ModelFileError(msg) from None
        if wanted not in self.session.get_providers():
            msg = f"{wanted} failed to initialise for {path}; check the CUDA/TensorRT installation"
            raise BackendNotAvailable(msg)
        self.device = device
        inp = self.session.get_inputs()
        if len(inp) != 1:
            msg = f"{path} has {len(inp)} inputs; an image classifier has exactly one"
            raise ModelFileError(msg)
        self.input_name = inp[0].name
        self.input_shape = tuple(inp[0].shape)
        self.input_dtype = np.dtype(_ORT_TYPES.get(inp[0].type, "float32"))
        self.output_names = [o.name for o in self.session.get_outputs()][:1]
        record = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        self.meta = ModelMeta.from_json(record) if record else None
        self.executed_precision = self.meta.precision if self.meta else "fp32"
        self.details = {"providers": self.session.get_providers(),
                        "threads": so.intra_op_num_threads}

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(self.output_names, {self.input_name: x})[0]


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
              "tensor(int8)": "int8"}


class OpenVINOBackend:
    """An OpenVINO compiled model with one infer request per calling thread.

    ``precision="model"`` pins ``INFERENCE_PRECISION_HINT=f32`` for fp32 models, because on
    AMX CPUs OpenVINO otherwise runs fp32 models in bf16 (~0.5% logit error); ``"fast"``
    leaves the runtime's default and ``executed_precision`` says what it chose.
    """

    name = "openvino"

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None,
                 precision: str = "model") -> None:
        try:
            import openvino as ov
        except ImportError:
            raise missing_extra("openvino", "openvino") from None
        core = ov.Core()
        ov_device = {"cpu": "CPU", "gpu": "GPU"}.get(device)
        if ov_device is None or ov_device not in core.available_devices:
            msg = (f"OpenVINO device {device!r} is not available here "
                   f"(have {', '.join(core.available_devices)}); use --device cpu")
            raise BackendNotAvailable(msg)
        try:
            model = core.read_model(str(path))
        except Exception as e:  # OpenVINO raises RuntimeError with multi-line text
            msg = f"{path} could not be read by OpenVINO ({_first_line(e)}); re-export it"
            raise ModelFileError(msg) from None
        self.meta = _ov_meta(model, path)
        config: dict[str, Any] = {}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        model_precision = self.meta.precision if self.meta else "fp32"
        if precision == "model" and model_precision in ("fp32", "int8") and ov_device == "CPU":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        self.compiled = core.compile_model(model, ov_device, config)
        self.device = device
        port = self.compiled.input(0)
        self.input_name = port.get_any_name()
        self.input_shape = tuple(str(d) if d.is_dynamic else d.get_length()
                                 for d in port.get_partial_shape())
        self.input_dtype = np.dtype(port.get_element_type().to_dtype())
        value = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        hint = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
        executed = _OV_PRECISION.get(hint, hint)
        # An int8 IR runs its quantized layers in int8 whatever the hint for the float parts.
        self.executed_precision = "int8" if model_precision == "int8" else executed
        self.details = {"device": ov_device, "inference_precision": hint,
                        "threads": self.compiled.get_property("INFERENCE_NUM_THREADS")}
        self._local = threading.local()

    def run(self, x: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request.infer({0: x}, share_inputs=True)[0]


def _ov_meta(model: Any, path: Path) -> ModelMeta | None:
    if model.has_rt_info([METADATA_KEY]):
        return ModelMeta.from_json(str(model.get_rt_info([METADATA_KEY]).astype(str)))
    # An ONNX file read by OpenVINO keeps metadata_props under "framework" in rt_info.
    for key in (["framework", METADATA_KEY], ["onnx", METADATA_KEY]):
        if model.has_rt_info(key):
            return ModelMeta.from_json(str(model.get_rt_info(key).astype(str)))
    if path.suffix == ".onnx":
        return _onnx_meta_via_ort(path)
    return None


def _onnx_meta_via_ort(path: Path) -> ModelMeta | None:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    record = sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    return ModelMeta.from_json(record) if record else None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
