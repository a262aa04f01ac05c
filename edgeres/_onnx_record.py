"""The edgeres record entries of an ONNX file, read from its bytes with the stdlib.

ONNX Runtime's metadata map keeps the last of two ``edgeres`` entries and ``onnx`` lists both
(``info`` read the first, ``predict`` the last), and ORT's Python binding raises
``UnicodeDecodeError`` on a value that is not UTF-8. ``check_record_entries`` reads the
``metadata_props`` of ``ModelProto`` (field 14) itself, seeking over the graph and every other
field, so a file's record is judged the same way whatever later opens it: two records are
refused, and so is one that is not UTF-8 text. Stdlib only (layer 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from edgeres._protowire import LEN, VARINT, WireError, read_field, varint_at
from edgeres.errors import MetadataError

METADATA_PROPS = 14  # ModelProto.metadata_props: repeated StringStringEntryProto {1: key, 2: value}
_MAX_ENTRY = 256 << 20  # bytes: four times the largest record text ModelMeta accepts, plus slack


def _entry(data: bytes) -> tuple[bytes | None, bytes | None]:
    """The (key, value) of one StringStringEntryProto (both are strings: wire type 2)."""
    fields: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        tag, pos = varint_at(data, pos)
        length, pos = varint_at(data, pos)
        if tag & 7 != LEN or pos + length > len(data):
            msg = "a string entry that is not a length-delimited field"
            raise WireError(msg)
        fields[tag >> 3] = data[pos:pos + length]
        pos += length
    return fields.get(1), fields.get(2)


def record_entries(path: Path, key: bytes = b"edgeres") -> list[bytes] | None:
    """The raw values of every ``key`` entry in the file's ``metadata_props``, in file order;
    None when the file is not a protobuf this reader can follow (the runtime then says why)."""
    found: list[bytes] = []
    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as f:
            while (item := read_field(f, size)) is not None:
                field, wire, length = item
                if wire != LEN:
                    continue
                if field == METADATA_PROPS and length <= _MAX_ENTRY:
                    k, v = _entry(f.read(length))
                    if k == key:
                        found.append(v or b"")
                else:
                    f.seek(length, 1)
    except (OSError, WireError):
        return None
    return found


def check_record_entries(path: Path) -> None:
    """Refuse an ONNX file with more than one edgeres record, or one that is not UTF-8.

    Raises:
        MetadataError: naming the file and what to do.
    """
    entries = record_entries(path)
    if entries is None:
        return
    if len(entries) > 1:
        msg = (f"{path} holds {len(entries)} edgeres metadata records; a model has one, so "
               "edgeres does not guess which: re-export the model, or attach a record to the "
               "file it came from (`edgeres attach`)")
        raise MetadataError(msg)
    for value in entries:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as e:
            msg = (f"the edgeres metadata record of {path} is not UTF-8 text (byte "
                   f"0x{value[e.start]:02x} at offset {e.start}); re-export the model, or "
                   "attach a record to the file it came from (`edgeres attach`)")
            raise MetadataError(msg) from None


# --- external data: where a tensor's bytes live, judged before any reader opens them ------------

# Which length-delimited fields hold which message, for the walk down to every TensorProto:
# Model.graph; Graph.node, .initializer, .sparse_initializer; Node.attribute; Attribute.t,
# .g, .tensors, .graphs; SparseTensor.values, .indices.
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph"},
    "sparse": {1: "tensor", 2: "tensor"},
}
_TENSOR_NAME, _EXTERNAL_DATA, _DATA_LOCATION = 8, 13, 14
_MAX_DEPTH = 32  # subgraphs within subgraphs; deeper is refused by the runtimes anyway


@dataclass(frozen=True)
class ExternalTensor:
    """One tensor whose bytes are in another file (``data_location`` EXTERNAL)."""

    name: str
    location: str | None
    offset: int
    length: int | None


def _walk(f: BinaryIO, start: int, end: int, kind: str, depth: int,
          found: list[ExternalTensor]) -> None:
    if depth > _MAX_DEPTH:
        msg = f"messages nested deeper than {_MAX_DEPTH}"
        raise WireError(msg)
    f.seek(start)
    children = _CHILDREN.get(kind, {})
    entries: dict[str, str] = {}
    name, external = "", False
    while f.tell() < end:
        item = read_field(f, end)
        if item is None:
            msg = "truncated message"
            raise WireError(msg)
        field, wire, value = item
        if wire == VARINT and kind == "tensor" and field == _DATA_LOCATION:
            external = value == 1
        if wire != LEN:
            continue
        here = f.tell()
        if kind == "tensor" and field in (_TENSOR_NAME, _EXTERNAL_DATA) and value <= 1 << 16:
            name = _tensor_text(f.read(value), field, entries, name)
        elif field in children:
            _walk(f, here, here + value, children[field], depth + 1, found)
        f.seek(here + value)
    if external:
        found.append(_external_tensor(name, entries))


def _tensor_text(data: bytes, field: int, entries: dict[str, str], name: str) -> str:
    """A TensorProto's name (returned) or one of its ``external_data`` entries (added to
    ``entries``; ``name`` returned unchanged)."""
    if field == _TENSOR_NAME:
        return data.decode("utf-8", "replace")
    k, v = _entry(data)
    if k is not None and v is not None:
        entries[k.decode("utf-8", "replace")] = v.decode("utf-8", "replace")
    return name


def _external_tensor(name: str, entries: dict[str, str]) -> ExternalTensor:
    """A TensorProto's ``external_data`` entries (location, offset, length) as one record."""
    def number(key: str) -> int | None:
        text = entries.get(key)
        return int(text) if text is not None and text.isdigit() and len(text) < 20 else None

    return ExternalTensor(name, entries.get("location"), number("offset") or 0, number("length"))


def external_tensors(path: Path) -> list[ExternalTensor] | None:
    """Every tensor of ONNX file ``path`` kept in external data; None when the file is not a
    protobuf this reader follows (the runtime that opens it then says why)."""
    found: list[ExternalTensor] = []
    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as f:
            _walk(f, 0, size, "model", 0, found)
    except (OSError, WireError):
        return None
    return found


def _external_problem(folder: Path, tensor: ExternalTensor) -> str | None:
    """Why ``tensor``'s external data may not be read, or None."""
    import os
    import stat

    where = tensor.location
    if not where:
        return "names no file"
    given = Path(where)
    if given.is_absolute() or ".." in given.parts or "\0" in where:
        return "is not a plain file name inside the model's folder"
    full = folder / given
    try:
        if not full.resolve().is_relative_to(folder.resolve()):
            return f"leads out of the model's folder (to {full.resolve()})"
        st = os.stat(full)
    except FileNotFoundError:
        return "does not exist"
    except (OSError, RuntimeError, ValueError) as e:
        return f"cannot be read ({getattr(e, 'strerror', None) or type(e).__name__})"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a device, FIFO or folder)"
    end = tensor.offset + (tensor.length or 0)
    if end > st.st_size:
        return (f"is {st.st_size:,} bytes but the tensor asks for bytes {tensor.offset:,} to "
                f"{end:,}")
    return None


def external_files(path: Path) -> list[Path]:
    """The external data files of ONNX file ``path`` that are safe to read (see
    ``check_external_data``), each once, in file order."""
    folder = Path(path).parent
    files: dict[Path, None] = {}
    for tensor in external_tensors(path) or ():
        if tensor.location and _external_problem(folder, tensor) is None:
            files[folder / tensor.location] = None
    return list(files)


def check_external_data(path: Path) -> None:
    """Refuse an ONNX file whose external data is not a regular file inside its folder, is
    missing, or is shorter than a tensor says: in one line, before any reader opens it (the
    opset converter raised a ValidationError traceback; a device or FIFO would hang).

    Raises:
        ModelFileError: naming the tensor, its location and what is wrong.
    """
    from edgeres.errors import ModelFileError

    folder = Path(path).parent
    for tensor in external_tensors(path) or ():
        why = _external_problem(folder, tensor)
        if why is not None:
            msg = (f"{path}: tensor {tensor.name[:80]!r} keeps its data in "
                   f"{str(tensor.location)[:120]!r}, which {why}; edgeres reads external data "
                   "only from regular files beside the model: save the model with its weights "
                   "inside (onnx.save) or next to it")
            raise ModelFileError(msg)
