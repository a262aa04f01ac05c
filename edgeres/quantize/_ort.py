"""ONNX Runtime static int8: QDQ format, pre-processed, calibrated in bounded memory.

Steps, in a temporary directory: ``quant_pre_process`` (shape inference + ORT graph
optimisation, without which ORT's int8 kernels run no faster than fp32), streaming range
collection (``_ranges``), then ``quantize_static`` reading those ranges from its calibration
cache, so re-quantizing with other float layers never re-runs calibration. A layer "returned
to float" keeps float weights and reads its inputs before their Q/DQ pair: ORT alone would
only skip its weights, because a tensor quantized for one consumer is quantized for all.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeres._fs import atomic_write
from edgeres.calibration import CalibrationSet
from edgeres.errors import BackendNotAvailable, ModelFileError, QuantizationError, first_line
from edgeres.meta import ModelMeta, write_onnx_meta
from edgeres.quantize._ranges import Ranges, collect_ranges, quiet
from edgeres.quantize._report import QuantDetails
from edgeres.quantize.config import TargetSpec

log = logging.getLogger(__name__)

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")  # the layers that can go float
MIN_OPSET = 13  # per-channel QDQ (DequantizeLinear's axis) needs it; older graphs are upgraded
_RESTORED = "_edgeres_float"  # suffix of an activation re-inserted for a float layer


class OrtQuantizer:
    """Builds QDQ models of one source model with any set of layers left in float.

    Args:
        src: the float ONNX model.
        calibration: the selected calibration samples.
        spec: the deployment target's types and symmetry.
        per_channel: per-channel weight scales.
        method: "minmax", "entropy" or "percentile".
        workdir: temporary directory owned by the caller.
    """

    backend = "ort"

    def __init__(self, src: Path, calibration: CalibrationSet, spec: TargetSpec, *,
                 per_channel: bool, method: str, workdir: Path) -> None:
        self.src, self.calibration, self.spec = src, calibration, spec
        self.per_channel, self.method, self.workdir = per_channel, method, workdir
        self.meta = calibration.meta
        _check_ort()
        self.pre = workdir / "preprocessed.onnx"
        self.upgraded = _upgrade_opset(src, workdir / "upgraded.onnx")
        _pre_process(workdir / "upgraded.onnx" if self.upgraded else src, self.pre)
        self.layers, self.op_types = _weighted_layers(self.pre)
        self.head = output_head(self.pre)
        self._ranges: Ranges | None = None
        self._built: dict[tuple[str, ...], Path] = {}

    @property
    def fp32_path(self) -> Path:
        """The pre-processed float model every int8 candidate is compared against."""
        return self.pre

    def calibrate(self) -> None:
        """Collect activation ranges once (one or two streaming passes)."""
        calib = self.calibration
        self._ranges = collect_ranges(self.pre, calib, len(calib), self.method, self.workdir)
        if not self._ranges:
            msg = f"{self.src} has no float activations to calibrate; is it already quantized?"
            raise QuantizationError(msg)

    def check_names(self, names: Sequence[str]) -> None:
        """Raise for node names that are not in the (pre-processed) graph."""
        import onnx

        known = {n.name for n in onnx.load(str(self.pre), load_external_data=False).graph.node}
        unknown = [n for n in names if n not in known]
        if unknown:
            hint = ", ".join(self.layers[:3])
            msg = f"no node named {unknown[0]!r} in {self.src}; layer names look like {hint}"
            raise QuantizationError(msg)

    def build(self, floats: tuple[str, ...]) -> Path:
        """The QDQ model with ``floats`` left in float (cached per set of names)."""
        key = tuple(sorted(floats))
        if key not in self._built:
            path = self.workdir / f"int8-{len(self._built)}.onnx"
            self._write_qdq(path, key)
            self._built[key] = path
        return self._built[key]

    def _write_qdq(self, dst: Path, floats: tuple[str, ...]) -> None:
        import onnx
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            TensorData,
            TensorsData,
            quantize_static,
            save_tensors_data,
        )

        if self._ranges is None:
            self.calibrate()
        assert self._ranges is not None  # set by calibrate()
        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[self.method]
        cache = self.workdir / f"ranges-{self.method}.json"
        if not cache.exists():
            data = {k: TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
                    for k, (lo, hi) in self._ranges.items()}
            save_tensors_data(TensorsData(method, data), cache)
        qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
        with quiet():
            quantize_static(
                str(self.pre), str(dst), None, quant_format=QuantFormat.QDQ,
                per_channel=self.per_channel, reduce_range=self.spec.reduce_range,
                activation_type=qtype[self.spec.activation_type], weight_type=QuantType.QInt8,
                nodes_to_exclude=[*floats, *self.head], calibrate_method=method,
                extra_options={"ActivationSymmetric": self.spec.activation_symmetric,
                               "WeightSymmetric": True},
                calibration_cache_path=str(cache),
            )
        if floats or self.head:
            proto = onnx.load(str(dst))
            _float_inputs(proto, {*floats, *self.head}, onnx.load(str(self.pre)))
            onnx.save(proto, str(dst))

    def load(self, path: Path, threads: int | None = None) -> Any:
        """A predictor for a candidate (or the fp32 model), through ``edgeres.runtime``."""
        from edgeres import runtime

        return runtime.load(path, backend="ort", meta=self.meta, threads=threads)

    def tensor_runner(self, path: Path, names: Sequence[str]
                      ) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        """A function running ``path`` on one batch and returning the named tensors.

        Graph optimisation is off, so a QDQ model computes exactly what its Q/DQ nodes say.
        """
        import onnx
        import onnxruntime as ort

        proto = onnx.load(str(path))
        produced = {o for node in proto.graph.node for o in node.output}
        present = {o.name for o in proto.graph.output}
        wanted = [n for n in dict.fromkeys(names) if n in produced]
        for name in wanted:
            if name not in present:
                proto.graph.output.append(onnx.helper.make_tensor_value_info(
                    name, onnx.TensorProto.FLOAT, None))
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.log_severity_level = 3
        session = ort.InferenceSession(proto.SerializeToString(), so,
                                       providers=["CPUExecutionProvider"])
        feed = self.meta.input.name

        def run(x: np.ndarray) -> dict[str, np.ndarray]:
            if not wanted:  # ORT would return every graph output for an empty name list
                return {}
            return dict(zip(wanted, session.run(wanted, {feed: x}), strict=True))

        return run

    def compare_tensors(self, path: Path) -> dict[str, tuple[str, str]]:
        """Layer → (fp32 tensor, int8 tensor) that the per-layer error report compares.

        In the QDQ model a layer's output is compared after its Q/DQ pair (what the next layer
        reads). ORT drops a ReLU after a layer with unsigned activations (the Q clamps at 0) and
        renames the layer's output to the ReLU's, which is the fp32 tensor it matches.
        """
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        fp32 = onnx.load(str(self.pre), load_external_data=False).graph
        known = {o for n in fp32.node for o in n.output}
        consumers: dict[str, list[Any]] = {}
        for node in graph.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node)
        pairs = {}
        for node in graph.node:
            if node.name not in self.op_types or not node.output:
                continue
            out = node.output[0]
            got = out
            after = consumers.get(out, [])
            q = next((n for n in after if n.op_type == "QuantizeLinear"), None)
            restored = next((n for n in after if n.name.endswith(_RESTORED)), None)
            if q is not None:
                dq = next((n for n in consumers.get(q.output[0], [])
                           if n.op_type == "DequantizeLinear"), None)
                got = dq.output[0] if dq is not None else got
            elif restored is not None:  # a float reader got the folded ReLU back
                got = restored.output[0]
            # A graph output keeps its name after the DQ; the layer writes "<name>_..._Input".
            ref = out if out in known else got
            if ref in known:
                pairs[node.name] = (ref, got)
        return pairs

    def details(self) -> QuantDetails:
        """Types and options of the written models, for the report and the record."""
        return QuantDetails(
            format="QDQ", activation_type=self.spec.activation_type,
            activation_symmetric=self.spec.activation_symmetric, weight_type="int8",
            weight_symmetric=True, reduce_range=self.spec.reduce_range,
            per_channel=self.per_channel, pre_processed=True,
            opset_upgraded=self.upgraded,  # (old, new) or None, as _upgrade_opset returned it
        )

    def save(self, path: Path, dst: Path, meta: ModelMeta) -> None:
        """Write candidate ``path`` to ``dst`` with ``meta``, atomically."""
        import onnx

        proto = onnx.load(str(path))
        drop_unused_opsets(proto)
        write_onnx_meta(proto, meta)
        with atomic_write(dst) as tmp:
            onnx.save(proto, str(tmp))


def drop_unused_opsets(proto: Any) -> None:
    """Remove opset imports of domains no node uses (the default domain is always kept).

    ``quant_pre_process`` imports every domain ORT knows (``ai.onnx.ml`` 5,
    ``com.microsoft.nchwc``, ...); onnxruntime 1.17 refuses a model importing ``ai.onnx.ml``
    opset 5 ("under development") although no node of ours is in that domain.
    """
    used = {"", "ai.onnx"} | {n.domain for n in _all_nodes(proto.graph)}
    for f in proto.functions:
        used |= {f.domain} | {n.domain for n in f.node}
    keep = [o for o in proto.opset_import if o.domain in used]
    if len(keep) != len(proto.opset_import):
        del proto.opset_import[:]
        proto.opset_import.extend(keep)


def _all_nodes(graph: Any) -> Iterator[Any]:
    """Every node of ``graph`` and of its subgraphs (If/Loop/Scan bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in [attr.g, *attr.graphs] if attr.HasField("g") else attr.graphs:
                yield from _all_nodes(sub)


def _check_ort() -> None:
    """ORT must take precomputed ranges (``quantize_static(calibration_cache_path=...)``)."""
    import onnxruntime
    from onnxruntime.quantization import quantize_static

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        msg = (f"onnxruntime {onnxruntime.__version__} cannot quantize from precomputed ranges "
               "(quantize_static has no calibration_cache_path); pip install -U onnxruntime")
        raise BackendNotAvailable(msg)


def _upgrade_opset(src: Path, dst: Path) -> tuple[int, int] | None:
    """Convert a graph below ``MIN_OPSET`` with onnx's version converter into ``dst``.

    Per-channel DequantizeLinear (its ``axis`` attribute) and QDQ of most ops need opset 13;
    tf2onnx and older exporters write 9 to 11, and ORT would fail with "Unrecognized
    attribute: axis for operator DequantizeLinear".

    Returns:
        (old, new) opset when the graph was upgraded, None when it needed no upgrade.

    Raises:
        ModelFileError: if the converter cannot upgrade the graph.
    """
    import onnx
    from onnx import version_converter

    model = onnx.load(str(src))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset >= MIN_OPSET:
        return None
    try:
        upgraded = version_converter.convert_version(model, MIN_OPSET)
        onnx.checker.check_model(upgraded)
    except Exception as e:  # the converter raises RuntimeError/ValidationError per op
        msg = (f"{src} uses opset {opset} and onnx's version converter cannot upgrade it to "
               f"{MIN_OPSET}, which int8 QDQ needs ({first_line(e)}); re-export it at opset "
               f"{MIN_OPSET} or later, or use --backend openvino")
        raise ModelFileError(msg) from None
    onnx.save(upgraded, str(dst))
    log.info("upgraded %s from opset %d to %d for quantization", src, opset, MIN_OPSET)
    return opset, MIN_OPSET


def _pre_process(src: Path, dst: Path) -> None:
    """ORT's shape inference and graph optimisation, as its quantization guide asks first."""
    from onnxruntime.quantization import quant_pre_process

    try:
        with quiet():
            quant_pre_process(str(src), str(dst))
    except Exception as e:  # onnx/ORT raise many types for a graph they cannot handle
        first = first_line(e)
        msg = f"{src} could not be prepared for quantization ({first}); re-export it"
        raise ModelFileError(msg) from None
    _name_nodes(dst)


def _name_nodes(path: Path) -> None:
    """Give unnamed nodes a name (``Conv_3``): layers are reported, excluded and returned to
    float by name, and other exporters (onnx.helper, some converters) leave names empty."""
    import onnx

    model = onnx.load(str(path))
    if all(n.name for n in model.graph.node):
        return
    taken = {n.name for n in model.graph.node}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
    onnx.save(model, str(path))


def _weighted_layers(model: Path) -> tuple[tuple[str, ...], dict[str, str]]:
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    nodes = [n for n in graph.node if n.op_type in WEIGHTED_OPS and n.name]
    return tuple(n.name for n in nodes), {n.name: n.op_type for n in nodes}


def output_head(model: Path) -> tuple[str, ...]:
    """Names of the nodes after the last weighted layer (Softmax, Flatten, Reshape, ...).

    They stay in float for every backend: int8 gains nothing there (no weights, tiny tensors),
    while a quantized Softmax gives probabilities in steps of 1/255 whose rows do not sum to
    1 and rounds small ones to exactly 0 (issue 21 §1.1). Their inputs are read before the
    last layer's output Q/DQ, so the logits reach the head unrounded too.
    """
    import onnx

    nodes = list(onnx.load(str(model), load_external_data=False).graph.node)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for name in n.input:
            consumers.setdefault(name, []).append(i)
    weighted = [i for i, n in enumerate(nodes) if n.op_type in WEIGHTED_OPS]
    feeding = _reach(weighted, lambda i: [producer[x] for x in nodes[i].input if x in producer])
    after = _reach(weighted, lambda i: [c for o in nodes[i].output for c in consumers.get(o, [])])
    return tuple(nodes[i].name for i in sorted(after - feeding) if nodes[i].name)


def _reach(start: list[int], step: Callable[[int], list[int]]) -> set[int]:
    """``start`` and every node reachable from it through ``step``."""
    seen, todo = set(start), list(start)
    while todo:
        for j in step(todo.pop()):
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return seen


def _float_inputs(proto: Any, floats: set[str], fp32: Any) -> None:
    """Feed nodes in ``floats`` the tensors before their Q/DQ pair; drop pairs left unused.

    ORT folds a ReLU/Clip into the preceding Q when the quantized range already clips (the
    layer's output takes the activation's name), so a float reader of that tensor gets the
    activation back explicitly, copied from the fp32 graph ``fp32``.
    """
    graph = proto.graph
    activations = {n.output[0]: n for n in fp32.graph.node if n.op_type in ("Relu", "Clip")}
    restored: dict[str, str] = {}
    for node in list(graph.node):
        if node.name not in floats:
            continue
        producer = {o: n for n in graph.node for o in n.output}
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                continue
            tensor = q.input[0]
            act = activations.get(tensor)
            before = producer.get(tensor)
            if act is not None and before is not None and before.op_type != act.op_type:
                if tensor not in restored:
                    restored[tensor] = _restore_activation(proto, fp32, act, before, tensor)
                tensor = restored[tensor]
            node.input[i] = tensor
    _drop_unused(graph)


def _restore_activation(proto: Any, fp32: Any, act: Any, before: Any, tensor: str) -> str:
    import onnx

    out = f"{tensor}_float_{act.op_type.lower()}"
    copy = onnx.helper.make_node(act.op_type, [tensor, *act.input[1:]], [out],
                                 name=f"{act.name}{_RESTORED}")
    copy.attribute.extend(act.attribute)
    have = {t.name for t in proto.graph.initializer}
    for init in fp32.graph.initializer:  # Clip's min/max, if ORT dropped them with the Clip
        if init.name in act.input[1:] and init.name not in have:
            proto.graph.initializer.append(init)
    nodes = proto.graph.node
    index = next(i for i, n in enumerate(nodes) if n is before or n == before)
    nodes.insert(index + 1, copy)
    return out


def _drop_unused(graph: Any) -> None:
    while True:  # remove Q/DQ nodes whose outputs nobody reads any more
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for init in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(init)
