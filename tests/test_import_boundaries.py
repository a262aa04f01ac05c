"""The device-side modules stay light: fresh interpreters prove torch/onnx/nncf never load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeres import names

ROOT = Path(__file__).resolve().parent.parent
HEAVY = {"torch", "onnx", "nncf"}
IMAGE = sorted((names.calibration_dir() / "cifar10-calib" / "cat").glob("*.jpg"))[0]


def _fresh(code: str) -> list[str]:
    """Run ``code`` in a new interpreter (source tree first on the path); return its JSON."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("module", "forbidden"), [
    ("edgeres", HEAVY | {"click", "openvino", "onnxruntime", "PIL"}),
    ("edgeres.runtime", HEAVY | {"click", "openvino", "onnxruntime", "PIL"}),  # on devices
    # The LiteRT and ExecuTorch modules: their runtimes and converters load when used.
    ("edgeres.runtimes.litert", HEAVY | {"click", "ai_edge_litert", "litert_torch",
                                         "ai_edge_quantizer", "PIL"}),
    ("edgeres.runtimes._litert_int8", HEAVY | {"click", "ai_edge_litert", "ai_edge_quantizer"}),
    ("edgeres.runtimes.executorch", HEAVY | {"click", "executorch", "torchao", "PIL"}),
    ("edgeres.cli", HEAVY | {"openvino"}),  # `edgeres predict` in the light install
    ("edgeres.package", HEAVY | {"click", "openvino"}),
    ("edgeres.golden", HEAVY | {"click", "openvino", "onnxruntime", "PIL", "edgeres.meta"}),
    ("edgeres.verify", HEAVY | {"click", "openvino", "onnxruntime", "PIL"}),
    ("edgeres.intervals", HEAVY | {"click", "openvino", "onnxruntime", "PIL", "edgeres.bench"}),
    ("edgeres._timing", HEAVY | {"click", "openvino", "onnxruntime", "numpy", "edgeres.bench"}),
    ("edgeres._hw", HEAVY | {"click", "openvino", "onnxruntime", "numpy", "edgeres.meta"}),
    ("edgeres.modelfile", HEAVY | {"click", "openvino", "onnxruntime", "PIL", "edgeres.bench"}),
    ("edgeres._record_check", HEAVY | {"click", "openvino", "onnxruntime", "numpy", "PIL"}),
    ("edgeres._onnx_record", HEAVY | {"click", "openvino", "onnxruntime", "numpy", "PIL"}),
    ("edgeres._protowire", HEAVY | {"click", "openvino", "onnxruntime", "numpy", "edgeres.errors"}),
    ("edgeres.zoo", HEAVY | {"click", "openvino", "onnxruntime", "numpy", "PIL"}),
    ("edgeres.runtimes", HEAVY | {"click", "openvino", "onnxruntime", "numpy", "PIL"}),
    ("edgeres.runtimes.ort", HEAVY | {"click", "openvino", "onnxruntime", "PIL"}),
    ("edgeres.runtimes.openvino", HEAVY | {"click", "openvino", "onnxruntime", "PIL"}),
    ("edgeres.device.infer", HEAVY | {"click", "openvino", "onnxruntime", "PIL"}),  # bundles
    ("edgeres._zoo_counts", HEAVY | {"click", "openvino", "onnxruntime", "numpy", "PIL"}),
    ("edgeres.classmap", HEAVY | {"click", "openvino", "onnxruntime", "numpy", "PIL"}),
])
def test_light_modules_do_not_import_heavy_deps(module: str, forbidden: set[str]) -> None:
    """Importing device-side modules loads no torch/onnx/nncf (nor the runtimes yet)."""
    loaded = f"sorted({forbidden!r} & set(sys.modules))"
    code = f"import json, sys, {module}\nprint(json.dumps({loaded}))"
    assert _fresh(code) == []


def test_load_and_predict_keep_heavy_deps_out() -> None:
    """After load(shipped model).predict(image): no torch, onnx, nncf, click or openvino."""
    forbidden = HEAVY | {"click", "openvino"}
    code = (
        "import json, sys\n"
        "from edgeres import names, runtime\n"
        f"p = runtime.load(names.resolve_model_file('cifar10'))\n"
        f"r = p.predict({str(IMAGE)!r}, top_k=3)\n"
        "assert len(r[0].labels) == 3\n"
        f"print(json.dumps(sorted({forbidden!r} & set(sys.modules))))"
    )
    assert _fresh(code) == []


def test_predict_command_keeps_heavy_deps_out() -> None:
    """`edgeres predict cifar10 IMAGE` runs without importing torch, onnx or nncf."""
    code = (
        "import json, sys, contextlib, io\n"
        "from edgeres.cli import cli\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        f"    cli(['predict', 'cifar10', {str(IMAGE)!r}, '--json'], standalone_mode=False)\n"
        "assert json.loads(buf.getvalue())['schema_version'] == 1\n"
        f"print(json.dumps(sorted({HEAVY!r} & set(sys.modules))))"
    )
    assert _fresh(code) == []


def test_quantize_loads_no_bench_module() -> None:
    """`import edgeres.quantize` loads no edgeres.bench module: quantize never imports bench."""
    code = ("import json, sys, edgeres.quantize, edgeres.quantize.sensitivity\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('edgeres.bench'))))")
    assert _fresh(code) == []


def test_hw_is_stdlib_only_so_bundles_can_carry_it() -> None:
    """edgeres/_hw.py imports no edgeres module and nothing outside the stdlib (it is pasted)."""
    import ast

    from edgeres import _hw

    tree = ast.parse(Path(_hw.__file__).read_text())
    roots = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    roots |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom)}
    assert roots <= set(sys.stdlib_module_names) | {"__future__"}, roots



def test_zoo_defaults_are_read_without_torch() -> None:
    """Every zoo model's default record is built in a fresh interpreter without torch or the
    builders' modules (edgeres.zoo's table, not the registry)."""
    code = (
        "import json, sys\n"
        "from edgeres.zoo import PRETRAINED_CFGS, zoo_meta\n"
        "records = [zoo_meta(n) for n in PRETRAINED_CFGS]\n"
        "assert records[0].name == 'resnet18' and records[0].preprocess.resize == 256\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m in {HEAVY!r} "
        "or m.startswith('edgeres.models'))))"
    )
    assert _fresh(code) == []
