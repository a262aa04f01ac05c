"""ONNX Runtime, OpenVINO, LiteRT and ExecuTorch on the same models and images (issue 24).

Two parts, run in .venv-edge (``make setup-edge``), which has all four runtimes:

    .venv-edge/bin/python benchmarks/bench_runtimes.py accuracy   # minutes; not timing
    .venv-edge/bin/python benchmarks/bench_runtimes.py speed      # timing: a quiet machine

``accuracy``: the shipped ResNet-20 (cifar_resnet20, cifar10 weights) on the 10,000 CIFAR-10
test images (``cifar10-test``) per runtime: fp32 top-1, the images where it differs from ORT's
fp32 counted, and int8 (each backend's own quantizer, calibrated on the same 300 train-split
images, seed 0) with its drop and paired 95% interval (``edgeres.intervals``). Writes
``benchmarks/results/runtimes_accuracy.{json,md}``.

``speed``: ResNet-18 and ResNet-50 (224x224, fixed-seed random weights: latency only), fp32 and
int8, batch 1 and 8, on ort-cpu, openvino-cpu, litert-cpu and executorch-cpu, in ONE interleaved
``edgeres bench`` run (``run_bench``; no second timer). LiteRT and ExecuTorch graphs have a
fixed batch, so each batch gets its own .tflite/.pte (exported and quantized into a cache
first). Writes ``benchmarks/results/runtimes_speed.{json,md}``.

Both name the host (lscpu's model name) and the run conditions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from edgeres.bench.env import describe_machine  # noqa: E402
from edgeres.calibration import CalibrationSet  # noqa: E402
from edgeres.data import open_data  # noqa: E402
from edgeres.evaluate import evaluate  # noqa: E402
from edgeres.export import ExportConfig, export_edge, zoo_export  # noqa: E402
from edgeres.intervals import paired_drop, wilson  # noqa: E402
from edgeres.modelfile import edge_record, onnx_record  # noqa: E402
from edgeres.names import resolve_model_file  # noqa: E402
from edgeres.quantize import QuantConfig, quantize  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(os.environ.get("EDGERES_CACHE", Path.home() / ".cache" / "edgeres")) / "runtimes"
TEST = "cifar10-test"
CALIB = "cifar10"
RUNTIMES = ("ort", "openvino", "litert", "executorch")
FP32_SUFFIX = {"ort": ".onnx", "openvino": ".onnx", "litert": ".tflite", "executorch": ".pte"}
INT8_SUFFIX = {"ort": ".onnx", "openvino": ".xml", "litert": ".tflite", "executorch": ".pte"}


def host() -> str:
    """The CPU's model name as lscpu reports it (platform.processor() when lscpu is absent)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def _conditions() -> str:
    busy = describe_machine().busy_others
    return ("machine load unknown" if busy is None
            else f"other processes used {busy:.0%} of the CPUs at the start")


def _fp32_file(runtime: str, zoo: str, weights: str | None, batch: int, cache: Path) -> Path:
    """The fp32 file ``runtime`` runs: the shipped .onnx for ResNet-20 on ORT/OpenVINO, else
    an export (.tflite/.pte at a fixed ``batch``) made once into ``cache``."""
    if FP32_SUFFIX[runtime] == ".onnx":
        return resolve_model_file("cifar10")
    dst = cache / f"{zoo}-b{batch}{FP32_SUFFIX[runtime]}"
    if not dst.is_file():
        net, meta = zoo_export(zoo, weights=weights)
        export_edge(net, dst, meta=meta, fmt=FP32_SUFFIX[runtime][1:],
                    config=ExportConfig(batch=batch))
    return dst


def _int8_file(runtime: str, fp32: Path, cache: Path, **config: Any) -> tuple[Path, Any]:
    """``fp32`` quantized by ``runtime``'s own quantizer on the shared calibration images."""
    dst = cache / f"{fp32.stem}-int8-{runtime}{INT8_SUFFIX[runtime]}"
    meta = onnx_record(fp32) if fp32.suffix == ".onnx" else edge_record(fp32)
    assert meta is not None
    report = quantize(fp32, dst, CalibrationSet.from_data(CALIB, meta), backend=runtime,
                      config=QuantConfig(samples=300, seed=0, **config))
    return dst, report


def accuracy(out: Path) -> dict[str, Any]:
    """fp32 and int8 top-1 of the shipped ResNet-20 per runtime on the 10,000 test images."""
    from edgeres import runtime as rt

    cache = CACHE / "accuracy"
    cache.mkdir(parents=True, exist_ok=True)
    data = open_data(TEST)
    correct: dict[tuple[str, str], np.ndarray] = {}
    rows = []
    for name in RUNTIMES:
        fp32 = _fp32_file(name, "cifar_resnet20", "cifar10", 1, cache)
        int8, report = _int8_file(name, fp32, cache)
        for precision, path in (("fp32", fp32), ("int8", int8)):
            p = rt.load(path, backend=name)  # type: ignore[arg-type]
            t0 = time.perf_counter()
            correct[name, precision] = np.asarray(
                evaluate(p.run, data, p.meta, description=f"{name} {precision}").correct, bool)
            print(f"{name} {precision}: {100 * correct[name, precision].mean():.2f}% "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        ref = correct["ort", "fp32"]
        a, b = correct[name, "fp32"], correct[name, "int8"]
        drop = paired_drop(a, b)
        rows.append({
            "runtime": f"{name}-cpu", "fp32_file": fp32.name, "int8_file": int8.name,
            "images": int(a.size), "fp32_top1": 100 * float(a.mean()),
            "fp32_interval": [100 * v for v in wilson(int(a.sum()), a.size)],
            "fp32_differs_from_ort": int((a != ref).sum()),
            "int8_top1": 100 * float(b.mean()), "int8_method": report.method,
            "drop": drop.drop, "drop_interval": [drop.low, drop.high],
            "lost": drop.lost, "gained": drop.gained, "mcnemar_p": drop.p_value,
        })
    result = {"host": host(), "machine": platform.machine(), "conditions": _conditions(),
              "data": TEST, "calibration": f"{CALIB}, 300 images, seed 0", "rows": rows}
    _write(out / "runtimes_accuracy", result, _accuracy_md(result))
    return result


def _accuracy_md(r: dict[str, Any]) -> str:
    lines = [f"# Runtimes: shipped ResNet-20 on {r['data']} ({r['rows'][0]['images']} images)",
             "", f"Host: {r['host']} ({r['machine']}); {r['conditions']}.",
             f"int8: each runtime's own quantizer, calibration {r['calibration']}.", "",
             "| runtime | fp32 top-1 | images differing from ORT fp32 | int8 top-1 | "
             "drop [95% paired interval] | lost / gained | McNemar p |",
             "|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lo, hi = row["drop_interval"]
        lines.append(f"| {row['runtime']} | {row['fp32_top1']:.2f}% | "
                     f"{row['fp32_differs_from_ort']} | {row['int8_top1']:.2f}% | "
                     f"{row['drop']:+.2f} [{lo:+.2f}, {hi:+.2f}] | {row['lost']} / "
                     f"{row['gained']} | {row['mcnemar_p']:.2g} |")
    return "\n".join(lines) + "\n"


def speed(out: Path, quick: bool = False, timing: dict[str, Any] | None = None) -> None:
    """ResNet-18/50, fp32 and int8, batch 1 and 8, four runtimes, one interleaved bench run.

    ``timing`` overrides the bench settings (duration, rounds, warmup, memory): a first run with
    a tiny duration into a scratch ``out`` builds every file (exports, int8) while the machine
    is busy, so the timed run on a quiet machine only loads and times them.
    """
    from edgeres.bench import BenchConfig, report, run_bench

    cache = CACHE / "speed"
    cache.mkdir(parents=True, exist_ok=True)
    zoo = ("resnet18",) if quick else ("resnet18", "resnet50")
    batches = (1,) if quick else (1, 8)
    files: list[str] = []
    for model in zoo:
        for name in ("litert", "executorch"):
            for batch in batches:
                fp32 = _fp32_file(name, model, None, batch, cache)
                files += [str(fp32), str(_int8_file(name, fp32, cache)[0])]
    config = BenchConfig(
        runtimes=("ort-cpu", "openvino-cpu", "litert-cpu", "executorch-cpu"),
        precisions=("fp32", "int8"), batches=batches, conditions=_conditions(),
        **(timing or ({"duration": 0.3, "rounds": 2, "warmup": 2} if quick else
                      {"duration": 5.0, "rounds": 5, "warmup": 10})))
    run = run_bench([*zoo, *files], config)
    stem = out / "runtimes_speed"
    report.write_json(run, stem.with_suffix(".json"))
    report.write_markdown(run, stem.with_suffix(".md"))
    summary(stem.with_suffix(".json"))
    print(f"wrote {stem}.json and .md on {host()}")


def summary(path: Path) -> str:
    """The measured rows of a speed run as one table per model, batch and runtime (fp32, int8,
    their ratio), written beside it as ``<stem>_summary.md``: the full table also lists every
    skipped runtime × file pairing."""
    import re

    doc = json.loads(path.read_text())
    cells: dict[tuple[str, int, str], dict[str, Any]] = {}
    for r in doc["rows"]:
        if r["status"] != "ok":
            continue
        model = re.search(r"resnet\d+", r["model"])
        label = r["runtime"] + ("" if r["precision_mode"] == "model" else " (its default)")
        key = (model.group(0) if model else r["model"], r["batch"], label)
        cells.setdefault(key, {})[r["precision"]] = r

    def p50(row: dict[str, Any] | None) -> str:
        if row is None:
            return "–"
        lat = row["latency"]
        return f"{lat['p50_ms']:.2f} [{lat['p50_low_ms']:.2f}, {lat['p50_high_ms']:.2f}]"

    lines = [f"# Runtimes: p50 latency per call (ms, 95% CI), {host()}", "",
             f"From `{path.name}` ({doc.get('created', '')}); the CPU line of "
             "the full table names its ISA. fp32→bf16 is OpenVINO's own default on this CPU.",
             "", "| model | batch | runtime | fp32 | int8 | fp32 / int8 time |",
             "|---|---:|---|---:|---:|---:|"]
    for (model, batch, label), v in sorted(cells.items()):
        fp, i8 = v.get("fp32"), v.get("int8")
        ratio = (f"{fp['latency']['p50_ms'] / i8['latency']['p50_ms']:.2f}x"
                 if fp and i8 else "–")
        lines.append(f"| {model} | {batch} | {label} | {p50(fp)} | {p50(i8)} | {ratio} |")
    text = "\n".join(lines) + "\n"
    path.with_name(path.stem + "_summary.md").write_text(text)
    return text


def _write(stem: Path, result: dict[str, Any], markdown: str) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown)
    print(markdown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["accuracy", "speed", "summary"])
    parser.add_argument("--quick", action="store_true", help="speed: ResNet-18, batch 1, short")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--duration", type=float, help="speed: timed seconds per row per round")
    parser.add_argument("--rounds", type=int, help="speed: interleaved rounds")
    parser.add_argument("--no-memory", action="store_true", help="speed: skip peak-memory probes")
    args = parser.parse_args(argv)
    if args.part == "accuracy":
        accuracy(args.out)
    elif args.part == "summary":  # the speed table again, from the JSON the last run wrote
        print(summary(args.out / "runtimes_speed.json"))
    else:
        timing = {k: v for k, v in (("duration", args.duration), ("rounds", args.rounds))
                  if v is not None}
        if args.no_memory:
            timing["memory"] = False
        speed(args.out, args.quick, {**{"warmup": 10, "duration": 5.0, "rounds": 5}, **timing}
              if timing else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
