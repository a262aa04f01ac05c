"""ONNX export: every zoo model exports and verifies with its record; failures leave nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgeres.errors import ConfigError, ExportError
from edgeres.export import ExportConfig, export_onnx
from edgeres.meta import ModelMeta, read_onnx_meta
from edgeres.models import create_model, list_models, model_info
from edgeres.models.deploy import fold_batchnorm
from edgeres.zoo import zoo_meta

# ImageNet models export at 64x64 here: the graph is the same, the test suite minutes shorter.
_SIZE = {"imagenet": 64}
_FAST = ExportConfig(parity_inputs=4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(name: str = "cifar_resnet20", **kwargs: Any) -> Any:  # submodules by attribute
    """A zoo model with random, non-trivial BN statistics (so folding errors would show)."""
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.0)
            m.bias.data.uniform_(-0.1, 0.1)
    return model


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# The ImageNet-size and deep ones take 1-16 s each on 2 cores: `make test` runs them,
# `make test-fast` keeps the small CIFAR ones.
_SLOW_EXPORTS = {"resnet50", "resnet101", "resnet152", "wide_resnet50_2", "resnext50_32x4d",
                 "resnet45", "cifar_resnet34", "cifar_resnet50", "tiny_resnet28", "resnet34",
                 "cspresnet50", "resnet18", "preact_resnet18", "wrc_resnet18", "cifar_resnet18"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_EXPORTS
                                  else n for n in list_models()])
def test_every_model_exports_with_parity_and_no_batchnorm(tmp_path, name):
    """Each zoo model exports, passes the checker and ORT parity, with no BatchNormalization."""
    info = model_info(name)
    meta = zoo_meta(name, input_size=_SIZE.get(info.family))
    report = export_onnx(_model(name), tmp_path / "m.onnx", meta=meta, config=_FAST)
    model = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(model, full_check=True)
    ops = {node.op_type for node in model.graph.node}
    assert "BatchNormalization" not in ops
    assert report.max_abs_err <= report.tolerance
    assert report.max_rel_err < 1e-5  # fp32 reordering only: measured <= 1.5e-6 on the zoo
    assert report.top1_agreement in (1.0, None)
    assert (report.top1_agreement is None) == (info.num_classes == 0)
    assert model.graph.output[0].name == ("logits" if info.num_classes else "features")
    assert report.size_bytes == (tmp_path / "m.onnx").stat().st_size
    assert report.node_counts.get("Conv", 0) > 0


def test_folding_leaves_no_batchnorm_and_the_same_function():
    """fold_batchnorm removes every BN (pre-activation ones as affines) and keeps the outputs."""
    model = _model("cifar_preact_resnet20").eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref, got = model(x), folded(x)
    assert (ref - got).abs().max() <= 1e-5 * ref.abs().max()


@pytest.mark.parametrize("simplify", [False, True])
def test_dynamic_batch_runs_at_1_and_8(tmp_path, simplify):
    """The batch axis stays symbolic (also after onnxslim): batch 1 and 8 both run."""
    model = _model()
    path = tmp_path / "m.onnx"
    export_onnx(model, path, meta=zoo_meta("cifar_resnet20"),
                config=ExportConfig(parity_inputs=2, simplify=simplify))
    sess = _session(path)
    assert isinstance(sess.get_inputs()[0].shape[0], str)
    x = np.random.default_rng(0).standard_normal((8, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x)).numpy()
    for n in (1, 8):
        out = sess.run(None, {"input": x[:n]})[0]
        assert out.shape == (n, 10)
        assert np.abs(out - ref[:n]).max() <= 1e-4 * np.abs(ref).max()


def test_fixed_batch(tmp_path):
    """batch=4 gives a graph and a record with a fixed first axis of 4."""
    report = export_onnx(_model(), tmp_path / "m.onnx", meta=zoo_meta("cifar_resnet20"),
                         config=ExportConfig(batch=4, parity_inputs=4))
    assert report.meta is not None and report.meta.input.shape == (4, 3, 32, 32)
    assert _session(tmp_path / "m.onnx").get_inputs()[0].shape == [4, 3, 32, 32]


def test_metadata_round_trips_with_export_provenance(tmp_path):
    """The record read back from the file equals the report's, with the export step in it."""
    sha = "ab" * 32
    meta = zoo_meta("cifar_resnet20", labels=[f"l{i}" for i in range(10)], weights_sha256=sha)
    report = export_onnx(_model(), tmp_path / "m.onnx", meta=meta, config=_FAST)
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert [p.key for p in model.metadata_props] == ["edgeres"]
    stored = read_onnx_meta(model)
    assert stored is not None and stored == report.meta
    assert stored.to_json() == ModelMeta.from_json(stored.to_json()).to_json()
    assert stored.labels == tuple(f"l{i}" for i in range(10))
    step = stored.provenance[-1]
    assert step["step"] == "export" and step["input_sha256"] == sha
    assert step["exporter"] == "torchscript" and step["opset"] == 17
    assert step["max_abs_err"] == report.max_abs_err
    assert step["top1_agreement"] == report.top1_agreement
    assert stored.weights_sha256 == sha and stored.precision == "fp32"


def test_uint8_input_graph_normalises_pixels(tmp_path):
    """A uint8-input graph takes NHWC pixels and matches PyTorch on the normalised image."""
    model = _model()
    report = export_onnx(model, tmp_path / "m.onnx", meta=zoo_meta("cifar_resnet20"),
                         config=ExportConfig(uint8_input=True, parity_inputs=4))
    assert report.meta is not None
    spec = report.meta.input
    assert (spec.shape, spec.layout, spec.dtype) == (("batch", 32, 32, 3), "NHWC", "uint8")
    assert spec.normalized_in_graph
    pixels = np.random.default_rng(7).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    out = _session(tmp_path / "m.onnx").run(None, {"input": pixels})[0]
    pre = report.meta.preprocess
    mean, std = np.asarray(pre.mean, np.float32), np.asarray(pre.std, np.float32)
    x = (pixels.astype(np.float32) / 255 - mean) / std
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()
    assert (out.argmax(1) == ref.argmax(1)).all()


def test_fp16_export_within_its_tolerance(tmp_path):
    """fp16 stores half weights behind float32 I/O and stays within 1e-2 of the output scale."""
    report = export_onnx(_model("resnet18"), tmp_path / "m.onnx",
                         meta=zoo_meta("resnet18", input_size=64),
                         config=ExportConfig(fp16=True, parity_inputs=4))
    assert report.meta is not None and report.meta.precision == "fp16"
    assert 0 < report.max_rel_err <= 1e-2
    model = onnx.load(str(tmp_path / "m.onnx"))
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    types = {i.data_type for i in model.graph.initializer if i.name in conv_weights}
    assert types == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_wrong_graph_fails_parity_and_writes_nothing(tmp_path, monkeypatch):
    """A graph that computes something else raises ExportError; no file or temp file remains."""
    import edgeres.export as export_mod

    def broken(model):
        folded = fold_batchnorm(model)
        with torch.no_grad():
            cast(nn.Conv2d, folded.get_submodule("layer2.1.conv1")).weight.mul_(1.5)  # wrong
        return folded

    monkeypatch.setattr(export_mod, "fold_batchnorm", broken)
    with pytest.raises(ExportError, match="ONNX Runtime disagrees with PyTorch") as e:
        export_onnx(_model(), tmp_path / "m.onnx", meta=zoo_meta("cifar_resnet20"), config=_FAST)
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_export_keeps_an_existing_file(tmp_path):
    """A failing export does not touch a previous file at the output path."""
    dst = tmp_path / "m.onnx"
    dst.write_bytes(b"previous")
    with pytest.raises(ExportError):
        export_onnx(_model(), dst, meta=zoo_meta("cifar_resnet20"),
                    config=ExportConfig(atol=0.0, rtol=0.0, parity_inputs=4, fp16=True))
    assert dst.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.parametrize("opset", [13, 21])
def test_opsets_13_and_21_export(tmp_path, opset):
    """The supported opset range ends at 13 and 21, both exported and verified."""
    report = export_onnx(_model(), tmp_path / "m.onnx", meta=zoo_meta("cifar_resnet20"),
                         config=ExportConfig(opset=opset, parity_inputs=2))
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {opset}
    assert report.opset == opset


@pytest.mark.parametrize("opset", [12, 22])
def test_unsupported_opset_is_a_one_line_error(opset):
    """Opsets outside 13-21 are refused when the config is built, saying the range."""
    with pytest.raises(ConfigError, match="use 13 to 21") as e:
        ExportConfig(opset=opset)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("bad", [{"batch": 0}, {"batch": "auto"}, {"atol": -1.0},
                                 {"parity_inputs": 0}])
def test_invalid_config_values_are_refused(bad):
    """Nonsense options fail at the boundary with ConfigError, not deep inside the export."""
    with pytest.raises(ConfigError):
        ExportConfig(**bad)


@pytest.mark.parametrize("size", [0, -8, (32, 0)])
def test_nonsense_input_size_is_refused(size):
    """Zero or negative input sizes are refused before anything is built."""
    with pytest.raises(ConfigError, match="sizes must be positive"):
        zoo_meta("cifar_resnet20", input_size=size)


def test_labels_and_normalisation_are_checked():
    """Labels must match the class count; mean/std need one value per channel, std > 0."""
    with pytest.raises(ConfigError, match="3 labels given for 10 classes"):
        zoo_meta("cifar_resnet20", labels=["a", "b", "c"])
    with pytest.raises(ConfigError, match="one finite value per input channel"):
        zoo_meta("cifar_resnet20", mean=(0.5, 0.5), std=(0.2, 0.2))
    with pytest.raises(ConfigError, match="must be positive"):
        zoo_meta("cifar_resnet20", mean=(0.5,) * 3, std=(0.2, 0.0, 0.2))
    meta = zoo_meta("cifar_resnet20", mean=(0.5,) * 3, std=(0.25,) * 3)
    assert meta.preprocess.mean == (0.5,) * 3 and meta.preprocess.std == (0.25,) * 3


def test_output_directory_must_exist(tmp_path):
    """An output path in a missing directory fails at once with a fix-it message."""
    with pytest.raises(Exception, match="does not exist; create it first") as e:
        export_onnx(_model(), tmp_path / "no" / "m.onnx", meta=zoo_meta("cifar_resnet20"))
    assert "\n" not in str(e.value)


def test_export_does_not_modify_the_model(tmp_path):
    """Export works on a copy: the model's weights and training mode are unchanged."""
    model = _model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, tmp_path / "m.onnx", meta=zoo_meta("cifar_resnet20"), config=_FAST)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class _Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.bn(self.conv(x))
        return y if y.sum() > 0 else -y


def test_untraceable_model_still_loses_its_batchnorms():
    """Without an fx trace every BatchNorm becomes an exact per-channel affine."""
    model = _Untraceable().eval()
    with torch.no_grad():
        assert model.bn.running_mean is not None and model.bn.running_var is not None
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), folded(x), atol=1e-6)


def test_exported_nodes_keep_the_module_names(tmp_path: Path) -> None:
    """Folding keeps the module tree, so nodes are named after layers (what --exclude takes)."""
    report = export_onnx(_model(), tmp_path / "m.onnx", meta=zoo_meta("cifar_resnet20"),
                         config=_FAST)
    convs = {n.name for n in onnx.load(str(report.path)).graph.node if n.op_type == "Conv"}
    assert {"/conv1/Conv", "/layer1/layer1.0/conv1/Conv", "/layer3/layer3.2/conv2/Conv"} <= convs
    assert len(convs) == 19


def test_export_gives_back_each_submodule_its_mode(tmp_path):
    """A BN frozen in eval mode for fine-tuning stays frozen after export; the rest trains."""
    model = _model().train()
    model.layer2[0].bn1.eval()
    export_onnx(model, tmp_path / "m.onnx", meta=zoo_meta("cifar_resnet20"), config=_FAST)
    assert model.training and model.layer2.training and model.layer2[0].bn2.training
    assert not model.layer2[0].bn1.training


@pytest.mark.parametrize("uint8", [False, True])
def test_input_size_too_large_for_memory_is_an_error(tmp_path, uint8):
    """An input size whose parity inputs cannot be allocated is an ExportError, not a crash."""
    meta = zoo_meta("cifar_resnet20", input_size=10**7)  # petabytes: refused at once
    with pytest.raises(ExportError, match=r"10000000x10000000 is too large") as e:
        export_onnx(_model(), tmp_path / "m.onnx", meta=meta,
                    config=ExportConfig(parity_inputs=4, uint8_input=uint8))
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_non_finite_model_is_blamed_not_onnx_runtime(tmp_path):
    """NaN weights give an error about the model, not an fp16 overflow in ONNX Runtime."""
    model = _model()
    with torch.no_grad():
        model.fc.weight[0, 0] = float("nan")
    with pytest.raises(ExportError, match="itself outputs inf or NaN in PyTorch") as e:
        export_onnx(model, tmp_path / "m.onnx", meta=zoo_meta("cifar_resnet20"), config=_FAST)
    assert "fp16" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_three_sided_input_size_says_how_to_write_one():
    """--input-size 32x32x32 is refused as a shape mistake, not as a non-positive size."""
    with pytest.raises(ConfigError, match="32x32x32 is invalid; give one side or HxW"):
        zoo_meta("cifar_resnet20", input_size=(32, 32, 32))


@pytest.mark.parametrize("bad", [{"seed": -1}, {"parity_inputs": 2.5}, {"parity_inputs": True},
                                 {"atol": "1e-4"}, {"rtol": float("nan")}])
def test_mistyped_config_values_are_export_errors(bad):
    """Wrong types and a negative seed fail when the config is built, as one-line ConfigErrors."""
    with pytest.raises(ConfigError, match="is invalid") as e:
        ExportConfig(**bad)
    assert "\n" not in str(e.value)


# --- edgeres info on unusual but valid ONNX files ---------------------------------------------


def _save_graph(path: Path, nodes, inputs, outputs, *, check=True, **save_kwargs) -> Path:
    graph = onnx.helper.make_graph(nodes, "g", inputs, outputs, save_kwargs.pop("init", []))
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    if check:  # an output of unknown rank fails the checker but loads in ONNX Runtime
        onnx.checker.check_model(model)
    onnx.save(model, str(path), **save_kwargs)
    return path


def test_describe_non_tensor_inputs_and_unknown_dims(tmp_path):
    """Sequence and optional inputs, unknown dims and unknown ranks describe, not crash."""
    from edgeres.describe import describe_model_file

    h, t = onnx.helper, onnx.TensorProto
    seq = _save_graph(tmp_path / "seq.onnx",
                      [h.make_node("ConcatFromSequence", ["s"], ["o"], axis=0)],
                      [h.make_tensor_sequence_value_info("s", t.FLOAT, None)],
                      [h.make_tensor_value_info("o", t.FLOAT, None)], check=False)
    d = describe_model_file(seq)
    assert [(x.shape, x.dtype) for x in d.inputs] == [((), "seq(float32)")]
    assert d.outputs[0].shape == ("...",) and d.meta is None
    opt_type = h.make_optional_type_proto(h.make_tensor_type_proto(t.FLOAT, [1]))
    opt = _save_graph(tmp_path / "opt.onnx", [h.make_node("OptionalHasElement", ["x"], ["y"])],
                      [h.make_value_info("x", opt_type)],
                      [h.make_tensor_value_info("y", t.BOOL, [])])
    assert describe_model_file(opt).inputs[0].dtype == "optional(float32)"
    two = _save_graph(tmp_path / "two.onnx", [h.make_node("Add", ["a", "a"], ["y"]),
                                              h.make_node("Identity", ["b"], ["c"])],
                      [h.make_tensor_value_info("a", t.FLOAT, ["N", None, 0]),
                       h.make_tensor_value_info("b", t.STRING, [2, 3, 0])],
                      [h.make_tensor_value_info("y", t.FLOAT, ["N", None, 0]),
                       h.make_tensor_value_info("c", t.STRING, [2, 3, 0])])
    d = describe_model_file(two)
    assert [(x.name, x.shape, x.dtype) for x in d.inputs] == [
        ("a", ("N", "?", 0), "float32"), ("b", (2, 3, 0), "string")]


def test_describe_counts_external_data_and_takes_a_node_free_graph(tmp_path):
    """A model's size includes its external data file; a graph of no nodes is still a model."""
    from edgeres.describe import describe_model_file

    h, t = onnx.helper, onnx.TensorProto
    w = onnx.numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    path = _save_graph(tmp_path / "ext.onnx", [h.make_node("MatMul", ["x", "w"], ["z"])],
                       [h.make_tensor_value_info("x", t.FLOAT, [1, 64])],
                       [h.make_tensor_value_info("z", t.FLOAT, [1, 64])], init=[w],
                       save_as_external_data=True, location="ext.data", size_threshold=0)
    d = describe_model_file(path)
    assert d.size_bytes == path.stat().st_size + (tmp_path / "ext.data").stat().st_size
    assert d.size_bytes > 64 * 64 * 4
    passthrough = _save_graph(tmp_path / "id.onnx", [],
                              [h.make_tensor_value_info("x", t.FLOAT, [1])],
                              [h.make_tensor_value_info("x", t.FLOAT, [1])])
    d = describe_model_file(passthrough)
    assert d.node_counts == {} and d.outputs[0].name == "x"


def test_describe_with_onnxruntime_names_nested_types(tmp_path, monkeypatch):
    """The light-install reader keeps seq(...) types whole and names doubles float64."""
    import edgeres.describe as describe

    h, t = onnx.helper, onnx.TensorProto
    path = _save_graph(tmp_path / "m.onnx",
                       [h.make_node("ConcatFromSequence", ["s"], ["o"], axis=0),
                        h.make_node("Identity", ["d"], ["e"])],
                       [h.make_tensor_sequence_value_info("s", t.FLOAT, None),
                        h.make_tensor_value_info("d", t.DOUBLE, [1])],
                       [h.make_tensor_value_info("o", t.FLOAT, ["M"]),
                        h.make_tensor_value_info("e", t.DOUBLE, [1])])
    monkeypatch.setattr(describe.importlib.util, "find_spec", lambda name, *a: None)
    d = describe.describe_model_file(path)
    assert d.reader == "onnxruntime"
    assert [x.dtype for x in d.inputs] == ["seq(tensor(float))", "float64"]
