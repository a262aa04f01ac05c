"""The typed seams between modules: runtime labels, quantizer details and interface, errors."""

from __future__ import annotations

import typing
from typing import cast

import pytest

from edgeres.bench.config import RUNTIMES, RunSettings, RuntimeLabel
from edgeres.bench.results import NOTE_KINDS, Note
from edgeres.errors import ConfigError, ExportError, QuantizationError
from edgeres.quantize._protocol import Quantizer
from edgeres.quantize._report import QuantDetails, quant_target


def test_runtime_label_round_trips_every_label() -> None:
    """Every bench label parses into (backend, device) and prints back unchanged."""
    for label in RUNTIMES:
        parsed = RuntimeLabel.parse(label)
        assert str(parsed) == label and parsed == tuple(label.split("-", 1))
    assert RuntimeLabel.parse("openvino-gpu").device == "gpu"


@pytest.mark.parametrize("label", ["ort", "onnx-cpu", "ort-npu", ""])
def test_runtime_label_rejects_unknown_names(label: str) -> None:
    """A label that is not backend-device of known names is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="unknown runtime"):
        RuntimeLabel.parse(label)


def test_quant_details_json_keys_per_backend() -> None:
    """ORT details keep ORT's keys, NNCF's keep NNCF's; the record drops report-only keys."""
    ort = QuantDetails(format="QDQ", activation_type="uint8", activation_symmetric=False,
                       reduce_range=True, per_channel=True, pre_processed=True,
                       opset_upgraded=(11, 13), target_why="host", layer_report_images=8)
    assert list(ort.to_dict(record=True)) == [
        "format", "activation_type", "activation_symmetric", "weight_type", "weight_symmetric",
        "reduce_range", "per_channel", "pre_processed", "opset_upgraded"]
    assert ort.to_dict()["opset_upgraded"] == [11, 13] and ort.to_dict()["target_why"] == "host"
    nncf = QuantDetails(format="OpenVINO IR (FakeQuantize)", activation_type="uint8/int8 (by "
                        "sign)", activation_symmetric=True, per_channel=False,
                        preset="performance", target_device="CPU")
    assert "reduce_range" not in nncf.to_dict() and nncf.to_dict()["preset"] == "performance"


def test_quant_details_read_back_from_a_record() -> None:
    """The record's quantization dict reads back into the same details; junk reads as None."""
    class Meta:
        def __init__(self, q: object) -> None:
            self.extra = {"quantization": q}

    d = QuantDetails(format="QDQ", activation_type="int8", activation_symmetric=True,
                     reduce_range=False, pre_processed=False, opset_upgraded=(12, 13))
    assert QuantDetails.from_record(Meta({**d.to_dict(record=True), "target": "x86"})) == d
    assert quant_target(Meta({"target": "x86"})) == "x86"
    assert QuantDetails.from_record(Meta("junk")) is None
    assert QuantDetails.from_record(object()) is None
    odd = QuantDetails.from_record(Meta({"activation_type": 3, "pre_processed": "no"}))
    assert odd is not None and odd.activation_type == "" and odd.pre_processed is None


def test_the_quantization_section_has_one_reader() -> None:
    """QuantDetails.from_record and ModelMeta.quantization read the section through one
    parser (meta.QuantizationInfo): the same flags, the same junk rule."""
    from edgeres.meta import QuantizationInfo

    class Meta:
        extra = {"quantization": {"reduce_range": True, "per_channel": "yes", "format": "QDQ",
                                  "opset_upgraded": [12, 13], "target": "arm"}}

    info, details = QuantizationInfo.of(Meta()), QuantDetails.from_record(Meta())
    assert info is not None and details is not None
    assert (info.reduce_range, info.per_channel, info.opset_upgraded) == (True, None, (12, 13))
    assert (details.reduce_range, details.per_channel, details.format) == (True, True, "QDQ")
    assert info.target == "arm" and QuantizationInfo.of(object()) is None


def test_quantizer_backends_satisfy_the_protocol() -> None:
    """OrtQuantizer and NncfQuantizer have every method and attribute of Quantizer."""
    from edgeres.quantize._nncf import NncfQuantizer
    from edgeres.quantize._ort import OrtQuantizer

    members = [n for n in vars(Quantizer) if not n.startswith("_")]
    members += list(typing.get_type_hints(Quantizer, include_extras=False, localns={
        "ModelMeta": object, "CalibrationSet": object, "QuantDetails": object, "np": object}))
    for cls in (OrtQuantizer, NncfQuantizer):
        assert cls.details.__annotations__["return"] == "QuantDetails"
        missing = [n for n in members if not hasattr(cls, n)
                   and n not in ("meta", "calibration", "layers", "op_types")]
        assert missing == [], (cls.__name__, missing)
        # set in __init__: checked on the source, not an instance (that needs a model)
        import inspect

        init = inspect.getsource(cls.__init__)
        for attr in ("meta", "calibration", "layers", "op_types"):
            assert f"self.{attr}" in init, (cls.__name__, attr)


def test_invalid_options_are_one_error_class() -> None:
    """Bad export and quantize options are ConfigErrors, the one class of an invalid option."""
    from edgeres.export import ExportConfig
    from edgeres.quantize import QuantConfig

    with pytest.raises(ConfigError) as e:
        QuantConfig(samples=0)
    assert type(e.value) is ConfigError and not isinstance(e.value, QuantizationError)
    with pytest.raises(ConfigError) as e:
        ExportConfig(opset=12)
    assert type(e.value) is ConfigError and not isinstance(e.value, ExportError)


def test_note_kinds_are_a_closed_set() -> None:
    """Every kind a Note is built with in edgeres is in NoteKind."""
    import pathlib
    import re

    root = pathlib.Path(__file__).parents[1] / "edgeres"
    used = {m for f in root.rglob("*.py")
            for m in re.findall(r'Note\(\s*"([a-z0-9-]+)"', f.read_text())}
    assert used and used <= set(NOTE_KINDS), used - set(NOTE_KINDS)
    assert Note("load", "busy").kind == "load"


def test_cli_rewrites_parameter_names_into_flags() -> None:
    """A library message naming parameters reaches the user with the command's flags."""
    from edgeres.cli import _as_flags

    assert _as_flags("max_drop needs validation data: pass val DATA (e.g. cifar10-val)") == \
        "--max-drop needs validation data: pass --val DATA (e.g. cifar10-val)"
    assert _as_flags("give mean and std together") == "give --mean and --std together"
    assert _as_flags("eval_data is unreadable; 300 samples of cifar10-val") == \
        "--eval is unreadable; 300 samples of cifar10-val"


def test_old_names_are_gone() -> None:
    """0.1.0 keeps no alias of a renamed name (nothing was released under the old ones)."""
    from edgeres import calibration, export, meta
    from edgeres.bench import config, results
    from edgeres.quantize import _report

    gone = {results: "Accuracy", _report: "Accuracy", meta: "default_preprocess",
            calibration: "model_record"}
    assert "zoo_meta" not in export.__all__  # edgeres.zoo's
    assert [m.__name__ for m, name in gone.items() if hasattr(m, name)] == []
    assert not hasattr(config.RunSettings, "__getitem__")


def test_loaded_configuration_is_not_a_deployment_target() -> None:
    """bench's loaded configuration is `Loaded`, loaded by `load_config`; the old names
    (`Target`, `load_target`) are gone, and `Unavailable` means "skipped" only."""
    import inspect

    from edgeres.bench import _models, _runners

    assert not hasattr(_runners, "Target") and not hasattr(_runners, "load_target")
    assert _runners.load_config.__annotations__.get("return") == "Loaded"
    assert list(inspect.signature(_models.Unavailable).parameters) == ["reason"]
    assert (_models.Unavailable("x").status, _models.RowFailed("x").status) == ("skipped", "failed")


def test_run_settings_are_typed_and_write_the_same_json() -> None:
    """BenchConfig.settings is a RunSettings whose to_dict is the JSON object of before."""
    import dataclasses

    from edgeres.bench.config import BenchConfig, RunSettings

    config = BenchConfig(iterations=3, batches=(1, 8), conditions="quiet")
    settings = config.settings(("ort-cpu",), 2)
    before = {**dataclasses.asdict(config), "runtimes": ["ort-cpu"], "threads": 2,
              "duration": None, "batches": [1, 8], "cache": str(config.cache_root),
              "precisions": None}
    assert isinstance(settings, RunSettings)
    assert list(settings.to_dict().items()) == list(before.items())  # values and key order
    assert settings.threads == 2 and settings.batches == (1, 8)
    assert settings.iterations == 3 and settings.conditions == "quiet"
    assert RunSettings.from_dict(settings.to_dict()) == settings
    cluster = settings.evolve(cluster="ray://h", nodes=("ort-cpu",), node_ids={"ort-cpu": "n1"})
    assert cluster.to_dict() == {**before, "cluster": "ray://h", "nodes": ["ort-cpu"],
                                 "node_ids": {"ort-cpu": "n1"}}
    assert cluster.node_ids["ort-cpu"] == "n1"


def test_run_settings_keep_a_partial_dict_as_it_came() -> None:
    """A BenchRun built with part of a settings dict reads it typed and writes it back as is."""
    from edgeres.bench.env import Environment
    from edgeres.bench.results import BenchRun

    part = {"threads": 3, "rounds": 1, "warmup": 0, "iterations": 1, "per_model_eval": {"m": None}}
    machine = Environment(cpu="c", machine="x86_64", isa=(), physical_cores=1, logical_cores=1,
                          os="Linux", python="3.12")
    # A report's settings object as read from JSON: BenchRun types it itself (the dict is the
    # input under test, so the annotation is overruled here on purpose).
    run = BenchRun(rows=(), environment=machine, settings=cast("RunSettings", part))
    assert run.settings.threads == 3 and run.settings.duration is None
    assert run.settings.extra == {"per_model_eval": {"m": None}}
    assert run.settings.to_dict() == part and list(run.settings.to_dict()) == list(part)
