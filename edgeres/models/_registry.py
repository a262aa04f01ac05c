"""The model registry: names → builders plus the facts a command needs without building.

Stdlib only, so ``edgeres models`` style listings and name checks never need torch at import.
The defaults themselves are also in ``edgeres.zoo`` (readable before the builders register);
``ModelInfo.pretrained_cfg`` is this entry in that form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from edgeres.zoo import PretrainedCfg, unknown_model


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model before building it.

    Attributes:
        name: registry key, also the builder's name.
        family: "imagenet", "cifar", "tiny", "ocr" (selects default preprocessing).
        input_size: default (height, width).
        num_classes: default classes; 0 means the model returns its feature map.
        in_chans: default input channels.
        builder: the function that builds the ``nn.Module``.
    """

    name: str
    family: str
    input_size: tuple[int, int]
    num_classes: int
    in_chans: int
    builder: Callable[..., Any]

    @property
    def pretrained_cfg(self) -> PretrainedCfg:
        """These defaults as the zoo's stdlib table states them (``edgeres.zoo``)."""
        return PretrainedCfg(self.name, self.family, self.input_size, self.num_classes,
                             self.in_chans)


_REGISTRY: dict[str, ModelInfo] = {}  # name → info; filled at import of edgeres.models.resnet


def register_model(
    *, family: str, input_size: tuple[int, int], num_classes: int, in_chans: int = 3
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a builder under its own ``__name__``; duplicate names are a bug and raise."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if fn.__name__ in _REGISTRY:
            msg = f"model {fn.__name__!r} is registered twice"
            raise ValueError(msg)
        _REGISTRY[fn.__name__] = ModelInfo(
            fn.__name__, family, cast(tuple[int, int], tuple(input_size)), num_classes, in_chans, fn
        )
        return fn

    return wrap


def list_models() -> list[str]:
    """Return every registered model name, sorted."""
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """Return the registry entry for ``name``.

    Raises:
        UnknownModelError: if the name is not registered; the message suggests close names.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise unknown_model(name, _REGISTRY) from None
