"""Tests for edgeres.device: what a bundle carries is a closed set of edgeres' own files, with
one runtime module, and the bundle's infer.py command line behaves as edgeres does."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from edgeres import device, runtimes

PACKAGE = Path(device.__file__).resolve().parent.parent


def _top_level_imports(path: Path) -> set[str]:
    """The edgeres modules ``path`` imports when it is imported (not inside functions nor
    under ``if TYPE_CHECKING``), as dotted names."""
    found: set[str] = set()
    for node in ast.parse(path.read_text("utf-8")).body:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in found if name == "edgeres" or name.startswith("edgeres.")}


def _module_file(name: str) -> Path | None:
    """``edgeres.x.y`` as a file of the package (a module or a package's __init__), if any."""
    parts = name.split(".")[1:]
    if not parts:
        return PACKAGE / "__init__.py"
    rel = Path(*parts)
    for candidate in (PACKAGE / rel.with_suffix(".py"), PACKAGE / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@pytest.mark.parametrize("runtime", runtimes.RUNTIME_NAMES)
def test_bundle_modules_are_closed_under_their_imports(runtime: str) -> None:
    """Every edgeres module a carried module imports at load time is carried too."""
    files = device.bundle_files(runtime)
    carried = {src.resolve() for src, _ in files}
    for src, rel in files:
        assert src.is_file(), rel
        for name in _top_level_imports(src):
            module = _module_file(name)
            if module is not None:  # None: a name imported from a module, not a module
                assert module.resolve() in carried, f"{rel} imports {name}, not carried"


@pytest.mark.parametrize("runtime", runtimes.RUNTIME_NAMES)
def test_a_bundle_carries_only_its_own_runtime_module(runtime: str) -> None:
    """runtimes/<its runtime>.py travels, no other runtime module does."""
    rels = [rel for _, rel in device.bundle_files(runtime)]
    carried = [r for r in rels if "/runtimes/" in r and not Path(r).name.startswith("_")
               and Path(r).name != "__init__.py"]
    assert carried == [f"{device.DEVICE_DIR}/edgeres/runtimes/{runtime}.py"]
    assert rels[0] == device.ENTRY and len(set(rels)) == len(rels)
