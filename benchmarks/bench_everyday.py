"""Are the everyday commands fast? Wall time and peak memory of each, before and after.

``edgeres models`` used to build every network of the zoo with its weights to count parameters
and MACs; it now builds them on PyTorch's ``meta`` device (shapes only). The "before" variant
runs the old loop (``create_model`` + ``count_params`` + ``count_macs`` on real weights) in the
same kind of fresh interpreter, so the two differ only in that. Each variant runs in its own
subprocess; peak RSS comes from ``os.wait4``'s rusage of that child alone. Variants alternate
round by round so drift hits them alike; the medians over rounds are compared as a ratio.
``edgeres info`` of a 1000-class model printed its whole record, labels and all (1,067 lines);
it now shows five labels and the count. "before" prints the record as the old command did
(``ModelMeta.to_json``) after the same header; the file is a resnet18 export made once, untimed.
With ``--bench`` it also times the README's ``edgeres bench`` examples (after only: the old
one took 26 minutes, evaluating a 1000-class model on CIFAR images, and is not rerun).
With ``--quantize`` it times ``edgeres quantize`` of ResNet-50 (random weights) on 300
calibration images against plain ``quantize_static`` (QDQ, U8 activations, S8 per-channel
weights, after ``quant_pre_process``) on the same images, for the old per-layer report (64
images) and the new default (8): the ratio edgeres / plain is the overhead.
Writes benchmarks/results/everyday.{json,md} (everyday_quantize.* with ``--only-quantize``)
with the machine it ran on.

    python benchmarks/bench_everyday.py [--rounds 3] [--bench] [--quantize]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeres._fs import atomic_write  # noqa: E402
from edgeres.bench.env import describe_machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SCHEMA_VERSION = 1

# The loop `edgeres models` ran before it profiled on the meta device (cli.py at 289d141).
_MODELS_BEFORE = """
from edgeres.models import create_model, list_models, model_info
from edgeres.models._profile import count_macs, count_params
for name in list_models():
    info = model_info(name)
    model = create_model(name)
    print(name, count_params(model), count_macs(model, (info.in_chans, *info.input_size)))
"""

# `edgeres info` before it cut long label lists (cli.py at 64acf53): the full record.
_INFO_BEFORE = """
import sys
from edgeres.cli import cli
import edgeres.cli._model as c
c._record_text = lambda meta: meta.to_json()
cli(["info", sys.argv[1]])
"""
INFO_MODEL = Path("/tmp/edgeres-bench-everyday/resnet18.onnx")
VARIANTS: dict[str, list[str]] = {
    "models (before: real weights)": [sys.executable, "-c", _MODELS_BEFORE],
    "models (after: meta device)": [sys.executable, "-m", "edgeres", "models"],
    "info resnet18 (before: every label)": [sys.executable, "-c", _INFO_BEFORE, str(INFO_MODEL)],
    "info resnet18 (after: 5 labels + count)": [sys.executable, "-m", "edgeres", "info",
                                                str(INFO_MODEL)],
}
R50 = INFO_MODEL.with_name("resnet50.onnx")
_QUANTIZE = """
import sys
from pathlib import Path
from edgeres.calibration import CalibrationSet
from edgeres.modelfile import model_record
from edgeres.quantize import QuantConfig, quantize
src = Path(sys.argv[1])
calib = CalibrationSet.from_data("cifar10", model_record(src))
quantize(src, src.with_name("q.onnx"), calib,
         config=QuantConfig(samples=300, layer_report_samples=int(sys.argv[2]),
                            batch_size=int(sys.argv[3]) if len(sys.argv) > 3 else None))
"""
_PLAIN = """
import sys, tempfile
from pathlib import Path
from edgeres.calibration import CalibrationSet, ort_reader
from edgeres.modelfile import model_record
from onnxruntime.quantization import (QuantFormat, QuantType, quant_pre_process,
                                      quantize_static)
src = Path(sys.argv[1])
calib = CalibrationSet.from_data("cifar10", model_record(src)).select(300, 0, 8)
with tempfile.TemporaryDirectory() as tmp:
    pre = Path(tmp) / "pre.onnx"
    quant_pre_process(str(src), str(pre))
    quantize_static(str(pre), str(src.with_name("plain.onnx")), ort_reader(calib),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    # 4 batches of 8 held at a time: all 300 images' activations need ~30 GB
                    extra_options={"CalibMaxIntermediateOutputs": 4})
"""
_Q_BEFORE = "quantize resnet50 (before: SQNR on 64 images, calibration batch 1)"
_Q_AFTER = "quantize resnet50 (after: SQNR on 8 images, calibration batch 4)"
QUANTIZE = {
    _Q_BEFORE: [sys.executable, "-c", _QUANTIZE, str(R50), "64", "1"],
    _Q_AFTER: [sys.executable, "-c", _QUANTIZE, str(R50), "8"],  # the defaults
    "plain quantize_static resnet50": [sys.executable, "-c", _PLAIN, str(R50)],
}
QPAIRS = [("quantize before / plain", _Q_BEFORE, "plain quantize_static resnet50"),
          ("quantize after / plain", _Q_AFTER, "plain quantize_static resnet50")]
PAIRS = [("models", "models (before: real weights)", "models (after: meta device)"),
         ("info", "info resnet18 (before: every label)",
          "info resnet18 (after: 5 labels + count)")]
# The README's bench examples as proposed (after only), each to finish in under a minute.
README_BENCH = {
    "bench cifar10 cifar10-int8 --eval cifar10-test --limit 2000": [
        sys.executable, "-m", "edgeres", "bench", "cifar10", "cifar10-int8", "--eval",
        "cifar10-test", "--limit", "2000", "--no-memory"],
    "bench resnet18 --precision fp32 --batch 1,8": [
        sys.executable, "-m", "edgeres", "bench", "resnet18", "--precision", "fp32",
        "--batch", "1,8", "--no-memory"],
}


def run_once(argv: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB and output lines of one run of ``argv``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT,
                            env={**os.environ, "COLUMNS": "100"})
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        msg = f"{argv} failed with status {status}"
        raise SystemExit(msg)
    return seconds, usage.ru_maxrss / 1024, len(out.splitlines())


def _ratio(rows: dict[str, dict[str, float]], before: str, after: str, key: str) -> float:
    return rows[before][key] / rows[after][key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bench", action="store_true", help="Also time README_BENCH.")
    parser.add_argument("--quantize", action="store_true", help="Also time QUANTIZE.")
    parser.add_argument("--only-quantize", action="store_true", help="Time QUANTIZE alone.")
    args = parser.parse_args()
    env = describe_machine()
    if not INFO_MODEL.is_file():
        INFO_MODEL.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "edgeres", "export", "resnet18", "-o",
                        str(INFO_MODEL)], check=True, cwd=ROOT, capture_output=True)
    if args.bench:
        VARIANTS.update(README_BENCH)
    if args.only_quantize:
        VARIANTS.clear()
        PAIRS.clear()
    if args.quantize or args.only_quantize:
        if not R50.is_file():
            subprocess.run([sys.executable, "-m", "edgeres", "export", "resnet50", "-o",
                            str(R50)], check=True, cwd=ROOT, capture_output=True)
        VARIANTS.update(QUANTIZE)
        PAIRS.extend(QPAIRS)
    runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in VARIANTS}
    for r in range(args.rounds):
        order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            runs[name].append(run_once(VARIANTS[name]))
            print(f"round {r + 1}/{args.rounds} {name}: {runs[name][-1][0]:.2f} s", flush=True)
    rows = {name: {"seconds_median": statistics.median(s for s, _, _ in v),
                   "peak_rss_mb_median": statistics.median(m for _, m, _ in v),
                   "output_lines": v[-1][2], "seconds": [s for s, _, _ in v]}
            for name, v in runs.items()}
    ratios = {what: {"time_before_over_after": _ratio(rows, b, a, "seconds_median"),
                     "rss_before_over_after": _ratio(rows, b, a, "peak_rss_mb_median")}
              for what, b, a in PAIRS}
    doc = {"schema_version": SCHEMA_VERSION, "rounds": args.rounds,
           "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "environment": env.to_dict(), "variants": rows, "ratios": ratios}
    RESULTS.mkdir(exist_ok=True)
    stem = "everyday_quantize" if args.only_quantize else "everyday"
    with atomic_write(RESULTS / f"{stem}.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=1))
    lines = ["# Everyday commands: wall time and peak memory", "",
             f"Host: {env.cpu} ({', '.join(env.isa)}), {env.logical_cores} CPUs, load "
             f"from others at start {env.busy_others}; {args.rounds} alternating rounds, medians, "
             "each run a fresh process (`python benchmarks/bench_everyday.py`).", "",
             "| command | wall s (median) | peak RSS MB | output lines |",
             "| --- | ---: | ---: | ---: |"]
    lines += [f"| {n} | {v['seconds_median']:.2f} | {v['peak_rss_mb_median']:.0f} | "
              f"{v['output_lines']} |" for n, v in rows.items()]
    lines += ["", "| comparison | time first/second | peak RSS first/second |",
              "| --- | ---: | ---: |"]
    lines += [f"| {w} | {r['time_before_over_after']:.2f}x | {r['rss_before_over_after']:.2f}x |"
              for w, r in ratios.items()]
    with atomic_write(RESULTS / f"{stem}.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))  # noqa: T201 - a script's output


if __name__ == "__main__":
    main()
