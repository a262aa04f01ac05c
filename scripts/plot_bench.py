"""Draw the bench plot again from a results JSON (``edgeres bench --json``), without re-running.

    python scripts/plot_bench.py benchmarks/results/demo_bench.json out.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeres.bench import report
from edgeres.bench.env import Environment
from edgeres.bench.results import BenchRow, BenchRun


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="a bench JSON file")
    ap.add_argument("plot", type=Path, help="the picture to write (.png, .svg or .pdf)")
    args = ap.parse_args()
    d = json.loads(args.results.read_text(encoding="utf-8"))
    run = BenchRun(rows=tuple(BenchRow.from_dict(r) for r in d["rows"]),
                   environment=Environment.from_dict(d["environment"]), settings=d["settings"],
                   interrupted=d.get("interrupted", False), created=d.get("created", ""))
    report.write_plot(run, args.plot)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
