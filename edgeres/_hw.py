"""Hardware and runtime rules, one copy: CPU families, cpuinfo flags, what a runtime executes.

Which ``platform.machine()`` names are x86 or ARM, the int8 dot-product flags (VNNI), how
``/proc/cpuinfo`` is read, the quantization target a CPU is, that ONNX Runtime's x86 CPU
provider runs fp16 graphs in fp32, which ``INFERENCE_PRECISION_HINT`` keeps a record's
precision on OpenVINO, and which provider or device a runtime label needs. ``edgeres.runtime``,
``bench``, ``quantize.config`` and ``golden`` import these; a bundle carries this
file unchanged in its device package (``edgeres.device``), so a device decides with the same
functions (CONTRIBUTING R4). Stdlib only, and no edgeres import: keep it that way.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

CPUINFO = "/proc/cpuinfo"
# platform.machine() of x86 and ARM CPUs (lower case).
X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")
ARM_MACHINES = ("aarch64", "arm64", "armv8l", "armv7l")
# cpuinfo flags of the int8 dot-product instructions that make U8 x S8 products exact (no
# saturation of the 16-bit intermediate that VPMADDUBSW has on plain AVX2/AVX-512).
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# Flags that decide which int8 kernels run: x86 VNNI/AMX and AVX2/AVX-512, ARM dotprod/i8mm.
X86_INT8_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
ARM_INT8_FLAGS = ("asimd", "asimddp", "i8mm", "sve")
# ONNX Runtime's execution providers per device, best first (the CPU one always last).
ORT_PROVIDERS: dict[str, list[str]] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
# ov.Type names of an inference precision -> edgeres' precision names.
OV_TYPE_NAMES = {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}
# OpenVINO hint that keeps a record's precision: int8 IRs keep their quantized layers in int8
# whatever the hint, and their float remainder in f32 (as ONNX Runtime runs it).
OV_MODEL_HINT = {"fp32": "f32", "int8": "f32", "bf16": "bf16", "fp16": "f16"}
# The OPTIMIZATION_CAPABILITIES entry a CPU needs for each 16-bit hint.
_OV_CAPABILITY = {"bf16": "BF16", "f16": "FP16"}


def is_x86(machine: str) -> bool:
    """Whether ``platform.machine()`` names an x86 CPU."""
    return machine.lower() in X86_MACHINES


def is_arm(machine: str) -> bool:
    """Whether ``platform.machine()`` names an ARM CPU (``arm*`` or ``aarch64``)."""
    machine = machine.lower()
    return machine in ARM_MACHINES or machine.startswith(("arm", "aarch64"))


def read_cpuinfo(cpuinfo: str | Path = CPUINFO) -> str:
    """The text of ``/proc/cpuinfo`` (or ``cpuinfo``); empty where it cannot be read."""
    try:
        return Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return ""


def parse_cpu_flags(text: str) -> set[str]:
    """Every flag in a cpuinfo text (x86 ``flags`` or ARM ``Features`` lines)."""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def cpu_flags(cpuinfo: str | Path = CPUINFO) -> set[str]:
    """Every flag the CPU reports (read from ``cpuinfo``); empty if unknown."""
    return parse_cpu_flags(read_cpuinfo(cpuinfo))


def has_vnni(flags: Collection[str]) -> bool:
    """Whether ``flags`` include an exact int8 dot product (VNNI or AMX-INT8)."""
    return bool(VNNI_FLAGS & set(flags))


def host_target(machine: str, flags: Collection[str]) -> str:
    """The quantization target a CPU is: ``arm``, ``x86-vnni`` (VNNI/AMX flags) or ``x86``."""
    if is_arm(machine):
        return "arm"
    return "x86-vnni" if has_vnni(flags) else "x86"


def int8_isa(machine: str, flags: Collection[str]) -> list[str]:
    """The int8-relevant flags of this architecture among ``flags``.

    Only flags of ``machine``'s own architecture count: under qemu-user emulation
    /proc/cpuinfo describes the host (x86 flags on an aarch64 process), which says nothing
    about the emulated CPU.
    """
    known = ARM_INT8_FLAGS if is_arm(machine) else X86_INT8_FLAGS if is_x86(machine) else ()
    return [f for f in known if f in flags]


def ort_executed(device: str, mode: str, stored: str, machine: str) -> str | None:
    """What ONNX Runtime really computes in, when it differs from ``stored`` (None: as stored).

    Args:
        device: "cpu", "cuda" or "tensorrt".
        mode: "model" (the record's precision) or "fast" (the runtime may lower it).
        stored: the precision the file stores (its record's; "fp32" without one).
        machine: ``platform.machine()``.
    """
    if device == "tensorrt" and mode == "fast" and stored == "fp32":
        return "fp16"  # TensorRT's fp16 mode lowers fp32 layers only
    # The CPU EP has no float16 Conv/Gemm/MatMul kernels on x86: it wraps them in Casts and
    # runs fp32 kernels (onnxruntime 1.32 on an AVX2 x86-64 CPU: every Conv, Gemm and MatMul
    # of an fp16 graph's optimized_model_filepath dump takes float inputs). Other CPUs (arm64
    # MLAS has some fp16 kernels) are not checked, so there the record's precision is reported.
    if device == "cpu" and stored == "fp16" and is_x86(machine):
        return "fp32"
    return None


def ov_precision_hint(precision: str, capabilities: Collection[str]) -> str:
    """The ``INFERENCE_PRECISION_HINT`` that runs a ``precision`` model as stored.

    On AMX CPUs OpenVINO would otherwise run fp32 layers in bf16. A device whose
    ``OPTIMIZATION_CAPABILITIES`` lack the record's 16-bit type runs it in f32 (asked for f16,
    OpenVINO would pick bf16 where it has that instead).
    """
    hint = OV_MODEL_HINT.get(precision, "f32")
    if hint != "f32" and _OV_CAPABILITY[hint] not in capabilities:
        return "f32"
    return hint


def ov_precision_name(type_name: str) -> str:
    """An OpenVINO inference precision ("f32", "bf16", ...) in edgeres' names ("fp32", ...)."""
    return OV_TYPE_NAMES.get(type_name, type_name)


def int8_execution(float_type: str) -> str:
    """What an int8 model executes when its float layers run in ``float_type`` ("f32", ...).

    OpenVINO reports int8 models as int8 whatever precision their float parts run in; on ARM
    it may lower those to f16 unasked. "int8+fp16" then fails the verdict.
    """
    name = ov_precision_name(float_type)
    return "int8" if name == "fp32" else f"int8+{name}"


def ov_has_device(device: str, available: Collection[str]) -> bool:
    """Whether OpenVINO's ``available_devices`` include ``device`` ("gpu" matches GPU.0)."""
    wanted = device.upper()
    return any(d == wanted or d.startswith(f"{wanted}.") for d in available)
