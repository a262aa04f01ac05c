"""edgeres: ResNet-family models from PyTorch to edge devices, with honest speed and accuracy.

This file stays light: it imports no torch, onnx, openvino or nncf, so ``edgeres.runtime``
and the CLI start fast on a device that has only numpy and one inference runtime.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
