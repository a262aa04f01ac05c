"""Tests for edgeres.bench.env and edgeres.bench.config: machine facts and option parsing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeres._resources import usable_cpus
from edgeres.bench.config import (
    RUNTIMES,
    BenchConfig,
    cache_dir,
    parse_batches,
    parse_precisions,
    parse_runtimes,
)
from edgeres.bench.env import (
    Environment,
    busy_fraction,
    cpu_flags,
    default_threads,
    describe_machine,
    physical_cores,
)
from edgeres.errors import ConfigError

_CPUINFO = """processor\t: 0
physical id\t: 0
core id\t\t: 0
model name\t: Test CPU
flags\t\t: fpu avx2 avx512f avx512_vnni amx_int8

processor\t: 1
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu avx2 avx512f avx512_vnni amx_int8

processor\t: 2
physical id\t: 0
core id\t\t: 1
flags\t\t: fpu avx2 avx512f avx512_vnni amx_int8
"""


def test_cpuinfo_parsing() -> None:
    """Flags come from the flags lines; hyper-threads of one core count once."""
    assert {"avx2", "avx512_vnni", "amx_int8"} <= cpu_flags(_CPUINFO)
    assert physical_cores(_CPUINFO) == 2
    assert cpu_flags("Features\t: fp asimd asimddp i8mm\n") >= {"asimddp", "i8mm"}


def test_describe_machine_has_every_field() -> None:
    """The environment block names CPU, cores, OS, Python and the runtime versions."""
    env = describe_machine()
    assert env.physical_cores >= 1 and env.logical_cores >= env.physical_cores
    assert {"numpy", "torch", "onnxruntime", "openvino", "nncf", "edgeres"} <= set(env.versions)
    assert env.versions["numpy"] and env.versions["edgeres"]
    assert Environment.from_dict(env.to_dict()) == env


def test_parse_lists() -> None:
    """Comma lists become typed tuples; duplicates collapse; all = every runtime."""
    assert parse_runtimes("ort-cpu, openvino-cpu,ort-cpu") == ("ort-cpu", "openvino-cpu")
    assert parse_runtimes("all") == RUNTIMES
    assert parse_runtimes(None) is None
    assert parse_precisions("fp32,int8") == ("fp32", "int8")
    assert parse_batches("1,8") == (1, 8)


@pytest.mark.parametrize(("parser", "text"), [
    (parse_runtimes, "ort-gpu"), (parse_runtimes, ""), (parse_precisions, "int4"),
    (parse_batches, "1,x"), (parse_batches, "0"), (parse_batches, ""), (parse_batches, "-1"),
])
def test_parse_errors_are_one_line(parser, text: str) -> None:
    """Bad lists raise ConfigError with a single-line message naming the valid values."""
    with pytest.raises(ConfigError) as e:
        parser(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kwargs", [
    {"threads": 0}, {"rounds": 0}, {"warmup": -1}, {"iterations": 0}, {"duration": 0.0},
    {"iterations": 5, "duration": 1.0}, {"limit": 5}, {"batches": ()}, {"runtimes": ("x",)},
    {"duration": float("inf")}, {"duration": float("nan")}, {"duration": -1.0},
])
def test_config_validation(kwargs: dict) -> None:
    """Invalid settings fail when the config is built."""
    with pytest.raises(ConfigError):
        BenchConfig(**kwargs)


def test_config_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Duration is the default timing; the cache honours $EDGERES_CACHE."""
    assert BenchConfig().timed_duration == 2.0
    assert BenchConfig(iterations=3).timed_duration is None
    monkeypatch.setenv("EDGERES_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path and BenchConfig().cache_root == tmp_path



def test_busy_fraction_sees_another_process() -> None:
    """A process spinning on one CPU shows up as CPU used by others; values stay in 0..1."""
    if not Path("/proc/stat").exists():
        pytest.skip("needs /proc/stat")
    quiet = busy_fraction(0.05)
    assert quiet is not None and 0.0 <= quiet <= 1.0
    spin = subprocess.Popen([sys.executable, "-c",
                             "import time\nt = time.time()\nwhile time.time() - t < 3: pass"])
    try:
        time.sleep(0.3)  # let it start spinning
        busy = busy_fraction(0.5)
    finally:
        spin.kill()
        spin.wait()
    assert busy is not None and busy >= 0.8 / (os.cpu_count() or 1)


def test_unknown_precision_is_refused_naming_the_valid_ones() -> None:
    """bf16 is requestable (torch-cuda casts to it); int4 is not, and the message lists all."""
    with pytest.raises(ConfigError, match=r"choose from fp32, fp16, bf16, int8"):
        BenchConfig(precisions=("fp32", "int4"))
    assert BenchConfig(precisions=("fp32", "bf16")).precisions == ("fp32", "bf16")
    assert parse_precisions("bf16,fp16") == ("bf16", "fp16")


def test_non_finite_duration_message_says_how_to_fix() -> None:
    """--duration inf is refused with a one-line message asking for finite seconds."""
    with pytest.raises(ConfigError, match=r"--duration inf is invalid; give a positive, finite"):
        BenchConfig(duration=float("inf"))


@pytest.mark.parametrize(("physical", "affinity", "expected"), [
    (8, {0, 1}, 2),             # a cpuset of 2 CPUs on an 8-core host: 2 threads, not 8
    (2, set(range(16)), 2),     # hyper-threads in the mask do not raise the physical count
    (4, None, 4),               # no sched_getaffinity (macOS, Windows): physical cores
])
def test_default_threads_respect_cpu_affinity(monkeypatch: pytest.MonkeyPatch, physical: int,
                                              affinity: set[int] | None, expected: int) -> None:
    """The default thread count is physical cores capped by the CPUs this process may use."""
    if affinity is None:
        monkeypatch.delattr(os, "sched_getaffinity", raising=False)
        assert usable_cpus() is None
    else:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: affinity, raising=False)
        assert usable_cpus() == len(affinity)
    assert default_threads(physical) == expected


def test_run_bench_threads_default_within_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_bench without --threads uses the affinity cap for every row and the settings."""
    from edgeres.bench import run_bench

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    run = run_bench(["cifar10"], BenchConfig(runtimes=("ort-cpu",), iterations=2, rounds=1,
                                             warmup=0, memory=False))
    assert run.settings.threads == 1
    assert [r.threads for r in run.rows] == [1]
    assert run.rows[0].status == "ok" and run.rows[0].details["threads"] == 1  # what ORT got
