"""``Quantizer``: the interface ``quantize()`` drives and every quantizer backend satisfies.

``_ort.OrtQuantizer`` (ONNX Runtime QDQ) and ``_nncf.NncfQuantizer`` (NNCF, OpenVINO IR)
implement it; a new backend implements it too (CONTRIBUTING, "A quantizer backend"). The
accuracy-aware loop (``sensitivity.py``) and the publication in ``quantize/__init__.py`` use
nothing else. Stdlib only: the backends import their libraries themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from edgeres.calibration import CalibrationSet
    from edgeres.meta import ModelMeta
    from edgeres.quantize._report import QuantDetails

QuantBackend = Literal["ort", "openvino", "litert", "executorch"]  # the quantizer backends
QUANT_BACKENDS: tuple[str, ...] = ("ort", "openvino", "litert", "executorch")


@runtime_checkable
class Quantizer(Protocol):
    """One float model being quantized: calibrate once, build candidates, load and save them.

    Attributes:
        backend: "ort" or "openvino".
        meta: the float model's record.
        calibration: the selected calibration samples.
        layers: names of the weighted layers, in graph order (what ``exclude`` names).
        op_types: layer name → op type.
    """

    backend: str
    meta: ModelMeta
    calibration: CalibrationSet
    layers: tuple[str, ...]
    op_types: dict[str, str]

    @property
    def fp32_path(self) -> Path:
        """The float model every int8 candidate is compared against."""
        ...

    def calibrate(self) -> None:
        """Collect activation ranges (once)."""
        ...

    def check_names(self, names: Sequence[str]) -> None:
        """Raise ``QuantizationError`` for layer names that are not in the graph."""
        ...

    def build(self, floats: tuple[str, ...]) -> Path:
        """The int8 candidate with ``floats`` left in float (cached per set of names)."""
        ...

    def load(self, path: Path, threads: int | None = None) -> Any:
        """A predictor (``edgeres.runtime.Predictor``) for a candidate or the float model."""
        ...

    def tensor_runner(self, path: Path, names: Sequence[str]
                      ) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        """A function running ``path`` on one batch and returning the named tensors."""
        ...

    def compare_tensors(self, path: Path) -> dict[str, tuple[str, str]]:
        """Layer → (fp32 tensor, int8 tensor) that the per-layer error report compares."""
        ...

    def details(self) -> QuantDetails:
        """Types and options of the written models, for the report and the record."""
        ...

    def save(self, path: Path, dst: Path, meta: ModelMeta) -> None:
        """Write candidate ``path`` to ``dst`` with ``meta`` inside, atomically."""
        ...
