"""Residual building blocks and the stage builder, public so users can compose their own depths.

Layer names follow torchvision (``conv1``/``bn1``/``conv2``/``bn2``/``downsample``) so that
ImageNet checkpoints load with ``strict=True``. Every block takes the same keyword options
(``shortcut``, ``weighted``, ``groups``, ``base_width``) so that one stage builder serves all
families.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F  # noqa: N812 - the usual PyTorch alias
from torch import Tensor, nn

from edgeres.errors import ConfigError

Shortcut = Literal["A", "B"]
"""Paper section 3.3: "A" zero-pads channels (parameter-free), "B" projects with a 1x1 conv."""


def conv3x3(in_chs: int, out_chs: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_chs: int, out_chs: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution with no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A shortcut (He et al. 2015, section 4.2): stride-2 subsampling, zero-padded channels.

    It has no parameters, which is why the CIFAR ResNet-20 stays at 0.27M.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_chs - in_chs

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            half = self.extra // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.extra - half))
        return x


def make_shortcut(
    in_chs: int, out_chs: int, stride: int, kind: Shortcut, *, preact: bool = False
) -> nn.Module | None:
    """Return the shortcut for a block whose shape changes, or None for the identity.

    Option B is torchvision's ``downsample``: ``Sequential(conv1x1, BatchNorm)``. In a
    pre-activation block the input is already normalised, so the projection is a bare conv
    (He et al. 2016, "Identity Mappings", fig. 4e).
    """
    if stride == 1 and in_chs == out_chs:
        return None
    if kind == "A":
        return ZeroPadShortcut(in_chs, out_chs, stride)
    if preact:
        return nn.Sequential(conv1x1(in_chs, out_chs, stride))
    return nn.Sequential(conv1x1(in_chs, out_chs, stride), nn.BatchNorm2d(out_chs))


class _Residual(nn.Module):
    """Shared tail of every block: ``alpha * F(x) + beta * shortcut(x)``.

    With ``weighted=True`` alpha and beta are learnable scalars initialised to 1 (weighted
    residual connection); otherwise they are absent and the sum is plain, so the state dict
    keeps torchvision's keys.
    """

    expansion: int = 1

    def _init_residual(self, weighted: bool) -> None:
        self.alpha: nn.Parameter | None
        self.beta: nn.Parameter | None
        if weighted:
            self.alpha = nn.Parameter(torch.ones(()))
            self.beta = nn.Parameter(torch.ones(()))
        else:
            self.alpha = self.beta = None

    def _add(self, out: Tensor, identity: Tensor) -> Tensor:
        if self.alpha is None or self.beta is None:  # both or neither (_init_residual)
            return out + identity
        return self.alpha * out + self.beta * identity


class BasicBlock(_Residual):
    """Two 3x3 convolutions (He et al. 2015, fig. 2 left), stride on the first."""

    expansion = 1

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        *,
        shortcut: Shortcut = "B",
        weighted: bool = False,
        groups: int = 1,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            msg = "BasicBlock only supports groups=1 and base_width=64; use Bottleneck"
            raise ConfigError(msg)
        self.conv1 = conv3x3(in_chs, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = make_shortcut(in_chs, planes, stride, shortcut)
        self._init_residual(weighted)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(self._add(out, identity))


class Bottleneck(_Residual):
    """1x1 → 3x3 → 1x1 (fig. 5 right); ResNet v1.5 puts the stride on the 3x3 as torchvision does.

    ``groups`` and ``base_width`` give ResNeXt (Xie et al. 2017) and wide ResNets (Zagoruyko
    and Komodakis 2016) with torchvision's width rule.
    """

    expansion = 4

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        *,
        shortcut: Shortcut = "B",
        weighted: bool = False,
        groups: int = 1,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        out_chs = planes * self.expansion
        self.conv1 = conv1x1(in_chs, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_chs)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(in_chs, out_chs, stride, shortcut)
        self._init_residual(weighted)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(self._add(out, identity))


class PreActBasicBlock(_Residual):
    """Pre-activation block, BN-ReLU-conv twice (He et al. 2016, arXiv:1603.05027, fig. 1b).

    The shortcut branches off after the first BN-ReLU when the shape changes, as in the paper's
    reference code; there is no ReLU after the addition.
    """

    expansion = 1

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        *,
        shortcut: Shortcut = "B",
        weighted: bool = False,
        groups: int = 1,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            msg = "PreActBasicBlock only supports groups=1 and base_width=64"
            raise ConfigError(msg)
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.relu = nn.ReLU(inplace=False)
        self.conv1 = conv3x3(in_chs, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = make_shortcut(in_chs, planes, stride, shortcut, preact=True)
        self._init_residual(weighted)

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        return self._add(out, identity)


Block = type[BasicBlock] | type[Bottleneck] | type[PreActBasicBlock]


def make_stage(
    block: Block,
    in_chs: int,
    planes: int,
    blocks: int,
    stride: int = 1,
    *,
    shortcut: Shortcut = "B",
    weighted: bool = False,
    groups: int = 1,
    base_width: int = 64,
) -> nn.Sequential:
    """Stack ``blocks`` residual blocks; only the first changes stride and width (Keras ``stack1``).

    Args:
        block: the block class (BasicBlock, Bottleneck, PreActBasicBlock).
        in_chs: channels entering the stage.
        planes: the block's base width; the stage outputs ``planes * block.expansion``.
        blocks: number of blocks, at least 1.
        stride: stride of the first block.
        shortcut: "A" (zero-padding) or "B" (1x1 projection) where the shape changes.
        weighted: learnable ``alpha * F(x) + beta * x`` in every block.
        groups: grouped 3x3 convolutions (ResNeXt cardinality).
        base_width: width per group (64 for ResNet, 4 for ResNeXt 32x4d, 128 for wide).

    Returns:
        The stage as an ``nn.Sequential`` named ``0..blocks-1`` (torchvision's layout).

    Raises:
        ConfigError: (a ``ValueError``) if ``blocks`` is below 1.
    """
    if blocks < 1:
        msg = f"a stage needs at least one block, got {blocks}"
        raise ConfigError(msg)
    opts: dict[str, Any] = {
        "shortcut": shortcut, "weighted": weighted, "groups": groups, "base_width": base_width
    }
    layers = [block(in_chs, planes, stride, **opts)]
    out_chs = planes * block.expansion
    layers += [block(out_chs, planes, 1, **opts) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class CSPStage(nn.Module):
    """Cross-stage partial stage (Wang et al. 2019, arXiv:1911.11929).

    The (optionally downsampled) input is split in two halves along channels: one half goes
    through the residual blocks, the other bypasses them; the halves are concatenated and mixed
    by a 1x1 transition conv. Only half of the features pay for the blocks, which is where the
    parameter and MAC savings come from.
    """

    def __init__(
        self,
        block: Block,
        in_chs: int,
        out_chs: int,
        blocks: int,
        stride: int = 1,
        *,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        down = conv3x3(in_chs, out_chs, stride) if stride > 1 else conv1x1(in_chs, out_chs)
        self.down = nn.Sequential(down, nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True))
        half = out_chs // 2
        if out_chs % 2 or half % block.expansion:
            msg = f"CSP stage width {out_chs} must split into halves divisible by {block.expansion}"
            raise ConfigError(msg)
        self.blocks = make_stage(
            block, half, half // block.expansion, blocks, base_width=base_width
        )
        self.transition = nn.Sequential(
            conv1x1(out_chs, out_chs), nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.down(x)
        bypass, part = x.chunk(2, dim=1)
        return self.transition(torch.cat([bypass, self.blocks(part)], dim=1))
