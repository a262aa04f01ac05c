"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny test tensors: one thread is as fast, and does not fight a busy machine's cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shipped_fp16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped checkpoint exported once per session by `edgeres export --fp16` (float32
    in and out); tests read it and never change it."""
    pytest.importorskip("torch")
    from click.testing import CliRunner

    from edgeres.cli import cli

    dst = tmp_path_factory.mktemp("fp16") / "cifar_resnet20-fp16.onnx"
    result = CliRunner().invoke(cli, ["export", "cifar_resnet20", "--weights", "cifar10",
                                      "--fp16", "-o", str(dst)])
    assert result.exit_code == 0, result.output
    return dst


@pytest.fixture(scope="session")
def shipped_ir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped fp32 model as an fp32 OpenVINO IR with the record in rt_info, made once per
    session; tests read it and never change it."""
    pytest.importorskip("openvino")
    import openvino as ov

    from edgeres import runtime
    from edgeres.meta import METADATA_KEY
    from edgeres.names import resolve_model_file

    src = resolve_model_file("cifar10")
    model = ov.Core().read_model(str(src))
    model.set_rt_info(runtime.load(src).meta.to_json(), [METADATA_KEY])
    dst = tmp_path_factory.mktemp("ir") / "model.xml"
    ov.save_model(model, str(dst), compress_to_fp16=False)
    return dst


@pytest.fixture
def reshaped_shipped(tmp_path: Path) -> Callable[..., Path]:
    """Make copies of the shipped fp32 ONNX model whose graph input takes ``size`` x ``size``
    images (and ``channels`` channels) while the record stays at 3x32x32: what shape-fixing
    tools such as ``onnxruntime.tools.make_dynamic_shape_fixed`` leave behind."""
    import onnx

    from edgeres.names import resolve_model_file

    def make(size: int, channels: int = 3) -> Path:
        proto = onnx.load(str(resolve_model_file("cifar10")))
        del proto.graph.value_info[:]  # inferred 32x32 shapes would contradict the new input
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        dims[1].dim_value, dims[2].dim_value, dims[3].dim_value = channels, size, size
        dst = tmp_path / f"shipped-{channels}x{size}x{size}.onnx"
        onnx.save(proto, str(dst))
        return dst

    return make


# --- tests that should be marked slow --------------------------------------------------------
# CONTRIBUTING: a test over about 2 s is marked slow, so `make test-fast` stays under a minute.
# This hook names the unmarked ones after each run (their setup counts: a module fixture is
# paid by the first test that asks for it). It reports rather than fails: seconds depend on
# the machine's load, and no test asserts on time (R12).
SLOW_SECONDS = 2.0
_unmarked_slow: dict[str, float] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Add up the setup and call seconds of every test not marked slow."""
    yield
    if call.when in ("setup", "call") and item.get_closest_marker("slow") is None:
        _unmarked_slow[item.nodeid] = _unmarked_slow.get(item.nodeid, 0.0) + call.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the unmarked tests that took longer than ``SLOW_SECONDS``, slowest first."""
    over = sorted(((s, n) for n, s in _unmarked_slow.items() if s > SLOW_SECONDS), reverse=True)
    if over:
        terminalreporter.section(f"not marked slow but over {SLOW_SECONDS:g} s (setup + call)")
        for seconds, nodeid in over:
            terminalreporter.line(f"{seconds:6.2f} s  {nodeid}")
