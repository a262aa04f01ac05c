"""The one ResNet class and the paper's variants as registered builders (data, not subclasses).

``ResNet`` covers every family edgeres ships: an optional stem (ImageNet 7x7 + max-pool, CIFAR
3x3, or none), a list of stages (plain or cross-stage partial), optional pre-activation final
norm, and a pooled linear head (or the raw feature map when ``num_classes=0``). Module names
match torchvision's ``ResNet`` so its state dicts load with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from edgeres.errors import ConfigError
from edgeres.models._registry import register_model
from edgeres.models.blocks import (
    BasicBlock,
    Block,
    Bottleneck,
    CSPStage,
    PreActBasicBlock,
    Shortcut,
    make_stage,
)

Stem = Literal["imagenet", "cifar", "none"]


_STEMS = ("imagenet", "cifar", "none")
_SHORTCUTS = ("A", "B")


def _check_options(
    layers: Sequence[int], widths: Sequence[int], strides: Sequence[int], stem: str,
    shortcut: str, in_chans: int, num_classes: int,
) -> None:
    """Refuse what would build a wrong network silently (an unknown stem became the CIFAR
    one, an unknown shortcut a projection) with a ``ConfigError`` (a ``ValueError`` too)."""
    if not len(layers) == len(widths) == len(strides):
        msg = f"layers, widths and strides differ in length: {layers}, {widths}, {strides}"
        raise ConfigError(msg)
    if stem not in _STEMS or shortcut not in _SHORTCUTS:
        msg = (f"stem {stem!r} / shortcut {shortcut!r} is unknown; "
               f"use stem one of {', '.join(_STEMS)} and shortcut 'A' or 'B'")
        raise ConfigError(msg)
    if isinstance(in_chans, bool) or isinstance(num_classes, bool) or in_chans < 1 \
            or num_classes < 0:
        msg = (f"in_chans must be >= 1 and num_classes >= 0, got {in_chans}, {num_classes}; "
               "use num_classes=0 for a feature extractor")
        raise ConfigError(msg)


class ResNet(nn.Module):
    """A residual network described by data.

    Args:
        block: block class used by every stage.
        layers: number of blocks per stage.
        widths: ``planes`` per stage (output is ``planes * block.expansion``).
        strides: stride of each stage's first block.
        stem: "imagenet" (7x7/2 conv + 3x3/2 max-pool), "cifar" (3x3/1 conv), or "none".
        stem_width: output channels of the stem conv.
        in_chans: input channels (1 for grayscale, 3 for RGB).
        num_classes: classifier outputs; 0 drops pooling and head and returns the feature map.
        shortcut: "A" zero-padding or "B" projection where a block changes shape.
        groups: ResNeXt cardinality.
        base_width: width per group.
        weighted: weighted residual ``alpha * F(x) + beta * x`` in every block.
        csp: cross-stage partial stages instead of plain ones.
        zero_init_residual: zero the last BN of each block (arXiv:1706.02677, +0.2~0.3%).

    Raises:
        ConfigError: (a ``ValueError``) on inconsistent stage descriptions, an unknown stem or
            shortcut, or a non-positive ``in_chans`` / negative ``num_classes``.
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        *,
        widths: Sequence[int] = (64, 128, 256, 512),
        strides: Sequence[int] = (1, 2, 2, 2),
        stem: Stem = "imagenet",
        stem_width: int = 64,
        in_chans: int = 3,
        num_classes: int = 1000,
        shortcut: Shortcut = "B",
        groups: int = 1,
        base_width: int = 64,
        weighted: bool = False,
        csp: bool = False,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        _check_options(layers, widths, strides, stem, shortcut, in_chans, num_classes)
        if csp and (groups != 1 or weighted or shortcut != "B"):
            msg = "CSP stages take only base_width; groups, weighted and shortcut do not apply"
            raise ConfigError(msg)
        self.num_classes = num_classes
        self.preact = block is PreActBasicBlock
        chs = self._make_stem(stem, in_chans, stem_width)
        for i, (n, planes, stride) in enumerate(zip(layers, widths, strides, strict=True)):
            if csp:
                out = planes * block.expansion
                stage: nn.Module = CSPStage(block, chs, out, n, stride, base_width=base_width)
            else:
                stage = make_stage(
                    block, chs, planes, n, stride,
                    shortcut=shortcut, weighted=weighted, groups=groups, base_width=base_width,
                )
            self.add_module(f"layer{i + 1}", stage)
            chs = planes * block.expansion
        self.num_stages = len(layers)
        self.num_features = chs
        if self.preact:
            # v2 networks end with BN-ReLU, since the last block's sum is never normalised.
            self.final_bn = nn.BatchNorm2d(chs)
        if num_classes:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(chs, num_classes)
        self._init_weights(zero_init_residual)

    def _make_stem(self, stem: Stem, in_chans: int, width: int) -> int:
        if stem == "none":
            return in_chans
        kernel, stride, pad = (7, 2, 3) if stem == "imagenet" else (3, 1, 1)
        self.conv1 = nn.Conv2d(in_chans, width, kernel, stride=stride, padding=pad, bias=False)
        if not self.preact:  # a pre-activation first block normalises its own input
            self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
        return width

    def _init_weights(self, zero_init_residual: bool) -> None:
        # torchvision's initialisation, so randomly initialised models match its statistics.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                last = getattr(m, "bn3", None) or getattr(m, "bn2", None)
                if isinstance(m, BasicBlock | Bottleneck) and last is not None:
                    nn.init.zeros_(last.weight)

    def forward_features(self, x: Tensor) -> Tensor:
        """Stem and stages: the feature map before pooling."""
        if hasattr(self, "conv1"):
            x = self.conv1(x)
            if hasattr(self, "bn1"):
                x = self.relu(self.bn1(x))
            x = self.maxpool(x)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        if self.preact:
            x = torch.relu(self.final_bn(x))
        return x

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_features(x)
        if not self.num_classes:
            return x
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _imagenet(block: Block, layers: Sequence[int], **kwargs: Any) -> ResNet:
    return ResNet(block, layers, **kwargs)


def _cifar(depth: int, **kwargs: Any) -> ResNet:
    # Paper section 4.2: 6n+2 layers, three stages of n blocks at 16/32/64 channels, option A.
    if (depth - 2) % 6:
        msg = f"CIFAR ResNet depth must be 6n+2, got {depth}"
        raise ValueError(msg)
    n = (depth - 2) // 6
    kwargs.setdefault("shortcut", "A")
    kwargs.setdefault("num_classes", 10)
    return ResNet(
        kwargs.pop("block", BasicBlock), (n, n, n),
        widths=(16, 32, 64), strides=(1, 2, 2), stem="cifar", stem_width=16, **kwargs,
    )


_IMAGENET: dict[str, Any] = {"family": "imagenet", "input_size": (224, 224), "num_classes": 1000}
_CIFAR: dict[str, Any] = {"family": "cifar", "input_size": (32, 32), "num_classes": 10}


@register_model(**_IMAGENET)
def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18 (He et al. 2015, arXiv:1512.03385, table 1)."""
    return _imagenet(BasicBlock, (2, 2, 2, 2), **kwargs)


@register_model(**_IMAGENET)
def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34 (He et al. 2015, arXiv:1512.03385, table 1)."""
    return _imagenet(BasicBlock, (3, 4, 6, 3), **kwargs)


@register_model(**_IMAGENET)
def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50 (He et al. 2015, arXiv:1512.03385), v1.5 stride placement."""
    return _imagenet(Bottleneck, (3, 4, 6, 3), **kwargs)


@register_model(**_IMAGENET)
def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101 (He et al. 2015, arXiv:1512.03385), v1.5 stride placement."""
    return _imagenet(Bottleneck, (3, 4, 23, 3), **kwargs)


@register_model(**_IMAGENET)
def resnet152(**kwargs: Any) -> ResNet:
    """ResNet-152 (He et al. 2015, arXiv:1512.03385), v1.5 stride placement."""
    return _imagenet(Bottleneck, (3, 8, 36, 3), **kwargs)


@register_model(**_CIFAR)
def cifar_resnet20(**kwargs: Any) -> ResNet:
    """CIFAR ResNet-20 (He et al. 2015, arXiv:1512.03385, section 4.2), option A shortcuts."""
    return _cifar(20, **kwargs)


@register_model(**_CIFAR)
def cifar_resnet32(**kwargs: Any) -> ResNet:
    """CIFAR ResNet-32 (He et al. 2015, arXiv:1512.03385, section 4.2), option A shortcuts."""
    return _cifar(32, **kwargs)


@register_model(**_CIFAR)
def cifar_resnet44(**kwargs: Any) -> ResNet:
    """CIFAR ResNet-44 (He et al. 2015, arXiv:1512.03385, section 4.2), option A shortcuts."""
    return _cifar(44, **kwargs)


@register_model(**_CIFAR)
def cifar_resnet56(**kwargs: Any) -> ResNet:
    """CIFAR ResNet-56 (He et al. 2015, arXiv:1512.03385, section 4.2), option A shortcuts."""
    return _cifar(56, **kwargs)


@register_model(**_CIFAR)
def cifar_resnet110(**kwargs: Any) -> ResNet:
    """CIFAR ResNet-110 (He et al. 2015, arXiv:1512.03385, section 4.2), option A shortcuts."""
    return _cifar(110, **kwargs)


def _cifar_imagenet_stages(block: Block, layers: Sequence[int], **kwargs: Any) -> ResNet:
    # The common CIFAR adaptation (e.g. kuangliu/pytorch-cifar): 3x3/1 stem, no max-pool.
    kwargs.setdefault("num_classes", 10)
    return ResNet(block, layers, stem="cifar", **kwargs)


@register_model(**_CIFAR)
def cifar_resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18 stages on a 3x3 stride-1 stem for 32x32 inputs (arXiv:1512.03385 table 1)."""
    return _cifar_imagenet_stages(BasicBlock, (2, 2, 2, 2), **kwargs)


@register_model(**_CIFAR)
def cifar_resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34 stages on a 3x3 stride-1 stem for 32x32 inputs (arXiv:1512.03385 table 1)."""
    return _cifar_imagenet_stages(BasicBlock, (3, 4, 6, 3), **kwargs)


@register_model(**_CIFAR)
def cifar_resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50 stages on a 3x3 stride-1 stem for 32x32 inputs (arXiv:1512.03385 table 1)."""
    return _cifar_imagenet_stages(Bottleneck, (3, 4, 6, 3), **kwargs)
