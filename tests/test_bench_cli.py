"""CLI tests for `edgeres bench`: artefacts end to end, one-line errors, Ctrl-C plumbing."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from PIL import Image

from edgeres import names
from edgeres.bench import report
from edgeres.cli import cli

FAST = ["--iterations", "2", "--rounds", "2", "--warmup", "1", "--no-memory"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny labelled ImageFolder: 3 validation images of each of two classes."""
    root = tmp_path_factory.mktemp("eval")
    for cls in ("dog", "truck"):
        (root / cls).mkdir()
        for img in sorted((names.calibration_dir() / "cifar10-val" / cls).glob("*.jpg"))[:3]:
            shutil.copy(img, root / cls / img.name)
    return root


@pytest.mark.slow
def test_bench_writes_every_artefact(tmp_path: Path, folder: Path) -> None:
    """JSON (schema-valid), CSV, markdown and PNG hold the same rows, skipped GPU included."""
    out = {k: tmp_path / f"b.{k}" for k in ("json", "csv", "md", "png")}
    result = CliRunner().invoke(cli, [
        "bench", "cifar10", "--runtime", "ort-cpu,openvino-cpu,ort-cuda", "--batch", "1,2",
        "--eval", str(folder), *FAST, "--conditions", "test run",
        "--json", str(out["json"]), "--csv", str(out["csv"]), "--markdown", str(out["md"]),
        "--plot", str(out["png"])])
    assert result.exit_code == 0, result.output
    data = json.loads(out["json"].read_text())
    jsonschema.validate(data, report.schema())
    rows = data["rows"]
    # ort-cpu, openvino-cpu (pinned f32 + default precision), ort-cuda; two batch sizes each
    assert len(rows) == 8
    assert {r["runtime"] for r in rows} == {"ort-cpu", "openvino-cpu", "ort-cuda"}
    cuda = [r for r in rows if r["runtime"] == "ort-cuda"]
    if cuda[0]["status"] == "skipped":
        assert "CUDAExecutionProvider" in cuda[0]["reason"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok and all(r["latency"]["count"] == 4 and r["accuracy"]["count"] == 6 for r in ok)
    assert data["settings"]["conditions"] == "test run"
    lines = list(csv.DictReader(out["csv"].open()))
    assert [float(x["p50_ms"]) for x in lines if x["status"] == "ok"] == pytest.approx(
        [r["latency"]["p50_ms"] for r in ok])
    md = out["md"].read_text()
    assert md.count("| cifar10 |") == 8 and "Conditions: test run" in md
    with Image.open(out["png"]) as img:
        # bench.plot: one line per measured row (26 px) below the panels' titles and legend
        assert img.size[0] == 1100 and img.size[1] >= 150 + 26 * len(ok)
    assert "edgeres bench" in result.output and "wrote" in result.output


@pytest.mark.parametrize(("args", "needle"), [
    (["resnet19"], "unknown model 'resnet19'"),
    (["cifar10", "--runtime", "ort-gpu"], "unknown runtime 'ort-gpu'"),
    (["cifar10", "--batch", "1,x"], "invalid batch list"),
    (["cifar10", "--precision", "int4"], "unknown precision"),
    (["cifar10", "--eval", "nowhere"], "neither an existing path"),
    (["cifar10", "--limit", "5"], "--limit needs --eval"),
    (["cifar10", "--precision", "int4"], "choose from fp32, fp16, bf16, int8"),
    (["cifar10", "--duration", "inf"], "--duration inf is invalid"),
    (["cifar10", "--duration", "nan"], "--duration nan is invalid"),
    (["cifar10", "--plot", "b.gif"], "end the name in .png, .svg, .pdf"),
])
def test_bad_input_is_one_line_error(tmp_path: Path, args: list[str], needle: str) -> None:
    """Bad input: exit 1, one Error: line, no traceback, no output file left behind."""
    out = tmp_path / "b.json"
    result = CliRunner().invoke(cli, ["bench", *args, *FAST, "--json", str(out)])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and needle in errors[0], result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_missing_output_directory_fails_before_running(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An unwritable --json path is reported before any benchmark work starts."""
    called = []
    monkeypatch.setattr("edgeres.bench.run_bench", lambda *a, **k: called.append(1))
    result = CliRunner().invoke(cli, ["bench", "cifar10", "--json", str(tmp_path / "x" / "b.json")])
    assert result.exit_code == 1 and "does not exist" in result.output and not called


def test_interrupted_run_saves_partial_results(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C: the partial results are still written and the exit code is 130."""
    from edgeres.bench import BenchRow, BenchRun, LatencyStats, RunSettings
    from edgeres.bench.env import describe_machine

    row = BenchRow(model="m.onnx", source="file", runtime="ort-cpu", precision="fp32", batch=1,
                   threads=3, partial=True, latency=LatencyStats.from_samples([0.001]))
    run = BenchRun(rows=(row,), environment=describe_machine(), interrupted=True,
                   settings=RunSettings.from_dict({"threads": 3, "rounds": 1, "warmup": 0,
                                                   "iterations": 1}))
    calls = []

    def fake_run_bench(models, config, record=None):
        calls.append((models, config))
        return run

    monkeypatch.setattr("edgeres.bench.run_bench", fake_run_bench)
    out = tmp_path / "b.json"
    result = CliRunner().invoke(cli, ["bench", "m.onnx", "--batch", "1,8", "--threads", "3",
                                      "--json", str(out)])
    assert result.exit_code == 130
    assert json.loads(out.read_text())["interrupted"] is True
    (models, config), = calls
    assert models == ("m.onnx",) and config.batches == (1, 8) and config.threads == 3


def test_help_has_an_example() -> None:
    """`edgeres bench --help` documents the options and ends with an example."""
    result = CliRunner().invoke(cli, ["bench", "--help"])
    assert result.exit_code == 0
    assert "--precision" in result.output and "edgeres bench resnet18" in result.output


def test_eval_maps_folders_by_name_refuses_strangers_and_takes_a_class_map(
        tmp_path: Path, folder: Path) -> None:
    """eval on Dog/TRUCK scores as on dog/truck; folders hound/lorry are refused in one line
    naming both sides (they were silently classes 0 and 1); --class-map FILE maps them back."""
    from helpers import one_error

    def top1(root: Path, *extra: str) -> str:
        result = CliRunner().invoke(cli, ["eval", "cifar10", "--data", str(root), *extra])
        assert result.exit_code == 0, result.output
        return result.output.splitlines()[-1]

    reference = top1(folder)
    cased, strangers = tmp_path / "cased", tmp_path / "strangers"
    for root, names_ in ((cased, ("Dog", "TRUCK")), (strangers, ("hound", "lorry"))):
        for cls, new in zip(("dog", "truck"), names_, strict=True):
            shutil.copytree(folder / cls, root / new)
    assert top1(cased) == reference and "top-1 " in reference
    line = one_error(CliRunner().invoke(cli, ["eval", "cifar10", "--data", str(strangers)]),
                     "hound, lorry", "dog", "--class-map")
    assert "airplane" in line
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"hound": "dog", "lorry": 9}))
    assert top1(strangers, "--class-map", str(mapping)) == reference


def test_eval_takes_the_record_options_of_the_other_commands(tmp_path: Path,
                                                              folder: Path) -> None:
    """A record-less copy of the shipped model scores as the model when eval is told its
    preprocessing and labels with --mean/--std/--labels, as its error message suggests."""
    import onnx

    from edgeres.meta import CIFAR10_LABELS, CIFAR10_MEAN, CIFAR10_STD

    bare = onnx.load(str(names.resolve_model_file("cifar10")))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    (tmp_path / "labels.txt").write_text("\n".join(CIFAR10_LABELS) + "\n")
    stated = ["--mean", ",".join(map(str, CIFAR10_MEAN)), "--std", ",".join(map(str, CIFAR10_STD)),
              "--labels", str(tmp_path / "labels.txt")]
    own = CliRunner().invoke(cli, ["eval", "cifar10", "--data", str(folder)])
    got = CliRunner().invoke(cli, ["eval", str(tmp_path / "bare.onnx"), "--data", str(folder),
                                   *stated])
    assert got.exit_code == 0, got.output
    score = own.output.splitlines()[-1].split(": top-1 ")[1]
    assert got.output.splitlines()[-1].split(": top-1 ")[1] == score


def test_notes_say_a_zoo_model_has_random_weights_and_what_int8_calibrated_on(
        tmp_path: Path) -> None:
    """bench resnet50 --precision int8 says the weights are random and the int8 rows were
    calibrated on --calib; a given fp32 file's int8 rows say what they calibrated on."""
    from edgeres.bench import BenchConfig, source_notes
    from edgeres.bench._models import resolve_model

    config = BenchConfig(precisions=("fp32", "int8"), calib="cifar10-val")
    zoo, file = (resolve_model(m, tmp_path) for m in ("resnet50", "cifar10"))
    notes = {n.model: n for n in source_notes([zoo, file], config)}
    assert "random weights" in notes["resnet50"].text and "cifar10-val" in notes["resnet50"].text
    assert notes["cifar10"].text.endswith("calibrated on cifar10-val")
    assert source_notes([file], BenchConfig()) == []
    assert report.note_text(notes["resnet50"]).startswith("resnet50: a zoo name")


def test_eval_of_a_two_class_model_prints_no_top5_and_counts_in_words(
        tmp_path: Path, folder: Path) -> None:
    """A 2-class model's eval line has no top-5 (100% by construction) and one image is
    "1 image"; the 10-class line keeps its top-5."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "w"], ["logits"], transB=1)],
        "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(rng.standard_normal((2, 3)).astype(np.float32), "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
              str(tmp_path / "two.onnx"))
    (tmp_path / "labels.txt").write_text("dog\ntruck\n")
    one = tmp_path / "one"
    (one / "dog").mkdir(parents=True)
    shutil.copy(next((folder / "dog").iterdir()), one / "dog" / "a.jpg")
    result = CliRunner().invoke(cli, ["eval", str(tmp_path / "two.onnx"), "--data", str(one),
                                      "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5",
                                      "--labels", str(tmp_path / "labels.txt")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{one}: 1 image (0 unreadable skipped)")
    assert "top-1" in lines[1] and "top-5" not in lines[1]
    ten = CliRunner().invoke(cli, ["eval", "cifar10", "--data", str(one)])
    assert "top-5 100.00%" in ten.output.splitlines()[-1]
def test_every_bench_option_comes_from_bench_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each BenchConfig field with help is a bench option with its flag and default, and the
    values given on the command line reach BenchConfig under the field's name."""
    import dataclasses

    from edgeres.bench.config import BenchConfig, option_specs

    specs = option_specs()
    assert [s.name for s in specs] == [f.name for f in dataclasses.fields(BenchConfig)
                                       if "help" in f.metadata]
    flags = {s.name: s.flag for s in specs}
    assert flags["runtimes"] == "--runtime" and flags["eval_data"] == "--eval"
    assert flags["seed"] == "--seed" and flags["torch_compile"] == "--torch-compile"
    bench = cli.commands["bench"]
    options = {p.name: p for p in bench.params}
    for spec in specs:
        assert spec.flag in options[spec.name].opts and options[spec.name].help == spec.help
    seen: list[BenchConfig] = []

    def fake_run_bench(models: object, config: BenchConfig, **kwargs: object) -> None:
        seen.append(config)
        raise KeyboardInterrupt  # stop before rendering: only the config is checked

    monkeypatch.setattr("edgeres.bench.run_bench", fake_run_bench)
    CliRunner().invoke(cli, ["bench", "cifar10", "--runtime", "ort-cpu", "--batch", "1,4",
                             "--seed", "7", "--no-memory", "--eval", "cifar10-val",
                             "--limit", "20", "--duration", "0.5"])
    assert seen == [BenchConfig(runtimes=("ort-cpu",), batches=(1, 4), seed=7, memory=False,
                                eval_data="cifar10-val", limit=20, duration=0.5)]
    assert BenchConfig() == BenchConfig(**{s.name: s.default for s in specs})


def test_ort_spinning_is_a_bench_option_recorded_in_every_output(tmp_path: Path) -> None:
    """--ort-spinning/--no-ort-spinning come from BenchConfig's field (in --help, with its help
    and default), reach every ONNX Runtime session, and the JSON (settings and each row), the
    CSV and the markdown say which was used."""
    from edgeres.bench.config import BenchConfig, option_specs
    from edgeres.runtime.backends import DEFAULT_SPIN, SPIN_HELP

    spec = next(s for s in option_specs() if s.name == "ort_spinning")
    assert (spec.flag, spec.kind, spec.help, spec.default) == (
        "--ort-spinning", "bool", SPIN_HELP, DEFAULT_SPIN)
    assert BenchConfig().ort_spinning is DEFAULT_SPIN is False  # edgeres' default: off
    helped = " ".join(CliRunner().invoke(cli, ["bench", "--help"]).output.split())
    assert "--ort-spinning / --no-ort-spinning" in helped
    assert " ".join(SPIN_HELP.split()) in helped
    for flag, spin in (("--ort-spinning", True), ("--no-ort-spinning", False)):
        out = {k: tmp_path / f"{flag}.{k}" for k in ("json", "csv", "md")}
        result = CliRunner().invoke(cli, [
            "bench", "cifar10", "--runtime", "ort-cpu", flag, *FAST, "--json", str(out["json"]),
            "--csv", str(out["csv"]), "--markdown", str(out["md"])])
        assert result.exit_code == 0, result.output
        data = json.loads(out["json"].read_text())
        jsonschema.validate(data, report.schema())
        assert data["settings"]["ort_spinning"] is spin
        assert [r["details"]["spinning"] for r in data["rows"]] == [spin]
        assert [x["spinning"] for x in csv.DictReader(out["csv"].open())] == [str(spin)]
        assert f"(ONNX Runtime spinning {'on' if spin else 'off'})" in out["md"].read_text()
