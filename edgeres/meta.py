"""The one metadata record that describes a model wherever it goes.

``ModelMeta`` is serialised by ``to_json()`` into one canonical string, stored unchanged under
the key ``edgeres`` in ONNX ``metadata_props``, in an OpenVINO IR's ``rt_info`` and as a
bundle's ``metadata.json``, so the record is the same byte for byte in all three. Each step
(export, quantize, ...) returns a new record with one more ``provenance`` entry; fields added
by later steps that this version does not model are kept in ``extra`` and written back as they
came. Stdlib only: devices read the record without torch or onnx.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeGuard

from edgeres._record_check import (
    MAX_RECORD_CHARS,
    NEW_PREPROCESS_FIELDS,
    check_record,
    normalisation_problem,
    record_fields,
)
from edgeres.errors import MetadataError
from edgeres.vocab import (  # the record's vocabulary, defined once there
    CHANNEL_ORDERS,
    INTERPOLATIONS,
    OUTPUT_KINDS,
    PRECISIONS,
    Precision,
)

SCHEMA_VERSION = 1
METADATA_KEY = "edgeres"  # the single key in ONNX metadata_props / OpenVINO rt_info
# Where an IR's rt_info holds the record: edgeres writes it at the top; OpenVINO's converter
# keeps an ONNX file's metadata_props under rt_info["framework"].
IR_RECORD_PATHS: tuple[tuple[str, ...], ...] = ((METADATA_KEY,), ("framework", METADATA_KEY))

Layout = Literal["NCHW", "NHWC"]
__all__ = ["CHANNEL_ORDERS", "CIFAR10_LABELS", "CIFAR10_MEAN", "CIFAR10_STD", "IMAGENET_MEAN",
           "IMAGENET_STD", "INTERPOLATIONS", "IR_RECORD_PATHS", "METADATA_KEY", "OUTPUT_KINDS",
           "PRECISIONS", "SCHEMA_VERSION", "InputSpec", "Layout", "ModelMeta", "Precision",
           "PreprocessSpec", "custom_meta", "numbered_labels", "read_ir_meta", "read_onnx_meta",
           "write_onnx_meta"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Per-channel statistics of the CIFAR-10 training images on the 0-1 scale.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_LABELS = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)


@dataclass(frozen=True)
class InputSpec:
    """The graph input: name, shape (batch axis symbolic or fixed), layout, dtype.

    ``normalized_in_graph`` is True when the graph takes raw pixels (uint8 NHWC) and does the
    cast and mean/std normalisation itself, so a device feeds camera frames directly.
    """

    name: str = "input"
    shape: tuple[int | str, ...] = ("batch", 3, 224, 224)
    layout: Layout = "NCHW"
    dtype: str = "float32"
    normalized_in_graph: bool = False

    @property
    def channels(self) -> int:
        return int(self.shape[1] if self.layout == "NCHW" else self.shape[3])


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes the input tensor (torchvision's ``Resize`` then ``CenterCrop``).

    Attributes:
        resize: shorter side in pixels, or an exact ``(height, width)``.
        crop: centre crop ``(height, width)``, equal to the model's input size.
        interpolation: "bilinear", "bicubic", "nearest" (Pillow's) or "bilinear-no-antialias"
            (cv2/TF's, see ``INTERPOLATIONS``).
        mean: per-channel mean, in the model's channel order, on the ``pixel_scale`` scale.
        std: per-channel standard deviation, likewise.
        color: "RGB", or "L" for single-channel models.
        channel_order: "RGB", or "BGR" for models trained on OpenCV/Caffe-ordered pixels
            (ignored for "L").
        pixel_scale: what a white pixel is before ``(x - mean) / std``: 1.0 (the 0-1 scale,
            torchvision's) or 255.0 (the 0-255 scale of Caffe/Keras ``preprocess_input``).
            ``mean`` and ``std`` are stated on this same scale.
    """

    resize: int | tuple[int, int]
    crop: tuple[int, int]
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    color: str = "RGB"
    channel_order: str = "RGB"
    pixel_scale: float = 1.0


@dataclass(frozen=True)
class QuantizationInfo:
    """The record's ``quantization`` section (written by ``edgeres quantize``), typed: THE one
    reader of that section (``QuantDetails.from_record`` and ``quantize.quant_target`` read
    through it).

    The section itself stays in ``ModelMeta.extra`` as written, all of it; these are the
    fields edgeres reads back. ``from_section`` tolerates a section from another tool: a field
    of the wrong type (or an empty string) reads as None.

    Attributes:
        backend: the quantizer backend ("ort", "openvino").
        target: the deployment target it was quantized for ("x86", "x86-vnni", "arm", ...).
        method: the calibration method.
        calibration_data: the calibration data's name or path.
        validation_data: the data the ``--max-drop`` budget was checked on, if any.
        format, activation_type, weight_type, preset, target_device: the quantizer's
            strings (``quantize.QuantDetails`` describes each).
        activation_symmetric, weight_symmetric, reduce_range, per_channel, pre_processed:
            its flags.
        opset_upgraded: (old, new) opset when the float model was upgraded first.
    """

    backend: str | None = None
    target: str | None = None
    method: str | None = None
    calibration_data: str | None = None
    validation_data: str | None = None
    format: str | None = None
    activation_type: str | None = None
    weight_type: str | None = None
    preset: str | None = None
    target_device: str | None = None
    activation_symmetric: bool | None = None
    weight_symmetric: bool | None = None
    reduce_range: bool | None = None
    per_channel: bool | None = None
    pre_processed: bool | None = None
    opset_upgraded: tuple[int, int] | None = None

    _TEXTS: ClassVar[tuple[str, ...]] = (
        "backend", "target", "method", "calibration_data", "format", "activation_type",
        "weight_type", "preset", "target_device")
    _FLAGS: ClassVar[tuple[str, ...]] = (
        "activation_symmetric", "weight_symmetric", "reduce_range", "per_channel",
        "pre_processed")

    @classmethod
    def from_section(cls, section: Any) -> QuantizationInfo | None:
        """The typed view of ``extra["quantization"]``; None when there is no such dict."""
        if not isinstance(section, dict):
            return None
        typed: dict[str, Any] = {k: v for k in cls._TEXTS
                                 if isinstance(v := section.get(k), str) and v}
        typed.update((k, v) for k in cls._FLAGS if isinstance(v := section.get(k), bool))
        validation = section.get("validation")
        data = validation.get("data") if isinstance(validation, dict) else None
        up = section.get("opset_upgraded")
        upgraded = (up[0], up[1]) if isinstance(up, list) and len(up) == 2 and all(
            isinstance(x, int) for x in up) else None
        return cls(**typed, opset_upgraded=upgraded,
                   validation_data=data if isinstance(data, str) and data else None)

    @classmethod
    def of(cls, meta: Any) -> QuantizationInfo | None:
        """The section of ``meta``: a ``ModelMeta`` or any object with its ``extra`` dict."""
        extra = getattr(meta, "extra", None)
        return cls.from_section(extra.get("quantization") if isinstance(extra, dict) else None)


@dataclass(frozen=True)
class ModelMeta:
    """Everything a runtime needs to know about a model besides its graph.

    Attributes:
        name: zoo name or the user's name for the model.
        family: "imagenet", "cifar", "tiny", "ocr", or "custom".
        num_classes: classifier outputs (0 for a feature extractor).
        labels: one label per class.
        input: the graph input.
        preprocess: image → tensor recipe.
        precision: what the weights are stored as: fp32, fp16, bf16 or int8.
        weights_sha256: hash of the checkpoint the weights came from (None when random).
        edgeres_version: the version that wrote the record.
        provenance: one entry per step, oldest first.
        extra: fields from later steps kept verbatim (e.g. "quantization").
        schema_version: version of this schema.
        output: "logits", "probabilities" (the graph ends in a softmax), or None when not
            stated (see ``outputs_probabilities``).
    """

    name: str
    family: str
    num_classes: int
    labels: tuple[str, ...]
    input: InputSpec
    preprocess: PreprocessSpec
    precision: str = "fp32"
    weights_sha256: str | None = None
    edgeres_version: str = ""
    provenance: tuple[dict[str, Any], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    output: str | None = None

    @property
    def outputs_probabilities(self) -> bool | None:
        """Whether the graph's output rows are already probabilities (never softmax them again).

        True or False as the record states; False for models ``edgeres export`` wrote (logits);
        None when unknown, and then the rows themselves decide (``runtime.topk_predictions``).
        """
        if self.output is not None:
            return self.output == "probabilities"
        return False if any(p.get("step") == "export" for p in self.provenance) else None

    @property
    def quantization(self) -> QuantizationInfo | None:
        """The ``quantization`` section (``edgeres quantize``), typed; None when absent."""
        return QuantizationInfo.from_section(self.extra.get("quantization"))

    @property
    def input_size(self) -> tuple[int, int]:
        """Model input (height, width)."""
        return self.preprocess.crop

    def evolve(self, **changes: Any) -> ModelMeta:
        """Return a copy with ``changes`` applied (the record itself is immutable)."""
        return dataclasses.replace(self, **changes)

    def fitted_to(self, graph_shape: tuple[int | str | None, ...] | None) -> ModelMeta:
        """Return the record with the batch axis and image size the graph really has.

        Tools that fix or change input shapes (``python -m onnxruntime.tools.
        make_dynamic_shape_fixed``, OpenVINO's ``reshape``) rewrite the graph and keep the
        record, so a record saying ``batch`` and 32x32 can describe a graph that takes exactly
        one 64x64 image; the graph wins. A new image size keeps the record's resize-to-crop
        ratio (224 of 256 stays 7/8), so the same share of the picture reaches the model.

        Raises:
            MetadataError: if the graph's channel count contradicts the record's.
            ConfigError: if one batch of the graph's declared input cannot fit in memory.
        """
        if not graph_shape or len(graph_shape) != len(self.input.shape):
            return self
        from edgeres._resources import check_declared_input

        check_declared_input(tuple(graph_shape), f"the graph of {self.name}")
        fitted = self._fitted_batch(graph_shape[0])
        if len(graph_shape) != 4:
            return fitted
        channel_axis, spatial = (1, (2, 3)) if self.input.layout == "NCHW" else (3, (1, 2))
        channels = graph_shape[channel_axis]
        if _fixed(channels) and channels != self.input.channels:
            msg = (f"the graph takes {channels} channel(s) but its metadata record says "
                   f"{self.input.channels}; the record belongs to another model: re-export it")
            raise MetadataError(msg)
        h, w = (graph_shape[i] for i in spatial)
        if not (_fixed(h) and _fixed(w)) or (h, w) == tuple(self.input_size):
            return fitted
        return _resized(fitted, (int(h), int(w)), spatial)

    def _fitted_batch(self, first: int | str | None) -> ModelMeta:
        batch = first if _fixed(first) else "batch"
        if batch == self.input.shape[0] or not (isinstance(batch, int)
                                                 or isinstance(self.input.shape[0], int)):
            return self
        shape = (batch, *self.input.shape[1:])
        return self.evolve(input=dataclasses.replace(self.input, shape=shape))

    def with_step(self, step: str, *, input_sha256: str | None, **details: Any) -> ModelMeta:
        """Return a copy with one more provenance entry for ``step``.

        Args:
            step: what was done ("export", "quantize", ...).
            input_sha256: hash of the step's input (checkpoint or model file).
            **details: JSON-serialisable facts about the step (opset, method, ...).
        """
        from edgeres import __version__

        entry = {
            "step": step,
            "input_sha256": input_sha256,
            "edgeres_version": __version__,
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **details,
        }
        return self.evolve(provenance=(*self.provenance, entry), edgeres_version=__version__)

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON types, ``extra`` merged in at the top level."""
        d = dataclasses.asdict(self)
        extra = d.pop("extra")
        # Fields added after schema 1 are written only when set, so a record without them
        # reads back and serialises byte for byte as it was.
        for key, default in NEW_PREPROCESS_FIELDS.items():
            if d["preprocess"][key] == default:
                del d["preprocess"][key]
        if d["output"] is None:
            del d["output"]
        d["labels"] = list(self.labels)
        d["provenance"] = list(self.provenance)
        d = {"schema_version": d.pop("schema_version"), **d}
        return {**d, **extra}

    def to_json(self) -> str:
        """The canonical serialisation, stored identically in ONNX, IR and bundles."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        """Parse and validate a record.

        Raises:
            MetadataError: if the text is not JSON, the schema is newer than this edgeres,
                or a field is missing, of the wrong type or out of range.
        """
        if not isinstance(text, str) or len(text) > MAX_RECORD_CHARS:
            what = (f"{len(text):,} characters long" if isinstance(text, str)
                    else f"a {type(text).__name__}")
            msg = f"the edgeres metadata record is {what}, not a JSON text; re-export the model"
            raise MetadataError(msg)
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            msg = f"the edgeres metadata record is not valid JSON ({e.msg}); re-export the model"
            raise MetadataError(msg) from None
        except RecursionError:
            msg = "the edgeres metadata record is nested too deeply; re-export the model"
            raise MetadataError(msg) from None
        except ValueError:  # Python refuses integers of more than 4,300 digits
            msg = ("the edgeres metadata record holds an integer too long to read (more than "
                   "4,300 digits); re-export the model")
            raise MetadataError(msg) from None
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelMeta:
        """Build a record from plain JSON types; see ``from_json``.

        A record is input like any other: every field's type, range and size is checked
        (``check``), so a bad record is one ``MetadataError`` naming the field, never a crash,
        NaN predictions or an out-of-memory resize later.
        """
        if not isinstance(d, dict):
            msg = "the edgeres metadata record is not a JSON object; re-export the model"
            raise MetadataError(msg)
        version = d.get("schema_version")
        if isinstance(version, bool) or not isinstance(version, int) or version > SCHEMA_VERSION:
            msg = (
                f"metadata schema_version {version!r:.40} is not supported by this edgeres "
                f"(knows {SCHEMA_VERSION}); upgrade edgeres"
            )
            raise MetadataError(msg)
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        try:
            meta = cls(
                **record_fields(d, InputSpec, PreprocessSpec),
                precision=d["precision"],
                weights_sha256=d.get("weights_sha256"),
                edgeres_version=d.get("edgeres_version", ""),
                extra={k: v for k, v in d.items() if k not in known},
                schema_version=version,
                output=d.get("output"),
            )
        except KeyError as e:
            msg = (f"the edgeres metadata record lacks the field {e.args[0]!r:.40}; "
                   "re-export the model or attach a new record (`edgeres attach`)")
            raise MetadataError(msg) from None
        return meta.check()

    def check(self) -> ModelMeta:
        """Check every field's type, range and size, and that the fields agree; return self.

        Raises:
            MetadataError: naming the first field that is wrong and what it must be.
        """
        check_record(self)
        return self


def numbered_labels(num_classes: int) -> tuple[str, ...]:
    """``class_0``, ``class_1``, ...: the labels of a model whose classes have no names."""
    return tuple(f"class_{i}" for i in range(num_classes))


def read_onnx_meta(model: Any) -> ModelMeta | None:
    """Return the record stored in an ``onnx.ModelProto``, or None when it has none."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return ModelMeta.from_json(prop.value)
    return None


def write_onnx_meta(model: Any, meta: ModelMeta) -> None:
    """Store ``meta`` in an ``onnx.ModelProto`` under the single key, replacing any old record."""
    keep = [(p.key, p.value) for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    for key, value in keep:
        model.metadata_props.add(key=key, value=value)
    model.metadata_props.add(key=METADATA_KEY, value=meta.to_json())


def ir_record_text(xml_path: Path) -> str | None:
    """The record's text in an OpenVINO IR's ``rt_info``, read with the stdlib XML parser.

    Both places in ``IR_RECORD_PATHS`` are looked at, so an IR that OpenVINO's own tools made
    from an edgeres ONNX file (``ov.save_model(ov.convert_model(onnx))``) is read too.

    Raises:
        ModelFileError: if the file is not parseable XML.
    """
    from edgeres.errors import ModelFileError

    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as e:
        msg = f"{xml_path} is not a readable OpenVINO IR ({e}); re-create it"
        raise ModelFileError(msg) from None
    for where in IR_RECORD_PATHS:
        node = root.find("rt_info/" + "/".join(where))
        if node is not None and node.get("value") is not None:
            return node.get("value", "")
    return None


def read_ir_meta(xml_path: Path) -> ModelMeta | None:
    """The record of an OpenVINO IR (``ir_record_text``, checked), or None when it has none.

    Raises:
        ModelFileError: if the file is not parseable XML.
        MetadataError: if the record breaks a rule.
    """
    text = ir_record_text(xml_path)
    return ModelMeta.from_json(text) if text is not None else None


def custom_meta(
    *,
    input_size: tuple[int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    num_classes: int,
    layout: Layout = "NCHW",
    labels: tuple[str, ...] | None = None,
    name: str = "custom",
) -> ModelMeta:
    """A record for a model that carries none, from the preprocessing a user states.

    Raises:
        MetadataError: if sizes are not positive or mean/std lengths disagree.
    """
    if (min(input_size) < 1 or num_classes < 0
            or normalisation_problem(mean, std, 1 if len(mean) == 1 else 3) is not None):
        msg = (f"invalid preprocessing: input size {input_size}, mean {mean}, std {std}; "
               "sizes must be positive and mean/std have one value per channel")
        raise MetadataError(msg)
    h, w = input_size
    c = len(mean)
    shape: tuple[int | str, ...] = ("batch", c, h, w) if layout == "NCHW" else ("batch", h, w, c)
    return ModelMeta(
        name=name, family="custom", num_classes=num_classes,
        labels=labels or numbered_labels(num_classes),
        input=InputSpec(shape=shape, layout=layout),
        preprocess=PreprocessSpec(resize=min(h, w), crop=(h, w), mean=tuple(mean),
                                  std=tuple(std), color="L" if c == 1 else "RGB"),
    )


def _resized(meta: ModelMeta, size: tuple[int, int], spatial: tuple[int, int]) -> ModelMeta:
    """``meta`` for a graph input of ``size`` (h, w): the crop, and the resize scaled alike."""
    (h, w), (old_h, old_w) = size, meta.input_size
    resize = meta.preprocess.resize
    if isinstance(resize, int):
        resize = max(1, round(resize * max(h / old_h, w / old_w)))
    else:
        resize = (max(1, round(resize[0] * h / old_h)), max(1, round(resize[1] * w / old_w)))
    shape = list(meta.input.shape)
    shape[spatial[0]], shape[spatial[1]] = h, w
    return meta.evolve(
        input=dataclasses.replace(meta.input, shape=tuple(shape)),
        preprocess=dataclasses.replace(meta.preprocess, resize=resize, crop=(h, w)),
    )


def _fixed(dim: int | str | None) -> TypeGuard[int]:
    """Whether a graph dimension is a fixed size (ONNX Runtime gives str/None for free ones)."""
    return isinstance(dim, int) and dim > 0
