"""Tests for edgeres.runtime: loading, input kinds, top-k, metadata-driven preprocessing,
uint8-input graphs, ONNX Runtime vs OpenVINO agreement, thread safety and bad inputs."""

from __future__ import annotations

import io
import logging
import platform
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from edgeres import names, runtime
from edgeres.data import open_data
from edgeres.errors import (
    BackendNotAvailable,
    DataError,
    EdgeresError,
    MetadataError,
    ModelFileError,
)
from edgeres.evaluate import evaluate
from edgeres.meta import PreprocessSpec, custom_meta
from edgeres.preprocess import prepare

MODEL = names.resolve_model_file("cifar10")
CALIB = names.calibration_dir() / "cifar10-calib"


def _images(n: int) -> list[Path]:
    """The first ``n`` calibration JPEGs, one class after another (train split, not test)."""
    files = sorted(CALIB.rglob("*.jpg"))
    return files[:: max(1, len(files) // n)][:n]


@pytest.fixture(scope="module")
def ort_predictor() -> runtime.Predictor:
    return runtime.load(MODEL, backend="ort")


@pytest.fixture(scope="module")
def ov_predictor() -> runtime.Predictor:
    return runtime.load(MODEL, backend="openvino", mode="model")


@pytest.fixture(scope="module")
def ir_model(shipped_ir: Path) -> Path:
    """The shipped model as an fp32 OpenVINO IR with the record in rt_info."""
    return shipped_ir


def _edited(tmp_path: Path, name: str, edit) -> Path:
    """A copy of the shipped ONNX model with ``edit(model_proto)`` applied."""
    proto = onnx.load(str(MODEL))
    edit(proto)
    dst = tmp_path / name
    onnx.save(proto, str(dst))
    return dst


def _strip_record(proto: onnx.ModelProto) -> None:
    del proto.metadata_props[:]


# --- parity with PyTorch ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch_reference() -> object:
    """The shipped ``cifar10`` checkpoint in ``create_model("cifar_resnet20")``, eval mode."""
    torch = pytest.importorskip("torch")
    from edgeres.models import create_model

    model = create_model("cifar_resnet20")
    state = torch.load(names.resolve_weights("cifar10"), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def _export(tmp_path_factory: pytest.TempPathFactory, model: object, uint8: bool) -> Path:
    from edgeres.export import ExportConfig, export_onnx
    from edgeres.zoo import zoo_meta

    dst = tmp_path_factory.mktemp("export") / ("u8.onnx" if uint8 else "fp32.onnx")
    export_onnx(model, dst, meta=zoo_meta("cifar_resnet20", num_classes=10),
                config=ExportConfig(uint8_input=uint8, parity_inputs=2))
    return dst


@pytest.fixture(scope="module")
def checkpoint_onnx(tmp_path_factory: pytest.TempPathFactory, torch_reference: object) -> Path:
    """The checkpoint exported to float32 NCHW ONNX by ``edgeres.export``."""
    return _export(tmp_path_factory, torch_reference, uint8=False)


@pytest.fixture(scope="module")
def uint8_model(tmp_path_factory: pytest.TempPathFactory, torch_reference: object) -> Path:
    """The checkpoint exported to take uint8 NHWC pixels (normalised inside the graph)."""
    return _export(tmp_path_factory, torch_reference, uint8=True)


def _torch_logits(model: object, image: Path, mean: tuple, std: tuple) -> np.ndarray:
    """Independent reference: PIL decode → CHW float on 0-1 → (x - mean) / std → model."""
    import torch

    pixels = torch.from_numpy(np.array(Image.open(image).convert("RGB"))).permute(2, 0, 1)
    mean_t, std_t = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    x = (pixels.float() / 255.0 - mean_t) / std_t
    with torch.no_grad():
        return model(x[None]).numpy()


def test_preprocess_and_onnx_match_pytorch_on_a_jpeg(torch_reference: object,
                                                     checkpoint_onnx: Path) -> None:
    """Runtime preprocessing + the exported ONNX give PyTorch's logits on the same JPEG."""
    p = runtime.load(checkpoint_onnx)
    for image in _images(3):
        expected = _torch_logits(torch_reference, image, p.meta.preprocess.mean,
                                 p.meta.preprocess.std)
        np.testing.assert_allclose(p.run(prepare(str(image), p.meta)), expected,
                                   atol=1e-4, rtol=1e-4)
        assert p.predict(image, top_k=1)[0].indices[0] == int(expected.argmax())


def test_shipped_onnx_is_the_shipped_checkpoint(torch_reference: object,
                                                ort_predictor: runtime.Predictor) -> None:
    """The registered model file ``cifar10`` computes what the ``cifar10`` weights compute."""
    image = _images(1)[0]
    meta = ort_predictor.meta
    expected = _torch_logits(torch_reference, image, meta.preprocess.mean, meta.preprocess.std)
    np.testing.assert_allclose(ort_predictor.run(prepare(str(image), meta)), expected,
                               atol=1e-4, rtol=1e-4)


# --- input kinds, top-k, preprocessing from the record -----------------------------------------


def test_every_input_kind_gives_the_same_prediction(ort_predictor: runtime.Predictor) -> None:
    """A path (str/Path), PIL image, HWC uint8 array, bytes, and a list of them agree."""
    path = _images(1)[0]
    pil = Image.open(path).convert("RGB")
    kinds = [str(path), path, pil, np.asarray(pil), path.read_bytes(), bytearray(path.read_bytes())]
    ref = ort_predictor.predict(path, top_k=3)
    assert len(ref) == 1 and len(ref[0].labels) == 3
    for kind in kinds:
        assert ort_predictor.predict(kind, top_k=3) == ref, type(kind)
    assert ort_predictor.predict(kinds, top_k=3) == ref * len(kinds)


def test_list_longer_than_one_chunk_matches_single_calls(ort_predictor: runtime.Predictor) -> None:
    """predict() over more images than one internal batch keeps order and values."""
    files = _images(runtime.PREDICT_BATCH + 3)
    batched = ort_predictor.predict(files, top_k=2)
    single = [ort_predictor.predict(f, top_k=2)[0] for f in files[-4:]]
    assert len(batched) == len(files)
    for a, b in zip(batched[-4:], single, strict=True):
        assert a.indices == b.indices
        np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-5)


def test_topk_from_hand_made_logits() -> None:
    """Softmax and ranking on logits computed by hand, ties and overflow included."""
    logits = np.array([[1.0, 3.0, 2.0], [0.0, 0.0, 0.0], [1000.0, 0.0, -1000.0]], np.float32)
    out = runtime.topk_predictions(logits, ("a", "b", "c"), top_k=2)
    e = np.exp([1.0, 3.0, 2.0])
    assert out[0].labels == ("b", "c") and out[0].indices == (1, 2)
    np.testing.assert_allclose(out[0].probabilities, [e[1] / e.sum(), e[2] / e.sum()], rtol=1e-12)
    assert out[1].indices == (0, 1)  # ties: lower class index first
    np.testing.assert_allclose(out[1].probabilities, [1 / 3, 1 / 3], rtol=1e-12)
    assert out[2].labels == ("a", "b") and out[2].probabilities == (1.0, 0.0)  # no overflow
    assert len(runtime.topk_predictions(logits, ("a", "b", "c"), top_k=10)[0].indices) == 3
    # indices beyond the labels are named by their number
    assert runtime.topk_predictions(logits[:1], ("a",), top_k=2)[0].labels == ("1", "2")


def test_non_square_image_is_resized_and_cropped_as_the_record_says(tmp_path: Path) -> None:
    """Shorter side → resize, then centre crop, then mean/std: checked against PIL by hand."""
    base = runtime.load(MODEL).meta
    spec = PreprocessSpec(resize=40, crop=(32, 32), mean=base.preprocess.mean,
                          std=base.preprocess.std)
    p = runtime.load(MODEL, meta=base.evolve(preprocess=spec))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 80, 3), dtype=np.uint8)  # H=50, W=80
    # By hand: 50x80 → 40x64 (bilinear), then rows 4..36 and columns 16..48.
    resized = np.asarray(Image.fromarray(image).resize((64, 40), Image.Resampling.BILINEAR))
    crop = resized[4:36, 16:48].astype(np.float32) / 255.0
    x = ((crop - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32))
    expected = runtime.topk_predictions(p.run(x.transpose(2, 0, 1)[None].copy()), base.labels, 10)
    got = p.predict(image, top_k=10)[0]
    assert got.indices == expected[0].indices
    np.testing.assert_allclose(got.probabilities, expected[0].probabilities, rtol=1e-5, atol=1e-7)


def test_model_without_record_needs_meta_and_says_which(tmp_path: Path,
                                                        ort_predictor: runtime.Predictor) -> None:
    """No record: the error names the preprocessing to pass; with meta= it predicts as usual."""
    bare = _edited(tmp_path, "bare.onnx", _strip_record)
    with pytest.raises(MetadataError, match=r"custom_meta\(input_size=\(32, 32\).*num_classes=10"):
        runtime.load(bare)
    meta = custom_meta(input_size=(32, 32), mean=ort_predictor.meta.preprocess.mean,
                       std=ort_predictor.meta.preprocess.std, num_classes=10,
                       labels=ort_predictor.meta.labels)
    image = _images(1)[0]
    assert runtime.load(bare, meta=meta).predict(image) == ort_predictor.predict(image)


def test_fixed_batch_graph_runs_lists_in_padded_chunks(tmp_path: Path,
                                                       ort_predictor: runtime.Predictor) -> None:
    """A batch-1 graph predicts 3 images (one call each) and refuses run() with batch 2."""
    def fix_batch(proto: onnx.ModelProto) -> None:
        for vi in (proto.graph.input[0], proto.graph.output[0]):
            vi.type.tensor_type.shape.dim[0].dim_value = 1

    p = runtime.load(_edited(tmp_path, "b1.onnx", fix_batch))
    files = _images(3)
    got, ref = p.predict(files), ort_predictor.predict(files)
    assert [g.indices for g in got] == [r.indices for r in ref]
    with pytest.raises(DataError, match=r"does not match the model's \(1, 3, 32, 32\)"):
        p.run(np.zeros((2, 3, 32, 32), np.float32))


@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_graph_resized_after_export_gets_images_at_its_own_size(reshaped_shipped,
                                                                backend: str) -> None:
    """The shipped 32x32 graph fixed to 64x64 with its record left at 32 (as shape-fixing tools
    leave it): the graph wins, so images are resized to 64 (it failed inside the runtime)."""
    p = runtime.load(reshaped_shipped(64), backend=backend)
    assert p.meta.input_size == (64, 64) and p.meta.input.shape[1:] == (3, 64, 64)
    assert p.meta.preprocess.resize == 64
    image = _images(1)[0]
    pixels = Image.open(image).convert("RGB").resize((64, 64), Image.Resampling.BILINEAR)
    mean, std = (np.array(v, np.float32) for v in (p.meta.preprocess.mean, p.meta.preprocess.std))
    x = (np.asarray(pixels, np.float32) / 255.0 - mean) / std
    expected = runtime.topk_predictions(p.run(x.transpose(2, 0, 1)[None].copy()), p.meta.labels, 3)
    got = p.predict(image, top_k=3)[0]
    assert got.indices == expected[0].indices
    np.testing.assert_allclose(got.probabilities, expected[0].probabilities, rtol=1e-4, atol=1e-6)


# --- uint8-input graphs -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_uint8_input_graph_takes_pixels_and_matches_float_model(
        uint8_model: Path, checkpoint_onnx: Path, backend: str) -> None:
    """A normalise-in-graph model gets NHWC uint8 from predict() and agrees with the fp32 one."""
    p = runtime.load(uint8_model, backend=backend)
    ort_predictor = runtime.load(checkpoint_onnx)
    assert p.meta.input.normalized_in_graph and p.input_dtype == np.uint8
    assert p.input_shape == (32, 32, 3)
    files = _images(8)
    pixels = prepare([str(f) for f in files], p.meta)
    assert pixels.dtype == np.uint8 and pixels.shape == (8, 32, 32, 3)
    np.testing.assert_allclose(p.run(pixels), ort_predictor.run(prepare(files, ort_predictor.meta)),
                               atol=2e-4, rtol=1e-4)
    got, ref = p.predict(files, top_k=3), ort_predictor.predict(files, top_k=3)
    assert [g.indices for g in got] == [r.indices for r in ref]
    with pytest.raises(DataError, match="dtype float32 does not match the model's uint8"):
        p.run(np.zeros((1, 32, 32, 3), np.float32))


# --- backends ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_openvino_and_ort_agree_on_500_test_images(ort_predictor: runtime.Predictor,
                                                   ov_predictor: runtime.Predictor) -> None:
    """mode="model": same top-1 on >= 99.5% of 500 cifar10-test images, both fp32."""
    data = open_data("cifar10-test").subset(500, seed=0)
    ort_report = evaluate(ort_predictor.run, data, ort_predictor.meta)
    ov_report = evaluate(ov_predictor.run, data, ov_predictor.meta)
    assert ort_report.count == ov_report.count == 500
    assert ort_report.agreement(ov_report) >= 99.5
    assert ort_predictor.executed_precision == ov_predictor.executed_precision == "fp32"
    assert ov_predictor.backend.details["inference_precision"] == "f32"
    assert abs(ort_report.top1 - ov_report.top1) <= 0.5


def test_openvino_reads_the_ir_record_and_matches_onnx(ir_model: Path,
                                                       ort_predictor: runtime.Predictor) -> None:
    """backend=auto picks OpenVINO for an IR; its record and logits match the ONNX model."""
    p = runtime.load(ir_model)
    assert p.runtime == "openvino-cpu" and p.meta == ort_predictor.meta
    x = prepare(_images(4), p.meta)
    np.testing.assert_allclose(p.run(x), ort_predictor.run(x), atol=1e-4, rtol=1e-4)


def test_fast_precision_reports_what_executes(caplog: pytest.LogCaptureFixture) -> None:
    """mode="fast" lets OpenVINO lower fp32; executed_precision and the log say so."""
    with caplog.at_level(logging.INFO, logger="edgeres.runtime"):
        p = runtime.load(MODEL, backend="openvino", mode="fast")
    hint = p.backend.details["inference_precision"]
    assert p.executed_precision == {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}[hint]
    if p.executed_precision != "fp32":  # an AMX/AVX512-BF16 CPU: the lowering is logged
        assert any("mode='fast'" in r.getMessage() for r in caplog.records)
    assert runtime.load(MODEL, mode="fast").executed_precision == "fp32"  # ORT CPU: no change


@pytest.fixture(scope="module")
def fp16_model(shipped_fp16: Path) -> Path:
    """The shipped checkpoint exported by `edgeres export --fp16` (float32 in and out)."""
    return shipped_fp16


def _float_weights_of_compute_nodes(model: Path, tmp_path: Path) -> list[bool]:
    """Per Conv/Gemm/MatMul node of ORT's optimized CPU graph: are its weights float32?"""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    graph = onnx.load(so.optimized_model_filepath).graph
    types = {t.name: t.data_type for t in graph.initializer}
    nodes = [n for n in graph.node if n.op_type.endswith(("Conv", "Gemm", "MatMul"))]
    return [types.get(n.input[1]) == TensorProto.FLOAT for n in nodes]


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="the fp32-kernel rule is stated for ONNX Runtime's x86 CPU provider")
def test_fp16_model_on_ort_cpu_reports_the_fp32_kernels_it_runs(fp16_model: Path,
                                                                tmp_path: Path) -> None:
    """An fp16 file on ort-cpu stores fp16 but executes fp32, as ORT's optimized graph shows."""
    compute = _float_weights_of_compute_nodes(fp16_model, tmp_path)
    assert compute and all(compute)  # fails if this ONNX Runtime gains fp16 CPU kernels
    p = runtime.load(fp16_model)
    assert p.meta.precision == "fp16" and p.runtime == "ort-cpu"
    assert p.executed_precision == "fp32"
    assert runtime.load(fp16_model, mode="fast").executed_precision == "fp32"
    assert runtime.load(MODEL).executed_precision == "fp32"


def test_threads_and_session_options_are_applied() -> None:
    """threads reaches both runtimes; a given SessionOptions is the one the session uses."""
    import onnxruntime as ort

    assert runtime.load(MODEL, threads=1).backend.details["threads"] == 1
    assert runtime.load(MODEL, backend="openvino", threads=1).backend.details["threads"] == 1
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    p = runtime.load(MODEL, session_options=so, threads=1)
    used = p.backend.session.get_session_options()
    assert used.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert used.intra_op_num_threads == 1


def test_ort_spinning_reaches_the_session_config() -> None:
    """The spin option is the session's allow_spinning entries (intra- and inter-op), read back
    from the session ONNX Runtime made: edgeres' default (off) when not given, a given
    SessionOptions' own entry kept, and the value recorded in the backend's details."""
    import onnxruntime as ort

    from edgeres.runtime.backends import DEFAULT_SPIN
    from edgeres.runtimes.ort import SPIN_KEYS

    def entries(p: runtime.Predictor) -> list[str]:
        used = p.backend.session.get_session_options()
        return [used.get_session_config_entry(key) for key in SPIN_KEYS]

    assert SPIN_KEYS == ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")
    default = runtime.load(MODEL)
    assert entries(default) == ["1" if DEFAULT_SPIN else "0"] * 2
    assert default.backend.details["spinning"] is DEFAULT_SPIN
    for spin, value in ((True, "1"), (False, "0")):
        p = runtime.load(MODEL, backend="ort", threads=2, spin=spin)
        assert entries(p) == [value, value] and p.backend.details["spinning"] is spin
    so = ort.SessionOptions()
    so.add_session_config_entry(SPIN_KEYS[0], "1")
    own = runtime.load(MODEL, session_options=so)
    assert entries(own) == ["1", "1"] and own.backend.details["spinning"] is True
    assert entries(runtime.load(MODEL, session_options=so, spin=False)) == ["0", "0"]
    with pytest.raises(EdgeresError, match="spin must be True, False or None"):
        runtime.load(MODEL, spin="off")  # type: ignore[arg-type] # a wrong type on purpose
    assert "spinning" not in runtime.load(MODEL, backend="openvino", spin=True).backend.details


def test_session_is_created_once_and_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    """load() builds one InferenceSession; later predict/run calls create none."""
    import onnxruntime as ort

    made: list[object] = []
    real = ort.InferenceSession

    def counting(*args: object, **kwargs: object) -> object:
        made.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", counting)
    p = runtime.load(MODEL)
    for _ in range(3):
        p.predict(_images(2))
    assert len(made) == 1


@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_concurrent_calls_match_sequential_ones(backend: str) -> None:
    """One Predictor called from 4 threads returns what single-threaded calls return."""
    p = runtime.load(MODEL, backend=backend)
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((1 + i % 3, 3, 32, 32), dtype=np.float32) for i in range(24)]
    sequential = [p.run(x) for x in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(p.run, inputs))
        images = list(pool.map(lambda f: p.predict(f, top_k=3)[0], _images(8)))
    for a, b in zip(sequential, concurrent, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert images == [p.predict(f, top_k=3)[0] for f in _images(8)]


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["ort", "openvino"])
@pytest.mark.parametrize("kind", ["truncated", "random", "empty"])
def test_corrupt_model_files_are_model_file_errors(tmp_path: Path, backend: str, kind: str) -> None:
    """Truncated, random and empty .onnx files raise ModelFileError naming the file."""
    data = MODEL.read_bytes()
    bad = tmp_path / f"{kind}.onnx"
    bad.write_bytes({"truncated": data[: len(data) // 2],
                     "random": np.random.default_rng(0).bytes(4096), "empty": b""}[kind])
    with pytest.raises(ModelFileError, match=str(bad)):
        runtime.load(bad, backend=backend)


def test_broken_ir_files_are_model_file_errors(tmp_path: Path, ir_model: Path) -> None:
    """An IR with a missing or truncated .bin, or a cut .xml, raises ModelFileError."""
    xml = tmp_path / "m.xml"
    shutil.copy(ir_model, xml)
    with pytest.raises(ModelFileError, match=r"m\.bin is missing"):
        runtime.load(xml)
    xml.with_suffix(".bin").write_bytes(ir_model.with_suffix(".bin").read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="Incorrect weights"):
        runtime.load(xml)
    shutil.copy(ir_model.with_suffix(".bin"), xml.with_suffix(".bin"))
    xml.write_text(ir_model.read_text()[:5000])
    with pytest.raises(ModelFileError, match="could not be read by OpenVINO"):
        runtime.load(xml)
    with pytest.raises(ModelFileError, match="ONNX Runtime needs .onnx"):
        runtime.load(ir_model, backend="ort")


def test_missing_and_non_model_paths(tmp_path: Path) -> None:
    """A missing file and a non-model suffix are ModelFileErrors that say what to pass."""
    with pytest.raises(ModelFileError, match="does not exist"):
        runtime.load(tmp_path / "nope.onnx")
    (tmp_path / "model.txt").write_text("x")
    with pytest.raises(ModelFileError, match=r"pass an \.onnx file"):
        runtime.load(tmp_path / "model.txt")


def _graph_model(tmp_path: Path, name: str, inputs: list, body: list) -> Path:
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(body, "g", inputs, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    dst = tmp_path / name
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_models_that_are_not_image_classifiers_are_refused(tmp_path: Path, backend: str) -> None:
    """Two inputs, a 2-D input and an int64 input each raise ModelFileError saying why."""
    f = TensorProto.FLOAT
    two = _graph_model(tmp_path, "two.onnx", [
        helper.make_tensor_value_info("a", f, [1, 3, 8, 8]),
        helper.make_tensor_value_info("b", f, [1, 3, 8, 8]),
    ], [helper.make_node("Add", ["a", "b"], ["y"])])
    flat = _graph_model(tmp_path, "flat.onnx", [helper.make_tensor_value_info("a", f, [1, 16])],
                        [helper.make_node("Relu", ["a"], ["y"])])
    ints = _graph_model(tmp_path, "ints.onnx",
                        [helper.make_tensor_value_info("a", TensorProto.INT64, [1, 3, 8, 8])],
                        [helper.make_node("Cast", ["a"], ["y"], to=f)])
    with pytest.raises(ModelFileError, match="has 2 inputs"):
        runtime.load(two, backend=backend)
    with pytest.raises(ModelFileError, match="2-D input"):
        runtime.load(flat, backend=backend)
    with pytest.raises(ModelFileError, match="int64 input"):
        runtime.load(ints, backend=backend)


def test_records_that_do_not_fit_the_graph_are_refused(ort_predictor: runtime.Predictor) -> None:
    """A record with another input size, class count or input dtype is a MetadataError."""
    meta = ort_predictor.meta
    wrong_size = custom_meta(input_size=(64, 64), mean=meta.preprocess.mean,
                             std=meta.preprocess.std, num_classes=10)
    with pytest.raises(MetadataError, match=r"record says input \(3, 64, 64\)"):
        runtime.load(MODEL, meta=wrong_size)
    with pytest.raises(MetadataError, match="record says 7 classes"):
        runtime.load(MODEL, meta=meta.evolve(num_classes=7))
    uint8 = meta.evolve(input=meta.input.__class__(shape=("batch", 3, 32, 32),
                                                   normalized_in_graph=True))
    with pytest.raises(MetadataError, match="normalized_in_graph=True"):
        runtime.load(MODEL, meta=uint8)
    features = runtime.load(MODEL, meta=meta.evolve(num_classes=0, labels=()))
    with pytest.raises(MetadataError, match="use run"):
        features.predict(_images(1)[0])


def test_images_that_are_not_images(tmp_path: Path, ort_predictor: runtime.Predictor) -> None:
    """Text files, garbage bytes, truncated JPEGs, missing files and odd types are DataErrors."""
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    jpeg = _images(1)[0].read_bytes()
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buf, format="JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    cases = [(text, "notes.jpg is not a readable image"), (b"\x00garbage", "image bytes"),
             (cut, "cut.jpg is not a readable image"), (tmp_path / "gone.png", "does not exist"),
             (12, "cannot read an image from a int"), ([], "no images given"),
             (np.zeros((32, 32, 3), np.float32), "must be uint8"),
             (np.zeros((2, 32, 32, 3), np.uint8), "must be HWC")]
    for bad, message in cases:
        with pytest.raises(DataError, match=message):
            ort_predictor.predict(bad)
    with pytest.raises(DataError, match="notes.jpg"):  # one bad image in a list names itself
        ort_predictor.predict([jpeg, text])
    for top_k in (0, -1, 2.5, True):
        with pytest.raises(DataError, match="top_k must be a positive integer"):
            ort_predictor.predict(jpeg, top_k=top_k)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((1, 3, 31, 32), np.float32),
     r"shape \(1, 3, 31, 32\) does not match .*\(N, 3, 32, 32\)"),
    (np.zeros((3, 32, 32), np.float32), r"shape \(3, 32, 32\) does not match"),
    (np.zeros((0, 3, 32, 32), np.float32), r"shape \(0, 3, 32, 32\) does not match"),
    (np.zeros((1, 3, 32, 32), np.float64), "dtype float64 does not match the model's float32"),
    (np.zeros((1, 32, 32, 3), np.uint8), "dtype uint8 does not match"),
    ([[0.0]], "takes a numpy array, got list"),
])
def test_run_rejects_wrong_arrays(ort_predictor: runtime.Predictor, bad: object,
                                  message: str) -> None:
    """run() names the wrong shape or dtype instead of passing it to the runtime."""
    with pytest.raises(DataError, match=message):
        ort_predictor.run(bad)


def test_unavailable_backends_and_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown or absent runtimes/devices and bad options are EdgeresErrors with a reason."""
    import onnxruntime as ort

    cases = [({"backend": "tensorflow"}, BackendNotAvailable, "unknown backend"),
             ({"device": "tpu"}, BackendNotAvailable, "unknown device"),
             ({"backend": "openvino", "device": "cuda"}, BackendNotAvailable, "--backend ort"),
             ({"backend": "ort", "device": "gpu"}, BackendNotAvailable, "no device 'gpu'"),
             ({"mode": "turbo"}, EdgeresError, "unknown mode"),
             ({"threads": 0}, EdgeresError, "threads must be a positive integer"),
             ({"backend": "openvino", "session_options": object()}, BackendNotAvailable,
              "ONNX Runtime only")]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        cases.append(({"device": "cuda"}, BackendNotAvailable, "CUDAExecutionProvider"))
    import openvino as ov

    if not any(d.startswith("GPU") for d in ov.Core().available_devices):
        cases.append(({"device": "gpu"}, BackendNotAvailable, "device GPU is not present"))
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            runtime.load(MODEL, **kwargs)
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    with pytest.raises(BackendNotAvailable, match=r"pip install 'edgeres\[openvino\]'"):
        runtime.load(MODEL, backend="openvino")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(BackendNotAvailable, match="pip install onnxruntime"):
        runtime.load(MODEL, backend="ort")
