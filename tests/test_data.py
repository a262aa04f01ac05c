"""Tests for edgeres.data and edgeres.names: folders, archives, arrays and registered names."""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from edgeres.data import ImageSource, open_data
from edgeres.errors import DataError, UnknownNameError
from edgeres.meta import InputSpec, ModelMeta
from edgeres.names import calibration_dir, dataset_paths, resolve_data
from edgeres.zoo import family_labels, family_preprocess

META = ModelMeta(name="cifar_resnet20", family="cifar", num_classes=10,
                 labels=family_labels("cifar", 10), input=InputSpec(shape=("batch", 3, 32, 32)),
                 preprocess=family_preprocess("cifar", (32, 32)))


def _small_folder(tmp_path: Path, per_class: int = 2) -> Path:
    src = calibration_dir() / "cifar10-val"
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for f in sorted((src / cls).iterdir())[:per_class]:
            shutil.copy(f, tmp_path / "imgs" / cls / f.name)
    return tmp_path / "imgs"


def test_registered_names_resolve_and_unknown_lists_valid() -> None:
    """cifar10, cifar10-val and cifar10-test exist; an unknown name lists the valid ones."""
    for name, path in dataset_paths().items():
        assert resolve_data(name) == path and path.exists(), name
    with pytest.raises(UnknownNameError, match="cifar10-test") as info:
        resolve_data("cifar100")
    assert "cifar10-val" in str(info.value)


def test_vendored_subsets_are_train_only_disjoint_and_match_manifest() -> None:
    """Calibration and validation come from train, do not overlap, and match their sha256."""
    import hashlib

    sources = {}
    for subset in ("cifar10-calib", "cifar10-val"):
        manifest = json.loads((calibration_dir() / subset / "manifest.json").read_text())
        assert manifest["split"] == "train" and manifest["count"] == len(manifest["files"])
        for entry in manifest["files"][:50]:
            data = (calibration_dir() / subset / entry["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert all(e["source"].startswith("train/") for e in manifest["files"])
        sources[subset] = {e["source"] for e in manifest["files"]}
    assert len(sources["cifar10-calib"]) == 500 and len(sources["cifar10-val"]) == 1000
    assert not sources["cifar10-calib"] & sources["cifar10-val"]


def test_image_folder_labels_follow_model_labels(tmp_path: Path) -> None:
    """Folder names map to the model's label indices (cat=3, dog=5), not to folder order."""
    data = open_data(_small_folder(tmp_path))
    assert data.classes == ("cat", "dog") and len(data) == 4
    batches = list(data.batches(META, batch_size=3))
    assert [b.inputs.shape for b in batches] == [(3, 3, 32, 32), (1, 3, 32, 32)]
    assert np.concatenate([b.labels for b in batches]).tolist() == [3, 3, 5, 5]


def test_unreadable_images_are_skipped_and_counted(tmp_path: Path) -> None:
    """A corrupt JPEG is skipped, counted, and the rest still load."""
    root = _small_folder(tmp_path)
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    data = open_data(root)
    n = sum(len(b.inputs) for b in data.batches(META))
    assert n == 4 and data.skipped == 1


def test_flat_folder_is_unlabelled_and_empty_folder_is_an_error(tmp_path: Path) -> None:
    """A folder of images without class folders has no labels; an empty folder is refused."""
    root = _small_folder(tmp_path)
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in (root / "cat").iterdir():
        shutil.copy(f, flat / f.name)
    data = open_data(flat)
    assert data.classes is None and next(data.batches(META)).labels is None
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        open_data(tmp_path / "empty")


def test_archive_reads_the_same_pixels_as_the_folder(tmp_path: Path) -> None:
    """A .tar.gz of an ImageFolder tree yields the same tensors and labels as the folder."""
    root = _small_folder(tmp_path)
    archive = tmp_path / "imgs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="test")
    a = next(open_data(root).batches(META, 10))
    b = next(open_data(archive).batches(META, 10))
    np.testing.assert_array_equal(a.inputs, b.inputs)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_archive_top_folder_is_stripped_and_read_in_order(tmp_path: Path) -> None:
    """`tar czf x.tar.gz imgs/` of a flat folder is flat; deeper trees label by class folder."""
    root = _small_folder(tmp_path)
    flat = tmp_path / "flat.tar.gz"
    with tarfile.open(flat, "w:gz") as tar:
        for f in sorted((root / "cat").iterdir()):
            tar.add(f, arcname=f"imgs/{f.name}")
    data = open_data(flat)
    assert data.classes is None and len(data) == 2
    nested = tmp_path / "nested.tar.gz"
    with tarfile.open(nested, "w:gz") as tar:
        tar.add(root, arcname="data/cifar/val")
    data = open_data(nested)
    assert data.classes == ("cat", "dog")
    batch = next(data.subset(3, seed=1).batches(META, 8))
    assert batch.labels is not None
    assert batch.labels.tolist() == [META.labels.index(Path(s).parts[-2]) for s in batch.sources]


def test_archive_out_of_order_members_still_come_in_sorted_order(tmp_path: Path) -> None:
    """Members stored in reverse order are held until their turn: same batch as the folder."""
    root = _small_folder(tmp_path)
    archive = tmp_path / "rev.tar"
    with tarfile.open(archive, "w") as tar:
        for f in sorted(root.rglob("*.jpg"), reverse=True):
            tar.add(f, arcname=f"val/{f.relative_to(root)}")
    a = next(open_data(root).batches(META, 10))
    b = next(open_data(archive).batches(META, 10))
    np.testing.assert_array_equal(a.inputs, b.inputs)
    np.testing.assert_array_equal(a.labels, b.labels)


@pytest.mark.parametrize(("labels", "fragment"), [
    (np.eye(5, 10), "not one-hot"),
    (np.arange(3), "expected (5,)"),
    (np.array([0.5, 1, 2, 3, 4]), "integer class indices"),
    (np.array([0, -1, 2, 3, 4]), "negative class index"),
])
def test_npz_labels_are_one_index_per_sample(tmp_path: Path, labels: np.ndarray,
                                             fragment: str) -> None:
    """One-hot, short, fractional or negative labels are refused before they skew top-1."""
    x = np.zeros((5, 3, 32, 32), np.float32)
    np.savez(tmp_path / "l.npz", inputs=x, labels=labels)
    with pytest.raises(DataError, match=re.escape(fragment)):
        open_data(tmp_path / "l.npz")


def test_broken_npz_members_and_dtype_mismatch_are_data_errors(tmp_path: Path) -> None:
    """Object arrays, corrupt members and float arrays for a uint8 graph: one-line errors."""
    np.savez(tmp_path / "obj.npz", inputs=np.array([None] * 4, dtype=object).reshape(1, 1, 2, 2))
    with pytest.raises(DataError, match="not a readable"):
        open_data(tmp_path / "obj.npz")
    np.savez(tmp_path / "ok.npz", inputs=np.ones((2, 3, 32, 32), np.float32))
    raw = bytearray((tmp_path / "ok.npz").read_bytes())
    raw[200:260] = bytes(60)  # inside the member's data: its CRC no longer matches
    (tmp_path / "bad.npz").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="not a readable"):
        open_data(tmp_path / "bad.npz")
    uint8_meta = META.evolve(input=InputSpec(shape=("batch", 32, 32, 3), layout="NHWC",
                                             dtype="uint8", normalized_in_graph=True))
    np.save(tmp_path / "f.npy", np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(DataError, match="the model takes uint8"):
        next(open_data(tmp_path / "f.npy").batches(uint8_meta))
    np.save(tmp_path / "u.npy", np.zeros((2, 3, 32, 32), np.uint8))
    with pytest.raises(DataError, match="the model takes float32"):
        next(open_data(tmp_path / "u.npy").batches(META))


def test_npz_arrays_checked_for_shape_and_finite_values(tmp_path: Path) -> None:
    """Arrays of the right shape pass through; wrong shapes and NaNs are refused."""
    x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "ok.npz", inputs=x, labels=np.arange(5))
    data = open_data(tmp_path / "ok.npz")
    batch = next(data.batches(META, 8))
    np.testing.assert_array_equal(batch.inputs, x)
    assert batch.labels is not None and batch.labels.tolist() == [0, 1, 2, 3, 4]
    np.save(tmp_path / "wrong.npy", x[:, :, :16])
    with pytest.raises(DataError, match="expects"):
        next(open_data(tmp_path / "wrong.npy").batches(META))
    x[2, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(DataError, match="NaN"):
        open_data(tmp_path / "nan.npy")


def test_subset_is_deterministic() -> None:
    """The same seed picks the same images; a different seed picks others."""
    data = open_data("cifar10-val")
    a, b, c = data.subset(20, seed=0), data.subset(20, seed=0), data.subset(20, seed=1)
    assert isinstance(a, ImageSource) and isinstance(b, ImageSource) and isinstance(c, ImageSource)
    assert a.items == b.items and a.items != c.items and len(a) == 20


def _renamed(tmp_path: Path, names: dict[str, str]) -> Path:
    """The two-class folder with its class folders renamed (cat → names["cat"], ...)."""
    root = _small_folder(tmp_path)
    for old, new in names.items():
        (root / old).rename(root / new)
    return root


def test_class_folders_match_labels_case_insensitively(tmp_path: Path) -> None:
    """Cat/DOG are the model's cat (3) and dog (5), whatever their case or sorted order."""
    data = open_data(_renamed(tmp_path, {"cat": "Cat", "dog": "DOG"}))
    assert np.concatenate([b.labels for b in data.batches(META)]).tolist() == [3, 3, 5, 5]


def test_class_folders_that_match_no_label_are_refused_naming_both(tmp_path: Path) -> None:
    """Folders man/woman on a model labelled cat/dog/...: no silent sorted-index mapping (man
    was class 0); the error names the folders, the labels and the --class-map fix."""
    data = open_data(_renamed(tmp_path, {"cat": "man", "dog": "woman"}))
    with pytest.raises(DataError) as info:
        next(data.batches(META))
    text = str(info.value)
    assert "man, woman" in text and "airplane" in text and "--class-map" in text
    assert "\n" not in text
    # calibration reads no labels: the same folder calibrates
    assert next(data.batches(META, labelled=False)).labels is None


def test_class_map_file_and_ids_map_folders_explicitly(tmp_path: Path) -> None:
    """A JSON map (by label, any case, or by index) and `ids` (folders 3/, 5/) give the labels
    the names would; a map that misses a folder or names an unknown label is refused."""
    from edgeres.classmap import read_class_map

    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"man": "CAT", "woman": 5}))
    data = open_data(_renamed(tmp_path, {"cat": "man", "dog": "woman"}),
                     class_map=read_class_map(mapping))
    assert np.concatenate([b.labels for b in data.subset(3).batches(META)]).tolist() == [3, 5, 5]
    ids = open_data(_renamed(tmp_path / "ids", {"cat": "3", "dog": "5"}), class_map="ids")
    assert np.concatenate([b.labels for b in ids.batches(META)]).tolist() == [3, 3, 5, 5]
    mapping.write_text(json.dumps({"man": "cat"}))
    with pytest.raises(DataError, match="no entry for folders woman"):
        next(open_data(data.name, class_map=read_class_map(mapping)).batches(META))
    mapping.write_text(json.dumps({"man": "person", "woman": "cat"}))
    with pytest.raises(DataError, match="'person', which is not one of the model's labels"):
        next(open_data(data.name, class_map=read_class_map(mapping)).batches(META))
    mapping.write_text("[1, 2]")
    with pytest.raises(DataError, match="expected a JSON object"):
        read_class_map(mapping)


def test_folders_without_class_names_map_by_number_or_sorted_and_never_overflow(
        tmp_path: Path) -> None:
    """A model with placeholder labels (class_<i>): folders 0/ 1/ map to those outputs;
    three folders for a 2-class model are refused rather than one becoming class 2."""
    meta = ModelMeta(name="two", family="custom", num_classes=2, labels=("class_0", "class_1"),
                     input=META.input, preprocess=META.preprocess)
    ids = open_data(_renamed(tmp_path, {"cat": "1", "dog": "0"}))
    assert np.concatenate([b.labels for b in ids.batches(meta)]).tolist() == [0, 0, 1, 1]
    root = _renamed(tmp_path / "three", {"cat": "a", "dog": "b"})
    shutil.copytree(root / "a", root / "c")
    with pytest.raises(DataError, match="3 class folders for a 2-class model"):
        next(open_data(root).batches(meta))


def test_images_at_the_top_make_a_flat_folder_of_every_image(tmp_path: Path) -> None:
    """Two images at the top and one in a sub-folder: a flat folder of all 3 (was read as one
    class folder holding 1 image), as an archive of it and `predict` see it."""
    root = _small_folder(tmp_path)
    for f in sorted((root / "cat").iterdir()):
        shutil.move(f, root / f.name)
    (root / "cat").rmdir()
    sorted((root / "dog").iterdir())[0].unlink()
    data = open_data(root)
    assert data.classes is None and len(data) == 3
    archive = tmp_path / "mixed.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="photos")
    packed = open_data(archive)
    assert packed.classes is None and len(packed) == 3
