"""Tests for edgeres.bench.report and the int8 notes, on synthetic runs (no runtime needed)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from PIL import Image

from edgeres.bench import report
from edgeres.bench._notes import hardware_outlook, slower_int8_notes, target_mismatch
from edgeres.bench.env import Environment
from edgeres.bench.results import BenchRow, BenchRun, MemoryUsage, Note, RowAccuracy, RunSettings
from edgeres.bench.stats import LatencyStats
from edgeres.errors import ConfigError

ENV = Environment(cpu="Test CPU", machine="x86_64", isa=("avx2", "avx512f"), physical_cores=2,
                  logical_cores=4, os="Linux", python="3.11.0",
                  versions={"numpy": "2.0", "torch": None, "onnxruntime": "1.20",
                            "openvino": None, "nncf": None, "edgeres": "0.1.0"},
                  load_average=(0.5, 0.4, 0.3), busy_others=0.01)
SETTINGS: dict[str, Any] = {"runtimes": ["ort-cpu"], "batches": [1], "threads": 2, "warmup": 1,
                            "rounds": 2, "iterations": 3, "duration": None,
                            "conditions": "quiet machine"}


def _row(precision: str, runtime: str, p50_ms: float, batch: int = 1, top1: float | None = 90.0,
         **kw: Any) -> BenchRow:
    lat = LatencyStats.from_samples([p50_ms / 1e3] * 3, rounds=[0, 1, 1], batch=batch)
    acc = RowAccuracy(top1=top1, top5=99.0, agreement=100.0 if precision == "fp32" else 97.5,
                   count=40, reference="fp32/ort-cpu")
    return BenchRow(model="m", source="file", runtime=runtime, precision=precision, batch=batch,
                    threads=2, executed_precision=precision, latency=lat, size_bytes=1_000_000,
                    memory=MemoryUsage(60_000_000, 50_000_000, 10_000_000), accuracy=acc,
                    model_file="m.onnx", **kw)


def _run(rows: list[BenchRow], notes: tuple[Note, ...] = ()) -> BenchRun:
    skipped = BenchRow(model="m", source="file", runtime="ort-cuda", precision="fp32", batch=1,
                       threads=2, status="skipped", reason="CUDAExecutionProvider not in build")
    return BenchRun(rows=(*rows, skipped), environment=ENV,
                    settings=RunSettings.from_dict(SETTINGS), notes=notes,
                    created="2025-01-01T00:00:00+00:00")


def _sample_run() -> BenchRun:
    rows = [_row("fp32", "ort-cpu", 2.0), _row("int8", "ort-cpu", 3.0),
            _row("fp32", "openvino-cpu", 1.5), _row("fp32", "ort-cpu", 9.0, batch=8)]
    return _run(rows, tuple(slower_int8_notes(ENV, rows, {})))


def test_json_validates_against_schema(tmp_path: Path) -> None:
    """The JSON file validates against schema.json and keeps every number."""
    path = tmp_path / "b.json"
    report.write_json(_sample_run(), path)
    data = json.loads(path.read_text())
    jsonschema.validate(data, report.schema())
    assert data["schema_version"] == 1
    assert data["rows"][0]["latency"]["p50_ms"] == pytest.approx(2.0)
    assert data["rows"][-1]["status"] == "skipped" and data["rows"][-1]["reason"]
    assert data["environment"]["cpu"] == "Test CPU"


def test_schema_rejects_a_skipped_row_without_reason() -> None:
    """The schema is strict: a skipped row must say why."""
    data = report.to_json_dict(_sample_run())
    data["rows"][-1]["reason"] = None
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, report.schema())


def test_non_finite_numbers_become_null() -> None:
    """inf throughput (a zero-time call) is written as null, keeping the JSON strict."""
    row = _row("fp32", "ort-cpu", 0.0)
    data = report.to_json_dict(_run([row]))
    assert data["rows"][0]["latency"]["throughput_ips"] is None
    json.dumps(data, allow_nan=False)


def test_fastest_marked_per_model_and_batch() -> None:
    """The lowest p50 per (model, batch) is the fastest; skipped rows never are."""
    run = _sample_run()
    assert report.fastest(run.rows) == {2, 3}


def test_int8_slower_note_has_both_p50s() -> None:
    """An int8 row slower than fp32 gets a note quoting both p50s and a likely cause."""
    run = _sample_run()
    (note,) = [n for n in run.notes if n.kind == "int8-slower"]
    text = report.note_text(note, run.rows)
    assert "int8 p50 3.00 ms" in text and "fp32 p50 2.00 ms" in text
    assert "no VNNI" in text  # ENV has AVX2/AVX-512 only


def test_csv_has_one_line_per_row(tmp_path: Path) -> None:
    """CSV: header plus one line per row with raw numbers; empty cells where not measured."""
    path = tmp_path / "b.csv"
    run = _sample_run()
    report.write_csv(run, path)
    lines = list(csv.DictReader(path.open()))
    assert len(lines) == len(run.rows)
    assert float(lines[0]["p50_ms"]) == pytest.approx(2.0)
    assert int(lines[0]["memory_delta_bytes"]) == 10_000_000
    assert lines[-1]["p50_ms"] == "" and lines[-1]["status"] == "skipped"


def test_markdown_has_table_conditions_and_notes(tmp_path: Path) -> None:
    """Markdown: machine block, one table line per row, the fastest marked, notes."""
    path = tmp_path / "b.md"
    run = _sample_run()
    report.write_markdown(run, path)
    text = path.read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(run.rows)
    assert "Test CPU" in text and "Conditions: quiet machine" in text
    assert "| * | m | openvino-cpu | fp32 | 1 | 1.50 |" in text
    assert "skipped: CUDAExecutionProvider not in build" in text
    assert "## Notes" in text


@pytest.mark.parametrize("with_accuracy", [True, False])
def test_plot_png_size(tmp_path: Path, with_accuracy: bool) -> None:
    """The PNG opens with Pillow at the size plot_size promises (scatter or bar chart)."""
    rows = [_row("fp32", "ort-cpu", 2.0, top1=90.0 if with_accuracy else None),
            _row("int8", "ort-cpu", 1.0, top1=89.0 if with_accuracy else None)]
    if not with_accuracy:
        rows = [BenchRow(**{**r.__dict__, "accuracy": None}) for r in rows]
    run = _run(rows)
    path = tmp_path / "b.png"
    report.write_plot(run, path)
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size == report.plot_size(run)


@pytest.mark.parametrize(("suffix", "magic"), [(".svg", b"<?xml"), (".pdf", b"%PDF"),
                                               (".PNG", b"\x89PNG")])
def test_plot_format_follows_the_suffix(tmp_path: Path, suffix: str, magic: bytes) -> None:
    """--plot x.svg writes SVG and x.pdf writes PDF, not PNG bytes under another name."""
    path = tmp_path / f"b{suffix}"
    report.write_plot(_run([_row("fp32", "ort-cpu", 2.0)]), path)
    assert path.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_plot_with_another_suffix_is_refused_early(tmp_path: Path) -> None:
    """A plot suffix naming no supported format fails in check_outputs; nothing is written."""
    with pytest.raises(ConfigError, match=r"b\.gif.*end the name in \.png, \.svg, \.pdf"):
        report.check_outputs([], plot=tmp_path / "b.gif")
    with pytest.raises(ConfigError):
        report.write_plot(_run([_row("fp32", "ort-cpu", 2.0)]), tmp_path / "b.gif")
    assert list(tmp_path.iterdir()) == []


def test_pareto_front() -> None:
    """Only points no other point beats on both latency and accuracy are on the front."""
    from edgeres.bench.plot import pareto

    pts = [(1.0, 80.0), (2.0, 85.0), (3.0, 84.0), (0.5, 70.0), (2.5, 90.0)]
    assert pareto(pts) == [(0.5, 70.0), (1.0, 80.0), (2.0, 85.0), (2.5, 90.0)]


def _acc_row(precision: str, runtime: str, ms: float, top1: float, half: float,
             batch: int = 1) -> BenchRow:
    r = _row(precision, runtime, ms, batch=batch, top1=top1)
    acc = RowAccuracy(top1=top1, top5=99.0, agreement=99.0, count=1000, reference="fp32/ort-cpu",
                   top1_low=top1 - half, top1_high=top1 + half)
    return BenchRow(**{**r.__dict__, "accuracy": acc})


def test_pareto_front_of_the_plot_treats_accuracy_within_intervals_as_ties() -> None:
    """Per batch size, by latency: the fastest row, then only rows clearly more accurate (their
    interval above the last front row's); 0.02 points inside +-0.6 intervals is a tie."""
    from edgeres.bench.plot import front_rows

    field = ("top1", "top-1 accuracy (%)")
    fast = _acc_row("int8", "ort-cpu", 0.3, 90.29, 0.6)
    tie = _acc_row("fp32", "ort-cpu", 0.5, 90.31, 0.6)  # more accurate by noise only
    better = _acc_row("fp32", "openvino-cpu", 0.9, 92.5, 0.5)  # [92.0, 93.0] above [89.69, 90.89]
    best = _acc_row("fp32", "torch-cpu", 2.0, 95.0, 0.4)
    assert front_rows([tie, better, fast, best], field) == [fast, better, best]
    assert front_rows([tie, fast], field) == [fast]
    assert front_rows([tie, fast], None) == [fast]


def test_plot_lists_every_row_by_name_with_its_accuracy(tmp_path: Path) -> None:
    """The bottom panel names every configuration (model, precision, runtime), groups them by
    batch, and writes each row's top-1 and interval beside it; the SVG holds that text."""
    rows = [_acc_row("fp32", "ort-cpu", 0.5, 90.27, 0.6), _acc_row("int8", "ort-cpu", 0.3, 90.29,
                                                                     0.6),
            _acc_row("fp32", "ort-cpu", 2.4, 90.27, 0.6, batch=8)]
    path = tmp_path / "b.svg"
    report.write_plot(_run(rows), path)
    text = path.read_text()
    for words in ("fp32 · ort-cpu", "int8 · ort-cpu", "batch 1", "batch 8", "◆ Pareto",
                  "90.29 [89.69, 90.89]", "top-1 % [95% interval]"):
        assert words in text, words


def test_hardware_outlook() -> None:
    """VNNI/AMX expect an int8 speed-up, plain AVX2 does not, CUDA EP does not, ARM dotprod does."""
    amx = Environment(**{**ENV.__dict__, "isa": ("avx512_vnni", "amx_int8")})
    arm = Environment(**{**ENV.__dict__, "machine": "aarch64", "isa": ("asimddp",)})
    assert hardware_outlook(amx, "ort-cpu")[0] is True
    assert hardware_outlook(ENV, "ort-cpu")[0] is False
    assert hardware_outlook(amx, "ort-cuda")[0] is False
    assert hardware_outlook(arm, "openvino-cpu")[0] is True
    assert hardware_outlook(ENV, "ort-tensorrt")[0] is None


def test_target_mismatch() -> None:
    """A TensorRT-targeted model on CPU, or an x86 one on ARM, is called out."""

    class Meta:
        def __init__(self, target: str) -> None:
            self.extra = {"quantization": {"target": target}}

    arm = Environment(**{**ENV.__dict__, "machine": "aarch64"})
    assert "TensorRT" in (target_mismatch(ENV, "ort-cpu", Meta("tensorrt")) or "")
    assert "aarch64" in (target_mismatch(arm, "ort-cpu", Meta("x86")) or "")
    assert "no VNNI" in (target_mismatch(ENV, "ort-cpu", Meta("x86-vnni")) or "")
    assert "not 'tensorrt'" in (target_mismatch(ENV, "ort-tensorrt", Meta("x86")) or "")
    assert target_mismatch(ENV, "ort-cpu", Meta("x86")) is None
    assert target_mismatch(ENV, "ort-cpu", object()) is None


def test_check_outputs_fails_early(tmp_path: Path) -> None:
    """A missing output directory is an error before any benchmark work."""
    from edgeres.errors import EdgeresError

    with pytest.raises(EdgeresError, match="does not exist"):
        report.check_outputs([tmp_path / "nope" / "b.json"])
    report.check_outputs([tmp_path / "b.json", None], plot=tmp_path / "b.png")


def test_noise_notes_flag_busy_machine_and_unstable_rows() -> None:
    """A busy machine and rows whose round medians disagree by >25% are called out."""
    from edgeres.bench._notes import noise_notes

    stable = _row("fp32", "ort-cpu", 2.0)
    lat = LatencyStats.from_samples([0.001, 0.001, 0.002, 0.002], rounds=[0, 0, 1, 1])
    unstable = BenchRow(**{**stable.__dict__, "runtime": "openvino-cpu", "latency": lat})
    busy = Environment(**{**ENV.__dict__, "busy_others": 0.6})
    notes = noise_notes(busy, [stable, unstable])
    assert [n.kind for n in notes] == ["load", "noisy"]
    assert notes[1].causes == ("fp32/openvino-cpu b1",)
    assert noise_notes(ENV, [stable]) == []
    assert report.note_text(notes[1]).startswith("m: per-round medians")


# --- intervals in the table, JSON and plot --------------------------------------------------


def _timed(ms: float, drift: list[float], batch: int = 1) -> LatencyStats:
    """Ten calls per round at ``ms`` times each round's drift factor (plus a small spread)."""
    samples = [ms / 1e3 * f * (1 + 0.001 * k) for f in drift for k in range(10)]
    return LatencyStats.from_samples(samples, rounds=[r for r in range(len(drift))
                                                      for _ in range(10)], batch=batch)


def _pairs(lost: int, gained: int, n: int = 10_000) -> tuple[list[bool], list[bool]]:
    right = 9000 - lost
    ref = [True] * (right + lost) + [False] * (n - right - lost)
    cand = [True] * right + [False] * lost + [True] * gained + [False] * (n - right - lost - gained)
    return ref, cand


def _eval_run() -> BenchRun:
    """fp32 and int8 of one file on two runtimes plus a default row, accuracy with drops."""
    from edgeres.intervals import paired_drop

    drift = [1.0, 1.2, 0.9, 1.1, 1.0]
    ref = RowAccuracy(top1=90.0, top5=99.0, agreement=100.0, count=10_000, reference="fp32/ort-cpu",
                   top1_low=89.4, top1_high=90.6)

    def int8(lost: int, gained: int) -> RowAccuracy:
        top1 = 90.0 - (lost - gained) / 100
        return RowAccuracy(top1=top1, top5=99.0, agreement=99.0, count=10_000,
                        reference="fp32/ort-cpu", top1_low=top1 - 0.6, top1_high=top1 + 0.6,
                        drop=paired_drop(*_pairs(lost, gained)))

    def row(precision: str, runtime: str, lat: LatencyStats, acc: RowAccuracy, **kw: Any
            ) -> BenchRow:
        return BenchRow(model="out/demo/cifar_resnet20.onnx", source="file", runtime=runtime,
                        precision=precision, batch=1, threads=2, latency=lat, accuracy=acc,
                        executed_precision=kw.pop("executed", precision), **kw)

    rows = [row("fp32", "ort-cpu", _timed(0.66, drift), ref),
            row("fp32", "openvino-cpu", _timed(0.51, drift), ref),
            row("fp32", "openvino-cpu", _timed(0.46, drift), ref, precision_mode="fast",
                executed="bf16"),
            row("int8", "ort-cpu", _timed(0.41, drift), int8(24, 20)),
            row("int8", "openvino-cpu", _timed(0.21, drift), int8(120, 20))]
    return _run(rows)


def _printed(run: BenchRun, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
             wide: bool = False) -> list[str]:
    from edgeres.cli import _bench

    monkeypatch.setenv("COLUMNS", "80")
    _bench._render_bench(run, None, None, None, None, wide=wide)
    return capsys.readouterr().out.splitlines()


def test_compact_table_fits_80_columns(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Piped at COLUMNS=80 every printed line is <= 80 wide and no cell is cut short."""
    lines = _printed(_eval_run(), capsys, monkeypatch)
    assert max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    assert "edgeres bench: cifar_resnet20" in text  # the name, not the path
    assert "openvino-cpu" in text and "fp32→bf16" in text
    rows = [line for line in lines if line.rstrip().endswith(" ok")]
    assert len(rows) == 5
    int8_ort = next(line for line in rows if "int8" in line and "ort-cpu" in line)
    assert "0.04 noise" in int8_ort and "90.04" not in int8_ort
    assert "1.00 pt" in next(line for line in rows if "int8" in line and "openvino" in line)
    assert any("±" in line and "%" in line for line in rows)  # p50 with its interval


def test_skipped_rows_fold_into_one_line_per_reason(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Skipped rows leave the compact table for one 'skipped ...: reason' line."""
    run = _eval_run()
    extra = BenchRow(model="m", source="file", runtime="ort-cuda", precision="int8", batch=1,
                     threads=2, status="skipped", reason="CUDAExecutionProvider not in build")
    run = BenchRun(rows=(*run.rows, extra), environment=ENV,
                   settings=RunSettings.from_dict(SETTINGS))
    text = "\n".join(_printed(run, capsys, monkeypatch))
    assert text.count("CUDAExecutionProvider not in build") == 1
    assert "skipped m fp32/ort-cuda, m int8/ort-cuda: CUDAExecutionProvider" in text


def test_wide_table_keeps_every_column(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """--wide prints all columns (intervals, McNemar p) and the skipped rows in the table."""
    text = "\n".join(_printed(_eval_run(), capsys, monkeypatch, wide=True))
    for col in ("p50 95% CI", "p99 ms", "mem MB", "top-1 95% CI", "McNemar p", "status"):
        assert col in text
    assert "+1.00 [+" in text and "[89.40, 90.60]" in text
    assert max(len(line) for line in text.splitlines()) > 80


def test_comparison_lines_say_faster_only_when_the_interval_excludes_one() -> None:
    """Paired speedups from the same rounds: 1.61x over fp32 ort-cpu, with interval; the
    0.04-point drop is noise, the 1-point drop is real."""
    lines = report.comparison_lines(_eval_run())
    ort = next(line for line in lines if line.startswith("ort-cpu"))
    assert "1.61x [1.61, 1.61] vs fp32: faster" in ort
    assert "top-1 drop +0.04 points" in ort and ort.endswith("noise")
    ov = next(line for line in lines if line.startswith("openvino-cpu"))
    assert "vs fp32 (default): faster" in ov and ov.endswith("real")


def test_speedup_on_noisy_rounds_is_not_called_faster() -> None:
    """Rounds where int8 and fp32 swap places: the interval holds 1, no 'faster'."""
    from edgeres.bench.compare import comparisons

    fp32 = _row("fp32", "ort-cpu", 1.0)
    int8 = _row("int8", "ort-cpu", 1.0)
    fp32 = BenchRow(**{**fp32.__dict__, "latency": _timed(1.0, [1.0, 0.7, 1.3, 0.8, 1.2])})
    int8 = BenchRow(**{**int8.__dict__, "latency": _timed(0.9, [1.2, 0.8, 1.0, 1.3, 0.7])})
    (c,) = comparisons([fp32, int8])
    assert c.speedup.low is not None and c.speedup.high is not None
    assert c.speedup.paired and c.speedup.low < 1 < c.speedup.high
    assert c.speedup.verdict == "no clear difference"


def test_comparisons_pair_runtime_and_source_file() -> None:
    """int8 meets fp32 on its own runtime only; a separate int8 file is compared unpaired with
    the file it was quantized from, never with an unrelated one."""
    from edgeres.bench.compare import comparisons

    fp32 = _row("fp32", "ort-cpu", 2.0)
    ov = _row("fp32", "openvino-cpu", 1.5)
    other = BenchRow(**{**_row("int8", "ort-cpu", 1.0).__dict__, "model": "m-int8.onnx",
                        "quantized_from": "m"})
    stray = BenchRow(**{**other.__dict__, "model": "x-int8.onnx", "quantized_from": None})
    cs = comparisons([fp32, ov, _row("int8", "ort-cpu", 1.0), other, stray])
    assert [(c.model, c.against, c.speedup.paired) for c in cs] == [
        ("m", "fp32", True), ("m-int8.onnx", "fp32 of m", False)]
    assert cs[0].speedup.estimate == pytest.approx(2.0)


def test_json_has_intervals_and_comparisons() -> None:
    """JSON: p50 interval per row, drop with McNemar p, and comparisons; schema-valid."""
    data = report.to_json_dict(_eval_run())
    jsonschema.validate(data, report.schema())
    lat = data["rows"][0]["latency"]
    assert lat["p50_low_ms"] <= lat["p50_ms"] <= lat["p50_high_ms"]
    drop = data["rows"][3]["accuracy"]["drop"]
    assert (drop["lost"], drop["gained"], drop["drop"]) == (24, 20, pytest.approx(0.04))
    assert drop["low"] < 0 < drop["high"]
    comps = data["comparisons"]
    assert {c["baseline"] for c in comps} == {"fp32/ort-cpu", "fp32/openvino-cpu",
                                              "fp32/openvino-cpu (default)"}
    assert all(c["verdict"] == "faster" and c["speedup"]["paired"] for c in comps)
    row = BenchRow.from_dict(data["rows"][3])
    assert row.accuracy is not None and row.accuracy.drop is not None
    assert row.accuracy.drop.lost == 24  # the JSON reads back


def test_plot_with_comparisons(tmp_path: Path) -> None:
    """The plot of an fp32/int8 run has the interval panels above the scatter, at its size."""
    run = _eval_run()
    path = tmp_path / "b.png"
    report.write_plot(run, path)
    with Image.open(path) as img:
        assert img.size == report.plot_size(run)
    assert report.plot_size(run)[1] > report.plot_size(_run([_row("fp32", "ort-cpu", 2.0)]))[1]


def test_a_model_is_not_scored_on_classes_it_lacks() -> None:
    """1000 ImageNet-style labels against CIFAR's 10 names: a reason, before any evaluation;
    CIFAR's own classes, or a subset of them, are fine."""
    from types import SimpleNamespace

    from edgeres.bench._run import _class_mismatch

    cifar = SimpleNamespace(name="cifar10-test", classes=["airplane", "automobile", "bird"] +
                            [f"c{i}" for i in range(7)])
    imagenet = SimpleNamespace(num_classes=1000, labels=[f"class_{i}" for i in range(1000)])
    why = _class_mismatch(cifar, imagenet)
    assert why is not None and "1000 classes" in why and "cifar10-test has 10" in why
    own = SimpleNamespace(num_classes=10, labels=list(cifar.classes))
    assert _class_mismatch(cifar, own) is None
    subset = SimpleNamespace(name="folder", classes=["bird", "airplane"])
    assert _class_mismatch(subset, own) is None


def test_bench_does_not_score_folders_named_otherwise_than_the_labels(tmp_path: Path) -> None:
    """Two folders hound/lorry for a model labelled dog/truck: as many folders as classes no
    longer means "map them in sorted order"; the note names both sides (data.py's rule)."""
    import shutil
    from types import SimpleNamespace

    from edgeres.bench._run import _class_mismatch
    from edgeres.data import open_data
    from edgeres.names import calibration_dir

    for cls, folder in (("dog", "hound"), ("truck", "lorry")):
        (tmp_path / folder).mkdir()
        shutil.copy(next((calibration_dir() / "cifar10-val" / cls).glob("*.jpg")),
                    tmp_path / folder / "a.jpg")
    two = SimpleNamespace(num_classes=2, labels=("dog", "truck"))
    why = _class_mismatch(open_data(tmp_path), two)
    assert why is not None and "hound, lorry" in why and "dog, truck" in why
    (tmp_path / "hound").rename(tmp_path / "Dog")
    (tmp_path / "lorry").rename(tmp_path / "TRUCK")
    assert _class_mismatch(open_data(tmp_path), two) is None
