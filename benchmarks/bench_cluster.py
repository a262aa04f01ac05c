"""Evaluation throughput on a Ray cluster against the local loop, and what Ray adds per batch.

The shipped ``cifar10`` model (cifar_resnet20, fp32 ONNX) on the 10,000 CIFAR-10 test images,
batches of 100, measured as wall time of ``edgeres.cluster.evaluate_models``:

* **local, 1 thread** and **local, default threads**: ``edgeres.evaluate`` in this process,
  no ray;
* **cluster, 1 worker** and **cluster, 2 workers**: a ``LocalCluster`` of two nodes on this
  machine (1 CPU each, bound to 127.0.0.1), Ray Data feeding an actor pool of that many
  ONNX Runtime sessions with 1 thread each;
* the same four on **one batch** (100 images): the fixed cost (connection, dataset start-up,
  actor start, model shipped through the object store).

Per-batch overhead = ((cluster 1 worker, 10k) - (cluster 1 worker, 100)) minus ((local 1
thread, 10k) - (local 1 thread, 100)), over the 99 extra batches: what the Ray path costs per
batch beyond the same single-threaded inference. Rounds alternate the configurations; each
figure is the fastest of its rounds. Counts are checked equal on every run.

Not a test: writes benchmarks/results/cluster_eval.{json,md}. Run it, as root, in a
loopback-only network namespace (``LocalCluster`` refuses to start elsewhere, since Ray would
register the nodes on the host's address):

    unshare --net sh -c 'ip link set lo up && exec .venv/bin/python benchmarks/bench_cluster.py'

    python benchmarks/bench_cluster.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeres._fs import atomic_write  # noqa: E402
from edgeres.bench.env import busy_fraction, describe_machine  # noqa: E402
from edgeres.cluster import LocalCluster, evaluate_models  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DATA = "cifar10-test"
MODEL = "cifar10"
BATCH = 100
FULL, SMALL = None, BATCH  # --limit: all 10,000 images, or one batch


def _configs(address: str) -> dict[str, dict[str, Any]]:
    return {
        "local, 1 thread": {"threads": 1},
        "local, default threads": {},
        "cluster, 1 worker": {"cluster": address, "workers": 1},
        "cluster, 2 workers": {"cluster": address, "workers": 2},
    }


def _run(options: dict[str, Any], limit: int | None) -> tuple[float, int, int]:
    start = time.perf_counter()
    run = evaluate_models([MODEL], DATA, batch_size=BATCH, limit=limit, **options)
    wall = time.perf_counter() - start  # includes connecting and loading, as a user sees it
    r = run.results[0]
    return wall, r.count, r.top1_correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    env = describe_machine()
    temp = Path(tempfile.mkdtemp(prefix="erb", dir="/tmp"))
    cluster = LocalCluster(temp, [{"edgeres-device:node2": 1}], num_cpus=1)
    times: dict[tuple[str, str], list[float]] = {}
    counts: dict[tuple[str, str], set[tuple[int, int]]] = {}
    busy = []
    with cluster:
        configs = _configs(cluster.address)
        for r in range(args.rounds):
            for name, options in configs.items():
                for size, limit in (("10k", FULL), ("1 batch", SMALL)):
                    busy.append(busy_fraction())
                    wall, n, correct = _run(options, limit)
                    times.setdefault((name, size), []).append(wall)
                    counts.setdefault((name, size), set()).add((n, correct))
                    print(f"round {r}: {name}, {size}: {wall:.2f} s ({correct}/{n})",
                          flush=True)
    left = cluster.leftovers()
    for size in ("10k", "1 batch"):
        assert len({c for (_, s), v in counts.items() if s == size for c in v}) == 1, counts
    best = {k: min(v) for k, v in times.items()}
    base = best[("local, 1 thread", "10k")]
    per_batch = ((best[("cluster, 1 worker", "10k")] - best[("cluster, 1 worker", "1 batch")])
                 - (base - best[("local, 1 thread", "1 batch")])) / (10_000 / BATCH - 1)
    result = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": env.to_dict(), "model": MODEL, "data": DATA, "batch": BATCH,
        "rounds": args.rounds, "busy_others_during": busy,
        "seconds": {f"{n} / {s}": v for (n, s), v in times.items()},
        "best_seconds": {f"{n} / {s}": v for (n, s), v in best.items()},
        "images_per_s": {n: 10_000 / best[(n, "10k")] for n in configs},
        "ratio_to_local_1_thread": {n: base / best[(n, "10k")] for n in configs},
        "fixed_cost_s": {n: best[(n, "1 batch")] for n in configs},
        "ray_overhead_per_batch_ms": 1e3 * per_batch,
        "counts": {f"{n} / {s}": sorted(v) for (n, s), v in counts.items()},
        "leftover_processes": left,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    with atomic_write(RESULTS / "cluster_eval.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    with atomic_write(RESULTS / "cluster_eval.md") as tmp:
        tmp.write_text(_markdown(result))
    print(_markdown(result))


def _markdown(r: dict[str, Any]) -> str:
    e = r["environment"]
    busy = [b for b in r["busy_others_during"] if b is not None]
    lines = [
        "# Evaluation on a Ray cluster vs locally (`benchmarks/bench_cluster.py`)", "",
        f"- Host: {e['cpu']} ({e['machine']}), {e['physical_cores']} physical / "
        f"{e['logical_cores']} logical cores; ISA {', '.join(e['isa']) or 'none'}",
        f"- {e['os']}; Python {e['python']}; "
        + ", ".join(f"{k} {v}" for k, v in e["versions"].items() if v),
        f"- ray {_ray_version()}; cluster: 2 nodes on this host (1 CPU each, 127.0.0.1)",
        f"- Other processes' CPU share at the start of each run: "
        f"{min(busy):.0%}-{max(busy):.0%}" if busy else "- CPU share of others: unknown",
        f"- {r['model']} on the 10,000 {r['data']} images, batch {r['batch']}; fastest of "
        f"{r['rounds']} alternating rounds; wall time including connection and model load", "",
        "| configuration | 10k images (s) | img/s | vs local 1 thread | one batch (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, ips in r["images_per_s"].items():
        lines.append(f"| {name} | {r['best_seconds'][f'{name} / 10k']:.2f} | {ips:.0f} | "
                     f"{r['ratio_to_local_1_thread'][name]:.2f}x | "
                     f"{r['fixed_cost_s'][name]:.2f} |")
    lines += ["", f"Ray's overhead per 100-image batch (1 worker, beyond the same "
              f"single-threaded inference): **{r['ray_overhead_per_batch_ms']:.1f} ms**.",
              f"Counts equal in every configuration: {r['counts']}.", ""]
    return "\n".join(lines)


def _ray_version() -> str:
    import ray

    return ray.__version__


if __name__ == "__main__":
    main()
