"""Tests for edgeres.modelfile: the one place a model file's record is read (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeres import calibration, modelfile, names, runtime
from edgeres.errors import ModelFileError

MODEL = names.resolve_model_file("cifar10")


def test_onnx_record_reads_the_fitted_record() -> None:
    """onnx_record gives the record the runtime loads (and calibration keeps no copy of it)."""
    assert not hasattr(calibration, "onnx_record") and not hasattr(calibration, "model_record")
    record = modelfile.onnx_record(MODEL)
    assert record is not None and record == runtime.load(MODEL).meta
    assert modelfile.model_record(MODEL) == record


def test_a_missing_or_broken_file_is_a_model_file_error(tmp_path: Path) -> None:
    """A missing path and a non-ONNX file both raise ModelFileError naming the file."""
    with pytest.raises(ModelFileError, match="does not exist"):
        modelfile.onnx_record(tmp_path / "none.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="bad.onnx"):
        modelfile.onnx_record(bad)


def test_open_model_file_names_the_runtime_record_and_size(tmp_path: Path) -> None:
    """open_model_file: the format's runtime, the stored record checked, files and size; an
    IR counts its .bin and reads its record from rt_info without OpenVINO's parser."""
    opened = modelfile.open_model_file(MODEL)
    assert opened.runtime == "ort" and opened.files == (MODEL,)
    assert opened.size_bytes == MODEL.stat().st_size
    assert opened.meta == runtime.load(MODEL).meta and opened.record_text == opened.meta.to_json()
    ov = pytest.importorskip("openvino")
    model = ov.Core().read_model(str(MODEL))
    model.set_rt_info(opened.record_text, ["edgeres"])
    ov.save_model(model, str(tmp_path / "m.xml"), compress_to_fp16=False)
    ir = modelfile.open_model_file(tmp_path / "m.xml")
    assert ir.runtime == "openvino" and ir.files == (tmp_path / "m.xml", tmp_path / "m.bin")
    assert ir.size_bytes == sum(f.stat().st_size for f in ir.files) and ir.meta == opened.meta


@pytest.mark.parametrize(("name", "error"), [
    ("none.onnx", "does not exist"), ("folder.onnx", "is a folder"), ("m.pt", "not a model file"),
    ("bad.onnx", "not a readable ONNX model"), ("bad.xml", "not a readable OpenVINO IR"),
])
def test_open_model_file_refuses_with_one_line(tmp_path: Path, name: str, error: str) -> None:
    """Missing, a folder, an unknown suffix, a corrupt file: a ModelFileError naming it."""
    path = tmp_path / name
    if name.startswith("folder"):
        path.mkdir()
    elif not name.startswith("none"):
        path.write_bytes(b"\x00not a model")
    with pytest.raises(ModelFileError, match=error) as info:
        modelfile.open_model_file(path)
    assert "\n" not in str(info.value)


def test_quantization_section_is_a_typed_field() -> None:
    """ModelMeta.quantization reads the int8 record's section by field; a float model has
    none, and junk types read as None."""
    meta = modelfile.open_model_file(names.resolve_model_file("cifar10-int8")).meta
    assert meta is not None
    q = meta.quantization
    assert q is not None and q.target == meta.extra["quantization"]["target"] == "x86"
    assert q.backend == "ort" and q.calibration_data == meta.extra["quantization"][
        "calibration_data"]
    float_meta = modelfile.open_model_file(MODEL).meta
    assert float_meta is not None and float_meta.quantization is None
    odd = meta.evolve(extra={"quantization": {"target": 3, "validation": {"data": "v"}}})
    assert odd.quantization is not None
    assert odd.quantization.target is None and odd.quantization.validation_data == "v"
