"""Export time and ONNX Runtime parity per zoo model → benchmarks/results/export.{json,md}.

Each model is built with a fixed-seed random init at its default input size and exported with
``edgeres.export.export_onnx`` (TorchScript exporter, opset 17, dynamic batch) ``--repeats``
times; the JSON keeps every timing, the table the median. Parity numbers come from the
export's own verification (ORT CPU vs the unfolded PyTorch model on seeded random inputs) and
are the same on every repeat. Run conditions (CPU, load average, threads, versions) are
recorded beside the numbers, since a busy machine changes the times, not the errors.

Usage:
    python benchmarks/bench_export.py [--models resnet18,resnet50] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import torch  # noqa: E402

from edgeres._fs import atomic_write  # noqa: E402
from edgeres.bench.env import describe_machine  # noqa: E402
from edgeres.export import ExportConfig, export_onnx  # noqa: E402
from edgeres.models import create_model  # noqa: E402
from edgeres.zoo import zoo_meta  # noqa: E402

SCHEMA_VERSION = 1
MODELS = ("resnet18", "resnet50", "cifar_resnet20", "cifar_resnet56", "preact_resnet18",
          "resnext50_32x4d")
RESULTS = ROOT / "benchmarks" / "results"


def bench_model(name: str, repeats: int, parity_inputs: int, workdir: Path) -> dict[str, Any]:
    """Export ``name`` ``repeats`` times; return its timings and parity numbers."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    meta = zoo_meta(name)
    config = ExportConfig(parity_inputs=parity_inputs)
    reports = [export_onnx(model, workdir / f"{name}.onnx", meta=meta, config=config)
               for _ in range(repeats)]
    last = reports[-1]
    return {
        "model": name,
        "input_size": list(meta.input_size),
        "export_seconds": [r.export_seconds for r in reports],
        "total_seconds": [r.seconds for r in reports],
        "max_abs_err": last.max_abs_err,
        "max_rel_err": last.max_rel_err,
        "top1_agreement": last.top1_agreement,
        "tolerance": last.tolerance,
        "parity_inputs": last.parity_inputs,
        "size_bytes": last.size_bytes,
        "nodes": last.num_nodes,
        "opset": last.opset,
        "exporter": last.exporter,
    }


def markdown(doc: dict[str, Any]) -> str:
    """The results as a markdown table with the run conditions above it."""
    env = doc["environment"]
    v = env["versions"]
    lines = [
        "# ONNX export: time and parity",
        "",
        f"{env['cpu']}, {env['logical_cores']} cores, load average {env['load_average']} at "
        f"start, torch threads {doc['torch_threads']}; torch {v['torch']}, onnx {v['onnx']}, "
        f"onnxruntime {v['onnxruntime']}. Random weights (fixed seed), default input sizes, "
        f"opset {doc['results'][0]['opset']}, dynamic batch, {doc['repeats']} exports per model "
        "(median shown). Parity: ORT CPU vs the unfolded PyTorch model on "
        f"{doc['results'][0]['parity_inputs']} random inputs; "
        "rel err = max abs err / max |output|.",
        "",
        "| model | input | export s | total s (with checks) | max abs err | max rel err "
        "| top-1 agree | nodes | MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["results"]:
        top1 = "n/a" if r["top1_agreement"] is None else f"{r['top1_agreement']:.0%}"
        lines.append(
            f"| {r['model']} | {r['input_size'][0]}x{r['input_size'][1]} "
            f"| {statistics.median(r['export_seconds']):.2f} "
            f"| {statistics.median(r['total_seconds']):.2f} | {r['max_abs_err']:.2e} "
            f"| {r['max_rel_err']:.2e} | {top1} | {r['nodes']} | {r['size_bytes'] / 1e6:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Run the export benchmark and write the JSON and markdown results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parity-inputs", type=int, default=8)
    parser.add_argument("--threads", type=int, help="torch and ORT threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    env = describe_machine()
    results = []
    with tempfile.TemporaryDirectory(prefix="edgeres.bench_export.") as tmp:
        for name in args.models.split(","):
            print(f"exporting {name} x{args.repeats} ...", file=sys.stderr, flush=True)
            results.append(bench_model(name, args.repeats, args.parity_inputs, Path(tmp)))
    doc = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": "export",
        "environment": env.to_dict(),
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "export.json") as tmp_json:
        tmp_json.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    with atomic_write(args.out / "export.md") as tmp_md:
        tmp_md.write_text(markdown(doc), encoding="utf-8")
    print(markdown(doc))


if __name__ == "__main__":
    main()
