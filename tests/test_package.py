"""Tests for edgeres.package and `edgeres package`: bundle contents, infer.py round trips
(ONNX Runtime and OpenVINO) without edgeres, generated-code provenance, atomic failures."""

from __future__ import annotations

import importlib.util
import json
import os
import types
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from helpers import one_error, run_infer

from edgeres import names, package, preprocess, runtime
from edgeres.cli import cli
from edgeres.errors import EdgeresError, MetadataError, UnknownNameError
from edgeres.meta import METADATA_KEY, ModelMeta, PreprocessSpec

MODEL = names.resolve_model_file("cifar10")
IMAGES = sorted((names.calibration_dir() / "cifar10-calib").rglob("*.jpg"))[::150][:4]
BUNDLE_FILES = ("README.md", "edgeres_device", "golden.npz", "infer.py", "labels.txt",
                "metadata.json", "requirements.txt")
@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("bundle") / "cifar10-bundle"
    report = package.package("cifar10", dst)
    assert report.path == dst and report.runtime == "onnxruntime"
    return dst


@pytest.fixture(scope="module")
def ir_bundle(tmp_path_factory: pytest.TempPathFactory, shipped_ir: Path) -> Path:
    """A bundle of the shipped model converted to an fp32 OpenVINO IR (record in rt_info)."""
    return package.package(shipped_ir, tmp_path_factory.mktemp("ir") / "bundle").path


@pytest.mark.slow
def test_graph_resized_after_export_bundles_a_record_of_its_size(tmp_path: Path,
                                                                 reshaped_shipped) -> None:
    """The shipped graph fixed to 48x48 with its record left at 32: metadata.json says 48, so
    infer.py resizes to what the graph takes (the bundle's own check failed on the stored 32)."""
    model = reshaped_shipped(48)
    dst = package.package(model, tmp_path / "bundle").path
    record = json.loads((dst / "metadata.json").read_text())
    assert record["preprocess"]["crop"] == [48, 48] and record["input"]["shape"][1:] == [3, 48, 48]
    out = run_infer(dst, str(IMAGES[0]), "--top-k", "3", "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)["predictions"][0]
    want = runtime.load(model).predict(IMAGES[0], top_k=3)[0]
    assert got["indices"] == list(want.indices)
    np.testing.assert_allclose(got["probabilities"], want.probabilities, rtol=1e-6)


def test_bundle_holds_model_record_labels_and_tested_requirements(bundle: Path) -> None:
    """metadata.json is the stored record byte for byte; labels and pins are as tested."""
    assert sorted(p.name for p in bundle.iterdir()) == sorted((*BUNDLE_FILES, "model.onnx"))
    assert (bundle / "model.onnx").read_bytes() == MODEL.read_bytes()
    stored = {p.key: p.value for p in onnx.load(str(MODEL)).metadata_props}[METADATA_KEY]
    assert (bundle / "metadata.json").read_bytes() == stored.encode("utf-8")
    meta = ModelMeta.from_json(stored)
    assert meta.to_json() == stored
    assert (bundle / "labels.txt").read_text().splitlines() == list(meta.labels)
    req = (bundle / "requirements.txt").read_text().splitlines()
    pins = [line for line in req if line and not line.startswith("#")]
    assert pins == [f"numpy>={package.TESTED_MINIMUMS['numpy']}",
                    f"Pillow>={package.TESTED_MINIMUMS['Pillow']}",
                    f"onnxruntime>={package.TESTED_MINIMUMS['onnxruntime']}"]
    assert f"# Tested on: {'; '.join(package.TESTED_PLATFORMS)}" in req
    assert any(line.startswith("# Packaged and checked on") for line in req)
    readme = (bundle / "README.md").read_text()
    assert "python infer.py" in readme and "pip install -r requirements.txt" in readme


def _with_opsets(src: Path, dst: Path, *, ir: int | None = None, **opsets: int) -> Path:
    """A copy of ``src`` whose IR version and opset imports are changed: ``ai_onnx_ml=5``
    imports ai.onnx.ml opset 5, ``onnx=21`` stamps the default domain 21."""
    m = onnx.load(str(src))
    for key, version in opsets.items():
        domain = "" if key == "onnx" else key.replace("_", ".")
        entry = next((o for o in m.opset_import if o.domain == domain), None)
        if entry is None:
            entry = m.opset_import.add()
            entry.domain = domain
        entry.version = version
    if ir is not None:
        m.ir_version = ir
    onnx.save(m, str(dst))
    return dst


@pytest.mark.parametrize(("changes", "want"), [
    ({}, "1.17.0"),                                   # opset 17, IR 8: the tested floor
    ({"onnx": 21}, "1.18.0"),                         # opset 21 arrived in ORT 1.18
    ({"ir": 10}, "1.18.0"),                           # IR 10 likewise
    ({"onnx": 22}, "host"),                           # beyond ORT's table: what packaged it
    ({"ai_onnx_ml": 5, "com_microsoft_nchwc": 1}, "1.17.0"),  # imported, no node uses them
])
def test_requirements_state_the_runtime_version_the_model_needs(tmp_path: Path, changes: dict,
                                                                want: str) -> None:
    """runtime_minimum reads the IR version and opset imports of the bundled copy, after the
    imports no node uses are dropped (graph, weights and record kept byte for byte)."""
    import onnxruntime as ort

    from edgeres import _model_needs

    src = _with_opsets(MODEL, tmp_path / "m.onnx", **changes)
    data = _model_needs.drop_unused_opsets(src.read_bytes())
    (tmp_path / "bundled.onnx").write_bytes(data)
    m = onnx.load(str(tmp_path / "bundled.onnx"))
    onnx.checker.check_model(m)
    assert {o.domain for o in m.opset_import} == {""}
    assert m.graph == onnx.load(str(src)).graph and m.metadata_props == onnx.load(
        str(src)).metadata_props
    need, why = package.runtime_minimum(tmp_path / "bundled.onnx")
    assert need == (ort.__version__ if want == "host" else want), why
    assert f"ai.onnx opset {changes.get('onnx', 17)}" in why


@pytest.mark.slow
def test_int8_bundle_drops_unused_opset_imports_and_declares_its_minimum(
        tmp_path: Path) -> None:
    """An int8 model importing ai.onnx.ml 5 and other domains no node uses, as ORT's quantize
    pre-processing wrote them (ORT 1.17.x refused such a file; the shipped cifar10-int8 was one
    before it was rewritten): its bundle's model imports only what its nodes use,
    requirements.txt says the onnxruntime that reads it and why, and the bundle still passes
    its own check."""
    from edgeres import _model_needs

    proto = onnx.load(str(names.resolve_model_file("cifar10-int8")))
    for domain, version in (("ai.onnx.ml", 5), ("com.microsoft", 1), ("ai.onnx.training", 1)):
        proto.opset_import.append(onnx.helper.make_opsetid(domain, version))
    crafted = tmp_path / "int8-extra-imports.onnx"
    onnx.save(proto, str(crafted))
    assert "ai.onnx.ml" in _model_needs.onnx_needs(crafted.read_bytes())[1]
    dst = package.package(crafted, tmp_path / "b").path
    ir, imports, used = _model_needs.onnx_needs((dst / "model.onnx").read_bytes())
    assert set(imports) == used == {""}
    need, _ = _model_needs.ort_minimum(ir, imports, package.TESTED_MINIMUMS["onnxruntime"], "x")
    req = (dst / "requirements.txt").read_text()
    assert f"onnxruntime>={need}\n" in req and f"ai.onnx opset {imports['']}" in req


def test_infer_py_runs_without_edgeres_and_matches_predict(bundle: Path) -> None:
    """infer.py --json (no edgeres/torch/onnx importable) equals Predictor.predict."""
    out = run_infer(bundle, *map(str, IMAGES), "--top-k", "3", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["schema_version"] == 1 and doc["runtime"] == "ort-cpu"
    expected = runtime.load(MODEL).predict(IMAGES, top_k=3)
    for got, want, image in zip(doc["predictions"], expected, IMAGES, strict=True):
        assert got["image"] == str(image)
        assert got["labels"] == list(want.labels) and got["indices"] == list(want.indices)
        np.testing.assert_allclose(got["probabilities"], want.probabilities, rtol=1e-6)
    text = run_infer(bundle, str(IMAGES[0]), "--top-k", "2")
    assert text.stdout.splitlines()[1].split()[1] == expected[0].labels[0]


def test_infer_py_reports_bad_images_as_one_error(bundle: Path, tmp_path: Path) -> None:
    """A non-image argument: exit code 1 and one Error line on stderr, no traceback."""
    bad = tmp_path / "x.jpg"
    bad.write_text("text")
    out = run_infer(bundle, str(bad))
    assert out.returncode == 1 and out.stderr.startswith("Error:") and "x.jpg" in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


@pytest.mark.slow
def test_ir_bundle_runs_with_openvino(ir_bundle: Path) -> None:
    """An IR bundle holds .xml + .bin, needs openvino (not onnxruntime) and agrees with ORT."""
    names_ = sorted(p.name for p in ir_bundle.iterdir())
    assert names_ == sorted((*BUNDLE_FILES, "model.xml", "model.bin"))
    pins = [line for line in (ir_bundle / "requirements.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    need, why = package.runtime_minimum(ir_bundle / "model.xml")
    assert pins[-1] == f"openvino>={need}" and len(pins) == 3 and "layers up to opset" in why
    out = run_infer(ir_bundle, *map(str, IMAGES), "--top-k", "3", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["runtime"] == "openvino-cpu" and doc["executed_precision"] == "fp32"
    expected = runtime.load(MODEL).predict(IMAGES, top_k=3)
    for got, want in zip(doc["predictions"], expected, strict=True):
        assert got["labels"][0] == want.labels[0]
        np.testing.assert_allclose(got["probabilities"], want.probabilities, atol=1e-4)


@pytest.mark.slow
def test_ir_bundle_reports_the_precision_openvino_compiled(tmp_path: Path) -> None:
    """An fp16 IR: infer.py runs and reports f16 where the CPU has it and f32 elsewhere, as
    edgeres.runtime does (asked for f16, OpenVINO would run bf16 on an AVX-512 BF16 CPU)."""
    import openvino as ov

    model = ov.Core().read_model(str(MODEL))
    half = runtime.load(MODEL).meta.evolve(precision="fp16")
    model.set_rt_info(half.to_json(), [METADATA_KEY])
    ov.save_model(model, str(tmp_path / "m.xml"), compress_to_fp16=True)
    bundle = package.package(tmp_path / "m.xml", tmp_path / "bundle").path
    out = run_infer(bundle, str(IMAGES[0]), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    has_fp16 = "FP16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert doc["executed_precision"] == ("fp16" if has_fp16 else "fp32") or (
        has_fp16 and doc["executed_precision"] == "fp32")  # read back: f16 asked, f32 ran
    assert doc["executed_precision"] == runtime.load(bundle / "model.xml").executed_precision


@pytest.mark.slow
@pytest.mark.parametrize(("bug", "reason"), [
    (("np.argsort(-probs", "np.argsort(probs"), "top class"),  # ranks the worst class first
    (("\nimport numpy as np\n", "\nimport numpy as np\nraise SystemExit('boom')\n"), "(boom)"),
])
@pytest.mark.parametrize("dst_name", ["out", "out.zip"])
def test_a_broken_infer_py_fails_packaging(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           bug: tuple[str, str], reason: str,
                                           dst_name: str) -> None:
    """The check runs the bundle's infer.py: a bug in the device code it carries (here put in
    the copied files) is one error and writes nothing."""
    from edgeres import device

    good = device.bundle_files
    bugged = tmp_path.parent / f"{tmp_path.name}-bugged"
    bugged.mkdir()

    def with_bug(runtime: str) -> list[tuple[Path, str]]:
        out = []
        for src, rel in good(runtime):
            copy = bugged / rel.replace("/", "_")
            copy.write_text(src.read_text("utf-8").replace(*bug), "utf-8")
            out.append((copy, rel))
        return out

    assert any(bug[0] in src.read_text("utf-8") for src, _ in good("ort"))
    monkeypatch.setattr(device, "bundle_files", with_bug)
    with pytest.raises(EdgeresError, match="infer.py") as info:
        package.package(MODEL, tmp_path / dst_name)
    assert reason in str(info.value) and "\n" not in str(info.value)
    assert os.listdir(tmp_path) == []


def _bundled_module(bundle: Path, name: str) -> types.ModuleType:
    """The bundle's copy of ``edgeres/<name>.py``, imported under another name."""
    spec = importlib.util.spec_from_file_location(
        f"bundled_{name}", bundle / "edgeres_device" / "edgeres" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_infer_py_carries_preprocess_py_unchanged(bundle: Path) -> None:
    """The bundle carries preprocess.py (and every device module) byte for byte, and the copy
    computes the same tensors. (Was: its functions' source pasted into infer.py.)"""
    from edgeres import device

    for src, rel in device.bundle_files("ort"):
        assert (bundle / rel).read_bytes() == src.read_bytes(), rel
    text = (bundle / "infer.py").read_text()
    # infer.py imports edgeres only from its own edgeres_device/, put first on sys.path.
    assert text.index('"edgeres_device"') < text.index("from edgeres.device.infer import")
    copied = _bundled_module(bundle, "preprocess")
    meta = runtime.load(MODEL).meta
    spec = PreprocessSpec(resize=40, crop=(32, 32), mean=meta.preprocess.mean,
                          std=meta.preprocess.std)
    wide = meta.evolve(preprocess=spec)
    image = np.random.default_rng(0).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    np.testing.assert_array_equal(copied.prepare(image, wide), preprocess.prepare(image, wide))
    with pytest.raises(copied.DataError, match="must be uint8"):
        copied.prepare(image.astype(np.float32), wide)


# Two CPUs as /proc/cpuinfo describes them, and the OPTIMIZATION_CAPABILITIES OpenVINO reports
# on each: an AVX2 CPU without FP16 (nor BF16), and an AVX-512 BF16 one (BF16, no FP16).
_FAKE_CPUS = {
    "no-fp16": ("flags\t: fpu sse sse2 avx avx2 fma\n", ("FP32", "INT8", "BIN", "EXPORT_IMPORT")),
    "avx512-bf16": ("flags\t: fpu sse avx2 avx512f avx512bw avx512_vnni avx512_bf16\n",
                    ("FP32", "BF16", "INT8", "BIN", "EXPORT_IMPORT")),
}


class _FakeOpenVINO:
    """Stands in for the openvino module: a CPU with given capabilities that runs the hint."""

    def __init__(self, capabilities: tuple[str, ...]) -> None:
        self.capabilities, self.configs = capabilities, []
        fake = self

        class Core:
            def get_property(self, device: str, name: str) -> tuple[str, ...]:
                assert (device, name) == ("CPU", "OPTIMIZATION_CAPABILITIES")
                return fake.capabilities

            def compile_model(self, model: str, device: str, config: dict) -> object:
                fake.configs.append(config)
                hint = config["INFERENCE_PRECISION_HINT"]
                ran = type("T", (), {"get_type_name": lambda self: hint})()
                dim = type("D", (), {"is_static": True, "get_length": lambda self: 1})()
                port = type("P", (), {"partial_shape": [dim] * 4})()
                request = type("R", (), {"infer": lambda self, x: [x]})()
                return type("C", (), {"get_property": lambda self, name: ran,
                                      "input": lambda self, i: port,
                                      "create_infer_request": lambda self: request})()

        self.Core = Core


@pytest.mark.parametrize("cpu", sorted(_FAKE_CPUS))
def test_infer_py_and_runtime_decide_precision_with_the_same_hw_source(
        bundle: Path, cpu: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU without FP16 and on one with AVX-512 BF16, infer.py and edgeres.runtime give the
    same executed precision because the bundle carries _hw.py and the runtime modules unchanged
    and runs them (issue 13). (Was: _hw.py's functions pasted into infer.py.)"""
    from types import SimpleNamespace

    from edgeres import _hw
    from edgeres.runtimes import openvino, ort

    source = Path(_hw.__file__).read_bytes()
    assert (bundle / "edgeres_device" / "edgeres" / "_hw.py").read_bytes() == source
    assert (bundle / "edgeres_device" / "edgeres" / "runtimes" / "ort.py").read_bytes() == \
        Path(ort.__file__).read_bytes()
    for module, name in ((ort, "ort_executed"), (openvino, "ov_precision_hint"),
                         (openvino, "ov_has_device")):
        assert getattr(module, name) is getattr(_hw, name)  # the runtime calls the source
    copied = _bundled_module(bundle, "_hw")
    cpuinfo, caps = _FAKE_CPUS[cpu]
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    flags = _hw.cpu_flags(tmp_path / "cpuinfo")
    assert copied.cpu_flags(tmp_path / "cpuinfo") == flags
    assert copied.int8_isa("x86_64", flags) == _hw.int8_isa("x86_64", flags)
    assert ("avx512_bf16" in flags) == ("BF16" in caps)
    ov = _FakeOpenVINO(caps)
    expected = {"fp32": "fp32", "int8": "int8", "fp16": "fp32",
                "bf16": "bf16" if cpu == "avx512-bf16" else "fp32"}
    for precision, want in expected.items():
        hint = openvino.OpenVINOBackend._model_hint(ov.Core(), "CPU", precision)
        executed = (copied.int8_execution(hint) if precision == "int8"
                    else copied.ov_precision_name(hint))
        runtime_executed = (_hw.int8_execution(hint) if precision == "int8"
                            else _hw.ov_precision_name(hint))
        assert executed == runtime_executed == want, precision
    # ONNX Runtime's CPU provider: fp16 runs as fp32 on x86, as stored elsewhere.
    for machine, want in (("x86_64", "fp32"), ("aarch64", "fp16")):
        monkeypatch.setattr("platform.machine", lambda machine=machine: machine)
        meta = SimpleNamespace(precision="fp16")
        executed = copied.ort_executed("cpu", "model", meta.precision, machine) or "fp16"
        fp16 = runtime.load(MODEL).meta.evolve(precision="fp16")
        assert executed == (ort._ort_executed("cpu", "model", fp16) or "fp16") == want


def test_a_module_the_bundle_lacks_fails_packaging(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    """A device module missing from the bundle (here golden.py dropped from the list) fails
    the bundle's own check: one error, nothing written. (Was: rendering refused a pasted
    module importing more of edgeres.)"""
    from edgeres import device

    kept = tuple(m for m in device.SHARED_MODULES if m != "golden.py")
    monkeypatch.setattr(device, "SHARED_MODULES", kept)
    with pytest.raises(EdgeresError, match="infer.py") as info:
        package.package(MODEL, tmp_path / "out")
    assert "golden" in str(info.value) and "\n" not in str(info.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_zip_bundle_holds_the_same_files(bundle: Path, tmp_path: Path) -> None:
    """A .zip destination holds the bundle's files, identical, in a folder named after it."""
    dst = tmp_path / "cifar.zip"
    report = package.package(MODEL, dst)
    assert report.path == dst and os.listdir(tmp_path) == ["cifar.zip"]
    # Every file, the copied device package's included (edgeres_device/...).
    files = {p.relative_to(bundle).as_posix(): p for p in bundle.rglob("*") if p.is_file()}
    with zipfile.ZipFile(dst) as z:
        assert sorted(z.namelist()) == sorted(f"cifar/{name}" for name in files)
        for name, p in files.items():
            assert z.read(f"cifar/{name}") == p.read_bytes(), name


def test_failures_leave_nothing_behind(tmp_path: Path) -> None:
    """A model without a record, an unknown name or a missing parent writes no file."""
    proto = onnx.load(str(MODEL))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(MetadataError):
        package.package(tmp_path / "bare.onnx", tmp_path / "out")
    with pytest.raises(MetadataError):
        package.package(tmp_path / "bare.onnx", tmp_path / "out.zip")
    with pytest.raises(UnknownNameError, match="cifar10-int8"):
        package.package("nosuch", tmp_path / "out")
    with pytest.raises(EdgeresError, match="does not exist"):
        package.package(MODEL, tmp_path / "missing" / "out.zip")
    assert os.listdir(tmp_path) == ["bare.onnx"]


@pytest.mark.slow
def test_existing_destinations_are_kept_unless_forced(tmp_path: Path) -> None:
    """An existing bundle is replaced only with overwrite; other folders never are."""
    dst = tmp_path / "b"
    package.package(MODEL, dst)
    (dst / "stale.txt").write_text("old")
    with pytest.raises(EdgeresError, match="already exists"):
        package.package(MODEL, dst)
    package.package(MODEL, dst, overwrite=True)
    assert not (dst / "stale.txt").exists() and (dst / "infer.py").is_file()
    home = tmp_path / "home"
    home.mkdir()
    (home / "precious.txt").write_text("keep")
    with pytest.raises(EdgeresError, match="not an edgeres bundle"):
        package.package(MODEL, home, overwrite=True)
    assert (home / "precious.txt").read_text() == "keep"


@pytest.mark.slow
def test_package_command(tmp_path: Path) -> None:
    """`edgeres package` writes the bundle; a second run without --force is one Error line."""
    dst = tmp_path / "out"
    result = CliRunner().invoke(cli, ["package", "cifar10", "-o", str(dst)])
    assert result.exit_code == 0, result.output
    assert f"wrote {dst}" in result.output and (dst / "infer.py").is_file()
    again = CliRunner().invoke(cli, ["package", "cifar10", "-o", str(dst)])
    assert again.exit_code == 1 and "Traceback" not in again.output
    assert [line for line in again.output.splitlines() if line.startswith("Error:")] == [
        f"Error: {dst} already exists; choose another output path or pass --force to replace it"]
    forced = CliRunner().invoke(cli, ["package", "cifar10", "-o", str(dst), "--force"])
    assert forced.exit_code == 0, forced.output
    missing = CliRunner().invoke(cli, ["package", "nosuch", "-o", str(tmp_path / "x.zip")])
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    assert not (tmp_path / "x.zip").exists()


def test_package_zip_on_a_full_disk_names_free_space_or_tmpdir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`package -o b.zip` with no room (ENOSPC injected): writing the .zip names the free
    space beside it; building the bundle in the temporary folder names TMPDIR. One line,
    nothing left behind either way."""
    import errno

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    dst = tmp_path / "out" / "b.zip"
    dst.parent.mkdir()
    monkeypatch.setattr(zipfile.ZipFile, "write", full)
    result = CliRunner().invoke(cli, ["package", "cifar10", "-o", str(dst)])
    line = one_error(result, "cannot write", f"MB free in {dst.parent}")
    assert "No space left on device" in line and list(dst.parent.iterdir()) == []
    monkeypatch.undo()
    monkeypatch.setattr(package, "_write_bundle", full)
    result = CliRunner().invoke(cli, ["package", "cifar10", "-o", str(dst)])
    one_error(result, "temporary folder", "(no room)", "TMPDIR")
    assert list(dst.parent.iterdir()) == []


def test_packaging_an_x86_vnni_model_on_a_cpu_without_vnni_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundle's own check fails its target on this host (no VNNI, faked in the verdict):
    package refuses in one line saying to package on a CPU the target suits, not 'report
    this'."""
    import subprocess

    verdict = {"passed": False, "target": "x86-vnni", "failures": [
        "target: quantized for 'x86-vnni' but this CPU has no VNNI: its int8 results differ "
        "from the packaging host's; re-quantize for 'x86'"]}

    def fake_run(*args: object, **kwargs: object) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(args, 1, json.dumps(verdict), "")

    folder = tmp_path / "b"
    folder.mkdir()
    monkeypatch.setattr(package.subprocess, "run", fake_run)
    with pytest.raises(EdgeresError, match=r"this host cannot make the golden file: quantized "
                       r"for 'x86-vnni' but this CPU has no VNNI.*on a CPU the quantization "
                       r"target suits$"):
        package._check_golden(folder)
