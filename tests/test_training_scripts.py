"""scripts/train_cifar.py and scripts/training_report.py: stages number on from the shipped
weights with their lineage, a sparse test curve, and a curve kept in git across lost runs."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeres import names
from edgeres.models import create_model

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = names.package_data("models") / "cifar_resnet20-cifar10.pt"
MANIFEST = json.loads((SHIPPED.parent / "manifest.json").read_text())


def _tiny_cifar(folder: Path) -> Path:
    """train.tar.gz and test.tar.gz of 16 random 32x32 JPEGs each in two classes."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for split in ("train", "test"):
        with tarfile.open(folder / f"{split}.tar.gz", "w:gz") as tar:
            for i in range(16):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    buf, "JPEG")
                info = tarfile.TarInfo(f"{split}/{('cat', 'dog')[i % 2]}/{i}.jpg")
                info.size = buf.tell()
                buf.seek(0)
                tar.addfile(info, buf)
    return folder


def _train(*args: str | Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "scripts" / "train_cifar.py"), "--batch", "8",
           "--threads", "1", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)


def _script(name: str):
    """scripts/<name>.py imported as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_a_stage_from_the_shipped_weights_numbers_on_and_keeps_the_lineage(
        tmp_path: Path) -> None:
    """--init from the shipped weights: epochs number on, the lineage's commands are kept and
    the weights start from the checkpoint."""
    data, out = _tiny_cifar(tmp_path / "data"), tmp_path / "run"
    _train("--data", data, "--out", out, "--init", SHIPPED, "--epochs", "3", "--lr", "0.01",
           "--eval-every", "2")
    ck = torch.load(out / "last.pt", weights_only=True)
    shipped_epochs = MANIFEST["files"][SHIPPED.name]["epoch"]
    hist = json.loads(ck["history"])
    assert [h["epoch"] for h in hist] == [shipped_epochs + e for e in (1, 2, 3)]
    # Test top-1 on the epochs whose overall number --eval-every divides, and on the last.
    measured = [(shipped_epochs + e) % 2 == 0 or e == 3 for e in (1, 2, 3)]
    assert [h["test_acc"] is not None for h in hist] == measured
    assert all(0 <= h["test_acc"] <= 100 for h in hist if h["test_acc"] is not None)
    stages = json.loads(ck["stages"])
    assert stages[:-1] == MANIFEST["files"][SHIPPED.name]["command"].split(" && ")
    assert f"--init {SHIPPED}" in stages[-1] and {h["stage"] for h in hist} == {len(stages)}
    # The weights really came from the shipped checkpoint: a small lr keeps them far closer to
    # it than a fresh initialisation is.
    start = torch.load(SHIPPED, weights_only=True)["fc.weight"]
    fresh = create_model("cifar_resnet20").state_dict()["fc.weight"]
    moved = (ck["state_dict"]["fc.weight"] - start).norm()
    assert moved < 0.25 * (fresh - start).norm()


@pytest.mark.slow
def test_a_bare_state_dict_without_a_manifest_entry_is_refused(tmp_path: Path) -> None:
    """--init with weights whose lineage is unknown stops with one line, no traceback."""
    data = _tiny_cifar(tmp_path / "data")
    bare = tmp_path / "weights.pt"
    torch.save(torch.load(SHIPPED, weights_only=True), bare)
    with pytest.raises(subprocess.CalledProcessError) as err:
        _train("--data", data, "--out", tmp_path / "run", "--init", bare, "--epochs", "1")
    assert "no manifest entry" in err.value.stderr and "Traceback" not in err.value.stderr


def test_the_kept_curve_supplies_only_the_epochs_before_the_checkpoint(tmp_path: Path) -> None:
    """The kept training curve fills in only the epochs before a checkpoint's own history."""
    report = _script("training_report")
    kept = tmp_path / "training_history.json"
    row = {"train_loss": 1.0, "train_acc": 50.0, "test_acc": 40.0, "seconds": None}
    kept.write_text(json.dumps([{"epoch": e, "stage": 1, **row} for e in (10, 20, 30)]))
    stage2 = [{"epoch": e, "stage": 2, **row, "seconds": 9.0} for e in (21, 22)]
    whole = report._whole_curve(stage2, kept)
    assert [h["epoch"] for h in whole] == [10, 20, 21, 22]
    assert json.loads(kept.read_text()) == whole
    # A checkpoint that holds the whole curve replaces the kept one entirely.
    full = [{"epoch": e, "stage": 1, **row} for e in (1, 2)]
    assert report._whole_curve(full, kept) == full


def test_cutout_zeroes_one_clipped_square_in_every_channel() -> None:
    """Cutout zeroes one square of at most 16 px per image, the same in every channel."""
    cut_out = _script("train_cifar").cut_out
    out = cut_out(torch.ones(200, 3, 32, 32), 16, torch.Generator().manual_seed(0))
    zero = out == 0
    assert torch.equal(zero[:, 0], zero[:, 1]) and torch.equal(zero[:, 0], zero[:, 2])
    areas = []
    for mask in zero[:, 0]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        # One solid rectangle, at most 16 on a side, exactly 16 where it misses the border.
        assert mask.sum() == len(rows) * len(cols) and mask[rows][:, cols].all()
        assert len(rows) <= 16 and len(cols) <= 16
        for idx in (rows, cols):
            assert len(idx) == idx[-1] - idx[0] + 1
            if 0 < idx[0] and idx[-1] < 31:
                assert len(idx) == 16
        areas.append(int(mask.sum()))
    # Centres are uniform over the image, so a square is clipped about half the time per axis.
    assert 0.1 < sum(a == 256 for a in areas) / len(areas) < 0.5
    assert min(areas) >= 8 * 8
