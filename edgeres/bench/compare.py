"""Which rows of a run to compare, and the comparison: int8 against fp32 on the same runtime.

Each measured int8 row is set against the fp32 rows on the same runtime, batch and I/O mode:
the fp32 row that runs the model's precision and, where there is one, the runtime's default
(OpenVINO's own precision, which is bf16 on AMX hosts). The baseline is the same MODEL (timed
in the same interleaved rounds, so the speedup is paired) or the float file the int8 file was
quantized from (``BenchRow.quantized_from``; different rounds, so unpaired). The accuracy side
is the int8 row's own paired drop against its reference. Numbers only; ``report.py`` and
``plot.py`` format them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edgeres.bench.results import BenchRow
from edgeres.bench.stats import Speedup, speedup
from edgeres.intervals import PairedDrop

__all__ = ["Comparison", "comparisons"]


@dataclass(frozen=True)
class Comparison:
    """An int8 row against one fp32 baseline row.

    Attributes:
        model: the int8 row's MODEL argument.
        runtime: the int8 row's runtime label.
        batch: images per call.
        baseline: the baseline row, ``precision/runtime``, led by its model when that is
            another file.
        candidate: the int8 row, ``precision/runtime``.
        speedup: baseline latency / int8 latency with its 95% interval.
        drop: the int8 row's top-1 drop against its reference (None without ``--eval``).
        against: the baseline in words: ``fp32``, ``fp32 (default)``, ``fp32 of m.onnx``.
    """

    model: str
    runtime: str
    batch: int
    baseline: str
    candidate: str
    speedup: Speedup
    drop: PairedDrop | None
    against: str = "fp32"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, with the speedup's verdict."""
        return {"model": self.model, "runtime": self.runtime, "batch": self.batch,
                "baseline": self.baseline, "candidate": self.candidate,
                "speedup": self.speedup.to_dict(), "verdict": self.speedup.verdict,
                "drop": None if self.drop is None else self.drop.to_dict()}


def _measured(r: BenchRow) -> bool:
    return r.status == "ok" and r.latency is not None


def comparisons(rows: Iterable[BenchRow]) -> list[Comparison]:
    """Every int8 row against its fp32 baselines, in row order."""
    rows = [r for r in rows if _measured(r)]
    out = []
    for r in rows:
        if r.precision != "int8":
            continue
        for b in rows:
            same_model = b.model == r.model
            if (b.precision != "fp32" or b.batch != r.batch or b.runtime != r.runtime
                    or b.io != r.io or b.node != r.node
                    or not (same_model or b.model == r.quantized_from)):
                continue
            assert b.latency is not None and r.latency is not None  # _measured
            s = speedup(b.latency.round_medians_ms, r.latency.round_medians_ms,
                        paired=same_model)
            base = b.label if same_model else f"{b.model} {b.label}"
            against = b.label.replace(f"/{b.runtime}", "", 1)
            against += "" if same_model else f" of {b.model}"
            out.append(Comparison(r.model, r.runtime_label, r.batch, base, r.label, s,
                                  r.accuracy.drop if r.accuracy else None, against))
    return out
