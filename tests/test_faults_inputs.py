"""The fault matrix, third round (issue 22): hostile records and model files, declared sizes,
hangs, and every input that is also an output.

Each case checks the exit code, the one ``Error:`` line naming the cause, no traceback, and that
nothing was written, replaced or half-written. Devices, FIFOs and full file systems are made in
the test's own folder; nothing here touches the system's own device nodes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from helpers import one_error, small_tmpfs
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


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c.startswith("export")
                                  else c for c in SAME_FILE])  # export imports torch: ~3 s
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


# --- class: a record is untrusted input (issue 22, section 1) ------------------------------------


def _crafted(dst: Path, fault: str) -> Path:
    """The shipped model with its record made hostile in one way (``fault``)."""
    import onnx

    model = onnx.load(str(resolve_model_file("cifar10")))
    prop = next(p for p in model.metadata_props if p.key == "edgeres")
    record = json.loads(prop.value)
    labels = list(record["labels"])
    bad_label = {"rlo": "\u202eexe.txt", "isolate": "cat\u2066dog", "surrogate": "\ud800",
                 "escape": "\x1b[31mred"}
    if fault in bad_label:
        labels[3] = bad_label[fault]
        record["labels"] = labels
    elif fault == "classes":
        record.update(num_classes=1000, labels=[])
    text = json.dumps(record)
    if fault == "digits":
        text = text.replace('"num_classes": 10', '"num_classes": ' + "9" * 5000)
    prop.value = text
    if fault == "two":
        model.metadata_props.add(key="edgeres", value=json.dumps(
            {**record, "labels": [f"other{i}" for i in range(10)]}))
    data = model.SerializeToString()
    if fault == "utf8":  # protobuf strings are UTF-8 on write: swap bytes of the same length in
        data = data.replace(b'"cifar_resnet20"', b'"\xff\xfe\x80ar_resnet20"', 1)
    dst.write_bytes(data)
    return dst


RECORD_FAULTS = {  # fault -> words of the one line
    "digits": ("integer too long",), "utf8": ("not UTF-8", "0xff"),
    "rlo": ("labels[3]", "bidirectional"), "isolate": ("labels[3]", "bidirectional"),
    "surrogate": ("labels[3]",), "escape": ("labels[3]", "control"),
    "two": ("2 edgeres metadata records",), "classes": ("1000 classes", "outputs 10"),
}
RECORD_READERS: dict[str, Callable[[Path, Path], list[object]]] = {
    "info": lambda m, t: ["info", m],
    "predict": lambda m, t: ["predict", m, _image(t / "x.png")],
    "eval": lambda m, t: ["eval", m, "--data", "cifar10-val", "--limit", 4],
    "bench": lambda m, t: ["bench", m, *FAST_BENCH, "--json", t / "b.json"],
    "quantize": lambda m, t: ["quantize", m, "--calib", "cifar10", "--samples", 4, "-o",
                              t / "q.onnx"],
    "package": lambda m, t: ["package", m, "-o", t / "b"],
}


@pytest.mark.parametrize("fault", list(RECORD_FAULTS))
@pytest.mark.parametrize("command", list(RECORD_READERS))
def test_a_hostile_record_is_one_line_in_every_command(tmp_path: Path, command: str,
                                                       fault: str) -> None:
    """A 5,000-digit integer, non-UTF-8 text, a right-to-left override (or isolate, lone
    surrogate, escape code) in a label, two records in one file, or 1000 classes for a
    10-output graph: every command that reads a model refuses it in the same one line and
    writes nothing (quantize wrote an int8 model saying 1000 classes; predict and info read
    different records of one file)."""
    model = _crafted(tmp_path / "m.onnx", fault)
    before = _snapshot(tmp_path)
    result = _run(*RECORD_READERS[command](model, tmp_path))
    if command == "info" and fault == "classes":  # info describes the file, and says so
        assert result.exit_code == 0, result.output
        assert "note: the record says 1000 classes but the graph" in result.output
        return
    line = one_error(result, *RECORD_FAULTS[fault])
    assert "\u202e" not in line and "\x1b" not in line
    after = {k for k in _snapshot(tmp_path) if k != "x.png"}
    if command == "bench" and fault == "classes":  # bench records the failed row it skipped
        rows = json.loads((tmp_path / "b.json").read_text())["rows"]
        assert {r["status"] for r in rows} == {"failed"}
        after.discard("b.json")
    assert after == set(before)


@pytest.mark.parametrize("label", ["\u202eexe.txt", "a\u200fb", "\x1b[2J"])
def test_a_stated_label_with_a_bidi_or_control_character_is_refused(tmp_path: Path,
                                                                    label: str) -> None:
    """--labels FILE follows the record's rule (one rule): no bidi override, no escape code."""
    labels = tmp_path / "l.txt"
    labels.write_text("".join(f"{label if i == 2 else f'c{i}'}\n" for i in range(10)),
                      encoding="utf-8")
    one_error(_run("attach", _model(tmp_path), "--labels", labels, "-o", tmp_path / "o.onnx"),
              "line 3", "printable")
    assert not (tmp_path / "o.onnx").exists()


def test_the_record_reader_follows_only_metadata_props(tmp_path: Path) -> None:
    """The byte-level reader finds the shipped models' one record each, and says nothing
    (None: the runtime judges) of a file that is not a protobuf or is cut short."""
    from edgeres._onnx_record import record_entries

    for name in ("cifar10", "cifar10-int8"):
        (entry,) = record_entries(resolve_model_file(name)) or []
        assert entry.startswith(b"{") and b'"schema_version"' in entry
    assert record_entries(_image(tmp_path / "x.png")) is None
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(resolve_model_file("cifar10").read_bytes()[:5000])
    assert record_entries(cut) is None
    assert record_entries(_crafted(tmp_path / "two.onnx", "two")) is not None


# --- class: a model that outputs NaN or infinity --------------------------------------------


def _broken(dst: Path, value: float) -> Path:
    """The shipped model with the classifier's bias set to ``value`` (NaN or infinity)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(resolve_model_file("cifar10")))
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    init = next(i for i in model.graph.initializer if i.name == gemm.input[2])
    bias = np.full_like(numpy_helper.to_array(init), value)
    init.CopyFrom(numpy_helper.from_array(bias, init.name))
    onnx.save(model, str(dst))
    return dst


NON_FINITE_READERS: dict[str, Callable[[Path, Path], list[object]]] = {
    "predict": lambda m, t: ["predict", m, _image(t / "x.png")],
    "predict --json": lambda m, t: ["predict", m, _image(t / "x.png"), "--json"],
    "eval": lambda m, t: ["eval", m, "--data", "cifar10-val", "--limit", 8],
    "bench": lambda m, t: ["bench", m, *FAST_BENCH],
    "bench --eval": lambda m, t: ["bench", m, *FAST_BENCH, "--eval", "cifar10-val", "--limit", 8],
    "quantize": lambda m, t: ["quantize", m, "--calib", "cifar10", "--samples", 4, "-o",
                              t / "q.onnx"],
    "quantize --backend openvino": lambda m, t: ["quantize", m, "--calib", "cifar10",
                                                 "--samples", 4, "--backend", "openvino",
                                                 "-o", t / "q.xml"],
    "quantize --val": lambda m, t: ["quantize", m, "--calib", "cifar10", "--samples", 4,
                                    "--val", "cifar10-val", "-o", t / "q.onnx"],
}


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("command", list(NON_FINITE_READERS))
def test_a_model_that_outputs_nan_is_one_line(tmp_path: Path, command: str,
                                              value: float) -> None:
    """predict printed `nan airplane` (and NaN in --json), eval reported 10% top-1, bench timed
    it and quantize failed with ORT's assertion or wrote an int8 model of NaNs: now each says
    the model gives NaN or infinity, exit 1, and writes nothing."""
    model = _broken(tmp_path / "m.onnx", value)
    result = _run(*NON_FINITE_READERS[command](model, tmp_path))
    one_error(result, "NaN or infinity")
    assert "NaN," not in result.stdout and not re.search(r"^\s*nan\s", result.stdout, re.M)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("q.")]


# --- class: a path inside a record is never followed out of the model's folder -------------------


def _naming_data(dst: Path, data: str) -> Path:
    """The shipped model with a record naming ``data`` as its calibration data."""
    import onnx

    model = onnx.load(str(resolve_model_file("cifar10")))
    prop = next(p for p in model.metadata_props if p.key == "edgeres")
    prop.value = json.dumps({**json.loads(prop.value),
                             "quantization": {"calibration_data": data}})
    onnx.save(model, str(dst))
    return dst


def _photos(folder: Path) -> Path:
    """A folder of private images (one class), unlike any CIFAR picture."""
    (folder / "private").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (32, 32), (10 * i, 250, 3)).save(folder / "private" / f"p{i}.png")
    return folder


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink-out"])
def test_package_does_not_follow_a_record_path_out_of_the_model_folder(
        tmp_path: Path, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record naming /any/folder (or ../folder, or a link out of the model's folder) as its
    data put those images into the bundle's golden file without a word: now refused in one
    line asking for --golden, and nothing is written."""
    photos = _photos(tmp_path / "photos")
    models = tmp_path / "models"
    models.mkdir()
    if where == "symlink-out":
        (models / "calib").symlink_to(photos)
    named = {"absolute": str(photos), "dotdot": "../photos", "symlink-out": "calib"}[where]
    model = _naming_data(models / "m.onnx", named)
    monkeypatch.chdir(tmp_path)  # a relative path was read from the current directory
    before = _snapshot(tmp_path)
    one_error(_run("package", model, "-o", tmp_path / "b.zip"), "--golden", "model's folder")
    assert _snapshot(tmp_path) == before


@pytest.mark.slow
@pytest.mark.parametrize("given", [False, True])
def test_package_says_which_golden_images_it_used(tmp_path: Path, given: bool,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Data inside the model's folder, named relative to it, is used from any current folder
    (and said); --golden overrides the record."""
    models = tmp_path / "models"
    _photos(models / "calib")
    model = _naming_data(models / "m.onnx", "calib")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    extra = ["--golden", "cifar10-val"] if given else []
    result = _run("package", model, "-o", tmp_path / "b", *extra)
    assert result.exit_code == 0, result.output
    want = "cifar10-val (--golden)" if given else f"{(models / 'calib').resolve()} (named in"
    assert f"golden images: {want}" in result.output
    with np.load(tmp_path / "b" / "golden.npz") as g:
        info = json.loads(str(g["info"]))
        pixels = g["pixels"]
    assert info["source"].startswith("64 images of cifar10-val" if given else "3 images of")
    if not given:  # the three images of the model's folder, green as drawn
        assert len(pixels) == 3 and (pixels[..., 1] == 250).all()


# --- class: external data outside the model's folder ------------------------------------------


def _external(folder: Path) -> Path:
    """The shipped model saved with its large weights in ``m.onnx.data`` beside it."""
    import onnx

    folder.mkdir(exist_ok=True)
    model = onnx.load(str(resolve_model_file("cifar10")))
    onnx.save(model, str(folder / "m.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="m.onnx.data", size_threshold=1024)
    return folder / "m.onnx"


def _pointing(tmp_path: Path, where: str) -> Path:
    """A model in ``tmp_path/models`` whose first external tensor points ``where``."""
    import onnx

    model = _external(tmp_path / "models")
    weights = model.with_name("m.onnx.data")
    outside = tmp_path / "outside.data"
    shutil.copy(weights, outside)
    location = {"dotdot": "../outside.data", "absolute": str(outside), "symlink": "link.data",
                "fifo": "pipe.data", "device": "dev.data", "missing": "gone.data",
                "huge": "m.onnx.data"}[where]
    if where == "symlink":
        (model.parent / "link.data").symlink_to(outside)
    elif where == "fifo":
        os.mkfifo(model.parent / "pipe.data")
    elif where == "device":
        try:  # the null device's numbers, in the test's own folder
            os.mknod(model.parent / "dev.data", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs root")
    proto = onnx.load(str(model), load_external_data=False)
    tensor = next(t for t in proto.graph.initializer if t.external_data)
    for entry in tensor.external_data:
        if entry.key == "location":
            entry.value = location
        if entry.key == "length" and where == "huge":
            entry.value = str(10**12)
    model.write_bytes(proto.SerializeToString())
    return model


EXTERNAL_READERS: dict[str, Callable[[Path, Path], list[object]]] = {
    "info": lambda m, t: ["info", m],
    "predict": lambda m, t: ["predict", m, _image(t / "x.png")],
    "eval": lambda m, t: ["eval", m, "--data", "cifar10-val", "--limit", 4],
    "bench": lambda m, t: ["bench", m, *FAST_BENCH],
    "quantize": lambda m, t: ["quantize", m, "--calib", "cifar10", "--samples", 4, "-o",
                              t / "q.onnx"],
    "package": lambda m, t: ["package", m, "-o", t / "b.zip"],
    "attach": lambda m, t: ["attach", m, "--scale", "1", "-o", t / "a.onnx"],
}
EXTERNAL_WORDS = {"dotdot": "not a plain file name", "absolute": "not a plain file name",
                  "symlink": "leads out of the model's folder", "fifo": "not a regular file",
                  "device": "not a regular file", "missing": "does not exist",
                  "huge": "1,000,000,000,000"}


@pytest.mark.parametrize("where", list(EXTERNAL_WORDS))
@pytest.mark.parametrize("command", list(EXTERNAL_READERS))
def test_external_data_outside_the_model_folder_is_one_line(tmp_path: Path, command: str,
                                                            where: str) -> None:
    """External data at ../, an absolute path, a link out, a FIFO (a hang), a device, a
    missing file or a 1 TB length: one line naming the tensor and the place, before any
    reader opens it (the opset step raised an onnx ValidationError traceback), nothing
    written."""
    model = _pointing(tmp_path, where)
    before = _snapshot(tmp_path / "models") if where not in ("fifo", "device") else None
    one_error(_run(*EXTERNAL_READERS[command](model, tmp_path)), "keeps its data in",
              EXTERNAL_WORDS[where])
    assert not [p for p in tmp_path.iterdir() if p.name in ("q.onnx", "b.zip", "a.onnx")]
    if before is not None:
        assert _snapshot(tmp_path / "models") == before


def test_a_model_with_valid_external_data_runs_and_package_says_why_not(tmp_path: Path) -> None:
    """Weights in m.onnx.data beside the model: predict and info work as for one file; package
    names the external file and what to do (it named a temporary file and said 're-export');
    an output over m.onnx.data is refused as an input."""
    model, image = _external(tmp_path / "models"), _image(tmp_path / "x.png")
    predicted = _run("predict", model, image, "--json")
    reference = _run("predict", "cifar10", image, "--json")
    assert predicted.exit_code == 0, predicted.output
    assert (json.loads(predicted.stdout)["predictions"][0]["indices"]
            == json.loads(reference.stdout)["predictions"][0]["indices"])
    assert _run("info", model).exit_code == 0
    line = one_error(_run("package", model, "-o", tmp_path / "b.zip"), "m.onnx.data",
                     "weights inside")
    assert "edgeres.package." not in line and "re-export" not in line
    weights = (tmp_path / "models" / "m.onnx.data").read_bytes()
    one_error(_run("bench", model, *FAST_BENCH, "--json", tmp_path / "models" / "m.onnx.data"),
              "is the input")
    assert (tmp_path / "models" / "m.onnx.data").read_bytes() == weights
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "x.png"]


# --- class: declared sizes are checked before anything is allocated ---------------------------


@pytest.fixture
def memory_8gb(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine says 8 GB are available, whatever it has: the refusals are deterministic
    and nothing large is ever allocated."""
    import edgeres._resources as res

    monkeypatch.setattr(res, "available_memory", lambda: 8 * 10**9)


def _fixed_input(dst: Path, dims: tuple[int, ...], record: bool = True) -> Path:
    """The shipped model with its input (and output batch) fixed to ``dims``."""
    import onnx

    model = onnx.load(str(resolve_model_file("cifar10")))
    for value, shape in ((model.graph.input[0], dims), (model.graph.output[0], dims[:1])):
        for i, d in enumerate(shape):
            axis = value.type.tensor_type.shape.dim[i]
            axis.Clear()
            axis.dim_value = d
    if not record:
        del model.metadata_props[:]
    onnx.save(model, str(dst))
    return dst


DECLARED_GRAPHS = {"60000x60000": (1, 3, 60000, 60000), "batch 1e9": (10**9, 3, 32, 32)}
DECLARED_READERS: dict[str, Callable[[Path, Path], list[object]]] = {
    **{k: v for k, v in RECORD_READERS.items() if k != "info"},
    "predict --mean": lambda m, t: ["predict", m, _image(t / "x.png"), "--mean", "0.5",
                                    "--std", "0.25"],
    "attach": lambda m, t: ["attach", m, "--mean", "0.5", "--std", "0.25", "-o", t / "a.onnx"],
}


@pytest.mark.usefixtures("memory_8gb")
@pytest.mark.parametrize("graph", list(DECLARED_GRAPHS))
@pytest.mark.parametrize("command", list(DECLARED_READERS))
def test_a_graph_declaring_an_input_too_large_is_refused_with_the_figure(
        tmp_path: Path, command: str, graph: str) -> None:
    """A fixed 60000x60000 input or a fixed batch of 10**9 (with its record, or none and the
    preprocessing stated) is refused with the estimate and what is available, before any batch
    of that shape is built (numpy tried to allocate 80 GiB to 22 TiB)."""
    stated = command in ("predict --mean", "attach")
    model = _fixed_input(tmp_path / "m.onnx", DECLARED_GRAPHS[graph], record=not stated)
    before = _snapshot(tmp_path)
    shown = "x".join(map(str, DECLARED_GRAPHS[graph]))
    one_error(_run(*DECLARED_READERS[command](model, tmp_path)), f"declares an input of {shown}",
              "8.0 GB is available")
    assert {k for k in _snapshot(tmp_path) if k != "x.png"} == set(before)


@pytest.mark.usefixtures("memory_8gb")
def test_info_describes_a_graph_too_large_to_run_and_says_so(tmp_path: Path) -> None:
    """info only reads the file: it shows the graph and notes the figure, exit 0."""
    result = _run("info", _fixed_input(tmp_path / "m.onnx", (1, 3, 60000, 60000)))
    assert result.exit_code == 0, result.output
    assert "[1, 3, 60000, 60000]" in result.output and "8.0 GB is available" in result.output


def _header_only(dst: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    """A .npy (one shape) or .npz whose headers declare ``shapes`` and which hold no data."""
    import io
    import zipfile

    from numpy.lib import format as npformat

    def header(shape: tuple[int, ...]) -> bytes:
        out = io.BytesIO()
        npformat.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False,
                                              "shape": shape})
        return out.getvalue()

    if dst.suffix == ".npy":
        dst.write_bytes(header(next(iter(shapes.values()))))
    else:
        with zipfile.ZipFile(dst, "w") as z:
            for key, shape in shapes.items():
                z.writestr(f"{key}.npy", header(shape))
    return dst


HEADER_READERS: dict[str, Callable[[Path, Path], list[object]]] = {
    "eval --data": lambda d, t: ["eval", "cifar10", "--data", d],
    "bench --eval": lambda d, t: ["bench", "cifar10", *FAST_BENCH, "--eval", d],
    "quantize --calib": lambda d, t: ["quantize", "cifar10", "--calib", d, "-o", t / "q.onnx"],
    "quantize --val": lambda d, t: ["quantize", "cifar10", "--calib", "cifar10", "--val", d,
                                    "-o", t / "q.onnx"],
    "package --golden": lambda d, t: ["package", "cifar10", "--golden", d, "-o", t / "b"],
}


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
@pytest.mark.parametrize("command", list(HEADER_READERS))
def test_an_array_header_declaring_1e12_samples_is_one_line(tmp_path: Path, command: str,
                                                            suffix: str) -> None:
    """A 128-byte file whose header declares 10**12 samples: one line with the declared and
    the stored size, before numpy allocates (it asked for 12 PB)."""
    data = _header_only(tmp_path / f"d{suffix}", {"inputs": (10**12, 3, 32, 32),
                                                  "labels": (10**12,)})
    one_error(_run(*HEADER_READERS[command](data, tmp_path)), "1000000000000x3x32x32",
              "truncated")
    assert sorted(p.name for p in tmp_path.iterdir()) == [data.name]


@pytest.mark.parametrize("command", list(HEADER_READERS))
def test_arrays_larger_than_memory_are_refused_with_the_figure(
        tmp_path: Path, command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real arrays that do not fit in the memory available: the figure, before loading."""
    import edgeres._resources as res

    data = _npz(tmp_path / "d.npz", 64)
    monkeypatch.setattr(res, "available_memory", lambda: 500_000)  # 0.79 MB of inputs
    one_error(_run(*HEADER_READERS[command](data, tmp_path)), "inputs (64x3x32x32 float32)",
              "of memory but 0 MB is available")


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_open_data_on_a_header_bomb_raises_only_edgeres_errors(tmp_path: Path,
                                                               suffix: str) -> None:
    """The library's open_data raises DataError, never MemoryError or numpy's own errors."""
    from edgeres.data import open_data
    from edgeres.errors import DataError

    with pytest.raises(DataError, match="truncated"):
        open_data(_header_only(tmp_path / f"d{suffix}", {"inputs": (10**12, 3, 32, 32)}))


# --- class: hangs: a FIFO or device given as an image, absurd thread counts ----------------------


def _special(path: Path, kind: str) -> Path:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        try:  # the null device's numbers, in the test's own folder: reads give nothing
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs root")
    return path


_LIBRARY_PREDICT = ("import sys\nfrom edgeres.runtime import load\nfrom edgeres.errors import "
                    "EdgeresError\ntry:\n    load('{model}').predict(sys.argv[1])\nexcept "
                    "EdgeresError as e:\n    print('EdgeresError:', e)\n")


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize("how", ["predict", "predict --json", "library"])
def test_a_fifo_or_device_given_as_an_image_is_one_line_not_a_hang(tmp_path: Path, how: str,
                                                                   kind: str) -> None:
    """A FIFO waited for a writer forever (predict, the library's predict): now it is refused
    at once, opened without blocking, as is a device node."""
    image = _special(tmp_path / "x.png", kind)
    if how == "library":
        code = _LIBRARY_PREDICT.format(model=resolve_model_file("cifar10"))
        p = subprocess.run([sys.executable, "-c", code, str(image)], capture_output=True,
                           text=True, timeout=120, check=False)
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
        assert p.stdout.startswith("EdgeresError: image") and kind.upper()[:4] in p.stdout.upper()
        return
    p = subprocess.run([*EDGERES, "predict", "cifar10", str(image), *how.split()[1:]],
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: image") and ("FIFO" if kind == "fifo" else "device") in last
    assert p.stdout == ""


def test_a_fifo_among_a_folders_images_is_left_out_not_waited_for(tmp_path: Path) -> None:
    """eval --data FOLDER with a FIFO named like an image: only the three images are scored,
    and nothing waits on the FIFO."""
    folder = tmp_path / "data" / "cat"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (32, 32), (90, 60 + i, 40)).save(folder / f"{i}.png")
    _special(folder / "pipe.png", "fifo")
    p = subprocess.run([*EDGERES, "eval", "cifar10", "--data", str(tmp_path / "data")],
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr
    assert re.search(r": 3 images \(\d unreadable skipped\)", p.stdout), p.stdout


@pytest.mark.parametrize("threads", [100000, 10**30])
@pytest.mark.parametrize("command", ["predict", "eval", "bench"])
def test_thread_counts_beyond_the_cpus_are_capped_by_one_rule(tmp_path: Path, command: str,
                                                              threads: int) -> None:
    """--threads 100000 hung eval and 10**30 was a pybind11 TypeError: every command caps it
    at the usable CPUs with the same note, and runs."""
    from edgeres._resources import usable_cpus

    args = {"predict": ["predict", "cifar10", _image(tmp_path / "x.png")],
            "eval": ["eval", "cifar10", "--data", "cifar10-val", "--limit", 8],
            "bench": ["bench", "cifar10", *FAST_BENCH, "--json", tmp_path / "b.json"]}[command]
    result = _run(*args, "--threads", threads)
    assert result.exit_code == 0, result.output
    assert f"--threads {threads} is more than the {usable_cpus()} CPUs" in result.output
    if command == "eval":
        assert re.search(r"top-1 \d+\.\d+% \(\d+/8\)", result.stdout)
    if command == "bench":
        rows = json.loads((tmp_path / "b.json").read_text())["rows"]
        assert {r["threads"] for r in rows} == {usable_cpus()}


def _closed_port() -> str:
    """HOST:PORT of a local port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"


@pytest.mark.parametrize("address", ["closed", "127.0.0.1:1", "ray://closed"])
@pytest.mark.parametrize("command", ["eval", "bench", "quantize"])
def test_an_unreachable_cluster_is_one_line_not_a_hang(tmp_path: Path, command: str,
                                                       address: str) -> None:
    """--cluster at a port nothing listens on: a TCP probe with a timeout says so in one
    line, before Ray is started or any work is done (ray.init retried for minutes)."""
    where = address.replace("closed", _closed_port()) if "closed" in address else address
    args = {"eval": ["eval", "cifar10", "--data", "cifar10-val", "--json", tmp_path / "e.json"],
            "bench": ["bench", "cifar10", *FAST_BENCH, "--json", tmp_path / "b.json"],
            "quantize": ["quantize", "cifar10", "--calib", "cifar10", "--val", "cifar10-val",
                         "-o", tmp_path / "q.onnx"]}[command]
    one_error(_run(*args, "--cluster", where), f"cannot connect to the Ray cluster at {where}",
              "ray start --head")
    assert list(tmp_path.iterdir()) == []


# --- class: signals during quantize are raised at a safe point --------------------------------


def test_a_signal_inside_deferred_work_is_raised_at_the_next_safe_point(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside deferred() the handler only records (a raise inside a native callback aborted the
    process); the next progress step raises it, and the block's end does if no step came."""
    from edgeres import _interrupt
    from edgeres._progress import track

    monkeypatch.setattr(_interrupt, "received", [])
    monkeypatch.setattr(_interrupt, "quiet", lambda: None)
    seen: list[int | str] = []
    with pytest.raises(_interrupt.Signalled) as caught, _interrupt.deferred():
        for i in track(range(5), total=5, description="work"):
            seen.append(i)
            if i == 1:
                _interrupt._first(signal.SIGTERM, None)  # as the signal would: no raise here
                seen.append("after")
    assert seen == [0, 1, "after"] and caught.value.signum == signal.SIGTERM
    monkeypatch.setattr(_interrupt, "received", [])
    with pytest.raises(_interrupt.Signalled), _interrupt.deferred():
        _interrupt._first(signal.SIGINT, None)
        seen.append("no step")
    assert seen[-1] == "no step"
    with pytest.raises(_interrupt.Signalled):  # outside deferred(): raised at once, as before
        _interrupt._first(signal.SIGINT, None)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.4, 1.5])
@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_sigterm_anywhere_in_quantize_exits_143_and_leaves_no_temporaries(
        tmp_path: Path, backend: str, delay: float) -> None:
    """SIGTERM at several points of quantize (both backends, a TMPDIR of the test's own):
    exit 143 with 'Terminated.', never C++'s terminate (exit -6), and no edgeres.quant.*
    folder or half-written output left."""
    import time

    tmpdir, out = tmp_path / "tmp", tmp_path / "out"
    tmpdir.mkdir()
    out.mkdir()
    p = subprocess.Popen([*EDGERES, "quantize", "cifar10", "--calib", "cifar10", "--val",
                          "cifar10-val", "--samples", "300", "--backend", backend, "-o",
                          str(out / ("m.onnx" if backend == "ort" else "m.xml"))],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env={**os.environ, "TMPDIR": str(tmpdir)})
    deadline = time.monotonic() + 120
    while not any(tmpdir.glob("edgeres.quant.*")):
        assert p.poll() is None, p.communicate()[1]
        assert time.monotonic() < deadline, "quantize never made its temporary folder"
        time.sleep(0.02)
    time.sleep(delay)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=300)
    text = err.decode()
    assert p.returncode == 143, text
    assert "terminate called" not in text and "Traceback" not in text, text
    assert text.strip().splitlines()[-1] == "Terminated."
    assert list(tmpdir.iterdir()) == [] and list(out.iterdir()) == []


# --- class: a full TMPDIR or a file-size limit during quantize names the temporary folder ------


@pytest.fixture
def tight_tmpdir(tmp_path: Path) -> Iterator[Path]:
    """A 1.6 MB tmpfs of the test's own with 0.25 MB free: enough for Python's probe of
    TMPDIR, not for a copy of the 1.1 MB model (skipped where mount is refused)."""
    with small_tmpfs(tmp_path / "tight", "1600k", 1350 << 10) as mnt:
        yield mnt


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_quantize_with_a_full_tmpdir_names_the_temporary_folder(
        tmp_path: Path, tight_tmpdir: Path, backend: str) -> None:
    """ORT said the *model* 'could not be prepared ... re-export it', OpenVINO raised
    'basic_ios::clear: iostream error': now one line naming TMPDIR and its free space."""
    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.run([*EDGERES, "quantize", "cifar10", "--calib", "cifar10", "--samples", "4",
                        "--backend", backend, "-o",
                        str(out / ("q.onnx" if backend == "ort" else "q.xml"))],
                       capture_output=True, text=True, timeout=300, check=False,
                       env={**os.environ, "TMPDIR": str(tight_tmpdir)})
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: the temporary folder {tight_tmpdir} ran out of room"), last
    assert f"TMPDIR={tight_tmpdir}" in last and "MB free" in last and "re-export" not in last
    assert sorted(p.name for p in tight_tmpdir.iterdir()) == ["filler"]
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_quantize_past_a_file_size_limit_names_the_limit(tmp_path: Path) -> None:
    """`ulimit -f 500` (512,000 bytes): the temporary copy of the model passes it; the line
    names the limit, not the model."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (512_000, resource.RLIM_INFINITY))

    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    p = subprocess.run([*EDGERES, "quantize", "cifar10", "--calib", "cifar10", "--samples", "4",
                        "-o", str(tmp_path / "q.onnx")], capture_output=True, text=True,
                       timeout=300, check=False, preexec_fn=limit,  # noqa: PLW1509 - a limit only
                       env={**os.environ, "TMPDIR": str(tmpdir)})
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert "file-size limit (ulimit -f) of 512,000 bytes" in last and "re-export" not in last
    assert list(tmpdir.iterdir()) == [] and not (tmp_path / "q.onnx").exists()


def test_a_full_output_disk_keeps_naming_the_output(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while the output itself is written (TMPDIR roomy) still names the output, not
    the temporary folder: the two causes get their own lines."""
    import errno

    import edgeres._fs as fs

    def full(path: Path, mode: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fs, "_publish", full)
    line = one_error(_run("quantize", "cifar10", "--calib", "cifar10", "--samples", 4, "-o",
                          tmp_path / "q.onnx"), "cannot write", "No space left on device")
    assert "temporary folder" not in line


# --- class: paths the file system or the runtimes cannot take ---------------------------------

LONG = "a" * 10_000
PATH_READERS: dict[str, list[object]] = {
    "predict MODEL": ["predict", LONG, "IMAGE"],
    "predict IMAGE": ["predict", "cifar10", LONG],
    "info": ["info", LONG],
    "eval MODEL": ["eval", LONG, "--data", "cifar10-val"],
    "eval --data": ["eval", "cifar10", "--data", LONG],
    "bench": ["bench", LONG, *FAST_BENCH],
    "quantize --calib": ["quantize", "cifar10", "--calib", LONG, "-o", "OUT/q.onnx"],
    "package": ["package", LONG, "-o", "OUT/b"],
}


@pytest.mark.parametrize("command", list(PATH_READERS))
def test_a_10000_character_path_is_one_short_line(tmp_path: Path, command: str) -> None:
    """A path longer than the file system allows was an OSError traceback: now one line,
    with the path cut short, and nothing written."""
    image = _image(tmp_path / "x.png")
    args = [str(image) if a == "IMAGE" else str(a).replace("OUT", str(tmp_path))
            for a in PATH_READERS[command]]
    line = one_error(_run(*args))
    if command == "bench":  # bench names an unknown model (or zoo name) with suggestions
        assert line.startswith("Error: unknown model")
    else:
        assert len(line) < 400
        assert "cannot be used as a path" in line or "not a readable" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


@pytest.mark.parametrize("command", ["predict", "info", "eval", "quantize", "package"])
def test_a_model_path_that_is_not_utf8_is_one_line(tmp_path: Path, command: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A model file named in another encoding (bytes 0xff) reached ONNX Runtime, which
    refused its own argument types; now the name is the one line, before any work."""
    monkeypatch.chdir(tmp_path)
    name = os.fsdecode(b"m\xff.onnx")
    shutil.copy(resolve_model_file("cifar10"), tmp_path / name)
    image = _image(tmp_path / "x.png")
    table: dict[str, list[object]] = {"predict": ["predict", name, image], "info": ["info", name],
            "eval": ["eval", name, "--data", "cifar10-val"],
            "quantize": ["quantize", name, "--calib", "cifar10", "-o", tmp_path / "q.onnx"],
            "package": ["package", name, "-o", tmp_path / "b"]}
    one_error(_run(*table[command]), "not valid UTF-8", "rename the file")
    assert sorted(os.listdir(tmp_path)) == sorted([name, "x.png"])


def test_library_name_resolution_raises_only_edgeres_errors() -> None:
    """names.resolve_* (which load's callers use) raise UnknownNameError, never OSError."""
    from edgeres import names
    from edgeres.errors import EdgeresError

    for resolve in (names.resolve_model_file, names.resolve_data, names.resolve_weights):
        with pytest.raises(EdgeresError, match="cannot be used as a path"):
            resolve(LONG)


@pytest.fixture
def tight_output(tmp_path: Path) -> Iterator[Path]:
    """A 600 kB tmpfs of the test's own with 148 kB free: too little for a model's IR."""
    with small_tmpfs(tmp_path / "outdisk", "600k", 450 << 10) as mnt:
        yield mnt


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_quantize_onto_a_full_disk_names_the_output(tight_output: Path, backend: str) -> None:
    """OpenVINO's 'basic_ios::clear: iostream error' traceback: now the one line names the
    user's output (not the hidden temporary beside it) and the lack of space."""
    out = tight_output / ("q.onnx" if backend == "ort" else "q.xml")
    line = one_error(_run("quantize", "cifar10", "--calib", "cifar10", "--samples", 4,
                          "--backend", backend, "-o", out),
                     f"cannot write {out}:", "No space left on device")
    assert f"{tight_output}/." not in line
    assert sorted(p.name for p in tight_output.iterdir()) == ["filler"]


@pytest.mark.slow
@pytest.mark.parametrize("out", ["b.zip", "b"])
def test_package_onto_a_full_disk_names_the_free_space(tight_output: Path, out: str) -> None:
    """`package -o b.zip` on a full disk: the line names the output and how much is free."""
    one_error(_run("package", "cifar10", "-o", tight_output / out), "cannot write",
              "No space left on device", f"MB free in {tight_output}")
    assert sorted(p.name for p in tight_output.iterdir()) == ["filler"]


# --- the library itself: runtime.load and Predictor.predict judge inputs as the commands do ------


@pytest.mark.parametrize("case", ["long path", "two records", "external ../", "external fifo",
                                  "nan", "inf"])
def test_the_library_load_and_predict_refuse_as_the_commands_do(tmp_path: Path,
                                                                  case: str) -> None:
    """runtime.load raised OSError for a 10,000-character path and read the last of two records;
    Predictor.predict returned NaN probabilities: each is now one EdgeresError naming it."""
    from edgeres import runtime
    from edgeres.errors import EdgeresError

    image = _image(tmp_path / "x.png")
    if case == "long path":
        path, words = tmp_path / ("m" * 10_000 + ".onnx"), "pass a shorter path"
    elif case == "two records":
        path, words = _crafted(tmp_path / "m.onnx", "two"), "2 edgeres metadata records"
    elif case.startswith("external"):
        where = "dotdot" if case.endswith("../") else "fifo"
        path, words = _pointing(tmp_path, where), EXTERNAL_WORDS[where]
    else:
        path, words = _broken(tmp_path / "m.onnx", float(case)), "NaN or infinity"
    with pytest.raises(EdgeresError, match=re.escape(words)) as caught:
        runtime.load(path).predict([image])
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 600
