"""What a model file needs of its runtime: the oldest release that reads it. Stdlib only.

``edgeres package`` writes this minimum into a bundle's ``requirements.txt`` (never below the
releases ``tests/test_install.py`` runs, ``package.TESTED_MINIMUMS``), and the bundle's
``infer.py`` checks the installed runtime against it before loading (``edgeres.device.infer``).

ONNX: an ONNX Runtime release reads IR versions and opsets up to those it implements
(ORT's compatibility page, "ONNX opset support": onnxruntime.ai/docs/reference/
compatibility.html), and refuses a model that merely *imports* a newer opset of any domain
("ai.onnx.ml opset 5 is under development" from 1.17.x). ``onnx_needs`` reads the IR version,
the opset imports and the domains the graph's nodes really use straight from the protobuf wire
format (no ``onnx`` needed: a base install packages too); ``drop_unused_opsets`` writes a copy
without the imports no node uses (ORT's quantization pre-processing adds eight).

OpenVINO IR: each layer names the opset it comes from (``version="opset13"``); a release reads
the opsets up to its own (OpenVINO's release notes: opset16 arrived with 2025.0).
"""

from __future__ import annotations

import re
from pathlib import Path

from edgeres._protowire import fields as wire_fields

__all__ = ["ORT_RELEASES", "OV_OPSETS", "drop_unused_opsets", "ir_needs", "onnx_needs",
           "ort_minimum", "version_tuple"]

# (ORT release, highest ai.onnx opset, highest ai.onnx.ml opset, highest IR version) it
# implements, oldest first, from ONNX Runtime's compatibility table (onnxruntime.ai/docs/
# reference/compatibility.html). A model beyond the last row needs the release that packaged
# and checked it (``ort_minimum``'s ``host`` argument).
ORT_RELEASES: tuple[tuple[str, int, int, int], ...] = (
    ("1.12.0", 17, 3, 8), ("1.14.0", 18, 3, 8), ("1.15.0", 19, 3, 8), ("1.16.0", 19, 3, 9),
    ("1.17.0", 20, 4, 9), ("1.18.0", 21, 4, 10),
)
# OpenVINO IR layer opsets newer than what every release since 2024.0 reads, and the first
# release that reads them.
OV_OPSETS: dict[int, str] = {16: "2025.0.0"}
_ONNX_DOMAINS = ("", "ai.onnx")


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.17.3"`` -> (1, 17, 3); stops at the first part that is not a number (``rc1``)."""
    out = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if not digits:
            break
        out.append(int(digits.group()))
        if digits.group() != part:
            break
    return tuple(out)


# --- ModelProto's opsets and node domains, through the one wire reader (_protowire) -------

def _text(value: int | memoryview) -> str:
    return bytes(value).decode("utf-8", "replace") if isinstance(value, memoryview) else ""


def _nodes_domains(container: memoryview, node_field: int, depth: int = 0) -> set[str]:
    """Domains of the nodes in a GraphProto (nodes: field 1) or FunctionProto (field 7), with
    subgraphs (NodeProto.domain is field 7, attribute 5; AttributeProto.g 6, graphs 11)."""
    found: set[str] = set()
    if depth > 32:
        return found
    for number, _, _, node in wire_fields(container):
        if number != node_field or not isinstance(node, memoryview):
            continue
        domain = ""
        for n, _, _, v in wire_fields(node):
            if n == 7:
                domain = _text(v)
            elif n == 5 and isinstance(v, memoryview):
                for a, _, _, sub in wire_fields(v):
                    if a in (6, 11) and isinstance(sub, memoryview):
                        found |= _nodes_domains(sub, 1, depth + 1)
        found.add("" if domain in _ONNX_DOMAINS else domain)
    return found


def _opset(entry: memoryview) -> tuple[str, int]:
    """OperatorSetIdProto: domain (1), version (2)."""
    domain, version = "", 0
    for n, _, _, v in wire_fields(entry):
        if n == 1:
            domain = _text(v)
        elif n == 2 and isinstance(v, int):
            version = v
    return ("" if domain in _ONNX_DOMAINS else domain), version


def onnx_needs(data: bytes) -> tuple[int, dict[str, int], set[str]]:
    """(IR version, imported opsets by domain, domains the nodes use) of a serialized model.

    ModelProto: ir_version is field 1, graph 7, opset_import 8, functions 25 (whose nodes
    count as used). The ONNX domain is "" however it is spelled.

    Raises:
        ValueError: if ``data`` is not a readable ModelProto.
    """
    ir = 0
    imports: dict[str, int] = {}
    used: set[str] = set()
    for number, _, _, value in wire_fields(data):
        if number == 1 and isinstance(value, int):
            ir = value
        elif number == 8 and isinstance(value, memoryview):
            domain, version = _opset(value)
            imports[domain] = max(version, imports.get(domain, 0))
        elif number == 7 and isinstance(value, memoryview):
            used |= _nodes_domains(value, 1)
        elif number == 25 and isinstance(value, memoryview):
            used |= _nodes_domains(value, 7)
    return ir, imports, used | {""}


def drop_unused_opsets(data: bytes) -> bytes:
    """``data`` without the opset imports of domains no node uses (the same bytes when there
    are none): the graph, weights and record are copied byte for byte.

    Raises:
        ValueError: if ``data`` is not a readable ModelProto.
    """
    _, imports, used = onnx_needs(data)
    if set(imports) <= used:
        return data
    out = bytearray()
    fields = wire_fields(data)
    for i, (number, _, start, value) in enumerate(fields):
        end = fields[i + 1][2] if i + 1 < len(fields) else len(data)
        if number == 8 and isinstance(value, memoryview) and _opset(value)[0] not in used:
            continue
        out += data[start:end]
    return bytes(out)


def ort_minimum(ir: int, imports: dict[str, int], floor: str, host: str) -> tuple[str, str]:
    """The oldest ONNX Runtime that reads a model, and why: (version, reason).

    Args:
        ir, imports: from ``onnx_needs`` (after ``drop_unused_opsets``).
        floor: the oldest release edgeres tests bundles with (never gone below).
        host: the release that packaged and checked the model, the answer for a model
            beyond ``ORT_RELEASES``.
    """
    onnx_opset, ml_opset = imports.get("", 0), imports.get("ai.onnx.ml", 0)
    why = f"IR version {ir}, ai.onnx opset {onnx_opset}" + (
        f", ai.onnx.ml opset {ml_opset}" if ml_opset else "")
    for release, max_onnx, max_ml, max_ir in ORT_RELEASES:
        if onnx_opset <= max_onnx and ml_opset <= max_ml and ir <= max_ir:
            best = max(release, floor, key=version_tuple)
            return best, why
    return host, f"{why}: newer than ONNX Runtime's table, so the release that packaged it"


def ir_needs(xml: Path, floor: str) -> tuple[str, str]:
    """The oldest OpenVINO that reads IR ``xml``, and why: (version, reason)."""
    head = xml.read_bytes()
    opsets = [int(m) for m in re.findall(rb'version="opset(\d+)"', head)]
    top = max(opsets, default=1)
    need = max([floor, *(v for k, v in OV_OPSETS.items() if top >= k)], key=version_tuple)
    return need, f"layers up to opset{top}"
