"""Tests for edgeres.quantize: both backends on the reference model, the max-drop loop, records."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeres import runtime
from edgeres._fs import sha256_file
from edgeres.calibration import CalibrationSet
from edgeres.data import open_data
from edgeres.errors import ConfigError, QuantizationError
from edgeres.evaluate import evaluate
from edgeres.meta import custom_meta, read_ir_meta, read_onnx_meta, write_onnx_meta
from edgeres.modelfile import model_record
from edgeres.names import resolve_model_file
from edgeres.quantize import QuantBackend, QuantConfig, quantize
from edgeres.quantize._ranges import _entropy_range, _percentile_range, collect_ranges
from edgeres.quantize.config import detect_target, resolve_target

REFERENCE = resolve_model_file("cifar10")
VAL_IMAGES = 200  # few hundred validation images: fast, and enough to see a broken model


@pytest.fixture(scope="module",
                params=["ort", pytest.param("openvino", marks=pytest.mark.slow)])
def reference(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The reference model quantized once per backend on 64 calibration images."""
    backend = request.param
    out = tmp_path_factory.mktemp(backend) / ("int8.onnx" if backend == "ort" else "int8.xml")
    meta = model_record(REFERENCE)
    config = QuantConfig(samples=64, val="cifar10-val", val_samples=VAL_IMAGES,
                         layer_report_samples=32)
    report = quantize(REFERENCE, out, CalibrationSet.from_data("cifar10", meta),
                      backend=backend, config=config)
    return backend, out, report


def test_int8_model_loads_and_agrees_with_fp32(reference) -> None:
    """The int8 model loads through the runtime and picks fp32's class on >=95% of images."""
    backend, out, report = reference
    fp32 = runtime.load(REFERENCE, backend=backend)
    int8 = runtime.load(out)
    assert int8.executed_precision == "int8" and int8.meta.precision == "int8"
    val = open_data("cifar10-val").subset(VAL_IMAGES, 0)
    a, b = evaluate(fp32.run, val, fp32.meta), evaluate(int8.run, val, int8.meta)
    assert a.agreement(b) >= 95.0
    assert abs(report.validation.fp32_top1 - a.top1) < 1e-9
    assert abs(report.validation.int8_top1 - b.top1) < 1e-9
    assert report.validation.count == VAL_IMAGES and report.float_layers == ()


def test_record_and_provenance_round_trip(reference) -> None:
    """The source record survives with precision int8, quantization facts and a provenance step."""
    backend, out, report = reference
    meta = read_onnx_meta(onnx.load(str(out))) if backend == "ort" else read_ir_meta(out)
    source = model_record(REFERENCE)
    assert meta is not None
    assert meta == report.meta and meta.labels == source.labels
    assert meta.preprocess == source.preprocess and meta.precision == "int8"
    q = meta.extra["quantization"]
    assert q["backend"] == backend and q["samples"] == 64 and q["per_channel"] is True
    assert q["calibration_sha256"] == report.calibration.sha256
    assert len(report.calibration.sha256) == 64
    assert q["target"] == resolve_target("auto").name
    step = meta.provenance[-1]
    assert step["step"] == "quantize" and step["input_sha256"] == sha256_file(REFERENCE)
    assert len(meta.provenance) == len(source.provenance) + 1
    if backend == "openvino":
        assert out.with_suffix(".bin").is_file()


def test_dynamic_batch_survives(reference) -> None:
    """Calibrated on fixed batches, the int8 model still runs at batch 1 and 8, same logits."""
    _, out, _ = reference
    p = runtime.load(out)
    x = next(iter(CalibrationSet.from_data("cifar10", p.meta).select(8)))["input"]
    eight = p.run(x)
    ones = np.concatenate([p.run(x[i : i + 1]) for i in range(8)])
    assert eight.shape == (8, 10)
    np.testing.assert_allclose(eight, ones, atol=1e-4 * float(np.abs(eight).max()))


def test_report_json_and_layer_sqnr(reference) -> None:
    """The JSON report sits beside the model and every int8 layer keeps > 15 dB SQNR."""
    _, out, report = reference
    data = json.loads(report.report_path.read_text())
    assert report.report_path == out.with_name(out.name + ".quant.json")
    assert data["schema_version"] == 1 and data["validation"]["count"] == VAL_IMAGES
    names = [row["name"] for row in data["layers"]]
    assert "/conv1/Conv" in names and "/fc/Gemm" in names and len(names) == 20
    assert min(row["sqnr_db"] for row in data["layers"]) > 15.0


# --- the accuracy-aware loop, on a model built to be sensitive ----------------------------------


def _graph(w1: np.ndarray, w2: np.ndarray, b2: np.ndarray) -> onnx.ModelProto:
    zeros = numpy_helper.from_array(np.zeros(len(w1), np.float32), "b1")
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2"),
        helper.make_node("GlobalAveragePool", ["c2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["logits"], name="flatten"),
    ]
    graph = helper.make_graph(
        nodes, "sensitive",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(w1, "w1"), zeros, numpy_helper.from_array(w2, "w2"),
         numpy_helper.from_array(b2, "b2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def sensitive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """conv1 has one channel 1000x louder than the rest (which alone carry the answer), so one
    per-tensor activation scale on its output wipes out conv2's input; labels are fp32's own
    confident answers (fp32 = 100%), so the only way to meet a budget is conv2 in float."""
    import onnxruntime as ort

    root = tmp_path_factory.mktemp("sensitive")
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((8, 3, 3, 3)) * 0.5).astype(np.float32)
    w1[0] *= 1000.0
    w2 = rng.standard_normal((4, 8, 1, 1)).astype(np.float32)
    w2[:, 0] = 0.0
    x = rng.standard_normal((264, 3, 8, 8)).astype(np.float32)

    def run(model: onnx.ModelProto) -> np.ndarray:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, {"input": x})[0]

    b2 = -run(_graph(w1, w2, np.zeros(4, np.float32))).mean(axis=0).astype(np.float32)
    model = _graph(w1, w2, b2)  # centred logits: every class wins on some images
    logits = run(model)
    top2 = np.sort(logits, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    keep = 64 + np.flatnonzero(margin[64:] > np.median(margin[64:]))
    write_onnx_meta(model, custom_meta(input_size=(8, 8), mean=(0.5,) * 3, std=(0.25,) * 3,
                                       num_classes=4, name="sensitive"))
    onnx.save(model, str(root / "sensitive.onnx"))
    np.savez(root / "calib.npz", inputs=x[:64])
    np.savez(root / "val.npz", inputs=x[keep], labels=logits[keep].argmax(axis=1))
    np.savez(root / "shuffled.npz", inputs=x[keep], labels=(logits[keep].argmax(axis=1) + 1) % 4)
    return root / "sensitive.onnx"


@pytest.mark.parametrize("backend", ["ort", pytest.param("openvino", marks=pytest.mark.slow)])
def test_max_drop_returns_the_sensitive_layer_to_float(sensitive: Path, tmp_path: Path,
                                                       backend: str) -> None:
    """All-int8 misses a 1-point budget; conv2 alone goes float and the budget then holds."""
    out = tmp_path / ("m.onnx" if backend == "ort" else "m.xml")
    calib = CalibrationSet.from_data(sensitive.with_name("calib.npz"), model_record(sensitive))
    config = QuantConfig(val=sensitive.with_name("val.npz"), max_drop=1.0, layer_report_samples=16)
    report = quantize(sensitive, out, calib, backend=cast("QuantBackend", backend), config=config)
    fb = report.fallback
    assert fb is not None and report.validation is not None and report.meta is not None
    assert fb.attempts[0].float_layers == () and fb.attempts[0].drop > 20.0
    assert report.float_layers == ("conv2",) and fb.budget_met and report.budget_met
    assert fb.ranking[0][0] == "conv2" and fb.ranking[0][1] > 10.0  # dB gained
    assert [c.name for c in fb.costs] == ["conv2"] and fb.costs[0].latency_cost_ms is not None
    assert set(fb.latency_ms) == {"fp32", "int8", "chosen"} and report.validation.drop <= 1.0
    layers = {row.name: row for row in report.layers}
    assert layers["conv2"].float and not layers["conv1"].float
    assert report.meta.extra["quantization"]["float_layers"] == ["conv2"]
    p = runtime.load(out)  # what was written is the chosen model
    val = open_data(sensitive.with_name("val.npz"))
    assert evaluate(p.run, val, p.meta).top1 == report.validation.int8_top1


def test_quantize_measures_through_the_evaluator_it_is_given(sensitive: Path,
                                                           tmp_path: Path) -> None:
    """quantize(evaluator=...) scores fp32, int8 and every candidate through that evaluator
    (one with workers gets the candidates in batches, as a cluster's does); the choice and the
    counts are the local ones."""
    from edgeres.evaluate import LocalEvaluator

    class Parallel(LocalEvaluator):
        workers = 2  # as a cluster's evaluator: candidates come as lists

        def __init__(self) -> None:
            self.one: list[str] = []
            self.many: list[int] = []

        def evaluate(self, predictor: Any, data: Any, meta: Any, **kw: Any) -> Any:
            self.one.append(kw.get("description", ""))
            return super().evaluate(predictor, data, meta, **kw)

        def top1_many(self, paths: Any, data: Any, meta: Any) -> list[float]:
            self.many.append(len(paths))
            return super().top1_many(paths, data, meta)

    calib = CalibrationSet.from_data(sensitive.with_name("calib.npz"), model_record(sensitive))
    config = QuantConfig(val=sensitive.with_name("val.npz"), max_drop=1.0,
                         layer_report_samples=0)
    here = quantize(sensitive, tmp_path / "here.onnx", calib, config=config)
    evaluator = Parallel()
    there = quantize(sensitive, tmp_path / "there.onnx", calib, config=config,
                     evaluator=evaluator)
    assert there.float_layers == here.float_layers == ("conv2",)
    assert there.validation == here.validation  # the same images, counted alike
    assert evaluator.one[0].startswith("fp32 on") and len(evaluator.one) >= 2
    assert evaluator.many and all(n >= 1 for n in evaluator.many)  # the ladder, in batches


def test_exclude_keeps_named_layer_float_and_unknown_name_fails(sensitive: Path,
                                                               tmp_path: Path) -> None:
    """--exclude conv2 fixes the model without a budget; a typo is a one-line error."""
    calib = CalibrationSet.from_data(sensitive.with_name("calib.npz"), model_record(sensitive))
    config = QuantConfig(exclude=("conv2",), eval=sensitive.with_name("val.npz"),
                         layer_report_samples=0)
    report = quantize(sensitive, tmp_path / "m.onnx", calib, config=config)
    assert report.evaluation is not None
    assert report.float_layers == ("conv2",) and report.evaluation.drop <= 1.0
    assert report.fallback is None and report.layers == ()
    with pytest.raises(QuantizationError, match="no node named 'conv9'"):
        quantize(sensitive, tmp_path / "n.onnx", calib, config=QuantConfig(exclude=("conv9",)))
    assert not (tmp_path / "n.onnx").exists()


def test_near_chance_fp32_stops_with_a_preprocessing_message(sensitive: Path,
                                                            tmp_path: Path) -> None:
    """Labels that fp32 cannot predict stop the run before quantizing and write nothing."""
    calib = CalibrationSet.from_data(sensitive.with_name("calib.npz"), model_record(sensitive))
    config = QuantConfig(val=sensitive.with_name("shuffled.npz"), max_drop=1.0)
    with pytest.raises(QuantizationError, match="preprocessing"):
        quantize(sensitive, tmp_path / "m.onnx", calib, config=config)
    assert list(tmp_path.iterdir()) == []


# --- options, targets and ranges ----------------------------------------------------------------


def test_config_is_validated_at_the_boundary() -> None:
    """Bad options fail when the config is built, with what to do instead."""
    with pytest.raises(ConfigError, match="needs validation data"):
        QuantConfig(max_drop=0.5)
    with pytest.raises(ConfigError, match="unknown target"):
        QuantConfig(target="gpu")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="samples must be a positive"):
        QuantConfig(samples=0)
    with pytest.raises(ConfigError, match="budget in points"):
        QuantConfig(val="cifar10-val", max_drop=-1.0)
    with pytest.raises(ConfigError, match="seed must be an integer of 0 or more"):
        QuantConfig(seed=-1)
    with pytest.raises(TypeError):
        QuantConfig(sample=10)  # type: ignore[call-arg]


def test_target_detection_and_specs(tmp_path: Path) -> None:
    """VNNI/AMX flags mean x86-vnni; none mean 7-bit x86; TensorRT is symmetric S8/S8."""
    import platform

    if platform.machine().lower().startswith(("arm", "aarch64")):
        pytest.skip("x86 flag detection")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse avx2 avx512f avx512_vnni\n")
    assert detect_target(cpuinfo) == "x86-vnni"
    cpuinfo.write_text("processor : 0\nflags : fpu sse avx2\n")
    assert detect_target(cpuinfo) == "x86"
    x86, trt = resolve_target("x86"), resolve_target("tensorrt")
    assert x86.reduce_range and x86.activation_type == "uint8"
    assert trt.activation_type == "int8" and trt.activation_symmetric and not trt.reduce_range


def test_percentile_and_entropy_thresholds_on_known_histograms() -> None:
    """Percentile clips 0.005% per side; entropy clips a lone far outlier but not the bulk."""
    hist = np.zeros(2048, np.int64)
    hist[[0, -1]] = 1  # two outliers at the extremes
    hist[1000:1048] = 100_000
    lo, hi = _percentile_range(hist, -1.0, 1.0)
    width = 2.0 / 2048
    assert np.isclose(lo, -1.0 + 1000 * width) and np.isclose(hi, -1.0 + 1048 * width)
    bulk = np.histogram(np.abs(np.random.default_rng(0).standard_normal(200_000)), 2048,
                        range=(0, 40.0))[0]
    bulk[-1] += 1  # one value at 40: min/max would spend 90% of the range on it
    lo, hi = _entropy_range(bulk, -40.0, 40.0)
    assert 3.0 < hi < 10.0 and lo == -hi


def _fixed_batch(model_path: Path, batch: int, out: Path) -> Path:
    """``model_path`` with its batch axis fixed and its record left saying ``batch``, as
    ``onnxruntime.tools.make_dynamic_shape_fixed`` leaves a model."""
    model = onnx.load(str(model_path))
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = batch
    onnx.save(model, str(out))
    record = read_onnx_meta(onnx.load(str(out)))
    assert record is not None and record.input.shape[0] == "batch"
    return out


def test_a_graph_fixed_after_export_is_calibrated_at_its_batch(sensitive: Path,
                                                              tmp_path: Path) -> None:
    """The graph's batch axis wins over the record's: quantize feeds it batches of 5 (it failed
    inside ONNX Runtime with 'Got: 8 Expected: 5'), and the int8 model runs at batch 5."""
    fixed = _fixed_batch(sensitive, 5, tmp_path / "fixed.onnx")
    assert model_record(fixed).input.shape == (5, 3, 8, 8)
    calib = CalibrationSet.from_data(sensitive.with_name("calib.npz"), model_record(fixed))
    quantize(fixed, tmp_path / "int8.onnx", calib, config=QuantConfig(per_channel=True))
    p = runtime.load(tmp_path / "int8.onnx")
    assert p.meta.input.shape[0] == 5 and p.meta.precision == "int8"
    x = np.load(sensitive.with_name("calib.npz"))["inputs"][:5]
    assert p.run(x).shape == (5, 4)


@pytest.mark.slow
def test_histograms_leave_out_the_samples_that_fill_a_fixed_batch(sensitive: Path,
                                                                   tmp_path: Path) -> None:
    """12 samples through a batch-5 graph run as 5+5+(2 and 3 repeats): the ranges must be the
    ones of the 12 samples, as the dynamic-batch graph gets them."""
    fixed = _fixed_batch(sensitive, 5, tmp_path / "fixed.onnx")
    twelve = tmp_path / "twelve.npz"
    np.savez(twelve, inputs=np.load(sensitive.with_name("calib.npz"))["inputs"][:12])
    calib = CalibrationSet.from_data(twelve, model_record(fixed))
    assert calib.fixed_batch and calib.batch_size == 5
    assert [real for _, real in calib.counted()] == [5, 5, 2]
    dynamic = CalibrationSet.from_data(twelve, model_record(sensitive), batch_size=5)
    for method in ("entropy", "percentile"):
        a = collect_ranges(fixed, calib, 3, method, tmp_path)
        b = collect_ranges(sensitive, dynamic, 3, method, tmp_path)
        assert a.keys() == b.keys() and all(np.allclose(a[k], b[k]) for k in a), method


@pytest.mark.slow
def test_streaming_ranges_match_one_pass_and_ignore_batch_size(sensitive: Path,
                                                              tmp_path: Path) -> None:
    """MinMax ranges equal the data's extremes; histogram ranges do not depend on batch size."""
    meta = model_record(sensitive)
    source = CalibrationSet.from_data(sensitive.with_name("calib.npz"), meta)
    whole = np.load(sensitive.with_name("calib.npz"))["inputs"]
    a = collect_ranges(sensitive, source.select(None, batch_size=8), 8, "minmax", tmp_path)
    assert a["input"] == (float(whole.min()), float(whole.max()))
    for method in ("entropy", "percentile"):
        b = collect_ranges(sensitive, source.select(None, batch_size=7), 10, method, tmp_path)
        c = collect_ranges(sensitive, source.select(None, batch_size=64), 1, method, tmp_path)
        assert b.keys() == c.keys() and all(np.allclose(b[k], c[k]) for k in b)


def test_over_budget_warning_names_the_attempt_kept() -> None:
    """When no mix meets --max-drop the warning names the kept attempt (it raised before)."""
    from edgeres.quantize import QuantConfig, _warnings
    from edgeres.quantize.sensitivity import Attempt, Fallback

    kept = Attempt(("conv1", "fc"), 88.0, 1.5)
    fallback = Fallback(kept.float_layers, False, (Attempt((), 87.0, 2.5), kept), (), (), {})
    (msg,) = _warnings(fallback, QuantConfig(max_drop=0.5, val="cifar10-val"))
    assert "0.5-point budget" in msg and "drop 1.50 points with 2 float layer(s)" in msg


def _softmax_classifier(dst: Path, rng: np.random.Generator) -> Path:
    """Conv → ReLU → GAP → Gemm (3 classes) → Softmax, logits spread enough that some
    probabilities are small (1e-3 to 1e-2), which a quantized Softmax rounds to exactly 0."""
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("GlobalAveragePool", ["r1"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
             helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1)]
    inits = [numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((3, 16)).astype(np.float32) * 3, "fc_w"),
             numpy_helper.from_array(np.zeros(3, np.float32), "fc_b")]
    graph = helper.make_graph(
        nodes, "softmax_head",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = custom_meta(input_size=(8, 8), mean=(0.5,) * 3, std=(0.25,) * 3, num_classes=3)
    write_onnx_meta(model, dataclasses.replace(meta, output="probabilities"))
    onnx.save(model, str(dst))
    return dst


# int8 convolutions move a probability by a few hundredths on this model; a quantized Softmax
# moved it by up to 1/255 more and broke the two exact properties checked below.
PROBABILITY_TOLERANCE = 0.05


@pytest.mark.parametrize("backend", ["ort", pytest.param("openvino", marks=pytest.mark.slow)])
def test_the_output_softmax_stays_float(tmp_path: Path, backend: str) -> None:
    """A model ending in Softmax keeps its head in float (issue 21 §1.1): int8 rows sum to 1
    within 1e-5, no fp32 probability above 1e-3 becomes 0, all within PROBABILITY_TOLERANCE."""
    rng = np.random.default_rng(3)
    src = _softmax_classifier(tmp_path / "softmax.onnx", rng)
    x = rng.standard_normal((96, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", inputs=x[:64])
    out = tmp_path / ("int8.onnx" if backend == "ort" else "int8.xml")
    calib = CalibrationSet.from_data(tmp_path / "calib.npz", model_record(src))
    quantize(src, out, calib, backend=cast("QuantBackend", backend),
             config=QuantConfig(layer_report_samples=0))
    fp32, int8 = runtime.load(src).run(x[64:]), runtime.load(out).run(x[64:])
    assert int8.dtype == np.float32 and fp32.min() < 1e-2  # small probabilities are tested
    np.testing.assert_allclose(int8.sum(axis=1), 1.0, atol=1e-5)
    assert not np.any((fp32 > 1e-3) & (int8 == 0.0))
    assert np.abs(int8 - fp32).max() <= PROBABILITY_TOLERANCE
    if backend == "ort":  # the Softmax reads float logits: no Q/DQ after the Gemm
        graph = onnx.load(str(out)).graph
        softmax = next(n for n in graph.node if n.op_type == "Softmax")
        assert softmax.input[0] == "logits" and graph.output[0].name == softmax.output[0]


def test_quantized_models_import_only_the_opsets_they_use(reference) -> None:
    """Every domain an int8 ONNX file imports is used by a node (onnxruntime 1.17 refuses an
    unused ai.onnx.ml opset 5), in what quantize writes and in the shipped cifar10-int8."""
    backend, out, _ = reference
    files = [resolve_model_file("cifar10-int8")] + ([out] if backend == "ort" else [])
    for path in files:
        model = onnx.load(str(path))
        used = {"", "ai.onnx"} | {n.domain for n in model.graph.node}
        assert {o.domain for o in model.opset_import} <= used, path


@pytest.mark.parametrize(("chosen_ms", "warned"), [(1.1, True), (0.6, False)])
def test_a_fallback_no_faster_than_fp32_says_so(sensitive: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                chosen_ms: float, warned: bool) -> None:
    """When the layers left float make the chosen model no faster than fp32 (0.91x here, as
    0.87x with 29 of 31 layers float on a face model), the report warns in plain words."""
    import edgeres.quantize as q

    def timed(quantizer: object, paths: dict, sample: object) -> dict:
        return {k: {"fp32": 1.0, "int8": 0.5}.get(k, chosen_ms) for k in paths}

    monkeypatch.setattr(q, "latency_ms", timed)
    calib = CalibrationSet.from_data(sensitive.with_name("calib.npz"), model_record(sensitive))
    config = QuantConfig(val=sensitive.with_name("val.npz"), max_drop=1.0, layer_report_samples=0)
    report = quantize(sensitive, tmp_path / "m.onnx", calib, config=config)
    assert report.fallback is not None
    assert report.float_layers == ("conv2",) and report.fallback.latency_ms["fp32"] == 1.0
    slow = [w for w in report.warnings if "no faster than fp32" in w]
    assert bool(slow) == warned
    if warned:
        assert "1 of 2 layers stay float" in slow[0] and "0.91x fp32's speed" in slow[0]
