"""The shipped reference model: checkpoint, fp32 and int8 ONNX files agree with each other and
with the figures their manifest quotes, so the three files cannot drift apart."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edgeres import names
from edgeres.data import open_data
from edgeres.evaluate import evaluate, top1_agreement
from edgeres.runtime import load

MODELS = names.package_data("models")
MANIFEST = json.loads((MODELS / "manifest.json").read_text())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _test_logits(path: Path, limit: int | None = None) -> tuple[np.ndarray, float]:
    predictor = load(path, threads=2)
    report = evaluate(predictor.run, open_data("cifar10-test"), predictor.meta, limit=limit)
    return report.logits, report.top1


def test_manifest_hashes_match_the_shipped_files() -> None:
    """Every file the manifest lists is shipped, with the sha256 and size it states."""
    assert MANIFEST["schema_version"] == 1
    assert set(MANIFEST["files"]) == {
        "cifar_resnet20-cifar10.pt", "cifar_resnet20-cifar10.onnx",
        "cifar_resnet20-cifar10-int8.onnx",
    }
    for name, entry in MANIFEST["files"].items():
        path = MODELS / name
        assert _sha256(path) == entry["sha256"], name
        assert path.stat().st_size == entry["bytes"], name
        assert entry["command"].startswith(("edgeres ", "python scripts/train_cifar.py")), name


def test_registered_names_point_at_the_manifest_files() -> None:
    """--weights cifar10 and the model names cifar10/cifar10-int8 select the shipped files."""
    assert names.resolve_weights("cifar10").name == "cifar_resnet20-cifar10.pt"
    assert names.resolve_model_file("cifar10").name == "cifar_resnet20-cifar10.onnx"
    assert names.resolve_model_file("cifar10-int8").name == "cifar_resnet20-cifar10-int8.onnx"


def test_records_chain_checkpoint_to_fp32_to_int8() -> None:
    """The fp32 record hashes the checkpoint; the int8 record's quantize step hashes the fp32."""
    fp32, int8 = load(names.resolve_model_file("cifar10")), load(
        names.resolve_model_file("cifar10-int8"))
    ckpt_sha = MANIFEST["files"]["cifar_resnet20-cifar10.pt"]["sha256"]
    assert fp32.meta.weights_sha256 == ckpt_sha and fp32.meta.precision == "fp32"
    assert int8.meta.precision == "int8" and int8.meta.weights_sha256 == ckpt_sha
    steps = [p["step"] for p in int8.meta.provenance]
    assert steps == ["export", "quantize"]
    quant = int8.meta.provenance[-1]
    assert quant["input_sha256"] == MANIFEST["files"]["cifar_resnet20-cifar10.onnx"]["sha256"]
    assert quant["samples"] <= 500 and quant["calibration_sha256"]


@pytest.mark.slow
def test_reexported_checkpoint_matches_the_shipped_onnx(tmp_path: Path) -> None:
    """Exporting the shipped checkpoint again gives the shipped fp32 model's logits on real
    test images (the two files come from the same weights)."""
    pytest.importorskip("torch")
    from edgeres.export import export_onnx
    from edgeres.models.weights import load_weights
    from edgeres.zoo import zoo_meta

    loaded = load_weights("cifar_resnet20", "cifar10")
    meta = zoo_meta("cifar_resnet20", num_classes=loaded.num_classes,
                    weights_sha256=loaded.sha256)
    fresh = export_onnx(loaded.model, tmp_path / "again.onnx", meta=meta).path
    a, _ = _test_logits(fresh, limit=256)
    b, _ = _test_logits(names.resolve_model_file("cifar10"), limit=256)
    assert np.abs(a - b).max() < 1e-4
    assert top1_agreement(a, b) == 100.0


@pytest.mark.slow
def test_manifest_test_accuracy_is_reproduced() -> None:
    """fp32 and int8 top-1 on all 10,000 test images equal the manifest's figures, and the
    int8 model keeps within 0.5 points of fp32."""
    fp32_logits, fp32_top1 = _test_logits(names.resolve_model_file("cifar10"))
    int8_logits, int8_top1 = _test_logits(names.resolve_model_file("cifar10-int8"))
    files = MANIFEST["files"]
    # A few borderline images may flip on another CPU's kernels: 0.05 points is 5 images.
    assert fp32_top1 == pytest.approx(files["cifar_resnet20-cifar10.onnx"]["test_top1"], abs=0.05)
    assert int8_top1 == pytest.approx(
        files["cifar_resnet20-cifar10-int8.onnx"]["test_top1"], abs=0.1)
    assert fp32_top1 - int8_top1 <= 0.5
    assert top1_agreement(fp32_logits, int8_logits) > 95.0
