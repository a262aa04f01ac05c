"""The commands that make or describe a model file: ``models``, ``attach``, ``export`` and
``info`` (with its record rendering)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import click

from edgeres.cli._group import cli
from edgeres.cli._options import (
    _batch,
    _echo_table,
    _numbers,
    _read_labels,
    _refuse_existing,
    _stated_meta,
    check_paths,
    force_option,
    record_options,
)
from edgeres.errors import EdgeresError, MetadataError

if TYPE_CHECKING:
    from edgeres.describe import ModelFileInfo

# click.Choice hands commands plain str; the casts to the library's Literal names below mark
# that boundary (the library checks its options again and names a bad value, CONTRIBUTING R5).


@cli.command()
def models() -> None:
    """List the model zoo: name, family, parameters, MACs and default input size.

    \b
    Example:
        edgeres models
    """
    from edgeres._zoo_counts import ZOO_COUNTS
    from edgeres.zoo import PRETRAINED_CFGS

    rows = []
    for name in sorted(PRETRAINED_CFGS):  # constants checked against the builders by the tests
        cfg = PRETRAINED_CFGS[name]
        params, macs = ZOO_COUNTS[name]
        size = "x".join(map(str, cfg.input_size))
        rows.append([name, cfg.family, f"{params / 1e6:.2f}M", f"{macs / 1e9:.3f}G", size])
    _echo_table("edgeres model zoo", ["model", "family", "params", "MACs", "input"], rows)


@cli.command()
@click.argument("model")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The copy of MODEL with the record inside (.onnx).")
@click.option("--name", help="The model's name in the record [default: the file's stem].")
@force_option
@record_options
def attach(model: str, output: Path, name: str | None, force: bool, record: Any) -> None:
    """Write a copy of MODEL (.onnx from any exporter) with its preprocessing and labels stated
    once, in an edgeres record; every command then reads it like an edgeres export.

    Layout, input size, class count and whether the output is already probabilities (a final
    Softmax) are read from the graph; stated values must agree with it.

    \b
    Example:
        edgeres attach resnet50.onnx -o resnet50-edgeres.onnx --channels BGR --scale 255 \\
            --mean 103.939,116.779,123.68 --std 1,1,1 --resize 256 --input-size 224 \\
            --labels imagenet.txt
    """
    import dataclasses

    from edgeres.foreign import RecordOptions
    from edgeres.foreign import attach as attach_record
    from edgeres.names import resolve_model_file

    check_paths()
    options = dataclasses.replace(record or RecordOptions(), name=name)
    src = resolve_model_file(model)
    _refuse_existing(output, force, (src,))
    r = attach_record(src, output, options)
    m, pre = r.meta, r.meta.preprocess
    opset = f", opset {r.facts.opset}" if r.facts.opset is not None else ""
    click.echo(f"graph: input {r.facts.input_name} {list(r.facts.input_shape)} "
               f"{r.facts.input_dtype} ({m.input.layout}), {m.num_classes} classes as "
               f"{m.output}{opset}")
    click.echo(f"preprocess: resize {pre.resize} ({pre.interpolation}), crop "
               f"{'x'.join(map(str, pre.crop))}, {pre.channel_order if pre.color != 'L' else 'L'}"
               f", mean {list(pre.mean)} std {list(pre.std)} on the 0-{pre.pixel_scale:g} scale")
    click.echo(f"wrote {r.path}{' (its old record replaced)' if r.replaced else ''}")


@cli.command()
@click.argument("model")
@click.option("--weights", help="Checkpoint (.pt/.pth state dict) or a registered name: cifar10.")
@click.option("--num-classes", type=click.IntRange(min=0), help="Expected classes (checked).")
@click.option("--input-size", help="Input side or HxW (default: the model's).")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Text file, one label per line (sets the classes without --weights).")
@click.option("--mean", help="Per-channel mean on the 0-1 scale, e.g. 0.485,0.456,0.406.")
@click.option("--std", help="Per-channel std on the 0-1 scale, e.g. 0.229,0.224,0.225.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset, 13-21.")
@click.option("--batch", default="dynamic", show_default=True, help="'dynamic' or a fixed size.")
@click.option("--fp16", is_flag=True, help="Half-precision weights (float32 inputs/outputs).")
@click.option("--uint8-input", is_flag=True, help="Take uint8 NHWC pixels; normalise in-graph.")
@click.option("--simplify", is_flag=True, help="Simplify with onnxslim (verified again).")
@click.option("--atol", type=float, help="Parity tolerance (default 1e-4, fp16 1e-3).")
@click.option("--format", "fmt", type=click.Choice(["onnx", "tflite", "pte"]),
              help="onnx, LiteRT tflite (edgeres[litert]) or ExecuTorch pte "
              "(edgeres[executorch]), both with a fixed batch (1 unless --batch N) "
              "[default: from the output's suffix].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@force_option
def export(model: str, weights: str | None, num_classes: int | None, input_size: str | None,
           labels: Path | None, mean: str | None, std: str | None, opset: int, batch: str,
           fp16: bool, uint8_input: bool, simplify: bool, atol: float | None,
           fmt: str | None, output: Path, force: bool) -> None:
    """Export MODEL (see `edgeres models`) to ONNX, LiteRT or ExecuTorch, checked against
    PyTorch.

    \b
    Example:
        edgeres export cifar_resnet20 --weights cifar10 --uint8-input -o resnet20.onnx
        edgeres export cifar_resnet20 --weights cifar10 -o resnet20.tflite
    """
    from edgeres.export import ExportConfig, export_onnx, zoo_export
    from edgeres.models import model_info

    model_info(model)  # an unknown name fails here, with suggestions, before any work
    check_paths()
    _refuse_existing(output, force)
    config = ExportConfig(opset=opset, batch=cast("int | Literal['dynamic']", _batch(batch)),
                          fp16=fp16,
                          uint8_input=uint8_input, simplify=simplify, atol=atol)
    net, meta = zoo_export(model, weights=weights, num_classes=num_classes,
                           labels=_read_labels(labels),
                           input_size=_numbers(input_size, "input size", int),
                           mean=_numbers(mean, "mean"), std=_numbers(std, "std"))
    fmt = fmt or {".tflite": "tflite", ".pte": "pte"}.get(output.suffix.lower(), "onnx")
    if fmt != "onnx":
        _export_edge(net, output, meta, config, fmt)
        return
    r = export_onnx(net, output, meta=meta, config=config)
    top1 = "n/a (feature map)" if r.top1_agreement is None else f"{r.top1_agreement:.1%}"
    click.echo(f"parity vs PyTorch on {r.parity_inputs} random inputs: max abs err "
               f"{r.max_abs_err:.3g}, max rel err {r.max_rel_err:.3g}, top-1 agreement {top1} "
               f"(tolerance {r.tolerance:.3g})")
    click.echo(f"export time: {r.export_seconds:.2f} s ({r.seconds:.2f} s with verification)")
    click.echo(f"wrote {r.path} ({r.size_bytes / 1e6:.1f} MB, {r.num_nodes} nodes, "
               f"opset {r.opset})")


def _export_edge(net: Any, output: Path, meta: Any, config: Any, fmt: str) -> None:
    """``export --format tflite|pte``: the same checks, another converter."""
    from edgeres.errors import ConfigError
    from edgeres.export import export_edge

    want = f".{fmt}"
    if output.suffix.lower() != want:
        msg = f"output {output} should end in {want} for --format {fmt}"
        raise ConfigError(msg)
    r = export_edge(net, output, meta=meta, fmt=fmt, config=config)
    where = ("inside the file" if fmt == "tflite"
             else f"in {output.name}.json beside it (a .pte has no metadata map)")
    click.echo(f"parity vs PyTorch on {r.parity_inputs} random inputs: max abs err "
               f"{r.max_abs_err:.3g}, max rel err {r.max_rel_err:.3g}, top-1 agreement "
               f"{r.top1_agreement if r.top1_agreement is None else f'{r.top1_agreement:.1%}'} "
               f"(tolerance {r.tolerance:.3g})")
    click.echo(f"export time: {r.export_seconds:.2f} s ({r.seconds:.2f} s with verification)")
    batch = r.meta.input.shape[0] if r.meta is not None else "?"
    click.echo(f"wrote {r.path} ({r.size_bytes / 1e6:.1f} MB, {r.exporter}, fixed batch "
               f"{batch}); metadata record {where}")


@cli.command()
@click.argument("model_file")
@record_options
def info(model_file: str, record: Any) -> None:
    """Show what MODEL_FILE (.onnx or OpenVINO .xml, or a shipped name such as cifar10-int8)
    holds: record, inputs, outputs, nodes.

    \b
    Example:
        edgeres info resnet20.onnx
    """
    from edgeres.describe import describe_model_file
    from edgeres.names import resolve_model_file

    check_paths()
    d = describe_model_file(resolve_model_file(model_file))
    opset = f", opset {d.opset}" if d.opset is not None else ""
    click.echo(f"{d.path}: {d.format}{opset}, {d.size_bytes:,} bytes ({d.size_bytes / 1e6:.1f} MB)")
    for kind, tensors in (("input", d.inputs), ("output", d.outputs)):
        for t in tensors:
            click.echo(f"{kind:<7} {t.name}  [{', '.join(map(str, t.shape))}]  {t.dtype}")
    if d.node_counts is None and d.format in ("litert", "executorch"):
        click.echo(f"nodes: not counted for {d.format} files (read with {d.reader})")
    elif d.node_counts is None:
        click.echo(f"nodes: not counted (read with {d.reader}; install onnx to count)")
    else:
        ops = ", ".join(f"{op} {n}" for op, n in d.node_counts.items())
        click.echo(f"nodes: {sum(d.node_counts.values())} ({ops})")
    if record is not None:
        click.echo("metadata record (as stated; the file is unchanged, `edgeres attach` "
                   "writes it):")
        click.echo(_record_text(_stated_meta(d.path, record)))
    elif d.meta is None:
        click.echo("metadata record: none (not exported by edgeres); state its preprocessing "
                   "with `edgeres attach` or --mean/--std/... on each command")
    else:
        click.echo("metadata record:")
        click.echo(_record_text(d.meta))
        _note_fitted(d)


_SHOWN_LABELS = 5


def _record_text(meta: Any) -> str:
    """The record as JSON with a long label list cut to a few and the count (1000 ImageNet
    labels made `info` 1,067 lines), and the pixels' colour and channel order as one field
    ("channels": L, RGB or BGR; "color": "RGB" beside "channel_order": "BGR" read as a
    contradiction); `edgeres info` is for reading, the file keeps every field."""
    d = meta.to_dict()
    pre = d.get("preprocess")
    if isinstance(pre, dict) and "color" in pre:
        order = pre.pop("channel_order", "RGB")
        d["preprocess"] = {("channels" if k == "color" else k):
                           (order if k == "color" and v != "L" else v) for k, v in pre.items()}
    labels = d.get("labels") or []
    if len(labels) > 2 * _SHOWN_LABELS:
        d["labels"] = [*labels[:_SHOWN_LABELS],
                       f"... {len(labels) - _SHOWN_LABELS} more ({len(labels)} labels)"]
    return json.dumps(d, indent=1)


def _note_fitted(d: ModelFileInfo) -> None:
    """Say so when the graph's input size was changed after export and the record follows it."""
    if len(d.inputs) != 1 or d.meta is None:
        return
    from edgeres._record_check import check_classes

    classes = d.outputs[0].shape[-1] if len(d.outputs) == 1 and d.outputs[0].shape else None
    try:
        check_classes(d.meta, classes if isinstance(classes, int) else None, d.path)
    except MetadataError as e:  # info describes the file; every command that runs it refuses
        click.echo(f"note: {e}")
    try:
        fitted = d.meta.fitted_to(tuple(d.inputs[0].shape))
    except EdgeresError as e:  # a record for another graph, or an input too large to run
        click.echo(f"note: {e}")
        return
    if fitted.input_size != d.meta.input_size:
        h, w = fitted.input_size
        click.echo(f"note: the graph takes {h}x{w} images, not the record's "
                   f"{'x'.join(map(str, d.meta.input_size))}; edgeres resizes to {h}x{w} "
                   f"(resize {fitted.preprocess.resize})")

