"""The memory probe: rows and baselines hold the same input, so the delta is the session's."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edgeres.bench import _memory
from edgeres.bench._memory import MemoryProbe, ProbeJob, probe_input


def _row(**changes) -> ProbeJob:
    job = dict(backend="ort", file="model.onnx", threads=2, batch=4, input_shape=(3, 32, 32),
               input_dtype="float32", warmup=3)
    return ProbeJob(**{**job, **changes})


def _record(seen: list[ProbeJob], job: ProbeJob) -> int:
    """A fake probe: remembers the job; 100 MB for a baseline, 250 for a model."""
    seen.append(job)
    return 100 if job.file is None else 250


def test_baseline_allocates_the_rows_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """The baseline job has the row's batch, shape and dtype, no model; one per distinct input."""
    seen: list[ProbeJob] = []
    monkeypatch.setattr(_memory, "_run_probe",
                        lambda job: _record(seen, job))
    probe = MemoryProbe()
    mem = probe.measure(_row())
    base = seen[0]
    assert base.file is None and base.zoo_name is None
    assert (base.backend, base.batch, base.input_shape, base.input_dtype) == (
        "ort", 4, (3, 32, 32), "float32")
    assert (mem.peak_rss_bytes, mem.baseline_rss_bytes, mem.delta_bytes) == (250, 100, 150)
    probe.measure(_row(mode="fast", threads=1))  # same input: the cached baseline
    probe.measure(_row(batch=8))  # another input size: its own baseline
    assert [j.file is None for j in seen] == [True, False, False, True, False]
    assert seen[3].batch == 8


def test_probe_input_is_built_in_the_row_dtype() -> None:
    """Inputs are float32 (never a float64 temporary of the whole batch) or uint8 pixels."""
    x = probe_input(_row())
    assert x.shape == (4, 3, 32, 32) and x.dtype == np.float32
    assert 0.9 < float(x.std()) < 1.1
    u = probe_input(_row(input_shape=(32, 32, 3), input_dtype="uint8"))
    assert u.dtype == np.uint8 and u.shape == (4, 32, 32, 3) and int(u.max()) > 200
    assert probe_input(_row(input_shape=())) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux-only")
def test_baseline_peak_grows_by_the_input_size_only() -> None:
    """A baseline with a 32 MiB float32 input peaks ~32 MiB above one without (not 3x for fp64)."""
    pytest.importorskip("onnxruntime")
    nbytes = 8 * 1024 * 1024 * 4
    bare = _memory._run_probe(ProbeJob(backend="ort"))
    with_input = _memory._run_probe(ProbeJob(backend="ort", batch=8, input_shape=(1024, 1024)))
    assert 0.9 * nbytes < with_input - bare < 1.3 * nbytes
