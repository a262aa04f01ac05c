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
