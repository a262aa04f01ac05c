"""The checks behind ``ModelMeta.check`` and ``ModelMeta.from_dict``: types, ranges, sizes.

A record read from a file is untrusted input (CONTRIBUTING R3): every field is checked here, so
a bad record is one ``MetadataError`` naming the field, never a crash, NaN predictions or an
out-of-memory resize later. ``meta.py`` keeps the record itself and calls the public names
here (``record_fields``, ``check_record``); this module imports nothing of it, so the checks
sit below the schema (the allowed values come from ``vocab``). Stdlib only.
"""

from __future__ import annotations

import dataclasses
import math
import unicodedata
from typing import Any

from edgeres.errors import MetadataError
from edgeres.vocab import CHANNEL_ORDERS, INTERPOLATIONS, OUTPUT_KINDS, PRECISIONS

# Bounds on what a record may say: generous for any image classifier, small enough that a
# hostile record cannot make edgeres allocate gigabytes (resize 100000 would need 30 GB).
MAX_SIDE = 8192  # pixels, for resize and crop
MAX_CLASSES = 1_000_000
MAX_TEXT = 256  # characters in a name or label
MAX_STEPS = 10_000  # provenance entries
MAX_RECORD_CHARS = 64 << 20
# Fields added after schema 1, with the value a record that lacks them means.
NEW_PREPROCESS_FIELDS: dict[str, Any] = {"channel_order": "RGB", "pixel_scale": 1.0}


_CHANNEL_NUMBERS = "a list of 1 to 4 finite numbers, one per channel"


def _channel_numbers(values: Any) -> bool:
    return isinstance(values, list | tuple) and 1 <= len(values) <= 4 and all(
        isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
        for x in values)


def _floats(value: Any, name: str) -> tuple[float, ...]:
    if not _channel_numbers(value):
        _bad(name, value, _CHANNEL_NUMBERS)
    return tuple(float(x) for x in value)


def normalisation_problem(mean: Any, std: Any, channels: int | None = None, *,
                          scale: float = 1.0) -> tuple[str, Any, str] | None:
    """THE mean/std rule, for records, stated preprocessing and ``custom_meta`` alike.

    Returns None when ``mean`` and ``std`` are usable for a ``channels``-channel input on the
    ``scale`` pixel scale (any channel count when None), else ``(field, value, what it must
    be)`` for the caller's own message.
    """
    for field, values in (("mean", mean), ("std", std)):
        if not _channel_numbers(values):
            return field, values, _CHANNEL_NUMBERS
    want = len(mean) if channels is None else channels
    if len(mean) != want or len(std) != want:
        return ("mean/std", f"{len(mean)}/{len(std)} values",
                f"{want} values each, one per input channel")
    if any(abs(m) > 1e6 for m in mean):
        return "mean", list(mean), "at most 1e6 in size"
    # std 0 divides by zero (NaN predictions); below this the float32 scale overflows.
    if any(not 1e-6 * scale <= s <= 1e6 for s in std):
        return "std", list(std), f"from {1e-6 * scale:g} to 1e6 (std > 0)"
    return None


def _bad(name: str, value: Any, want: str) -> None:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    msg = (f"the edgeres metadata record has {name} = {shown}, which must be {want}; "
           "fix the record (`edgeres attach`) or re-export the model")
    raise MetadataError(msg)


def _fields(value: Any, cls: type) -> dict[str, Any]:
    """A nested object of the record, with no keys ``cls`` does not have."""
    name = "input" if cls.__name__ == "InputSpec" else "preprocess"
    if not isinstance(value, dict):
        _bad(name, value, "an object")
    unknown = sorted(set(value) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        _bad(f"{name}.{unknown[0]}", value[unknown[0]], f"absent (no such field of {name})")
    return dict(value)


# Bidirectional controls: U+202E makes "exe.txt" print as "txt.exe" (Trojan Source).
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def unprintable(text: str) -> bool:
    """THE rule for text edgeres prints from a file (labels, names, stated labels): refuses
    control characters (newlines, terminal escape codes), line/paragraph separators,
    lone surrogates (unprintable in UTF-8) and bidirectional overrides."""
    return any(unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cs") or ch in _BIDI
               for ch in text)


def check_classes(meta: Any, classes: int | None, path: Any) -> None:
    """THE rule for a record's (``meta``, a ModelMeta) class count against the graph's output
    width (None: unknown).

    Raises:
        MetadataError: when the record and the graph disagree.
    """
    if meta.num_classes and classes is not None and classes != meta.num_classes:
        msg = (f"the record says {meta.num_classes} classes but the graph of {path} outputs "
               f"{classes}; re-export the model or correct its metadata record")
        raise MetadataError(msg)


def _text(value: Any, name: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT or (not value and not empty):
        _bad(name, value, f"a non-empty string of at most {MAX_TEXT} characters")
    if unprintable(value):
        _bad(name, value, "printable text (no newlines, control or bidirectional characters)")
    return value


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        _bad(name, value, f"an integer from {low} to {high:,}")
    return value


def _labels(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or len(value) > MAX_CLASSES:
        _bad("labels", value, f"a list of at most {MAX_CLASSES:,} strings")
    return tuple(_text(x, f"labels[{i}]", empty=True) for i, x in enumerate(value))


def _shape(value: Any) -> tuple[int | str, ...]:
    if not isinstance(value, list | tuple) or len(value) != 4:
        _bad("input.shape", value, "4 dimensions: (batch, C, H, W) or (batch, H, W, C)")
    return tuple(value)


def _pair(value: Any, name: str) -> tuple[int, int]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        _bad(name, value, f"[height, width], each from 1 to {MAX_SIDE}")
    return (_int(value[0], name, 1, MAX_SIDE), _int(value[1], name, 1, MAX_SIDE))


def _resize(value: Any) -> int | tuple[int, int]:
    if isinstance(value, list | tuple):
        return _pair(value, "preprocess.resize")
    return _int(value, "preprocess.resize", 1, MAX_SIDE)


def check_record(meta: Any) -> None:
    """The checks of ``ModelMeta.check``, on an already-built record (a ``meta.ModelMeta``).

    Raises:
        MetadataError: naming the first field that is wrong and what it must be.
    """
    _text(meta.name, "name")
    _text(meta.family, "family")
    _int(meta.num_classes, "num_classes", 0, MAX_CLASSES)
    _labels(meta.labels)
    if len(meta.labels) not in (0, meta.num_classes):
        _bad("labels", f"{len(meta.labels)} labels", f"{meta.num_classes} labels (num_classes)")
    _choice(meta.precision, "precision", PRECISIONS)
    if meta.weights_sha256 is not None:
        _text(meta.weights_sha256, "weights_sha256")
    _text(meta.edgeres_version, "edgeres_version", empty=True)
    if meta.output is not None:
        _choice(meta.output, "output", OUTPUT_KINDS)
    _check_input(meta.input)
    _check_preprocess(meta.preprocess, meta.input)


def _choice(value: Any, name: str, allowed: tuple[Any, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, str | int) or value not in allowed:
        _bad(name, value, "one of " + ", ".join(map(str, allowed)))


def _check_input(spec: Any) -> None:
    _text(spec.name, "input.name")
    _choice(spec.layout, "input.layout", ("NCHW", "NHWC"))
    _choice(spec.dtype, "input.dtype", ("float32", "float16", "uint8"))
    if not isinstance(spec.normalized_in_graph, bool):
        _bad("input.normalized_in_graph", spec.normalized_in_graph, "true or false")
    shape = _shape(spec.shape)
    batch = shape[0]
    if not isinstance(batch, str):
        _int(batch, "input.shape[0]", 1, 1 << 16)
    sample = shape[1:] if spec.layout == "NCHW" else (shape[3], shape[1], shape[2])
    _choice(sample[0], "the input's channel count", (1, 3))
    for side in sample[1:]:
        _int(side, "input.shape (height, width)", 1, MAX_SIDE)


def _check_preprocess(pre: Any, spec: Any) -> None:
    resize = pre.resize if isinstance(pre.resize, tuple) else None
    if resize is None:
        _int(pre.resize, "preprocess.resize", 1, MAX_SIDE)
    else:
        _pair(resize, "preprocess.resize")
    crop = _pair(pre.crop, "preprocess.crop")
    size = spec.shape[2:4] if spec.layout == "NCHW" else spec.shape[1:3]
    if crop != tuple(size):
        _bad("preprocess.crop", list(crop), f"the input shape's height and width {list(size)}")
    _choice(pre.interpolation, "preprocess.interpolation", INTERPOLATIONS)
    _choice(pre.color, "preprocess.color", ("RGB", "L"))
    _choice(pre.channel_order, "preprocess.channel_order", CHANNEL_ORDERS)
    scale = pre.pixel_scale
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 65535:
        _bad("preprocess.pixel_scale", scale, "a number above 0, up to 65535 (1 or 255)")
    channels = spec.channels
    if (pre.color == "L") != (channels == 1):
        _bad("preprocess.color", pre.color, f"{'L' if channels == 1 else 'RGB'} for a "
             f"{channels}-channel input")
    problem = normalisation_problem(pre.mean, pre.std, channels, scale=scale)
    if problem is not None:
        field, value, want = problem
        _bad(f"preprocess.{field}", value, want)


def record_fields(d: dict[str, Any], input_cls: type, preprocess_cls: type) -> dict[str, Any]:
    """The fields of a record read from JSON, each checked, as ``ModelMeta``'s arguments.

    Args:
        d: the parsed JSON object (untrusted).
        input_cls, preprocess_cls: ``meta.InputSpec`` and ``meta.PreprocessSpec`` (passed in,
            so this module does not import the schema).

    Returns:
        name, family, num_classes, labels, input, preprocess and provenance.

    Raises:
        MetadataError: for a field of the wrong type or out of range.
        KeyError: for a missing field (the caller names it).
    """
    inp, pre = _fields(d["input"], input_cls), _fields(d["preprocess"], preprocess_cls)
    provenance = d.get("provenance", [])
    if not isinstance(provenance, list) or len(provenance) > MAX_STEPS or not all(
            isinstance(p, dict) for p in provenance):
        _bad("provenance", provenance, f"a list of at most {MAX_STEPS} objects")
    return {
        "name": _text(d["name"], "name"),
        "family": _text(d["family"], "family"),
        "num_classes": _int(d["num_classes"], "num_classes", 0, MAX_CLASSES),
        "labels": _labels(d["labels"]),
        "input": input_cls(**{**inp, "shape": _shape(inp["shape"])}),
        "preprocess": preprocess_cls(**{
            **pre,
            "resize": _resize(pre["resize"]),
            "crop": _pair(pre["crop"], "preprocess.crop"),
            "mean": _floats(pre["mean"], "preprocess.mean"),
            "std": _floats(pre["std"], "preprocess.std"),
        }),
        "provenance": tuple(provenance),
    }
