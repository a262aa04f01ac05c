"""Count parameters and multiply-accumulates of a model with forward hooks (no extra dependency).

``profile_model`` builds a zoo network on PyTorch's ``meta`` device: its tensors have shapes
but no storage, so construction allocates nothing and the counting forward pass only
propagates shapes. ``edgeres models`` profiles the whole zoo that way in seconds instead of
building every network's weights.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeres.models.deploy import eval_mode


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as BN running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass at ``input_shape`` (batch 1), convs and linears.

    Element-wise work (BN, ReLU, additions, pooling) is left out, as in the paper's FLOPs.
    """
    total = 0

    def conv_hook(m: nn.Conv2d, _inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out[0].numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    device = next(model.parameters(), torch.empty(0)).device  # "meta" for profile_model
    try:
        with eval_mode(model):
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
    return total


def profile_model(name: str) -> tuple[int, int]:
    """Parameters and MACs of zoo model ``name`` at its default input size, counted on a
    network built on the ``meta`` device (shapes only: no weights are allocated)."""
    from edgeres.models import create_model, model_info

    info = model_info(name)
    with torch.device("meta"):
        model = create_model(name)
    return count_params(model), count_macs(model, (info.in_chans, *info.input_size))
