"""Does `edgeres bench` report what ONNX Runtime really does? Its p50 against a bare loop.

For cifar_resnet20 (the shipped `cifar10` file) and ResNet-18 at batch 1 on ort-cpu, each
round runs (a) ``run_bench`` exactly as ``edgeres bench MODEL --runtime ort-cpu`` does and
takes the p50 it reports, and (b) a bare ``onnxruntime.InferenceSession.run`` loop timed with
``time.perf_counter`` in this same process, with the same file, threads (intra-op = physical
cores, inter-op 1), warm-up, call count and input. The two alternate in order round by round
(a-b, b-a, ...), so drift hits both. The median over rounds of each p50 must agree within 5%
or 50 us, whichever is larger. Writes benchmarks/results/bench_overhead.{json,md}.

    python benchmarks/bench_overhead.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeres._fs import atomic_write  # noqa: E402
from edgeres.bench import BenchConfig, run_bench  # noqa: E402
from edgeres.bench._models import model_file, resolve_model  # noqa: E402
from edgeres.bench.config import cache_dir  # noqa: E402
from edgeres.bench.env import describe_machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = {"cifar10": 300, "resnet18": 40}  # MODEL -> timed calls per round
WARMUP = 10
SCHEMA_VERSION = 1


def bare_p50(path: Path, x: np.ndarray, threads: int, calls: int) -> float:
    """p50 in ms of a plain InferenceSession.run loop: no edgeres code at all."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    out = [sess.get_outputs()[0].name]
    for _ in range(WARMUP):
        sess.run(out, feed)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        sess.run(out, feed)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def edgeres_p50(model: str, threads: int, calls: int) -> float:
    """The p50 in ms that `edgeres bench MODEL --runtime ort-cpu` reports, one round."""
    config = BenchConfig(runtimes=("ort-cpu",), batches=(1,), threads=threads, warmup=WARMUP,
                         rounds=1, iterations=calls, memory=False)
    (row,) = run_bench([model], config).rows
    return row.latency.p50_ms


def compare(model: str, rounds: int, threads: int) -> dict:
    """Interleaved rounds of both measurements for one model."""
    calls = MODELS[model]
    src = resolve_model(model, cache_dir())
    path = model_file(src, "fp32", calib="cifar10")
    shape = (1, *(int(d) for d in src.meta.input.shape[1:]))
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)  # run_bench's input
    ours, bare = [], []
    for r in range(rounds):
        for which in ("edgeres", "bare") if r % 2 == 0 else ("bare", "edgeres"):
            if which == "edgeres":
                ours.append(edgeres_p50(model, threads, calls))
            else:
                bare.append(bare_p50(path, x, threads, calls))
    a, b = statistics.median(ours), statistics.median(bare)
    allowed = max(0.05 * b, 0.050)
    return {"model": model, "file": str(path), "calls_per_round": calls, "rounds": rounds,
            "edgeres_p50_ms": a, "bare_p50_ms": b, "difference_ms": a - b,
            "allowed_ms": allowed, "within_limit": abs(a - b) <= allowed,
            "edgeres_p50_per_round_ms": ours, "bare_p50_per_round_ms": bare}


def _markdown(result: dict) -> str:
    env = result["environment"]
    lines = ["# edgeres bench overhead (ort-cpu, batch 1)", "",
             f"- CPU: {env['cpu']}, {env['physical_cores']} physical cores; threads "
             f"{result['threads']}; CPU used by other processes at the start: "
             f"{'unknown' if env['busy_others'] is None else format(env['busy_others'], '.0%')}",
             f"- {result['created']}; medians over {result['rounds']} interleaved rounds", "",
             "| model | edgeres p50 ms | bare ORT p50 ms | difference ms | allowed ms | ok |",
             "|---|---:|---:|---:|---:|---|"]
    for c in result["comparisons"]:
        lines.append(f"| {c['model']} | {c['edgeres_p50_ms']:.4f} | {c['bare_p50_ms']:.4f} | "
                     f"{c['difference_ms']:+.4f} | {c['allowed_ms']:.4f} | "
                     f"{'yes' if c['within_limit'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    env = describe_machine()
    threads = env.physical_cores
    result = {"schema_version": SCHEMA_VERSION, "tool": "benchmarks/bench_overhead.py",
              "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "environment": env.to_dict(), "threads": threads, "rounds": args.rounds,
              "limit": "|edgeres - bare| <= max(5% of bare, 0.050 ms)",
              "comparisons": [compare(m, args.rounds, threads) for m in MODELS]}
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "bench_overhead.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    with atomic_write(args.out / "bench_overhead.md") as tmp:
        tmp.write_text(_markdown(result))
    print(_markdown(result))  # noqa: T201 - a script's output
    return 0 if all(c["within_limit"] for c in result["comparisons"]) else 1


if __name__ == "__main__":
    sys.exit(main())
