"""``Runtime``: what one inference runtime module (``edgeres/runtimes/<backend>.py``) provides.

The contract every runtime module's ``RUNTIME`` object satisfies (docs: the runtime module
contract; CONTRIBUTING, "A runtime"). Stdlib only; the types are imported for checking.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from edgeres.calibration import CalibrationSet
    from edgeres.meta import ModelMeta
    from edgeres.quantize._protocol import Quantizer
    from edgeres.quantize.config import QuantConfig, TargetSpec
    from edgeres.runtime.backends import BackendOptions, InferenceBackend


class Runtime(Protocol):
    name: str                     # the backend: "ort" | "openvino" | "litert" | "executorch"
    devices: tuple[str, ...]      # devices it can run on here, e.g. ("cpu",)
    suffixes: tuple[str, ...]     # model files it reads, e.g. (".tflite",); first = what it writes
    dist: str                     # pip distribution the device needs, e.g. "ai-edge-litert"
    min_version: str              # the oldest version of `dist` a test runs a bundle with
    quantizes: str                # the float model file its quantizer takes, e.g. ".onnx"

    def unavailable(self) -> str | None:
        """None when the runtime can be imported here, else why not and the install line."""

    def load(self, path: Path, options: BackendOptions,
             meta: ModelMeta | None = None) -> InferenceBackend:
        """Open the model file for inference (edgeres.runtime.backends.InferenceBackend)."""

    def read_record(self, path: Path) -> str | None:
        """The metadata record's JSON text stored with this model file, or None."""

    def companion_files(self, path: Path) -> list[Path]:
        """Files that must travel with the model (OpenVINO's .bin, a sidecar record)."""

    def quantizer(self, src: Path, calibration: CalibrationSet, spec: TargetSpec,
                  config: QuantConfig) -> Quantizer:
        """The int8 quantizer for a float model of this runtime
        (edgeres.quantize._protocol.Quantizer); raise QuantizationError naming why
        when the runtime has none or cannot quantize this model."""
