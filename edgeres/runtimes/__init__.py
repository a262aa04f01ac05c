"""The runtime registry: one module per runtime, each with a ``RUNTIME`` (``_protocol.Runtime``).

Minimal on this branch (LiteRT and ExecuTorch only); the design step's registry replaces it.
Stdlib only: a runtime module is imported when it is asked for.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from edgeres.errors import BackendNotAvailable, ModelFileError

if TYPE_CHECKING:
    from edgeres.runtimes._protocol import Runtime

_MODULES = ("litert", "executorch")
RUNTIME_NAMES: tuple[str, ...] = _MODULES


def get(name: str) -> Runtime:
    """The runtime called ``name`` ("litert", "executorch")."""
    if name not in _MODULES:
        msg = f"unknown runtime {name!r}; use one of {', '.join(_MODULES)}"
        raise BackendNotAvailable(msg)
    runtime: Runtime = importlib.import_module(f"edgeres.runtimes.{name}").RUNTIME
    return runtime


def for_file(path: Path) -> Runtime:
    """The runtime that reads model file ``path``, by its suffix."""
    suffix = Path(path).suffix.lower()
    for name in _MODULES:
        runtime = get(name)
        if suffix in runtime.suffixes:
            return runtime
    msg = f"{path} is not a model file a runtime here reads ({suffix or 'no suffix'})"
    raise ModelFileError(msg)
