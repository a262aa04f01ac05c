"""``Quantizer``: the interface ``quantize()`` drives and every quantizer backend satisfies.

``_ort.OrtQuantizer`` (ONNX Runtime QDQ) and ``_nncf.NncfQuantizer`` (NNCF, OpenVINO IR)
implement it; a new backend implements it too (CONTRIBUTING, "A quantizer backend"). The
accuracy-aware loop (``sensitivity.py``) and the publication in ``quantize/__init__.py`` use
nothing else. ``QuantDetails`` is what a backend's ``details()`` returns (the report holds
it). Stdlib only: the backends import their libraries themselves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from edgeres.calibration import CalibrationSet
    from edgeres.meta import ModelMeta

# the quantizer backends (shared vocabulary): every registered runtime has one
QuantBackend = Literal["ort", "openvino", "litert", "executorch"]
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


@dataclass(frozen=True)
class QuantDetails:
    """Types and options of an int8 model: what a quantizer backend wrote, read by the CLI,
    the report and bench's notes (``_notes.py``) by field, never by string key.

    In JSON (the report, and ``extra["quantization"]`` of the model's record) the fields are
    flat keys; a field that is None is left out, so each backend writes the keys it did before.

    Attributes:
        format: "QDQ" (ONNX Runtime) or "OpenVINO IR (FakeQuantize)".
        activation_type: "uint8", "int8", or NNCF's "uint8/int8 (by sign)".
        activation_symmetric: symmetric activation ranges.
        weight_type: always "int8".
        weight_symmetric: symmetric weight ranges.
        reduce_range: 7-bit weights (ORT on x86 without VNNI); None for NNCF.
        per_channel: one weight scale per output channel.
        pre_processed: ``quant_pre_process`` ran first (ORT); None for NNCF.
        opset_upgraded: (old, new) opset when the float model was upgraded first (ORT).
        preset: NNCF's preset; None for ORT.
        target_device: NNCF's target device; None for ORT.
        target_why: why the target was chosen (report only, not in the record).
        layer_report_images: calibration images behind the per-layer SQNR (report only).
    """

    format: str
    activation_type: str
    activation_symmetric: bool
    weight_type: str = "int8"
    weight_symmetric: bool = True
    reduce_range: bool | None = None
    per_channel: bool = True
    pre_processed: bool | None = None
    opset_upgraded: tuple[int, int] | None = None
    preset: str | None = None
    target_device: str | None = None
    target_why: str | None = None
    layer_report_images: int | None = None

    REPORT_ONLY: ClassVar[tuple[str, ...]] = ("target_why", "layer_report_images")

    def to_dict(self, *, record: bool = False) -> dict[str, Any]:
        """Flat JSON keys, None fields left out; ``record=True`` drops the report-only ones."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        if self.opset_upgraded is not None:
            d["opset_upgraded"] = list(self.opset_upgraded)
        if record:
            for key in self.REPORT_ONLY:
                d.pop(key, None)
        return d

    @classmethod
    def from_record(cls, meta: Any) -> QuantDetails | None:
        """The details in a model record's ``extra["quantization"]`` (untrusted JSON), or None
        when the record has none. Keys of the wrong type read as unknown (None)."""
        from edgeres.meta import QuantizationInfo  # the section's one reader

        q = QuantizationInfo.of(meta)
        if q is None:
            return None
        return cls(format=q.format or "", activation_type=q.activation_type or "",
                   activation_symmetric=bool(q.activation_symmetric),
                   weight_type=q.weight_type or "int8",
                   weight_symmetric=q.weight_symmetric is not False,
                   per_channel=q.per_channel is not False,
                   reduce_range=q.reduce_range, pre_processed=q.pre_processed,
                   opset_upgraded=q.opset_upgraded, preset=q.preset,
                   target_device=q.target_device)


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
