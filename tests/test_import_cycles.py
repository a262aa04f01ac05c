"""Dependencies point one way: no import cycle among edgeres' modules, counting the imports
inside functions and under ``TYPE_CHECKING`` (read from the source, not from ``sys.modules``),
and every module imports on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "edgeres"


def _modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom,
             modules: dict[str, Path]) -> set[str]:
    """The package's modules one import statement loads (``from a import b`` may name a module
    ``a.b`` or a name in ``a``)."""
    if isinstance(node, ast.ImportFrom):
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        if node.level > 1:
            base = base[: len(base) - node.level + 1]
        head = (".".join(base + ([node.module] if node.module else [])) if node.level
                else node.module or "")
        names = [head] + [f"{head}.{a.name}" for a in node.names]
    else:
        names = [a.name for a in node.names]
    out = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its source. A module importing its
    own parent package is left out: that is how a package's submodules load."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                graph[module] |= {t for t in _targets(module, path, node, modules)
                                  if t != module and not module.startswith(t + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    tarjan = _Tarjan(graph)
    for v in sorted(graph):
        if v not in tarjan.index:
            tarjan.visit(v)
    return tarjan.found


class _Tarjan:
    """Tarjan's strongly connected components, one depth-first visit at a time."""

    def __init__(self, graph: dict[str, set[str]]) -> None:
        self.graph = graph
        self.index: dict[str, int] = {}
        self.low: dict[str, int] = {}
        self.stack: list[str] = []
        self.on_stack: set[str] = set()
        self.found: list[list[str]] = []

    def visit(self, v: str) -> None:
        self.index[v] = self.low[v] = len(self.index)
        self.stack.append(v)
        self.on_stack.add(v)
        for w in sorted(self.graph[v]):
            if w not in self.index:
                self.visit(w)
                self.low[v] = min(self.low[v], self.low[w])
            elif w in self.on_stack:
                self.low[v] = min(self.low[v], self.index[w])
        if self.low[v] == self.index[v]:
            self._pop_group(v)

    def _pop_group(self, v: str) -> None:
        group = []
        while True:
            w = self.stack.pop()
            self.on_stack.discard(w)
            group.append(w)
            if w == v:
                break
        if len(group) > 1:
            self.found.append(sorted(group))


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    """The checker itself: a loop closed by an import inside a function is a cycle; a chain and
    a submodule importing its parent package are not."""
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}, "p": set()}
    assert cycles(graph) == [["p.a", "p.b", "p.c"]]
    graph["p.c"] = set()
    assert cycles(graph) == []
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from edgeres.meta import ModelMeta\n")
    node = next(n for n in ast.walk(ast.parse(source.read_text()))
                if isinstance(n, ast.ImportFrom))
    assert _targets("edgeres.zoo", source, node, _modules()) == {"edgeres.meta"}


def test_edgeres_has_no_import_cycle() -> None:
    """No module of edgeres reaches itself through imports, function-level ones included."""
    graph = import_graph()
    assert len(graph) > 50 and "edgeres.meta" in graph["edgeres.zoo"]  # the graph is read
    found = cycles(graph)
    detail = ["; ".join(f"{m} -> {', '.join(sorted(graph[m] & set(group)))}" for m in group)
              for group in found]
    assert not found, "import cycles: " + " | ".join(detail)


@pytest.mark.slow
def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    """Each module imports first of all edgeres' modules (no order it silently relies on); a
    missing optional package (ray, nncf, matplotlib, ...) is the only excuse. ``__main__``
    runs the CLI and is left out."""
    code = (
        "import importlib, json, sys\n"
        f"names = {sorted(m for m in _modules() if not m.endswith('__main__'))!r}\n"
        "bad = []\n"
        "for name in names:\n"
        "    for m in [m for m in sys.modules if m == 'edgeres' or m.startswith('edgeres.')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError as e:\n"
        "        if (e.name or '').startswith('edgeres'):\n"
        "            bad.append(f'{name}: {e}')\n"
        "    except Exception as e:\n"
        "        bad.append(f'{name}: {type(e).__name__}: {e}')\n"
        "print(json.dumps(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
