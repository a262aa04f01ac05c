"""`edgeres export` and `edgeres info` end to end: artefacts, or one-line errors and no file."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgeres.cli import cli
from edgeres.meta import read_onnx_meta
from edgeres.models import create_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A 7-class cifar_resnet20 state dict with non-trivial BN statistics."""
    torch.manual_seed(5)
    model = create_model("cifar_resnet20", num_classes=7)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("ck") / "r20.pt"
    torch.save({"state_dict": model.state_dict(), "epoch": 10}, path)
    return path


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


def _parity_numbers(output: str) -> dict[str, float]:
    found = re.search(r"max abs err (\S+), max rel err (\S+), top-1 agreement ([\d.]+)%", output)
    assert found, output
    return {"abs": float(found[1]), "rel": float(found[2]), "top1": float(found[3])}


def test_export_with_weights_and_labels_writes_a_verified_model(tmp_path, checkpoint):
    """export writes a checked ONNX file carrying labels, checkpoint hash and parity numbers."""
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class {c}\n" for c in "abcdefg") + "\n", encoding="utf-8")
    out = tmp_path / "r20.onnx"
    result = _run("export", "cifar_resnet20", "--weights", str(checkpoint), "--labels",
                  str(labels), "--simplify", "--uint8-input", "-o", str(out))
    assert result.exit_code == 0, result.output
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    meta = read_onnx_meta(model)
    assert meta is not None and meta.num_classes == 7
    assert meta.labels == tuple(f"class {c}" for c in "abcdefg")
    assert meta.weights_sha256 == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert meta.input.dtype == "uint8" and meta.provenance[-1]["simplify"] is True
    numbers = _parity_numbers(result.stdout)
    assert numbers["rel"] < 1e-5 and numbers["top1"] == 100.0
    assert numbers["abs"] == pytest.approx(meta.provenance[-1]["max_abs_err"], rel=1e-2)
    assert "export time:" in result.stdout and str(out) in result.stdout


def test_export_without_weights_warns_and_uses_a_fixed_seed(tmp_path, caplog):
    """No --weights: a warning that accuracy is meaningless, and the same random model twice."""
    files = [tmp_path / "a.onnx", tmp_path / "b.onnx"]
    with caplog.at_level(logging.WARNING):
        for f in files:
            assert _run("export", "tiny_resnet", "--opset", "13", "-o", str(f)).exit_code == 0
    assert "accuracy is meaningless" in caplog.text
    a, b = (onnx.load(str(f)) for f in files)
    assert [i.raw_data for i in a.graph.initializer] == [i.raw_data for i in b.graph.initializer]
    record = read_onnx_meta(a)
    assert record is not None and record.weights_sha256 is None


def test_labels_without_weights_set_the_class_count(tmp_path):
    """No checkpoint: a 3-line labels file gives a 3-class head, record and output."""
    labels = _write(tmp_path / "labels.txt", b"red\ngreen\nblue\n")
    out = tmp_path / "rgb.onnx"
    result = _run("export", "tiny_resnet", "--labels", str(labels), "-o", str(out))
    assert result.exit_code == 0, result.output
    proto = onnx.load(str(out))
    meta = read_onnx_meta(proto)
    assert meta is not None
    assert meta.num_classes == 3 and meta.labels == ("red", "green", "blue")
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert dims[-1].dim_value == 3


@pytest.mark.slow
def test_export_input_size_mean_std_and_fixed_batch(tmp_path):
    """--input-size HxW, --mean/--std and --batch N reach the graph and the record."""
    out = tmp_path / "r45.onnx"
    result = _run("export", "resnet45", "--input-size", "32x64", "--mean", "0.5,0.5,0.5",
                  "--std", "0.25,0.25,0.25", "--batch", "2", "-o", str(out))
    assert result.exit_code == 0, result.output
    meta = read_onnx_meta(onnx.load(str(out)))
    assert meta is not None
    assert meta.input.shape == (2, 3, 32, 64)
    assert meta.preprocess.mean == (0.5,) * 3 and meta.preprocess.std == (0.25,) * 3
    assert "n/a (feature map)" in result.stdout


def test_info_prints_record_io_and_node_counts(tmp_path, checkpoint):
    """info shows the record, inputs/outputs with shapes and dtypes, opset and node counts."""
    out = tmp_path / "r20.onnx"
    exported = _run("export", "cifar_resnet20", "--weights", str(checkpoint), "-o", str(out))
    assert exported.exit_code == 0, exported.output
    result = _run("info", str(out))
    assert result.exit_code == 0, result.output
    assert "opset 17" in result.stdout
    assert re.search(r"input\s+input\s+\[batch, 3, 32, 32\]\s+float32", result.stdout)
    assert re.search(r"output\s+logits\s+\[batch, 7\]\s+float32", result.stdout)
    model = onnx.load(str(out))
    convs = sum(n.op_type == "Conv" for n in model.graph.node)
    assert f"nodes: {len(model.graph.node)} (" in result.stdout
    assert f"Conv {convs}" in result.stdout
    assert '"schema_version": 1' in result.stdout and '"step": "export"' in result.stdout


def test_info_takes_shipped_names_and_notes_a_graph_resized_after_export(reshaped_shipped):
    """`info cifar10-int8` reads the shipped file; a graph fixed to 48x48 under a 32x32 record
    gets a note that edgeres follows the graph, and one with 1 channel a note that the record
    is another model's (info still shows both)."""
    shipped = _run("info", "cifar10-int8")
    assert shipped.exit_code == 0, shipped.output
    assert '"precision": "int8"' in shipped.stdout and "note:" not in shipped.stdout
    resized = _run("info", str(reshaped_shipped(48)))
    assert resized.exit_code == 0, resized.output
    assert "note: the graph takes 48x48 images, not the record's 32x32; edgeres resizes to " \
           "48x48 (resize 48)" in resized.stdout
    other = _run("info", str(reshaped_shipped(48, channels=1)))
    assert other.exit_code == 0 and "note: the graph takes 1 channel(s)" in other.stdout


def test_info_reads_openvino_ir_xml(tmp_path):
    """info on an IR .xml prints its record from rt_info, inputs and layer counts."""
    from edgeres.zoo import zoo_meta

    record = zoo_meta("cifar_resnet20").to_json()
    xml = tmp_path / "m.xml"
    import xml.sax.saxutils as su

    xml.write_text(
        '<?xml version="1.0"?><net name="m" version="11"><layers>'
        '<layer id="0" name="input" type="Parameter"><data element_type="f32" shape="?,3,32,32"/>'
        '<output><port id="0" precision="FP32"><dim>-1</dim><dim>3</dim><dim>32</dim>'
        '<dim>32</dim></port></output></layer>'
        '<layer id="1" name="logits" type="Result"><input><port id="0" precision="FP32">'
        "<dim>-1</dim><dim>10</dim></port></input></layer></layers>"
        f'<rt_info><edgeres value={su.quoteattr(record)}/></rt_info></net>',
        encoding="utf-8",
    )
    (tmp_path / "m.bin").write_bytes(b"\0" * 100)
    result = _run("info", str(xml))
    assert result.exit_code == 0, result.output
    assert "openvino-ir" in result.stdout and '"name": "cifar_resnet20"' in result.stdout
    assert re.search(r"input\s+input\s+\[\?, 3, 32, 32\]\s+f32", result.stdout)
    assert "Parameter 1" in result.stdout and "Result 1" in result.stdout


def _assert_one_line_error(result, directory: Path, *, pattern: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert re.search(pattern, errors[0]), errors[0]
    assert list(directory.iterdir()) == []  # neither the output nor a temporary file


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def _bad_inputs(tmp: Path, out_dir: Path, checkpoint: Path) -> dict[str, tuple[list[str], str]]:
    """name → (arguments, pattern of the error line); inputs in ``tmp``, output in ``out_dir``."""
    out = ["-o", str(out_dir / "out.onnx")]
    text = _write(tmp / "notes.pt", b"just some text\n")
    evil = tmp / "evil.pt"
    torch.save({"x": _Evil()}, evil)
    wrong = tmp / "r32.pt"
    torch.save(create_model("cifar_resnet32").state_dict(), wrong)
    mis = create_model("cifar_resnet20").state_dict()
    mis["layer3.0.conv1.weight"] = torch.zeros(64, 32, 5, 5)
    torch.save(mis, tmp / "mis.pt")
    return {
        "unknown model": (["export", "resnet_18", *out], r"unknown model 'resnet_18'.*resnet18"),
        "missing weights": (["export", "cifar_resnet20", "--weights", str(tmp / "no.pt"), *out],
                            "does not exist"),
        "text weights": (["export", "cifar_resnet20", "--weights", str(text), *out],
                         "not a PyTorch checkpoint"),
        "unsafe pickle": (["export", "cifar_resnet20", "--weights", str(evil), *out],
                          "refused as unsafe"),
        "missing keys": (["export", "cifar_resnet20", "--weights", str(wrong), *out],
                         "unexpected keys layer1.3"),
        "shape mismatch": (["export", "cifar_resnet20", "--weights", str(tmp / "mis.pt"), *out],
                           r"layer3\.0\.conv1\.weight is \(64, 32, 5, 5\).*\(64, 32, 3, 3\)"),
        "conflicting classes": (["export", "cifar_resnet20", "--weights", str(checkpoint),
                                 "--num-classes", "10", *out], "disagrees"),
        "unwritable output": (["export", "tiny_resnet", "-o", "/nonexistent/dir/x.onnx"],
                              "does not exist; create it first"),
        "opset 12": (["export", "tiny_resnet", "--opset", "12", *out], "use 13 to 21"),
        "zero input size": (["export", "tiny_resnet", "--input-size", "0", *out],
                            "sizes must be positive"),
        "negative input size": (["export", "tiny_resnet", "--input-size", "-32", *out],
                                "sizes must be positive"),
        "bad batch": (["export", "tiny_resnet", "--batch", "0", *out], "batch 0 is invalid"),
        "superscript batch": (["export", "tiny_resnet", "--batch", "\u00b2", *out],
                              "batch '\u00b2' is invalid; use 'dynamic'"),
        "non-utf8 labels": (["export", "tiny_resnet", "--labels",
                             str(_write(tmp / "latin1.txt", "caf\u00e9\n".encode("latin-1"))),
                             *out], r"latin1\.txt is not UTF-8 text \(byte 0xe9.*save it as UTF-8"),
        "labels count": (["export", "tiny_resnet", "--labels", str(text), "--num-classes", "10",
                          *out], "1 labels given for 10 classes"),
        "info missing": (["info", str(tmp / "none.onnx")],
                         r"neither an existing path nor a registered name \(cifar10, "
                         r"cifar10-int8\)"),
        "info corrupt": (["info", str(_write(tmp / "bad.onnx", b"\x08\x07garbage" * 50))],
                         "not (a readable|an) ONNX model"),
        "info wrong type": (["info", str(text)], r"not a model file edgeres reads \(\.pt\)"),
    }


_CASES = [
    "unknown model", "missing weights", "text weights", "unsafe pickle", "missing keys",
    "shape mismatch", "conflicting classes", "unwritable output", "opset 12", "zero input size",
    "negative input size", "bad batch", "superscript batch", "labels count", "non-utf8 labels",
    "info missing", "info corrupt", "info wrong type",
]


@pytest.mark.parametrize("case", _CASES)
def test_bad_input_is_one_error_line_and_no_file(tmp_path, checkpoint, case, capsys):
    """Each bad input exits 1 with a single 'Error:' line, no traceback and no output file."""
    inputs, out_dir = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out_dir.mkdir()
    args, pattern = _bad_inputs(inputs, out_dir, checkpoint)[case]
    result = _run(*args)
    _assert_one_line_error(result, out_dir, pattern=pattern)
    assert "code ran" not in result.output + capsys.readouterr().out


def test_info_without_onnx_falls_back_to_onnxruntime(tmp_path, checkpoint, monkeypatch):
    """In the light install (no onnx package) info still prints the record and the I/O."""
    out = tmp_path / "r20.onnx"
    exported = _run("export", "cifar_resnet20", "--weights", str(checkpoint), "-o", str(out))
    assert exported.exit_code == 0, exported.output
    import edgeres.describe as describe

    real = describe.importlib.util.find_spec
    monkeypatch.setattr(describe.importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnx" else real(name, *a))
    result = _run("info", str(out))
    assert result.exit_code == 0, result.output
    assert "nodes: not counted (read with onnxruntime" in result.stdout
    assert re.search(r"output\s+logits\s+\[batch, 7\]\s+float32", result.stdout)
    assert '"step": "export"' in result.stdout
