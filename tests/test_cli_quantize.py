"""`edgeres quantize` end to end: artefacts and printed numbers, or one-line errors and no file."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import onnx
import pytest
from click.testing import CliRunner, Result

from edgeres.cli import cli
from edgeres.meta import read_onnx_meta
from edgeres.names import calibration_dir, resolve_model_file


def _run(*args: str | int | float | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _eval_folder(root: Path, per_class: int = 4) -> Path:
    """A small labelled ImageFolder (train-split validation images)."""
    for cls in sorted(p.name for p in (calibration_dir() / "cifar10-val").iterdir() if p.is_dir()):
        (root / cls).mkdir(parents=True)
        for f in sorted((calibration_dir() / "cifar10-val" / cls).iterdir())[:per_class]:
            shutil.copy(f, root / cls / f.name)
    return root


def test_quantize_writes_a_checked_int8_model_and_report(tmp_path: Path) -> None:
    """The command writes a valid QDQ model with its record and prints what it measured."""
    out = tmp_path / "r20-int8.onnx"
    result = _run("quantize", "cifar10", "--calib", "cifar10", "--samples", 32, "--eval",
                  _eval_folder(tmp_path / "eval"), "-o", out)
    assert result.exit_code == 0, result.output
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    meta = read_onnx_meta(onnx.load(str(out)))
    assert meta is not None
    assert meta.precision == "int8" and meta.extra["quantization"]["samples"] == 32
    assert "calibration: 32 images from cifar10 (0 unreadable skipped)" in result.output
    assert "activations uint8" in result.output and "weights int8 per-channel" in result.output
    found = re.search(r"evaluation on .* \((\d+) images\): fp32 top-1 ([\d.]+)%, int8 ([\d.]+)%",
                      result.output)
    assert found and int(found[1]) == 40, result.output
    report = json.loads((tmp_path / "r20-int8.onnx.quant.json").read_text())
    assert report["evaluation"]["fp32_top1"] == pytest.approx(float(found[2]), abs=0.01)
    assert report["evaluation"]["int8_top1"] == pytest.approx(float(found[3]), abs=0.01)
    assert "/layer3/layer3.2/conv2/Conv" in result.output  # the per-layer SQNR table
    assert f"report {tmp_path / 'r20-int8.onnx.quant.json'}" in result.output


def test_options_reach_the_library_as_one_config(tmp_path: Path) -> None:
    """Every option lands in QuantConfig; the record-less model gets the stated preprocessing."""
    bare = _bare_model(tmp_path)
    with mock.patch("edgeres.quantize.quantize") as quantize, \
            mock.patch("edgeres.cli._quantize._render_quant"):
        result = _run("quantize", bare, "--calib", "cifar10", "--backend", "openvino",
                      "--target", "x86", "--method", "percentile", "--samples", 10,
                      "--per-tensor", "--exclude", "/conv1/Conv", "--val", "cifar10-val",
                      "--max-drop", 0.5, "--preset", "mixed", "--mean", "0.5,0.5,0.5",
                      "--std", "0.2,0.2,0.2", "--input-size", 32, "-o", tmp_path / "m.xml")
    assert result.exit_code == 0, result.output
    (src, dst, calib), kwargs = quantize.call_args
    config = kwargs["config"]
    assert (src, dst, kwargs["backend"]) == (bare, tmp_path / "m.xml", "openvino")
    assert (config.target, config.method, config.samples, config.per_channel) == (
        "x86", "percentile", 10, False)
    assert config.exclude == ("/conv1/Conv",) and config.max_drop == 0.5
    assert config.val == "cifar10-val" and config.preset == "mixed"
    assert calib.meta.preprocess.mean == (0.5, 0.5, 0.5) and calib.meta.input_size == (32, 32)


def _bare_model(tmp_path: Path, name: str = "cifar10") -> Path:
    proto = onnx.load(str(resolve_model_file(name)))
    del proto.metadata_props[:]
    bare = tmp_path / f"bare-{name}.onnx"
    onnx.save(proto, str(bare))
    return bare


def _bad_input(tmp_path: Path, case: str, request: pytest.FixtureRequest
               ) -> list[str | int | Path]:
    """The quantize arguments of one bad-input ``case`` (files it needs made under tmp_path)."""
    model = str(resolve_model_file("cifar10"))
    out = str(tmp_path / "out" / "m.onnx")
    (tmp_path / "out").mkdir(exist_ok=True)
    given: dict[str, list[str | int | Path]] = {  # nothing to make first
        "missing-calib": [model, "--calib", str(tmp_path / "nowhere"), "-o", out],
        "unknown-calib": [model, "--calib", "imagenet", "-o", out],
        "int8": [str(resolve_model_file("cifar10-int8")), "--calib", "cifar10", "-o", out],
        "missing-dir": [model, "--calib", "cifar10", "-o", str(tmp_path / "no" / "m.onnx")],
        "budget-without-val": [model, "--calib", "cifar10", "--max-drop", "0.5", "-o", out],
    }
    if case == "fp16":  # the session's fp16 export (conftest.shipped_fp16)
        return [str(request.getfixturevalue("shipped_fp16")), "--calib", "cifar10", "-o", out]
    return given[case] if case in given else _made_input(tmp_path, case, model, out)


def _made_input(tmp_path: Path, case: str, model: str, out: str) -> list[str | int | Path]:
    if case == "not-onnx":
        (tmp_path / "m.txt").write_text("hello")
        return [str(tmp_path / "m.txt"), "--calib", "cifar10", "-o", out]
    if case == "corrupt":
        (tmp_path / "c.onnx").write_bytes(b"\x08\x07garbage")
        return [str(tmp_path / "c.onnx"), "--calib", "cifar10", "-o", out]
    if case == "empty-folder":
        (tmp_path / "empty").mkdir()
        return [model, "--calib", str(tmp_path / "empty"), "-o", out]
    if case == "wrong-shape":
        np.savez(tmp_path / "x.npz", inputs=np.zeros((4, 3, 16, 16), np.float32))
        return [model, "--calib", str(tmp_path / "x.npz"), "--samples", 4, "-o", out]
    if case == "no-record":
        return [str(_bare_model(tmp_path)), "--calib", "cifar10", "-o", out]
    assert case == "int8-no-record"  # found from the graph's QDQ nodes
    return [str(_bare_model(tmp_path, "cifar10-int8")), "--calib", "cifar10",
            *("--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25"), "-o", out]


BAD = {
    "not-onnx": "not an ONNX model",
    "corrupt": "not a readable ONNX model",
    "missing-calib": "neither an existing path nor a registered name",
    "unknown-calib": "cifar10-val",
    "empty-folder": "contains no images",
    "wrong-shape": "the model expects",
    "no-record": "--mean R,G,B --std R,G,B --input-size S",
    "int8": "already quantized (its metadata record says int8)",
    "int8-no-record": "already quantized (it has DequantizeLinear, QuantizeLinear nodes)",
    "fp16": "stores fp16 weights; quantize the fp32 model",
    "missing-dir": "does not exist; create it first",
    "budget-without-val": "pass --val DATA",
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_error_and_leaves_nothing(tmp_path: Path, case: str,
                                                        request: pytest.FixtureRequest) -> None:
    """Each bad input exits 1 with a single 'Error:' line, no traceback and no output file."""
    result = _run("quantize", *_bad_input(tmp_path, case, request))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and BAD[case] in errors[0], result.stderr
    assert not any((tmp_path / "out").iterdir())
    assert not (tmp_path / "no").exists()


def test_unwritable_output_folder_fails_before_calibrating(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only output folder is reported up front, not after minutes of calibration."""
    import edgeres._fs as fs

    monkeypatch.setattr(fs.os, "access", lambda path, mode: Path(path) != tmp_path)
    with mock.patch("edgeres.calibration.CalibrationSet.select") as select:
        result = _run("quantize", "cifar10", "--calib", "cifar10", "-o", tmp_path / "m.onnx")
    assert result.exit_code == 1 and "is not writable" in result.stderr, result.output
    select.assert_not_called()
    assert list(tmp_path.iterdir()) == []
