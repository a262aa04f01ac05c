"""What every inference backend shares: the options a model runs with and the interface it has.

``BackendOptions`` (device, mode, threads, GPU settings), the ``InferenceBackend``
Protocol a runtime's backend satisfies (``run(x) -> logits`` plus what actually executes) and
THE input rule of an image classifier (``check_image_input``). The backends themselves live
with their runtime, one module each (``edgeres/runtimes/ort.py``, ``openvino.py``; their old
names here still import). Nothing here imports torch, onnx, click or a runtime library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from edgeres.errors import BackendNotAvailable, EdgeresError, ModelFileError
from edgeres.meta import ModelMeta
from edgeres.vocab import DEVICES, MODES, Mode

_INPUT_DTYPES = ("float32", "float16", "uint8")  # what an image classifier's input can be
# cuDNN convolution algorithm search of ONNX Runtime's CUDA EP (OrtCudnnConvAlgoSearch).
# EXHAUSTIVE (ORT's default) times every algorithm once per input shape and keeps the fastest:
# the cost lands in the first call at each shape, never in a timed one, so steady-state
# latency is the best cuDNN offers. HEURISTIC picks without timing; DEFAULT always uses
# IMPLICIT_PRECOMP_GEMM (least workspace memory).
CUDNN_CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
# Whether ONNX Runtime's worker threads spin (busy-wait) for work between operators when
# ``BackendOptions.spin`` is None: edgeres' default is off. Spinning saves the wake-up after
# each operator on an idle CPU but burns the cores it waits on; measured on a 2-core EPYC
# (issue 24, benchmarks/bench_spinning.py), ResNet-50 ran 3-5% slower with it off on a quiet
# host and 25-30% faster with it off while other work loaded the host, and an edge device
# usually runs other work beside the model.
DEFAULT_SPIN = False
# The option's help, the same for `bench --ort-spinning` and `predict --ort-spinning`.
SPIN_HELP = ("Let ONNX Runtime's threads spin (busy-wait) for work between operators: a few % "
             "faster on an idle CPU, 25-30% slower when other work shares it [default: "
             f"{'on' if DEFAULT_SPIN else 'off'}].")


@dataclass(frozen=True)
class BackendOptions:
    """How to run a model; validated when built (CONTRIBUTING R5).

    Attributes:
        device: "cpu", "cuda" or "tensorrt" (ONNX Runtime), "gpu" (OpenVINO).
        mode: "model" runs the record's precision; "fast" lets the runtime lower it.
        threads: intra-op threads, or None for the runtime's default.
        cudnn_conv_algo_search: the CUDA EP's cuDNN algorithm search (``CUDNN_CONV_ALGO_SEARCH``),
            also used by the CUDA EP behind TensorRT.
        engine_cache: directory for TensorRT engines (``trt_engine_cache_path``), so a second
            session loads the engine instead of building it; None = build every time.
        session_options: an ``onnxruntime.SessionOptions`` to start from (ONNX Runtime only;
            ``runtime.load`` refuses it for another runtime).
        spin: whether ONNX Runtime's intra- and inter-op threads spin (busy-wait) for work
            (``session.intra_op.allow_spinning``, ``session.inter_op.allow_spinning``); None =
            ``DEFAULT_SPIN`` (off: a few % slower on an idle CPU, 25-30% faster on a busy one),
            or what a given ``session_options`` already sets. ONNX Runtime only.
    """

    device: Literal["cpu", "cuda", "tensorrt", "gpu"] = "cpu"
    mode: Mode = "model"
    threads: int | None = None
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    engine_cache: Path | None = None
    session_options: Any = None
    spin: bool | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            msg = f"unknown device {self.device!r}; use one of {', '.join(DEVICES)}"
            raise BackendNotAvailable(msg)
        if self.mode not in MODES:
            msg = f"unknown mode {self.mode!r}; use 'model' (as stored) or 'fast'"
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
        if self.spin is not None and not isinstance(self.spin, bool):
            msg = f"spin must be True, False or None (edgeres' default: off), got {self.spin!r}"
            raise EdgeresError(msg)


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
