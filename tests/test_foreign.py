"""Foreign models: classifiers from other exporters through attach/info/quantize/bench/predict/
package with their preprocessing stated once, plus untrusted records, models that are not what
they seem and the library's error contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from helpers import one_error
from onnx import TensorProto, helper, numpy_helper

from edgeres import runtime
from edgeres.cli import cli
from edgeres.data import open_data
from edgeres.errors import DataError, EdgeresError, MetadataError, ModelFileError
from edgeres.evaluate import evaluate
from edgeres.foreign import RecordOptions, attach, stated_record
from edgeres.meta import CIFAR10_MEAN, CIFAR10_STD, METADATA_KEY, ModelMeta
from edgeres.names import resolve_model_file
from edgeres.preprocess import prepare

SHIPPED = resolve_model_file("cifar10")
EVAL_IMAGES = 300  # real CIFAR-10 test images for the accuracy comparisons
# The foreign model takes BGR pixels on the 0-255 scale minus the per-channel mean (Caffe and
# Keras ResNet-50 style), NHWC; its graph scales by 1/(255 std) itself.
MEAN_BGR_255 = ",".join(f"{m * 255:.4f}" for m in CIFAR10_MEAN[::-1])
STATED = ("--mean", MEAN_BGR_255, "--std", "1,1,1", "--scale", "255", "--channels", "BGR")
OPTIONS = RecordOptions(mean=tuple(float(m) for m in MEAN_BGR_255.split(",")), std=(1.0,) * 3,
                        scale=255.0, channels="BGR")


def _run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _strip_allowzero(graph: onnx.GraphProto) -> None:
    for node in graph.node:  # Reshape-14's allowzero (0 here) does not exist at opset 11
        keep = [a for a in node.attribute if a.name != "allowzero"]
        del node.attribute[:]
        node.attribute.extend(keep)


def make_foreign(dst: Path, opset: int = 11) -> Path:
    """The shipped CIFAR model as tf2onnx would give it: opset 11, NHWC input ``input_1:0``
    with a Transpose, BGR 0-255 mean-subtracted pixels, Keras names, Softmax + Identity."""
    m = onnx.load(str(SHIPPED))
    del m.metadata_props[:]
    g = m.graph
    del g.value_info[:]
    old_in, old_out = g.input[0].name, g.output[0].name
    first = next(n for n in g.node if n.op_type == "Conv")
    w = next(t for t in g.initializer if t.name == first.input[1])
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w)[:, ::-1].copy(), w.name))
    inv = (1.0 / (255.0 * np.array(CIFAR10_STD[::-1], np.float32))).reshape(1, 3, 1, 1)
    g.initializer.append(numpy_helper.from_array(inv.astype(np.float32), "model/rescale/y:0"))
    for node in g.node:
        node.input[:] = [x if x != old_in else "model/rescale:0" for x in node.input]
        node.output[:] = [x if x != old_out else "model/dense/BiasAdd:0" for x in node.output]
    head = [helper.make_node("Transpose", ["input_1:0"], ["model/transpose:0"],
                             perm=[0, 3, 1, 2], name="model/transpose"),
            helper.make_node("Mul", ["model/transpose:0", "model/rescale/y:0"],
                             ["model/rescale:0"], name="model/rescale")]
    tail = [helper.make_node("Softmax", ["model/dense/BiasAdd:0"], ["model/dense/Softmax:0"],
                             axis=1, name="model/dense/Softmax"),
            helper.make_node("Identity", ["model/dense/Softmax:0"], ["Identity:0"])]
    nodes = [*head, *g.node, *tail]
    del g.node[:]
    g.node.extend(nodes)
    _strip_allowzero(g)
    del g.input[:], g.output[:]
    g.input.append(helper.make_tensor_value_info("input_1:0", TensorProto.FLOAT,
                                                 ["unk__1", 32, 32, 3]))
    g.output.append(helper.make_tensor_value_info("Identity:0", TensorProto.FLOAT,
                                                  ["unk__2", 10]))
    m.opset_import[0].version = opset
    m.producer_name = "tf2onnx"
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(dst))
    return dst


def tiny(dst: Path, *, opset: int = 9, inputs: int = 1, out_rank: int = 2, in_rank: int = 4,
         softmax: bool = True, record: str | None = None) -> Path:
    """A small helper-built classifier: NHWC 8x8x3 → Transpose → Conv → GAP → Gemm (5)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "fc_w"),
             numpy_helper.from_array(np.zeros(5, np.float32), "fc_b")]
    full: list[str | int] = ["N", 8, 8, 3] if in_rank <= 4 else ["N", 1, 8, 8, 3]
    shape = full[:in_rank] if in_rank <= 4 else full
    nodes = [helper.make_node("Transpose", ["input_1:0"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["model/dense/BiasAdd:0"],
                              transB=1)]
    out = "model/dense/BiasAdd:0"
    if softmax:
        nodes.append(helper.make_node("Softmax", [out], ["probs:0"], axis=1))
        out = "probs:0"
    if out_rank == 3:
        shape_init = numpy_helper.from_array(np.array([0, 1, 5], np.int64), "shape3")
        inits.append(shape_init)
        nodes.append(helper.make_node("Reshape", [out, "shape3"], ["out3:0"]))
        out = "out3:0"
    graph_inputs = [helper.make_tensor_value_info("input_1:0", TensorProto.FLOAT, shape)]
    if inputs == 2:
        extra: list[str | int] = ["N", 5]
        graph_inputs.append(helper.make_tensor_value_info("extra:0", TensorProto.FLOAT, extra))
        nodes.append(helper.make_node("Add", [out, "extra:0"], ["sum:0"]))
        out = "sum:0"
    out_shape: list[str | int] = ["N", 5] if out_rank == 2 else ["N", 1, 5]
    graph = helper.make_graph(nodes, "keras_model", graph_inputs,
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="keras2onnx")
    model.ir_version = 7
    if record is not None:
        model.metadata_props.add(key=METADATA_KEY, value=record)
    if in_rank == 4:
        onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("foreign")


@pytest.fixture(scope="module")
def foreign(work: Path) -> Path:
    return make_foreign(work / "tf2onnx-resnet20.onnx")


@pytest.fixture(scope="module")
def attached(work: Path, foreign: Path) -> Path:
    result = _run("attach", foreign, "-o", work / "attached.onnx", *STATED, "--name", "r20-tf")
    assert result.exit_code == 0, result.output
    assert "10 classes as probabilities, opset 11" in result.output
    return work / "attached.onnx"


@pytest.fixture(scope="module")
def eval_subset():
    """A seeded subset of the CIFAR-10 test split, the same for every model scored on it."""
    return open_data("cifar10-test").subset(EVAL_IMAGES, seed=0)


@pytest.fixture(scope="module")
def shipped_eval(eval_subset):
    """The shipped fp32 model's report on ``eval_subset``: the numbers to match."""
    p = runtime.load(SHIPPED)
    return evaluate(p.run, eval_subset, p.meta)


# --- the foreign-model path, end to end ---------------------------------------------------------


def test_attach_writes_the_statement_and_the_graph_facts(attached: Path, foreign: Path) -> None:
    """attach reads layout, names, classes and the final Softmax from the graph and keeps the
    stated BGR/0-255/mean; the copy passes the onnx checker and `info` shows the record."""
    onnx.checker.check_model(onnx.load(str(attached)))
    meta = runtime.load(attached).meta
    assert meta.input.name == "input_1:0" and meta.input.layout == "NHWC"
    assert meta.input.shape == ("batch", 32, 32, 3) and meta.num_classes == 10
    assert meta.output == "probabilities" and meta.outputs_probabilities is True
    pre = meta.preprocess
    assert (pre.channel_order, pre.pixel_scale, pre.std) == ("BGR", 255.0, (1.0, 1.0, 1.0))
    assert pre.crop == (32, 32) and pre.resize == 32 and meta.name == "r20-tf"
    assert meta.provenance[-1]["step"] == "attach" and meta.provenance[-1]["opset"] == 11
    info = _run("info", attached)
    assert info.exit_code == 0 and '"channels": "BGR"' in info.output
    assert '"color"' not in info.output and '"channel_order"' not in info.output
    bare = _run("info", foreign)
    assert "metadata record: none" in bare.output and "edgeres attach" in bare.output
    stated = _run("info", foreign, *STATED)
    assert stated.exit_code == 0 and '"pixel_scale": 255.0' in stated.output


@pytest.mark.slow
def test_fp32_foreign_model_scores_exactly_as_the_shipped_model(attached: Path, eval_subset,
                                                                 shipped_eval) -> None:
    """The stated preprocessing is right: same top-1 as the shipped model, same top-1 class on
    every one of the real CIFAR-10 test images."""
    p = runtime.load(attached)
    got = evaluate(p.run, eval_subset, p.meta)
    assert got.count == EVAL_IMAGES
    assert got.top1 == shipped_eval.top1 and got.agreement(shipped_eval) == 100.0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_quantize_upgrades_the_opset_and_int8_agrees_with_fp32(
        backend: str, work: Path, foreign: Path, eval_subset, shipped_eval) -> None:
    """quantize takes the record-less opset-11 model with the stated options; ORT upgrades it
    to opset 13 and says so; int8 top-1 on real CIFAR images stays within 2 points of fp32."""
    out = work / ("int8.onnx" if backend == "ort" else "int8.xml")
    result = _run("quantize", foreign, *STATED, "--calib", "cifar10", "--samples", 64,
                  "--backend", backend, "-o", out)
    assert result.exit_code == 0, result.output
    assert ("upgraded opset 11 → 13" in result.output) == (backend == "ort")
    p = runtime.load(out)
    assert p.meta.output == "probabilities" and p.meta.preprocess.channel_order == "BGR"
    if backend == "ort":
        assert p.meta.extra["quantization"]["opset_upgraded"] == [11, 13]
        assert onnx.load(str(out)).opset_import[0].version >= 13
    int8 = evaluate(p.run, eval_subset, p.meta)
    agreement = int8.agreement(shipped_eval)
    print(f"\n{backend}: fp32 top-1 {shipped_eval.top1:.2f}%, int8 {int8.top1:.2f}%, "
          f"agreement {agreement:.2f}% on {int8.count} CIFAR-10 test images")
    assert abs(int8.top1 - shipped_eval.top1) <= 2.0 and agreement >= 95.0


def test_predict_prints_the_models_own_probabilities(foreign: Path, attached: Path) -> None:
    """No second softmax: predict --json gives exactly the rows the Softmax graph outputs."""
    images = _sample_images(3)
    result = _run("predict", foreign, *images, "--json", "--top-k", 3, *STATED)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    meta = runtime.load(attached).meta
    session = ort.InferenceSession(str(foreign), providers=["CPUExecutionProvider"])
    own = session.run(None, {"input_1:0": prepare(images, meta)})[0]
    for row, pred in zip(own, doc["predictions"], strict=True):
        order = np.argsort(-row, kind="stable")[:3]
        assert pred["indices"] == order.tolist()
        np.testing.assert_allclose(pred["probabilities"], row[order], rtol=1e-6, atol=1e-7)
    text = _run("predict", attached, images[0], "--top-k", 1)
    assert f"{float(own[0].max()):8.4f}" in text.output


def _sample_images(n: int) -> list[str]:
    from edgeres.names import calibration_dir

    return [str(p) for p in sorted((calibration_dir() / "cifar10-calib").rglob("*.jpg"))[:n]]


def test_bench_times_the_foreign_model(foreign: Path, work: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """bench takes a record-less model with the stated options (a short run), benchmarking a
    copy with the stated record that it keeps in its cache."""
    monkeypatch.setenv("EDGERES_CACHE", str(work / "cache"))
    out = work / "bench.json"
    result = _run("bench", foreign, *STATED, "--runtime", "ort-cpu", "--duration", 0.2,
                  "--rounds", 1, "--warmup", 1, "--no-memory", "--json", out)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [r["status"] for r in rows] == ["ok"]
    copies = list((work / "cache").rglob("stated-*.onnx"))
    assert len(copies) == 1 and runtime.load(copies[0]).meta.preprocess.channel_order == "BGR"


@pytest.mark.slow
def test_package_bundle_gives_the_same_top1_as_predict(foreign: Path, attached: Path,
                                                       work: Path) -> None:
    """package with the stated options: the bundle's infer.py ranks as edgeres.runtime does,
    with the model's own probabilities."""
    bundle = work / "bundle"
    result = _run("package", foreign, *STATED, "-o", bundle)
    assert result.exit_code == 0, result.output
    record = json.loads((bundle / "metadata.json").read_text())
    assert record["preprocess"]["channel_order"] == "BGR" and record["output"] == "probabilities"
    images = _sample_images(4)
    out = subprocess.run([sys.executable, str(bundle / "infer.py"), *images, "--json",
                          "--top-k", "2"], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)["predictions"]
    want = runtime.load(attached).predict(images, top_k=2)
    for g, w in zip(got, want, strict=True):
        assert g["indices"] == list(w.indices)
        np.testing.assert_allclose(g["probabilities"], w.probabilities, rtol=1e-6)


def test_old_opsets_are_upgraded_and_a_failed_upgrade_is_one_line(work: Path, monkeypatch
                                                                   ) -> None:
    """An opset-9 Keras-style graph quantizes with ORT after an upgrade to 13; a graph the
    converter cannot upgrade is a one-line error naming the opset."""
    src = tiny(work / "keras9.onnx")
    calib = work / "calib.npz"
    np.savez(calib, inputs=np.random.default_rng(1).standard_normal((16, 8, 8, 3)).astype(
        np.float32))
    result = _run("quantize", src, "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25",
                  "--calib", calib, "-o", work / "keras9-int8.onnx")
    assert result.exit_code == 0, result.output
    assert "upgraded opset 9 → 13" in result.output
    assert runtime.load(work / "keras9-int8.onnx").meta.extra["quantization"][
        "opset_upgraded"] == [9, 13]

    def refuse(model, version):
        msg = "No Adapter From Version $9 for Foo"
        raise RuntimeError(msg)

    monkeypatch.setattr("onnx.version_converter.convert_version", refuse)
    result = _run("quantize", src, "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25",
                  "--calib", calib, "-o", work / "never.onnx")
    one_error(result, "uses opset 9", "cannot upgrade it to 13", "No Adapter")
    assert not (work / "never.onnx").exists()


# --- stated values that contradict the graph, models that are not what they seem ---------------


def test_stated_values_that_contradict_the_graph(foreign: Path, work: Path) -> None:
    """--input-size, --layout and --labels that do not fit the graph are one-line errors."""
    one_error(_run("info", foreign, *STATED, "--input-size", 64),
                    "--input-size 64x64 contradicts", "takes 32x32")
    one_error(_run("info", foreign, *STATED, "--layout", "NCHW"),
                    "--layout NCHW contradicts", "would hold 32")
    labels = work / "labels.txt"
    labels.write_text("cat\ndog\n")
    one_error(_run("info", foreign, *STATED, "--labels", labels),
                    "2 labels but the model outputs 10 classes")
    labels.write_text("".join(f"class \x1b[31m{i}\n" for i in range(10)))
    one_error(_run("attach", foreign, *STATED, "--labels", labels, "-o", work / "x.onnx"),
                    "line 1", "control character")
    one_error(_run("predict", foreign, _sample_images(1)[0]), "edgeres attach", "--mean")


@pytest.mark.parametrize(("case", "fragments"), [
    ("two-inputs", ("has 2 inputs (input_1:0, extra:0)", "exactly one 4-D image input")),
    ("3-D output", ("outputs a 3-D tensor out3:0", "one [N, classes] output")),
    ("3-D input", ("takes a 3-D input input_1:0", "one 4-D image input")),
    ("no inputs", ("has 0 inputs (none)",)),
])
def test_models_that_are_not_classifiers_are_named(case: str, fragments: tuple[str, ...],
                                                   work: Path) -> None:
    """Anything but one 4-D image input to one [N, classes] output is a one-line error."""
    path = work / f"{case}.onnx"
    if case == "no inputs":
        const = helper.make_node("Constant", [], ["y"], value=numpy_helper.from_array(
            np.ones((1, 5), np.float32)))
        graph = helper.make_graph([const], "g", [], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 5])])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
                  str(path))
    else:
        tiny(path, inputs=2 if case == "two-inputs" else 1,
             out_rank=3 if case == "3-D output" else 2, in_rank=3 if case == "3-D input" else 4)
    with pytest.raises(ModelFileError) as info:
        stated_record(path, RecordOptions(mean=(0.5,) * 3, std=(0.5,) * 3))
    assert "\n" not in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)
    one_error(_run("quantize", path, "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5",
                         "--calib", "cifar10", "-o", work / f"{case}-q.onnx"), fragments[0])


def test_one_conv_classifier_without_a_record_quantizes(work: Path) -> None:
    """Nodes without names, no Gemm, logits out: stated options are all it needs."""
    rng = np.random.default_rng(2)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"]),
         helper.make_node("GlobalAveragePool", ["c"], ["p"]),
         helper.make_node("Flatten", ["p"], ["logits"])],
        "one_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")])
    src = work / "one-conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(src))
    calib = work / "calib-nchw.npz"
    np.savez(calib, inputs=rng.standard_normal((16, 3, 8, 8)).astype(np.float32))
    result = _run("quantize", src, "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25",
                  "--calib", calib, "-o", work / "one-conv-int8.onnx")
    assert result.exit_code == 0, result.output
    meta = runtime.load(work / "one-conv-int8.onnx").meta
    assert meta.output == "logits" and meta.num_classes == 4 and meta.precision == "int8"


# --- untrusted metadata records -------------------------------------------------------------------

BAD_RECORDS = {
    "mean-text": (lambda d: d["preprocess"].__setitem__("mean", "abc"), "preprocess.mean"),
    "std-zero": (lambda d: d["preprocess"].__setitem__("std", [0.2, 0.0, 0.2]), "preprocess.std"),
    "huge-resize": (lambda d: d["preprocess"].__setitem__("resize", 100000), "preprocess.resize"),
    "huge-crop": (lambda d: d["preprocess"].__setitem__("crop", [9000, 9000]), "preprocess.crop"),
    "label-newline": (lambda d: d["labels"].__setitem__(3, "cat\nError: fake"), "labels[3]"),
    "label-escape": (lambda d: d["labels"].__setitem__(0, "\x1b[2J\x1b[31mplane"), "labels[0]"),
    "name-escape": (lambda d: d.__setitem__("name", "r20\x07"), "name"),
    "labels-count": (lambda d: d.__setitem__("labels", ["a", "b"]), "labels"),
    "classes-bool": (lambda d: d.__setitem__("num_classes", True), "num_classes"),
    "nan-mean": (lambda d: d["preprocess"].__setitem__("mean", [float("nan")] * 3),
                 "preprocess.mean"),
    "scale-negative": (lambda d: d["preprocess"].__setitem__("pixel_scale", -1),
                       "preprocess.pixel_scale"),
    "channel-order": (lambda d: d["preprocess"].__setitem__("channel_order", "GBR"),
                      "preprocess.channel_order"),
    "interpolation": (lambda d: d["preprocess"].__setitem__("interpolation", "lanczos9"),
                      "preprocess.interpolation"),
    "output-kind": (lambda d: d.__setitem__("output", "logprobs"), "output"),
    "shape-3d": (lambda d: d["input"].__setitem__("shape", ["batch", 3, 32]), "input.shape"),
    "channels-4": (lambda d: d["input"].__setitem__("shape", ["batch", 4, 32, 32]),
                   "channel count"),
    "provenance": (lambda d: d.__setitem__("provenance", "x"), "provenance"),
    "missing": (lambda d: d.pop("labels"), "'labels'"),
}


def _shipped_record() -> dict:
    return json.loads(runtime.load(SHIPPED).backend.record_text)


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_bad_record_values_are_one_line_metadata_errors(case: str) -> None:
    """Each bad value is a MetadataError on one line that names the field (never a crash,
    NaN predictions, a 30 GB resize or a label that rewrites the terminal)."""
    mutate, field = BAD_RECORDS[case]
    d = _shipped_record()
    mutate(d)
    with pytest.raises(MetadataError) as info:
        ModelMeta.from_json(json.dumps(d))
    text = str(info.value)
    assert "\n" not in text and "\x1b" not in text and field in text, text


def test_a_model_with_a_bad_record_fails_each_command_in_one_line(work: Path) -> None:
    """predict, info and bench on a model whose record has std 0: one error line each."""
    d = _shipped_record()
    d["preprocess"]["std"] = [0.0, 0.0, 0.0]
    proto = onnx.load(str(SHIPPED))
    del proto.metadata_props[:]
    proto.metadata_props.add(key=METADATA_KEY, value=json.dumps(d))
    bad = work / "bad-record.onnx"
    onnx.save(proto, str(bad))
    image = _sample_images(1)[0]
    one_error(_run("predict", bad, image), "preprocess.std")
    one_error(_run("info", bad), "preprocess.std")
    one_error(_run("bench", bad, "--no-memory", "--duration", 0.1), "preprocess.std")
    one_error(_run("package", bad, "-o", work / "never-bundle"), "preprocess.std")
    assert not (work / "never-bundle").exists()
    with pytest.raises(MetadataError, match="preprocess.std"):
        runtime.load(bad)


def test_records_without_the_new_fields_read_and_write_back_unchanged() -> None:
    """A schema-1 record from before channel_order/pixel_scale/output round-trips byte for
    byte, and its model predicts as before (RGB, 0-1 scale, softmax of logits)."""
    text = runtime.load(SHIPPED).backend.record_text
    assert "channel_order" not in text and '"output"' not in text
    meta = ModelMeta.from_json(text)
    assert meta.to_json() == text
    assert (meta.preprocess.channel_order, meta.preprocess.pixel_scale) == ("RGB", 1.0)
    assert meta.outputs_probabilities is False  # edgeres exports logits


# --- the library's error contract ---------------------------------------------------------------


@pytest.mark.parametrize(("path", "meta", "error", "fragment"), [
    (5, None, ModelFileError, "got int 5"),
    (None, None, ModelFileError, "got NoneType"),
    (b"\x08\x07onnx", None, ModelFileError, "not its bytes"),
    ("", None, ModelFileError, "got str"),
    (SHIPPED, "x", MetadataError, "meta must be an edgeres.meta.ModelMeta"),
    (SHIPPED, {"name": "x"}, MetadataError, "got dict"),
])
def test_load_with_wrong_arguments_raises_edgeres_errors(path, meta, error, fragment) -> None:
    """Wrong argument types are EdgeresError subclasses with a message, never TypeError."""
    with pytest.raises(error, match=fragment):
        runtime.load(path, meta=meta)


def test_empty_images_and_bad_given_records_are_edgeres_errors() -> None:
    """An empty image is a DataError (not ZeroDivisionError); a given record with std 0 is a
    MetadataError at load (not NaN predictions)."""
    from PIL import Image

    p = runtime.load(SHIPPED)
    for empty in (np.zeros((0, 0, 3), np.uint8), np.zeros((5, 0, 3), np.uint8),
                  Image.new("RGB", (0, 4))):
        with pytest.raises(DataError, match="empty"):
            p.predict(empty)
    bad = p.meta.evolve(preprocess=p.meta.preprocess.__class__(
        resize=32, crop=(32, 32), mean=(0.5,) * 3, std=(0.0,) * 3))
    with pytest.raises(MetadataError, match="preprocess.std"):
        runtime.load(SHIPPED, meta=bad)
    with pytest.raises(EdgeresError):
        runtime.load(SHIPPED, session_options="fast")


def test_probabilities_are_never_softmaxed_twice() -> None:
    """Rows the record calls probabilities, or that are distributions when it says nothing,
    are ranked as they are; logits are softmaxed."""
    rows = np.array([[0.7, 0.2, 0.1], [0.0, 1.0, 0.0]], np.float32)
    for flag in (True, None):
        out = runtime.topk_predictions(rows, ("a", "b", "c"), 2, probabilities=flag)
        np.testing.assert_allclose(out[0].probabilities, [0.7, 0.2], rtol=1e-6)
        assert out[1].labels == ("b", "a") and out[1].probabilities[0] == 1.0
    logits = runtime.topk_predictions(rows, ("a", "b", "c"), 1, probabilities=False)
    e = np.exp(rows[0].astype(np.float64))
    np.testing.assert_allclose(logits[0].probabilities, [e[0] / e.sum()], rtol=1e-6)


def test_bgr_and_the_255_scale_in_the_one_preprocessing() -> None:
    """BGR reverses channels before (x * scale / 255 - mean) / std, mean in BGR order."""
    meta = stated_record(SHIPPED, RecordOptions(mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0),
                                                scale=255.0, channels="BGR"))
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 200, 100, 50  # R, G, B
    x = prepare(image, meta)
    assert x.shape == (1, 3, 32, 32)
    np.testing.assert_allclose(x[0, :, 0, 0], [(50 - 10) / 2, (100 - 20) / 4, (200 - 30) / 5],
                               rtol=1e-6)


def test_attach_is_atomic_and_refuses_a_missing_directory(foreign: Path, work: Path) -> None:
    """A failed attach leaves nothing behind; the library function writes the same record."""
    with pytest.raises(EdgeresError, match="does not exist"):
        attach(foreign, work / "no-such-dir" / "m.onnx", OPTIONS)
    report = attach(foreign, work / "lib.onnx", OPTIONS)
    assert report.meta.preprocess.channel_order == "BGR" and not report.replaced


def _embedding_model(dst: Path) -> Path:
    """A face-embedding-like graph: Conv → GAP → Gemm to 128 → LpNormalization (unit rows)."""
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fc_w"], ["e"], transB=1),
             helper.make_node("LpNormalization", ["e"], ["embedding"], axis=1, p=2)]
    graph = helper.make_graph(
        nodes, "embedder", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 128])],
        [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
         numpy_helper.from_array(rng.standard_normal((128, 8)).astype(np.float32), "fc_w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(dst))
    return dst


def test_an_embedding_model_is_not_taken_for_a_classifier(work: Path, tmp_path: Path) -> None:
    """[N, 128] unit-length rows with no labels: predict, eval, bench, quantize and attach each
    refuse in one line saying why (it printed "class_76 0.0124"); --output-kind logits
    states otherwise and predict then runs."""
    src = _embedding_model(tmp_path / "faces.onnx")
    stated = ("--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25")
    image = _sample_images(1)[0]
    folder = Path(image).parent.parent
    for args in (("predict", src, image), ("eval", src, "--data", folder, "--limit", 4),
                 ("bench", src, "--iterations", 1, "--rounds", 1, "--no-memory"),
                 ("quantize", src, "--calib", "cifar10", "-o", tmp_path / "q.onnx"),
                 ("attach", src, "-o", tmp_path / "a.onnx")):
        line = one_error(_run(*args, *stated), "rows of length 1", "[N, 128]",
                         "--output-kind logits|probabilities")
        assert "embedding" in line, args[0]
    assert not (tmp_path / "q.onnx").exists() and not (tmp_path / "a.onnx").exists()
    ok = _run("predict", src, image, *stated, "--output-kind", "logits", "--top-k", 1)
    assert ok.exit_code == 0 and "class_" in ok.output


def test_a_resize_below_the_input_and_a_mean_without_std_are_refused(foreign: Path,
                                                                    work: Path) -> None:
    """--resize 24 for a 32x32 input would zero-pad every image, and --mean alone silently
    meant std 1: each is one line saying what to give; nothing is written."""
    out = work / "refused.onnx"
    line = one_error(_run("attach", foreign, "-o", out, *STATED, "--resize", 24),
                     "--resize 24", "32x32", "at least 32")
    assert "pad" in line
    mean_only = STATED[:2] + STATED[4:]
    one_error(_run("attach", foreign, "-o", out, *mean_only), "--mean without --std",
              "--std 1,1,1")
    one_error(_run("predict", foreign, _sample_images(1)[0], *STATED[2:]),
              "--std without --mean", "--mean 0,0,0")
    assert not out.exists()
    assert _run("attach", foreign, "-o", out, *STATED, "--resize", 36).exit_code == 0


def test_export_attach_and_quantize_replace_an_output_only_with_force(foreign: Path,
                                                                     tmp_path: Path) -> None:
    """One overwrite rule, package's: an existing output is refused in one line naming
    --force and left as it was; with --force it is replaced by a valid model."""
    out = tmp_path / "model.onnx"
    runs = {"attach": ("attach", foreign, *STATED),
            "quantize": ("quantize", SHIPPED, "--calib", "cifar10", "--samples", 8),
            "export": ("export", "cifar_resnet20", "--weights", "cifar10")}
    for name, args in runs.items():
        out.write_bytes(b"my notes")
        one_error(_run(*args, "-o", out), str(out), "already exists", "--force")
        assert out.read_bytes() == b"my notes", name
    result = _run(*runs["attach"], "-o", out, "--force")
    assert result.exit_code == 0, result.output
    assert runtime.load(out).meta.preprocess.channel_order == "BGR"


def test_bench_skips_torch_for_a_foreign_nhwc_model_without_blaming_uint8(
        foreign: Path, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The torch row of a float NHWC foreign model is skipped with a reason about the layout
    and the PyTorch rows, not a suggestion to export without --uint8-input (it has none)."""
    monkeypatch.setenv("EDGERES_CACHE", str(work / "cache-torch"))
    out = work / "bench-torch.json"
    result = _run("bench", foreign, *STATED, "--runtime", "torch-cpu", "--iterations", 1,
                  "--rounds", 1, "--warmup", 0, "--no-memory", "--json", out)
    rows = json.loads(out.read_text())["rows"]
    assert [r["status"] for r in rows] == ["skipped"], result.output
    reason = rows[0]["reason"]
    assert "float32 NHWC" in reason and "ONNX runtimes" in reason
    assert "uint8" not in reason
