"""The GPU rows: PyTorch on CUDA (``torch-cuda``) and ONNX Runtime's CUDA and TensorRT EPs.

What a GPU row times is one forward pass that has *finished*: CUDA kernels are launched
asynchronously, so a clock read right after the Python call returns measures the launch, not
the work. ``torch-cuda`` calls ``torch.cuda.synchronize()`` before and after the forward pass
(the one before guarantees no earlier work is billed to this call; the queue is empty then, so
it costs microseconds). ONNX Runtime rows bind the input on the GPU once and leave the output
there (``io`` "device"): ``run_with_iobinding`` then ``synchronize_outputs`` — ORT's I/O
binding guide shows that otherwise the host-device copies inside ``run`` can dominate. The
``host-io`` variant times plain ``run`` with numpy in and out (``io`` "host"), the copies
included, as an application that starts from host memory sees it.

Work that happens once per input shape — TensorRT engine builds, cuDNN's exhaustive algorithm
search, ``torch.compile`` — lands in the untimed first call of each batch size, which the row
reports as ``first_call_ms``; TensorRT engines are cached under edgeres's cache directory, so a
second run loads them instead.
"""

from __future__ import annotations

import functools
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeres.bench.config import RuntimeLabel

# torch-cuda casts weights *and* inputs with ``.to(dtype)`` (``.half()`` for fp16), so every
# layer runs in that dtype; autocast would keep BatchNorm and the classifier in fp32 and mix.
TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
TORCH_CUDA_PRECISIONS = tuple(TORCH_DTYPES)
# Rows per (precision, runtime) beyond the plain one, by internal mode name: "fast" is the
# runtime's own precision (OpenVINO's default, TensorRT's fp16 flag on an fp32 file),
# "compile" is torch.compile, "host-io" times ONNX Runtime GPU calls with the copies included.
HOST_IO = "host-io"
_ORT_GPU = ("ort-cuda", "ort-tensorrt")


def variants(precision: str, runtime: str, *, openvino_default_row: bool, torch_compile: bool,
             host_io: bool, available: bool = True) -> list[str]:
    """The modes benchmarked for ``precision`` on ``runtime``, in report order.

    A runtime that is not ``available`` here gets its plain row only: one skipped row with the
    reason says it all.
    """
    modes = ["model"]
    if not available:
        return modes
    if RuntimeLabel.parse(runtime).backend == "openvino" and precision == "fp32" \
            and openvino_default_row:
        modes.append("fast")
    if runtime == "ort-tensorrt" and precision == "fp32":
        modes.append("fast")  # trt_fp16_enable on the fp32 file: TensorRT's usual fp16 path
    if runtime == "torch-cuda" and torch_compile and precision in TORCH_CUDA_PRECISIONS:
        modes.append("compile")
    if runtime in _ORT_GPU and host_io:
        modes.append(HOST_IO)
    return modes


def row_variant(runtime: str, mode: str) -> dict[str, Any]:
    """The row fields a mode sets: ``precision_mode`` and ``io``.

    ``io`` is None on CPU runtimes (the input is in host memory already), "device" when the
    timed call excludes host-device copies, "host" when it includes them (every OpenVINO GPU
    call, and ONNX Runtime's ``host-io`` rows).
    """
    device = RuntimeLabel.parse(runtime).device
    if device == "cpu":
        io = None
    elif mode == HOST_IO or runtime == "openvino-gpu":
        io = "host"
    else:
        io = "device"
    return {"precision_mode": "model" if mode == HOST_IO else mode, "io": io}


@functools.cache
def torch_cuda_reason() -> str | None:
    """Why torch-cuda cannot run here, or None when ``torch.cuda.is_available()``."""
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed; pip install 'edgeres[torch]' (a CUDA build)"
    import torch

    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return (f"torch.cuda.is_available() is False: torch {torch.__version__} is a CPU-only "
                "build; install a CUDA build of torch on an NVIDIA machine")
    return (f"torch.cuda.is_available() is False: torch {torch.__version__} is built for CUDA "
            f"{torch.version.cuda}, but no GPU or driver is usable")


def _tf32_convs(torch: Any) -> bool:
    """Whether cuDNN may run fp32 convolutions in TF32 (PyTorch's default; Ampere and newer)."""
    conv = getattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision", None)
    if conv in ("tf32", "ieee"):
        return conv == "tf32"
    return bool(torch.backends.cudnn.allow_tf32)


class CudaCall:
    """One timed call of a module on a tensor already on the device, synchronised around it."""

    def __init__(self, torch: Any, module: Any, tensor: Any) -> None:
        self.torch, self.module, self.tensor = torch, module, tensor

    def __call__(self) -> object:
        sync = self.torch.cuda.synchronize
        sync()
        with self.torch.inference_mode():
            out = self.module(self.tensor)
        sync()
        return out


class TorchCudaRunner:
    """A PyTorch module on a CUDA device in one dtype, channels_last, as numpy ``run`` and ``bind``.

    Args:
        module: the fp32 module in eval mode (moved and cast here).
        precision: "fp32", "fp16" or "bf16": weights and inputs are cast to that dtype.
        compile: wrap the module in ``torch.compile`` (default mode); it compiles on the first
            call at each input shape.
        device: the torch device; "cuda" except in tests.
    """

    def __init__(self, module: Any, precision: str, *, compile: bool = False,
                 device: str = "cuda") -> None:
        import torch

        self.torch = torch
        self.dtype = getattr(torch, TORCH_DTYPES[precision])
        self.device = torch.device(device)
        # channels_last: cuDNN's fast convolution kernels (and tensor cores) take NHWC, so
        # NCHW would add a layout transform around every convolution.
        module = module.to(self.device, self.dtype).to(memory_format=torch.channels_last)
        self.module = torch.compile(module) if compile else module

    def tensor(self, x: np.ndarray) -> Any:
        """``x`` on the device in the runner's dtype and channels_last layout."""
        t = self.torch.from_numpy(np.ascontiguousarray(x)).to(self.device, self.dtype)
        return t.contiguous(memory_format=self.torch.channels_last)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Host numpy in, float32 numpy logits out (for accuracy)."""
        with self.torch.inference_mode():
            return self.module(self.tensor(x)).float().cpu().numpy()

    def bind(self, x: np.ndarray) -> CudaCall:
        """The timed call on ``x``, copied to the device once here."""
        return CudaCall(self.torch, self.module, self.tensor(x))


def torch_cuda_details(runner: TorchCudaRunner, precision: str,
                       compiled: bool) -> tuple[str, dict[str, Any]]:
    """The executed precision and the row details (GPU, CUDA, cuDNN, dtype) of a runner."""
    torch = runner.torch
    index = runner.device.index or 0
    major, minor = torch.cuda.get_device_capability(index)
    tf32 = precision == "fp32" and major >= 8 and _tf32_convs(torch)
    details = {
        "gpu": torch.cuda.get_device_name(index), "capability": f"{major}.{minor}",
        "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(), "dtype": TORCH_DTYPES[precision],
        "cast": "module.to(dtype), input.to(dtype)", "memory_format": "channels_last",
        "compile": "torch.compile(mode='default')" if compiled else None,
        "tf32_convolutions": tf32,
    }
    return ("tf32" if tf32 else precision), details


class OrtDeviceCall:
    """One timed ONNX Runtime call with the input bound on the GPU once and the output kept there.

    Args:
        ort: the onnxruntime module.
        session: the ``InferenceSession``.
        x: the input; copied to the device once, here.
        device: the OrtValue device type ("cuda" for both CUDA and TensorRT EPs).
        device_id: the GPU.
    """

    def __init__(self, ort: Any, session: Any, x: np.ndarray, *, device: str = "cuda",
                 device_id: int = 0) -> None:
        self.session = session
        self.binding = session.io_binding()
        self.value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x), device, device_id)
        self.binding.bind_ortvalue_input(session.get_inputs()[0].name, self.value)
        self.binding.bind_output(session.get_outputs()[0].name, device, device_id)

    def __call__(self) -> object:
        self.session.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()
        return self.binding


def engine_dir(workdir: Path, model: Path, stored: str, fast: bool) -> Path:
    """Where TensorRT engines of ``model`` built with these flags are cached.

    One directory per model file and flag set, under the model's bench cache directory, so an
    engine is never loaded for another file or precision.
    """
    flags = "int8" if stored == "int8" else "fp16" if fast or stored == "fp16" else "fp32"
    return workdir / "tensorrt" / f"{model.stem}-{flags}"


def timed_load(load: Callable[[], Any]) -> tuple[Any, float]:
    """``load()`` and the milliseconds it took (session creation, weights to the device)."""
    t0 = time.perf_counter()
    out = load()
    return out, 1e3 * (time.perf_counter() - t0)
