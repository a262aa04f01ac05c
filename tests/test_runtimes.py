"""Tests for the runtime registry (edgeres.runtimes): each runtime one module, looked up by
name and by file, and a registered runtime whose library is missing never a traceback."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import one_error

from edgeres import names, runtime, runtimes
from edgeres.bench import BenchConfig, config, run_bench
from edgeres.bench import _runners as runners
from edgeres.cli import cli
from edgeres.errors import BackendNotAvailable, ModelFileError

MODEL = names.resolve_model_file("cifar10")
_INSTALL = "fakert is not installed; pip install fake-runtime"


class _FakeRuntime:
    """A runtime the registry lists whose library is not installed here (as LiteRT may be)."""

    name = "fake"
    devices: tuple[str, ...] = ("cpu",)
    suffixes: tuple[str, ...] = (".fake",)
    dist = "fake-runtime"
    min_version = "1.0"

    def unavailable(self) -> str | None:
        return _INSTALL

    def load(self, path, options, meta=None):  # noqa: ANN001, ANN201 - never reached
        msg = "load() of an unavailable runtime was called"
        raise AssertionError(msg)

    def read_record(self, path: Path) -> str | None:
        msg = "read_record() of an unavailable runtime was called"
        raise AssertionError(msg)

    def companion_files(self, path: Path) -> list[Path]:
        return []

    def quantizer(self, src, calibration, spec, config):  # noqa: ANN001, ANN201
        msg = "quantizer() of an unavailable runtime was called"
        raise AssertionError(msg)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[_FakeRuntime]:
    """Registers ``edgeres.runtimes.fake`` (one module, one registry entry) and its bench label."""
    module = types.ModuleType("edgeres.runtimes.fake")
    module.RUNTIME = _FakeRuntime()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "edgeres.runtimes.fake", module)
    monkeypatch.setattr(runtimes, "MODULES", (*runtimes.MODULES, "fake"))
    monkeypatch.setattr(runtimes, "RUNTIME_NAMES", runtimes.MODULES)
    monkeypatch.setattr(config, "BACKENDS", (*config.BACKENDS, "fake"))
    monkeypatch.setattr(config, "RUNTIMES", (*config.RUNTIMES, "fake-cpu"))
    monkeypatch.setattr("edgeres.bench._run.RUNTIMES", config.RUNTIMES)
    runners.unavailable_reason.cache_clear()
    yield module.RUNTIME
    runners.unavailable_reason.cache_clear()


def test_every_registered_runtime_has_the_contract_fields() -> None:
    """Each listed module's RUNTIME names itself, its devices, files and tested minimum."""
    for name in runtimes.RUNTIME_NAMES:
        rt = runtimes.get(name)
        assert rt.name == name and rt.devices and rt.suffixes[0].startswith(".")
        assert rt.dist and rt.min_version[0].isdigit()
        for method in ("unavailable", "load", "read_record", "companion_files", "quantizer"):
            assert callable(getattr(rt, method)), (name, method)


@pytest.mark.parametrize(("file", "backend"), [("m.onnx", "ort"), ("m.XML", "openvino")])
def test_for_file_picks_the_runtime_of_the_format(file: str, backend: str) -> None:
    """.onnx is ONNX Runtime's format (OpenVINO reads it too), .xml OpenVINO's."""
    assert runtimes.for_file(Path(file)).name == backend
    assert [r.name for r in runtimes.readers(Path("m.onnx"))] == ["ort", "openvino"]


def test_unknown_names_and_files_are_one_line_errors() -> None:
    """An unknown backend or suffix is an EdgeresError naming what is known."""
    with pytest.raises(BackendNotAvailable, match="unknown backend 'tflite'; use one of ort"):
        runtimes.get("tflite")
    with pytest.raises(ModelFileError, match=r"not a model file; pass an \.onnx file, an "
                       r"OpenVINO IR \.xml, a \.tflite file or a \.pte file"):
        runtimes.for_file(Path("m.pt"))


def test_companion_files_travel_with_the_model() -> None:
    """An IR carries its .bin; an ONNX file nothing."""
    assert runtimes.get("openvino").companion_files(Path("a/m.xml")) == [Path("a/m.bin")]
    assert runtimes.get("ort").companion_files(Path("a/m.onnx")) == []


def test_uninstalled_runtime_is_a_skipped_bench_row_with_the_install_line(
        fake: _FakeRuntime) -> None:
    """bench: the fake runtime's row is skipped with its install line; the ORT row still runs."""
    assert runners.unavailable_reason("fake-cpu") == _INSTALL
    run = run_bench([str(MODEL)], BenchConfig(runtimes=("ort-cpu", "fake-cpu"), iterations=3,
                                              rounds=2, warmup=1, memory=False))
    rows = {r.runtime: r for r in run.rows}
    assert rows["fake-cpu"].status == "skipped" and rows["fake-cpu"].reason == _INSTALL
    assert rows["ort-cpu"].status == "ok" and rows["ort-cpu"].latency is not None


def test_uninstalled_runtime_is_one_error_elsewhere(fake: _FakeRuntime, tmp_path: Path) -> None:
    """runtime.load and `edgeres predict` on its file: one line with the install line."""
    model = tmp_path / "m.fake"
    model.write_bytes(b"not read")
    with pytest.raises(BackendNotAvailable, match="pip install fake-runtime"):
        runtime.load(model)
    with pytest.raises(BackendNotAvailable, match="pip install fake-runtime"):
        runtime.load(MODEL.parent / MODEL.name, backend="fake")  # type: ignore[arg-type]
    image = sorted((names.calibration_dir() / "cifar10-calib").rglob("*.jpg"))[0]
    result = CliRunner().invoke(cli, ["predict", str(model), str(image)])
    one_error(result, "pip install fake-runtime")


def test_a_quantizer_is_made_inside_quantize_only(tmp_path: Path) -> None:
    """A runtime's quantizer() keeps its files in quantize()'s temporary folder; called on its
    own it says so in one line instead of writing somewhere else."""
    from edgeres.errors import QuantizationError
    from edgeres.quantize._protocol import using_workdir, workdir

    with pytest.raises(QuantizationError, match="inside edgeres.quantize.quantize"):
        runtimes.get("ort").quantizer(MODEL, None, None, None)  # type: ignore[arg-type]
    with using_workdir(tmp_path):
        assert workdir() == tmp_path
    with pytest.raises(QuantizationError):
        workdir()


@pytest.mark.parametrize(("suffix", "modules", "extra"), [
    (".tflite", ("ai_edge_litert", "ai_edge_litert.interpreter"), "device-litert"),
    (".pte", ("executorch", "executorch.runtime"), "executorch"),
])
def test_a_missing_edge_runtime_names_its_install_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str,
        modules: tuple[str, ...], extra: str) -> None:
    """Without its library, loading a .tflite/.pte is one line naming the extra to install,
    in the library and in `edgeres predict` (whether or not the library is installed here)."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)
    model = tmp_path / f"m{suffix}"
    model.write_bytes(b"\x00" * 64)
    with pytest.raises(BackendNotAvailable, match=re.escape(f"pip install 'edgeres[{extra}]'")):
        runtime.load(model)
    image = next((names.calibration_dir() / "cifar10-val" / "cat").iterdir())
    one_error(CliRunner().invoke(cli, ["predict", str(model), str(image)]), f"edgeres[{extra}]")
