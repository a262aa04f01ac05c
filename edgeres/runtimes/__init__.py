"""The runtime registry: every inference runtime edgeres drives, one module each.

A runtime is one module ``edgeres/runtimes/<backend>.py`` whose ``RUNTIME`` satisfies
``edgeres.runtimes._protocol.Runtime``; adding one is that module plus its name in ``MODULES``.
``runtime.load``, bench, ``quantize --backend``, ``package`` and ``verify`` look runtimes up
here (``get``, ``for_file``) instead of branching on names. Importing this package imports no
runtime module and no runtime library: ``get`` imports the module when it is first asked for.
A listed module whose library is not installed still imports (its library is imported inside
its functions) and says so through ``unavailable()``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

from edgeres.errors import BackendNotAvailable, ModelFileError

if TYPE_CHECKING:
    from edgeres.runtimes._protocol import Runtime

__all__ = ["MODULES", "RUNTIME_NAMES", "device_requirements", "for_file", "get", "present",
           "readers", "unavailable"]

# The runtime modules, in the order a file suffix several read is claimed (.onnx: ort first).
MODULES: tuple[str, ...] = ("ort", "openvino", "litert", "executorch")
RUNTIME_NAMES: tuple[str, ...] = MODULES


def get(name: str) -> Runtime:
    """The runtime called ``name`` ("ort", "openvino", ...).

    Raises:
        BackendNotAvailable: if no runtime of that name is registered.
    """
    if name not in MODULES:
        msg = f"unknown backend {name!r}; use one of {', '.join(MODULES)}"
        raise BackendNotAvailable(msg)
    if name not in present():
        msg = (f"the {name} runtime is not part of this installation (no "
               f"edgeres/runtimes/{name}.py; a bundle carries its own runtime only)")
        raise BackendNotAvailable(msg)
    module = importlib.import_module(f"{__name__}.{name}")
    return cast("Runtime", module.RUNTIME)


def present() -> tuple[str, ...]:
    """The registered runtimes whose module is here: all of them in edgeres, the bundle's own
    one in a device bundle (which carries one runtime module, see ``edgeres.device``)."""
    return tuple(name for name in MODULES
                 if f"{__name__}.{name}" in sys.modules
                 or importlib.util.find_spec(f"{__name__}.{name}") is not None)


def readers(path: Path) -> list[Runtime]:
    """The runtimes here that read ``path``'s kind of file, the one whose format it is first."""
    suffix = Path(path).suffix.lower()
    found = [get(name) for name in present()]
    own = [rt for rt in found if rt.suffixes[0] == suffix]
    return own + [rt for rt in found if suffix in rt.suffixes[1:]]


def for_file(path: Path) -> Runtime:
    """The runtime whose format ``path`` is, by its suffix (``.onnx``: ort, ``.xml``: openvino).

    Raises:
        ModelFileError: if no registered runtime reads files with that suffix.
    """
    found = readers(path)
    if not found:
        msg = f"{path} is not a model file; pass {suffix_list()}"
        raise ModelFileError(msg)
    return found[0]


def suffix_list() -> str:
    """The model files edgeres reads, in words: "an .onnx file or an OpenVINO IR .xml"."""
    words = {".onnx": "an .onnx file", ".xml": "an OpenVINO IR .xml"}
    seen = dict.fromkeys(s for name in present() for s in get(name).suffixes)
    parts = [words.get(s, f"a {s} file") for s in seen]
    return ", ".join(parts[:-1]) + (" or " if len(parts) > 1 else "") + parts[-1]


def device_requirements(rt: Runtime) -> tuple[tuple[str, str], ...]:
    """The pip distributions a device needs to run ``rt``'s models besides numpy and Pillow,
    each with the oldest release a test runs a bundle with: ``rt.dist`` at ``rt.min_version``,
    then the runtime's optional ``device_needs`` (ExecuTorch's Python runtime needs torch)."""
    return ((rt.dist, rt.min_version), *getattr(rt, "device_needs", ()))


def unavailable(name: str, device: str = "cpu") -> str | None:
    """Why runtime ``name`` cannot run on ``device`` here, or None when it can.

    The runtime's ``unavailable()`` (library missing: the install line), then ``device`` among
    its ``devices``, then its optional ``device_unavailable(device)`` (a GPU provider absent).
    """
    rt = get(name)
    reason = rt.unavailable()
    if reason is not None:
        return reason
    if device not in rt.devices:
        return f"{name} has no device {device!r} (has {', '.join(rt.devices)})"
    probe = getattr(rt, "device_unavailable", None)  # optional: a runtime with several devices
    return probe(device) if probe is not None else None
