"""Every error edgeres expects to raise, in one hierarchy.

The CLI prints an ``EdgeresError`` as one line (``Error: <message>``) and exits 1; anything
else is a bug and keeps its traceback. Messages say what is wrong and how to fix it.
"""

from __future__ import annotations


class EdgeresError(Exception):
    """Base class: every error edgeres expects to raise; the CLI prints it without a traceback."""


class UnknownModelError(EdgeresError, LookupError):  # not KeyError: its str() adds quotes
    """Raised when a model name is not registered."""


class UnknownNameError(EdgeresError, LookupError):
    """Raised when a data or weights argument is neither an existing path nor a registered name."""


class CheckpointError(EdgeresError):
    """Raised when a checkpoint cannot be read, is unsafe, or does not fit the model."""


class ExportError(EdgeresError):
    """Raised when an export fails its checks (onnx checker, parity) or cannot be written."""


class MetadataError(EdgeresError):
    """Raised when a model's metadata record is missing, malformed or of an unknown schema."""


class DataError(EdgeresError):
    """Raised when input data (images, arrays, folders) is missing, empty or malformed."""


class ModelFileError(EdgeresError):
    """Raised when a model file is missing, corrupt, or not the kind of model expected."""


class BackendNotAvailable(EdgeresError):  # noqa: N818 - the name reads as the condition
    """Raised when a runtime, device or optional dependency is not installed or not present."""


class QuantizationError(EdgeresError):
    """Raised when quantization cannot run or its result fails its checks."""


class ConfigError(EdgeresError, ValueError):
    """Raised when an option is invalid (unknown runtime label, bad batch list, opset, ...).

    The one class for an invalid option in every module. Library messages name the parameter
    (``max_drop must be ...``); the CLI rewrites parameter names into its flags.
    """


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of ``e``'s text, at most ``limit`` characters (its type name if empty).

    For quoting a library's own exception (ORT, OpenVINO, onnx, torch) inside a one-line error.
    """
    text = str(e).strip().splitlines()
    return text[0][:limit] if text else type(e).__name__


def missing_extra(package: str, extra: str) -> BackendNotAvailable:
    """Build the error for an optional dependency that is not installed.

    Args:
        package: the import name that failed (``torch``, ``openvino``, ...).
        extra: the edgeres extra that provides it.

    Returns:
        A ``BackendNotAvailable`` whose message says which extra to install.
    """
    msg = f"{package} is not installed; pip install 'edgeres[{extra}]'"
    return BackendNotAvailable(msg)
