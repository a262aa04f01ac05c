"""Golden checks: does this device compute what the packaging host computed? One copy of the rules.

A bundle's ``golden.npz`` holds N inputs, the logits the packaging host got for them from the
bundled model, their labels when known, and the tolerances. ``verify`` runs the inputs through
a device's runtime and returns a verdict: top-1 agreement, max |delta logit|, the precision the
runtime reports executing, the CPU's int8-relevant ISA flags and whether the model's quantization
``--target`` suits this CPU. ``edgeres verify`` and a bundle's ``infer.py --verify`` both call
this module: a bundle carries it as a file of its device package (``edgeres.device``), so it
imports nothing but the stdlib, numpy, ``edgeres._hw`` (the CPU rules),
``edgeres._resources`` (the memory check) and ``preprocess.pad_batch``, all carried too. The
target-risk rule lives here, and ``bench._notes`` uses it, so a device states it exactly as
edgeres.

Inputs are stored as model-sized uint8 pixels (after resize and centre crop) whenever the data
are images: 4x smaller than float32 input (196 kB for 64 CIFAR images) and the device runs its
own normalisation, channel order and layout from ``metadata.json``, so a wrong preprocessing
record fails too. Decoding and resizing are not replayed (source images differ in size).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import zipfile
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
from edgeres._resources import check_memory
from edgeres.preprocess import pad_batch

log = logging.getLogger(__name__)

GOLDEN_FILE = "golden.npz"
GOLDEN_VERSION = 1
VERDICT_VERSION = 1
# Precisions a runtime may report for a bundle's precision without changing its numbers
# beyond the tolerances: fp16 files run fp32 kernels between Casts on ONNX Runtime's x86 CPU
# provider (_hw.ort_executed). Anything else (int8 or fp32 executing as fp16/bf16) fails.
ACCEPTED_EXECUTION = {"fp32": ("fp32",), "fp16": ("fp16", "fp32"), "bf16": ("bf16", "fp32"),
                      "int8": ("int8",)}


# A tolerance looser than this share of the output's scale (``output_scale``) checks nothing
# the device could get wrong: the golden file was edited, or its kernels disagreed too much to
# make one. rtol above MAX_RTOL likewise (int8 uses 0.02, fp32 0.001).
MAX_ATOL_SHARE = 0.25
MAX_RTOL = 0.1
# The chance a model that ignores its input may have of meeting the required top-1 agreement.
RANDOM_PASS = 1e-3


def rows_are_probabilities(outputs: np.ndarray) -> bool:
    """Whether every row is non-negative and sums to 1 (within 1e-3): probabilities."""
    z = np.asarray(outputs, np.float64)
    return bool(z.size) and bool((z >= -1e-6).all()) and bool(
        (np.abs(z.sum(axis=1) - 1.0) <= 1e-3).all())


def output_scale(outputs: np.ndarray, probabilities: bool | None) -> float:
    """The scale a model's outputs live on, which tolerances are shares of.

    Probabilities are compared as probabilities: their scale is 1. Logits (or other scores)
    are compared relative to their spread: the median over rows of (best - worst score), so a
    model whose logits span 0.2 and one whose span 40 get tolerances of the same meaning.

    Args:
        outputs: one row of scores per input.
        probabilities: whether the rows are probabilities (the record's ``output``); None
            decides from the rows (``rows_are_probabilities``).
    """
    z = np.asarray(outputs, np.float64)
    z = z.reshape(len(z), -1)
    if probabilities is None:
        probabilities = rows_are_probabilities(z)
    if probabilities:
        return 1.0
    finite = z[np.isfinite(z).all(axis=1)]
    if not len(finite):
        return 1.0
    spread = float(np.median(finite.max(axis=1) - finite.min(axis=1)))
    return spread if spread > 0 else 1.0


def required_agreement(classes: int, samples: int, chance: float = RANDOM_PASS) -> float:
    """The top-1 agreement a model that ignores its input meets with probability <= ``chance``.

    Such a model agrees with the packaging host on each golden input with probability
    ``1/classes``, independently, so its number of agreements on ``samples`` inputs is
    Binomial(samples, 1/classes). The bound is k/samples for the smallest k with
    P[Binomial >= k] <= ``chance`` (1.0 when even k = samples is likelier: too few inputs to
    tell). E.g. 2 classes, 64 inputs: 70.3%; 10 classes, 64 inputs: 25.0%. A golden file may
    require more (its own measured share of inputs without near-ties), never less.

    Args:
        classes: outputs per row (at least 1).
        samples: golden inputs.
        chance: the largest chance a random model may have of passing.
    """
    n, p = max(int(samples), 1), 1.0 / max(int(classes), 1)
    if p >= 1.0:
        return 1.0

    def log_pmf(k: int) -> float:
        return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                + k * math.log(p) + (n - k) * math.log1p(-p))

    tail = 0.0
    for k in range(n, -1, -1):  # add P[X = k] from the top until the tail exceeds chance
        tail += math.exp(log_pmf(k))
        if tail > chance:
            return min(1.0, (k + 1) / n)
    return 0.0


def target_fails(target: str | None, machine: str, flags: set[str] | frozenset[str]) -> bool:
    """Whether running a model quantized for ``target`` here gives wrong answers, not only slow
    ones: 'x86-vnni' (full 8-bit weights) on an x86 CPU without VNNI, whose 16-bit
    VPMADDUBSW sums saturate (85.6% instead of 89.0% top-1 seen on an AVX2-only CPU)."""
    return (str(target or "").lower() == "x86-vnni" and is_x86(machine.lower())
            and bool(int8_isa(machine, flags)) and not has_vnni(flags))


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


def _declared_sizes(path: str | Path) -> dict[str, tuple[tuple[int, ...], int]]:
    """Each array's (shape, bytes) as its .npy header declares it, read without loading it.

    Raises:
        ValueError: a header that is not .npy, or declares more bytes than its member holds
            (a header bomb: numpy would allocate the declared size before reading).
    """
    out = {}
    with zipfile.ZipFile(path) as z:
        for item in z.infolist():
            with z.open(item) as f:
                major, _ = np.lib.format.read_magic(f)
                read = (np.lib.format.read_array_header_1_0 if major == 1
                        else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read(f)
                header = f.tell()
            size = math.prod(int(d) for d in shape) * dtype.itemsize
            if size > item.file_size - header:
                msg = (f"{path}: array {item.filename!r} declares shape {tuple(shape)} "
                       f"({size:.3g} bytes) but holds {item.file_size - header} bytes")
                raise ValueError(msg)
            out[item.filename.removesuffix(".npy")] = (tuple(shape), size)
    return out


def load_golden(path: str | Path) -> dict[str, Any]:
    """Read a golden file (no pickles); ``ValueError`` when it is not one.

    Declared sizes are checked before anything is allocated: against what the file holds
    and against the memory available (``_resources.check_memory``, a ``ConfigError``).
    """
    sizes = _declared_sizes(path)
    check_memory(sum(b for _, b in sizes.values()),
                 f"golden file {path} ({', '.join(f'{k} {s}' for k, (s, _) in sizes.items())})"
                 [:300], "pass a golden file made by edgeres package")
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


def compare(host: np.ndarray, device: np.ndarray, tol: dict[str, float],
            probabilities: bool | None = None) -> dict[str, Any]:
    """Numbers of the logits check: agreement, max |delta|, share within tolerance, and the
    output scale (of the device's outputs, not the file's) and random-model agreement bound
    the golden file's own tolerances are checked against."""
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
            "finite": bool(np.isfinite(device).all()), "classes": int(host.shape[1]),
            "scale": output_scale(device, probabilities),
            "random_agreement": required_agreement(host.shape[1], len(host))}


def _golden_rules(numbers: dict[str, Any], tol: dict[str, Any], scale: float) -> list[str]:
    """What makes a golden file's own tolerances unfit to check anything (edited, or made by a
    release that set them too loose): checked here, not trusted from the file."""
    out = []
    atol, rtol = float(tol["atol"]), float(tol["rtol"])
    if not atol <= MAX_ATOL_SHARE * scale or not 0 <= rtol <= MAX_RTOL:
        out.append(f"golden file: its tolerance ({atol:.3g} + {rtol:.3g}*|output|) is looser "
                   f"than {MAX_ATOL_SHARE:.0%} of the output's scale here ({scale:.3g}) + "
                   f"{MAX_RTOL:g}*|output|, so it checks nothing; re-package the bundle")
    need = numbers["random_agreement"]
    if not numbers["min_agreement"] >= need:
        out.append(f"golden file: it requires only {numbers['min_agreement']:.1%} top-1 "
                   f"agreement, which a model ignoring its input meets (need at least "
                   f"{need:.1%} for {numbers['classes']} classes on {numbers['samples']} inputs); "
                   "re-package the bundle")
    return out


def _failures(numbers: dict[str, Any], checks: dict[str, Any]) -> list[str]:
    out = _golden_rules(numbers, checks, numbers["scale"])
    if not numbers["finite"]:
        out.append("logits: the device produced NaN or infinite logits")
    if numbers["within_tolerance"] < 1.0:
        out.append(f"logits: max |delta logit| {numbers['max_abs_dlogit']:.4g} exceeds the "
                   f"tolerance ({checks['atol']:.3g} + {checks['rtol']:.3g}*|logit|) on "
                   f"{1 - numbers['within_tolerance']:.1%} of the inputs")
    if numbers["agreement"] < numbers["min_agreement"]:
        out.append(f"agreement: top-1 agrees on {numbers['agreement']:.1%} of the inputs, "
                   f"below the required {numbers['min_agreement']:.1%}")
    if checks.get("target_fails"):
        out.append(f"target: {checks['target_fails']}")
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
           cpuinfo: str | Path = "/proc/cpuinfo",
           probabilities: bool | None = None) -> dict[str, Any]:
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
        probabilities: whether the outputs are probabilities (the record's ``output``; None:
            decided from the rows), for the scale the tolerances are checked against.

    A quantization target this CPU runs wrongly (``target_fails``) is logged as a warning
    before anything runs, and fails the verdict.
    """
    data, info = golden["data"], golden["info"]
    flags = cpu_flags(cpuinfo)
    machine = platform.machine()
    wrong = target_fails(target, machine, flags) and precision == "int8"
    risk = target_risk(target, machine, flags) if precision == "int8" else None
    if risk:
        log.warning("%s", risk)
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
    numbers = compare(golden["logits"], device, tol, probabilities)
    checks = {**tol, "executed": executed, "precision": precision, "info": info,
              "model_sha256": model_sha256, "record_sha256": record_sha256,
              "target_fails": (f"quantized for {target!r} but this CPU has no VNNI: its int8 "
                               "results differ from the packaging host's; re-quantize for 'x86'"
                               if wrong else None)}
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
        "target_warning": risk,
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
