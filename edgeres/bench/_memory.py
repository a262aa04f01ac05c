"""Peak resident memory per row, each measured in a fresh subprocess so rows cannot mix.

One process per row imports the runtime, loads the model, runs the warm-up and a few
inferences at the row's batch size, and reports its peak resident set size. A baseline process
per backend and input imports the same modules and allocates the same input tensor, but loads
nothing; the row's memory is the difference (``delta_bytes``): what the session, its weights,
its arena and its thread pools cost, without the input the benchmark feeds it. In one
long-lived process the peak only ever grows, so measuring rows in the benchmark process itself
would charge every row with the largest one before it.

The peak is ``VmHWM`` from ``/proc/self/status`` on Linux, not ``ru_maxrss``: Linux carries
the *parent's* high-water mark into ``ru_maxrss`` across fork + exec (``exec_mmap`` keeps the
old mm's hiwater), so every child of a 150 MB benchmark process would report 150 MB. Elsewhere
``ru_maxrss`` is used (bytes on macOS, getrusage(2)); on Windows memory is not reported.

Run as ``python -m edgeres.bench._memory '<job json>'``; prints ``{"maxrss_bytes": N}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from edgeres.bench.results import MemoryUsage

if TYPE_CHECKING:
    from edgeres.runtime import Backend, Device
    from edgeres.vocab import Mode

_PROBE_RUNS = 3  # inferences after warm-up: enough to reach the steady-state arena size
_TIMEOUT_S = 600.0
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])  # so the child imports this edgeres


@dataclass(frozen=True)
class ProbeJob:
    """What one memory probe loads and runs; ``file`` None is the baseline process."""

    backend: str  # "ort", "openvino" or "torch"
    device: str = "cpu"
    file: str | None = None
    mode: str = "model"
    threads: int = 1
    batch: int = 1
    warmup: int = 1
    zoo_name: str | None = None
    input_shape: tuple[int, ...] = ()
    input_dtype: str = "float32"


def _run_probe(job: ProbeJob) -> int:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_SOURCE_ROOT, env.get("PYTHONPATH")) if p)
    env["EDGERES_PROGRESS"] = "0"
    proc = subprocess.run(
        [sys.executable, "-m", "edgeres.bench._memory", json.dumps(asdict(job))],
        capture_output=True, text=True, env=env, timeout=_TIMEOUT_S, check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        err = proc.stderr.strip().splitlines()
        msg = err[-1] if err else f"exit code {proc.returncode}"
        raise RuntimeError(msg)
    return int(json.loads(lines[-1])["maxrss_bytes"])


class MemoryProbe:
    """Measures rows one subprocess each, with one cached baseline per backend and input."""

    def __init__(self) -> None:
        self._baselines: dict[ProbeJob, int] = {}  # baseline job → its peak RSS in bytes

    def measure(self, job: ProbeJob) -> MemoryUsage:
        """Peak RSS of ``job`` and its delta over the backend's baseline.

        Raises:
            RuntimeError: if a probe process fails (its last stderr line is the message).
            subprocess.TimeoutExpired: if it hangs.
        """
        if sys.platform == "win32":
            msg = "peak memory is not measured on Windows (no VmHWM or ru_maxrss)"
            raise RuntimeError(msg)
        key = baseline_job(job)
        if key not in self._baselines:
            self._baselines[key] = _run_probe(key)
        base = self._baselines[key]
        peak = _run_probe(job)
        return MemoryUsage(peak_rss_bytes=peak, baseline_rss_bytes=base, delta_bytes=peak - base)


def baseline_job(job: ProbeJob) -> ProbeJob:
    """The baseline for ``job``: same backend and input tensor, no model."""
    return ProbeJob(backend=job.backend, device=job.device, batch=job.batch,
                    input_shape=job.input_shape, input_dtype=job.input_dtype)


def probe_input(job: ProbeJob) -> Any:
    """The input tensor a probe feeds, built in ``job.input_dtype`` one sample at a time.

    Row and baseline both call this, so the input (and any temporary made while filling it)
    is in both peaks and cancels out of the delta. None when the job has no input shape.
    """
    import numpy as np

    # The generator first: numpy.random's import and state are in every peak, input or not.
    rng = np.random.default_rng(0)
    if not job.input_shape:
        return None
    x = np.empty((job.batch, *job.input_shape), dtype=np.dtype(job.input_dtype))
    for i in range(job.batch):
        if x.dtype.kind in "ui":
            x[i] = rng.integers(0, 256, job.input_shape, dtype=np.uint8)
        else:
            x[i] = rng.standard_normal(job.input_shape, dtype=np.float32)
    return x


def _maxrss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):  # "VmHWM:   123456 kB"
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _child(job: ProbeJob) -> int:
    """Import the backend, then (unless baseline) load and run; return peak RSS in bytes."""
    if job.backend == "torch":
        import torch

        import edgeres.models.weights  # noqa: F401 - the baseline includes the zoo's import
        from edgeres.bench._runners import TorchRunner, load_torch_module

        torch.set_num_threads(job.threads)
    elif job.backend == "ort":
        import onnxruntime  # noqa: F401 - the baseline includes the runtime's import

        from edgeres import runtime
    else:
        import openvino  # noqa: F401

        from edgeres import runtime
    if job.file is None:
        x = probe_input(job)  # kept alive until the peak is read, as in a row's probe
        peak = _maxrss_bytes()
        del x
        return peak
    run: Any
    if job.backend == "torch":
        run = TorchRunner(load_torch_module(str(job.zoo_name), Path(job.file))).run
    else:
        # ProbeJob holds the row's labels as text; load() checks them itself.
        run = runtime.load(job.file, backend=cast("Backend", job.backend),
                           device=cast("Device", job.device), threads=job.threads,
                           mode=cast("Mode", job.mode)).run
    x = probe_input(job)
    for _ in range(job.warmup + _PROBE_RUNS):
        run(x)
    return _maxrss_bytes()


def main(argv: list[str]) -> None:
    """Child entry point: one JSON job in ``argv[0]``, one JSON line out."""
    d = json.loads(argv[0])
    job = ProbeJob(**{**d, "input_shape": tuple(d["input_shape"])})
    print(json.dumps({"maxrss_bytes": _child(job)}))  # noqa: T201 - the parent reads stdout


if __name__ == "__main__":
    main(sys.argv[1:])
