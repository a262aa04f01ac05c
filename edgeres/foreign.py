"""Foreign models: a classifier exported by another tool gets its record from stated facts.

A model that edgeres did not export carries no metadata record, so its preprocessing and
labels are unknown. ``RecordOptions`` holds what a user states about it (mean/std and the
pixel scale they are on, RGB or BGR, resize and crop, interpolation, layout, labels) and
``stated_record`` turns that plus the graph into the one ``ModelMeta``: layout, image size,
class count and whether the output is already probabilities are read from the graph where it
says them, and a stated value that contradicts the graph is an error. ``attach`` writes a copy
of the model with the record inside, so every later command just works. Any ONNX classifier
with one 4-D image input and one ``[N, classes]`` output is accepted; anything else is a
one-line ``ModelFileError`` naming what is unsupported. The graph is read with ``onnx`` when it
is installed (opset, final Softmax) and with ONNX Runtime otherwise; a one-batch probe run with
ONNX Runtime checks the model runs and, without ``onnx``, tells probabilities from logits.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from edgeres._fs import atomic_write, sha256_file
from edgeres._onnx_record import check_external_data, check_record_entries
from edgeres._record_check import check_classes, normalisation_problem
from edgeres._resources import check_declared_input
from edgeres.errors import ConfigError, MetadataError, ModelFileError, first_line, missing_extra
from edgeres.meta import (
    CHANNEL_ORDERS,
    INTERPOLATIONS,
    METADATA_KEY,
    OUTPUT_KINDS,
    InputSpec,
    Layout,
    ModelMeta,
    PreprocessSpec,
    write_onnx_meta,
)
from edgeres.preprocess import rows_are_probabilities
from edgeres.runtime.backends import check_image_input
from edgeres.zoo import family_labels

__all__ = ["AttachReport", "GraphFacts", "RecordOptions", "attach", "read_graph", "stated_record"]

log = logging.getLogger(__name__)

_PASS_THROUGH = ("Identity", "Reshape", "Flatten", "Squeeze", "Cast")  # after a final Softmax


@dataclass(frozen=True)
class RecordOptions:
    """What a user states about a model; None wherever nothing was stated.

    Attributes:
        mean: per-channel mean in the model's channel order, on the ``scale`` scale.
        std: per-channel standard deviation, likewise.
        scale: 1 when mean/std are on the 0-1 pixel scale, 255 on the 0-255 scale.
        channels: "RGB", or "BGR" for models trained on OpenCV/Caffe-ordered pixels.
        resize: shorter side, or (height, width), before the centre crop.
        input_size: the centre crop, which is the model's input (height, width).
        interpolation: "nearest", "bilinear" or "bicubic".
        layout: "NCHW" or "NHWC" (read from the graph when it is unambiguous).
        labels: one class name per output.
        name: the model's name in the record (the file's stem when None).
        output: "logits" or "probabilities" (read from the graph when None).
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    scale: float | None = None
    channels: str | None = None
    resize: int | tuple[int, int] | None = None
    input_size: tuple[int, int] | None = None
    interpolation: str | None = None
    layout: str | None = None
    labels: tuple[str, ...] | None = None
    name: str | None = None
    output: str | None = None

    def __post_init__(self) -> None:
        for name, allowed in (("channels", CHANNEL_ORDERS), ("interpolation", INTERPOLATIONS),
                              ("layout", ("NCHW", "NHWC")), ("output", OUTPUT_KINDS)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                msg = f"{name} {value!r:.40} is not one of {', '.join(allowed)}"
                raise ConfigError(msg)
        if self.scale is not None and not (isinstance(self.scale, int | float)
                                           and 0 < self.scale <= 65535):
            msg = f"scale {self.scale!r:.40} must be a number above 0: 1 (0-1 pixels) or 255"
            raise ConfigError(msg)

    @property
    def stated(self) -> bool:
        """Whether anything was stated."""
        return any(getattr(self, f.name) is not None for f in dataclasses.fields(self))


@dataclass(frozen=True)
class GraphFacts:
    """What the graph itself says about its input and output.

    Attributes:
        input_name: the one image input.
        input_shape: its shape, free axes as names.
        input_dtype: "float32", "float16" or "uint8".
        output_name: the one output.
        output_shape: its shape (None when the file does not state it).
        opset: the default-domain opset (None when read without ``onnx``).
        ends_in_softmax: whether the output comes from a Softmax (None without ``onnx``).
        record: the edgeres record text stored in the file, if any.
    """

    input_name: str
    input_shape: tuple[int | str, ...]
    input_dtype: str
    output_name: str
    output_shape: tuple[int | str, ...] | None
    opset: int | None
    ends_in_softmax: bool | None
    record: str | None


@dataclass(frozen=True)
class AttachReport:
    """What ``attach`` wrote: the model copy, its record, and the graph facts used."""

    path: Path
    meta: ModelMeta
    facts: GraphFacts
    replaced: bool  # the source already had a record, which the new one replaces


def read_graph(path: Path) -> GraphFacts:
    """Read and check a classifier graph's input, output, opset and final op.

    Raises:
        ModelFileError: a missing or unreadable file, or a graph that is not one 4-D image
            input to one ``[N, classes]`` output (the message names what is unsupported).
    """
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        msg = f"{path} is not an ONNX model; pass an .onnx file (see `edgeres export`)"
        raise ModelFileError(msg)
    if not path.is_file():
        msg = f"model file {path} does not exist; pass an .onnx file"
        raise ModelFileError(msg)
    check_external_data(path)  # before onnx or ORT opens a device, FIFO or file out of the folder
    facts = _with_onnx(path) if importlib.util.find_spec("onnx") else _with_ort(path)
    return facts


def _dims(shape: Any) -> tuple[int | str, ...]:
    return tuple(d if isinstance(d, int) else (d or "?") for d in shape)


def _check_io(path: Path, inputs: list[tuple[str, Any, str]], outputs: list[tuple[str, Any]]
              ) -> None:
    """Refuse graphs that are not one 4-D image input to one [N, classes] output."""
    first = inputs[0] if inputs else ("", None, "none")
    check_image_input(path, [name for name, _, _ in inputs], first[1], first[2])  # the one rule
    if len(outputs) != 1:
        names = ", ".join(name for name, _ in outputs[:4]) or "none"
        msg = (f"{path} has {len(outputs)} outputs ({names}); edgeres handles classifiers with "
               "one [N, classes] output")
        raise ModelFileError(msg)
    out_name, out_shape = outputs[0]
    if out_shape is not None and len(out_shape) != 2:
        _not_a_score_row(path, out_name, list(out_shape))


def _not_a_score_row(path: Path, name: str, shape: list[Any]) -> None:
    msg = (f"{path} outputs a {len(shape)}-D tensor {name} {shape}; edgeres handles classifiers "
           "with one [N, classes] output (flatten or pool the output in the graph)")
    raise ModelFileError(msg)


def _with_onnx(path: Path) -> GraphFacts:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and others for a corrupt file
        msg = f"{path} is not a readable ONNX model ({type(e).__name__}); pass an exported .onnx"
        raise ModelFileError(msg) from None
    graph = model.graph
    init = {t.name for t in graph.initializer}

    def shape_of(vi: Any) -> tuple[int | str, ...] | None:
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            return None
        return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                     for d in t.shape.dim)

    def dtype_of(vi: Any) -> str:
        try:
            return onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name
        except (KeyError, ValueError, TypeError):
            return "unknown"

    # Shapes as Any: None until _check_io has refused graphs without a 4-D input.
    inputs: list[tuple[str, Any, str]] = [
        (v.name, shape_of(v), dtype_of(v)) for v in graph.input if v.name not in init]
    outputs = [(v.name, shape_of(v)) for v in graph.output]
    _check_io(path, inputs, outputs)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    producer = {o: n for n in graph.node for o in n.output}
    node = producer.get(outputs[0][0])
    while node is not None and node.op_type in _PASS_THROUGH:
        node = producer.get(node.input[0])
    record = next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None)
    return GraphFacts(inputs[0][0], inputs[0][1], inputs[0][2], outputs[0][0], outputs[0][1],
                      opset, node is not None and node.op_type == "Softmax", record)


def _with_ort(path: Path) -> GraphFacts:
    sess = _session(path)
    types = {"float": "float32", "double": "float64"}
    inputs: list[tuple[str, Any, str]] = [(a.name, None if a.shape is None else _dims(a.shape),
               types.get(a.type[7:-1], a.type[7:-1])) for a in sess.get_inputs()]
    outputs = [(a.name, None if a.shape is None else _dims(a.shape)) for a in sess.get_outputs()]
    _check_io(path, inputs, outputs)
    record = sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    return GraphFacts(inputs[0][0], inputs[0][1], inputs[0][2], outputs[0][0], outputs[0][1],
                      None, None, record)


def _session(path: Path) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise missing_extra("onnxruntime", "all") from None  # noqa: EM101 - not a message
    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf types
        msg = f"{path} is not a readable ONNX model ({first_line(e)}); pass an exported .onnx"
        raise ModelFileError(msg) from None


def _layout(path: Path, shape: tuple[Any, ...], stated: str | None) -> Layout:
    """NCHW or NHWC: the stated one if the graph allows it, else the one the graph shows."""
    fits: dict[str, Any] = {"NCHW": shape[1], "NHWC": shape[3]}
    if stated is not None:
        channels = fits[stated]
        if isinstance(channels, int) and channels not in (1, 3):
            msg = (f"--layout {stated} contradicts the graph's input {list(shape)} of {path}: "
                   f"its channel axis would hold {channels}; edgeres handles 1 or 3 channels")
            raise MetadataError(msg)
        return cast(Layout, stated)  # a key of fits, or the lookup above raised
    found = [lay for lay, c in fits.items() if c in (1, 3)]
    if len(found) == 1:
        return cast(Layout, found[0])
    msg = (f"cannot tell whether the input {list(shape)} of {path} is NCHW or NHWC "
           "(edgeres handles 1 or 3 channels); pass --layout NCHW|NHWC")
    raise MetadataError(msg)


def _size(path: Path, shape: tuple[Any, ...], layout: str,
          stated: tuple[int, int] | None) -> tuple[int, int]:
    h, w = shape[2:4] if layout == "NCHW" else shape[1:3]
    fixed = isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0
    if fixed and stated is not None and tuple(stated) != (h, w):
        msg = (f"--input-size {stated[0]}x{stated[1]} contradicts the graph of {path}, which "
               f"takes {h}x{w} images")
        raise MetadataError(msg)
    if fixed:
        return int(h), int(w)
    if stated is None:
        msg = f"the input {list(shape)} of {path} has no fixed image size; pass --input-size S"
        raise MetadataError(msg)
    return stated[0], stated[1]


def _probe(path: Path, facts: GraphFacts, shape: tuple[int, ...]) -> np.ndarray:
    """Run one random batch through ONNX Runtime: the model must run and give [N, classes]."""
    sess = _session(path)
    rng = np.random.default_rng(0)
    if facts.input_dtype == "uint8":
        x = rng.integers(0, 256, shape, dtype=np.uint8)
    else:
        x = rng.standard_normal(shape).astype(facts.input_dtype)
    try:
        out = np.asarray(sess.run([facts.output_name], {facts.input_name: x})[0])
    except Exception as e:  # ORT's own exception types
        msg = (f"{path} fails on an input of shape {list(shape)} ({first_line(e)}); check "
               "--layout and --input-size")
        raise ModelFileError(msg) from None
    if out.ndim != 2:
        _not_a_score_row(path, facts.output_name, list(out.shape))
    return out


def _refuse_embeddings(path: Path, out: np.ndarray) -> None:
    """Refuse rows of unit length (an L2-normalised embedding, e.g. a face model's [N, 128]):
    they are not class scores, and read as logits they give "class_76 0.0124" and 0% top-1."""
    z = out.astype(np.float64)
    norms = np.linalg.norm(z, axis=1)
    if z.shape[1] < 2 or rows_are_probabilities(out) or not np.allclose(norms, 1.0, atol=1e-3):
        return
    msg = (f"{path} outputs rows of length 1 ([N, {z.shape[1]}], L2-normalised), as embedding "
           "models do, not class scores; if they are scores, say so with --output-kind "
           "logits|probabilities")
    raise ModelFileError(msg)


def stated_record(path: Path, options: RecordOptions | None = None) -> ModelMeta:
    """The record of ONNX model ``path``: its own, restated, or built from ``options``.

    Without stated options a model's own record is returned (fitted to its graph). Stated
    options replace only those fields of a record. A model without a record needs at least
    ``mean`` or ``std`` (the other defaults to 0 or 1); everything else comes from the graph
    or defaults (scale 1, RGB, resize to the input size, bilinear, ``class_<i>`` labels).

    Raises:
        ModelFileError: an unreadable file or a graph edgeres cannot run as a classifier.
        MetadataError: no record and no preprocessing stated, a bad record, or a stated
            value that contradicts the graph.
    """
    path = Path(path)
    options = options or RecordOptions()
    facts = read_graph(path)
    check_declared_input(facts.input_shape, f"the graph of {path}")  # before the probe run
    if facts.record is not None:
        check_record_entries(path)
        record = ModelMeta.from_json(facts.record).fitted_to(facts.input_shape)
        classes = facts.output_shape[-1] if facts.output_shape else None
        check_classes(record, classes if isinstance(classes, int) else None, path)
        if not options.stated:
            return record
        log.info("stated preprocessing replaces the record's in %s", path)
        return _restate(path, record, options, facts)
    if options.mean is None and options.std is None and facts.input_dtype != "uint8":
        msg = (f"{path} carries no edgeres metadata record, so its preprocessing is unknown; "
               "pass --mean R,G,B --std R,G,B --input-size S --layout NCHW|NHWC (or write "
               "a record once with `edgeres attach`)")
        raise MetadataError(msg)
    if (options.mean is None) != (options.std is None):
        given, missing = ("mean", "std") if options.std is None else ("std", "mean")
        msg = (f"--{given} without --{missing}: {path} has no record to take the {missing} "
               f"from; give both (--std 1,1,1 if the model divides by nothing, --mean 0,0,0 "
               "if it subtracts nothing)")
        raise MetadataError(msg)
    return _build(path, options, facts)


def _build(path: Path, options: RecordOptions, facts: GraphFacts) -> ModelMeta:
    shape = facts.input_shape
    layout = _layout(path, shape, options.layout)
    h, w = _size(path, shape, layout, options.input_size)
    c = shape[1] if layout == "NCHW" else shape[3]
    channels = c if isinstance(c, int) and c > 0 else len(options.mean or options.std or "RGB")
    if facts.input_dtype == "uint8" and layout != "NHWC":
        msg = f"{path} takes uint8 {layout} input; edgeres feeds uint8 pixels as NHWC only"
        raise ModelFileError(msg)
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else "batch"
    dims = (channels, h, w) if layout == "NCHW" else (h, w, channels)
    out = _probe(path, facts, (batch if isinstance(batch, int) else 2, *dims))
    if options.output is None:
        _refuse_embeddings(path, out)
    output = options.output or (
        "probabilities" if facts.ends_in_softmax or rows_are_probabilities(out) else "logits")
    classes = int(out.shape[1])
    meta = ModelMeta(
        name=options.name or path.stem[:200], family="custom", num_classes=classes,
        labels=_labels(options.labels, classes), output=output,
        input=InputSpec(name=facts.input_name, shape=(batch, *dims), layout=layout,
                        dtype=facts.input_dtype,
                        normalized_in_graph=facts.input_dtype == "uint8"),
        preprocess=PreprocessSpec(
            resize=options.resize or min(h, w), crop=(h, w),
            interpolation=options.interpolation or "bilinear",
            mean=options.mean or (0.0,) * channels, std=options.std or (1.0,) * channels,
            color="L" if channels == 1 else "RGB", channel_order=options.channels or "RGB",
            pixel_scale=float(options.scale or 1.0)),
    )
    _check_channels(meta, options)
    _check_resize(meta, options)
    return meta.check()


def _check_resize(meta: ModelMeta, options: RecordOptions) -> None:
    """A stated resize smaller than the crop would zero-pad every image (torchvision's rule)."""
    if options.resize is None:
        return
    pre = meta.preprocess
    small = (pre.resize < min(pre.crop) if isinstance(pre.resize, int)
             else pre.resize[0] < pre.crop[0] or pre.resize[1] < pre.crop[1])
    if small:
        side = options.resize if isinstance(options.resize, int) else "x".join(
            map(str, options.resize))
        crop = "x".join(map(str, pre.crop))
        msg = (f"--resize {side} is smaller than the input size {crop}: the centre crop would "
               f"pad every image with black; give --resize of at least {max(pre.crop)} (256 "
               "for a 224 crop is the usual ImageNet recipe) or a smaller --input-size")
        raise MetadataError(msg)


def _labels(labels: tuple[str, ...] | None, classes: int) -> tuple[str, ...]:
    if labels is None:
        return family_labels("custom", classes)
    if len(labels) != classes:
        msg = f"the labels file has {len(labels)} labels but the model outputs {classes} classes"
        raise MetadataError(msg)
    return tuple(labels)


def _check_channels(meta: ModelMeta, options: RecordOptions) -> None:
    channels = meta.input.channels
    pre = meta.preprocess
    if options.channels == "BGR" and channels == 1:
        msg = "--channels BGR needs a 3-channel model; this one takes 1 channel"
        raise MetadataError(msg)
    if normalisation_problem(pre.mean, pre.std, channels, scale=pre.pixel_scale) is not None:
        msg = (f"mean {pre.mean} and std {pre.std} need {channels} values each (std > 0) for "
               f"this {channels}-channel model")
        raise MetadataError(msg)


def _restate(path: Path, record: ModelMeta, options: RecordOptions,
             facts: GraphFacts) -> ModelMeta:
    """``record`` with only the stated fields replaced, checked against the graph."""
    pre, spec = record.preprocess, record.input
    layout = _layout(path, facts.input_shape, options.layout or spec.layout)
    stated_size = options.input_size
    h, w = _size(path, facts.input_shape, layout, stated_size or pre.crop)
    resize = options.resize or pre.resize
    if options.resize is None and (h, w) != tuple(pre.crop):  # keep the resize-to-crop ratio
        resize = (h, w) if isinstance(resize, tuple) else round(resize * min(h, w) / min(pre.crop))
    channels = spec.channels
    shape = (spec.shape[0], *((channels, h, w) if layout == "NCHW" else (h, w, channels)))
    meta = record.evolve(
        name=options.name or record.name,
        labels=_labels(options.labels, record.num_classes) if options.labels else record.labels,
        output=options.output or record.output,
        input=dataclasses.replace(spec, shape=shape, layout=layout),
        preprocess=dataclasses.replace(
            pre, resize=resize, crop=(h, w), mean=tuple(options.mean or pre.mean),
            std=tuple(options.std or pre.std),
            interpolation=options.interpolation or pre.interpolation,
            channel_order=options.channels or pre.channel_order,
            pixel_scale=float(options.scale or pre.pixel_scale)),
    )
    _check_channels(meta, options)
    _check_resize(meta, options)
    return meta.check()


def attach(src: Path, dst: Path, options: RecordOptions | None = None) -> AttachReport:
    """Write a copy of ONNX model ``src`` to ``dst`` with its record inside, atomically.

    The record is ``stated_record(src, options)`` plus an "attach" provenance step naming
    ``src``'s hash; the graph is copied unchanged. Afterwards every command and
    ``edgeres.runtime.load`` read the model like one edgeres exported.

    Raises:
        ModelFileError, MetadataError: as ``stated_record``.
        BackendNotAvailable: if ``onnx`` is not installed.
        EdgeresError: if ``dst`` cannot be written.
    """
    try:
        import onnx
    except ImportError:
        raise missing_extra("onnx", "quantize") from None  # noqa: EM101 - not a message
    src, dst = Path(src), Path(dst)
    meta = stated_record(src, options)
    facts = read_graph(src)
    meta = meta.with_step("attach", input_sha256=sha256_file(src), opset=facts.opset)
    proto = onnx.load(str(src))
    write_onnx_meta(proto, meta)
    with atomic_write(dst) as tmp:
        onnx.save(proto, str(tmp))
    return AttachReport(dst, meta, facts, replaced=facts.record is not None)
