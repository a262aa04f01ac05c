"""What a run may ask of the machine: memory for a batch, threads within the CPUs it may use.

A batch too large for memory is refused with the figure before anything is allocated (the
kernel's OOM killer gives no message at all), and a thread count above the CPUs this process
may run on is capped (more threads than CPUs only adds contention: 1000 ORT threads took 48 s
for one image). Linux's ``/proc/meminfo`` gives the memory; elsewhere the check is skipped.
"""

from __future__ import annotations

import os

from edgeres.errors import ConfigError

# A ResNet's widest activation is ~5x its input per image (the stem: 64x112x112 for a
# 3x224x224 input; 16x32x32 for a 3x32x32 CIFAR one), and a runtime keeps several alive (a
# block's input, its residual, its output, arena slack): ONNX Runtime's peak RSS grew by 18x
# the input bytes per image running the shipped cifar_resnet20 at batch 500 and 2000. 24 keeps
# a margin; every loaded runtime keeps its own arena, so the factor counts once per runtime.
RUNTIME_FACTOR = 24
INPUT_COPIES = 2  # the seeded random batch and its copy in the runtime's input dtype


def available_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping (``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def usable_cpus() -> int | None:
    """Logical CPUs this process may run on (its affinity mask), or None where unknown.

    A container limited by a cpuset (``docker --cpuset-cpus``, ``taskset``) still sees every
    core of the host in /proc/cpuinfo; only the affinity mask says how many it can use.
    """
    getaffinity = getattr(os, "sched_getaffinity", None)  # Linux only
    if getaffinity is None:
        return None
    try:
        return len(getaffinity(0)) or None
    except OSError:
        return None


def estimate_batch_bytes(batch: int, sample_bytes: int, runtimes: int = 1) -> int:
    """Memory to run one batch on ``runtimes`` loaded runtimes: input copies and activations."""
    return batch * sample_bytes * (INPUT_COPIES + RUNTIME_FACTOR * max(1, runtimes))


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def check_memory(need: int, what: str, fix: str) -> None:
    """Raise unless ``need`` bytes fit in the memory available now.

    Args:
        need: the estimate, in bytes.
        what: what needs it, for the message ("--batch 100000 of 3x32x32 inputs").
        fix: how to ask for less ("choose a smaller --batch").

    Raises:
        ConfigError: naming the estimate and the memory available.
    """
    free = available_memory()
    if free is None or need <= free:
        return
    msg = f"{what} needs about {_gb(need)} of memory but {_gb(free)} is available; {fix}"
    raise ConfigError(msg)


# Bytes per element of a declared input that edgeres itself builds before a runtime sees it:
# the float64 working copy of preprocessing and the float32 batch (a lower bound: refusing on
# it is never wrong).
DECLARED_BYTES = 8 + 4


def check_declared_input(shape: tuple[object, ...], what: str) -> None:
    """Raise unless one batch of a declared input shape fits in memory, before anything of
    that shape is allocated (a graph with a fixed 60000x60000 input or a batch of 10**9).

    Args:
        shape: the declared shape; axes that are not positive integers count as 1.
        what: whose input, for the message ("the graph of m.onnx").

    Raises:
        ConfigError: naming the shape, the estimate and the memory available.
    """
    dims = [d if isinstance(d, int) and not isinstance(d, bool) and d > 0 else 1 for d in shape]
    need = DECLARED_BYTES
    for d in dims:
        need *= d
    shown = "x".join(str(d) for d in shape)
    check_memory(need, f"{what}, which declares an input of {shown},",
                 "give the graph a dynamic batch axis and the image size it was trained on")


def cap_threads(threads: int | None) -> tuple[int | None, str | None]:
    """``threads`` capped at the usable CPUs, and a note when it was capped."""
    cpus = usable_cpus() or os.cpu_count() or 1
    if threads is None or threads <= cpus:
        return threads, None
    return cpus, (f"--threads {threads} is more than the {cpus} CPUs this process may use; "
                  f"using {cpus}")
