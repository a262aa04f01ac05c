"""THE EMBEDDABLE PART: load a model and predict with numpy plus one inference runtime.

Everything the predictor needs (input size, layout, resize/crop, mean/std, labels, whether the
graph takes uint8 pixels) comes from the model's metadata record. Imports only the stdlib,
numpy, ``edgeres.errors``/``meta``/``preprocess`` and, lazily, onnxruntime or openvino — never
torch, onnx or click. Library code never prints or exits: problems are ``EdgeresError``s.

Example:
    >>> from edgeres import runtime
    >>> p = runtime.load("model.onnx")
    >>> p.predict("cat.jpg", top_k=3)[0].labels
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgeres.errors import BackendNotAvailable, DataError, MetadataError, ModelFileError
from edgeres.meta import ModelMeta
from edgeres.preprocess import prepare

__all__ = ["Prediction", "Predictor", "load"]

Backend = Literal["auto", "ort", "openvino"]
Device = Literal["cpu", "cuda", "tensorrt", "gpu"]


@dataclass(frozen=True)
class Prediction:
    """Top-k result for one image, best first."""

    labels: tuple[str, ...]
    indices: tuple[int, ...]
    probabilities: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "indices": list(self.indices),
                "probabilities": list(self.probabilities)}


class Predictor:
    """A loaded model: ``run`` for prepared tensors, ``predict`` for images.

    Thread safety: one Predictor may be called from several threads at once. ONNX Runtime
    sessions are thread-safe; the OpenVINO backend keeps one infer request per thread.
    """

    def __init__(self, backend: Any, meta: ModelMeta, path: Path) -> None:
        self.backend = backend
        self.meta = meta
        self.path = path
        self._dtype = backend.input_dtype
        self._sample_shape = tuple(meta.input.shape[1:])

    @property
    def runtime(self) -> str:
        """The runtime label, ``{backend}-{device}`` (``ort-cpu``, ``openvino-cpu``, ...)."""
        return f"{self.backend.name}-{self.backend.device}"

    @property
    def executed_precision(self) -> str:
        """The precision the runtime reports it executes (OpenVINO may lower fp32 to bf16)."""
        return self.backend.executed_precision

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run already-prepared input (NCHW float32, or NHWC uint8 for uint8-input graphs).

        Raises:
            DataError: if ``x`` has the wrong dtype or sample shape.
        """
        if x.dtype != self._dtype or x.shape[1:] != self._sample_shape:
            self._reject(x)
        return self.backend.run(x)

    def _reject(self, x: Any) -> None:
        if not isinstance(x, np.ndarray):
            msg = f"run() takes a numpy array, got {type(x).__name__}; use predict() for images"
        elif x.dtype != self._dtype:
            msg = (f"input dtype {x.dtype} does not match the model's {self._dtype}; "
                   "use predict() or edgeres.preprocess.prepare()")
        else:
            msg = (f"input shape {x.shape} does not match the model's "
                   f"(N, {', '.join(map(str, self._sample_shape))})")
        raise DataError(msg)

    def predict(self, images: Any, top_k: int = 5) -> list[Prediction]:
        """Classify images: paths, encoded bytes, PIL images or HWC uint8 arrays (or a list).

        Returns:
            One ``Prediction`` per image with the ``top_k`` labels, indices and softmax
            probabilities.

        Raises:
            DataError: if an image cannot be read; MetadataError for a feature extractor.
        """
        if not self.meta.num_classes:
            msg = f"{self.path} outputs feature maps, not classes; use run() instead of predict()"
            raise MetadataError(msg)
        logits = self.run(prepare(images, self.meta))
        return topk_predictions(logits, self.meta.labels, top_k)


def topk_predictions(logits: np.ndarray, labels: tuple[str, ...], top_k: int) -> list[Prediction]:
    """Softmax probabilities and the ``top_k`` classes of each row of ``logits``."""
    logits = logits.reshape(len(logits), -1).astype(np.float64)
    k = max(1, min(top_k, logits.shape[1]))
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = z / z.sum(axis=1, keepdims=True)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [
        Prediction(tuple(labels[i] if i < len(labels) else str(i) for i in row),
                   tuple(int(i) for i in row), tuple(float(probs[n, i]) for i in row))
        for n, row in enumerate(order)
    ]


def load(
    path: str | Path,
    *,
    backend: Backend = "auto",
    device: Device = "cpu",
    precision: Literal["model", "fast"] = "model",
    threads: int | None = None,
    meta: ModelMeta | None = None,
    session_options: Any = None,
) -> Predictor:
    """Load a model file for inference.

    Args:
        path: an ``.onnx`` file or an OpenVINO IR ``.xml``.
        backend: "ort", "openvino", or "auto" (OpenVINO for IR, ONNX Runtime for ONNX).
        device: "cpu", "cuda"/"tensorrt" (ONNX Runtime), "gpu" (OpenVINO). A GPU is used only
            when asked for, and asking for one that is absent is an error.
        precision: "model" runs what the model says (fp32 stays fp32 on OpenVINO); "fast"
            lets the runtime lower it (bf16 on AMX CPUs) and ``executed_precision`` says so.
        threads: intra-op threads; the runtime's default when None.
        meta: the metadata record for a model that carries none.
        session_options: an ``onnxruntime.SessionOptions`` to start from (ONNX Runtime only).

    Returns:
        A ``Predictor`` whose session is created once and reused.

    Raises:
        ModelFileError: missing, corrupt or non-classifier model file.
        BackendNotAvailable: runtime, device or extra not available.
        MetadataError: the model has no record and ``meta`` was not given.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"model file {path} does not exist; pass an .onnx or OpenVINO .xml file"
        raise ModelFileError(msg)
    kind = {".onnx": "onnx", ".xml": "ir"}.get(path.suffix.lower())
    if kind is None:
        msg = f"{path} is not a model file; pass an .onnx file or an OpenVINO IR .xml"
        raise ModelFileError(msg)
    if backend == "auto":
        backend = "openvino" if kind == "ir" or device == "gpu" else "ort"
    if backend == "ort":
        if kind == "ir":
            msg = f"{path} is an OpenVINO IR; ONNX Runtime needs an .onnx file (use --backend openvino)"
            raise ModelFileError(msg)
        from edgeres.runtime.backends import OrtBackend

        impl: Any = OrtBackend(path, device, threads, session_options)
    elif backend == "openvino":
        from edgeres.runtime.backends import OpenVINOBackend

        impl = OpenVINOBackend(path, device, threads, precision)
    else:
        msg = f"unknown backend {backend!r}; use auto, ort or openvino"
        raise BackendNotAvailable(msg)
    record = meta or impl.meta
    if record is None:
        msg = (f"{path} carries no edgeres metadata record; export it with `edgeres export`, "
               "or pass the preprocessing (--mean/--std/--input-size/--layout)")
        raise MetadataError(msg)
    return Predictor(impl, record, path)
