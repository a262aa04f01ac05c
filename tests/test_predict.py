"""Tests for `edgeres predict`: text and JSON output against the library, options, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from helpers import one_error

from edgeres import names, runtime
from edgeres.cli import cli

MODEL = names.resolve_model_file("cifar10")
IMAGES = sorted((names.calibration_dir() / "cifar10-calib").rglob("*.jpg"))[::100][:3]


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["predict", *args])


@pytest.fixture(scope="module")
def library() -> list[runtime.Prediction]:
    return runtime.load(MODEL).predict(IMAGES, top_k=3)


def test_text_output_lists_labels_and_probabilities(library: list[runtime.Prediction]) -> None:
    """Each image is followed by its top-k probabilities and labels, as the library ranks them."""
    result = _invoke("cifar10", *map(str, IMAGES), "--top-k", "3")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "cifar_resnet20 on ort-cpu (fp32)"
    for i, (image, pred) in enumerate(zip(IMAGES, library, strict=True)):
        block = lines[1 + 4 * i : 5 + 4 * i]
        assert block[0] == str(image)
        rows = [line.split() for line in block[1:]]
        assert [r[1] for r in rows] == list(pred.labels)
        assert [float(r[0]) for r in rows] == [round(p, 4) for p in pred.probabilities]


def test_json_output_equals_the_library(library: list[runtime.Prediction]) -> None:
    """--json carries schema_version, the runtime and exactly the library's predictions."""
    result = _invoke("cifar10", *map(str, IMAGES), "--top-k", "3", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1 and doc["model"] == "cifar_resnet20"
    assert doc["runtime"] == "ort-cpu" and doc["executed_precision"] == "fp32"
    assert doc["model_file"] == str(MODEL)
    assert [d["image"] for d in doc["predictions"]] == list(map(str, IMAGES))
    assert [{k: d[k] for k in ("labels", "indices", "probabilities")}
            for d in doc["predictions"]] == [p.to_dict() for p in library]


def test_a_folder_stands_for_its_images(tmp_path: Path,
                                        library: list[runtime.Prediction]) -> None:
    """A folder argument expands to the images under it, sorted; non-images are passed over."""
    import shutil

    for i, image in enumerate(IMAGES):
        (tmp_path / "photos" / f"sub{i}").mkdir(parents=True)
        shutil.copy(image, tmp_path / "photos" / f"sub{i}" / image.name)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    result = _invoke("cifar10", str(tmp_path / "photos"), "--top-k", "3", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [Path(d["image"]).name for d in doc["predictions"]] == [p.name for p in IMAGES]
    assert [d["labels"] for d in doc["predictions"]] == [list(p.labels) for p in library]
    (tmp_path / "empty").mkdir()
    one_error(_invoke("cifar10", str(tmp_path / "empty")), "holds no image files")


def test_model_path_and_openvino_backend(library: list[runtime.Prediction]) -> None:
    """MODEL may be a path; --backend openvino runs fp32 and ranks like ONNX Runtime."""
    result = _invoke(str(MODEL), *map(str, IMAGES), "--top-k", "3", "--json",
                     "--backend", "openvino", "--threads", "1")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["runtime"] == "openvino-cpu" and doc["executed_precision"] == "fp32"
    assert [d["labels"][0] for d in doc["predictions"]] == [p.labels[0] for p in library]
    for d, p in zip(doc["predictions"], library, strict=True):
        assert d["probabilities"] == pytest.approx(p.probabilities, abs=1e-4)


def test_options_reach_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """--backend/--device/--mode/--threads/--ort-spinning are passed to runtime.load unchanged
    (no spinning flag: None, edgeres' default)."""
    calls: list[tuple] = []
    real = runtime.load

    def spy(path: Path, **kwargs: object) -> runtime.Predictor:
        calls.append((path, kwargs))
        return real(path, backend="ort")

    monkeypatch.setattr(runtime, "load", spy)
    result = _invoke("cifar10", str(IMAGES[0]), "--backend", "openvino", "--device", "cpu",
                     "--mode", "fast", "--threads", "2")
    assert result.exit_code == 0, result.output
    spun = _invoke("cifar10", str(IMAGES[0]), "--ort-spinning")
    assert spun.exit_code == 0, spun.output
    assert calls == [(MODEL, {"backend": "openvino", "device": "cpu", "mode": "fast",
                              "threads": 2, "spin": None, "meta": None}),
                     (MODEL, {"backend": "auto", "device": "cpu", "mode": "model",
                              "threads": None, "spin": True, "meta": None})]


def test_bad_image_is_one_error_line(tmp_path: Path) -> None:
    """A file that is not an image: exit 1, one Error line naming it, no traceback (the
    readable image beside it still gets its result, and the skip line says why)."""
    bad = tmp_path / "notes.jpg"
    bad.write_text("hello")
    result = _invoke("cifar10", str(IMAGES[0]), str(bad))
    one_error(result, "notes.jpg", "1 of 2 images")
    assert "notes.jpg is not a readable image" in result.stderr
    assert result.stdout.splitlines()[1] == str(IMAGES[0])
    one_error(_invoke("cifar10", str(tmp_path / "gone.jpg")), "does not exist")


def test_unknown_model_and_unavailable_device() -> None:
    """An unknown name lists the registered ones; an absent GPU is a one-line error."""
    one_error(_invoke("cifar100", str(IMAGES[0])), "cifar10", "cifar10-int8")
    one_error(_invoke("cifar10", str(IMAGES[0]), "--device", "cuda"),
                           "CUDAExecutionProvider")


def test_model_without_record_says_what_is_missing(tmp_path: Path) -> None:
    """A bare ONNX model fails with the metadata it needs, not a traceback."""
    proto = onnx.load(str(MODEL))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    one_error(_invoke(str(bare), str(IMAGES[0])), "no edgeres metadata record",
                           "custom_meta(")


def test_help_has_an_example() -> None:
    """`edgeres predict --help` documents the command with an example."""
    result = CliRunner().invoke(cli, ["predict", "--help"])
    assert result.exit_code == 0 and "edgeres predict cifar10" in result.output


def test_mode_is_the_new_name_of_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    """--mode fast reaches runtime.load as mode="fast"; the old --precision still works."""
    calls: list[dict] = []
    real = runtime.load

    def spy(path: Path, **kwargs: object) -> runtime.Predictor:
        calls.append(kwargs)
        return real(path, backend="ort")

    monkeypatch.setattr(runtime, "load", spy)
    assert _invoke("cifar10", str(IMAGES[0]), "--mode", "fast").exit_code == 0
    assert _invoke("cifar10", str(IMAGES[0])).exit_code == 0
    assert [c["mode"] for c in calls] == ["fast", "model"]


def test_unreadable_images_are_skipped_named_counted_and_exit_1(tmp_path: Path) -> None:
    """A folder with one broken file among three: the two good images get their results (as
    eval and quantize skip), one stderr line names the bad file, and the exit status is 1."""
    import shutil

    good = sorted(IMAGES[:2], key=lambda p: p.name)  # the folder's order
    for image in good:
        shutil.copy(image, tmp_path / image.name)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    result = CliRunner().invoke(cli, ["predict", "cifar10", str(tmp_path), "--top-k", "1",
                                      "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert [Path(p["image"]).name for p in doc["predictions"]] == [i.name for i in good]
    want = runtime.load(MODEL).predict(good, top_k=1)
    assert [p["labels"] for p in doc["predictions"]] == [list(w.labels) for w in want]
    errors = result.stderr.splitlines()
    assert len(errors) == 2 and "broken.jpg" in errors[0] and "Traceback" not in result.output
    assert errors[1].startswith("Error: 1 of 3 images could not be read")
