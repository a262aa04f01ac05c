"""ResNet relatives as registered builders: ResNeXt/wide, pre-activation, weighted residual,
CSP, compact stacks and the ResNet-45 OCR backbone. All are ``ResNet`` with other data.
"""

from __future__ import annotations

from typing import Any

from edgeres.models._registry import register_model
from edgeres.models.blocks import BasicBlock, Bottleneck, PreActBasicBlock
from edgeres.models.resnet import ResNet, _cifar

_IMAGENET: dict[str, Any] = {"family": "imagenet", "input_size": (224, 224), "num_classes": 1000}
_CIFAR: dict[str, Any] = {"family": "cifar", "input_size": (32, 32), "num_classes": 10}


@register_model(**_IMAGENET)
def resnext50_32x4d(**kwargs: Any) -> ResNet:
    """ResNeXt-50 32x4d (Xie et al. 2017, arXiv:1611.05431), torchvision layout."""
    return ResNet(Bottleneck, (3, 4, 6, 3), groups=32, base_width=4, **kwargs)


@register_model(**_IMAGENET)
def wide_resnet50_2(**kwargs: Any) -> ResNet:
    """Wide ResNet-50-2 (Zagoruyko & Komodakis 2016, arXiv:1605.07146), torchvision layout."""
    return ResNet(Bottleneck, (3, 4, 6, 3), base_width=128, **kwargs)


@register_model(**_IMAGENET)
def preact_resnet18(**kwargs: Any) -> ResNet:
    """Pre-activation ResNet-18 (He et al. 2016, arXiv:1603.05027)."""
    return ResNet(PreActBasicBlock, (2, 2, 2, 2), **kwargs)


@register_model(**_CIFAR)
def cifar_preact_resnet20(**kwargs: Any) -> ResNet:
    """Pre-activation CIFAR ResNet-20 (He et al. 2016, arXiv:1603.05027), option A shortcuts."""
    return _cifar(20, block=PreActBasicBlock, **kwargs)


@register_model(**_IMAGENET)
def wrc_resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18 with weighted residual connections ``alpha*F(x) + beta*x`` (arXiv:1709.06079)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), weighted=True, **kwargs)


@register_model(**_CIFAR)
def cifar_wrc_resnet20(**kwargs: Any) -> ResNet:
    """CIFAR ResNet-20 with weighted residual connections (arXiv:1709.06079)."""
    return _cifar(20, weighted=True, **kwargs)


@register_model(**_IMAGENET)
def cspresnet50(**kwargs: Any) -> ResNet:
    """CSPResNet-50 (Wang et al. 2019, arXiv:1911.11929): ResNet-50 depths in CSP stages.

    As in the paper's CSPResNet50, stages output 128/256/512/1024 channels and the blocks on the
    crossing half use a bottleneck ratio of 0.5 (``base_width=128``). Unlike it (and timm's
    ``cspresnet50``, 21.6M parameters), a stage does not first expand its input twofold before
    the split, so this one has 12.7M parameters: the same layout, not the same network.
    """
    return ResNet(
        Bottleneck, (3, 4, 6, 3), widths=(32, 64, 128, 256), csp=True, base_width=128, **kwargs
    )


@register_model(family="tiny", input_size=(32, 32), num_classes=10)
def tiny_resnet(**kwargs: Any) -> ResNet:
    """Compact stack of three BasicBlocks 3→64→128→256, stride 1, no stem."""
    return ResNet(
        BasicBlock, (1, 1, 1), widths=(64, 128, 256), strides=(1, 1, 1), stem="none", **kwargs
    )


@register_model(family="tiny", input_size=(28, 28), num_classes=10)
def tiny_resnet28(**kwargs: Any) -> ResNet:
    """Six BasicBlocks 3→64 (stride 1) then →128→…→2048 at stride 2, for 28x28 inputs."""
    widths = (64, 128, 256, 512, 1024, 2048)
    return ResNet(
        BasicBlock, (1,) * 6, widths=widths, strides=(1, 2, 2, 2, 2, 2), stem="none", **kwargs
    )


@register_model(family="ocr", input_size=(32, 128), num_classes=0)
def resnet45(**kwargs: Any) -> ResNet:
    """ResNet-45 OCR backbone (ASTER/ABINet, arXiv:2103.06495); returns the feature map.

    ABINet's stage depths, widths and strides, built from this zoo's BasicBlock (3x3 then 3x3);
    ABINet's blocks are 1x1 then 3x3 with the stride on the 3x3, so its weights do not load here.
    """
    kwargs.setdefault("num_classes", 0)
    return ResNet(
        BasicBlock, (3, 4, 6, 6, 3),
        widths=(32, 64, 128, 256, 512), strides=(2, 1, 2, 1, 1),
        stem="cifar", stem_width=32, **kwargs,
    )
