"""ExecuTorch (backend ``executorch``): export parity, the record beside the .pte, int8
through PT2E + XNNPACKQuantizer, the process-wide thread count, and bad files.

Needs edgeres[executorch] (``make test-edge`` builds .venv-edge with it); without it these
tests skip with that reason, except the ones checking what a missing runtime says.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import one_error

from edgeres.cli import cli
from edgeres.errors import BackendNotAvailable, MetadataError, ModelFileError

HAVE_EXECUTORCH = importlib.util.find_spec("executorch") is not None
REASON = "edgeres[executorch] is not installed (make test-edge installs it)"
needs_executorch = pytest.mark.skipif(not HAVE_EXECUTORCH, reason=REASON)

IMAGES = 64  # real validation images compared image by image


def _run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def _logits(predictor: Any, images: np.ndarray) -> np.ndarray:
    return np.concatenate([predictor.run(images[i:i + 1]) for i in range(len(images))])


def _image() -> str:
    return str(next(Path("calibration/cifar10-val/cat").iterdir()))


@pytest.fixture(scope="module")
def val_images() -> np.ndarray:
    """The first IMAGES validation images, prepared for the shipped CIFAR ResNet-20."""
    from edgeres.data import open_data
    from edgeres.modelfile import onnx_record
    from edgeres.names import resolve_model_file

    meta = onnx_record(resolve_model_file("cifar10"))
    assert meta is not None
    return next(open_data("cifar10-val").subset(IMAGES, 0).batches(meta, IMAGES)).inputs


@pytest.fixture(scope="module")
def fp32_pte(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped ResNet-20 (cifar10 weights) exported to .pte through the CLI."""
    if not HAVE_EXECUTORCH:
        pytest.skip(REASON)
    out = tmp_path_factory.mktemp("pte") / "r20.pte"
    result = _run("export", "cifar_resnet20", "--weights", "cifar10", "--format", "pte",
                  "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "r20.pte.json beside it" in result.output
    return out


@needs_executorch
def test_fp32_export_matches_ort_on_the_shipped_model(fp32_pte: Path,
                                                       val_images: np.ndarray) -> None:
    """The exported .pte answers real images as the shipped ONNX model does in ORT."""
    from edgeres import runtime

    pte = runtime.load(fp32_pte)
    ort = runtime.load("edgeres/_data/models/cifar_resnet20-cifar10.onnx")
    assert pte.runtime == "executorch-cpu" and pte.executed_precision == "fp32"
    got, want = _logits(pte, val_images), ort.run(val_images)
    assert float(np.abs(got - want).max()) <= 1e-4 * float(np.abs(want).max())
    assert (got.argmax(1) == want.argmax(1)).all()


@needs_executorch
def test_record_travels_beside_the_pte(fp32_pte: Path) -> None:
    """The record is the sidecar <file>.pte.json that companion_files names."""
    from edgeres.runtimes import for_file

    rt = for_file(fp32_pte)
    side = fp32_pte.with_name("r20.pte.json")
    assert rt.name == "executorch" and rt.companion_files(fp32_pte) == [side]
    record = json.loads(side.read_text())
    assert record == json.loads(rt.read_record(fp32_pte) or "{}")
    step = record["provenance"][-1]
    assert step["exporter"] == "executorch (XNNPACK)" and step["max_rel_err"] < 1e-4


@needs_executorch
def test_thread_count_is_fixed_before_any_method_loads(fp32_pte: Path) -> None:
    """The threadpool is sized once per process, before a method loads; another count later
    is refused in one line instead of resetting a pool in use."""
    from edgeres import runtime

    p = runtime.load(fp32_pte)
    pool = p.backend.details["threads"]
    assert isinstance(pool, int) and pool >= 1
    assert runtime.load(fp32_pte, threads=pool).backend.details["threads"] == pool
    with pytest.raises(BackendNotAvailable, match="needs a new process"):
        runtime.load(fp32_pte, threads=pool + 1)


@needs_executorch
@pytest.mark.slow
def test_int8_agrees_with_fp32_on_real_images(fp32_pte: Path, val_images: np.ndarray,
                                             tmp_path: Path) -> None:
    """PT2E + XNNPACKQuantizer on the PyTorch model behind the .pte: the record says int8, the
    sidecar comes with it, top-1 stays within 2 points on 300 validation images and the
    logits point where fp32's do."""
    from edgeres import runtime

    out = tmp_path / "r20-int8.pte"
    result = _run("quantize", str(fp32_pte), "--backend", "executorch", "--calib", "cifar10",
                  "--samples", "64", "--val", "cifar10-val", "-o", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_name("r20-int8.pte.quant.json").read_text())
    assert report["backend"] == "executorch"
    int8, fp32 = runtime.load(out), runtime.load(fp32_pte)
    assert int8.executed_precision == "int8"
    assert int8.meta.extra["quantization"]["validation"]["count"] == 1000
    assert int8.meta.extra["quantization"]["validation"]["drop"] <= 2.0
    got, want = _logits(int8, val_images), _logits(fp32, val_images)
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert float(cos.mean()) > 0.99
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95


@needs_executorch
def test_truncated_pte_and_missing_record_are_one_error(fp32_pte: Path, tmp_path: Path) -> None:
    """A cut-short .pte, and a .pte whose sidecar record is missing, get one line each."""
    from edgeres import runtime

    cut = tmp_path / "cut.pte"
    data = fp32_pte.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    cut.with_name("cut.pte.json").write_text(fp32_pte.with_name("r20.pte.json").read_text())
    one_error(_run("predict", str(cut), _image()), "could not be loaded by ExecuTorch")
    with pytest.raises(ModelFileError):
        runtime.load(cut)
    bare = tmp_path / "bare.pte"
    bare.write_bytes(data)
    with pytest.raises(MetadataError, match="carries no edgeres metadata record"):
        runtime.load(bare)
    one_error(_run("quantize", str(bare), "--backend", "executorch", "--calib", "cifar10",
                   "-o", str(tmp_path / "q.pte")), "bare.pte.json")
    assert not (tmp_path / "q.pte").exists()


@needs_executorch
def test_not_a_classifier_pte(tmp_path: Path) -> None:
    """A program whose input is not one 4-D image is refused as not a classifier."""
    import torch

    from edgeres import runtime
    from edgeres.runtimes.executorch import convert

    flat = tmp_path / "flat.pte"
    flat.write_bytes(convert(torch.nn.Linear(8, 2).eval(), torch.zeros(1, 8)))
    with pytest.raises(ModelFileError, match="2-D input"):
        runtime.load(flat)


@needs_executorch
def test_refused_sources_and_options_write_nothing(fp32_pte: Path, tmp_path: Path) -> None:
    """An ONNX source (ExecuTorch int8 needs the PyTorch model) and --max-drop (no float
    fallback) are one line each and leave no file."""
    out = tmp_path / "q.pte"
    one_error(_run("quantize", "cifar10", "--backend", "executorch", "--calib", "cifar10",
                   "-o", str(out)), "ONNX model", "PyTorch model")
    one_error(_run("quantize", str(fp32_pte), "--backend", "executorch", "--calib", "cifar10",
                   "--val", "cifar10-val", "--max-drop", "0.5", "-o", str(out)),
              "--max-drop", "executorch")
    assert not list(tmp_path.iterdir())
