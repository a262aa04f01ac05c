"""The edgeres record entries of an ONNX file, read from its bytes with the stdlib.

ONNX Runtime's metadata map keeps the last of two ``edgeres`` entries and ``onnx`` lists both
(``info`` read the first, ``predict`` the last), and ORT's Python binding raises
``UnicodeDecodeError`` on a value that is not UTF-8. ``check_record_entries`` reads the
``metadata_props`` of ``ModelProto`` (field 14) itself, seeking over the graph and every other
field, so a file's record is judged the same way whatever later opens it: two records are
refused, and so is one that is not UTF-8 text. Stdlib only (layer 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from edgeres.errors import MetadataError

METADATA_PROPS = 14  # ModelProto.metadata_props: repeated StringStringEntryProto {1: key, 2: value}
_MAX_ENTRY = 256 << 20  # bytes: four times the largest record text ModelMeta accepts, plus slack


class _MalformedError(Exception):
    """Not a protobuf this reader follows: the runtime that opens it gives its own reason."""


def _varint(f: BinaryIO) -> int | None:
    shift = value = 0
    while True:
        byte = f.read(1)
        if not byte:
            if shift == 0:
                return None  # a clean end of the message
            raise _MalformedError
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise _MalformedError


def _varint_at(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` in ``data`` and the position after it."""
    shift = value = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _MalformedError
        value |= (data[pos] & 0x7F) << shift
        pos += 1
        if not data[pos - 1] & 0x80:
            return value, pos
        shift += 7


def _entry(data: bytes) -> tuple[bytes | None, bytes | None]:
    """The (key, value) of one StringStringEntryProto (both are strings: wire type 2)."""
    fields: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        tag, pos = _varint_at(data, pos)
        length, pos = _varint_at(data, pos)
        if tag & 7 != 2 or pos + length > len(data):
            raise _MalformedError
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
            while (tag := _varint(f)) is not None:
                field, wire = tag >> 3, tag & 7
                if wire == 0:
                    if _varint(f) is None:
                        raise _MalformedError
                elif wire in (1, 5):
                    f.seek(8 if wire == 1 else 4, 1)
                elif wire == 2:
                    length = _varint(f)
                    if length is None or f.tell() + length > size:
                        raise _MalformedError
                    if field == METADATA_PROPS and length <= _MAX_ENTRY:
                        k, v = _entry(f.read(length))
                        if k == key:
                            found.append(v or b"")
                    else:
                        f.seek(length, 1)
                else:
                    raise _MalformedError
    except (OSError, _MalformedError):
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
