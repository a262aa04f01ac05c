"""The GPU rows without a GPU: the options edgeres passes, synchronisation and I/O binding.

Kernels cannot run here, so these tests check what edgeres *asks* of the runtimes (provider
options, dtypes, layouts, the order of synchronise/forward calls, one binding per row) through
fakes of the CUDA-only pieces, and that on this machine the torch-cuda rows are skipped with
the reason and the environment carries no GPU.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgeres import names
from edgeres.bench import BenchConfig, _gpu, _runners, env, report, run_bench
from edgeres.bench._models import resolve_model
from edgeres.bench.env import Environment, describe_machine, parse_nvidia_smi
from edgeres.bench.results import BenchRow, BenchRun
from edgeres.bench.stats import LatencyStats
from edgeres.errors import EdgeresError
from edgeres.runtime.backends import BackendOptions
from edgeres.runtimes.ort import OrtBackend, ort_providers

FAST: dict[str, Any] = {"iterations": 2, "rounds": 1, "warmup": 1, "memory": False}
NO_GPU = (not torch.cuda.is_available() and shutil.which("nvidia-smi") is None
          and not Path("/proc/driver/nvidia/version").exists())
CPU = ("CPUExecutionProvider", {})
CUDA = ("CUDAExecutionProvider", {"device_id": 0, "cudnn_conv_algo_search": "EXHAUSTIVE"})


# --- ONNX Runtime provider options -------------------------------------------------------------


def test_cuda_provider_options() -> None:
    """CUDA EP: device 0 and the cuDNN search asked for, then CPU for unsupported nodes."""
    assert ort_providers(BackendOptions(device="cuda"), "fp16") == [CUDA, CPU]
    heuristic = ort_providers(BackendOptions(device="cuda", cudnn_conv_algo_search="HEURISTIC"))
    assert heuristic[0][1]["cudnn_conv_algo_search"] == "HEURISTIC"
    assert ort_providers(BackendOptions(device="cpu"), "int8") == [CPU]
    with pytest.raises(EdgeresError, match="EXHAUSTIVE, HEURISTIC, DEFAULT"):
        BackendOptions(device="cuda", cudnn_conv_algo_search="exhaustive")


@pytest.mark.parametrize(("stored", "mode", "fp16", "int8"), [
    ("fp32", "model", False, False),
    ("fp32", "fast", True, False),   # TensorRT's fp16 mode of an fp32 file
    ("fp16", "model", True, False),  # an fp16 file needs the flag to run fp16 kernels
    ("int8", "model", False, True),  # QDQ: explicit quantization, no calibration table
    ("int8", "fast", True, True),
])
def test_tensorrt_flags_follow_the_file_and_mode(tmp_path: Path, stored: str, mode: str,
                                                 fp16: bool, int8: bool) -> None:
    """TensorRT EP: fp16/int8 flags from the stored precision and mode; engine cache when set."""
    providers = ort_providers(BackendOptions(device="tensorrt", mode=mode,  # type: ignore[arg-type]
                                             engine_cache=tmp_path / "eng"), stored)
    name, opts = providers[0]
    assert name == "TensorrtExecutionProvider" and providers[1:] == [CUDA, CPU]
    assert opts == {"device_id": 0, "trt_fp16_enable": fp16, "trt_int8_enable": int8,
                    "trt_engine_cache_enable": True, "trt_engine_cache_path": str(tmp_path / "eng")}
    uncached = ort_providers(BackendOptions(device="tensorrt", mode=mode), stored)[0][1]  # type: ignore[arg-type]
    assert "trt_engine_cache_enable" not in uncached and "trt_engine_cache_path" not in uncached


def test_engine_cache_directory_per_file_and_flags(tmp_path: Path) -> None:
    """One engine directory per model file and flag set, under the bench cache."""
    f32, i8 = tmp_path / "fp32.onnx", tmp_path / "int8-x.onnx"
    dirs = {_gpu.engine_dir(tmp_path, f32, "fp32", False),
            _gpu.engine_dir(tmp_path, f32, "fp32", True),
            _gpu.engine_dir(tmp_path, i8, "int8", False)}
    assert dirs == {tmp_path / "tensorrt" / "fp32-fp32", tmp_path / "tensorrt" / "fp32-fp16",
                    tmp_path / "tensorrt" / "int8-x-int8"}


class FakeGpuSession:
    """An InferenceSession that claims the GPU providers asked for and computes on the CPU."""

    calls: list[Any] = []  # the providers argument of every session made
    log: list[str] = []

    def __init__(self, path: str, so: Any = None, providers: Any = None) -> None:
        FakeGpuSession.calls.append(providers)
        self._real = _REAL_SESSION(path, so, providers=["CPUExecutionProvider"])
        self._providers = [p if isinstance(p, str) else p[0] for p in providers]

    def get_providers(self) -> list[str]:
        return self._providers

    def io_binding(self) -> FakeBinding:
        FakeGpuSession.log.append("io_binding")
        return FakeBinding(FakeGpuSession.log)

    def run_with_iobinding(self, binding: FakeBinding, run_options: Any = None) -> None:
        FakeGpuSession.log.append("run_with_iobinding")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class FakeBinding:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def bind_ortvalue_input(self, name: str, value: Any) -> None:
        self.log.append(f"bind_input {name} {value.device}")

    def bind_output(self, name: str, device: str = "cpu", device_id: int = 0) -> None:
        self.log.append(f"bind_output {name} {device}:{device_id}")

    def synchronize_outputs(self) -> None:
        self.log.append("synchronize_outputs")


class FakeOrtValue:
    """Stands in for ``onnxruntime.OrtValue``: records where the input was copied."""

    def __init__(self, array: np.ndarray, device: str, device_id: int) -> None:
        self.array, self.device = array, f"{device}:{device_id}"

    @classmethod
    def ortvalue_from_numpy(cls, array: np.ndarray, device: str = "cpu",
                            device_id: int = 0) -> FakeOrtValue:
        FakeGpuSession.log.append(f"copy {array.shape} to {device}:{device_id}")
        return cls(array, device, device_id)


_REAL_SESSION = ort.InferenceSession


@pytest.fixture
def fake_gpu_ort(monkeypatch: pytest.MonkeyPatch):
    """onnxruntime that lists the CUDA and TensorRT EPs and hands out FakeGpuSessions."""
    providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: providers)
    monkeypatch.setattr(ort, "InferenceSession", FakeGpuSession)
    monkeypatch.setattr(ort, "OrtValue", FakeOrtValue)
    FakeGpuSession.calls, FakeGpuSession.log = [], []
    _runners.unavailable_reason.cache_clear()
    yield FakeGpuSession
    _runners.unavailable_reason.cache_clear()


def test_ort_backend_reads_the_record_and_passes_trt_options(fake_gpu_ort, tmp_path: Path) -> None:
    """An int8 file on TensorRT: trt_int8_enable from its record, engine cache dir created."""
    path = names.resolve_model_file("cifar10-int8")
    cache = tmp_path / "engines"
    backend = OrtBackend(path, BackendOptions(device="tensorrt", engine_cache=cache))
    trt = ("TensorrtExecutionProvider", {"device_id": 0, "trt_fp16_enable": False,
                                         "trt_int8_enable": True, "trt_engine_cache_enable": True,
                                         "trt_engine_cache_path": str(cache)})
    assert fake_gpu_ort.calls[-1] == [trt, CUDA, CPU]
    assert cache.is_dir()
    assert backend.details["provider_options"] == {trt[0]: trt[1], CUDA[0]: CUDA[1]}
    assert backend.executed_precision is None and backend.meta.precision == "int8"


def test_ort_gpu_target_binds_io_once_and_syncs_every_call(fake_gpu_ort, tmp_path: Path) -> None:
    """ort-cuda: input copied and bound once per row; each timed call runs then synchronises."""
    src = resolve_model("cifar10", tmp_path)
    target = _runners.load_config(src, "fp32", "ort-cuda", "model", threads=1, calib="cifar10")
    assert target.details["provider_options"] == {CUDA[0]: CUDA[1]}
    assert target.executed_precision == "fp32" and target.details["load_ms"] >= 0
    x = np.zeros((4, 3, 32, 32), np.float32)
    call = target.bind(x)
    assert fake_gpu_ort.log == ["io_binding", "copy (4, 3, 32, 32) to cuda:0",
                                "bind_input input cuda:0", "bind_output logits cuda:0"]
    fake_gpu_ort.log.clear()
    for _ in range(3):
        call()
    assert fake_gpu_ort.log == ["run_with_iobinding", "synchronize_outputs"] * 3
    host = _runners.load_config(src, "fp32", "ort-cuda", "host-io", threads=1, calib="cifar10")
    fake_gpu_ort.log.clear()
    assert host.bind(x)().shape == (4, 10)  # plain run(): numpy in, numpy out, copies timed
    assert fake_gpu_ort.log == []


def test_tensorrt_target_uses_the_engine_cache_under_the_bench_cache(fake_gpu_ort,
                                                                     tmp_path: Path) -> None:
    """ort-tensorrt fp32 in 'fast' mode: the fp16 flag, engines under <cache>/bench/.../tensorrt."""
    src = resolve_model("cifar10", tmp_path)
    target = _runners.load_config(src, "fp32", "ort-tensorrt", "fast", threads=1,
                                  calib="cifar10")
    opts = target.details["provider_options"]["TensorrtExecutionProvider"]
    assert opts["trt_fp16_enable"] is True and opts["trt_int8_enable"] is False
    engine = Path(opts["trt_engine_cache_path"])
    assert engine == src.workdir / "tensorrt" / f"{target.file.stem}-fp16" and engine.is_dir()
    assert engine.is_relative_to(tmp_path) and target.executed_precision == "fp16"


def test_fake_gpu_bench_reports_io_first_call_and_skips_memory(fake_gpu_ort,
                                                               tmp_path: Path) -> None:
    """A whole run on a (fake) CUDA EP: device and host-io rows, first call kept out of latency."""
    run = run_bench(["cifar10"], BenchConfig(runtimes=("ort-cuda",), batches=(1, 2),
                                             cache=tmp_path, iterations=2, rounds=1, warmup=1,
                                             memory=True))
    rows = {(r.io, r.batch): r for r in run.rows}
    assert set(rows) == {("device", 1), ("device", 2), ("host", 1), ("host", 2)}
    assert {r.label for r in run.rows} == {"fp32/ort-cuda", "fp32/ort-cuda (host io)"}
    for row in run.rows:
        assert row.status == "ok" and row.memory is None and row.latency.count == 2
        assert row.first_call_ms is not None and math.isfinite(row.first_call_ms)  # was timed
    assert any(n.kind == "memory" and "GPU rows" in n.text for n in run.notes)
    jsonschema.validate(json.loads(json.dumps(report.to_json_dict(run))), report.schema())


# --- torch-cuda ----------------------------------------------------------------------------------


class _Logged(torch.nn.Module):
    """A small conv net that logs each forward pass and the identity of its input."""

    def __init__(self, log: list[Any]) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.log = log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(("forward", id(x)))
        return self.net(x)


def test_torch_cuda_call_synchronizes_around_each_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each timed call: synchronize, forward on the tensor bound once, synchronize."""
    log: list[Any] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: log.append("sync"))
    runner = _gpu.TorchCudaRunner(_Logged(log).eval(), "bf16", device="cpu")
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8), dtype=np.float32)
    call = runner.bind(x)
    assert log == []  # binding copies, it does not run
    for _ in range(3):
        call()
    tensor_id = id(call.tensor)
    assert log == ["sync", ("forward", tensor_id), "sync"] * 3


def test_torch_cuda_casts_weights_and_inputs_channels_last() -> None:
    """bf16 weights and input, channels_last; run() returns float32 logits near fp32's."""
    module = _Logged([]).eval()
    with torch.no_grad():
        x = np.random.default_rng(1).standard_normal((2, 3, 8, 8), dtype=np.float32)
        want = module(torch.from_numpy(x)).numpy()
    runner = _gpu.TorchCudaRunner(module, "bf16", device="cpu")
    conv = runner.module.net[0]
    assert conv.weight.dtype == torch.bfloat16
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    tensor = runner.bind(x).tensor
    assert tensor.dtype == torch.bfloat16
    assert tensor.is_contiguous(memory_format=torch.channels_last)
    got = runner.run(x)
    assert got.dtype == np.float32 and np.allclose(got, want, atol=0.05, rtol=0.05)


@pytest.mark.parametrize(("precision", "capability", "executed"), [
    ("fp32", (9, 0), "tf32"), ("fp32", (7, 5), "fp32"), ("fp16", (9, 0), "fp16"),
    ("bf16", (9, 0), "bf16"),
])
def test_torch_cuda_details(monkeypatch: pytest.MonkeyPatch, precision: str,
                            capability: tuple[int, int], executed: str) -> None:
    """fp32 on Ampere+ runs TF32 convolutions by PyTorch's default, and the row says so."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H200")
    monkeypatch.setattr(_gpu, "_tf32_convs", lambda t: True)
    runner = _gpu.TorchCudaRunner(_Logged([]).eval(), precision, device="cpu")
    got, details = _gpu.torch_cuda_details(runner, precision, compiled=False)
    assert got == executed
    assert details["gpu"] == "NVIDIA H200" and details["capability"] == "{}.{}".format(*capability)
    assert details["dtype"] == _gpu.TORCH_DTYPES[precision]
    assert details["memory_format"] == "channels_last" and details["compile"] is None


def test_variants_and_row_fields() -> None:
    """Which extra rows each runtime gets, and the precision_mode/io/label they carry."""
    kw = {"openvino_default_row": True, "torch_compile": True, "host_io": True}
    assert _gpu.variants("fp32", "ort-tensorrt", **kw) == ["model", "fast", "host-io"]
    assert _gpu.variants("fp16", "ort-cuda", **kw) == ["model", "host-io"]
    assert _gpu.variants("bf16", "torch-cuda", **kw) == ["model", "compile"]
    assert _gpu.variants("int8", "torch-cuda", **kw) == ["model"]
    assert _gpu.variants("fp32", "ort-cuda", **kw, available=False) == ["model"]
    assert _gpu.variants("fp32", "ort-cpu", **kw) == ["model"]
    cases = {("ort-cuda", "host-io"): ("model", "host", "fp32/ort-cuda (host io)"),
             ("ort-cuda", "model"): ("model", "device", "fp32/ort-cuda"),
             ("ort-tensorrt", "fast"): ("fast", "device", "fp32/ort-tensorrt (fp16 flag)"),
             ("torch-cuda", "compile"): ("compile", "device", "fp32/torch-cuda (compile)"),
             ("openvino-gpu", "model"): ("model", "host", "fp32/openvino-gpu"),
             ("openvino-cpu", "fast"): ("fast", None, "fp32/openvino-cpu (default)"),
             ("ort-cpu", "model"): ("model", None, "fp32/ort-cpu")}
    for (runtime, mode), (precision_mode, io, label) in cases.items():
        fields = _gpu.row_variant(runtime, mode)
        assert fields == {"precision_mode": precision_mode, "io": io}
        row = BenchRow(model="m", source="file", runtime=runtime, precision="fp32", batch=1,
                       threads=1, **fields)
        assert row.label == label


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_torch_cuda_rows_are_skipped_here_with_the_reason(tmp_path: Path) -> None:
    """No CUDA: torch-cuda rows skipped (one per precision, no compile rows), ort-cpu measured."""
    run = run_bench(["cifar10"], BenchConfig(runtimes=("torch-cuda", "ort-cpu"),
                                             precisions=("fp32", "bf16"), torch_compile=True,
                                             cache=tmp_path, **FAST))
    cuda = [r for r in run.rows if r.runtime == "torch-cuda"]
    assert [(r.precision, r.precision_mode) for r in cuda] == [("fp32", "model"), ("bf16", "model")]
    for row in cuda:
        assert row.status == "skipped" and row.io == "device"
        assert row.reason.startswith("torch.cuda.is_available() is False")
        assert ("CPU-only build" in (row.reason or "")) == (torch.version.cuda is None)
    ort_rows = {r.precision: r for r in run.rows if r.runtime == "ort-cpu"}
    assert ort_rows["fp32"].status == "ok" and ort_rows["fp32"].io is None
    assert ort_rows["fp32"].first_call_ms is not None  # the first call is timed apart
    assert ort_rows["bf16"].status == "skipped"
    assert "torch-cuda only" in (ort_rows["bf16"].reason or "")


# --- the environment -----------------------------------------------------------------------------

_SMI_QUERY = "NVIDIA H200, 580.65.06, 143771\n"
_SMI_SUMMARY = ("| NVIDIA-SMI 580.65.06   Driver Version: 580.65.06   CUDA Version: 13.0     |\n")


def test_parse_nvidia_smi() -> None:
    """Name, count, driver, the driver's CUDA version and memory from nvidia-smi's output."""
    assert parse_nvidia_smi(_SMI_QUERY * 2, _SMI_SUMMARY) == {
        "name": "NVIDIA H200", "count": 2, "driver": "580.65.06", "cuda_driver": "13.0",
        "memory_mib": 143771}
    assert parse_nvidia_smi("", _SMI_SUMMARY) is None
    assert parse_nvidia_smi("Tesla T4, 535.1, [N/A]\n")["memory_mib"] is None


def test_gpu_info_combines_nvidia_smi_and_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a driver: nvidia-smi facts plus torch's CUDA build; the report prints one GPU line."""
    monkeypatch.setattr(env.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(env, "_run_smi", lambda *a: _SMI_QUERY if len(a) > 1 else _SMI_SUMMARY)
    monkeypatch.setattr(env, "_torch_cuda", lambda: {"torch_cuda": "13.0", "cudnn": 91002,
                                                     "capability": "9.0"})
    info = env.gpu_info()
    assert info["name"] == "NVIDIA H200" and info["torch_cuda"] == "13.0"
    assert info["capability"] == "9.0" and info["cuda_driver"] == "13.0"
    machine = Environment(cpu="c", machine="x86_64", isa=(), physical_cores=16,
                          logical_cores=16, os="Linux", python="3.12", gpu=info)
    run = BenchRun(rows=(), environment=machine, settings={"threads": 16, "rounds": 1,
                                                           "warmup": 1, "iterations": 1})
    line = next(x for x in report.environment_lines(run) if x.startswith("GPU:"))
    assert line == ("GPU: NVIDIA H200, 140 GiB; driver 580.65.06, driver CUDA 13.0, torch CUDA "
                    "13.0, cuDNN 91002, compute capability 9.0")
    assert Environment.from_dict(machine.to_dict()) == machine


@pytest.mark.skipif(not NO_GPU, reason="this machine has an NVIDIA driver or CUDA")
def test_environment_has_no_gpu_here() -> None:
    """Without a driver the environment's gpu is None and no GPU line is printed."""
    machine = describe_machine(sample_load=False)
    assert machine.gpu is None and machine.to_dict()["gpu"] is None
    run = BenchRun(rows=(), environment=machine, settings={"threads": 1, "rounds": 1,
                                                           "warmup": 1, "iterations": 1})
    assert not any(x.startswith("GPU:") for x in report.environment_lines(run))


def test_schema_takes_gpu_rows_and_environment() -> None:
    """A torch-cuda bf16 compile row with io and first_call_ms, and a GPU block, validate."""
    lat = LatencyStats.from_samples([0.001, 0.0012], rounds=[0, 0], batch=8)
    row = BenchRow(model="cifar10", source="file", runtime="torch-cuda", precision="bf16",
                   batch=8, threads=16, executed_precision="bf16", latency=lat,
                   first_call_ms=812.5, **_gpu.row_variant("torch-cuda", "compile"))
    machine = Environment(cpu="c", machine="x86_64", isa=(), physical_cores=16,
                          logical_cores=16, os="Linux", python="3.12",
                          versions={k: None for k in ("numpy", "torch", "onnxruntime",
                                                      "openvino", "nncf", "edgeres")},
                          gpu={"name": "NVIDIA H200", "count": 1})
    run = BenchRun(rows=(row,), environment=machine, settings={
        "runtimes": ["torch-cuda"], "batches": [8], "threads": 16, "warmup": 1, "rounds": 1,
        "iterations": 2, "duration": None})
    data = json.loads(json.dumps(report.to_json_dict(run)))
    jsonschema.validate(data, report.schema())
    assert data["rows"][0]["io"] == "device" and data["rows"][0]["first_call_ms"] == 812.5
    assert BenchRow.from_dict(data["rows"][0]) == row
