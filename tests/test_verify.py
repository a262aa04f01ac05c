"""Tests for golden files and `edgeres verify` / `infer.py --verify`: what a bundle stores, a
fresh bundle passing, and swapped, perturbed and mis-preprocessed bundles failing by name."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from helpers import one_error, run_infer

from edgeres import golden, names, package, runtime
from edgeres.cli import cli
from edgeres.preprocess import pixels_to_input, prepare

ROOT = Path(__file__).resolve().parent.parent
def infer_verify(bundle: Path, *args: str) -> subprocess.CompletedProcess:
    """``python infer.py --verify ARGS`` in isolated mode, from inside the bundle."""
    return run_infer(bundle, "--verify", *args)


@pytest.fixture(scope="module")
def fp32_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package.package("cifar10", tmp_path_factory.mktemp("fp32") / "bundle").path


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package.package("cifar10-int8", tmp_path_factory.mktemp("int8") / "bundle").path


@pytest.mark.slow
def test_golden_file_holds_train_pixels_host_logits_labels_and_tolerances(
        fp32_bundle: Path) -> None:
    """golden.npz: 64 uint8 cifar10-val pixels, their logits here, labels, tolerances, hashes."""
    path = fp32_bundle / golden.GOLDEN_FILE
    assert path.stat().st_size < 300_000  # well under 1 MB for CIFAR-size inputs
    g = golden.load_golden(path)
    assert g["kind"] == "pixels" and g["data"].dtype == np.uint8
    assert g["data"].shape == (64, 32, 32, 3) and g["logits"].shape == (64, 10)
    assert g["labels"].shape == (64,) and set(g["labels"].tolist()) <= set(range(10))
    info = g["info"]
    assert "cifar10-val" in info["source"] and "test" not in info["source"]  # train split only
    p = runtime.load(fp32_bundle / "model.onnx")
    np.testing.assert_allclose(g["logits"], p.run(pixels_to_input(g["data"], p.meta)), atol=1e-5)
    assert info["model_sha256"] == golden.sha256_file(fp32_bundle / "model.onnx")
    tol = info["tolerances"]
    scale = info["tolerance_derivation"]["scale"]  # the median spread of a row's logits
    assert scale == pytest.approx(np.median(np.ptp(g["logits"], axis=1)))
    assert tol["atol"] == pytest.approx(1e-4 * scale) and tol["atol"] < 0.01 * scale
    assert tol["rtol"] > 0 and tol["min_agreement"] > 0.9
    measured = info["tolerance_derivation"]["measured"]
    assert "ort-cpu, graph optimisation off" in measured
    assert all(m["max_abs_dlogit"] < 1e-4 for m in measured.values())  # fp32 kernels agree


@pytest.mark.slow
def test_int8_tolerances_come_from_measured_kernel_spread(int8_bundle: Path) -> None:
    """int8: atol = max(floor, margin x largest measured |delta logit|), recorded in the file."""
    info = golden.load_golden(int8_bundle / golden.GOLDEN_FILE)["info"]
    derivation, tol = info["tolerance_derivation"], info["tolerances"]
    spread = max(m["max_abs_dlogit"] for m in derivation["measured"].values())
    assert spread > 0.01  # int8 kernels really differ (fused int8 vs QDQ float reference)
    assert tol["atol"] == pytest.approx(max(derivation["floor"][0], derivation["margin"] * spread))
    assert info["precision"] == "int8" and info["target"] == "x86"


def test_fresh_bundle_passes_edgeres_verify_and_infer_py(fp32_bundle: Path) -> None:
    """A fresh bundle passes both checks, which agree number for number; exit 0."""
    result = CliRunner().invoke(cli, ["verify", str(fp32_bundle)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("PASS: 100.0% top-1 agreement")
    assert "executed precision fp32 (bundle fp32)" in result.output
    as_json = CliRunner().invoke(cli, ["verify", str(fp32_bundle), "--json"])
    ours = json.loads(as_json.output)
    assert ours["passed"] and ours["failures"] == [] and ours["agreement"] == 1.0
    out = infer_verify(fp32_bundle, "--json")
    assert out.returncode == 0, out.stderr
    device = json.loads(out.stdout)
    for key in ("passed", "agreement", "samples", "accuracy", "executed_precision", "isa"):
        assert device[key] == ours[key], key
    assert device["max_abs_dlogit"] == pytest.approx(ours["max_abs_dlogit"], abs=1e-6)
    text = infer_verify(fp32_bundle)
    assert text.returncode == 0 and text.stdout.startswith("PASS")


def _swap_model(bundle: Path) -> None:
    shutil.copyfile(names.resolve_model_file("cifar10-int8"), bundle / "model.onnx")


def _perturb_weights(bundle: Path) -> None:
    model = onnx.load(str(bundle / "model.onnx"))
    init = next(t for t in model.graph.initializer if len(t.dims) == 4)  # a conv weight
    w = onnx.numpy_helper.to_array(init)
    init.CopyFrom(onnx.numpy_helper.from_array(w * np.float32(1.05), init.name))
    onnx.save(model, str(bundle / "model.onnx"))


def _wrong_preprocessing(bundle: Path) -> None:
    record = json.loads((bundle / "metadata.json").read_text())
    record["preprocess"]["mean"] = [0.5, 0.5, 0.5]
    record["preprocess"]["std"] = [0.25, 0.25, 0.25]
    (bundle / "metadata.json").write_text(json.dumps(record))


@pytest.mark.parametrize(("breakage", "named"), [
    (_swap_model, "model:"), (_perturb_weights, "model:"), (_wrong_preprocessing, "metadata.json:"),
])
def test_broken_bundle_fails_with_a_verdict_naming_it(fp32_bundle: Path, tmp_path: Path,
                                                      breakage, named: str) -> None:
    """Swapped model, a conv weight x1.05, edited mean/std: both checks exit 1; the logits
    check itself fails (not only the hashes), and the verdict names the changed file."""
    broken = tmp_path / "bundle"
    shutil.copytree(fp32_bundle, broken)
    breakage(broken)
    result = CliRunner().invoke(cli, ["verify", str(broken), "--json"])
    assert result.exit_code == 1
    verdict = json.loads(result.output)
    assert not verdict["passed"] and verdict["within_tolerance"] < 1
    assert any(f.startswith("logits:") for f in verdict["failures"])
    assert any(f.startswith(named) for f in verdict["failures"])
    out = infer_verify(broken)
    assert out.returncode == 1 and out.stdout.startswith("FAIL")
    assert "failed: logits:" in out.stdout and f"failed: {named}" in out.stdout


def _fake_golden(precision: str, target: str | None = None) -> dict:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (16, 10))
    info = {"tolerances": {"atol": 0.5, "rtol": 0.02, "tie_gap": 0.5, "min_agreement": 0.9},
            "precision": precision, "target": target}
    return {"kind": "inputs", "data": logits.astype(np.float32), "logits": logits,
            "labels": None, "info": info}


def test_runtime_executing_another_precision_fails() -> None:
    """An int8 bundle the runtime reports running as fp16 fails even with identical logits;
    an fp16 file on fp32 kernels (ORT's x86 CPU provider) passes."""
    bad = golden.verify(_fake_golden("int8"), lambda x: x, lambda p: p, runtime="openvino-cpu",
                        executed="fp16", precision="int8")
    assert not bad["passed"] and bad["failures"] == [
        "precision: the bundle is int8 but the runtime executes fp16"]
    ok = golden.verify(_fake_golden("fp16"), lambda x: x, lambda p: p, runtime="ort-cpu",
                       executed="fp32", precision="fp16")
    assert ok["passed"] and ok["max_abs_dlogit"] < 1e-6  # float32 data vs float64 logits


def test_nan_logits_and_flips_fail() -> None:
    """NaN outputs, or top-1 flips beyond the agreement floor, fail the verdict."""
    g = _fake_golden("fp32")
    nan = golden.verify(g, lambda x: np.full_like(x, np.nan), lambda p: p, runtime="ort-cpu",
                        executed="fp32", precision="fp32")
    assert not nan["passed"] and any("NaN" in f for f in nan["failures"])
    g["info"]["tolerances"]["atol"] = 100.0  # logits "within tolerance", but argmax shuffled
    flipped = golden.verify(g, lambda x: x[:, ::-1].copy(), lambda p: p, runtime="ort-cpu",
                            executed="fp32", precision="fp32")
    assert any(f.startswith("agreement:") for f in flipped["failures"])


@pytest.mark.parametrize(("target", "machine", "flags", "words"), [
    ("x86-vnni", "x86_64", {"avx2", "avx512f"}, "VPMADDUBSW"),
    ("x86", "aarch64", {"asimd", "asimddp"}, "--target arm"),
    ("arm", "x86_64", {"avx2"}, "U8 x S8"),
    ("tensorrt", "x86_64", {"avx2"}, "TensorRT"),
    ("x86-vnni", "x86_64", {"avx2", "avx512_vnni"}, None),
    ("x86", "x86_64", {"avx2"}, None),
    ("arm", "aarch64", {"asimddp"}, None),
])
def test_target_risk_names_what_a_mismatch_risks(target, machine, flags, words) -> None:
    """The CPU/target rules: each mismatch says what it risks; a matching CPU says nothing."""
    risk = golden.target_risk(target, machine, flags)
    assert (risk is None) if words is None else (words in (risk or ""))


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="needs an x86-64 host")
def test_x86_vnni_model_on_a_cpu_without_vnni_warns_before_running_and_fails(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An x86-vnni int8 model on a CPU whose cpuinfo lacks VNNI: the risk is logged before the
    first inference, and the verdict fails even though the numbers agree (VPMADDUBSW
    saturation costs accuracy there); the same model on a VNNI CPU passes."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    warned_first = []

    def run(x: np.ndarray) -> np.ndarray:
        warned_first.append(any("no VNNI" in r.getMessage() for r in caplog.records))
        return x

    with caplog.at_level("WARNING"):
        v = golden.verify(_fake_golden("int8", "x86-vnni"), run, lambda p: p,
                          runtime="ort-cpu", executed="int8", precision="int8",
                          target="x86-vnni", cpuinfo=cpuinfo)
    assert warned_first and all(warned_first)
    assert not v["passed"] and v["isa"] == ["avx2", "avx512f"] and v["max_abs_dlogit"] < 1e-6
    assert [f for f in v["failures"] if f.startswith("target:")] == v["failures"]
    assert "no VNNI" in v["target_warning"] and "warning: " in golden.render(v)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    ok = golden.verify(_fake_golden("int8", "x86-vnni"), lambda x: x, lambda p: p,
                       runtime="ort-cpu", executed="int8", precision="int8",
                       target="x86-vnni", cpuinfo=cpuinfo)
    assert ok["passed"] and ok["target_warning"] is None


@pytest.mark.parametrize(("classes", "samples"), [(2, 64), (10, 64), (2, 10), (1000, 64),
                                                  (10, 16), (3, 200)])
def test_required_agreement_is_the_binomial_bound_a_random_model_misses(classes: int,
                                                                       samples: int) -> None:
    """required_agreement(C, n) = k/n for the smallest k with P[Binomial(n, 1/C) >= k] <=
    1e-3, checked against the exact tail from math.comb; 2 classes x 64 inputs need 45/64."""
    import math

    bound = golden.required_agreement(classes, samples)
    p = 1 / classes

    def tail(k: int) -> float:
        return sum(math.comb(samples, j) * p**j * (1 - p) ** (samples - j)
                   for j in range(k, samples + 1))

    k = round(bound * samples)
    assert tail(k) <= golden.RANDOM_PASS + 1e-12
    assert k == samples or tail(k - 1) > golden.RANDOM_PASS  # the smallest such k
    if (classes, samples) == (2, 64):
        assert k == 45  # the 14% a 2-class bundle once required is far below it
    if (classes, samples) == (2, 10):
        assert bound == 1.0  # 10 coin flips: only all-agree is unlikely enough


def _two_class_probability_model(dst: Path) -> Path:
    """The shipped CIFAR-10 model with a 2-class head (vehicle, animal: 3x the mean logit of
    each group) and a Softmax, as a foreign exporter would give it, attached with its record."""
    from onnx import helper, numpy_helper

    from edgeres.foreign import RecordOptions, attach
    from edgeres.meta import CIFAR10_MEAN, CIFAR10_STD

    m = onnx.load(str(names.resolve_model_file("cifar10")))
    del m.metadata_props[:]
    g = m.graph
    vehicles = {0, 1, 8, 9}  # airplane, automobile, ship, truck
    w = np.zeros((10, 2), np.float32)
    for i in range(10):
        w[i, 0 if i in vehicles else 1] = 3 / (4 if i in vehicles else 6)
    g.initializer.append(numpy_helper.from_array(w, "head_w"))
    old = g.output[0].name
    g.node.extend([helper.make_node("MatMul", [old, "head_w"], ["head"]),
                   helper.make_node("Softmax", ["head"], ["probs"], axis=1)])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, ["N", 2]))
    src = dst.with_name("bare.onnx")
    onnx.save(m, str(src))
    attach(src, dst, RecordOptions(mean=CIFAR10_MEAN, std=CIFAR10_STD,
                                   labels=("vehicle", "animal"), name="vehicle-animal"))
    return dst


@pytest.fixture(scope="module")
def two_class_int8_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ORT int8 bundle of the 2-class probability model, golden on 64 real CIFAR images."""
    work = tmp_path_factory.mktemp("two-class")
    fp32 = _two_class_probability_model(work / "fp32.onnx")
    result = CliRunner().invoke(cli, ["quantize", str(fp32), "--calib", "cifar10", "--samples",
                                      "64", "-o", str(work / "int8.onnx")])
    assert result.exit_code == 0, result.output
    images = work / "golden"
    images.mkdir()
    val = sorted((names.calibration_dir() / "cifar10-val").rglob("*.jpg"))
    for f in val[:: max(1, len(val) // 64)][:64]:
        shutil.copyfile(f, images / f"{f.parent.name}-{f.name}")
    return package.package(work / "int8.onnx", work / "bundle", golden=images).path


def _never_sure(g: dict) -> None:
    """Every image's probabilities become 0.55 / 0.45, keeping the host's top class."""
    top = g["logits"].argmax(1)
    g["logits"] = np.where(np.arange(2) == top[:, None], 0.55, 0.45)


def _lower_agreement(g: dict) -> None:
    g["info"]["tolerances"]["min_agreement"] = 0.14


def _inflate_tolerance(g: dict) -> None:
    g["info"]["tolerances"]["atol"] = 0.5  # the fixed int8 floor on "logits" verify once used


@pytest.mark.slow
@pytest.mark.parametrize(("tamper", "named"), [
    (_never_sure, "logits:"), (_lower_agreement, "golden file: it requires only 14.0%"),
    (_inflate_tolerance, "golden file: its tolerance"),
])
def test_tampered_golden_file_fails_verify_on_a_two_class_probability_model(
        two_class_int8_bundle: Path, tmp_path: Path, tamper, named: str) -> None:
    """A 2-class int8 probability bundle passes its own check with probability-scale
    tolerances; a golden file claiming P = 0.45/0.55 for every image, requiring 14% agreement,
    or with the tolerance inflated to 0.5 fails it (edgeres verify and infer.py alike)."""
    bundle = two_class_int8_bundle
    fresh = CliRunner().invoke(cli, ["verify", str(bundle), "--json"])
    assert fresh.exit_code == 0, fresh.output
    ok = json.loads(fresh.output)
    assert ok["tolerances"]["atol"] <= golden.MAX_ATOL_SHARE  # on the scale of probabilities
    assert ok["tolerances"]["min_agreement"] >= golden.required_agreement(2, 64) > 0.7
    g = golden.load_golden(bundle / golden.GOLDEN_FILE)
    tamper(g)
    info = {k: v for k, v in g["info"].items() if k != "golden_version"}
    bad = tmp_path / "tampered.npz"
    golden.save_golden(bad, data=g["data"], kind=g["kind"], logits=g["logits"],
                       labels=g["labels"], info=info)
    result = CliRunner().invoke(cli, ["verify", str(bundle), "--golden", str(bad), "--json"])
    assert result.exit_code == 1, result.output
    verdict = json.loads(result.output)
    assert not verdict["passed"] and any(f.startswith(named) for f in verdict["failures"])
    out = infer_verify(bundle, "--golden", str(bad))
    assert out.returncode == 1 and f"failed: {named}" in out.stdout


def test_package_golden_option_takes_given_images(tmp_path: Path) -> None:
    """`--golden DATA --golden-samples 8`: the golden inputs are drawn from DATA."""
    data = tmp_path / "imgs"
    for cls in ("cat", "dog"):
        src = sorted((names.calibration_dir() / "cifar10-calib" / cls).glob("*.jpg"))[:5]
        (data / cls).mkdir(parents=True)
        for f in src:
            shutil.copyfile(f, data / cls / f.name)
    dst = tmp_path / "bundle.zip"
    result = CliRunner().invoke(cli, ["package", "cifar10", "-o", str(dst), "--golden", str(data),
                                      "--golden-samples", "8"])
    assert result.exit_code == 0, result.output
    check = CliRunner().invoke(cli, ["verify", str(dst), "--json"])
    verdict = json.loads(check.output)
    assert check.exit_code == 0 and verdict["samples"] == 8 and str(data) in verdict[
        "golden"]["source"]


def test_package_with_unreadable_golden_data_leaves_nothing(tmp_path: Path) -> None:
    """A --golden that does not exist: exit 1, one line, no traceback, no bundle."""
    dst = tmp_path / "bundle"
    result = CliRunner().invoke(cli, ["package", "cifar10", "-o", str(dst), "--golden",
                                      str(tmp_path / "missing")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and not dst.exists()


def test_verify_without_golden_file_is_one_line_error(fp32_bundle: Path, tmp_path: Path) -> None:
    """A bundle without golden.npz (an older edgeres): exit 1, one line saying to re-package."""
    old = tmp_path / "old"
    shutil.copytree(fp32_bundle, old)
    (old / golden.GOLDEN_FILE).unlink()
    result = CliRunner().invoke(cli, ["verify", str(old)])
    assert result.exit_code == 1 and "re-package" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_verify_refuses_non_bundles_and_non_golden_files(fp32_bundle: Path,
                                                        tmp_path: Path) -> None:
    """A folder without metadata.json, or --golden naming another .npz: one line, exit 1."""
    (tmp_path / "empty").mkdir()
    np.savez(tmp_path / "x.npz", inputs=np.zeros((2, 3)))
    for args in ([str(tmp_path / "empty")],
                 [str(fp32_bundle), "--golden", str(tmp_path / "x.npz")]):
        result = CliRunner().invoke(cli, ["verify", *args])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
        assert result.output.startswith("Error:")


@pytest.mark.slow
def test_arm64_bundles_verify_under_emulation(tmp_path: Path) -> None:
    """scripts/verify_arm64.sh: every bundle (fp32, int8 per target) passes infer.py --verify
    in the emulated arm64 root, and test accuracy there stays near x86's."""
    script = ROOT / "scripts" / "verify_arm64.sh"
    check = subprocess.run([str(script), "--check"], capture_output=True, text=True, timeout=60)
    if check.returncode != 0:
        pytest.skip(f"arm64 check not run: {check.stdout.strip()}")
    env = {**os.environ, "OUT": str(tmp_path / "work"), "TEST_IMAGES": "50",
           "RESULTS": str(tmp_path / "arm64_verify"), "PY": sys.executable}
    out = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads((tmp_path / "arm64_verify.json").read_text())
    assert doc["arm64"]["machine"] == "aarch64"
    rows = {r["bundle"]: r for r in doc["rows"]}
    litert = {"litert-fp32", "litert-int8"} if all(  # bundled with edgeres[litert] on the host
        importlib.util.find_spec(m) for m in ("ai_edge_litert", "litert_torch")) else set()
    assert set(rows) == {"fp32", "int8-x86", "int8-x86-vnni", "int8-arm", *litert}
    for r in rows.values():
        assert r["golden_passed"], r
        assert abs(r["test_accuracy_arm64"] - r["test_accuracy_x86"]) <= 0.03, r
    assert rows["fp32"]["test_max_abs_dlogit_vs_x86"] < 1e-3


def test_openvino_int8_with_float_layers_lowered_reports_it() -> None:
    """OpenVINO calls every int8 model int8; float layers run in f16 make it 'int8+fp16',
    which the verdict fails (OpenVINO lowers float parts to f16 on ARM unless told not to)."""
    assert golden.int8_execution("f32") == "int8"
    assert golden.int8_execution("f16") == "int8+fp16"
    assert "int8+fp16" not in golden.ACCEPTED_EXECUTION["int8"]


def test_isa_counts_only_this_architectures_flags() -> None:
    """Under qemu-user /proc/cpuinfo shows the x86 host: an aarch64 process reports no flags."""
    host = {"avx2", "avx512_vnni", "sse2"}
    assert golden.int8_isa("aarch64", host) == []
    assert golden.int8_isa("x86_64", host) == ["avx2", "avx512_vnni"]
    assert golden.int8_isa("aarch64", {"asimd", "asimddp"}) == ["asimd", "asimddp"]


# --- a golden file and a bundle are untrusted input (issue 22 §1, §4) ---------------------------


def _header_bomb(dst: Path, bundle: Path, samples: int = 10**12) -> Path:
    """The bundle's golden file with its pixels array's header declaring ``samples`` images
    (the data itself is the 64 real ones): numpy would allocate the declared size."""
    import zipfile

    with zipfile.ZipFile(bundle / golden.GOLDEN_FILE) as src, zipfile.ZipFile(dst, "w") as out:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "pixels.npy":
                import io

                head = io.BytesIO()
                np.lib.format.write_array_header_1_0(head, {
                    "descr": "|u1", "fortran_order": False, "shape": (samples, 32, 32, 3)})
                data = head.getvalue() + data[len(head.getvalue()):]
            out.writestr(item.filename, data)
    return dst


def test_golden_header_bomb_is_refused_with_the_figure_before_allocating(
        fp32_bundle: Path, tmp_path: Path) -> None:
    """A golden file whose header declares 10^12 images: edgeres verify --golden and infer.py
    --golden say so in one line with the declared shape (numpy would try 2.7 PiB first)."""
    bomb = _header_bomb(tmp_path / "bomb.npz", fp32_bundle)
    result = CliRunner().invoke(cli, ["verify", str(fp32_bundle), "--golden", str(bomb)])
    line = one_error(result, "bomb.npz", "(1000000000000, 32, 32, 3)")
    assert "holds" in line
    out = infer_verify(fp32_bundle, "--golden", str(bomb))
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "(1000000000000, 32, 32, 3)" in out.stderr and "Traceback" not in out.stderr


def test_golden_file_larger_than_memory_is_refused_with_both_figures(
        fp32_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A golden file whose declared arrays exceed the memory available (faked: 100 kB) is
    refused before loading, naming the need and what is available."""
    from edgeres import _resources

    monkeypatch.setattr(_resources, "available_memory", lambda: 100_000)
    result = CliRunner().invoke(cli, ["verify", str(fp32_bundle)])
    line = one_error(result, "golden file", "of memory but 0 MB is available")
    assert "pixels (64, 32, 32, 3)" in line


def _encrypted(zip_bytes: bytes) -> bytes:
    """The zip with every member flagged as encrypted (general purpose bit 0)."""
    data = bytearray(zip_bytes)
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (at := data.find(sig, start)) >= 0:
            data[at + flag_at] |= 1
            start = at + 4
    return bytes(data)


@pytest.mark.parametrize("case", ["not a zip", "encrypted", "path too long", "not a bundle",
                                  "header bomb inside", "a FIFO"])
def test_verify_bundle_raises_only_edgeres_errors(fp32_bundle: Path, tmp_path: Path,
                                                 case: str) -> None:
    """verify_bundle on a broken bundle or path raises an EdgeresError naming it, never
    BadZipFile, RuntimeError ('is encrypted'), OSError (name too long) or MemoryError."""
    from edgeres.errors import EdgeresError
    from edgeres.verify import verify_bundle

    good = tmp_path / "good.zip"
    shutil.make_archive(str(good.with_suffix("")), "zip", fp32_bundle.parent, fp32_bundle.name)
    path = tmp_path / "b.zip"
    if case == "not a zip":
        path.write_bytes(b"PK\x03\x04 not really a zip")
    elif case == "encrypted":
        path.write_bytes(_encrypted(good.read_bytes()))
    elif case == "path too long":
        path = tmp_path / ("x" * 10_000 + ".zip")
    elif case == "not a bundle":
        path = tmp_path / "folder"
        path.mkdir()
    elif case == "header bomb inside":
        copy = tmp_path / "bundle"
        shutil.copytree(fp32_bundle, copy)
        _header_bomb(tmp_path / "bomb.npz", fp32_bundle).replace(copy / golden.GOLDEN_FILE)
        path = copy
    else:
        path = tmp_path / "fifo.zip"
        os.mkfifo(path)
    with pytest.raises(EdgeresError) as caught:
        verify_bundle(path)
    assert type(caught.value).__module__ == "edgeres.errors"
    assert len(str(caught.value).splitlines()) == 1


def test_verify_zip_with_a_full_or_missing_tmpdir_names_tmpdir(
        fp32_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`edgeres verify b.zip` extracts into TMPDIR: a full one (ENOSPC injected) or a missing
    one is one Error line naming the temporary folder and TMPDIR, not the bundle or stdout."""
    import errno
    import tempfile
    import zipfile

    bundle = tmp_path / "b.zip"
    shutil.make_archive(str(bundle.with_suffix("")), "zip", fp32_bundle.parent, fp32_bundle.name)

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "extractall", full)
    result = CliRunner().invoke(cli, ["verify", str(bundle)])
    line = one_error(result, "temporary folder", "TMPDIR", "No space left on device")
    assert "standard output" not in line and "b.zip is not" not in line
    monkeypatch.undo()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    result = CliRunner().invoke(cli, ["verify", str(bundle)])
    one_error(result, "temporary folder", str(tmp_path / "missing"), "TMPDIR")


def test_probability_bundle_prints_the_models_probabilities_unchanged(tmp_path: Path) -> None:
    """A bundle of a model ending in Softmax prints the model's own probabilities (never a
    softmax of them, which would squash 0.99/0.01 towards 0.73/0.27), in infer.py and
    edgeres predict alike."""
    import onnxruntime as ort

    model = _two_class_probability_model(tmp_path / "fp32.onnx")
    bundle = package.package(model, tmp_path / "bundle").path
    images = sorted((names.calibration_dir() / "cifar10-val").rglob("*.jpg"))[::100][:6]
    out = run_infer(bundle, *map(str, images), "--top-k", "2", "--json")
    assert out.returncode == 0, out.stderr
    p = runtime.load(model)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    raw = session.run(None, {p.meta.input.name: prepare(images, p.meta)})[0]
    got = json.loads(out.stdout)["predictions"]
    for row, item in zip(raw, got, strict=True):
        assert item["indices"] == np.argsort(-row, kind="stable").tolist()
        np.testing.assert_allclose(item["probabilities"], np.sort(row)[::-1], atol=1e-6)
    assert max(max(item["probabilities"]) for item in got) > 0.9  # confident: a 2nd softmax
    # would have capped it at e / (1 + e) = 0.731
