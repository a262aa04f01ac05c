"""THE EMBEDDABLE PART: load a model and predict with numpy plus one inference runtime.

Everything the predictor needs (input size, layout, resize/crop, mean/std, labels, whether the
graph takes uint8 pixels) comes from the model's metadata record; a model without one loads
when the caller supplies it (``meta=edgeres.meta.custom_meta(...)``). Imports only the stdlib,
numpy, ``edgeres.errors``/``meta``/``preprocess`` and, lazily, onnxruntime or openvino (Pillow
only when an image is decoded) — never torch, onnx or click. Library code never prints or
exits: every problem is an ``EdgeresError`` naming it.

Example:
    >>> from edgeres import runtime
    >>> p = runtime.load("model.onnx")
    >>> p.predict("cat.jpg", top_k=3)[0].labels
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from edgeres import runtimes
from edgeres._onnx_record import check_external_data, check_record_entries
from edgeres._record_check import check_classes
from edgeres.errors import BackendNotAvailable, DataError, MetadataError, ModelFileError
from edgeres.meta import ModelMeta
from edgeres.preprocess import check_finite, pad_batch, prepare, rows_are_probabilities
from edgeres.runtime.backends import BackendOptions
from edgeres.vocab import Mode

if TYPE_CHECKING:
    from edgeres.runtimes._protocol import Runtime

__all__ = ["Prediction", "Predictor", "load", "topk_predictions"]

log = logging.getLogger(__name__)

# "auto" or a runtime of the shared vocabulary; load() accepts what edgeres.runtimes registers.
Backend = Literal["auto", "ort", "openvino", "litert", "executorch"]
Device = Literal["cpu", "cuda", "tensorrt", "gpu"]
PREDICT_BATCH = 32  # images decoded and run per call in predict(); bounds memory for long lists


@dataclass(frozen=True)
class Prediction:
    """Top-k result for one image, best first.

    Attributes:
        labels: class names.
        indices: class indices into the model's output.
        probabilities: probabilities of those classes (the model's own when its graph ends in
            a softmax, else the softmax of its logits).
    """

    labels: tuple[str, ...]
    indices: tuple[int, ...]
    probabilities: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, as ``edgeres predict --json`` and a bundle's ``infer.py`` print."""
        return {"labels": list(self.labels), "indices": list(self.indices),
                "probabilities": list(self.probabilities)}


class Predictor:
    """A loaded model: ``run`` for prepared tensors, ``predict`` for images.

    The runtime session is created once, in ``load``, and reused by every call. One Predictor
    may be called from several threads at once: ONNX Runtime's ``InferenceSession.run`` is
    thread-safe, and the OpenVINO backend keeps one infer request per thread. Results do not
    depend on how calls are spread over threads.

    Attributes:
        backend: the runtime wrapper; ``backend.details`` says what executes.
        meta: the metadata record driving preprocessing and labels.
        path: the model file.
    """

    def __init__(self, backend: Any, meta: ModelMeta, path: Path) -> None:
        self.backend = backend
        self.meta = meta
        self.path = path
        self._sample_shape, self._batch = _check_record(backend, meta, path)
        self._dtype = backend.input_dtype
        self._run = backend.run
        self._probabilities = meta.outputs_probabilities

    def __repr__(self) -> str:
        return f"Predictor({self.path.name!r}, runtime={self.runtime!r}, meta={self.meta.name!r})"

    @property
    def runtime(self) -> str:
        """The runtime label, ``{backend}-{device}`` (``ort-cpu``, ``openvino-cpu``, ...)."""
        return f"{self.backend.name}-{self.backend.device}"

    @property
    def executed_precision(self) -> str:
        """The precision that executes, which may differ from the stored ``meta.precision``.

        The record's, unless the runtime lowered it ("fast") or has no kernels for it (an fp16
        file on ONNX Runtime's x86 CPU provider runs fp32 kernels between Casts: "fp32").
        """
        return self.backend.executed_precision or self.meta.precision

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the graph is fixed to, or None when it takes any batch."""
        return self._batch or None

    @property
    def input_dtype(self) -> np.dtype:
        """The dtype ``run`` takes: float32 (NCHW), or uint8 (NHWC) for uint8-input graphs."""
        return self._dtype

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample ``run`` takes, without the batch axis."""
        return self._sample_shape

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run already-prepared input and return the raw outputs (logits).

        The input goes to the runtime as it is, with no copy; the check is a few attribute
        comparisons, so a call costs microseconds more than the runtime's own.

        Args:
            x: NCHW float32 (as ``edgeres.preprocess.prepare`` makes), or NHWC uint8 for
                graphs that normalise inside (``meta.input.normalized_in_graph``).

        Returns:
            The model's first output, one row per sample.

        Raises:
            DataError: if ``x`` is not an array of the model's dtype and sample shape.
        """
        if (
            not isinstance(x, np.ndarray)
            or x.dtype != self._dtype
            or x.shape[1:] != self._sample_shape
            or (x.shape[0] != self._batch if self._batch else not x.shape[0])
        ):
            self._reject(x)
        return self._run(x)

    def _reject(self, x: Any) -> None:
        want = f"({self._batch or 'N'}, {', '.join(map(str, self._sample_shape))})"
        if not isinstance(x, np.ndarray):
            msg = f"run() takes a numpy array, got {type(x).__name__}; use predict() for images"
        elif x.dtype != self._dtype:
            msg = (f"input dtype {x.dtype} does not match the model's {self._dtype}; prepare "
                   "images with predict() or edgeres.preprocess.prepare()")
        else:
            msg = f"input shape {x.shape} does not match the model's {want}"
        raise DataError(msg)

    def predict(self, images: Any, top_k: int = 5) -> list[Prediction]:
        """Classify images with the preprocessing the metadata record describes.

        Args:
            images: a file path, encoded bytes, a PIL image, an HWC uint8 array, or a list
                of these (decoded and run ``PREDICT_BATCH`` at a time).
            top_k: classes to return per image, best first (all, when the model has fewer).

        Returns:
            One ``Prediction`` per image (a list even for one image).

        Raises:
            DataError: if an image cannot be read, an array has the wrong dtype/shape, no
                image is given, or ``top_k`` is not a positive integer.
            MetadataError: if the model is a feature extractor (no classes).
        """
        if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
            msg = f"top_k must be a positive integer, got {top_k!r}"
            raise DataError(msg)
        if not self.meta.num_classes:
            msg = f"{self.path} outputs feature maps, not classes; use run() instead of predict()"
            raise MetadataError(msg)
        items = list(images) if isinstance(images, list | tuple) else [images]
        if not items:
            msg = "no images given; pass at least one image"
            raise DataError(msg)
        step = self._batch or PREDICT_BATCH
        out: list[Prediction] = []
        for start in range(0, len(items), step):
            x = prepare(items[start : start + step], self.meta)
            if x.dtype != self._dtype:  # fp16-input graphs; prepare() makes float32
                x = x.astype(self._dtype)
            n = len(x)
            x = pad_batch(x, self._batch)  # fixed-batch graph: pad the last chunk
            scores = self.run(x)[:n]
            check_finite(scores, str(self.path))  # NaN is never a prediction
            out.extend(topk_predictions(scores, self.meta.labels, int(top_k),
                                        probabilities=self._probabilities))
        return out


def _softmax_topk(scores: np.ndarray, k: int,
                  probabilities: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and probabilities of the ``k`` best classes per row, best first.

    ``probabilities`` says whether the rows already are probabilities (a graph ending in
    Softmax): they are then ranked as they are, never softmaxed a second time. None means
    unknown: rows that are all non-negative and sum to 1 are taken as probabilities. Logits
    are softmaxed in float64 after subtracting the row maximum (no overflow); ties keep the
    lower class index first. A bundle carries this module, so it ranks exactly as the runtime
    does.
    """
    z = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
    k = max(1, min(int(k), z.shape[1]))
    if probabilities is None:
        probabilities = rows_are_probabilities(z)
    if probabilities:
        probs = z
    else:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        probs = e / e.sum(axis=1, keepdims=True)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probs, order, axis=1)


def topk_predictions(logits: np.ndarray, labels: tuple[str, ...], top_k: int, *,
                     probabilities: bool | None = None) -> list[Prediction]:
    """Probabilities and the ``top_k`` classes of each row of ``logits``.

    Args:
        logits: one row of scores per image: logits, or probabilities already.
        labels: class names; indices beyond them are named by their number.
        top_k: classes per row (clipped to the number of classes).
        probabilities: whether the rows are probabilities already (then no softmax); None
            (unknown) decides from the rows: non-negative and summing to 1.

    Returns:
        One ``Prediction`` per row.
    """
    order, probs = _softmax_topk(logits, top_k, probabilities)
    return [
        Prediction(tuple(labels[i] if i < len(labels) else str(i) for i in row),
                   tuple(int(i) for i in row), tuple(float(p) for p in prow))
        for row, prow in zip(order.tolist(), probs, strict=True)
    ]


def _check_record(backend: Any, meta: ModelMeta, path: Path) -> tuple[tuple[int, ...], int]:
    """Check the record against the graph; return the sample shape and fixed batch (0: any)."""
    sample = tuple(meta.input.shape[1:])
    if len(sample) != 3 or not all(isinstance(d, int) and d > 0 for d in sample):
        msg = (f"the record of {path} gives input shape {meta.input.shape}; it must be "
               "(batch, C, H, W) or (batch, H, W, C) with fixed C, H, W")
        raise MetadataError(msg)
    graph = backend.input_shape
    for got, want in zip(graph[1:], sample, strict=True):
        if isinstance(got, int) and got > 0 and got != want:
            msg = (f"the record says input {sample} but the graph of {path} takes "
                   f"{tuple(graph[1:])}; re-export the model or correct its metadata record")
            raise MetadataError(msg)
    uint8_graph = backend.input_dtype == np.uint8
    if uint8_graph != bool(meta.input.normalized_in_graph):
        kind = "uint8 pixels" if uint8_graph else f"{backend.input_dtype} tensors"
        msg = (f"the graph of {path} takes {kind} but its record says normalized_in_graph="
               f"{meta.input.normalized_in_graph}; re-export the model")
        raise MetadataError(msg)
    classes = backend.output_shape[-1] if backend.output_shape else None
    check_classes(meta, classes if isinstance(classes, int) else None, path)
    batch = graph[0] if isinstance(graph[0], int) and graph[0] > 0 else 0
    return tuple(int(d) for d in sample), batch  # all fixed ints, checked above


def _missing_record(path: Path, backend: Any) -> MetadataError:
    shape = backend.input_shape
    size = "(H, W)" if not all(isinstance(d, int) for d in shape[1:]) else (
        f"({shape[2]}, {shape[3]})" if shape[1] in (1, 3) else f"({shape[1]}, {shape[2]})")
    classes = backend.output_shape[-1] if backend.output_shape else "?"
    msg = (f"{path} carries no edgeres metadata record, so its preprocessing is unknown; "
           "re-export it with `edgeres export`, or pass meta=edgeres.meta.custom_meta("
           f"input_size={size}, mean=..., std=..., num_classes={classes}) to runtime.load "
           "(on the command line: `edgeres attach` or --mean/--std)")
    return MetadataError(msg)


def _check_arguments(path: Any, meta: Any) -> Path:
    """``path`` as a Path; a wrong kind of argument is an ``EdgeresError``, not a TypeError."""
    if isinstance(path, bytes | bytearray | memoryview):
        msg = ("runtime.load takes the path of a model file, not its bytes; write the bytes "
               "to an .onnx file first")
        raise ModelFileError(msg)
    if not isinstance(path, str | os.PathLike) or not str(path):
        msg = (f"runtime.load takes the path of an .onnx or OpenVINO .xml file, got "
               f"{type(path).__name__} {path!r:.40}")
        raise ModelFileError(msg)
    if meta is not None and not isinstance(meta, ModelMeta):
        msg = (f"meta must be an edgeres.meta.ModelMeta (e.g. from edgeres.meta.custom_meta), "
               f"got {type(meta).__name__}")
        raise MetadataError(msg)
    return Path(path)


def _check_path(path: Path) -> None:
    """A model path the runtimes can open: an existing regular file with a UTF-8 name (and,
    for ONNX, one record and its external data inside its folder), else one ModelFileError."""
    shown = str(path) if len(str(path)) <= 200 else str(path)[:197] + "..."
    try:
        str(path).encode("utf-8")
        is_file, is_dir = path.is_file(), path.is_dir()
    except UnicodeEncodeError:
        msg = (f"the model path {shown!a} is not valid UTF-8 (a file name in another "
               "encoding); rename the file with UTF-8 characters")
        raise ModelFileError(msg) from None
    except (OSError, ValueError) as e:  # a name too long for the file system, a NUL byte
        why = (e.strerror if isinstance(e, OSError) else None) or e
        msg = f"model path {shown} cannot be opened ({why}); pass a shorter path"
        raise ModelFileError(msg) from None
    if not is_file:
        what = "is a folder, not a model file" if is_dir else "does not exist"
        msg = f"model file {shown} {what}; pass {runtimes.suffix_list()}"
        raise ModelFileError(msg)
    if path.suffix.lower() == ".onnx":  # before any reader opens it, as every command does
        check_external_data(path)
        check_record_entries(path)


def _pick(path: Path, backend: str, device: str) -> Runtime:
    """The runtime that runs ``path`` on ``device``: the one named, or (``auto``) the first
    that reads the file's format and has the device (OpenVINO for an IR and for gpu).

    Raises:
        ModelFileError: if no runtime reads the file, or the one named does not.
        BackendNotAvailable: if the runtime's library is not installed.
    """
    readers = runtimes.readers(path)
    if not readers:
        msg = f"{path} is not a model file; pass {runtimes.suffix_list()}"
        raise ModelFileError(msg)
    if backend == "auto":
        rt = next((r for r in readers if device in r.devices), readers[0])
    else:
        rt = runtimes.get(backend)
        reason = rt.unavailable()  # first: installing it is the first fix
        if reason is not None:
            raise BackendNotAvailable(reason)
        if rt not in readers:
            own = readers[0]
            msg = (f"{path} is {_kind(path)}; {_title(rt.name)} needs "
                   f"{' or '.join(rt.suffixes)} (use backend {own.name})")
            raise ModelFileError(msg)
    reason = rt.unavailable()
    if reason is not None:
        raise BackendNotAvailable(reason)
    return rt


def _kind(path: Path) -> str:
    return {".xml": "an OpenVINO IR", ".onnx": "an ONNX file"}.get(
        path.suffix.lower(), f"a {path.suffix} file")


def _title(name: str) -> str:
    return {"ort": "ONNX Runtime", "openvino": "OpenVINO"}.get(name, name)


def _with_session_options(options: BackendOptions, runtime: str,
                          session_options: Any) -> BackendOptions:
    """``options`` with the caller's ``onnxruntime.SessionOptions``; refused for another
    runtime, or for an object that is not one."""
    if runtime != "ort":
        msg = "session_options applies to ONNX Runtime only; drop it or use backend='ort'"
        raise BackendNotAvailable(msg)
    if type(session_options).__name__ != "SessionOptions":
        msg = (f"session_options must be an onnxruntime.SessionOptions, got "
               f"{type(session_options).__name__}")
        raise BackendNotAvailable(msg)
    return dataclasses.replace(options, session_options=session_options)


def load(
    path: str | Path,
    *,
    backend: Backend = "auto",
    device: Device = "cpu",
    mode: Mode = "model",
    threads: int | None = None,
    meta: ModelMeta | None = None,
    session_options: Any = None,
    spin: bool | None = None,
) -> Predictor:
    """Load a model file for inference.

    Args:
        path: an ``.onnx`` file or an OpenVINO IR ``.xml`` (with its ``.bin`` beside it).
        backend: "ort", "openvino", or "auto" (OpenVINO for IR and for device "gpu",
            ONNX Runtime otherwise).
        device: "cpu", "cuda"/"tensorrt" (ONNX Runtime), "gpu" (OpenVINO). A GPU is used only
            when asked for, and asking for one that is absent is an error.
        mode: "model" runs what the record says (fp32 stays fp32, also on OpenVINO);
            "fast" lets the runtime lower it (bf16 on AMX CPUs, fp16 on TensorRT), which
            ``executed_precision`` reports and the log records at INFO level.
        threads: intra-op threads; the runtime's default when None.
        meta: the metadata record for a model that carries none (or to override it).
        session_options: an ``onnxruntime.SessionOptions`` to start from (ONNX Runtime only;
            ``threads`` overrides its ``intra_op_num_threads``).
        spin: whether ONNX Runtime's threads spin (busy-wait) for work between operators;
            None = edgeres' default, off (``runtime.backends.DEFAULT_SPIN``: a few % slower
            on an idle CPU, much faster when other work shares it). Other runtimes ignore it.

    Returns:
        A ``Predictor`` whose session is created once and reused.

    Raises:
        ModelFileError: missing, corrupt or non-classifier model file.
        BackendNotAvailable: unknown or uninstalled runtime, or a device that is not present.
        MetadataError: no record and no ``meta``, a ``meta`` that is not a ``ModelMeta`` or
            has out-of-range values, or a record that does not fit the graph.
        EdgeresError: an invalid ``mode``, ``threads`` or ``spin``; every error ``load`` raises
            is an ``EdgeresError`` subclass.
    """
    path = _check_arguments(path, meta)
    options = BackendOptions(device=device, mode=mode, threads=threads, spin=spin)
    known = ("auto", *runtimes.RUNTIME_NAMES)  # as registered now (BACKENDS: at import)
    if backend not in known:
        msg = f"unknown backend {backend!r}; use {', '.join(known[:-1])} or {known[-1]}"
        raise BackendNotAvailable(msg)
    _check_path(path)
    rt = _pick(path, backend, device)
    if session_options is not None:  # an ONNX Runtime object: only its backend takes it
        options = _with_session_options(options, rt.name, session_options)
    impl: Any = rt.load(path, options, meta)
    if impl.meta is None:
        raise _missing_record(path, impl)
    predictor = Predictor(impl, impl.meta, path)
    if meta is not None:  # a stored record was checked when read; a given one is checked here
        meta.check()
    log.info("loaded %s on %s (executes %s)", path.name, predictor.runtime,
             predictor.executed_precision)
    return predictor
