"""The machine a benchmark ran on: CPU model, ISA features, cores, OS and library versions.

Numbers without their run conditions cannot be compared (OpenVINO benchmark_app and
pytest-benchmark both record them), so every bench report carries this block. CPU flags come
from ``/proc/cpuinfo`` on Linux; elsewhere the feature list is empty and says so. Versions are
read from installed package metadata, so nothing heavy is imported. Stdlib only, except that
on a machine with an NVIDIA driver (``nvidia-smi`` or ``/proc/driver/nvidia``) torch, when
installed, is asked for its CUDA build and the device it sees (``gpu_info``).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeres._hw import parse_cpu_flags, read_cpuinfo
from edgeres._resources import usable_cpus

__all__ = ["ISA_FEATURES", "Environment", "busy_fraction", "default_threads", "describe_machine",
           "gpu_info", "parse_nvidia_smi", "physical_cores"]

# x86 features that decide fp32/bf16/int8 speed, and the ARM ones that matter for int8
# (dotprod = "asimddp", i8mm) and fp16 ("asimdhp"), as /proc/cpuinfo spells them.
ISA_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
                "amx_int8", "asimddp", "i8mm", "asimdhp")
PACKAGES = ("numpy", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "nncf",
            "ai-edge-litert", "executorch", "edgeres")
_CPUINFO = Path("/proc/cpuinfo")
_NVIDIA_PROC = Path("/proc/driver/nvidia/version")  # present wherever the NVIDIA driver is loaded
_SMI_QUERY = ("nvidia-smi", "--query-gpu=name,driver_version,memory.total",
              "--format=csv,noheader,nounits")
_SMI_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Environment:
    """Where and with what a benchmark ran.

    Attributes:
        cpu: CPU model name.
        machine: ``platform.machine()`` (x86_64, aarch64, arm64).
        isa: the ``ISA_FEATURES`` this CPU has.
        physical_cores, logical_cores: core counts (physical falls back to logical).
        os: ``platform.platform()``.
        python: interpreter version.
        versions: package → version, None when not installed.
        load_average: 1/5/15-minute load when the run started (None where unsupported).
            It counts this process's own earlier work too, so it is context only.
        busy_others: share (0-1) of all CPUs' time that *other* processes used during a
            short sample taken when the run started (Linux ``/proc/stat`` minus this
            process's own CPU time); above ~0.25 another job shared the machine. None where
            ``/proc/stat`` is unavailable.
        gpu: the NVIDIA GPU (``gpu_info``): name, count, driver, the CUDA version the driver
            supports, memory, and torch's CUDA build, cuDNN and compute capability when torch
            can use it; None on a machine without an NVIDIA driver.
    """

    cpu: str
    machine: str
    isa: tuple[str, ...]
    physical_cores: int
    logical_cores: int
    os: str
    python: str
    versions: dict[str, str | None] = field(default_factory=dict)
    load_average: tuple[float, float, float] | None = None
    busy_others: float | None = None
    gpu: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        d = asdict(self)
        d["isa"] = list(self.isa)
        d["load_average"] = None if self.load_average is None else list(self.load_average)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Environment:
        """Inverse of ``to_dict``."""
        load = d.get("load_average")
        return cls(**{**d, "isa": tuple(d["isa"]),
                      "load_average": None if load is None else tuple(load)})


def _cpuinfo() -> str:
    return read_cpuinfo(_CPUINFO)


def cpu_flags(text: str | None = None) -> set[str]:
    """Every flag the CPU reports (x86 ``flags`` or ARM ``Features`` lines): ``_hw``'s parser."""
    return parse_cpu_flags(_cpuinfo() if text is None else text)


def physical_cores(text: str | None = None) -> int:
    """Physical cores: distinct (package, core id) pairs in /proc/cpuinfo, else logical CPUs.

    Hyper-threads share one core's execution units, so intra-op thread pools default to the
    physical count (ONNX Runtime's own default does the same).
    """
    text = _cpuinfo() if text is None else text
    pairs, package = set(), "0"
    for line in text.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "physical id":
            package = value
        elif key == "core id":
            pairs.add((package, value))
    return len(pairs) or os.cpu_count() or 1


def default_threads(physical: int | None = None) -> int:
    """Threads per runtime when ``--threads`` is not given: physical cores, capped by affinity.

    Args:
        physical: the physical core count (read from /proc/cpuinfo when None).
    """
    cores = physical_cores() if physical is None else physical
    usable = usable_cpus()
    return max(1, min(cores, usable) if usable else cores)


def _cpu_name(text: str) -> str:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def package_version(name: str) -> str | None:
    """Installed version of ``name``, None when absent."""
    if name == "edgeres":
        from edgeres import __version__

        return __version__
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs since boot, from the first line of /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user..steal; guest time is already inside user
    return total - idle, total


def busy_fraction(window: float = 0.25) -> float | None:
    """Share of all CPUs' time other processes used during ``window`` seconds, or None.

    Unlike the load average this excludes this process, so a benchmark that has been running
    for a while does not mistake its own work for another job.
    """
    import time

    start, own0 = _cpu_jiffies(), os.times()
    if start is None:
        return None
    time.sleep(window)
    end, own1 = _cpu_jiffies(), os.times()
    if end is None or end[1] <= start[1]:
        return None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    own = (own1.user + own1.system) - (own0.user + own0.system)
    busy = (end[0] - start[0]) / tick - own
    return round(min(1.0, max(0.0, busy / ((end[1] - start[1]) / tick))), 3)


def parse_nvidia_smi(query: str, summary: str = "") -> dict[str, Any] | None:
    """The GPU facts in ``nvidia-smi``'s CSV query output and its plain summary's header.

    Args:
        query: output of ``nvidia-smi --query-gpu=name,driver_version,memory.total
            --format=csv,noheader,nounits``, one line per GPU.
        summary: output of plain ``nvidia-smi`` (its header says "CUDA Version: 13.0").

    Returns:
        ``{"name", "count", "driver", "cuda_driver", "memory_mib"}`` of the first GPU, or None
        when no GPU is listed.
    """
    gpus = [[c.strip() for c in line.split(",")] for line in query.splitlines() if line.strip()]
    gpus = [g for g in gpus if len(g) >= 2 and g[0]]
    if not gpus:
        return None
    cuda = re.search(r"CUDA Version:\s*([0-9.]+)", summary)
    memory = gpus[0][2] if len(gpus[0]) > 2 else ""
    return {"name": gpus[0][0], "count": len(gpus), "driver": gpus[0][1] or None,
            "cuda_driver": cuda.group(1) if cuda else None,
            "memory_mib": int(float(memory)) if re.fullmatch(r"[0-9.]+", memory) else None}


def _run_smi(*args: str) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=_SMI_TIMEOUT_S,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout if out.returncode == 0 else ""


def _torch_cuda() -> dict[str, Any]:
    """What torch's CUDA build sees; empty when torch is absent or sees no GPU."""
    if importlib.util.find_spec("torch") is None:
        return {}
    import torch

    if not torch.cuda.is_available():
        return {"torch_cuda": torch.version.cuda, "torch_cuda_available": False}
    major, minor = torch.cuda.get_device_capability(0)
    return {"torch_name": torch.cuda.get_device_name(0), "torch_cuda": torch.version.cuda,
            "torch_cuda_available": True, "cudnn": torch.backends.cudnn.version(),
            "capability": f"{major}.{minor}", "torch_count": torch.cuda.device_count()}


def gpu_info() -> dict[str, Any] | None:
    """The NVIDIA GPU here, or None on a machine without an NVIDIA driver.

    ``nvidia-smi`` gives the name, driver and the CUDA version the driver supports (the
    kernel module's version file gives the driver where ``nvidia-smi`` is missing); torch, if
    installed, adds the CUDA version it was built for, cuDNN and the compute capability.
    Without a driver nothing is run and torch is not imported.
    """
    smi = shutil.which("nvidia-smi")
    if smi is None and not _NVIDIA_PROC.is_file():
        return None
    info: dict[str, Any] = {}
    if smi is not None:
        info = parse_nvidia_smi(_run_smi(smi, *_SMI_QUERY[1:]), _run_smi(smi)) or {}
    if not info.get("driver") and _NVIDIA_PROC.is_file():
        found = re.search(r"Kernel Module\s+([0-9.]+)", _NVIDIA_PROC.read_text(errors="replace"))
        info["driver"] = found.group(1) if found else None
    info.update(_torch_cuda())
    if not info.get("name") and not info.get("torch_name"):
        return None
    info.setdefault("name", info.get("torch_name"))
    return info


def describe_machine(*, sample_load: bool = True) -> Environment:
    """Describe this machine and its installed runtimes.

    Args:
        sample_load: measure ``busy_others`` (takes a quarter of a second).
    """
    text = _cpuinfo()
    flags = cpu_flags(text)
    try:
        one, five, fifteen = os.getloadavg()
        load: tuple[float, float, float] | None = (round(one, 2), round(five, 2),
                                                   round(fifteen, 2))
    except (AttributeError, OSError):
        load = None
    return Environment(
        cpu=_cpu_name(text), machine=platform.machine(),
        isa=tuple(f for f in ISA_FEATURES if f in flags),
        physical_cores=physical_cores(text), logical_cores=os.cpu_count() or 1,
        os=platform.platform(), python=sys.version.split()[0],
        versions={p: package_version(p) for p in PACKAGES}, load_average=load,
        busy_others=busy_fraction() if sample_load else None, gpu=gpu_info(),
    )
