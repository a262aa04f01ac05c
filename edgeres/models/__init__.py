"""The ResNet model zoo: ``create_model(name)``, ``list_models()`` and the public building blocks.

Importing this package imports torch; the light parts of edgeres (``runtime``, ``cli``) import
it only inside the commands that need it.
"""

from __future__ import annotations

from typing import Any

from edgeres.models import resnet as _resnet  # noqa: F401 - registers the builders
from edgeres.models import variants as _variants  # noqa: F401 - registers the builders
from edgeres.models._registry import ModelInfo, list_models, model_info
from edgeres.models.blocks import (
    BasicBlock,
    Bottleneck,
    CSPStage,
    PreActBasicBlock,
    ZeroPadShortcut,
    make_stage,
)
from edgeres.models.resnet import ResNet

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CSPStage",
    "ModelInfo",
    "PreActBasicBlock",
    "ResNet",
    "ZeroPadShortcut",
    "create_model",
    "list_models",
    "make_stage",
    "model_info",
]


def create_model(
    name: str, *, num_classes: int | None = None, in_chans: int | None = None, **kwargs: Any
) -> ResNet:
    """Build a registered model (randomly initialised, in training mode like any ``nn.Module``).

    Args:
        name: a name from ``list_models()``.
        num_classes: classifier outputs; the registry's default when None.
        in_chans: input channels; the registry's default when None.
        **kwargs: builder options (``shortcut="B"``, ``zero_init_residual=True``, ...).

    Returns:
        The model, randomly initialised.

    Raises:
        UnknownModelError: if ``name`` is not registered (close names are suggested).
    """
    info = model_info(name)
    kwargs["num_classes"] = info.num_classes if num_classes is None else num_classes
    kwargs["in_chans"] = info.in_chans if in_chans is None else in_chans
    return info.builder(**kwargs)
