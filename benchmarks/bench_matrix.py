"""The published baseline: every headline model x precision x runtime x batch, one command.

ResNet-18 and ResNet-50 at 224x224 (random weights: latency, size and memory only) and the
shipped reference cifar_resnet20 at 32x32 (`cifar10`, with accuracy on the CIFAR-10 test set
and top-1 agreement with its fp32 row); fp32 and int8 (quantized with the shipped calibration
subset); torch-cpu, ort-cpu and openvino-cpu (plus OpenVINO's default-precision row); batch 1
and 8. Writes benchmarks/results/bench_matrix.{json,md,png} with the machine described and the
run conditions (CPU used by other processes at the start; above ~25% the numbers are noisy).

    python benchmarks/bench_matrix.py            # the full baseline (10-20 minutes here)
    python benchmarks/bench_matrix.py --quick    # smoke run: ResNet-18 + cifar10, batch 1,
                                                 # written to a temp dir unless --out is given
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeres.bench import BenchConfig, BenchRun, report, run_bench  # noqa: E402
from edgeres.bench.env import describe_machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
RANDOM_MODELS = ("resnet18", "resnet50")  # zoo names: exported at 224x224 into the cache
REFERENCE = "cifar10"  # the shipped cifar_resnet20 ONNX, with its registered weights
EVAL_DATA = "cifar10-test"


def _conditions(extra: str | None) -> str:
    env = describe_machine()
    busy = env.busy_others
    if busy is None:
        text = "machine load unknown"
    elif busy > 0.25:
        text = (f"shared machine: other processes used {busy:.0%} of the CPUs at the start, "
                "so latencies are noisy and pessimistic")
    else:
        text = f"quiet machine: other processes used {busy:.0%} of the CPUs at the start"
    return f"{text}; {extra}" if extra else text


def _merge(runs: list[BenchRun], per_model_eval: dict[str, str | None]) -> BenchRun:
    """One report from several run_bench calls (they differ only in evaluation data)."""
    first = runs[0]
    settings = first.settings.evolve(
        eval_data=None, limit=None, per_model_eval=per_model_eval,
        precisions=sorted({p for r in runs for p in r.settings.precisions or ()}))
    return dataclasses.replace(
        first, rows=tuple(row for r in runs for row in r.rows), settings=settings,
        notes=tuple(dict.fromkeys(n for r in runs for n in r.notes)),  # outlook stated once
        interrupted=any(r.interrupted for r in runs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--out", type=Path, help="results directory [benchmarks/results; "
                        "a temporary directory with --quick]")
    parser.add_argument("--conditions", help="extra text recorded with the run conditions")
    args = parser.parse_args(argv)
    os.environ.setdefault("EDGERES_PROGRESS", "1" if sys.stderr.isatty() else "0")
    out = args.out or (Path(tempfile.gettempdir()) / "edgeres-bench-quick" if args.quick
                       else RESULTS)
    common = {
        "runtimes": ("torch-cpu", "ort-cpu", "openvino-cpu"), "precisions": ("fp32", "int8"),
        "batches": (1,) if args.quick else (1, 8), "conditions": _conditions(args.conditions),
        **({"duration": 0.3, "rounds": 2, "warmup": 2} if args.quick else
           {"duration": 5.0, "rounds": 5, "warmup": 10}),
    }
    limit = 200 if args.quick else None
    models = RANDOM_MODELS[:1] if args.quick else RANDOM_MODELS
    runs = [run_bench(list(models), BenchConfig(**common))]
    if not runs[-1].interrupted:
        runs.append(run_bench([REFERENCE], BenchConfig(**common, eval_data=EVAL_DATA,
                                                       limit=limit)))
    run = _merge(runs, {**dict.fromkeys(models), REFERENCE: EVAL_DATA})
    stem = "bench_matrix_quick" if args.quick else "bench_matrix"
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(run, out / f"{stem}.json")
    report.write_markdown(run, out / f"{stem}.md")
    report.write_plot(run, out / f"{stem}.png")
    print(report.markdown(run))  # noqa: T201 - a script's output
    print(f"wrote {out / stem}.{{json,md,png}}")  # noqa: T201
    return 130 if run.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
