"""The device package: the part of edgeres a bundle carries, as files, and runs without edgeres.

A bundle (``edgeres package``) holds ``infer.py`` (a copy of ``bundle_entry.py``) and, under
``edgeres_device/``, these modules of edgeres copied unchanged, at their own paths: the light
core (``errors``, ``meta`` and ``_record_check``: the record and its checks, ``preprocess``,
``_hw``: the hardware rules, ``golden``: the golden check, ``_model_needs``: the runtime
version a model needs, ``_resources``: the memory check), ``edgeres.runtime`` (load and
predict), the runtime registry, this package (``infer``: infer.py's command line) and the ONE
runtime module the bundle's model needs (``runtimes/ort.py`` or ``runtimes/openvino.py``).
``infer.py`` puts ``edgeres_device/`` first on ``sys.path``, so the bundle runs the very code
edgeres runs and mypy checks (CONTRIBUTING R4: no second copy to keep in sync, no source
pasted into a template). Only module-level imports travel: a carried module may import a
host-only module (torch, edgeres.quantize) inside a function a device never calls;
``tests/test_device.py`` checks the set is closed. Stdlib only.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEVICE_DIR", "ENTRY", "IMAGE_SUFFIXES", "SHARED_MODULES", "bundle_files"]

DEVICE_DIR = "edgeres_device"  # the bundle folder holding the copied package (on sys.path)
ENTRY = "infer.py"  # the bundle's entry point, a copy of bundle_entry.py
# The image files a folder argument stands for, in `edgeres predict` and a bundle's infer.py.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm")
# Every bundle's modules, as paths inside the edgeres package; plus runtimes/<its runtime>.py.
SHARED_MODULES: tuple[str, ...] = (
    "__init__.py", "_privacy.py", "_model_needs.py", "_onnx_record.py", "_protowire.py",
    "_resources.py",
    "errors.py", "vocab.py", "_record_check.py", "meta.py", "preprocess.py", "_hw.py",
    "golden.py", "runtime/__init__.py", "runtime/backends.py",
    "runtimes/__init__.py", "runtimes/_protocol.py", "device/__init__.py", "device/infer.py",
)
_PACKAGE = Path(__file__).resolve().parent.parent  # the installed edgeres package


def bundle_files(runtime: str) -> list[tuple[Path, str]]:
    """The files a bundle for ``runtime`` ("ort", "openvino", ...) carries.

    Returns:
        ``(source file, path inside the bundle)`` pairs: the entry point as ``infer.py``, then
        each module under ``edgeres_device/edgeres/``.
    """
    modules = [*SHARED_MODULES, f"runtimes/{runtime}.py"]
    return [(_PACKAGE / "device" / "bundle_entry.py", ENTRY)] + [
        (_PACKAGE / name, f"{DEVICE_DIR}/edgeres/{name}") for name in modules]
