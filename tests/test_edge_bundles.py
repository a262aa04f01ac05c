"""Device bundles of LiteRT (.tflite) and ExecuTorch (.pte) models: what ``package`` puts in
them, their golden checks (``edgeres verify`` and ``infer.py --verify``, fp32 and int8), a
tampered golden file or record failing, a runtime older than declared refused in one line, and
the LiteRT bundle at its declared minimum versions in a fresh venv.

Needs edgeres[litert] / edgeres[executorch] (``make test-edge`` builds .venv-edge with them);
without them these tests skip with that reason.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import run_infer

from edgeres import golden, package, runtime
from edgeres.cli import cli

HAVE = {"litert": importlib.util.find_spec("ai_edge_litert") is not None
        and importlib.util.find_spec("litert_torch") is not None,
        "executorch": importlib.util.find_spec("executorch") is not None}
REASON = "edgeres[{}] is not installed (make test-edge installs it)"
SUFFIX = {"litert": ".tflite", "executorch": ".pte"}
# What a device running each bundle must never need: LiteRT is numpy + ai-edge-litert only;
# ExecuTorch's Python runtime needs torch, but nothing of ONNX or the other runtimes.
BLOCKED = {"litert": ("torch", "onnx", "onnxruntime", "openvino", "litert_torch",
                      "ai_edge_quantizer", "executorch"),
           "executorch": ("onnx", "onnxruntime", "openvino", "ai_edge_litert", "litert_torch")}
KINDS = [(backend, precision) for backend in ("litert", "executorch")
         for precision in ("fp32", "int8")]
IMAGE = next(Path("calibration/cifar10-val/cat").iterdir())
pytestmark = pytest.mark.slow  # exports, quantizes and packages (make test-edge runs them all)


def _run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Model files made on demand: the shipped ResNet-20 exported per backend (CLI), and
    quantized on 64 train-split calibration images."""
    return {}


def _model(cache: dict[tuple[str, str], Path], work: Path, backend: str,
           precision: str) -> Path:
    if not HAVE[backend]:
        pytest.skip(REASON.format(backend))
    key = (backend, precision)
    if key in cache:
        return cache[key]
    if precision == "fp32":
        out = work / f"r20{SUFFIX[backend]}"
        result = _run("export", "cifar_resnet20", "--weights", "cifar10", "--format",
                      SUFFIX[backend][1:], "-o", str(out))
    else:
        out = work / f"r20-int8{SUFFIX[backend]}"
        result = _run("quantize", str(_model(cache, work, backend, "fp32")), "--backend",
                      backend, "--calib", "cifar10", "--samples", "64", "-o", str(out))
    assert result.exit_code == 0, result.output
    cache[key] = out
    return out


@pytest.fixture(scope="module")
def bundles(models: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Bundles made by ``edgeres package`` from ``models``, on demand, only read by tests."""
    return {}


def _bundle(cache: dict, models: dict, work: Path, backend: str, precision: str) -> Path:
    key = (backend, precision)
    if key not in cache:
        model = _model(models, work, backend, precision)
        out = work / f"bundle-{backend}-{precision}"
        result = _run("package", str(model), "-o", str(out))
        assert result.exit_code == 0, result.output
        assert ("and executorch (which needs torch);" in result.output) == (backend == "executorch")
        cache[key] = out
    return cache[key]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edge-bundles")


@pytest.mark.parametrize(("backend", "precision"), KINDS)
def test_bundle_carries_its_one_runtime_and_passes_its_golden_check(
        models: dict, bundles: dict, work: Path, backend: str, precision: str) -> None:
    """A .tflite / .pte bundle holds the model (and the .pte's sidecar record), metadata.json,
    golden.npz, requirements with the runtime's tested minimum (torch for ExecuTorch, said in
    the README too) and only its own runtime module; `edgeres verify` and infer.py --verify
    pass with the other runtimes (and for LiteRT torch) unimportable, and infer.py classifies
    an image as edgeres.runtime does."""
    bundle = _bundle(bundles, models, work, backend, precision)
    rt = f"model{SUFFIX[backend]}"
    files = {p.name for p in bundle.iterdir()}
    assert {rt, "metadata.json", "golden.npz", "requirements.txt", "infer.py"} <= files
    assert ("model.pte.json" in files) == (backend == "executorch")
    carried = {p.name for p in (bundle / "edgeres_device/edgeres/runtimes").iterdir()}
    assert carried == {"__init__.py", "_protocol.py", f"{backend}.py"}
    pins = [line for line in (bundle / "requirements.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    dist = {"litert": "ai-edge-litert", "executorch": "executorch"}[backend]
    extra = ["torch>=2.13.0"] if backend == "executorch" else []
    numpy = "2.0.0" if backend == "executorch" else package.TESTED_MINIMUMS["numpy"]
    assert pins == [f"numpy>={numpy}",
                    f"Pillow>={package.TESTED_MINIMUMS['Pillow']}",
                    f"{dist}>={package.TESTED_MINIMUMS[dist]}", *extra]
    assert ("needs torch" in (bundle / "README.md").read_text()) == (backend == "executorch")

    result = _run("verify", str(bundle), "--json")
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout[result.stdout.index("{"):])
    assert verdict["passed"] and verdict["precision"] == precision
    assert verdict["runtime"] == f"{backend}-cpu" and verdict["within_tolerance"] == 1.0
    out = run_infer(bundle, "--verify", "--json", blocked=BLOCKED[backend])
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["passed"]

    got = run_infer(bundle, str(IMAGE.absolute()), "--json", "--top-k", "3",
                    blocked=BLOCKED[backend])
    assert got.returncode == 0, got.stderr[-2000:]
    doc = json.loads(got.stdout)["predictions"][0]
    want = runtime.load(models[backend, precision]).predict(IMAGE, top_k=3)[0]
    assert doc["indices"] == list(want.indices)
    np.testing.assert_allclose(doc["probabilities"], want.probabilities, atol=1e-6, rtol=0)


def _wrong_preprocessing(bundle: Path) -> str:
    record = json.loads((bundle / "metadata.json").read_text())
    record["preprocess"]["mean"] = [0.5, 0.5, 0.5]
    record["preprocess"]["std"] = [0.25, 0.25, 0.25]
    (bundle / "metadata.json").write_text(json.dumps(record))
    return "metadata.json:"


def _golden(bundle: Path, change: Any) -> None:
    g = golden.load_golden(bundle / golden.GOLDEN_FILE)
    change(g)
    info = {k: v for k, v in g["info"].items() if k != "golden_version"}
    golden.save_golden(bundle / golden.GOLDEN_FILE, data=g["data"], kind=g["kind"],
                       logits=g["logits"], labels=g["labels"], info=info)


def _other_classes(bundle: Path) -> str:
    """The host's scores moved one class on: every top class changes."""
    _golden(bundle, lambda g: g.update(logits=np.roll(g["logits"], 1, axis=1)))
    return "logits:"


def _lower_agreement(bundle: Path) -> str:
    _golden(bundle, lambda g: g["info"]["tolerances"].update(min_agreement=0.14))
    return "golden file: it requires only 14.0%"


def _inflate_tolerance(bundle: Path) -> str:
    """A tolerance the size of the whole output range: any scores would pass."""
    def change(g: dict) -> None:
        g["info"]["tolerances"]["atol"] = float(np.ptp(g["logits"])) * 10
    _golden(bundle, change)
    return "golden file: its tolerance"


@pytest.mark.parametrize("backend", ["litert", "executorch"])
@pytest.mark.parametrize("tamper", [_wrong_preprocessing, _other_classes, _lower_agreement,
                                    _inflate_tolerance])
def test_tampered_int8_bundle_fails_its_check(models: dict, bundles: dict, work: Path,
                                              tmp_path: Path, backend: str, tamper: Any) -> None:
    """An int8 bundle (LiteRT's int8 tensors quantized inside the backend) with an edited
    record, golden scores of other classes, a 14% agreement floor or a tolerance as wide as
    the output range fails `edgeres verify` and infer.py --verify, naming what changed."""
    broken = tmp_path / "bundle"
    shutil.copytree(_bundle(bundles, models, work, backend, "int8"), broken)
    named = tamper(broken)
    result = _run("verify", str(broken), "--json")
    assert result.exit_code == 1, result.output
    verdict = json.loads(result.stdout[result.stdout.index("{"):])
    assert not verdict["passed"]
    assert any(f.startswith(named) for f in verdict["failures"]), verdict["failures"]
    out = run_infer(broken, "--verify", blocked=BLOCKED[backend])
    assert out.returncode == 1 and f"failed: {named}" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize(("backend", "dist"), [("litert", "ai-edge-litert"),
                                               ("executorch", "executorch"),
                                               ("executorch", "torch")])
def test_older_runtime_than_declared_is_one_line(models: dict, bundles: dict, work: Path,
                                                 tmp_path: Path, backend: str, dist: str) -> None:
    """A bundle stating a newer runtime (or, for ExecuTorch, torch) than the one installed
    refuses before loading: one Error line naming both versions, no traceback."""
    bundle = tmp_path / "bundle"
    shutil.copytree(_bundle(bundles, models, work, backend, "fp32"), bundle)
    req = bundle / "requirements.txt"
    have = importlib.metadata.version(dist)
    text = req.read_text()
    assert f"\n{dist}>=" in text
    req.write_text(text.replace(f"\n{dist}>=", f"\n{dist}>=99.0 # was "))
    out = run_infer(bundle, "--verify", blocked=BLOCKED[backend])
    assert out.returncode == 1 and "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: this bundle's model needs {dist} >= 99.0 but {have} is "
                      "installed; run pip install -r requirements.txt"], out.stderr


def test_litert_bundle_runs_at_its_declared_minimums(models: dict, bundles: dict, work: Path,
                                                     tmp_path: Path) -> None:
    """The int8 LiteRT bundle's requirements, pinned to the minimums it states (ai-edge-litert,
    numpy, Pillow), installed alone in a fresh venv: infer.py classifies as here and its golden
    check passes there (tests/test_install.py's venv and checks)."""
    from test_install import _bundle_venv, _infer, _minimums, _verify

    bundle = _bundle(bundles, models, work, "litert", "int8")
    assert _minimums(bundle)["ai-edge-litert"] == package.TESTED_MINIMUMS["ai-edge-litert"]
    python = _bundle_venv({}, tmp_path, bundle)
    assert _verify(python, bundle)["precision"] == "int8"
    here = run_infer(bundle, *map(str, _images()), "--json", "--top-k", "3",
                     blocked=BLOCKED["litert"])
    assert here.returncode == 0, here.stderr
    got, want = _infer(python, bundle), json.loads(here.stdout)
    for g, w in zip(got["predictions"], want["predictions"], strict=True):
        assert g["indices"] == w["indices"]
        np.testing.assert_allclose(g["probabilities"], w["probabilities"], atol=1e-6, rtol=0)


def _images() -> list[Path]:
    from test_install import IMAGES

    return IMAGES


def test_executorch_bundle_runs_at_its_declared_minimums(models: dict, bundles: dict,
                                                         work: Path, tmp_path: Path) -> None:
    """The int8 ExecuTorch bundle states numpy 2.0.0 (executorch 1.5.1 requires it), Pillow
    10.0.0, executorch 1.5.1 and torch 2.13.0; a fresh venv with numpy and Pillow at those
    pins, borrowing executorch and torch (the pinned releases, so their minimums) from this
    venv through a .pth (installing torch afresh is ~1 GB), passes infer.py --verify."""
    from test_install import _minimums, _pip, _site_packages, _venv, _verify

    bundle = _bundle(bundles, models, work, "executorch", "int8")
    minimums = _minimums(bundle)
    assert minimums == {"numpy": "2.0.0", "Pillow": package.TESTED_MINIMUMS["Pillow"],
                        "executorch": "1.5.1", "torch": "2.13.0"}
    python = _venv(tmp_path / "venv")
    _pip("installing numpy and Pillow minimums", python, "install",
         *(f"{d}=={minimums[d]}" for d in ("numpy", "Pillow")), cwd=tmp_path)
    site = Path(_site_packages(python, tmp_path))
    (site / "zz-edgeres-edge.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = ("import importlib.metadata as m, json, sys; "
            "print(json.dumps({d: m.version(d).split('+')[0] for d in sys.argv[1:]}))")
    out = subprocess.run([str(python), "-I", "-c", code, *minimums], capture_output=True,
                         text=True, cwd=tmp_path, timeout=120, check=False)
    assert out.returncode == 0 and json.loads(out.stdout) == minimums, out.stdout + out.stderr
    assert _verify(python, bundle)["precision"] == "int8"
