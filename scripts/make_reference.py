"""Turn a training checkpoint into the shipped reference files and their manifest.

    python scripts/make_reference.py runs/r20-s2/last.pt

Writes into ``edgeres/_data/models/``:
- ``cifar_resnet20-cifar10.pt``: the model's state dict only (no optimizer), loadable with
  ``torch.load(..., weights_only=True)``;
- ``cifar_resnet20-cifar10.onnx``: ``edgeres export`` of it (parity-checked against PyTorch);
- ``cifar_resnet20-cifar10-int8.onnx``: ``edgeres quantize`` of that, calibrated on the
  vendored train subset, fallback tuned on the validation subset, reported on the test split;
- ``manifest.json``: for each file its sha256, size, test top-1 and the command that made it.

Each step runs the ``edgeres`` command line in a subprocess, so the manifest records exactly
what produced each file. The test top-1 figures are measured after the files are written,
on all 10,000 test images, and are reports only: nothing here is chosen on the test split.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from edgeres import __version__  # noqa: E402
from edgeres.data import open_data  # noqa: E402
from edgeres.evaluate import evaluate  # noqa: E402
from edgeres.runtime import load  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from train_cifar import stages_of  # noqa: E402

MODELS = ROOT / "edgeres" / "_data" / "models"
CKPT = MODELS / "cifar_resnet20-cifar10.pt"
FP32 = MODELS / "cifar_resnet20-cifar10.onnx"
INT8 = MODELS / "cifar_resnet20-cifar10-int8.onnx"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _edgeres(*args: str) -> str:
    """Run ``edgeres ARGS`` from the project root; return the command as a user would type it."""
    subprocess.run([sys.executable, "-m", "edgeres", *args], cwd=ROOT, check=True)
    return "edgeres " + shlex.join(args)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _write_weights(training_ckpt: Path) -> dict:
    """Save the model's state dict alone, atomically; return what the manifest says of it."""
    ck = torch.load(training_ckpt, weights_only=True)
    _check_finished(ck, training_ckpt)
    state = ck.get("state_dict", ck)
    history = json.loads(ck.get("history", "[]"))
    fd, tmp = tempfile.mkstemp(dir=MODELS, suffix=".tmp")
    os.close(fd)
    torch.save(dict(state), tmp)
    os.replace(tmp, CKPT)
    last = history[-1] if history else {}
    return {
        "epoch": last.get("epoch", ck.get("epoch")),  # counted across stages
        "training_args": json.loads(ck.get("args", "{}")),
        "train_top1_running": last.get("train_acc"),
        "command": " && ".join(stages_of(ck)),
    }


def _check_finished(ck: dict, path: Path) -> None:
    """Exit unless the run reached the end of its schedule (learning rate 0)."""
    planned = int(json.loads(ck.get("args", "{}")).get("epochs", 0) or 0)
    if "epoch" in ck and planned and ck["epoch"] < planned:
        sys.exit(f"{path} is at epoch {ck['epoch']} of {planned}: a checkpoint from the middle "
                 "of a schedule is not shipped; finish the run with --resume first")


def _test_top1(path: Path) -> float:
    predictor = load(path, threads=2)
    return evaluate(predictor.run, open_data("cifar10-test"), predictor.meta,
                    description=f"test top-1 {path.name}").top1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path, help="runs/<name>/last.pt from train_cifar.py")
    args = ap.parse_args()

    training = _write_weights(args.checkpoint)
    export_cmd = _edgeres("export", "cifar_resnet20", "--weights", _rel(CKPT), "--force", "-o",
                          _rel(FP32))
    # Target x86 (7-bit weights): the shipped file must stay accurate on every x86 CPU, and
    # plain AVX2 ones (no VNNI) saturate VPMADDUBSW's 16-bit sums with full-range weights.
    quantize_cmd = _edgeres(
        "quantize", _rel(FP32), "--calib", "cifar10", "--val", "cifar10-val",
        "--max-drop", "0.5", "--target", "x86", "--force", "-o", _rel(INT8),
    )
    # The quantize step writes its per-layer report next to the model; the package ships the
    # model files only, and the report's figures are in the manifest and in benchmarks/.
    INT8.with_name(INT8.name + ".quant.json").unlink(missing_ok=True)

    fp32_top1, int8_top1 = _test_top1(FP32), _test_top1(INT8)
    files = {
        CKPT.name: {"command": training["command"], "test_top1": fp32_top1,
                    "epoch": training["epoch"], "training_args": training["training_args"],
                    "train_top1_running": training["train_top1_running"]},
        FP32.name: {"command": export_cmd, "test_top1": fp32_top1},
        INT8.name: {"command": quantize_cmd, "test_top1": int8_top1},
    }
    for name, entry in files.items():
        entry.update(sha256=_sha256(MODELS / name), bytes=(MODELS / name).stat().st_size)
    manifest = {
        "schema_version": 1,
        "edgeres_version": __version__,
        "test_data": "cifar10-test (all 10,000 images; reported, never used for decisions)",
        "files": files,
    }
    (MODELS / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"fp32 test top-1 {fp32_top1:.2f}%, int8 {int8_top1:.2f}% "
          f"(drop {fp32_top1 - int8_top1:+.2f} points)")


if __name__ == "__main__":
    main()
