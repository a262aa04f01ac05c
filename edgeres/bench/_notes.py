"""What to expect from int8 here, and why an int8 row came out slower than its fp32 row.

int8 is faster only when the hardware has int8 dot products and the runtime uses them: x86
VNNI or AMX-INT8, ARM dotprod/i8mm, int8 tensor cores behind TensorRT. Without them, and with
a model quantized for another target, int8 is often *slower* than fp32 — the most reported
quantization surprise (onnxruntime #20052 and #24807, TensorRT #2067, openvino #1085). The
notes are stated before measuring and checked after; their text carries no numbers
(``report.py`` adds the measured ones).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from edgeres._hw import has_vnni, is_arm, is_x86
from edgeres.bench.config import RuntimeLabel
from edgeres.bench.env import Environment
from edgeres.bench.results import BenchRow, Note
from edgeres.golden import target_risk
from edgeres.quantize._report import QuantDetails, quant_target


def _has_vnni(env: Environment) -> bool:
    return has_vnni(env.isa)


def hardware_outlook(env: Environment, runtime: str) -> tuple[bool | None, str]:
    """Whether ``runtime`` on this machine can be expected to speed int8 up, and why.

    Returns:
        ``(expected, text)``: True/False, or None when it depends on hardware not visible here.
    """
    device = RuntimeLabel.parse(runtime).device
    machine = env.machine.lower()
    isa = set(env.isa)
    if device == "cuda":
        return False, ("the CUDA execution provider runs QDQ int8 models largely as float "
                       "(dequantize, then fp32 kernels); use ort-tensorrt for int8 speed")
    if device == "tensorrt":
        return None, ("TensorRT runs QDQ int8 on int8 tensor cores (Turing or newer GPUs); "
                      "layers it keeps in float run as before (TensorRT #2067)")
    if device == "gpu":
        return None, ("OpenVINO's GPU plugin speeds int8 up on Intel GPUs with DP4A or XMX "
                      "engines; older GPUs run it no faster than fp16")
    if is_arm(machine):
        if "i8mm" in isa or "asimddp" in isa:
            found = " and ".join(f for f in ("asimddp", "i8mm") if f in isa)
            return True, f"this ARM CPU has int8 dot products ({found}): int8 should be faster"
        return False, ("this ARM CPU lacks dotprod/i8mm: int8 convolutions may be no faster "
                       "than fp32")
    if "amx_int8" in isa:
        return True, ("this CPU has AMX-INT8 and VNNI: int8 convolutions should be faster than "
                      "fp32 (OpenVINO uses AMX; ONNX Runtime's MLAS uses VNNI)")
    if _has_vnni(env):
        return True, "this CPU has VNNI int8 dot products: int8 should be faster than fp32"
    return False, ("this CPU has no VNNI or AMX-INT8: int8 dot products are emulated with "
                   "16-bit multiply-adds and int8 is often no faster than fp32 "
                   "(onnxruntime #20052)")


def target_mismatch(env: Environment, runtime: str, meta: Any) -> str | None:
    """A sentence when the model was quantized for a target other than this runtime, else None."""
    target = quant_target(meta)
    if target is None:
        return None
    target = target.lower()
    device = RuntimeLabel.parse(runtime).device
    if device == "tensorrt":
        if target != "tensorrt":
            return f"quantized for target {target!r}, not 'tensorrt', but running on TensorRT"
        return None
    if target == "tensorrt":
        return ("quantized for TensorRT (symmetric int8 activations everywhere) but running on "
                f"{runtime}, whose int8 kernels prefer the CPU target")
    # The CPU rules are the ones a bundle's `infer.py --verify` states (edgeres.golden).
    return target_risk(target, env.machine, set(env.isa)) if device == "cpu" else None


def outlook_notes(env: Environment, model: str, runtimes: Iterable[str], meta: Any, *,
                  metas: dict[str, Any] | None = None) -> list[Note]:
    """The notes stated before int8 rows of ``model`` are measured.

    Args:
        env: the machine.
        model: the MODEL argument.
        runtimes: the runtimes with int8 rows.
        meta: the record of the int8 file the rows run.
        metas: runtime → the record of the file that runtime loaded, where it differs
            (TensorRT runs a ``--target tensorrt`` file made for it).
    """
    notes = []
    for runtime in runtimes:
        if RuntimeLabel.parse(runtime).backend == "torch":
            continue
        _, text = hardware_outlook(env, runtime)
        notes.append(Note("int8-outlook", text, model=model, runtime=runtime))
        mismatch = target_mismatch(env, runtime, (metas or {}).get(runtime, meta))
        if mismatch:
            notes.append(Note("int8-target", mismatch, model=model, runtime=runtime))
    return notes


def _causes(env: Environment, row: BenchRow, fp32: BenchRow, meta: Any) -> tuple[str, ...]:
    q = QuantDetails.from_record(meta)
    causes = []
    expected, text = hardware_outlook(env, row.runtime)
    if expected is False or row.runtime in ("ort-tensorrt", "openvino-gpu"):
        causes.append(text)
    activations = q.activation_type.lower() if q is not None else ""
    x86 = is_x86(env.machine)
    if x86 and row.runtime == "ort-cpu" and activations == "int8":
        causes.append("S8 activations on x86: ONNX Runtime's fast int8 kernels are U8 x S8")
    if q is not None and q.pre_processed is False:
        causes.append("quant_pre_process (shape inference and graph optimisation) was not run "
                      "before quantizing")
    mismatch = target_mismatch(env, row.runtime, meta)
    if mismatch:
        causes.append(mismatch)
    if row.runtime == "openvino-cpu" and fp32.executed_precision == "bf16":
        causes.append("the fp32 row itself ran in bf16 on AMX, which is already fast")
    if not causes:
        causes.append("quantize/dequantize work is not repaid here: a small model or batch, or "
                      "layers left in float between quantized ones (see `edgeres info`)")
    return tuple(causes)


def slower_int8_notes(env: Environment, rows: Iterable[BenchRow],
                      metas: dict[tuple[str, str], Any]) -> list[Note]:
    """Notes for every measured int8 row whose p50 is not below its fp32 row's.

    Args:
        env: the machine.
        rows: all rows of the run.
        metas: (model, precision) → the record of the file that ran, for the quant details.
    """
    rows = list(rows)
    fp32 = {(r.model, r.runtime, r.batch): r for r in rows if r.precision == "fp32"
            and r.precision_mode == "model" and r.io != "host" and r.status == "ok"
            and r.latency}
    notes = []
    for row in rows:
        if (row.precision != "int8" or row.status != "ok" or row.latency is None
                or row.io == "host"):
            continue
        ref = fp32.get((row.model, row.runtime, row.batch))
        if ref is None or ref.latency is None or row.latency.p50_ms < ref.latency.p50_ms:
            continue
        causes = _causes(env, row, ref, metas.get((row.model, "int8")))
        notes.append(Note("int8-slower", "int8 is not faster than fp32 here", model=row.model,
                          runtime=row.runtime, batch=row.batch, causes=causes))
    return notes


BUSY_OTHERS = 0.25  # share of the CPUs other processes used at the start: a shared machine
NOISY_SPREAD = 0.25  # round medians further apart than this share of p50: timing was disturbed


def noise_notes(env: Environment, rows: Iterable[BenchRow]) -> list[Note]:
    """Warn when the machine was busy or the rounds of a row disagree: numbers are unreliable."""
    notes = []
    if env.busy_others is not None and env.busy_others > BUSY_OTHERS:
        notes.append(Note("load", "other processes were using the CPUs when the run started "
                          "(see 'CPU used by other processes'): latencies are pessimistic and "
                          "noisy; compare rows of this run only, or re-run on a quiet machine"))
    noisy: dict[str, list[str]] = {}
    for r in rows:
        if r.status == "ok" and r.latency is not None and r.latency.rounds > 1 \
                and r.latency.round_spread > NOISY_SPREAD:
            noisy.setdefault(r.model, []).append(f"{r.label} b{r.batch}")
    for model, labels in noisy.items():
        notes.append(Note("noisy", "per-round medians disagree by more than a quarter for these "
                          "rows, so their latencies are unstable (more --rounds or a quieter "
                          "machine help)", model=model, causes=tuple(labels)))
    return notes
