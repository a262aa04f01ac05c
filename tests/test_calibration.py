"""Tests for edgeres.calibration: sample draw, fixed batches, skipped images, hashes, adapters."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import onnx
import pytest

from edgeres.calibration import CalibrationSet, nncf_dataset, ort_reader
from edgeres.errors import DataError, MetadataError, ModelFileError, UnknownNameError
from edgeres.meta import InputSpec, ModelMeta
from edgeres.modelfile import model_record
from edgeres.names import calibration_dir, resolve_model_file
from edgeres.zoo import family_labels, family_preprocess

META = ModelMeta(name="cifar_resnet20", family="cifar", num_classes=10,
                 labels=family_labels("cifar", 10), input=InputSpec(shape=("batch", 3, 32, 32)),
                 preprocess=family_preprocess("cifar", (32, 32)))


def _folder(tmp_path: Path, per_class: int = 3) -> Path:
    root = tmp_path / "calib"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for f in sorted((calibration_dir() / "cifar10-calib" / cls).iterdir())[:per_class]:
            shutil.copy(f, root / cls / f.name)
    return root


def test_folder_yields_fixed_batches_and_counts_unreadable(tmp_path: Path) -> None:
    """A corrupt image is skipped and counted; batches re-chunk to the batch size."""
    root = _folder(tmp_path)
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    calib = CalibrationSet.from_data(root, META, batch_size=4)
    shapes = [feed["input"].shape for feed in calib]
    assert shapes == [(4, 3, 32, 32), (2, 3, 32, 32)]
    assert calib.stats.count == 6 and calib.stats.skipped == 1
    assert all(feed["input"].dtype == np.float32 for feed in calib)


def test_fixed_batch_model_gets_full_batches_filled_from_the_start(tmp_path: Path) -> None:
    """A model with batch 4 always gets 4 samples; the filler repeats the first ones."""
    x = np.random.default_rng(0).standard_normal((6, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    fixed = dataclasses.replace(META, input=InputSpec(shape=(4, 3, 32, 32)))
    calib = CalibrationSet.from_data(tmp_path / "x.npy", fixed, batch_size=8)
    batches = [feed["input"] for feed in calib]
    assert [b.shape[0] for b in batches] == [4, 4]
    np.testing.assert_array_equal(batches[1][:2], x[4:6])
    np.testing.assert_array_equal(batches[1][2:], x[:2])
    assert calib.stats.count == 6  # the filler is not counted


def test_select_is_deterministic_and_hash_identifies_the_samples() -> None:
    """The same seed gives the same samples and sha256; another seed gives another hash."""
    calib = CalibrationSet.from_data("cifar10", META)
    a, b, c = calib.select(16, seed=0), calib.select(16, seed=0), calib.select(16, seed=1)
    assert a.stats.count == 16 and a.stats.sha256 == b.stats.sha256
    assert a.stats.sha256 != c.stats.sha256
    first = next(iter(a))["input"]
    assert np.array_equal(first, next(iter(a))["input"])  # cached pass gives the same arrays


def test_npz_of_wrong_shape_is_refused_and_nan_arrays_are_refused(tmp_path: Path) -> None:
    """Arrays that do not fit the model's input, or hold NaN, are errors, not bad ranges."""
    x = np.zeros((4, 3, 16, 16), np.float32)
    np.savez(tmp_path / "small.npz", inputs=x)
    with pytest.raises(DataError, match="expects"):
        list(CalibrationSet.from_data(tmp_path / "small.npz", META))
    y = np.zeros((4, 3, 32, 32), np.float32)
    y[1, 0, 0, 0] = np.inf
    np.savez(tmp_path / "inf.npz", inputs=y)
    with pytest.raises(DataError, match="NaN or Inf"):
        CalibrationSet.from_data(tmp_path / "inf.npz", META)


def test_empty_folder_unknown_name_and_all_unreadable_are_errors(tmp_path: Path) -> None:
    """No images, an unknown name (listing valid ones) and only-corrupt images all fail."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        CalibrationSet.from_data(tmp_path / "empty", META)
    with pytest.raises(UnknownNameError, match="cifar10-val"):
        CalibrationSet.from_data("imagenet-calib", META)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"nope")
    with pytest.raises(DataError, match="1 unreadable skipped"):
        list(CalibrationSet.from_data(bad, META))


def test_adapters_end_and_give_single_samples_to_nncf() -> None:
    """The ORT reader returns None after the last batch; NNCF gets one sample per item."""
    calib = CalibrationSet.from_data("cifar10", META).select(5, batch_size=2)
    reader = ort_reader(calib)
    sizes = []
    while (feed := reader.get_next()) is not None:
        sizes.append(len(feed["input"]))
    assert sizes == [2, 2, 1]
    items = list(nncf_dataset(calib).get_inference_data())
    assert len(items) == 5 and items[0]["input"].shape == (1, 3, 32, 32)


def test_stated_preprocessing_replaces_only_the_stated_fields_of_a_record(tmp_path: Path) -> None:
    """--std alone, or --input-size alone, on a model with a record changes just that field."""
    src = tmp_path / "any-size.onnx"  # the shipped graph with a free image size
    proto = onnx.load(str(resolve_model_file("cifar10")))
    del proto.graph.value_info[:]
    for dim, name in zip(proto.graph.input[0].type.tensor_type.shape.dim[2:], "hw", strict=True):
        dim.dim_param = name
    onnx.save(proto, str(src))
    record = model_record(src)
    meta = model_record(src, std=(0.3, 0.3, 0.3))
    assert meta.preprocess.std == (0.3, 0.3, 0.3) and meta.preprocess.mean == record.preprocess.mean
    assert meta.input == record.input and meta.labels == record.labels
    imagenet = record.evolve(preprocess=dataclasses.replace(record.preprocess, resize=256,
                                                            crop=(224, 224)))
    # The shipped graph takes 32x32; keep the stand-in 224 record from being fitted back to it.
    with mock.patch("edgeres.calibration.ModelMeta.from_json", return_value=imagenet), \
            mock.patch.object(ModelMeta, "fitted_to", lambda self, shape: self):
        resized = model_record(src, input_size=(112, 112))
    assert resized.preprocess.crop == (112, 112) and resized.preprocess.resize == 128
    assert resized.input.shape == ("batch", 3, 112, 112)
    assert resized.preprocess.interpolation == record.preprocess.interpolation
    with pytest.raises(MetadataError, match="need 3 values each"):
        model_record(src, mean=(0.5,), std=(0.5,))


def test_model_record_reads_the_record_or_needs_stated_preprocessing(tmp_path: Path) -> None:
    """A record is read back; without one, --mean/--std are required and then used."""
    src = resolve_model_file("cifar10")
    assert model_record(src).name == "cifar_resnet20"
    proto = onnx.load(str(src))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(MetadataError, match="--mean"):
        model_record(bare)
    meta = model_record(bare, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert meta.input.name == "input" and meta.input_size == (32, 32)
    assert meta.num_classes == 10 and meta.preprocess.mean == (0.5, 0.5, 0.5)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="not a readable ONNX"):
        model_record(tmp_path / "junk.onnx")
    with pytest.raises(ModelFileError, match="not an ONNX model"):
        model_record(tmp_path / "x.txt")
