"""THE protobuf wire-format reader: varints and field walking, just enough for ONNX's
ModelProto, read from bytes in memory (``fields``) or from an open file (``read_field``).

``_model_needs`` reads a model's opsets with it and ``_onnx_record`` its record entries and
external-data locations, so neither needs ``onnx`` (a base install and a bundle read models
too). Stdlib only, imports nothing of edgeres (layer 0; carried by bundles).
"""

from __future__ import annotations

from typing import BinaryIO

__all__ = ["WireError", "fields", "read_field", "read_varint", "varint_at"]

VARINT, I64, LEN, I32 = 0, 1, 2, 5  # the wire types this reader follows


class WireError(ValueError):
    """Not a protobuf this reader follows (a truncated varint or field, an unknown wire
    type): the runtime that opens the file gives its own reason."""


def varint_at(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` in ``buf`` and the position after it."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            msg = "truncated varint"
            raise WireError(msg)
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def read_varint(f: BinaryIO) -> int | None:
    """The varint at ``f``'s position; None at a clean end of the file."""
    shift = value = 0
    while True:
        byte = f.read(1)
        if not byte:
            if shift == 0:
                return None  # a clean end of the message
            msg = "truncated varint"
            raise WireError(msg)
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            msg = "varint longer than 64 bits"
            raise WireError(msg)


def fields(buf: bytes | memoryview) -> list[tuple[int, int, int, int | memoryview]]:
    """(field number, wire type, start offset, value) of each top-level field of ``buf``: a
    varint's value, a length-delimited field's bytes, 0 for a fixed 32/64-bit field."""
    view = memoryview(buf)
    out: list[tuple[int, int, int, int | memoryview]] = []
    pos = 0
    while pos < len(view):
        start = pos
        key, pos = varint_at(view, pos)
        number, wire = key >> 3, key & 7
        value: int | memoryview
        if wire == VARINT:
            value, pos = varint_at(view, pos)
        elif wire in (I64, I32):
            value, pos = 0, pos + (8 if wire == I64 else 4)
        elif wire == LEN:
            length, pos = varint_at(view, pos)
            value, pos = view[pos : pos + length], pos + length
        else:
            msg = f"wire type {wire}"
            raise WireError(msg)
        if pos > len(view):
            msg = "truncated field"
            raise WireError(msg)
        out.append((number, wire, start, value))
    return out


def read_field(f: BinaryIO, end: int) -> tuple[int, int, int] | None:
    """The next field of the message that ends at offset ``end`` of ``f``: (field number,
    wire type, value), where the value is a varint's value, a length-delimited field's
    length (``f`` left at its first byte) or 0 for a fixed-size field (skipped). None at a
    clean end of the file."""
    tag = read_varint(f)
    if tag is None:
        return None
    number, wire = tag >> 3, tag & 7
    if wire in (I64, I32):
        f.seek(8 if wire == I64 else 4, 1)
        return number, wire, 0
    if wire not in (VARINT, LEN):
        msg = f"wire type {wire}"
        raise WireError(msg)
    value = read_varint(f)
    if value is None or (wire == LEN and f.tell() + value > end):
        msg = "truncated field"
        raise WireError(msg)
    return number, wire, value
