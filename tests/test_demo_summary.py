"""The last step of `make demo`: scripts/demo_summary.py reads a real bench JSON and prints the
figures it holds (top-1 with intervals, the drop, speedups, sizes, where the files are)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeres.cli import cli

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "demo_summary.py"


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real run of the demo's bench: the shipped fp32 and int8 files on ort-cpu."""
    out = tmp_path_factory.mktemp("demo") / "bench.json"
    result = CliRunner().invoke(cli, [
        "bench", "cifar10", "cifar10-int8", "--runtime", "ort-cpu", "--batch", "1,2",
        "--iterations", "3", "--rounds", "3", "--warmup", "1", "--no-memory",
        "--eval", "cifar10-test", "--limit", "40", "--json", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_summary_prints_the_json_figures_in_a_few_lines(bench_json: Path) -> None:
    """Six short lines: top-1 of both files with their intervals, the paired drop, one speedup
    with its interval per batch, both sizes and the folder's files, all as the JSON says."""
    out = subprocess.run([sys.executable, str(SCRIPT), str(bench_json)], capture_output=True,
                         text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert len(lines) == 6 and lines[0].startswith("== edgeres demo:")
    doc = json.loads(bench_json.read_text())
    rows = {(Path(r["model"]).name, r["batch"]): r for r in doc["rows"]}
    fp32 = next(r for (m, b), r in rows.items() if b == 1 and r["precision"] == "fp32")
    int8 = next(r for (m, b), r in rows.items() if b == 1 and r["precision"] == "int8")
    acc = int8["accuracy"]
    assert (f"fp32 {fp32['accuracy']['top1']:.2f}% [{fp32['accuracy']['top1_low']:.2f}, "
            in lines[1]) and f"int8 {acc['top1']:.2f}% [" in lines[1] and "40 images" in lines[1]
    drop = doc["comparisons"][0]["drop"]
    assert f"{drop['drop']:+.2f} points [{drop['low']:+.2f}, {drop['high']:+.2f}]" in lines[2]
    for c in doc["comparisons"]:
        s = c["speedup"]
        assert f"{s['estimate']:.2f}x [{s['low']:.2f}, {s['high']:.2f}] at batch {c['batch']}" \
            in lines[3]
    assert f"int8 {int8['size_bytes'] / 1e6:.2f} MB" in lines[4]
    assert lines[5] == f"files in {bench_json.parent}/: bench.json"


def test_make_demo_ends_with_the_summary() -> None:
    """The Makefile's demo target runs the summary script last, on the bench JSON it wrote."""
    text = (ROOT / "Makefile").read_text()
    demo = text.split("\ndemo:")[1].split("\n\n")[0].strip().splitlines()
    assert "scripts/demo_summary.py $(DEMO)/bench.json" in demo[-1]
    assert any("--json $(DEMO)/bench.json" in line for line in demo)
