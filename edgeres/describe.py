"""What a model file holds, for ``edgeres info``: record, inputs/outputs, opset, size, nodes.

ONNX files are read with ``onnx`` when it is installed and with ONNX Runtime otherwise (the
light install: record and inputs/outputs, no opset or node counts); OpenVINO IR ``.xml`` files
with the stdlib XML parser. Never imports torch, so ``edgeres info`` works on a device.
"""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeres import runtimes
from edgeres._onnx_record import check_external_data, check_record_entries
from edgeres.errors import ModelFileError, first_line
from edgeres.meta import METADATA_KEY, ModelMeta
from edgeres.modelfile import open_model_file

__all__ = ["ModelFileInfo", "TensorInfo", "describe_model_file"]


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: name, shape (symbolic axes as names), element type."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str


@dataclass(frozen=True)
class ModelFileInfo:
    """Everything ``describe_model_file`` found.

    Attributes:
        path: the model file (the ``.xml`` for an IR).
        format: "onnx", "openvino-ir", or the name of the runtime whose format it is.
        size_bytes: bytes on disk (``.xml`` plus ``.bin`` for an IR, the ``.onnx`` plus its
            external data files when read with ``onnx``).
        meta: the edgeres record, None when the file has none.
        inputs: graph inputs (initializers excluded).
        outputs: graph outputs.
        opset: the default-domain ONNX opset; None for IR or when read without ``onnx``.
        node_counts: op type → count; None when read without ``onnx``.
        reader: what read the file: "onnx", "onnxruntime" or "xml".
    """

    path: Path
    format: str
    size_bytes: int
    meta: ModelMeta | None
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()
    opset: int | None = None
    node_counts: dict[str, int] | None = field(default=None)
    reader: str = "onnx"


_UNKNOWN_RANK = ("...",)  # shape of a value whose rank the file does not state


def _elem_name(elem_type: int) -> str:
    """numpy's name for an ONNX element type; ONNX's own name where numpy has none."""
    import onnx

    if elem_type == onnx.TensorProto.STRING:
        return "string"  # numpy calls it "object"
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, ValueError, TypeError):  # UNDEFINED, or a type newer than this onnx
        try:
            return onnx.TensorProto.DataType.Name(elem_type).lower()
        except ValueError:
            return "?"


def _describe_type(tp: Any) -> tuple[tuple[int | str, ...], str]:
    """(shape, dtype) of an ONNX TypeProto: tensors, and sequences/optionals/maps of them."""
    kind = tp.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        t = getattr(tp, kind)
        if not t.HasField("shape"):
            return _UNKNOWN_RANK, _elem_name(t.elem_type)
        # A dim states a value, a name, or neither (unknown): 0 would read as an empty axis.
        dims = (d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in t.shape.dim)
        return tuple(dims), _elem_name(t.elem_type)
    if kind == "sequence_type":
        return (), f"seq({_describe_type(tp.sequence_type.elem_type)[1]})"
    if kind == "optional_type":
        return (), f"optional({_describe_type(tp.optional_type.elem_type)[1]})"
    if kind == "map_type":
        key = _elem_name(tp.map_type.key_type)
        return (), f"map({key}, {_describe_type(tp.map_type.value_type)[1]})"
    return _UNKNOWN_RANK, "?"


def _value_info(vi: Any) -> TensorInfo:
    shape, dtype = _describe_type(vi.type)
    return TensorInfo(vi.name, shape, dtype)


def _external_data_bytes(model: Any, path: Path) -> int:
    """Bytes of the external data files the model's initializers name (each counted once)."""
    import onnx

    locations = {
        entry.value
        for tensor in model.graph.initializer
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    files = [path.parent / loc for loc in locations]
    return sum(f.stat().st_size for f in files if f.is_file())


def _onnx_with_onnx(path: Path, size: int) -> ModelFileInfo:
    import onnx

    from edgeres.meta import read_onnx_meta

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and others for a corrupt file
        msg = f"{path} is not a readable ONNX model ({type(e).__name__}); re-export it"
        raise ModelFileError(msg) from None
    # A graph may have no nodes (an input passed straight out) but never no outputs.
    if not model.graph.output or not model.opset_import:
        msg = f"{path} is not an ONNX model (no graph inside); re-export it"
        raise ModelFileError(msg)
    init = {i.name for i in model.graph.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return ModelFileInfo(
        path=path, format="onnx", size_bytes=size + _external_data_bytes(model, path),
        meta=read_onnx_meta(model),
        inputs=tuple(_value_info(v) for v in model.graph.input if v.name not in init),
        outputs=tuple(_value_info(v) for v in model.graph.output), opset=opset,
        node_counts=dict(Counter(n.op_type for n in model.graph.node).most_common()),
    )


# ONNX Runtime's element type names that differ from numpy's (what the onnx reader shows).
_ORT_DTYPES = {"float": "float32", "double": "float64"}


def _ort_tensor(arg: Any) -> TensorInfo:
    dtype = str(arg.type)
    if dtype.startswith("tensor(") and dtype.endswith(")"):  # not seq(tensor(float)) and such
        dtype = dtype[len("tensor("):-1]
        dtype = _ORT_DTYPES.get(dtype, dtype)
    shape = tuple(d if d is not None else "?" for d in (arg.shape or ()))
    return TensorInfo(arg.name, shape, dtype)


def _onnx_with_ort(path: Path, size: int) -> ModelFileInfo:
    try:
        import onnxruntime as ort
    except ImportError:
        from edgeres.errors import missing_extra

        package = "onnx or onnxruntime"
        raise missing_extra(package, "torch") from None
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT's exception types are not importable by name
        first = first_line(e, 120)
        msg = f"{path} is not a loadable ONNX model ({first}); re-export it"
        raise ModelFileError(msg) from None
    record = sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    return ModelFileInfo(
        path=path, format="onnx", size_bytes=size,
        meta=ModelMeta.from_json(record) if record is not None else None,
        inputs=tuple(_ort_tensor(a) for a in sess.get_inputs()),
        outputs=tuple(_ort_tensor(a) for a in sess.get_outputs()), reader="onnxruntime",
    )


def _ir_port(layer: ET.Element, port_parent: str) -> TensorInfo:
    port = layer.find(f"{port_parent}/port")
    dims = [] if port is None else [d.text or "?" for d in port.findall("dim")]
    shape = tuple(int(d) if d.lstrip("-").isdigit() and int(d) >= 0 else "?" for d in dims)
    data = layer.find("data")
    dtype = (data.get("element_type", "?") if data is not None
             else (port.get("precision", "?") if port is not None else "?"))
    return TensorInfo(layer.get("name", "?"), shape, dtype.lower())


def _openvino_ir(path: Path) -> ModelFileInfo:
    opened = open_model_file(path)  # the record and size; ModelFileError for unparseable XML
    root = ET.parse(path).getroot()
    if root.tag != "net":
        msg = f"{path} is XML but not an OpenVINO IR (root <{root.tag}>); give the model's .xml"
        raise ModelFileError(msg)
    layers = root.findall("layers/layer")
    return ModelFileInfo(
        path=path, format="openvino-ir", size_bytes=opened.size_bytes, meta=opened.meta,
        inputs=tuple(_ir_port(x, "output") for x in layers if x.get("type") == "Parameter"),
        outputs=tuple(_ir_port(x, "input") for x in layers if x.get("type") == "Result"),
        node_counts=dict(Counter(x.get("type", "?") for x in layers).most_common()),
        reader="xml",
    )


def _edge_file(path: Path) -> ModelFileInfo:
    """A LiteRT .tflite or ExecuTorch .pte: its record (inside, or the sidecar) and, when the
    runtime is installed, its input and output as that runtime loads them."""
    from edgeres.runtime.backends import BackendOptions
    from edgeres.runtimes import for_file

    runtime = for_file(path)
    text = runtime.read_record(path)
    meta = ModelMeta.from_json(text) if text else None
    size = path.stat().st_size + sum(c.stat().st_size for c in runtime.companion_files(path)
                                     if c.is_file())
    if runtime.unavailable() is not None:
        return ModelFileInfo(path=path, format=runtime.name, size_bytes=size, meta=meta,
                             node_counts=None, reader="record only")
    backend = runtime.load(path, BackendOptions(), meta)
    graph = getattr(backend, "graph_input_dtype", str(backend.input_dtype))
    dtype = (str(backend.input_dtype) if graph == str(backend.input_dtype)
             else f"{graph} (quantized from {backend.input_dtype} with its scale/zero point)")
    return ModelFileInfo(
        path=path, format=runtime.name, size_bytes=size, meta=meta,
        inputs=(TensorInfo(backend.input_name, tuple(backend.input_shape), dtype),),
        outputs=(TensorInfo("output", tuple(backend.output_shape), "float32"),),
        node_counts=None, reader=runtime.name,
    )


def describe_model_file(path: Path) -> ModelFileInfo:
    """Read what a model file holds without running it.

    Args:
        path: an ``.onnx`` file or an OpenVINO IR ``.xml`` (its ``.bin`` beside it).

    Returns:
        The file's ``ModelFileInfo``.

    Raises:
        ModelFileError: if the file is missing, of another type, or corrupt.
        MetadataError: if it carries a malformed edgeres record.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a model file" if path.is_dir() else "does not exist"
        msg = f"model file {path} {what}; give an .onnx or OpenVINO .xml file"
        raise ModelFileError(msg)
    suffix = path.suffix.lower()
    if not runtimes.readers(path):
        kind = suffix or "no suffix"
        msg = (f"{path} is not a model file edgeres reads ({kind}); give "
               f"{runtimes.suffix_list()}")
        raise ModelFileError(msg)
    if suffix == ".xml":
        return _openvino_ir(path)
    if suffix != ".onnx":  # another runtime's format: its record and, installed, its I/O
        return _edge_file(path)
    check_external_data(path)  # outside the model's folder, a device, FIFO, a 1 TB length
    check_record_entries(path)  # two records or a non-UTF-8 one: refused as every command does
    size = path.stat().st_size
    if importlib.util.find_spec("onnx") is None:  # the light install: ORT alone
        return _onnx_with_ort(path, size)
    return _onnx_with_onnx(path, size)
