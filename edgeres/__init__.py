"""edgeres: ResNet-family models from PyTorch to edge devices, with honest speed and accuracy.

This file stays light: it imports no torch, onnx, openvino or nncf, so ``edgeres.runtime``
and the CLI start fast on a device that has only numpy and one inference runtime.
"""

from __future__ import annotations

from edgeres._privacy import quiet_telemetry

quiet_telemetry()  # before any runtime is imported; EDGERES_TELEMETRY=1 keeps it on

__version__ = "0.1.0"
__all__ = ["__version__"]
