"""Registered names for shipped files: weights, model files and data sets.

A command argument that names data or weights is a path if that path exists, else one of the
names here; an unknown name lists the valid ones. Shipped files live in ``edgeres/_data``
(package data, present in every install) and, for the vendored train-split subsets, in the
top-level ``calibration/`` folder, which the wheel carries as ``edgeres/_data/calibration``.
Stdlib only.
"""

from __future__ import annotations

from pathlib import Path

from edgeres.errors import UnknownNameError

_PACKAGE_DATA = Path(__file__).resolve().parent / "_data"
_SOURCE_ROOT = Path(__file__).resolve().parent.parent  # the checkout, in an editable install

# name → path relative to edgeres/_data (each maps one registered name to one shipped file)
WEIGHTS: dict[str, str] = {"cifar10": "models/cifar_resnet20-cifar10.pt"}
WEIGHTS_MODEL: dict[str, str] = {"cifar10": "cifar_resnet20"}  # the zoo model each fits
MODEL_FILES: dict[str, str] = {
    "cifar10": "models/cifar_resnet20-cifar10.onnx",
    "cifar10-int8": "models/cifar_resnet20-cifar10-int8.onnx",
}
# name → path relative to the calibration folder, or to edgeres/_data for the test archive
DATASETS: dict[str, str] = {
    "cifar10": "calibration:cifar10-calib",
    "cifar10-val": "calibration:cifar10-val",
    "cifar10-test": "data:cifar10-test.tar.gz",
}
DEFAULT_MODEL = "cifar10"  # the shipped reference model that demos and `predict` default to


def calibration_dir() -> Path:
    """The vendored calibration folder: inside the package when installed, else the checkout's."""
    installed = _PACKAGE_DATA / "calibration"
    return installed if installed.is_dir() else _SOURCE_ROOT / "calibration"


def package_data(relative: str) -> Path:
    """Path of a file shipped in ``edgeres/_data``."""
    return _PACKAGE_DATA / relative


def _resolve(value: str | Path, table: dict[str, Path], what: str) -> Path:
    path = Path(value)
    try:
        if path.exists():
            return path
    except (OSError, ValueError) as e:  # a name too long for the file system, a NUL byte
        why = getattr(e, "strerror", None) or str(e)
        shown = str(value) if len(str(value)) <= 80 else str(value)[:77] + "..."
        msg = f"{what} {shown!r} cannot be used as a path ({why}); give an existing file"
        raise UnknownNameError(msg) from None
    if str(value) in table:
        target = table[str(value)]
        if not target.exists():
            msg = f"{what} {value!r} is registered but {target} is missing; reinstall edgeres"
            raise UnknownNameError(msg)
        return target
    valid = ", ".join(sorted(table))
    msg = f"{what} {str(value)!r} is neither an existing path nor a registered name ({valid})"
    raise UnknownNameError(msg)


def resolve_weights(value: str | Path) -> Path:
    """Checkpoint path for ``value`` (a path, or a name in ``WEIGHTS``).

    Raises:
        UnknownNameError: if ``value`` is neither an existing path nor a registered name.
    """
    return _resolve(value, {k: package_data(v) for k, v in WEIGHTS.items()}, "weights")


def resolve_model_file(value: str | Path) -> Path:
    """Model file path for ``value`` (a path, or a name in ``MODEL_FILES``).

    Raises:
        UnknownNameError: if ``value`` is neither an existing path nor a registered name.
    """
    return _resolve(value, {k: package_data(v) for k, v in MODEL_FILES.items()}, "model")


def dataset_paths() -> dict[str, Path]:
    """Every registered data set name with the path it stands for."""
    out = {}
    for name, spec in DATASETS.items():
        where, rel = spec.split(":", 1)
        out[name] = calibration_dir() / rel if where == "calibration" else package_data(rel)
    return out


def resolve_data(value: str | Path) -> Path:
    """Data path for ``value`` (a path, or a name in ``DATASETS``).

    Raises:
        UnknownNameError: if ``value`` is neither an existing path nor a registered name.
    """
    return _resolve(value, dataset_paths(), "data")
