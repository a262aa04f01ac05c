"""The zoo's defaults: one pretrained config per registered model (as timm's ``pretrained_cfg``).

Each zoo model's input size, channels and classes, and from its family the preprocessing
(resize, crop, interpolation, mean, std) and the labels, readable without torch: the registry
(``edgeres.models.model_info``) is filled when the builders' modules import, and they import
torch. ``zoo_meta`` builds a zoo model's metadata record from here (``meta.py`` holds the
record only). The builders' ``@register_model`` states the same facts; ``tests/test_models.py``
checks that the registry and this table agree, name for name. Stdlib only (layer 0).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edgeres._record_check import normalisation_problem
from edgeres.errors import ConfigError, UnknownModelError
from edgeres.meta import (
    CIFAR10_LABELS,
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    InputSpec,
    ModelMeta,
    PreprocessSpec,
    numbered_labels,
)

__all__ = ["PRETRAINED_CFGS", "PretrainedCfg", "family_labels", "family_preprocess",
           "pretrained_cfg", "zoo_meta"]


@dataclass(frozen=True)
class PretrainedCfg:
    """What a zoo model takes and gives by default, known before (and without) building it.

    Attributes:
        name: the registered model name.
        family: "imagenet", "cifar", "tiny" or "ocr"; selects preprocessing and labels.
        input_size: default (height, width).
        num_classes: default classes; 0 means the model returns its feature map.
        in_chans: default input channels.
    """

    name: str
    family: str
    input_size: tuple[int, int]
    num_classes: int
    in_chans: int = 3

    def preprocess(self, input_size: tuple[int, int] | None = None,
                   in_chans: int | None = None) -> PreprocessSpec:
        """The family's preprocessing at ``input_size`` (default: the model's own)."""
        return family_preprocess(self.family, input_size or self.input_size,
                                 self.in_chans if in_chans is None else in_chans)

    def labels(self, num_classes: int | None = None) -> tuple[str, ...]:
        """The family's labels for ``num_classes`` (default: the model's own)."""
        return family_labels(self.family, self.num_classes if num_classes is None
                             else num_classes)


def _cfgs(family: str, input_size: tuple[int, int], num_classes: int,
          names: Iterable[str]) -> dict[str, PretrainedCfg]:
    return {n: PretrainedCfg(n, family, input_size, num_classes) for n in names}


# name → defaults, one entry per builder in models/resnet.py and models/variants.py.
PRETRAINED_CFGS: dict[str, PretrainedCfg] = {
    **_cfgs("imagenet", (224, 224), 1000, (
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
        "wide_resnet50_2", "preact_resnet18", "wrc_resnet18", "cspresnet50")),
    **_cfgs("cifar", (32, 32), 10, (
        "cifar_resnet20", "cifar_resnet32", "cifar_resnet44", "cifar_resnet56",
        "cifar_resnet110", "cifar_resnet18", "cifar_resnet34", "cifar_resnet50",
        "cifar_preact_resnet20", "cifar_wrc_resnet20")),
    **_cfgs("tiny", (32, 32), 10, ("tiny_resnet",)),
    **_cfgs("tiny", (28, 28), 10, ("tiny_resnet28",)),
    **_cfgs("ocr", (32, 128), 0, ("resnet45",)),
}


def unknown_model(name: str, known: Iterable[str]) -> UnknownModelError:
    """The error for an unregistered name, suggesting close names from ``known``."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    msg = f"unknown model {name!r}; {hint}('edgeres models' lists all)"
    return UnknownModelError(msg)


def pretrained_cfg(name: str) -> PretrainedCfg:
    """The defaults of zoo model ``name``.

    Raises:
        UnknownModelError: if the name is not in the zoo; the message suggests close names.
    """
    try:
        return PRETRAINED_CFGS[name]
    except KeyError:
        raise unknown_model(name, PRETRAINED_CFGS) from None


def family_preprocess(
    family: str, input_size: tuple[int, int], in_chans: int = 3
) -> PreprocessSpec:
    """The preprocessing a zoo family is trained with.

    ImageNet models resize the shorter side to ``crop / 0.875`` (256 for 224) and centre-crop,
    as torchvision's weights expect; CIFAR-size models take the image as it is; the OCR
    backbone resizes to its exact input.
    """
    h, w = input_size
    mean: tuple[float, ...]
    std: tuple[float, ...]
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if family in ("cifar", "tiny") else (
        IMAGENET_MEAN, IMAGENET_STD)
    if in_chans == 1:
        mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    if family == "imagenet":
        resize: int | tuple[int, int] = round(min(h, w) / 0.875)
    elif family == "ocr":
        resize = (h, w)
    else:
        resize = min(h, w)
    return PreprocessSpec(
        resize=resize, crop=(h, w), mean=mean, std=std, color="L" if in_chans == 1 else "RGB"
    )


def family_labels(family: str, num_classes: int) -> tuple[str, ...]:
    """CIFAR-10's class names for 10-class CIFAR models, ``class_<i>`` otherwise."""
    if family in ("cifar", "tiny") and num_classes == 10:
        return CIFAR10_LABELS
    return numbered_labels(num_classes)


def _normalisation(
    pre: PreprocessSpec, mean: Any, std: Any, channels: int
) -> PreprocessSpec:
    """``pre`` with the caller's mean/std, checked: both or neither, one per channel, std > 0."""
    if mean is None and std is None:
        return pre
    if mean is None or std is None:
        msg = "give mean and std together (one value per channel each)"
        raise ConfigError(msg)
    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    problem = normalisation_problem(mean, std, channels)  # the one mean/std rule
    if problem is None:
        return dataclasses.replace(pre, mean=mean, std=std)
    field, value, want = problem
    counted = len(mean) == len(std) == channels and all(map(math.isfinite, (*mean, *std)))
    if not counted:
        msg = f"mean {mean} and std {std} need one finite value per input channel ({channels})"
    elif field == "std":
        msg = f"std {std} must be positive ({want})"
    else:
        msg = f"{field} {value} must be {want}"
    raise ConfigError(msg)


def zoo_meta(
    name: str,
    *,
    num_classes: int | None = None,
    input_size: int | tuple[int, ...] | None = None,
    in_chans: int | None = None,
    labels: list[str] | tuple[str, ...] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    weights_sha256: str | None = None,
) -> ModelMeta:
    """The metadata record of a zoo model: its pretrained config, then the caller's overrides.

    Args:
        name: registered model name.
        num_classes: classes (from the checkpoint); the registry default when None.
        input_size: side, ``(side,)`` or ``(height, width)``; the registry default when None.
        in_chans: input channels; the registry default when None.
        labels: one label per class; CIFAR-10 names or ``class_<i>`` when None.
        mean: per-channel mean on the 0-1 scale; the family default when None.
        std: per-channel standard deviation; the family default when None.
        weights_sha256: hash of the checkpoint, None for random weights.

    Returns:
        A float32 NCHW record with a dynamic batch axis (``export_onnx`` adjusts it).

    Raises:
        UnknownModelError: if ``name`` is not registered.
        ExportError: on non-positive sizes, labels that do not match the class count, or
            mean/std of the wrong length or with a non-positive std.
    """
    cfg = pretrained_cfg(name)
    size = cfg.input_size if input_size is None else input_size
    size = (size,) if isinstance(size, int) else tuple(size)
    size = size * 2 if len(size) == 1 else size  # a single side means a square input
    chans = cfg.in_chans if in_chans is None else in_chans
    classes = cfg.num_classes if num_classes is None else num_classes
    if len(size) != 2:
        msg = (f"input size {'x'.join(map(str, size))} is invalid; give one side or HxW, "
               "e.g. input_size 224 or 32x128")
        raise ConfigError(msg)
    if min(size) < 1 or chans < 1 or classes < 0:
        msg = (f"input size {'x'.join(map(str, size))} with {chans} channel(s) and {classes} "
               "classes is invalid; sizes must be positive, e.g. input_size 224")
        raise ConfigError(msg)
    labels = cfg.labels(classes) if labels is None else tuple(labels)
    if len(labels) != classes:
        msg = f"{len(labels)} labels given for {classes} classes; give one label per class"
        raise ConfigError(msg)
    pre = _normalisation(cfg.preprocess((size[0], size[1]), chans), mean, std, chans)
    return ModelMeta(
        name=name, family=cfg.family, num_classes=classes, labels=labels,
        input=InputSpec(shape=("batch", chans, *size)), preprocess=pre,
        weights_sha256=weights_sha256,
    )
