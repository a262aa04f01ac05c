"""`edgeres quantize` measured: accuracy, speed and calibration memory → benchmarks/results/.

accuracy  On a CIFAR-10 model (default: the shipped reference; pass ``--model`` to re-run on
          another), top-1 on all 10,000 test images of fp32, edgeres's default int8 on both
          backends (and each ORT calibration method), plain ONNX Runtime ``quantize_static``
          with its own defaults (S8/S8 per-tensor, no pre-processing) and plain
          ``nncf.quantize``, all calibrated on the same train images. → quantize_accuracy.*
speed     ResNet-50 (random weights, 224x224), batch 1, 2 threads: median of per-round medians
          over interleaved rounds, for ORT fp32/int8 variants and OpenVINO fp32 (f32 hint and
          runtime default) vs the int8 IR, plus how many convolutions OpenVINO runs in int8
          when given edgeres's QDQ ONNX. → quantize_speed.*
memory    Peak resident memory (VmHWM: ru_maxrss inherits the parent's peak across exec) of
          quantizing ResNet-50 on 500 calibration images, each run in its own process:
          edgeres (streaming) per method vs plain ``quantize_static``; ORT's histogram
          calibrator keeps every activation, so it is measured at few images and extrapolated
          linearly (labelled as such). → quantize_memory.*

Usage:
    python benchmarks/bench_quantize.py accuracy [--model PATH] [--samples 300]
    python benchmarks/bench_quantize.py speed [--rounds 7]
    python benchmarks/bench_quantize.py memory [--images 500]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import numpy as np  # noqa: E402

from edgeres import runtime  # noqa: E402
from edgeres._fs import atomic_write  # noqa: E402
from edgeres.bench.env import describe_machine  # noqa: E402
from edgeres.bench.timing import measure  # noqa: E402
from edgeres.calibration import CalibrationSet, ort_reader  # noqa: E402
from edgeres.data import open_data  # noqa: E402
from edgeres.evaluate import evaluate  # noqa: E402
from edgeres.modelfile import model_record  # noqa: E402
from edgeres.quantize import QuantConfig, quantize  # noqa: E402
from edgeres.quantize._ranges import quiet  # noqa: E402

SCHEMA_VERSION = 1
RESULTS = ROOT / "benchmarks" / "results"


def _write(name: str, payload: dict[str, Any], markdown: str) -> None:
    payload = {"schema_version": SCHEMA_VERSION, "machine": describe_machine().to_dict(),
               **payload}
    with atomic_write(RESULTS / f"{name}.json") as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
    with atomic_write(RESULTS / f"{name}.md") as tmp:
        tmp.write_text(markdown)
    print(markdown)


def _plain_ort(src: Path, dst: Path, calib: CalibrationSet, **options: Any) -> None:
    """ONNX Runtime's ``quantize_static`` as its docs show it: raw model, its defaults."""
    from onnxruntime.quantization import quantize_static

    with quiet():
        quantize_static(str(src), str(dst), ort_reader(calib), **options)


def _plain_nncf(src: Path, dst: Path, calib: CalibrationSet) -> None:
    """``nncf.quantize`` with its defaults on the ONNX model read by OpenVINO."""
    import nncf
    import openvino as ov

    from edgeres.calibration import nncf_dataset

    with quiet():
        model = nncf.quantize(ov.Core().read_model(str(src)), nncf_dataset(calib),
                              subset_size=calib.stats.count)
    ov.save_model(model, str(dst), compress_to_fp16=False)


# --- accuracy ------------------------------------------------------------------------------------


def bench_accuracy(model: Path, samples: int) -> None:
    """Top-1 on cifar10-test of fp32 and each int8 variant; checks the targets."""
    meta = model_record(model)
    source = CalibrationSet.from_data("cifar10", meta)
    calib = source.select(samples, seed=0)  # the same images for every variant
    test = open_data("cifar10-test")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        fp32 = evaluate(runtime.load(model).run, test, meta, description="fp32")
        rows.append({"variant": "fp32 (ORT)", "file": model, "top1": fp32.top1,
                     "eval_seconds": time.perf_counter() - t0})
        variants = _accuracy_variants(model, source, calib, samples, work)
        for name, path, extra in variants:
            p = runtime.load(path, meta=meta.evolve(precision="int8"))
            t0 = time.perf_counter()
            r = evaluate(p.run, test, meta, description=name)
            rows.append({"variant": name, "file": path, "top1": r.top1,
                         "drop": fp32.top1 - r.top1, "agreement": fp32.agreement(r),
                         "eval_seconds": time.perf_counter() - t0, **extra})
    for row in rows:
        row["file"] = Path(row["file"]).name
    by = {r["variant"]: r for r in rows}
    checks = {
        "edgeres_ort_within_0.5_of_fp32": by["edgeres ort (default)"]["drop"] <= 0.5,
        "edgeres_openvino_within_0.5_of_fp32": by["edgeres openvino (default)"]["drop"] <= 0.5,
        "edgeres_ort_at_most_0.2_below_plain_ort": (
            by["plain ORT quantize_static (defaults)"]["top1"]
            - by["edgeres ort (default)"]["top1"] <= 0.2),
    }
    env = describe_machine()
    isa = ", ".join(env.isa) or "none of the listed ISA features"
    payload = {"model": str(model), "machine": f"{env.cpu} ({isa})",
               "test_images": fp32.count, "calibration_images": samples,
               "calibration_sha256": calib.stats.sha256, "rows": rows, "checks": checks}
    _write("quantize_accuracy", payload, _accuracy_md(payload))


def _accuracy_variants(model: Path, source: CalibrationSet, calib: CalibrationSet,
                       samples: int, work: Path) -> list[tuple[str, Path, dict]]:
    out = []
    base = {"samples": samples, "layer_report_samples": 0}
    for backend, method in (("ort", None), ("ort", "entropy"), ("ort", "percentile"),
                            ("openvino", None)):
        name = f"edgeres {backend} ({method or 'default'})"
        dst = work / f"{backend}-{method}.{'onnx' if backend == 'ort' else 'xml'}"
        t0 = time.perf_counter()
        r = quantize(model, dst, source, backend=backend,  # type: ignore[arg-type]
                     config=QuantConfig(method=method, **base))  # type: ignore[arg-type]
        out.append((name, dst, {"seconds": time.perf_counter() - t0, "method": r.method,
                                "activation_type": r.details["activation_type"]}))
    t0 = time.perf_counter()
    _plain_ort(model, work / "plain-ort.onnx", calib)
    out.append(("plain ORT quantize_static (defaults)", work / "plain-ort.onnx",
                {"seconds": time.perf_counter() - t0, "method": "minmax",
                 "activation_type": "int8"}))
    t0 = time.perf_counter()
    _plain_nncf(model, work / "plain-nncf.xml", calib.select(None, batch_size=1))
    out.append(("plain nncf.quantize (defaults)", work / "plain-nncf.xml",
                {"seconds": time.perf_counter() - t0, "method": "nncf-default"}))
    return out


def _accuracy_md(p: dict[str, Any]) -> str:
    lines = [f"# Quantization accuracy: {Path(p['model']).name}", "",
             f"Top-1 on all {p['test_images']} CIFAR-10 test images; every int8 variant "
             f"calibrated on the same {p['calibration_images']} train images "
             f"(`cifar10`, seed 0). Machine: {p.get('machine', 'unknown')}. "
             "eval s: wall time of the 10,000-image evaluation, batch 100 (JPEG decoding "
             "and preprocessing, the same for every row, included): the int8 models' speed "
             "next to their accuracy.", "",
             "| variant | top-1 % | drop (points) | agreement with fp32 % | quantize s | eval s |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in p["rows"]:
        drop = "" if "drop" not in r else f"{r['drop']:+.2f}"
        agree = "" if "agreement" not in r else f"{r['agreement']:.2f}"
        secs = "" if "seconds" not in r else f"{r['seconds']:.1f}"
        ev = "" if "eval_seconds" not in r else f"{r['eval_seconds']:.1f}"
        lines.append(f"| {r['variant']} | {r['top1']:.2f} | {drop} | {agree} | {secs} | {ev} |")
    lines += ["", "Checks: " + ", ".join(f"{k}: {'pass' if v else 'FAIL'}"
                                          for k, v in p["checks"].items()), ""]
    return "\n".join(lines)


# --- speed ---------------------------------------------------------------------------------------


def _resnet50(work: Path) -> tuple[Path, Any]:
    import torch

    from edgeres.export import export_onnx
    from edgeres.models import create_model
    from edgeres.zoo import zoo_meta

    torch.manual_seed(0)
    path = work / "resnet50.onnx"
    export_onnx(create_model("resnet50"), path, meta=zoo_meta("resnet50"))
    return path, model_record(path)


def bench_speed(rounds: int, runs: int, threads: int) -> None:
    """Interleaved batch-1 latency of fp32 and int8 ResNet-50 on ORT and OpenVINO."""
    from onnxruntime.quantization import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src, meta = _resnet50(work)
        source = CalibrationSet.from_data("cifar10", meta)
        config = QuantConfig(samples=32, layer_report_samples=0)
        ort_report = quantize(src, work / "edgeres.onnx", source, config=config)
        quantize(src, work / "edgeres.xml", source, backend="openvino", config=config)
        calib = source.select(32, seed=0)
        _plain_ort(src, work / "plain.onnx", calib)
        with quiet():
            quant_pre_process(str(src), str(work / "pre.onnx"))
        _plain_ort(work / "pre.onnx", work / "plain-pre.onnx", calib)
        int8 = meta.evolve(precision="int8")
        loads = {
            "ort fp32": (src, "ort", "model", meta),
            "ort int8 edgeres (U8/S8 per-channel, pre-processed)": (
                work / "edgeres.onnx", "ort", "model", None),
            "ort int8 plain quantize_static defaults": (work / "plain.onnx", "ort", "model", int8),
            "ort int8 plain defaults after quant_pre_process": (
                work / "plain-pre.onnx", "ort", "model", int8),
            "openvino fp32 (INFERENCE_PRECISION_HINT=f32)": (src, "openvino", "model", meta),
            "openvino fp32 (runtime default)": (src, "openvino", "fast", meta),
            "openvino int8 IR edgeres (NNCF)": (work / "edgeres.xml", "openvino", "model", None),
            "openvino on edgeres QDQ ONNX": (work / "edgeres.onnx", "openvino", "model", None),
        }
        preds = {k: runtime.load(p, backend=b, mode=md, meta=m, threads=threads)
                 for k, (p, b, md, m) in loads.items()}
        x = next(iter(calib))[meta.input.name][:1]
        times = _interleaved(preds, x, rounds, runs)
        qdq_int8 = _ov_int8_convs(work / "edgeres.onnx", threads)
    rows = [{"config": k, "p50_ms": 1e3 * statistics.median(v), "round_medians_ms":
             [1e3 * t for t in v], "executed_precision": preds[k].executed_precision}
            for k, v in times.items()]
    _speed_report(rows, rounds, runs, threads, qdq_int8, ort_report.target)


def _interleaved(preds: dict[str, Any], x: np.ndarray, rounds: int,
                 runs: int) -> dict[str, list[float]]:
    """Median seconds per round for each predictor, visiting them round-robin."""
    timings = measure({k: functools.partial(p.run, x) for k, p in preds.items()},
                      warmup=5, rounds=rounds, iterations=runs)
    return {k: timings.round_medians(k) for k in preds}


def _ov_int8_convs(path: Path, threads: int) -> dict[str, int]:
    """Convolutions OpenVINO's CPU plugin runs in int8 when compiling a QDQ ONNX model."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads})
    counts = {"int8": 0, "other": 0}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if str(info["layerType"].astype(str)) != "Convolution":
            continue
        precision = str(info["runtimePrecision"].astype(str)).lower()
        counts["int8" if precision in ("i8", "u8") else "other"] += 1
    return counts


def _speed_report(rows: list[dict[str, Any]], rounds: int, runs: int, threads: int,
                  qdq: dict[str, int], target: str) -> None:
    p50 = {r["config"]: r["p50_ms"] for r in rows}
    ort32, ov32 = p50["ort fp32"], p50["openvino fp32 (INFERENCE_PRECISION_HINT=f32)"]
    ratios = {
        "ort_int8_edgeres_speedup": ort32 / p50[
            "ort int8 edgeres (U8/S8 per-channel, pre-processed)"],
        "ort_int8_plain_defaults_speedup": ort32 / p50["ort int8 plain quantize_static defaults"],
        "ort_int8_plain_pre_processed_speedup": ort32 / p50[
            "ort int8 plain defaults after quant_pre_process"],
        "openvino_int8_vs_f32_speedup": ov32 / p50["openvino int8 IR edgeres (NNCF)"],
        "openvino_int8_vs_default_speedup": p50["openvino fp32 (runtime default)"] / p50[
            "openvino int8 IR edgeres (NNCF)"],
        "openvino_on_qdq_vs_f32_speedup": ov32 / p50["openvino on edgeres QDQ ONNX"],
    }
    checks = {"ort_int8_at_least_2.5x": ratios["ort_int8_edgeres_speedup"] >= 2.5,
              "openvino_int8_at_least_6x_f32": ratios["openvino_int8_vs_f32_speedup"] >= 6.0,
              "openvino_int8_faster_than_default": ratios["openvino_int8_vs_default_speedup"] > 1}
    payload = {"model": "resnet50 (random weights, 224x224)", "batch": 1, "threads": threads,
               "rounds": rounds, "runs_per_round": runs, "target": target, "rows": rows,
               "ratios": ratios, "openvino_convolutions_on_qdq_onnx": qdq, "checks": checks}
    lines = ["# Quantized ResNet-50 speed", "",
             f"Batch 1, {threads} threads, p50 = median of {rounds} interleaved rounds "
             f"(each the median of {runs} runs); int8 target `{target}`.", "",
             "| config | p50 ms | executes |", "|---|---:|---|"]
    lines += [f"| {r['config']} | {r['p50_ms']:.2f} | {r['executed_precision']} |" for r in rows]
    lines += ["", *[f"- {k}: {v:.2f}x" for k, v in ratios.items()],
              f"- OpenVINO on the QDQ ONNX runs {qdq['int8']} convolutions in int8, "
              f"{qdq['other']} otherwise", "",
              "Checks: " + ", ".join(f"{k}: {'pass' if v else 'FAIL'}" for k, v in checks.items()),
              ""]
    _write("quantize_speed", payload, "\n".join(lines))


# --- memory --------------------------------------------------------------------------------------


def _peak_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _memory_child(job: dict[str, Any]) -> None:
    """One measurement, in its own process; prints {"peak_bytes", "seconds"}."""
    from onnxruntime.quantization import CalibrationMethod

    src, work = Path(job["src"]), Path(job["work"])
    meta = model_record(src)
    source = CalibrationSet.from_data("cifar10", meta)
    t0 = time.perf_counter()
    if job["tool"] == "edgeres":
        quantize(src, work / f"e-{job['method']}.onnx", source,
                 config=QuantConfig(method=job["method"], samples=job["images"]))
    elif job["tool"] == "plain":
        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[job["method"]]
        calib = source.select(job["images"], seed=0, batch_size=1)
        _plain_ort(src, work / f"p-{job['method']}.onnx", calib, calibrate_method=method)
    else:  # baseline: imports and the model's record only
        pass
    print(json.dumps({"peak_bytes": _peak_bytes(), "seconds": time.perf_counter() - t0}))


def _measure(job: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "EDGERES_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, __file__, "_child", json.dumps(job)], env=env,
                          capture_output=True, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {**job, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    result = {**job, **json.loads(lines[-1])}
    print(f"{job['tool']:9s} {job['method']:10s} {job['images']:4d} images: "
          f"{result['peak_bytes'] / 2**30:.2f} GiB, {result['seconds']:.0f} s", flush=True)
    return result


def bench_memory(images: int, plain_images: list[int]) -> None:
    """Peak RSS of edgeres vs plain ORT calibration of ResNet-50, one process each."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src, _ = _resnet50(work)
        base = {"src": str(src), "work": str(work)}
        rows = [_measure({**base, "tool": "baseline", "method": "-", "images": 0})]
        for method in ("minmax", "entropy", "percentile"):
            rows.append(_measure({**base, "tool": "edgeres", "method": method, "images": images}))
        # The same at a tenth of the images: a streaming peak does not grow with the count.
        rows.append(_measure({**base, "tool": "edgeres", "method": "entropy",
                              "images": max(1, images // 10)}))
        rows.append(_measure({**base, "tool": "plain", "method": "minmax", "images": images}))
        for n in plain_images:
            rows.append(_measure({**base, "tool": "plain", "method": "entropy", "images": n}))
    fit = [(r["images"], r["peak_bytes"]) for r in rows
           if r["tool"] == "plain" and r["method"] == "entropy" and "peak_bytes" in r]
    slope, intercept = np.polyfit(*zip(*fit, strict=True), 1) if len(fit) >= 2 else (0.0, 0.0)
    extrapolated = {"tool": "plain", "method": "entropy", "images": images,
                    "peak_bytes": float(intercept + slope * images), "extrapolated": True,
                    "from_images": [n for n, _ in fit], "bytes_per_image": float(slope)}
    payload = {"model": "resnet50 (random weights, 224x224)", "calibration": "cifar10",
               "rows": rows, "plain_entropy_at_full_size": extrapolated}
    _write("quantize_memory", payload, _memory_md(payload, images))


def _memory_md(p: dict[str, Any], images: int) -> str:
    lines = ["# Quantization peak memory: ResNet-50", "",
             "Peak resident set (VmHWM) of one process per row: import, calibrate, quantize, "
             "write (edgeres rows include its per-layer report). Calibration images: "
             "`cifar10` train images resized to 224.", "",
             "| tool | method | images | peak GiB | seconds |", "|---|---|---:|---:|---:|"]
    for r in p["rows"]:
        peak = "error: " + r["error"] if "error" in r else f"{r['peak_bytes'] / 2**30:.2f}"
        secs = f"{r['seconds']:.0f}" if "seconds" in r else ""
        lines.append(f"| {r['tool']} | {r['method']} | {r['images']} | {peak} | {secs} |")
    x = p["plain_entropy_at_full_size"]
    lines += ["", f"Plain ORT entropy at {images} images, **extrapolated** linearly from "
              f"{x['from_images']} images ({x['bytes_per_image'] / 2**20:.0f} MiB per image): "
              f"**{x['peak_bytes'] / 2**30:.1f} GiB**.", ""]
    return "\n".join(lines)


def main() -> None:
    """Parse arguments and run one part."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["accuracy", "speed", "memory", "_child"])
    parser.add_argument("job", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help="CIFAR-10 .onnx [default: the shipped one]")
    parser.add_argument("--samples", type=int, default=300, help="Calibration images (<=500).")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=20, help="Runs per config per round.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--plain-images", default="8,16,32",
                        help="Image counts for plain ORT entropy (extrapolated to --images).")
    args = parser.parse_args()
    if args.part == "_child":
        _memory_child(json.loads(args.job))
    elif args.part == "accuracy":
        from edgeres.names import resolve_model_file

        bench_accuracy(args.model or resolve_model_file("cifar10"), args.samples)
    elif args.part == "speed":
        bench_speed(args.rounds, args.runs, args.threads)
    else:
        bench_memory(args.images, [int(n) for n in args.plain_images.split(",")])


if __name__ == "__main__":
    main()
