"""The installed package and a device bundle, each in a fresh venv with only what it declares.

Builds a wheel of this checkout, installs it without extras into a new virtual environment (no
system site-packages, so torch and onnx are provably absent) and runs ``edgeres predict`` there;
then installs ONLY a bundle's ``requirements.txt`` — pinned to the minimum versions it states
(derived from its model: ``edgeres._model_needs``) — into another venv (one per set of pins,
shared by the bundles that state the same) and runs ``infer.py`` and ``infer.py --verify``:
every bundle kind (fp32 ONNX, int8 ONNX, OpenVINO IR) at its declared minimum. pip fetches
from the package index (or its cache); if the index cannot be reached the tests skip and say
so. A few minutes with a warm pip cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgeres
from edgeres import names, package, runtime
from edgeres.meta import METADATA_KEY

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# The wheel is built from ROOT; the bundles made here must come from the same code. Run it from
# the checkout's root (python -m pytest puts it first on sys.path), without PYTHONPATH: that
# would leak into the fresh venvs.
_SAME_CODE = Path(edgeres.__file__).resolve().is_relative_to(ROOT)
IMAGES = sorted((names.calibration_dir() / "cifar10-calib").rglob("*.jpg"))[::250][:2]
# pip output that means "the index is unreachable", not "the request is wrong".
_OFFLINE = ("(from versions: none)", "NewConnectionError", "Temporary failure in name resolution",
            "Network is unreachable", "ConnectTimeout", "Max retries exceeded", "ProxyError")


def _run(args: list[str], *, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=timeout)


def _pip(what: str, python: Path | None, *args: str, cwd: Path) -> None:
    """Run the test interpreter's pip (for ``python``'s environment); skip when offline."""
    target = ["--python", str(python)] if python is not None else []
    out = _run([sys.executable, "-m", "pip", *target, *args], cwd=cwd)
    if out.returncode == 0:
        return
    text = out.stdout + out.stderr
    offline = [line.strip() for line in text.splitlines() if any(m in line for m in _OFFLINE)]
    if offline:
        pytest.skip(f"{what} needs the package index, which is unreachable here: {offline[0]}")
    pytest.fail(f"{what} failed (pip exit {out.returncode}):\n{text[-3000:]}")


def _venv(path: Path) -> Path:
    """A new venv without pip (the outer pip installs into it with --python)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   capture_output=True, timeout=120)
    return path / "bin" / "python"


@pytest.fixture(scope="session")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with this checkout's wheel installed, no extras; returns its bin/ folder."""
    assert _SAME_CODE, (f"edgeres is imported from {edgeres.__file__}, not from {ROOT}: run "
                        "python -m pytest from the checkout's root")
    if _run([sys.executable, "-m", "pip", "--version"], cwd=ROOT).returncode != 0:
        pytest.skip("pip is not available to the test interpreter; cannot build or install")
    work = tmp_path_factory.mktemp("install")
    _pip("building the edgeres wheel", None, "wheel", "--no-deps", str(ROOT), "-w",
         str(work / "dist"), cwd=work)
    wheel = next((work / "dist").glob("edgeres-*.whl"))
    python = _venv(work / "venv")
    _pip("installing the edgeres wheel", python, "install", str(wheel), cwd=work)
    return python.parent


def _site_packages(python: Path, cwd: Path) -> str:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return _run([str(python), "-c", code], cwd=cwd).stdout.strip()


def _predict_json(bin_dir: Path, cwd: Path, *args: str) -> dict:
    out = _run([str(bin_dir / "edgeres"), "predict", *args, "--json"], cwd=cwd)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _same_predictions(got: dict, want: dict, tol: float) -> None:
    """Same top-k labels and indices, probabilities within ``tol``."""
    assert len(got["predictions"]) == len(want["predictions"])
    for g, w in zip(got["predictions"], want["predictions"], strict=True):
        assert g["labels"] == w["labels"] and g["indices"] == w["indices"]
        np.testing.assert_allclose(g["probabilities"], w["probabilities"], atol=tol, rtol=0)


def test_base_install_has_no_torch_onnx_or_nncf(base_venv: Path, tmp_path: Path) -> None:
    """The base install resolves without torch, onnx and nncf, and imports edgeres from it."""
    python = base_venv / "python"
    for module in ("torch", "onnx", "nncf"):
        out = _run([str(python), "-c", f"import {module}"], cwd=tmp_path)
        assert out.returncode != 0 and "ModuleNotFoundError" in out.stderr, module
    where = _run([str(python), "-c", "import edgeres; print(edgeres.__file__)"], cwd=tmp_path)
    assert where.stdout.strip().startswith(_site_packages(python, tmp_path))


def test_installed_predict_matches_the_library(base_venv: Path, tmp_path: Path) -> None:
    """`edgeres predict cifar10 IMAGE` in the base install equals Predictor.predict here."""
    doc = _predict_json(base_venv, tmp_path, "cifar10", *map(str, IMAGES), "--top-k", "3")
    expected = runtime.load(names.resolve_model_file("cifar10")).predict(IMAGES, top_k=3)
    assert doc["schema_version"] == 1 and doc["runtime"] == "ort-cpu"
    assert doc["model_file"].startswith(_site_packages(base_venv / "python", tmp_path))
    _same_predictions(doc, {"predictions": [p.to_dict() for p in expected]}, 1e-5)


def test_registered_names_resolve_inside_site_packages(base_venv: Path, tmp_path: Path) -> None:
    """cifar10, cifar10-val (data) and cifar10 (model file) are shipped in the wheel."""
    code = (
        "import json\nfrom edgeres import names\n"
        "paths = [names.resolve_data('cifar10'), names.resolve_data('cifar10-val'),"
        " names.resolve_model_file('cifar10')]\n"
        "print(json.dumps([[str(p), p.exists(), len(list(p.rglob('*.jpg'))) if p.is_dir() else 0]"
        " for p in paths]))"
    )
    out = _run([str(base_venv / "python"), "-c", code], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    site = _site_packages(base_venv / "python", tmp_path)
    (calib, calib_ok, n_calib), (val, val_ok, n_val), (model, model_ok, _) = json.loads(out.stdout)
    assert calib_ok and val_ok and model_ok
    assert all(p.startswith(site) for p in (calib, val, model))
    assert (n_calib, n_val) == (500, 1000)


def _minimums(bundle: Path) -> dict[str, str]:
    """The ``name>=version`` lines of a bundle's requirements.txt."""
    lines = (bundle / "requirements.txt").read_text().splitlines()
    pairs = [line.split(">=") for line in lines if ">=" in line and not line.startswith("#")]
    return {name.strip(): version.strip() for name, version in pairs}


@pytest.fixture(scope="session")
def minimum_venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple, Path]:
    """Venvs made by ``_bundle_venv``, one per set of pins (the bundles that state the same
    minimums share one: pip runs once per runtime)."""
    return {}


def _bundle_venv(cache: dict[tuple, Path], work: Path, bundle: Path) -> Path:
    """A venv with only the bundle's requirements, pinned to the minimums it states."""
    minimums = _minimums(bundle)
    assert set(minimums) >= {"numpy", "Pillow"} and len(minimums) == 3, minimums
    key = tuple(sorted(minimums.items()))
    if key in cache:
        return cache[key]
    pins = work / "minimums.txt"
    pins.write_text("".join(f"{name}=={version}\n" for name, version in key))
    python = _venv(work / "venv")
    _pip("installing a bundle's requirements", python, "install", "-r",
         str(bundle / "requirements.txt"), "-c", str(pins), cwd=work)
    code = ("import importlib.metadata as m, importlib.util as u, json, sys; print(json.dumps("
            "[[d, m.version(d)] for d in sys.argv[1:]] + [u.find_spec('edgeres') is None]))")
    out = _run([str(python), "-c", code, *minimums], cwd=work)
    *versions, no_edgeres = json.loads(out.stdout)
    assert no_edgeres and dict(versions) == minimums
    cache[key] = python
    return python


def _verify(python: Path, bundle: Path) -> dict:
    """``infer.py --verify --json`` with ``python``: the golden check passes there."""
    out = _run([str(python), "-I", str(bundle / "infer.py"), "--verify", "--json"], cwd=bundle)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    verdict = json.loads(out.stdout)
    assert verdict["passed"] and verdict["failures"] == []
    return verdict


def _infer(python: Path, bundle: Path) -> dict:
    out = _run([str(python), "-I", str(bundle / "infer.py"), *map(str, IMAGES), "--top-k", "3",
                "--json"], cwd=bundle)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize(("model", "tol"), [("cifar10", 1e-5), ("cifar10-int8", 2e-2)])
def test_bundle_runs_with_only_its_requirements(base_venv: Path, minimum_venvs: dict,
                                                tmp_path_factory: pytest.TempPathFactory,
                                                model: str, tol: float) -> None:
    """fp32 and int8 ONNX bundles made by the installed CLI run at the minimum versions their
    requirements.txt states (their golden checks pass there) and at the newest; the int8 one
    imports only the opsets its nodes use (ORT 1.17.x refused ai.onnx.ml 5)."""
    work = tmp_path_factory.mktemp("bundle")
    made = _run([str(base_venv / "edgeres"), "package", model, "-o", str(work / "b")],
                cwd=work)
    assert made.returncode == 0, made.stderr
    bundle = work / "b"
    want = _predict_json(base_venv, work, model, *map(str, IMAGES), "--top-k", "3")
    oldest_python = _bundle_venv(minimum_venvs, work, bundle)
    oldest = _infer(oldest_python, bundle)
    _same_predictions(oldest, want, tol)
    assert _verify(oldest_python, bundle)["precision"] == ("int8" if "int8" in model else "fp32")
    _same_predictions(_infer(base_venv / "python", bundle), want, tol)  # newest releases
    assert package.platform_label() in package.TESTED_PLATFORMS, (
        f"bundles install and run on {package.platform_label()}; add it to "
        "edgeres.package.TESTED_PLATFORMS so requirements.txt says so")


def test_ir_bundle_runs_with_only_its_requirements(
        base_venv: Path, minimum_venvs: dict, tmp_path_factory: pytest.TempPathFactory) -> None:
    """An OpenVINO IR bundle runs at the openvino minimum it states, passes its golden check
    there and matches `edgeres predict`."""
    ov = pytest.importorskip("openvino", reason="making an IR needs openvino in the test env")
    work = tmp_path_factory.mktemp("ir")
    model_path = names.resolve_model_file("cifar10")
    model = ov.Core().read_model(str(model_path))
    model.set_rt_info(runtime.load(model_path).meta.to_json(), [METADATA_KEY])
    ov.save_model(model, str(work / "m.xml"), compress_to_fp16=False)
    bundle = package.package(work / "m.xml", work / "b").path
    python = _bundle_venv(minimum_venvs, work, bundle)
    got = _infer(python, bundle)
    _verify(python, bundle)
    assert got["runtime"] == "openvino-cpu" and got["executed_precision"] == "fp32"
    want = _predict_json(base_venv, work, "cifar10", *map(str, IMAGES), "--top-k", "3")
    _same_predictions(got, want, 1e-5)
