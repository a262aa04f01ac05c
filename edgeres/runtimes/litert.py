"""LiteRT (TFLite): run, export and quantize ``.tflite`` models (backend ``litert``).

The device side is ``LiteRTBackend`` over ``ai_edge_litert.interpreter.Interpreter`` (torch-free,
aarch64 wheels). An int8 model made by ai-edge-quantizer takes and returns int8 tensors, so
``run`` quantizes the prepared float input and dequantizes the output with the tensors' own
scale and zero point; feeding float values cast to int8 runs but answers nonsense (cosine 0.80
against fp32 in issue 24). The metadata record travels inside the file, in the flatbuffer's
name -> buffer metadata map under the ``edgeres`` key (the place TFLite's own metadata uses),
read here with ``struct`` alone and written with LiteRT's flatbuffer schema at export time.
Graphs are exported with a fixed batch (default 1): LiteRT's ``resize_tensor_input`` on a
converted ResNet ran without error but gave wrong logits (max |err| 2.0 at batch 8), so a
batch-1 file runs batch 1 and the Predictor pads to it.

int8 (ai-edge-quantizer, build side only) lives in ``_litert_int8.py``, which a device never
needs. Top-level imports: stdlib, numpy and device-safe edgeres modules; ai_edge_litert, torch
and litert_torch are imported inside the functions that use them.
"""

from __future__ import annotations

import importlib.util
import logging
import struct
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeres.errors import (
    BackendNotAvailable,
    DataError,
    ModelFileError,
    first_line,
)
from edgeres.meta import METADATA_KEY, ModelMeta

if TYPE_CHECKING:
    from edgeres.calibration import CalibrationSet
    from edgeres.quantize.config import QuantConfig, TargetSpec
    from edgeres.runtime.backends import BackendOptions
    from edgeres.runtimes._litert_int8 import LiteRTQuantizer
    from edgeres.runtimes._protocol import Runtime

log = logging.getLogger(__name__)

INSTALL = "pip install 'edgeres[device-litert]' (or 'edgeres[litert]' to export and quantize)"
_IDENTIFIER = b"TFL3"
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6  # field numbers of Model in LiteRT's schema.fbs
_SIGNATURE = "serving_default"  # the one signature litert_torch.convert writes


def _import_interpreter() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        msg = f"ai-edge-litert is not installed; {INSTALL}"
        raise BackendNotAvailable(msg) from None
    return Interpreter


# --- the record in the flatbuffer's metadata map (read with struct: no runtime needed) -----

def _u32(buf: bytes, pos: int) -> int:
    return int(struct.unpack_from("<I", buf, pos)[0])


def _field(buf: bytes, table: int, field: int) -> int | None:
    """Position of ``field`` of the table at ``table``, or None when it is absent."""
    vtable = table - int(struct.unpack_from("<i", buf, table)[0])
    slot = 4 + 2 * field
    if slot >= int(struct.unpack_from("<H", buf, vtable)[0]):
        return None
    offset = int(struct.unpack_from("<H", buf, vtable + slot)[0])
    return table + offset if offset else None


def _vector(buf: bytes, pos: int) -> tuple[int, int]:
    """(first element, length) of the vector the offset at ``pos`` points to."""
    start = pos + _u32(buf, pos)
    return start + 4, _u32(buf, start)


def _metadata_entry(buf: bytes, name: str) -> bytes | None:
    """The bytes of metadata entry ``name`` of a .tflite flatbuffer, or None."""
    root = _u32(buf, 0)
    entries, buffers = _field(buf, root, _MODEL_METADATA), _field(buf, root, _MODEL_BUFFERS)
    if entries is None or buffers is None:
        return None
    first, count = _vector(buf, entries)
    for i in range(count):
        entry = first + 4 * i + _u32(buf, first + 4 * i)
        name_at, index_at = _field(buf, entry, 0), _field(buf, entry, 1)
        if name_at is None:
            continue
        start, length = _vector(buf, name_at)
        if buf[start:start + length].decode("utf-8", "replace") != name:
            continue
        b_first, b_count = _vector(buf, buffers)
        index = _u32(buf, index_at) if index_at is not None else 0
        if index >= b_count:
            return None
        table = b_first + 4 * index + _u32(buf, b_first + 4 * index)
        data_at = _field(buf, table, 0)
        if data_at is not None:
            start, length = _vector(buf, data_at)
            return bytes(buf[start:start + length])
        offset_at, size_at = _field(buf, table, 1), _field(buf, table, 2)  # >2 GB files
        if offset_at is None or size_at is None:
            return None
        offset = int(struct.unpack_from("<Q", buf, offset_at)[0])
        size = int(struct.unpack_from("<Q", buf, size_at)[0])
        return bytes(buf[offset:offset + size])
    return None


def _check_tflite(data: bytes, path: Path) -> None:
    if len(data) < 8 or data[4:8] != _IDENTIFIER:
        msg = f"{path} is not a LiteRT/TFLite model (no TFL3 identifier); pass a .tflite file"
        raise ModelFileError(msg)


def record_from_bytes(data: bytes, path: Path) -> str | None:
    """The edgeres record stored in .tflite bytes ``data``, or None.

    Raises:
        ModelFileError: if ``data`` is not a .tflite flatbuffer or is cut short.
    """
    _check_tflite(data, path)
    try:
        found = _metadata_entry(data, METADATA_KEY)
    except (struct.error, IndexError):
        msg = f"{path} is truncated or corrupt (its flatbuffer ends early); re-export it"
        raise ModelFileError(msg) from None
    return found.decode("utf-8") if found is not None else None


def with_record(model: bytes, record: str) -> bytes:
    """``model`` (.tflite bytes) with ``record`` under the ``edgeres`` metadata key, replacing
    one stored before (an int8 file keeps the float file's entries)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    payload = np.frombuffer(record.encode("utf-8"), dtype=np.uint8)
    tree.buffers = tree.buffers or []
    for buffer in tree.buffers:  # data after the flatbuffer (ai-edge-quantizer writes it so)
        if buffer.offset and buffer.offset > 1:  # would not survive repacking: move it inline
            buffer.data = np.frombuffer(model, np.uint8, int(buffer.size), int(buffer.offset))
            buffer.offset = buffer.size = 0
    for entry in tree.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == METADATA_KEY:
            tree.buffers[entry.buffer].data = payload
            break
    else:
        buffer = schema.BufferT()
        buffer.data = payload
        tree.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = METADATA_KEY, len(tree.buffers) - 1
        tree.metadata = [*(tree.metadata or []), entry]
    builder = flatbuffers.Builder(len(model) + len(payload) + 4096)
    builder.Finish(tree.Pack(builder), file_identifier=_IDENTIFIER)
    return bytes(builder.Output())


def _read(path: Path) -> bytes:
    if not path.is_file():
        what = "is a folder, not a model file" if path.is_dir() else "does not exist"
        msg = f"model file {path} {what}; pass a .tflite file"
        raise ModelFileError(msg)
    return path.read_bytes()


# --- inference ------------------------------------------------------------------------------

def _quant(detail: dict[str, Any]) -> tuple[float, int, np.dtype] | None:
    """(scale, zero point, integer dtype) of a quantized tensor, None for a float one."""
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail.get("quantization", (0.0, 0))
    if dtype.kind not in "iu" or not scale:
        return None
    return float(scale), int(zero), dtype


class LiteRTBackend:
    """One LiteRT interpreter (``edgeres.runtime.backends.InferenceBackend``).

    Takes NCHW float32 as ``edgeres.preprocess.prepare`` makes it (transposed for an NHWC
    graph, quantized for an int8 one) and returns float logits. An interpreter is not
    thread-safe, so calls are serialised by a lock.
    """

    name = "litert"

    def __init__(self, path: Path, options: BackendOptions, *,
                 meta: ModelMeta | None = None, keep_tensors: bool = False) -> None:
        from edgeres.runtime.backends import check_image_input

        if options.device != "cpu":
            msg = f"LiteRT runs on the CPU here, not {options.device!r}; use --device cpu"
            raise BackendNotAvailable(msg)
        interpreter = _import_interpreter()
        data = _read(path)
        self.record_text: str | None = record_from_bytes(data, path)
        try:
            kwargs: dict[str, Any] = {"num_threads": options.threads} if options.threads else {}
            if keep_tensors:  # the per-layer report reads intermediate tensors
                kwargs["experimental_preserve_all_tensors"] = True
            self._it = interpreter(model_content=data, **kwargs)
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            msg = f"{path} could not be loaded by LiteRT ({first_line(e)}); re-export it"
            raise ModelFileError(msg) from None
        inputs, outputs = self._it.get_input_details(), self._it.get_output_details()
        shape = tuple(int(d) for d in inputs[0]["shape"]) if len(inputs) == 1 else None
        self._nhwc = bool(shape and len(shape) == 4 and shape[3] in (1, 3)
                          and shape[1] not in (1, 3))
        if shape is not None and self._nhwc:
            shape = (shape[0], shape[3], shape[1], shape[2])
        self._in_quant = _quant(inputs[0]) if inputs else None
        dtype = "float32" if self._in_quant else (
            str(np.dtype(inputs[0]["dtype"])) if inputs else "none")
        check_image_input(path, [str(i["name"]) for i in inputs], shape, dtype)
        if not outputs:
            msg = f"{path} has no output; edgeres handles classifiers"
            raise ModelFileError(msg)
        self.device: str = "cpu"
        self.input_name: str = str(inputs[0]["name"])
        self.input_shape: tuple[Any, ...] = shape or ()
        self.input_dtype: np.dtype = np.dtype(dtype)
        self.graph_input_dtype = str(np.dtype(inputs[0]["dtype"]))  # int8 in an int8 graph
        self._in_index, self._out = int(inputs[0]["index"]), outputs[0]
        self._out_quant = _quant(outputs[0])
        self.output_shape: tuple[Any, ...] = tuple(int(d) for d in outputs[0]["shape"])
        stored = (ModelMeta.from_json(self.record_text).fitted_to(self.input_shape)
                  if self.record_text else None)
        self.meta: ModelMeta | None = meta or stored
        self.executed_precision: str | None = executed_precision(self._it.get_tensor_details())
        self.details: dict[str, Any] = {"threads": options.threads or "default",
                        "input_quantization": self._in_quant[:2] if self._in_quant else None,
                        "version": _version()}
        self._lock = threading.Lock()

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """``x`` as the graph takes it: NHWC when the graph is, int8 from its scale and zero
        point when it is quantized (the values, never a cast)."""
        if self._nhwc:
            x = x.transpose(0, 2, 3, 1)
        if self._in_quant is not None:
            scale, zero, dtype = self._in_quant
            info = np.iinfo(dtype)
            x = np.clip(np.rint(x / scale) + zero, info.min, info.max).astype(dtype)
        return np.ascontiguousarray(x)

    def tensor_details(self) -> list[dict[str, Any]]:
        """Every tensor's details (name, index, quantization), as the interpreter gives them."""
        return list(self._it.get_tensor_details())

    def tensor(self, index: int) -> np.ndarray:
        """The value of tensor ``index`` after the last run (``keep_tensors=True`` keeps them)."""
        return np.asarray(self._it.get_tensor(index))

    def run(self, x: np.ndarray) -> np.ndarray:
        if self._in_quant is not None and x.dtype.kind in "iu":
            msg = (f"this int8 LiteRT model takes prepared float32 input and quantizes it "
                   f"itself; got {x.dtype} (prepare images with edgeres.preprocess.prepare)")
            raise DataError(msg)
        graph_input = self.quantize_input(x)
        try:
            with self._lock:
                self._it.set_tensor(self._in_index, graph_input)
                self._it.invoke()
                y = self._it.get_tensor(self._out["index"])
        except (ValueError, RuntimeError) as e:
            msg = f"LiteRT failed on an input of shape {x.shape} ({first_line(e)})"
            raise DataError(msg) from None
        if self._out_quant is not None:
            scale, zero, _ = self._out_quant
            return (y.astype(np.float32) - zero) * np.float32(scale)
        return y


def executed_precision(tensors: Sequence[dict[str, Any]]) -> str:
    """"int8" when the graph holds quantized integer tensors (weights or activations), else
    "fp32" (a float16 graph: "fp16")."""
    kinds = {np.dtype(t["dtype"]) for t in tensors if t.get("quantization", (0.0, 0))[0]}
    if any(k.kind in "iu" for k in kinds):
        return "int8"
    return "fp16" if any(np.dtype(t["dtype"]) == np.float16 for t in tensors) else "fp32"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:  # metadata missing in a vendored copy: not worth failing a load
        return "unknown"


# --- export (PyTorch -> .tflite) --------------------------------------------------------------

def convert(module: Any, example: Any) -> bytes:
    """``module`` (eval, BatchNorms folded) as .tflite bytes for inputs shaped like
    ``example``, through litert_torch."""
    try:
        import litert_torch
    except ImportError:
        msg = "litert-torch is not installed; pip install 'edgeres[litert]'"
        raise BackendNotAvailable(msg) from None
    litert_torch.config.show_progress = False
    with tempfile.TemporaryDirectory(prefix="edgeres.litert.") as tmp:
        out = Path(tmp) / "model.tflite"
        litert_torch.convert(module, (example,)).export(str(out))
        return out.read_bytes()


def bytes_runner(data: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """A function running .tflite ``data`` on float NCHW batches of its fixed batch."""
    from edgeres.runtime.backends import BackendOptions

    with tempfile.TemporaryDirectory(prefix="edgeres.litert.") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(data)
        backend = LiteRTBackend(path, BackendOptions(threads=threads))
    return backend.run


def write_model(tmp: Path, data: bytes, meta: ModelMeta) -> None:
    """Write .tflite ``data`` to ``tmp`` with ``meta`` in its metadata map, checked on reading
    back: the record reads back as written and the stored graph answers a seeded input
    exactly as ``data`` does."""
    stored = with_record(data, meta.to_json())
    if record_from_bytes(stored, tmp) != meta.to_json():
        msg = "the metadata record does not round-trip through the .tflite file; report this"
        raise ModelFileError(msg)
    interpreter = _import_interpreter()
    answers = []
    for model in (data, stored):
        it = interpreter(model_content=model, num_threads=1)
        it.allocate_tensors()
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        x = np.random.default_rng(0).integers(-100, 100, inp["shape"]).astype(inp["dtype"])
        it.set_tensor(inp["index"], x)
        it.invoke()
        answers.append(it.get_tensor(out["index"]))
    if not np.array_equal(answers[0], answers[1]):
        msg = "storing the record changed the .tflite graph's answers; report this"
        raise ModelFileError(msg)
    tmp.write_bytes(stored)


class _LiteRT:
    """The LiteRT runtime (``edgeres.runtimes._protocol.Runtime``)."""

    name = "litert"
    devices: tuple[str, ...] = ("cpu",)
    suffixes: tuple[str, ...] = (".tflite",)
    dist = "ai-edge-litert"
    min_version = "2.3.0"
    quantizes = ".tflite"  # the float file its quantizer takes

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("ai_edge_litert") is None:
            return f"ai-edge-litert is not installed; {INSTALL}"
        return None

    def load(self, path: Path, options: BackendOptions,
             meta: ModelMeta | None = None) -> LiteRTBackend:
        return LiteRTBackend(Path(path), options, meta=meta)

    def read_record(self, path: Path) -> str | None:
        return record_from_bytes(_read(Path(path)), Path(path))

    def companion_files(self, path: Path) -> list[Path]:
        return []  # the record is inside the .tflite

    def quantizer(self, src: Path, calibration: CalibrationSet, spec: TargetSpec,
                  config: QuantConfig) -> LiteRTQuantizer:
        from edgeres.quantize._protocol import workdir
        from edgeres.runtimes._litert_int8 import DeviceSide, LiteRTQuantizer

        device = DeviceSide(backend=LiteRTBackend, interpreter=_import_interpreter, quant=_quant,
                            write_model=write_model, signature=_SIGNATURE)
        return LiteRTQuantizer(src, calibration, spec, config, workdir(), device)


RUNTIME: Runtime = _LiteRT()  # mypy checks it against the contract
