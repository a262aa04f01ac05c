"""Inference-form transforms of a model before export: BatchNorm folding, uint8 input, fp16.

``fold_batchnorm`` returns an eval-mode copy of a model with no ``BatchNorm2d`` left. A BN whose
input is exactly one convolution's output, used nowhere else, is folded into that conv's weight
and bias; every other BN (a pre-activation block's ``bn1``, ``final_bn``) becomes a per-channel
``x * scale + shift``. Which BN follows which conv is read from the data flow of a ``torch.fx``
trace, not from layer names: in ``PreActBasicBlock`` ``bn1`` precedes ``conv1`` and ``bn2``
follows it, so a name-based pairing would fold the wrong layers. A model fx cannot trace still
loses its BNs, all as affines. Doing this in PyTorch, not in the exporter, makes the result the
same for every exporter and opset, and checkable by the parity test. ``Uint8Input`` and
``HalfPrecision`` wrap a model so that the exported graph takes camera pixels or runs in fp16.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from typing import cast

import torch
from torch import Tensor, fx, nn

from edgeres.errors import ExportError

_log = logging.getLogger(__name__)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block, then give every submodule its own mode back.

    ``model.train(was_training)`` would not do: it switches all submodules, so BatchNorms a
    caller froze with ``bn.eval()`` for fine-tuning would come back updating their statistics.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


class ChannelAffine(nn.Module):
    """An inference-mode BatchNorm as ``x * scale + shift`` per channel (ONNX Mul and Add)."""

    scale: Tensor  # registered buffers, declared for the type checker
    shift: Tensor

    def __init__(self, scale: Tensor, shift: Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1))
        self.register_buffer("shift", shift.reshape(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift


def _bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Per-channel (scale, shift) of an eval-mode BN, computed in float64."""
    if bn.running_mean is None or bn.running_var is None:
        msg = (f"BatchNorm with {bn.num_features} channels has no running statistics "
               "(track_running_stats=False), so it has no fixed inference form; "
               "retrain with running statistics")
        raise ExportError(msg)
    mean, var = bn.running_mean.double(), bn.running_var.double()
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    shift = -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().double()
    return scale, shift


def _affine(bn: nn.BatchNorm2d) -> ChannelAffine:
    scale, shift = _bn_scale_shift(bn)
    dtype = bn.running_mean.dtype if bn.running_mean is not None else torch.float32
    return ChannelAffine(scale.to(dtype), shift.to(dtype))


def _fold_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Rewrite ``conv`` in place (it belongs to the working copy) to compute ``bn(conv(x))``."""
    scale, shift = _bn_scale_shift(bn)
    w = conv.weight.detach().double() * scale.reshape(-1, 1, 1, 1)
    b = shift if conv.bias is None else conv.bias.detach().double() * scale + shift
    conv.weight = nn.Parameter(w.to(conv.weight.dtype))
    conv.bias = nn.Parameter(b.to(conv.weight.dtype))


def _set_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    parent_name, _, child = target.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def _conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(conv, bn)`` module names where the BN's only input is the conv's only use.

    Raises whatever ``torch.fx`` raises when the model cannot be traced.
    """
    gm = fx.symbolic_trace(model)  # shares model's submodules; only read here
    modules = dict(gm.named_modules())
    calls: dict[str, int] = {}  # module name → call sites; a shared conv must not be rewritten
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        src = node.args[0] if len(node.args) == 1 and not node.kwargs else None
        if (
            isinstance(src, fx.Node) and src.op == "call_module"
            and isinstance(modules[src.target], nn.Conv2d)
            and len(src.users) == 1 and calls[str(src.target)] == 1 and calls[node.target] == 1
        ):
            pairs.append((str(src.target), str(node.target)))
    return pairs


def _replace_remaining(root: nn.Module) -> int:
    """Swap every BatchNorm2d left under ``root`` for its ChannelAffine; return how many."""
    targets = [name for name, m in root.named_modules() if isinstance(m, nn.BatchNorm2d)]
    for name in targets:
        _set_submodule(root, name, _affine(cast(nn.BatchNorm2d, root.get_submodule(name))))
    return len(targets)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy of ``model`` with every BatchNorm2d folded or made affine.

    The input model is not modified. Other normalisations (LayerNorm, GroupNorm) are left alone.

    Args:
        model: any module; zoo models are traced with ``torch.fx`` to find conv→BN pairs.

    Returns:
        A module computing the same function as ``model.eval()`` with no BatchNorm2d in it.

    Raises:
        ExportError: if a BatchNorm has no running statistics.
    """
    work = copy.deepcopy(model).eval()
    try:
        pairs = _conv_bn_pairs(work)
    except Exception as e:  # any trace failure only means "no folding", never a wrong graph
        _log.info("fx cannot trace %s (%s); BatchNorms become affines", type(model).__name__, e)
        pairs = []
    # Folding in the module tree rather than in the fx graph keeps the module names, so the
    # ONNX nodes are named /layer3/layer3.2/conv2/Conv (what --exclude and reports show).
    for conv, bn in pairs:
        _fold_into_conv(cast(nn.Conv2d, work.get_submodule(conv)),
                        cast(nn.BatchNorm2d, work.get_submodule(bn)))
        _set_submodule(work, bn, nn.Identity())
    affine = _replace_remaining(work)
    _log.debug("folded %d BatchNorms into convs, %d became affines", len(pairs), affine)
    return work.eval()


class Uint8Input(nn.Module):
    """NHWC uint8 pixels → cast, /255, (x - mean) / std, NCHW → the model, inside the graph."""

    scale: Tensor  # registered buffers, declared for the type checker
    shift: Tensor

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        # One Mul and one Add: x/255 and the normalisation folded into a single affine.
        s = torch.tensor(std, dtype=torch.float64)
        self.register_buffer("scale", (1.0 / (255.0 * s)).float().reshape(1, -1, 1, 1))
        shift = -torch.tensor(mean, dtype=torch.float64) / s
        self.register_buffer("shift", shift.float().reshape(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 3, 1, 2).float()
        return self.model(x * self.scale + self.shift)


class HalfPrecision(nn.Module):
    """fp16 weights and activations behind float32 inputs and outputs (Casts at the boundary)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.half()

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.half()).float()
