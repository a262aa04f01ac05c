"""Opening a model file: read an ONNX file's record, fitted to its graph, or state one.

The one place a model file is opened for its record outside ``edgeres.runtime``: ``onnx_record``
reads the record an ONNX file carries (fitted to the graph's batch axis and image size with
``ModelMeta.fitted_to``), ``model_record`` returns it or builds one from stated preprocessing
(``edgeres.foreign.stated_record``). An OpenVINO IR's record is read with ``meta.read_ir_meta``
at the places ``meta.IR_RECORD_PATHS`` names. Layer 2: numpy-free; onnxruntime is imported
inside the functions. ``calibration.model_record``/``onnx_record`` are aliases of these.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeres.errors import ModelFileError, first_line
from edgeres.meta import METADATA_KEY, ModelMeta

if TYPE_CHECKING:
    from edgeres.foreign import RecordOptions

__all__ = ["model_record", "onnx_record"]


def model_record(
    path: Path,
    *,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    input_size: tuple[int, int] | None = None,
    layout: str | None = None,
    options: RecordOptions | None = None,
) -> ModelMeta:
    """The metadata record of ONNX model ``path``, or one built from stated preprocessing.

    Stated values (``mean``/``std``/``input_size``/``layout``, or all of ``RecordOptions``)
    override the record's fields; a model without a record needs at least ``mean`` or
    ``std``. See ``edgeres.foreign.stated_record``, which this calls.

    Raises:
        ModelFileError: if ``path`` is missing, not a readable ONNX model, or not a classifier
            with one 4-D image input and one [N, classes] output.
        MetadataError: if the model has no record and no preprocessing was stated.
    """
    from edgeres.foreign import RecordOptions, stated_record

    stated: dict[str, Any] = {k: v for k, v in (
        ("mean", mean), ("std", std), ("input_size", input_size), ("layout", layout))
        if v is not None}
    options = dataclasses.replace(options or RecordOptions(), **stated)
    if Path(path).suffix.lower() in (".tflite", ".pte"):
        return edge_record(Path(path), stated=bool(stated) or options.stated)
    return stated_record(Path(path), options)


def edge_record(path: Path, *, stated: bool = False) -> ModelMeta:
    """The record a LiteRT ``.tflite`` (inside) or ExecuTorch ``.pte`` (``<file>.json``)
    carries; these files come from ``edgeres export``, so stated preprocessing is refused.

    Raises:
        ModelFileError: a missing or unreadable file.
        MetadataError: no record, or preprocessing stated for it.
    """
    from edgeres.errors import MetadataError
    from edgeres.runtimes import for_file

    if stated:
        msg = (f"preprocessing options apply to ONNX models; {path} takes the record "
               "`edgeres export --format` stored with it")
        raise MetadataError(msg)
    if not path.is_file():
        msg = f"model file {path} does not exist; pass an exported .tflite or .pte file"
        raise ModelFileError(msg)
    text = for_file(path).read_record(path)
    if text is None:
        msg = (f"{path} carries no edgeres metadata record (a .pte keeps it in "
               f"{path.name}.json beside it); re-export it with `edgeres export --format "
               f"{path.suffix.lstrip('.').lower()}`")
        raise MetadataError(msg)
    return ModelMeta.from_json(text)


def onnx_record(path: Path) -> ModelMeta | None:
    """The metadata record of ONNX file ``path`` (None if it has none), fitted to the graph's
    batch axis and image size (``ModelMeta.fitted_to``).

    Raises:
        ModelFileError: if ``path`` is missing or not a readable ONNX model.
    """
    return _session_record(_inspect_session(path))


def _session_record(sess: Any) -> ModelMeta | None:
    text = sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    inputs = sess.get_inputs()
    shape = tuple(inputs[0].shape or ()) if inputs else None
    return ModelMeta.from_json(text).fitted_to(shape) if text else None


def _inspect_session(path: Path) -> Any:
    import onnxruntime as ort

    if not Path(path).is_file():
        msg = f"model file {path} does not exist; pass an .onnx file"
        raise ModelFileError(msg)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf types
        first = first_line(e)
        msg = f"{path} is not a readable ONNX model ({first}); pass an exported .onnx file"
        raise ModelFileError(msg) from None
