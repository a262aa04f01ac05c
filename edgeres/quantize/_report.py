"""``QuantReport``: what ``quantize`` did and measured, and its JSON form (``OUT.onnx.quant.json``).

Numbers stay floats here (the CLI formats them); non-finite SQNR values (a layer with no
error) become ``null`` in JSON, which has no infinity.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeres._fs import json_safe
from edgeres.calibration import CalibrationStats
from edgeres.intervals import PairedDrop, budget_verdict, paired_drop, wilson
from edgeres.meta import ModelMeta
from edgeres.quantize._protocol import QuantDetails
from edgeres.quantize.sensitivity import Fallback, LayerError

REPORT_SCHEMA_VERSION = 1


def quant_target(meta: Any) -> str | None:
    """The deployment target a model record says it was quantized for, or None."""
    from edgeres.meta import QuantizationInfo  # ModelMeta.quantization's type

    q = QuantizationInfo.of(meta)  # a ModelMeta, or any object with its extra dict
    return q.target if q is not None else None


@dataclass(frozen=True)
class QuantAccuracy:
    """fp32 and int8 top-1 on one labelled data set, with 95% intervals.

    Not ``bench.results.RowAccuracy`` (one runtime row's top-1/top-5 and agreement): this one
    pairs the float and the int8 model on the same images.

    Attributes:
        data: the data argument (path or registered name).
        count: images evaluated.
        fp32_top1: fp32 top-1 in percent.
        int8_top1: int8 top-1 in percent.
        fp32_interval, int8_interval: Wilson intervals of the two, percent.
        paired: the drop as a paired estimate on the same images: counts of images lost and
            gained by int8, the drop's Newcombe interval and the McNemar p-value
            (``edgeres.intervals.paired_drop``). None when per-image results are missing.
    """

    data: str
    count: int
    fp32_top1: float
    int8_top1: float
    fp32_interval: tuple[float, float] | None = None
    int8_interval: tuple[float, float] | None = None
    paired: PairedDrop | None = None

    @classmethod
    def from_correct(cls, data: str, fp32: Any, int8: Any) -> QuantAccuracy:
        """From per-image correctness of fp32 and int8 on the same images (``.correct``)."""
        import numpy as np

        a, b = np.asarray(fp32, bool), np.asarray(int8, bool)
        wa, wb = wilson(int(a.sum()), a.size), wilson(int(b.sum()), b.size)
        return cls(data, int(a.size), 100 * float(a.mean()), 100 * float(b.mean()),
                   (100 * wa[0], 100 * wa[1]), (100 * wb[0], 100 * wb[1]), paired_drop(a, b))

    @property
    def noise(self) -> bool | None:
        """True when the drop's interval holds 0 (the data cannot tell fp32 and int8 apart)."""
        return None if self.paired is None else self.paired.noise

    @property
    def drop(self) -> float:
        """fp32 minus int8 top-1, in points (negative when int8 scores higher)."""
        return self.fp32_top1 - self.int8_top1

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, with the drop (and its interval and test when paired)."""
        d = {**dataclasses.asdict(self), "drop": self.drop}
        for key in ("fp32_interval", "int8_interval"):
            d[key] = None if d[key] is None else list(d[key])
        return d


@dataclass(frozen=True)
class QuantReport:
    """The result of one ``quantize`` call.

    Attributes:
        src: the float model.
        dst: the int8 model written.
        report_path: where the JSON report went.
        backend: "ort" or "openvino".
        target: the resolved deployment target.
        method: calibration method ("nncf-default" when NNCF chose).
        details: types and options of the int8 model (activation/weight types, ...).
        calibration: count, skipped and sha256 of the calibration samples.
        calibration_data: the calibration data argument.
        float_layers: layers left in float (asked for, or returned by the budget loop).
        validation: fp32/int8 top-1 on ``--val`` data (the decisions' data), if given.
        evaluation: fp32/int8 top-1 on ``--eval`` data (report only), if given.
        max_drop: the top-1 budget in points, if given.
        fallback: the accuracy-aware loop's ranking, attempts and costs, if it ran.
        layers: per-layer SQNR against fp32 on calibration images.
        warnings: things the user should know (budget not met, ...).
        seconds: wall time of the whole call.
        meta: the record stored in the int8 model.
    """

    src: Path
    dst: Path
    report_path: Path | None
    backend: str
    target: str
    method: str
    details: QuantDetails
    calibration: CalibrationStats
    calibration_data: str
    float_layers: tuple[str, ...]
    validation: QuantAccuracy | None
    evaluation: QuantAccuracy | None
    max_drop: float | None
    fallback: Fallback | None
    layers: tuple[LayerError, ...]
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0
    meta: ModelMeta | None = field(default=None, repr=False)

    @property
    def budget_met(self) -> bool | None:
        """Whether the validation drop is within ``max_drop`` (None without a budget)."""
        if self.max_drop is None or self.validation is None:
            return None
        return self.validation.drop <= self.max_drop

    @property
    def budget_verdict(self) -> str | None:
        """"met with confidence" (the drop's 95% upper bound fits ``max_drop``), "met on the
        point estimate only", or "not met"; None without a budget."""
        if self.max_drop is None or self.validation is None:
            return None
        v = self.validation
        return budget_verdict(v.drop, v.paired.high if v.paired else None, self.max_drop)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON types, led by ``schema_version``."""
        fb = self.fallback
        return json_safe({
            "schema_version": REPORT_SCHEMA_VERSION,
            "src": str(self.src),
            "dst": str(self.dst),
            "backend": self.backend,
            "target": self.target,
            "method": self.method,
            **self.details.to_dict(),
            "calibration": {"data": self.calibration_data,
                            **dataclasses.asdict(self.calibration)},
            "float_layers": list(self.float_layers),
            "validation": self.validation.to_dict() if self.validation else None,
            "evaluation": self.evaluation.to_dict() if self.evaluation else None,
            "max_drop": self.max_drop,
            "budget_met": self.budget_met,
            "budget_verdict": self.budget_verdict,
            "fallback": None if fb is None else {
                "budget_met": fb.budget_met,
                "ranking": [{"layer": n, "sqnr_gain_db": g} for n, g in fb.ranking],
                "attempts": [dataclasses.asdict(a) for a in fb.attempts],
                "costs": [dataclasses.asdict(c) for c in fb.costs],
                "latency_ms": fb.latency_ms,
            },
            "layers": [dataclasses.asdict(row) for row in self.layers],
            "warnings": list(self.warnings),
            "seconds": self.seconds,
        })


def report_path_for(dst: Path) -> Path:
    """``model-int8.onnx`` → ``model-int8.onnx.quant.json`` (beside the model).

    The full file name, suffix included, so ``m.onnx`` and ``m.xml`` in one folder get
    reports of their own (edgeres 0.1.0 wrote ``m.quant.json`` for both;
    ``legacy_report_path``).
    """
    return dst.with_name(dst.name + ".quant.json")


def legacy_report_path(dst: Path) -> Path:
    """Where releases before the full-name rule put ``dst``'s report: ``model-int8.quant.json``."""
    return dst.with_name(dst.stem + ".quant.json")


def find_report(dst: Path) -> Path | None:
    """The report of int8 model ``dst``: the current name, else the legacy one, else None."""
    for path in (report_path_for(dst), legacy_report_path(dst)):
        if path.is_file():
            return path
    return None


def write_report(report: QuantReport, path: Path) -> None:
    """Write ``report`` as JSON to ``path`` (which may be a temporary path of ``atomic_files``)."""
    path.write_text(json.dumps(report.to_dict(), indent=1) + "\n")


