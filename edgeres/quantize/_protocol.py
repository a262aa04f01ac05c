"""``Quantizer``: the interface ``quantize()`` drives and every quantizer backend satisfies.

``_ort.OrtQuantizer`` (ONNX Runtime QDQ) and ``_nncf.NncfQuantizer`` (NNCF, OpenVINO IR)
implement it; a new backend implements it too (CONTRIBUTING, "A quantizer backend"). The
accuracy-aware loop (``sensitivity.py``) and the publication in ``quantize/__init__.py`` use
nothing else. Stdlib and the runtime registry only: the backends import their libraries
themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from edgeres.runtimes import RUNTIME_NAMES

if TYPE_CHECKING:
    import numpy as np

    from edgeres.calibration import CalibrationSet
    from edgeres.meta import ModelMeta
    from edgeres.quantize._report import QuantDetails

QuantBackend = Literal["ort", "openvino"]  # the quantizer backends (shared vocabulary)
QUANT_BACKENDS: tuple[str, ...] = RUNTIME_NAMES  # every runtime module has its quantizer()
# The temporary folder of the quantize() call in progress: a runtime's quantizer factory
# (edgeres.runtimes.<name>.RUNTIME.quantizer, whose signature is the runtime contract's) keeps
# its intermediate files there, and quantize()'s `with` block removes it (CONTRIBUTING R9).
_WORKDIR: ContextVar[Path | None] = ContextVar("edgeres_quantize_workdir", default=None)


@contextmanager
def using_workdir(path: Path) -> Iterator[Path]:
    """Make ``path`` the folder ``workdir()`` gives while the block runs."""
    token = _WORKDIR.set(path)
    try:
        yield path
    finally:
        _WORKDIR.reset(token)


def workdir() -> Path:
    """The temporary folder of the quantize() call in progress (see ``using_workdir``).

    Raises:
        QuantizationError: if called outside one (a quantizer is made by ``quantize()``).
    """
    path = _WORKDIR.get()
    if path is None:
        from edgeres.errors import QuantizationError

        msg = "a quantizer is made inside edgeres.quantize.quantize(); call that instead"
        raise QuantizationError(msg)
    return path


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
