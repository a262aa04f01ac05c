"""The fault matrix, third round (issue 22): hostile records and model files, declared sizes,
hangs, and every input that is also an output.

Each case checks the exit code, the one ``Error:`` line naming the cause, no traceback, and that
nothing was written, replaced or half-written. Devices, FIFOs and full file systems are made in
the test's own folder; nothing here touches the system's own device nodes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from helpers import one_error
from PIL import Image

from edgeres.cli import cli
from edgeres.names import resolve_model_file

FAST_BENCH = ["--runtime", "ort-cpu", "--duration", "0.1", "--rounds", "1", "--warmup", "1",
              "--no-memory"]
EDGERES = [sys.executable, "-m", "edgeres"]


def _run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden temporaries included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _model(tmp_path: Path, name: str = "m.onnx") -> Path:
    model = tmp_path / name
    shutil.copy(resolve_model_file("cifar10"), model)
    return model


def _npz(path: Path, n: int = 8) -> Path:
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:  # a file object: np.savez adds .npz to a name without it
        np.savez(f, inputs=rng.standard_normal((n, 3, 32, 32)).astype(np.float32),
                 labels=rng.integers(0, 10, n))
    return path


def _labels(path: Path) -> Path:
    path.write_text("".join(f"class{i}\n" for i in range(10)))
    return path


def _image(path: Path) -> Path:
    Image.new("RGB", (32, 32), (120, 30, 200)).save(path)
    return path


# --- class: no input is ever an output (issue 22, section 2) ------------------------------------

# (make the inputs in tmp_path, return the argv) for each command and each input it reads; the
# output is the input itself. The first six are the issue's: each exited 0 with its input gone.
SAME_FILE: dict[str, Callable[[Path], list[object]]] = {
    "attach -o MODEL": lambda t: ["attach", _model(t), "-o", t / "m.onnx", "--scale", "1"],
    "attach -o LABELS": lambda t: ["attach", _model(t), "--labels", _labels(t / "l.txt"),
                                   "-o", t / "l.txt"],
    "eval --json DATA": lambda t: ["eval", "cifar10", "--data", _npz(t / "d.npz"),
                                   "--json", t / "d.npz"],
    "bench --json EVAL": lambda t: ["bench", "cifar10", *FAST_BENCH, "--eval", _npz(t / "d.npz"),
                                    "--json", t / "d.npz"],
    "bench --csv LABELS": lambda t: ["bench", _model(t), *FAST_BENCH, "--labels",
                                     _labels(t / "l.txt"), "--csv", t / "l.txt"],
    "bench --markdown CALIB": lambda t: ["bench", "cifar10", *FAST_BENCH, "--calib",
                                         _npz(t / "c.npz"), "--markdown", t / "c.npz"],
    # and the others: every command, every input it reads
    "export -o LABELS": lambda t: ["export", "cifar_resnet20", "--labels", _labels(t / "l.txt"),
                                   "-o", t / "l.txt"],
    "eval --json MODEL": lambda t: ["eval", _model(t), "--data", "cifar10-val", "--limit", 4,
                                    "--json", t / "m.onnx"],
    "eval --json SECOND MODEL": lambda t: ["eval", "cifar10", _model(t), "--data",
                                           "cifar10-val", "--json", t / "m.onnx"],
    "bench --plot MODEL": lambda t: ["bench", _model(t, "m.png"), *FAST_BENCH, "--plot",
                                     t / "m.png"],
    "quantize -o CALIB": lambda t: ["quantize", "cifar10", "--calib", _npz(t / "c.onnx"),
                                    "-o", t / "c.onnx"],
    "quantize report VAL": lambda t: ["quantize", "cifar10", "--calib", "cifar10", "--val",
                                      _npz(t / "q.onnx.quant.json"), "-o", t / "q.onnx"],
    "quantize .bin EVAL": lambda t: ["quantize", "cifar10", "--calib", "cifar10", "--backend",
                                     "openvino", "--eval", _npz(t / "q.bin"), "-o", t / "q.xml"],
    "package -o GOLDEN": lambda t: ["package", "cifar10", "--golden", _npz(t / "g.zip"),
                                    "-o", t / "g.zip"],
    "package -o LABELS": lambda t: ["package", _model(t), "--scale", "1", "--labels",
                                    _labels(t / "l.zip"), "-o", t / "l.zip"],
}


@pytest.mark.parametrize("case", list(SAME_FILE))
def test_an_input_given_as_an_output_is_refused(tmp_path: Path, case: str) -> None:
    """Every path a command reads, given again as one it writes: one line naming it as the
    input, before any work, and every file as it was (each of the issue's six exited 0 with
    its input destroyed)."""
    args = SAME_FILE[case](tmp_path)
    before = _snapshot(tmp_path)
    one_error(_run(*args), "is the input", "would destroy it")
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("spelling", ["dotdot", "symlink", "hardlink"])
@pytest.mark.parametrize("command", ["eval", "bench", "attach"])
def test_an_input_under_another_name_is_still_refused(tmp_path: Path, command: str,
                                                      spelling: str) -> None:
    """The comparison is by file, not by name: `sub/../d.npz`, a symlink to the output, a hard
    link to it."""
    (tmp_path / "sub").mkdir()
    data = _npz(tmp_path / "d.npz") if command != "attach" else _labels(tmp_path / "d.npz")
    other = {"dotdot": tmp_path / "sub" / ".." / "d.npz", "symlink": tmp_path / "link.npz",
             "hardlink": tmp_path / "hard.npz"}[spelling]
    if spelling == "symlink":
        other.symlink_to(data)
    elif spelling == "hardlink":
        other.hardlink_to(data)
    if command == "eval":
        args = ["eval", "cifar10", "--data", other, "--json", data]
    elif command == "bench":
        args = ["bench", "cifar10", *FAST_BENCH, "--eval", other, "--json", data]
    else:
        args = ["attach", _model(tmp_path), "--labels", other, "-o", data]
    before = _snapshot(tmp_path)
    one_error(_run(*args), "is the input")
    assert _snapshot(tmp_path) == before


def test_an_ir_bin_given_as_an_output_is_refused(tmp_path: Path) -> None:
    """`bench m.xml --json m.bin`: the IR's weights are an input too."""
    xml, binary = tmp_path / "m.xml", tmp_path / "m.bin"
    xml.write_text("<net/>")
    binary.write_bytes(b"weights")
    one_error(_run("bench", xml, *FAST_BENCH, "--json", binary), "m.bin", "is the input")
    assert binary.read_bytes() == b"weights"


@pytest.mark.parametrize("command", ["predict", "info", "eval"])
def test_standard_output_appended_to_an_input_is_refused(tmp_path: Path, command: str) -> None:
    """`edgeres predict m.onnx x.png >> m.onnx`: the model is not grown by its own output."""
    model, image = _model(tmp_path), _image(tmp_path / "x.png")
    args = {"predict": ["predict", model, image], "info": ["info", model],
            "eval": ["eval", model, "--data", "cifar10-val", "--limit", "4"]}[command]
    data = model.read_bytes()
    with open(model, "ab") as out:
        p = subprocess.run([*EDGERES, *map(str, args)], stdout=out, stderr=subprocess.PIPE,
                           text=True, timeout=300, check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("Error: standard output is the input")
    assert model.read_bytes() == data
