"""Opening a model file: which runtime's format it is, its record (checked), its files and size.

``open_model_file`` is THE opener every command uses for a model file's facts without running
it: the runtime registry (``edgeres.runtimes.for_file``) names the format, that runtime reads
the record (``Runtime.read_record``: ONNX ``metadata_props`` through ONNX Runtime, an IR's
``rt_info`` with the stdlib XML parser), ``ModelMeta.from_json`` checks it, and the runtime's
companion files (an IR's ``.bin``) count in the size. ``onnx_record`` reads an ONNX file's
record fitted to the graph's batch axis and image size (``ModelMeta.fitted_to``);
``model_record`` returns it or builds one from stated preprocessing
(``edgeres.foreign.stated_record``). Layer 2: numpy-free; runtimes are imported inside the
functions. ``calibration.model_record``/``onnx_record`` are aliases of these.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeres import runtimes
from edgeres.errors import ModelFileError
from edgeres.meta import METADATA_KEY, ModelMeta

if TYPE_CHECKING:
    from edgeres.foreign import RecordOptions

__all__ = ["ModelFile", "model_record", "onnx_record", "open_model_file"]


@dataclass(frozen=True)
class ModelFile:
    """A model file's facts, read without running it.

    Attributes:
        path: the model file (an IR's ``.xml``).
        runtime: the registered runtime whose format it is ("ort", "openvino", ...).
        files: the file and the companions that travel with it (an IR's ``.bin``).
        size_bytes: their total size.
        record_text: the stored record, as stored; None when the file has none.
        meta: that record, checked (``ModelMeta.from_json``); None when the file has none.
    """

    path: Path
    runtime: str
    files: tuple[Path, ...]
    size_bytes: int
    record_text: str | None
    meta: ModelMeta | None


def open_model_file(path: str | Path) -> ModelFile:
    """Identify a model file by the runtime registry and read its record.

    Raises:
        ModelFileError: if ``path`` is missing, a folder, not a format a runtime reads, or
            unreadable.
        MetadataError: if its record breaks a rule.
        BackendNotAvailable: if reading the record needs a runtime that is not installed.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a model file" if path.is_dir() else "does not exist"
        msg = f"model file {path} {what}; pass {runtimes.suffix_list()}"
        raise ModelFileError(msg)
    rt = runtimes.for_file(path)
    text = rt.read_record(path)
    files = (path, *(f for f in rt.companion_files(path) if f.is_file()))
    return ModelFile(path=path, runtime=rt.name, files=files,
                     size_bytes=sum(f.stat().st_size for f in files), record_text=text,
                     meta=ModelMeta.from_json(text) if text is not None else None)


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
    """A CPU session with graph optimisation off (``runtimes.ort.inspect_session``)."""
    import onnxruntime as ort

    from edgeres.runtimes.ort import inspect_session

    if not Path(path).is_file():
        msg = f"model file {path} does not exist; pass an .onnx file"
        raise ModelFileError(msg)
    return inspect_session(ort, Path(path))
