"""LiteRT (backend ``litert``): export parity, the record inside the .tflite, int8 through
ai-edge-quantizer with the int8 tensors quantized from their own parameters, and bad files.

Needs edgeres[litert] (``make test-edge`` builds .venv-edge with it); without it these tests
skip with that reason, except the ones checking what a missing runtime says.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import one_error

from edgeres.cli import cli
from edgeres.errors import DataError, MetadataError, ModelFileError

HAVE_LITERT = (importlib.util.find_spec("ai_edge_litert") is not None
               and importlib.util.find_spec("litert_torch") is not None)
needs_litert = pytest.mark.skipif(
    not HAVE_LITERT, reason="edgeres[litert] is not installed (make test-edge installs it)")

IMAGES = 64  # real validation images compared image by image


def _run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine similarity of matching rows."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    num = (a * b).sum(1)
    return float(np.mean(num / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def _logits(predictor: Any, images: np.ndarray) -> np.ndarray:
    return np.concatenate([predictor.run(images[i:i + 1]) for i in range(len(images))])


@pytest.fixture(scope="module")
def val_images() -> np.ndarray:
    """The first IMAGES validation images, prepared for the shipped CIFAR ResNet-20."""
    from edgeres.data import open_data
    from edgeres.modelfile import onnx_record
    from edgeres.names import resolve_model_file

    meta = onnx_record(resolve_model_file("cifar10"))
    assert meta is not None
    batch = next(open_data("cifar10-val").subset(IMAGES, 0).batches(meta, IMAGES))
    return batch.inputs


@pytest.fixture(scope="module")
def fp32_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped ResNet-20 (cifar10 weights) exported to .tflite through the CLI."""
    if not HAVE_LITERT:
        pytest.skip("edgeres[litert] is not installed (make test-edge installs it)")
    out = tmp_path_factory.mktemp("litert") / "r20.tflite"
    result = _run("export", "cifar_resnet20", "--weights", "cifar10", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "metadata record inside the file" in result.output
    return out


@pytest.fixture(scope="module")
def int8_tflite(fp32_tflite: Path) -> tuple[Path, Any]:
    """fp32_tflite quantized by ai-edge-quantizer on 300 calibration images (train split),
    measured on 300 validation images."""
    from edgeres.calibration import CalibrationSet
    from edgeres.modelfile import edge_record
    from edgeres.quantize import QuantConfig, quantize

    out = fp32_tflite.with_name("r20-int8.tflite")
    meta = edge_record(fp32_tflite)
    config = QuantConfig(samples=300, val="cifar10-val", val_samples=300)
    report = quantize(fp32_tflite, out, CalibrationSet.from_data("cifar10", meta),
                      backend="litert", config=config)
    return out, report


@needs_litert
def test_fp32_export_matches_ort_on_the_shipped_model(fp32_tflite: Path,
                                                       val_images: np.ndarray) -> None:
    """The exported .tflite answers real images as the shipped ONNX model does in ORT."""
    from edgeres import runtime

    lite, ort = runtime.load(fp32_tflite), runtime.load("edgeres/_data/models/"
                                                        "cifar_resnet20-cifar10.onnx")
    assert lite.runtime == "litert-cpu" and lite.executed_precision == "fp32"
    got, want = _logits(lite, val_images), ort.run(val_images)
    scale = float(np.abs(want).max())
    assert float(np.abs(got - want).max()) <= 1e-4 * scale
    assert (got.argmax(1) == want.argmax(1)).all()


@needs_litert
def test_record_travels_inside_the_tflite(fp32_tflite: Path) -> None:
    """The record is in the file's metadata map (no sidecar), with the export's parity."""
    from edgeres.runtimes import for_file

    rt = for_file(fp32_tflite)
    assert rt.name == "litert" and rt.companion_files(fp32_tflite) == []
    record = json.loads(rt.read_record(fp32_tflite) or "{}")
    step = record["provenance"][-1]
    assert step["step"] == "export" and step["exporter"] == "litert-torch"
    assert step["max_rel_err"] < 1e-4 and record["input"]["shape"][0] == 1
    assert not list(fp32_tflite.parent.glob("*.json"))


@needs_litert
@pytest.mark.slow
def test_int8_agrees_with_fp32_on_real_images(int8_tflite: tuple[Path, Any], fp32_tflite: Path,
                                             val_images: np.ndarray) -> None:
    """ai-edge-quantizer's int8 model is int8 inside, keeps top-1 within 2 points on 300
    validation images, and its logits point where fp32's do."""
    from edgeres import runtime

    path, report = int8_tflite
    assert report.backend == "litert" and report.method == "minmax"
    assert report.validation.count == 300 and report.validation.drop <= 2.0
    int8, fp32 = runtime.load(path), runtime.load(fp32_tflite)
    assert int8.executed_precision == "int8" and int8.meta.precision == "int8"
    assert int8.meta.extra["quantization"]["backend"] == "litert"
    got, want = _logits(int8, val_images), _logits(fp32, val_images)
    assert _cosine(got, want) > 0.99
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95


@needs_litert
@pytest.mark.slow
def test_int8_input_is_quantized_not_cast(int8_tflite: tuple[Path, Any], fp32_tflite: Path,
                                          val_images: np.ndarray) -> None:
    """The int8 graph takes int8 tensors: values quantized with the input's scale and zero
    point agree with fp32; the same floats cast to int8 run silently and are far off."""
    from edgeres import runtime

    int8, fp32 = runtime.load(int8_tflite[0]), runtime.load(fp32_tflite)
    backend = int8.backend
    it, inp, out = backend._it, backend._it.get_input_details()[0], backend._out
    assert np.dtype(inp["dtype"]) == np.int8 and inp["quantization"][0] > 0
    scale, zero = out["quantization"]
    cast = []
    for x in val_images:
        it.set_tensor(inp["index"], x[None].astype(np.int8))  # the bug: a cast, not quantized
        it.invoke()
        cast.append((it.get_tensor(out["index"]).astype(np.float32) - zero) * scale)
    want = _logits(fp32, val_images)
    assert _cosine(_logits(int8, val_images), want) > 0.99
    assert _cosine(np.concatenate(cast), want) < 0.95


@needs_litert
@pytest.mark.slow
def test_int8_model_given_integer_input_is_one_error(int8_tflite: tuple[Path, Any]) -> None:
    """Integer arrays handed to an int8 model are refused in one line (it quantizes float
    input itself), by the backend and by the Predictor."""
    from edgeres import runtime

    p = runtime.load(int8_tflite[0])
    x = np.zeros((1, 3, 32, 32), np.int8)
    with pytest.raises(DataError, match="takes prepared float32 input"):
        p.backend.run(x)
    with pytest.raises(DataError, match="does not match the model's float32"):
        p.run(x)


@needs_litert
def test_truncated_or_foreign_tflite_is_one_error(fp32_tflite: Path, tmp_path: Path) -> None:
    """A cut-short .tflite and a file that is not one get one line each, no traceback."""
    data = fp32_tflite.read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[: len(data) // 3])
    other = tmp_path / "other.tflite"
    other.write_bytes(b"\x00" * 64)
    image = next(Path("calibration/cifar10-val/cat").iterdir())
    one_error(_run("predict", str(cut), str(image)), "cut.tflite")
    one_error(_run("predict", str(other), str(image)), "not a LiteRT/TFLite model")
    from edgeres import runtime

    with pytest.raises(ModelFileError):
        runtime.load(cut)


@needs_litert
def test_tflite_without_record_or_not_a_classifier(tmp_path: Path) -> None:
    """A .tflite with no edgeres record names the fix; a graph without an image input is
    refused as not a classifier."""
    import torch

    from edgeres import runtime
    from edgeres.runtimes.litert import convert

    bare = tmp_path / "bare.tflite"
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()).eval()
    bare.write_bytes(convert(net, torch.zeros(1, 3, 8, 8)))
    with pytest.raises(MetadataError, match="carries no edgeres metadata record"):
        runtime.load(bare)
    flat = tmp_path / "flat.tflite"
    flat.write_bytes(convert(torch.nn.Linear(8, 2).eval(), torch.zeros(1, 8)))
    with pytest.raises(ModelFileError, match="2-D input"):
        runtime.load(flat)
    result = _run("quantize", str(bare), "--backend", "litert", "--calib", "cifar10",
                  "-o", str(tmp_path / "q.tflite"))
    one_error(result, "no edgeres metadata record")
    assert not (tmp_path / "q.tflite").exists()


@needs_litert
def test_refused_options_write_nothing(fp32_tflite: Path, tmp_path: Path) -> None:
    """A layer name not in the graph, an .onnx source and an ONNX-only export flag are one
    line each and leave no file."""
    out = tmp_path / "q.tflite"
    one_error(_run("quantize", str(fp32_tflite), "--backend", "litert", "--calib", "cifar10",
                   "--exclude", "/conv1/Conv", "-o", str(out)),
              "no layer '/conv1/Conv'", "output tensor")
    one_error(_run("quantize", "cifar10", "--backend", "litert", "--calib", "cifar10",
                   "-o", str(out)), "not a .tflite model")
    one_error(_run("export", "cifar_resnet20", "--fp16", "-o", str(tmp_path / "h.tflite")),
              "--fp16 applies to ONNX")
    assert not list(tmp_path.iterdir())


@needs_litert
@pytest.mark.slow
def test_max_drop_returns_layers_to_float(fp32_tflite: Path, tmp_path: Path) -> None:
    """With a budget the all-int8 model misses (one calibration image, 0 points), layers go
    back to float as with the other backends: the report names them, and in the written
    .tflite their outputs are float32 while the rest stay int8."""
    from edgeres.calibration import CalibrationSet
    from edgeres.modelfile import edge_record
    from edgeres.quantize import QuantConfig, quantize
    from edgeres.runtimes.litert import _import_interpreter

    out = tmp_path / "fallback.tflite"
    config = QuantConfig(samples=1, val="cifar10-val", val_samples=300, max_drop=0.0)
    report = quantize(fp32_tflite, out, CalibrationSet.from_data("cifar10", edge_record(
        fp32_tflite)), backend="litert", config=config)
    assert report.fallback is not None and len(report.fallback.attempts) > 1
    assert report.float_layers and len(report.layers) == 20  # 19 convolutions and the head
    it = _import_interpreter()(model_path=str(out))
    dtypes = {str(d["name"]): np.dtype(d["dtype"]) for d in it.get_tensor_details()}
    assert all(dtypes[name] == np.float32 for name in report.float_layers)
    kept = [e.name for e in report.layers if not e.float]
    assert kept and all(dtypes[name] == np.int8 for name in kept)



def test_eval_info_and_bench_run_tflite(fp32_tflite: Path, int8_tflite: tuple[Path, Any],
                                        tmp_path: Path) -> None:
    """eval, info and bench take .tflite files: litert-cpu rows state the executed precision,
    an ORT row asked of a .tflite is skipped with the reason."""
    int8 = int8_tflite[0]
    result = _run("eval", str(fp32_tflite), str(int8), "--data", "cifar10-val", "--limit", "100")
    assert result.exit_code == 0, result.output
    assert "(litert-cpu, fp32)" in result.output and "(litert-cpu, int8)" in result.output
    result = _run("info", str(int8))
    assert result.exit_code == 0, result.output
    assert f"{int8}: litert" in result.output and '"precision": "int8"' in result.output
    assert "int8 (quantized from float32" in result.output
    out = tmp_path / "bench.json"
    result = _run("bench", str(fp32_tflite), str(int8), "--runtime", "litert-cpu,ort-cpu",
                  "--warmup", "1", "--iterations", "2", "--rounds", "1", "--no-memory",
                  "--json", str(out))
    assert result.exit_code == 0, result.output
    rows = {(Path(r["model"]).name, r["runtime"]): r for r in json.loads(out.read_text())["rows"]}
    assert rows["r20.tflite", "litert-cpu"]["executed_precision"] == "fp32"
    assert rows["r20-int8.tflite", "litert-cpu"]["executed_precision"] == "int8"
    assert rows["r20.tflite", "litert-cpu"]["status"] == "ok"
    skipped = rows["r20.tflite", "ort-cpu"]
    assert skipped["status"] == "skipped" and "pass the .onnx" in skipped["reason"]


@needs_litert
def test_a_device_runs_the_tflite_without_torch(fp32_tflite: Path) -> None:
    """The LiteRT side is numpy plus ai-edge-litert: a fresh interpreter with torch, onnx,
    litert_torch and ai_edge_quantizer unimportable loads the .tflite and classifies an image
    as ONNX Runtime classifies it with the shipped model."""
    import subprocess

    image = next(Path("calibration/cifar10-val/cat").iterdir())
    code = (
        "import sys\n"
        "for name in ('torch', 'onnx', 'litert_torch', 'ai_edge_quantizer'):\n"
        "    sys.modules[name] = None\n"
        "from edgeres import runtime\n"
        f"p = runtime.load({str(fp32_tflite)!r})\n"
        f"print(p.runtime, p.predict({str(image)!r}, top_k=1)[0].labels[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    from edgeres import runtime

    want = runtime.load("edgeres/_data/models/cifar_resnet20-cifar10.onnx").predict(image)
    assert out.stdout.split()[-2:] == ["litert-cpu", want[0].labels[0]]
