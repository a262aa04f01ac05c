"""The metadata record: exact JSON round trip, forward compatibility, validation, provenance."""

from __future__ import annotations

import dataclasses
import json
from xml.sax.saxutils import quoteattr

import pytest

from edgeres.errors import MetadataError
from edgeres.meta import (
    SCHEMA_VERSION,
    InputSpec,
    ModelMeta,
    PreprocessSpec,
    custom_meta,
    read_ir_meta,
    read_onnx_meta,
)
from edgeres.names import resolve_model_file
from edgeres.zoo import family_labels, family_preprocess


def _meta(**changes) -> ModelMeta:
    meta = ModelMeta(
        name="cifar_resnet20", family="cifar", num_classes=10,
        labels=family_labels("cifar", 10), input=InputSpec(shape=("batch", 3, 32, 32)),
        preprocess=family_preprocess("cifar", (32, 32)), weights_sha256="0" * 64,
    )
    return meta.evolve(**changes)


def test_json_round_trip_is_equal_and_byte_identical():
    """to_json → from_json gives an equal record, and serialising it again gives the same bytes."""
    meta = _meta(provenance=({"step": "export", "input_sha256": None, "opset": 17},))
    text = meta.to_json()
    back = ModelMeta.from_json(text)
    assert back == meta
    assert back.to_json() == text
    assert isinstance(back.preprocess.crop, tuple) and isinstance(back.input.shape, tuple)


def test_round_trip_keeps_nhwc_uint8_and_rectangular_sizes():
    """Non-default input forms (uint8 NHWC, fixed batch, HxW resize) survive the round trip."""
    meta = _meta(
        input=InputSpec(shape=(4, 32, 128, 1), layout="NHWC", dtype="uint8",
                        normalized_in_graph=True),
        preprocess=PreprocessSpec(resize=(32, 128), crop=(32, 128), mean=(0.5,), std=(0.5,),
                                  color="L"),
        precision="fp16",
    )
    back = ModelMeta.from_json(meta.to_json())
    assert back == meta
    assert back.input.channels == 1 and back.input_size == (32, 128)


def test_unknown_fields_are_preserved():
    """Fields written by a later step or newer minor version come back unchanged, in place."""
    d = json.loads(_meta().to_json())
    d["quantization"] = {"method": "qdq", "per_channel": True, "fallback": ["fc"]}
    d["zz_note"] = "kept"
    back = ModelMeta.from_json(json.dumps(d))
    assert back.extra == {"quantization": d["quantization"], "zz_note": "kept"}
    assert json.loads(back.to_json()) == d


def test_newer_schema_version_is_rejected():
    """A record from a newer edgeres schema is refused with an 'upgrade' hint."""
    d = json.loads(_meta().to_json())
    d["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(MetadataError, match="upgrade edgeres"):
        ModelMeta.from_json(json.dumps(d))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("input"),
        lambda d: d.__setitem__("num_classes", "ten"),
        lambda d: d["preprocess"].pop("crop"),
        lambda d: d.__setitem__("schema_version", "1"),
        lambda d: d["input"].__setitem__("colour", "RGB"),
    ],
    ids=["missing input", "bad num_classes", "missing crop", "string version", "unknown key"],
)
def test_malformed_record_is_a_metadata_error(mutate):
    """Missing fields, wrong types and unknown nested keys raise MetadataError, not a crash."""
    d = json.loads(_meta().to_json())
    mutate(d)
    with pytest.raises(MetadataError):
        ModelMeta.from_json(json.dumps(d))


@pytest.mark.parametrize("text", ["not json", "[1, 2]", "null", ""])
def test_non_object_json_is_a_metadata_error(text):
    """Text that is not a JSON object is a MetadataError with a fix-it hint."""
    with pytest.raises(MetadataError, match="re-export"):
        ModelMeta.from_json(text)


def test_with_step_appends_provenance_with_input_hash():
    """with_step adds one entry (step, input hash, details) and leaves the original alone."""
    meta = _meta()
    once = meta.with_step("export", input_sha256="ab" * 32, opset=17)
    twice = once.with_step("quantize", input_sha256="cd" * 32, method="qdq")
    assert meta.provenance == ()
    assert [p["step"] for p in twice.provenance] == ["export", "quantize"]
    first = twice.provenance[0]
    assert first["input_sha256"] == "ab" * 32 and first["opset"] == 17
    assert {"edgeres_version", "time"} <= set(first)
    assert twice.edgeres_version == first["edgeres_version"]
    assert ModelMeta.from_json(twice.to_json()) == twice


def test_ir_from_openvino_converter_carries_the_record(tmp_path):
    """An IR from ov.save_model(ov.convert_model(onnx)) has the record under rt_info/framework."""
    ov = pytest.importorskip("openvino", reason="making an IR needs openvino in the test env")
    onnx = pytest.importorskip("onnx")
    src = resolve_model_file("cifar10")
    xml = tmp_path / "model.xml"
    ov.save_model(ov.convert_model(str(src)), str(xml))
    expected = read_onnx_meta(onnx.load(str(src), load_external_data=False))
    assert expected is not None
    assert read_ir_meta(xml) == expected


def test_ir_top_level_record_is_preferred(tmp_path):
    """A record at rt_info/edgeres (edgeres's own IRs) wins over one under rt_info/framework."""
    top, framework = _meta(name="top"), _meta(name="framework")
    xml = tmp_path / "model.xml"
    xml.write_text(
        f"<net><rt_info><framework><edgeres value={quoteattr(framework.to_json())}/></framework>"
        f"<edgeres value={quoteattr(top.to_json())}/></rt_info></net>"
    )
    assert read_ir_meta(xml) == top
    xml.write_text("<net><rt_info><framework/></rt_info></net>")
    assert read_ir_meta(xml) is None


def test_the_graphs_batch_axis_wins_over_the_records() -> None:
    """A graph fixed (or freed) after export keeps its old record; the batch axis follows the
    graph (preprocessing stays when the size agrees), and a graph of another rank leaves the
    record alone."""
    dynamic = custom_meta(input_size=(32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, num_classes=10)
    assert dynamic.input.shape[0] == "batch"
    fixed = dynamic.fitted_to((1, 3, 32, 32))
    assert fixed.input.shape == (1, 3, 32, 32) and fixed.preprocess == dynamic.preprocess
    assert fixed.fitted_to(("N", 3, 32, 32)).input.shape == ("batch", 3, 32, 32)
    assert fixed.fitted_to((None, 3, 32, 32)).input.shape[0] == "batch"
    assert dynamic.fitted_to(("N", 3, 32, 32)) is dynamic
    assert dynamic.fitted_to((1, 3)) is dynamic and dynamic.fitted_to(None) is dynamic


def test_the_graphs_image_size_wins_and_keeps_the_resize_ratio() -> None:
    """A 224 ImageNet record (resize 256) on a graph fixed to 1x3x320x320 becomes a 320 record
    with resize 366 (the same 7/8 crop); an exact resize scales per axis; NHWC reads H and W
    from axes 1 and 2; a free spatial axis leaves the size alone; a channel count that
    contradicts the record is an error."""
    imagenet = custom_meta(input_size=(224, 224), mean=(0.5,) * 3, std=(0.5,) * 3,
                           num_classes=10).evolve(
        preprocess=PreprocessSpec(resize=256, crop=(224, 224)))
    big = imagenet.fitted_to((1, 3, 320, 320))
    assert big.input.shape == (1, 3, 320, 320) and big.input_size == (320, 320)
    assert big.preprocess.resize == 366 and big.preprocess.mean == imagenet.preprocess.mean
    exact = imagenet.evolve(preprocess=PreprocessSpec(resize=(224, 224), crop=(224, 224)))
    assert exact.fitted_to(("N", 3, 112, 448)).preprocess.resize == (112, 448)
    nhwc = imagenet.evolve(input=dataclasses.replace(imagenet.input, layout="NHWC",
                                                     shape=("batch", 224, 224, 3)))
    assert nhwc.fitted_to(("N", 64, 64, 3)).input.shape == ("batch", 64, 64, 3)
    assert imagenet.fitted_to(("N", 3, "h", "w")) is imagenet
    with pytest.raises(MetadataError, match="takes 1 channel.*says 3.*re-export"):
        imagenet.fitted_to((1, 1, 224, 224))


@pytest.mark.parametrize(("mean", "std"), [((0.5, 0.5, 0.5), (0.2, 0.0, 0.2)),
                                           ((0.5, 0.5), (0.2, 0.2, 0.2)),
                                           ((0.5, 0.5, float("nan")), (0.2, 0.2, 0.2))])
def test_one_mean_std_rule_for_every_way_a_record_is_made(mean, std):
    """Records read from files, custom_meta and zoo_meta refuse the same mean/std, by one rule
    (_record_check.normalisation_problem)."""
    from edgeres._record_check import normalisation_problem
    from edgeres.errors import EdgeresError
    from edgeres.meta import ModelMeta, custom_meta
    from edgeres.zoo import zoo_meta

    assert normalisation_problem(mean, std, 3) is not None
    assert normalisation_problem((0.5,) * 3, (0.2,) * 3, 3) is None
    with pytest.raises(EdgeresError):
        custom_meta(input_size=(32, 32), mean=mean, std=std, num_classes=10)
    with pytest.raises(EdgeresError):
        zoo_meta("cifar_resnet20", mean=mean, std=std)
    good = custom_meta(input_size=(32, 32), mean=(0.5,) * 3, std=(0.2,) * 3, num_classes=10)
    d = good.to_dict()
    d["preprocess"] = {**d["preprocess"], "mean": list(mean), "std": list(std)}
    with pytest.raises(EdgeresError):
        ModelMeta.from_dict(d)
