"""The last step of `make demo`: its result in a few lines a person reads at a glance.

Reads the demo's ``bench.json`` (written by ``edgeres bench --json``) and prints fp32 against
int8 top-1 with the drop and its 95% interval, the int8 speedup with its interval on this CPU
(ONNX Runtime, the runtime the int8 ``.onnx`` file is made for, when it was measured), the two
file sizes and where the files are. Every figure comes from the JSON; nothing is re-measured.

    python scripts/demo_summary.py out/demo/bench.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PREFERRED_RUNTIME = "ort-cpu"  # quantize's default backend writes QDQ .onnx for ONNX Runtime


def _pair(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The fp32 row, the int8 row and the comparisons of one runtime, preferring ort-cpu."""
    comps = [c for c in doc.get("comparisons", []) if c.get("speedup")
             and "(default)" not in c["baseline"]]
    if not comps:
        msg = "Error: bench.json has no int8-against-fp32 comparison; run bench on both files"
        raise SystemExit(msg)
    runtimes = [c["runtime"] for c in comps]
    runtime = PREFERRED_RUNTIME if PREFERRED_RUNTIME in runtimes else runtimes[0]
    comps = sorted((c for c in comps if c["runtime"] == runtime), key=lambda c: c["batch"])
    first = comps[0]
    rows = [r for r in doc["rows"] if r["status"] == "ok" and r["runtime"] == runtime
            and r["batch"] == first["batch"] and r.get("precision_mode", "model") == "model"]
    int8 = next(r for r in rows if r["model"] == first["model"])
    fp32 = next(r for r in rows if r["model"] == int8.get("quantized_from")
                or (r["model"] != int8["model"] and r["precision"] == "fp32"))
    return fp32, int8, comps


def _top1(row: dict[str, Any]) -> str:
    acc = row.get("accuracy") or {}
    if acc.get("top1") is None:
        return "not measured"
    ci = "" if acc.get("top1_low") is None else f" [{acc['top1_low']:.2f}, {acc['top1_high']:.2f}]"
    return f"{acc['top1']:.2f}%{ci}"


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.2f} MB"


def summary(doc: dict[str, Any], folder: Path) -> list[str]:
    """The summary lines of a bench JSON document whose files are in ``folder``."""
    fp32, int8, comps = _pair(doc)
    env = doc.get("environment", {})
    threads = doc.get("settings", {}).get("threads")
    cpu = f"{env.get('cpu', 'this CPU')}, {env.get('physical_cores', '?')} cores" + (
        f", {threads} threads" if threads else "")
    acc = int8.get("accuracy") or {}
    lines = [f"== edgeres demo: {Path(fp32['model']).stem} fp32 vs int8 on {cpu} =="]
    data = doc.get("settings", {}).get("eval_data") or "the --eval data"
    count = acc.get("count")
    lines.append(f"top-1 on {data}" + (f" ({count:,} images)" if count else "")
                 + f": fp32 {_top1(fp32)}, int8 {_top1(int8)}")
    drop = comps[0].get("drop")
    if drop:
        verdict = ("no measurable loss (the interval holds 0)" if drop["low"] <= 0 <= drop["high"]
                   else "a real loss" if drop["drop"] > 0 else "a real gain")
        lines.append(f"int8 top-1 drop: {drop['drop']:+.2f} points [{drop['low']:+.2f}, "
                     f"{drop['high']:+.2f}] (95%): {verdict}")
    speeds = []
    for c in comps:
        s = c["speedup"]
        ci = "" if s.get("low") is None else f" [{s['low']:.2f}, {s['high']:.2f}]"
        speeds.append(f"{s['estimate']:.2f}x{ci} at batch {c['batch']}")
    lines.append(f"int8 speed vs fp32 on {comps[0]['runtime']} (95% intervals): "
                 + ", ".join(speeds))
    small, big = int8.get("size_bytes"), fp32.get("size_bytes")
    ratio = f" ({big / small:.1f}x smaller)" if small and big else ""
    lines.append(f"size: fp32 {_mb(big)}, int8 {_mb(small)}{ratio}")
    present = [p.name for p in sorted(folder.iterdir()) if p.is_file()] if folder.is_dir() else []
    lines.append(f"files in {folder}/: {', '.join(present) or 'none'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench_json", type=Path, help="the demo's bench.json")
    args = ap.parse_args(argv)
    try:
        doc = json.loads(args.bench_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        print(f"Error: cannot read {args.bench_json} ({e}); run `make demo` first",
              file=sys.stderr)
        return 1
    print("\n".join(["", *summary(doc, args.bench_json.parent)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
