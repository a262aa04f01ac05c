"""Golden checks: does this device compute what the packaging host computed? One copy of the rules.

A bundle's ``golden.npz`` holds N inputs, the logits the packaging host got for them from the
bundled model, their labels when known, and the tolerances. ``verify`` runs the inputs through
a device's runtime and returns a verdict: top-1 agreement, max |delta logit|, the precision the
runtime reports executing, the CPU's int8-relevant ISA flags and whether the model's quantization
``--target`` suits this CPU. ``edgeres verify`` and a bundle's ``infer.py --verify`` both call
this module: a bundle carries it as a file of its device package (``edgeres.device``), so it
imports nothing but the stdlib, numpy, ``edgeres._hw`` (the CPU rules) and
``preprocess.pad_batch``, both carried too. The target-risk rule lives here, and
``bench._notes`` uses it, so a device states it exactly as edgeres.

Inputs are stored as model-sized uint8 pixels (after resize and centre crop) whenever the data
are images: 4x smaller than float32 input (196 kB for 64 CIFAR images) and the device runs its
own normalisation, channel order and layout from ``metadata.json``, so a wrong preprocessing
record fails too. Decoding and resizing are not replayed (source images differ in size).
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeres._hw import (  # noqa: F401 - VNNI_FLAGS and int8_execution: golden's public names
    VNNI_FLAGS,
    cpu_flags,
    has_vnni,
    int8_execution,
    int8_isa,
    is_arm,
    is_x86,
)
from edgeres.preprocess import pad_batch

GOLDEN_FILE = "golden.npz"
GOLDEN_VERSION = 1
VERDICT_VERSION = 1
# Precisions a runtime may report for a bundle's precision without changing its numbers
# beyond the tolerances: fp16 files run fp32 kernels between Casts on ONNX Runtime's x86 CPU
# provider (_hw.ort_executed). Anything else (int8 or fp32 executing as fp16/bf16) fails.
ACCEPTED_EXECUTION = {"fp32": ("fp32",), "fp16": ("fp16", "fp32"), "bf16": ("bf16", "fp32"),
                      "int8": ("int8",)}


def target_risk(target: str | None, machine: str, flags: set[str] | frozenset[str]) -> str | None:
    """What running a model quantized for ``target`` on this CPU risks, or None when it suits.

    Args:
        target: the quantization ``--target`` from the record (None: not quantized).
        machine: ``platform.machine()`` of the CPU that runs it.
        flags: its cpuinfo flags (an empty set when unknown).
    """
    if not target:
        return None
    target, machine = target.lower(), machine.lower()
    if target == "tensorrt":
        return ("quantized for TensorRT (symmetric int8 activations everywhere) but running on "
                "a CPU, whose int8 kernels prefer a CPU target: slower, and accuracy was tuned "
                "for TensorRT; re-quantize with --target for this CPU")
    if target in ("x86", "x86-vnni") and is_arm(machine):
        return (f"quantized for {target!r} (U8 activations) but this CPU is {machine}: ARM "
                "int8 kernels are built for S8 x S8 (sdot), so U8 models may take slower "
                "paths and round differently; re-quantize with --target arm")
    if target == "arm" and is_x86(machine):
        return (f"quantized for 'arm' (S8 activations) but this CPU is {machine}: ONNX "
                "Runtime's fast x86 int8 kernels are U8 x S8, so S8 activations run slower "
                "kernels; re-quantize with --target x86 or x86-vnni")
    if target == "x86-vnni" and int8_isa(machine, flags) and not has_vnni(flags):
        return ("quantized for 'x86-vnni' (full 8-bit weights) but this CPU has no VNNI: "
                "AVX2/AVX-512 sum U8 x S8 pairs in 16 bits (VPMADDUBSW), which full-range "
                "weights can saturate: accuracy loss, and no speed-up; re-quantize for 'x86'")
    return None


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_golden(path: str | Path, *, data: np.ndarray, kind: str, logits: np.ndarray,
                labels: np.ndarray | None, info: dict[str, Any]) -> None:
    """Write a golden file: ``data`` (``kind`` "pixels" or "inputs"), logits, labels, info."""
    arrays: dict[str, Any] = {
        kind: np.ascontiguousarray(data), "logits": np.asarray(logits, np.float32),
              "info": np.array(json.dumps({"golden_version": GOLDEN_VERSION, **info},
                                          sort_keys=True))}
    if labels is not None:
        arrays["labels"] = np.asarray(labels, np.int64)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_golden(path: str | Path) -> dict[str, Any]:
    """Read a golden file (no pickles); ``ValueError`` when it is not one."""
    with np.load(path, allow_pickle=False) as z:
        names = set(z.files)
        if not {"logits", "info"} <= names or not names & {"pixels", "inputs"}:
            msg = f"{path} is not an edgeres golden file (arrays {sorted(names)})"
            raise ValueError(msg)
        kind = "pixels" if "pixels" in names else "inputs"
        golden = {"kind": kind, "data": z[kind], "logits": z["logits"].astype(np.float64),
                  "labels": z["labels"] if "labels" in names else None,
                  "info": json.loads(str(z["info"]))}
    if golden["info"].get("golden_version") != GOLDEN_VERSION or len(golden["data"]) != len(
            golden["logits"]):
        msg = f"{path}: unsupported golden_version or mismatched arrays; re-package the bundle"
        raise ValueError(msg)
    return golden


def ambiguous(logits: np.ndarray, gap: float) -> np.ndarray:
    """Rows whose two best logits are at most ``gap`` apart: drift may swap them."""
    z = np.sort(np.asarray(logits, np.float64), axis=1)
    if z.shape[1] < 2:
        return np.zeros(len(z), bool)
    return (z[:, -1] - z[:, -2]) <= gap


def compare(host: np.ndarray, device: np.ndarray, tol: dict[str, float]) -> dict[str, Any]:
    """Numbers of the logits check: agreement, max |delta|, share within tolerance."""
    host = np.asarray(host, np.float64)
    device = np.asarray(device, np.float64).reshape(host.shape)
    delta = np.abs(device - host)
    within = delta <= tol["atol"] + tol["rtol"] * np.abs(host)
    agree = host.argmax(axis=1) == device.argmax(axis=1)
    close = ambiguous(host, tol["tie_gap"])
    return {"samples": len(host), "agreement": float(agree.mean()),
            "min_agreement": float(tol["min_agreement"]),
            "max_abs_dlogit": float(delta.max()) if delta.size else 0.0,
            "max_rel_dlogit": float((delta / np.maximum(np.abs(host), 1e-6)).max()),
            "within_tolerance": float(within.all(axis=1).mean()),
            "flips_outside_ties": int((~agree & ~close).sum()),
            "finite": bool(np.isfinite(device).all())}


def _failures(numbers: dict[str, Any], checks: dict[str, Any]) -> list[str]:
    out = []
    if not numbers["finite"]:
        out.append("logits: the device produced NaN or infinite logits")
    if numbers["within_tolerance"] < 1.0:
        out.append(f"logits: max |delta logit| {numbers['max_abs_dlogit']:.4g} exceeds the "
                   f"tolerance ({checks['atol']:.3g} + {checks['rtol']:.3g}*|logit|) on "
                   f"{1 - numbers['within_tolerance']:.1%} of the inputs")
    if numbers["agreement"] < numbers["min_agreement"]:
        out.append(f"agreement: top-1 agrees on {numbers['agreement']:.1%} of the inputs, "
                   f"below the required {numbers['min_agreement']:.1%}")
    accepted = ACCEPTED_EXECUTION.get(checks["precision"], (checks["precision"],))
    if checks["executed"] not in accepted:
        out.append(f"precision: the bundle is {checks['precision']} but the runtime executes "
                   f"{checks['executed']}")
    for what, key in (("model", "model_sha256"), ("metadata.json", "record_sha256")):
        want, got = checks["info"].get(key), checks.get(key)
        if want and got and want != got:
            out.append(f"{what}: differs from the packaged one (sha256 {got[:12]} != "
                       f"{want[:12]}): swapped or edited")
    return out


def verify(golden: dict[str, Any], run: Callable[[np.ndarray], np.ndarray],
           to_input: Callable[[np.ndarray], np.ndarray], *, runtime: str, executed: str,
           precision: str, target: str | None = None, model_sha256: str | None = None,
           record_sha256: str | None = None, batch: int = 32, fixed_batch: int = 0,
           cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    """Run the golden inputs on this device and return the verdict (a JSON-ready dict).

    Args:
        golden: from ``load_golden``.
        run: model input batch -> logits, on this device's runtime.
        to_input: uint8 NHWC pixels -> model input (the device's preprocessing).
        runtime: runtime label, e.g. "ort-cpu".
        executed: the precision the runtime reports executing.
        precision: the bundle's precision (metadata.json).
        target: the quantization target from metadata.json, if any.
        model_sha256, record_sha256: hashes of the bundle's model file and metadata.json.
        batch: inputs per call; ``fixed_batch`` pads the last call for fixed-batch graphs.
        cpuinfo: where the CPU flags are read.
    """
    data, info = golden["data"], golden["info"]
    step = fixed_batch or batch
    rows = []
    for start in range(0, len(data), step):
        chunk = data[start : start + step]
        x = to_input(chunk) if golden["kind"] == "pixels" else chunk
        n = len(x)
        x = pad_batch(x, fixed_batch)
        rows.append(np.asarray(run(x))[:n].reshape(n, -1))
    device = np.concatenate(rows)
    tol = info["tolerances"]
    numbers = compare(golden["logits"], device, tol)
    flags = cpu_flags(cpuinfo)
    machine = platform.machine()
    checks = {**tol, "executed": executed, "precision": precision, "info": info,
              "model_sha256": model_sha256, "record_sha256": record_sha256}
    failures = _failures(numbers, checks)
    labels = golden["labels"]
    known = labels is not None and (labels >= 0).any()
    mask = labels >= 0 if known else None
    return {
        "schema_version": VERDICT_VERSION, "passed": not failures, "failures": failures,
        **numbers, "tolerances": tol,
        "accuracy": float((device.argmax(1) == labels)[mask].mean()) if known else None,
        "host_accuracy": (float((golden["logits"].argmax(1) == labels)[mask].mean())
                          if known else None),
        "precision": precision, "executed_precision": executed, "runtime": runtime,
        "machine": machine, "isa": int8_isa(machine, flags), "target": target,
        "target_warning": target_risk(target, machine, flags) if precision == "int8" else None,
        "golden": {"source": info.get("source"), "host": info.get("host")},
    }


def render(verdict: dict[str, Any]) -> str:
    """The verdict as a few lines of text, the first saying PASS or FAIL."""
    v, t = verdict, verdict["tolerances"]
    lines = [
        f"{'PASS' if v['passed'] else 'FAIL'}: {v['agreement']:.1%} top-1 agreement with the "
        f"packaging host on {v['samples']} golden inputs (need {v['min_agreement']:.1%}), max "
        f"|delta logit| {v['max_abs_dlogit']:.3g} (tolerance {t['atol']:.3g} + "
        f"{t['rtol']:.3g}*|logit|)",
        f"executed precision {v['executed_precision']} (bundle {v['precision']}) on "
        f"{v['runtime']}; CPU {v['machine']} [{' '.join(v['isa']) or 'no int8 flags in cpuinfo'}]"
        + (f"; quantization target {v['target']}" if v["target"] else ""),
    ]
    if v["accuracy"] is not None:
        lines.append(f"top-1 vs labels: {v['accuracy']:.1%} here, {v['host_accuracy']:.1%} on "
                     "the packaging host")
    if v["target_warning"]:
        lines.append(f"warning: {v['target_warning']}")
    lines += [f"failed: {f}" for f in v["failures"]]
    return "\n".join(lines)
