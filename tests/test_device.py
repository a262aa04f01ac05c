"""Tests for edgeres.device: what a bundle carries is a closed set of edgeres' own files, with
one runtime module, and the bundle's infer.py command line behaves as edgeres does."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import one_error, run_infer

from edgeres import device, names, runtimes
from edgeres.cli import cli

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


# --- the bundle's infer.py: bad inputs are one line, telemetry off, quiet in a pipe ----------

@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeres import package

    return package.package("cifar10", tmp_path_factory.mktemp("device") / "bundle").path


def _edit_record(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        record = json.loads((folder / "metadata.json").read_text("utf-8"))
        change(record)
        (folder / "metadata.json").write_text(json.dumps(record), "utf-8")
    return edit


def _golden_bytes(make: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / "golden.npz"
        path.write_bytes(make(path.read_bytes()))
    return edit


_BREAKAGES: dict[str, tuple[Callable[[Path], object], str, bool]] = {
    # name: (breakage, words in the error, whether classifying images fails too)
    "golden truncated": (_golden_bytes(lambda b: b[: len(b) // 2]), "golden file", False),
    "golden 0 bytes": (_golden_bytes(lambda b: b""), "golden file", False),
    "golden not a zip": (_golden_bytes(lambda b: b"not an npz"), "golden file", False),
    "record not UTF-8": (lambda f: (f / "metadata.json").write_bytes(b"\xff\xfe{}"),
                         "not UTF-8", True),
    "record truncated": (lambda f: (f / "metadata.json").write_bytes(
        (f / "metadata.json").read_bytes()[:40]), "metadata", True),
    "escape code in a label": (_edit_record(lambda r: r["labels"].__setitem__(
        0, "\x1b[31mred")), "labels", True),
    "std 0": (_edit_record(lambda r: r["preprocess"].__setitem__("std", [0.0, 0.0, 0.0])),
              "std", True),
    "missing key": (_edit_record(lambda r: r.pop("preprocess")), "preprocess", True),
    "runtime older than the model needs": (lambda f: (f / "requirements.txt").write_text(
        (f / "requirements.txt").read_text().replace("onnxruntime>=", "onnxruntime>=99.0\n#")),
        "needs onnxruntime >= 99.0 but", True),
}


@pytest.mark.parametrize("case", sorted(_BREAKAGES))
def test_infer_py_refuses_a_broken_bundle_in_one_line(bundle: Path, tmp_path: Path,
                                                      case: str) -> None:
    """infer.py (--verify and classifying) checks metadata.json with edgeres' record rules and
    reads the golden file safely: exit 1, one Error line naming the fault, no traceback."""
    broken = tmp_path / "bundle"
    shutil.copytree(bundle, broken)
    breakage, words, classify_fails = _BREAKAGES[case]
    breakage(broken)
    image = str(sorted((names.calibration_dir() / "cifar10-calib").rglob("*.jpg"))[0])
    runs = [("--verify",), ("--verify", "--json")] + ([(image,)] if classify_fails else [])
    for args in runs:
        out = run_infer(broken, *args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 1 and out.stdout == "", (args, out.stderr)
        assert len(lines) == 1 and lines[0].startswith("Error:"), (args, out.stderr)
        assert words in lines[0] and "Traceback" not in out.stderr, (args, lines[0])


def test_edgeres_verify_refuses_a_truncated_zip_in_one_line(bundle: Path, tmp_path: Path) -> None:
    """A bundle .zip cut short: `edgeres verify` says so in one line, exit 1."""
    full = tmp_path / "b.zip"
    shutil.make_archive(str(full.with_suffix("")), "zip", bundle.parent, bundle.name)
    cut = tmp_path / "cut.zip"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    result = CliRunner().invoke(cli, ["verify", str(cut)])
    line = one_error(result, "cut.zip", "not a readable bundle .zip")
    assert "re-package" in line


@pytest.mark.parametrize("args", [("--verify",), ("IMAGE",)])
def test_infer_py_writes_nothing_outside_the_bundle(bundle: Path, tmp_path: Path,
                                                    args: tuple[str, ...]) -> None:
    """infer.py turns ONNX Runtime's telemetry off as edgeres does: nothing under HOME."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ORT_") and k != "EDGERES_TELEMETRY"}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    image = str(sorted((names.calibration_dir() / "cifar10-calib").rglob("*.jpg"))[0])
    out = run_infer(bundle, *(image if a == "IMAGE" else a for a in args), env=env)
    assert out.returncode == 0, out.stderr
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == []


@pytest.mark.parametrize("args", [("--verify",), ("--verify", "--json"), ("IMAGE",),
                                  ("IMAGE", "--json")])
def test_infer_py_is_quiet_when_its_reader_goes_away(bundle: Path, args: tuple[str, ...]) -> None:
    """`infer.py ... | head -1`: the reader closes the pipe; no BrokenPipe traceback."""
    image = str(sorted((names.calibration_dir() / "cifar10-calib").rglob("*.jpg"))[0])
    cmd = [sys.executable, "-B", str(bundle / "infer.py"),
           *(image if a == "IMAGE" else a for a in args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=bundle)
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before infer.py prints anything
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
    assert err == b"" and proc.returncode == 1


def test_infer_py_checks_the_runtime_version_before_loading(
        bundle: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """An installed onnxruntime older than requirements.txt states (faked: 1.16.3 against the
    bundle's 1.17.0) is one Error line naming both versions, before the model is loaded."""
    from edgeres.device import infer

    need = infer.needed_version(bundle, "onnxruntime")
    assert need and (bundle / "requirements.txt").read_text().count(f"onnxruntime>={need}") == 1
    loaded = []
    monkeypatch.setattr(infer, "_installed_version", lambda dist: "1.16.3")
    monkeypatch.setattr(infer, "load", lambda *a, **k: loaded.append(a))
    assert infer.main(["--verify"], folder=bundle) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"Error: this bundle's model needs onnxruntime >= {need} but 1.16.3 is "
                   "installed; run pip install -r requirements.txt"] and loaded == []
    for enough in (need, "99.0"):  # as new or newer: let through (no exception)
        monkeypatch.setattr(infer, "_installed_version", lambda dist, v=enough: v)
        infer.check_runtime_version(bundle, bundle / "model.onnx")


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="needs an x86-64 host")
def test_infer_py_warns_before_running_an_x86_vnni_model_without_vnni(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Classifying with an int8 bundle quantized for x86-vnni on a CPU without VNNI (flags
    faked: AVX2 only) logs the risk before the model is loaded; with VNNI it says nothing."""
    from edgeres import package
    from edgeres.device import infer

    bundle = package.package("cifar10-int8", tmp_path / "b").path
    record = json.loads((bundle / "metadata.json").read_text("utf-8"))
    record["quantization"]["target"] = "x86-vnni"
    (bundle / "metadata.json").write_text(json.dumps(record), "utf-8")
    image = str(sorted((names.calibration_dir() / "cifar10-calib").rglob("*.jpg"))[0])
    real_load, order = infer.load, []

    def load(*args: Any, **kwargs: Any) -> Any:
        order.append([r.getMessage() for r in caplog.records])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(infer, "load", load)
    for flags, warned in (({"avx2", "fma"}, True), ({"avx2", "avx512_vnni"}, False)):
        caplog.clear()
        order.clear()
        monkeypatch.setattr(infer.golden, "cpu_flags", lambda *a, f=flags: set(f))
        with caplog.at_level("WARNING"):
            assert infer.main([image, "--json"], folder=bundle) == 0
        assert any("no VNNI" in m for m in order[0]) == warned, order
