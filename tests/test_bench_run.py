"""End-to-end tests of edgeres.bench.run_bench on the shipped cifar_resnet20 and a zoo export."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from edgeres import names, runtime
from edgeres.bench import RUNTIMES, BenchConfig, report, run_bench
from edgeres.bench._runners import unavailable_reason
from edgeres.errors import (
    ExportError,
    MetadataError,
    UnknownModelError,
    UnknownNameError,
)
from edgeres.evaluate import topk_accuracy
from edgeres.preprocess import prepare

CLASSES = ("airplane", "cat", "ship")
FAST: dict[str, Any] = {"iterations": 3, "rounds": 2, "warmup": 1, "memory": False}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny labelled ImageFolder: 4 validation images of each of three classes."""
    root = tmp_path_factory.mktemp("eval")
    for cls in CLASSES:
        (root / cls).mkdir()
        for img in sorted((names.calibration_dir() / "cifar10-val" / cls).glob("*.jpg"))[:4]:
            shutil.copy(img, root / cls / img.name)
    return root


@pytest.fixture(scope="module")
def full_run(folder: Path):
    """Every runtime label, two batch sizes, accuracy on the tiny folder."""
    return run_bench(["cifar10"], BenchConfig(runtimes=RUNTIMES, batches=(1, 2),
                                              eval_data=str(folder), **FAST))


@pytest.fixture(scope="module")
def cpu_run(folder: Path):
    """The two ONNX CPU runtimes, two batch sizes, accuracy on the tiny folder: ``full_run``'s
    rows that the accuracy test reads, without the torch and GPU rows the slow tests need."""
    return run_bench(["cifar10"], BenchConfig(runtimes=("ort-cpu", "openvino-cpu"),
                                              batches=(1, 2), eval_data=str(folder), **FAST))


def _row(run, runtime_label: str, batch: int = 1, mode: str = "model"):
    return next(r for r in run.rows if r.runtime == runtime_label and r.batch == batch
                and r.precision_mode == mode)


@pytest.mark.slow
def test_every_runtime_has_a_row_and_missing_ones_say_why(full_run) -> None:
    """Runtimes absent here (no GPU) are skipped rows with a reason, never dropped."""
    for label in RUNTIMES:
        reason = unavailable_reason(label)
        rows = [r for r in full_run.rows if r.runtime == label]
        assert len(rows) >= 2, label
        if reason:
            assert all(r.status == "skipped" and r.reason == reason for r in rows)
    if unavailable_reason("ort-cuda"):
        assert "CUDAExecutionProvider" in _row(full_run, "ort-cuda").reason
    if unavailable_reason("openvino-gpu"):
        assert "GPU" in _row(full_run, "openvino-gpu").reason


@pytest.mark.slow
def test_ok_rows_carry_all_measurements(full_run) -> None:
    """Measured rows: rounds x iterations samples, threads, executed precision, file size."""
    threads = full_run.environment.physical_cores
    size = names.resolve_model_file("cifar10").stat().st_size
    for batch in (1, 2):
        row = _row(full_run, "ort-cpu", batch)
        assert row.status == "ok" and row.reason is None
        assert row.latency.count == 6 and row.latency.rounds == 2
        assert row.latency.batch == batch and row.threads == threads
        assert row.executed_precision == "fp32" and row.size_bytes == size


@pytest.mark.slow
def test_openvino_default_precision_row(full_run) -> None:
    """OpenVINO runs f32 when pinned; its default row reports what it really executed."""
    if unavailable_reason("openvino-cpu"):
        pytest.skip("openvino not installed")
    pinned, default = _row(full_run, "openvino-cpu"), _row(full_run, "openvino-cpu", mode="fast")
    assert pinned.executed_precision == "fp32"
    assert default.details["inference_precision"] in ("bf16", "f32", "f16")
    if {"amx_bf16", "avx512_bf16"} & set(full_run.environment.isa):
        assert default.executed_precision == "bf16"


def test_accuracy_matches_direct_computation(cpu_run, folder: Path) -> None:
    """top-1/top-5 equal a hand computation with the predictor; agreement is vs ort-cpu fp32."""
    p = runtime.load(names.resolve_model_file("cifar10"))
    images = sorted(folder.rglob("*.jpg"))
    labels = np.array([p.meta.labels.index(i.parent.name) for i in images])
    logits = p.run(prepare(images, p.meta))
    row = _row(cpu_run, "ort-cpu")
    assert row.accuracy.count == len(images) == 12
    assert row.accuracy.top1 == pytest.approx(topk_accuracy(logits, labels, 1))
    assert row.accuracy.top5 == pytest.approx(topk_accuracy(logits, labels, 5))
    assert row.accuracy.agreement == 100.0 and row.accuracy.reference == "fp32/ort-cpu"
    assert _row(cpu_run, "ort-cpu", 2).accuracy == row.accuracy  # per configuration
    ov = _row(cpu_run, "openvino-cpu")
    if ov.status == "ok":
        ovp = runtime.load(names.resolve_model_file("cifar10"), backend="openvino")
        same = ovp.run(prepare(images, p.meta)).argmax(1) == logits.argmax(1)
        assert ov.accuracy.agreement == pytest.approx(100.0 * same.mean())


@pytest.mark.slow
def test_int8_file_agrees_with_the_fp32_file_it_came_from(folder: Path) -> None:
    """An int8 file benchmarked beside its fp32 source gets agreement against that source."""
    run = run_bench(["cifar10-int8", "cifar10"],  # int8 first: the link does not need order
                    BenchConfig(runtimes=("ort-cpu",), batches=(1,), eval_data=str(folder),
                                **FAST))
    int8 = next(r for r in run.rows if r.model == "cifar10-int8")
    fp32 = runtime.load(names.resolve_model_file("cifar10"))
    q = runtime.load(names.resolve_model_file("cifar10-int8"))
    images = sorted(folder.rglob("*.jpg"))
    x = prepare(images, fp32.meta)
    same = q.run(x).argmax(1) == fp32.run(x).argmax(1)
    assert int8.accuracy is not None
    assert int8.accuracy.agreement == pytest.approx(100.0 * same.mean())
    assert int8.accuracy.reference == "cifar10 fp32/ort-cpu"
    alone = run_bench(["cifar10-int8"], BenchConfig(runtimes=("ort-cpu",), batches=(1,),
                                                    eval_data=str(folder), **FAST))
    acc = alone.rows[0].accuracy
    assert acc is not None and acc.agreement is None and acc.top1 is not None


@pytest.mark.slow  # full_run is the costliest fixture here (torch and every runtime label)
def test_run_json_validates(full_run, tmp_path: Path) -> None:
    """A real run's JSON validates against the schema."""
    path = tmp_path / "run.json"
    report.write_json(full_run, path)
    jsonschema.validate(json.loads(path.read_text()), report.schema())


@pytest.mark.slow
def test_memory_per_row_in_subprocess() -> None:
    """Peak RSS of a row's own process exceeds the import-only baseline."""
    run = run_bench(["cifar10"], BenchConfig(runtimes=("ort-cpu",), **{**FAST, "memory": True}))
    mem = run.rows[0].memory
    assert mem is not None and mem.baseline_rss_bytes > 10_000_000
    assert mem.peak_rss_bytes > mem.baseline_rss_bytes
    assert mem.delta_bytes == mem.peak_rss_bytes - mem.baseline_rss_bytes


def test_ctrl_c_returns_partial_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during timing keeps the measured rows, marked partial, and skips the rest."""
    from edgeres.bench import _run

    real = _run.measure

    def interrupting(fns, **kwargs):
        calls = {"n": 0}
        first = next(iter(fns))

        def boom() -> object:
            calls["n"] += 1
            if calls["n"] > 3:
                raise KeyboardInterrupt
            return fns[first]()

        return real({**fns, first: boom}, **kwargs)

    monkeypatch.setattr(_run, "measure", interrupting)
    run = run_bench(["cifar10", "cifar10"], BenchConfig(runtimes=("ort-cpu",), batches=(1, 2),
                                                        **FAST))
    assert run.interrupted
    assert len(run.rows) == 2  # the second model was never started
    measured, unmeasured = run.rows
    assert measured.status == "ok" and measured.partial and measured.latency is not None
    assert measured.latency.count >= 1
    assert unmeasured.status == "skipped" and unmeasured.partial
    jsonschema.validate(report.to_json_dict(run), report.schema())


@pytest.mark.slow
def test_zoo_model_exported_once_with_torch_baseline(tmp_path: Path, folder: Path) -> None:
    """A zoo name is exported into the cache; torch-cpu runs the same weights; int8 row exists."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch not installed")
    # The 12-image folder as calibration data keeps quantization to a few seconds.
    config = BenchConfig(runtimes=("torch-cpu", "ort-cpu"), precisions=("fp32", "int8"),
                         cache=tmp_path, calib=str(folder), **FAST)
    run = run_bench(["cifar_resnet20"], config)
    rows = {(r.precision, r.runtime): r for r in run.rows}
    assert rows[("fp32", "torch-cpu")].status == "ok", rows[("fp32", "torch-cpu")].reason
    assert rows[("fp32", "ort-cpu")].status == "ok"
    assert rows[("int8", "torch-cpu")].status == "skipped"
    int8 = rows[("int8", "ort-cpu")]
    try:
        from edgeres.quantize import quantize  # noqa: F401
    except ImportError:  # quantize not written yet: the row must say so
        assert int8.status == "skipped" and "quantize" in (int8.reason or "")
    else:
        assert int8.status == "ok", int8.reason
        assert int8.executed_precision == "int8"
    (workdir,) = (tmp_path / "bench").iterdir()
    fp32 = workdir / "fp32.onnx"
    assert fp32.is_file() and (workdir / "weights.pt").is_file()
    stamp = fp32.stat().st_mtime_ns
    run_bench(["cifar_resnet20"], BenchConfig(runtimes=("ort-cpu",), cache=tmp_path, **FAST))
    assert fp32.stat().st_mtime_ns == stamp  # reused, not re-exported


def test_openvino_ir_runs_on_openvino_only(tmp_path: Path) -> None:
    """An IR model gets an OpenVINO row; the ONNX Runtime row is skipped with the reason."""
    if unavailable_reason("openvino-cpu"):
        pytest.skip("openvino not installed")
    import openvino as ov

    onnx_path = names.resolve_model_file("cifar10")
    model = ov.Core().read_model(str(onnx_path))
    model.set_rt_info(runtime.load(onnx_path).meta.to_json(), "edgeres")
    xml = tmp_path / "m.xml"
    ov.save_model(model, str(xml))
    run = run_bench([str(xml)], BenchConfig(runtimes=("ort-cpu", "openvino-cpu"),
                                            openvino_default_row=False, **FAST))
    rows = {r.runtime: r for r in run.rows}
    assert rows["ort-cpu"].status == "skipped" and "OpenVINO IR" in (rows["ort-cpu"].reason or "")
    assert rows["openvino-cpu"].status == "ok" and rows["openvino-cpu"].source == "ir"
    assert rows["openvino-cpu"].size_bytes == xml.stat().st_size + xml.with_suffix(
        ".bin").stat().st_size


def test_int8_file_cannot_be_benched_as_fp32(tmp_path: Path) -> None:
    """A precision a file cannot provide is a skipped row naming the fix."""
    run = run_bench(["cifar10"], BenchConfig(runtimes=("ort-cpu",), precisions=("fp16",), **FAST))
    assert run.rows[0].status == "skipped" and "fp16" in (run.rows[0].reason or "")


@pytest.mark.parametrize(("models", "kwargs", "error"), [
    (["resnet19"], {}, UnknownModelError),
    (["cifar10"], {"eval_data": "no-such-data"}, UnknownNameError),
])
def test_bad_names_fail_before_work(models, kwargs, error) -> None:
    """Unknown models or data are one-line errors raised before anything is timed."""
    with pytest.raises(error) as e:
        run_bench(models, BenchConfig(**FAST, **kwargs))
    assert "\n" not in str(e.value)
    if error is UnknownModelError:
        assert "resnet18" in str(e.value)  # suggests the close name


def test_file_without_record_is_refused(tmp_path: Path) -> None:
    """A model file with no metadata record and no stated preprocessing is a MetadataError
    naming the options and `edgeres attach`."""
    import onnx

    proto = onnx.load(str(names.resolve_model_file("cifar10")))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(MetadataError, match="--mean R,G,B.*edgeres attach"):
        run_bench([str(bare)], BenchConfig(**FAST))


@pytest.mark.parametrize("error", [
    ExportError("parity check failed: max abs err 0.5; report a bug"),
    RuntimeError("torch.onnx exporter crashed\nsecond line of the trace"),
], ids=["ExportError", "torch exception"])
def test_failed_zoo_export_fails_rows_not_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  error: Exception) -> None:
    """An export failure for torch-cpu's weights is a failed row with its reason; the run ends."""
    pytest.importorskip("torch")
    from edgeres.bench import _models

    calls = []

    def failing_export(src, *, fp16):
        calls.append(fp16)
        raise error

    monkeypatch.setattr(_models, "export_zoo", failing_export)
    run = run_bench(["tiny_resnet"], BenchConfig(runtimes=("torch-cpu", "ort-cpu"),
                                                 cache=tmp_path, **FAST))
    first_line = str(error).splitlines()[0]
    assert {r.runtime: (r.status, r.reason) for r in run.rows} == {
        "torch-cpu": ("failed", first_line), "ort-cpu": ("failed", first_line)}
    assert calls == [False]  # the failure is remembered, not retried for the ONNX row
    jsonschema.validate(report.to_json_dict(run), report.schema())


@pytest.mark.slow
def test_uint8_input_file_skips_the_torch_row(tmp_path: Path) -> None:
    """A --uint8-input file from registered weights: torch-cpu is skipped with why, ORT runs."""
    pytest.importorskip("torch")
    from edgeres.export import ExportConfig, export_onnx
    from edgeres.models.weights import load_weights
    from edgeres.zoo import zoo_meta

    loaded = load_weights("cifar_resnet20", "cifar10")
    meta = zoo_meta("cifar_resnet20", num_classes=loaded.num_classes,
                    weights_sha256=loaded.sha256)
    path = tmp_path / "u8.onnx"
    export_onnx(loaded.model.eval(), path, meta=meta, config=ExportConfig(uint8_input=True))
    run = run_bench([str(path)], BenchConfig(runtimes=("torch-cpu", "ort-cpu"), **FAST))
    rows = {r.runtime: r for r in run.rows}
    assert rows["torch-cpu"].status == "skipped"
    assert "takes uint8 NHWC normalised in its graph" in (rows["torch-cpu"].reason or "")
    assert "without --uint8-input" in (rows["torch-cpu"].reason or "")
    latency = rows["ort-cpu"].latency
    assert rows["ort-cpu"].status == "ok" and latency is not None and latency.count >= 1
