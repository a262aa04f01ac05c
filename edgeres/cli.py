"""The ``edgeres`` command line: a thin click shell over the library.

This is the only module that imports click. Torch-side modules (models, export, quantize) are
imported inside the commands that need them, so ``edgeres --help`` and ``edgeres predict`` run
with the base install. Every ``EdgeresError`` becomes ``Error: <message>`` and exit code 1, in
one place (``_Group.invoke``); ``--debug`` re-raises it with its traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import click

from edgeres import __version__
from edgeres._fs import check_outputs as _check_outputs
from edgeres.errors import ConfigError, DataError, EdgeresError, MetadataError

if TYPE_CHECKING:
    from edgeres.describe import ModelFileInfo
    from edgeres.quantize._protocol import QuantBackend
    from edgeres.quantize.config import Method, Preset, Target
    from edgeres.runtime import Backend, Device

# click.Choice hands commands plain str; the casts to the library's Literal names below mark
# that boundary (the library checks its options again and names a bad value, CONTRIBUTING R5).


# Optional imports → the extra that provides them (README "Install by hand"); quantize's own
# onnx and openvino come with the quantize extra.
_EXTRAS = {"torch": "torch", "onnx": "torch", "onnxslim": "torch", "nncf": "quantize",
           "openvino": "openvino", "matplotlib": "plot", "ray": "cluster"}


def _missing_extra(e: ModuleNotFoundError, command: str | None) -> EdgeresError | None:
    """The fix-it error for an optional package that is not installed, else None (a bug)."""
    import importlib.util

    top = (e.name or "").split(".")[0]
    extra = _EXTRAS.get(top)
    if extra is None:
        return None
    try:
        if importlib.util.find_spec(top) is not None:
            return None  # installed but broken inside: keep the traceback
    except (ImportError, ValueError):
        pass
    if command == "quantize" and top in ("onnx", "openvino"):
        extra = "quantize"
    from edgeres.errors import missing_extra

    return missing_extra(top, extra)


def _stdout_failed(e: OSError) -> None:
    """stdout closed early (``| head``) or full: a quiet exit 141 or one line, no traceback."""
    import errno
    import os

    try:  # nothing more may reach the dead stream, not even the interpreter's final flush
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    if e.errno == errno.EPIPE:
        sys.exit(141)  # 128 + SIGPIPE, what a shell reports for a writer whose reader left
    click.echo(f"Error: cannot write to standard output: {e.strerror}; free space or "
               "redirect elsewhere", err=True)
    sys.exit(1)


# Library messages name parameters (``max_drop must be ...``); the CLI says the flag instead.
# Parameter -> flag where the two differ in more than "_" vs "-" (QuantConfig.eval is --eval).
_FLAG_NAMES = {"eval_data": "--eval", "calibration": "--calib"}
_PARAMS = ("max_drop", "eval_data", "per_channel", "input_size", "num_classes", "uint8_input",
           "samples", "opset", "atol", "rtol", "threads", "warmup", "rounds", "iterations",
           "duration", "limit", "mean", "std", "target", "method", "preset", "val", "eval",
           "exclude", "weights", "labels", "batch", "calibration", "runtimes", "precisions")
_PARAM_RE = None


def _as_flags(message: str) -> str:
    """``max_drop needs val data`` -> ``--max-drop needs --val data``: a parameter name that
    opens the message, or follows "give"/"pass"/"and", or has an underscore, becomes its flag."""
    import re

    global _PARAM_RE
    if _PARAM_RE is None:
        names = "|".join(sorted(_PARAMS, key=len, reverse=True))
        _PARAM_RE = re.compile(rf"(?:^|(?<=\bgive )|(?<=\bpass )|(?<=\band ))(?<![-\w])"
                               rf"({names})(?![-\w])|(?<![-\w])"
                               rf"({'|'.join(p for p in _PARAMS if '_' in p)})(?![-\w])")

    def flag(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return _FLAG_NAMES.get(name, "--" + name.replace("_", "-"))

    return _PARAM_RE.sub(flag, message)


class _Group(click.Group):
    """Click group that turns expected errors into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        from edgeres import _interrupt

        try:
            return super().invoke(ctx)
        except EdgeresError as e:
            if ctx.params.get("debug"):
                raise
            text = _as_flags(str(e)) if isinstance(e, ConfigError) else str(e)
            raise click.ClickException(text) from None
        except ModuleNotFoundError as e:
            err = None if ctx.params.get("debug") else _missing_extra(e, ctx.invoked_subcommand)
            if err is None:
                raise
            raise click.ClickException(str(err)) from None
        except KeyboardInterrupt as e:
            _interrupt.quiet()
            code, words = _interrupt.exit_status(e)
            click.echo(words, err=True)
            sys.exit(code)
        except OSError as e:  # a library's files are wrapped (_fs.write_errors): this is stdout
            if e.filename is not None or ctx.params.get("debug"):
                raise
            _stdout_failed(e)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeres")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """edgeres: ResNet-family models from PyTorch to edge devices, with honest numbers.

    \b
    Example:
        edgeres models
    """
    import logging

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s: %(message)s"
    )


def _echo_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """Render a table on stdout (rich when it fits, plain columns when output is piped)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col == columns[0] else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=max(100, len(columns) * 16)).print(table)


@cli.command()
def models() -> None:
    """List the model zoo: name, family, parameters, MACs and default input size.

    \b
    Example:
        edgeres models
    """
    from edgeres.models import list_models, model_info
    from edgeres.models._profile import profile_model

    rows = []
    for name in list_models():
        info = model_info(name)
        params, macs = profile_model(name)  # shapes only: no network's weights are allocated
        size = "x".join(map(str, info.input_size))
        rows.append([name, info.family, f"{params / 1e6:.2f}M", f"{macs / 1e9:.3f}G", size])
    _echo_table("edgeres model zoo", ["model", "family", "params", "MACs", "input"], rows)


# --- export / info ------------------------------------------------------------------------------


def _numbers(text: str | None, what: str, kind: type = float) -> tuple[Any, ...] | None:
    """``"0.5,0.5,0.5"`` → floats, ``"32x128"`` → ints; a bad value is a one-line error."""
    if text is None:
        return None
    try:
        return tuple(kind(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        msg = f"{what} {text!r} is not a list of numbers, e.g. " + (
            "--input-size 224 or 32x128" if kind is int else f"--{what} 0.485,0.456,0.406")
        raise ConfigError(msg) from None


def _read_labels(path: Path | None) -> list[str] | None:
    """One label per line of a UTF-8 text file; trailing blank lines dropped."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        msg = (f"labels file {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at "
               f"offset {e.start}); save it as UTF-8, one label per line")
        raise DataError(msg) from None
    labels = [line.strip() for line in text.splitlines()]
    while labels and not labels[-1]:
        labels.pop()
    return labels


def _batch(text: str) -> int | str:
    """``"8"`` → 8; anything else goes to ``ExportConfig`` as text, which names the bad value."""
    try:
        return int(text)
    except ValueError:  # "dynamic", or e.g. "²" (str.isdigit() is True, int() refuses it)
        return text


# --- stated preprocessing: foreign models --------------------------------------------------------

# The options that state a model's preprocessing and labels, the same on every command that
# reads a model (attach, info, quantize, bench, predict, package); edgeres.foreign.RecordOptions.
_RECORD_OPTIONS = (
    click.option("--mean", help="Per-channel mean in the model's channel order, on the --scale "
                 "scale, e.g. 0.485,0.456,0.406."),
    click.option("--std", help="Per-channel std, likewise, e.g. 0.229,0.224,0.225."),
    click.option("--scale", type=click.Choice(["1", "255"]),
                 help="Pixel scale of mean/std: 1 (0-1 pixels) or 255 (0-255, Caffe/Keras)."),
    click.option("--channels", type=click.Choice(["RGB", "BGR"]),
                 help="Channel order the model was trained on (BGR: OpenCV/Caffe)."),
    click.option("--resize", help="Resize the shorter side to this (or HxW) before the crop."),
    click.option("--input-size", help="Centre crop = model input, side or HxW (from the graph "
                 "when it is fixed)."),
    click.option("--interpolation", type=click.Choice(["bilinear", "bicubic", "nearest"]),
                 help="Resize filter [default: bilinear]."),
    click.option("--layout", type=click.Choice(["NCHW", "NHWC"]),
                 help="Input layout (from the graph when unambiguous)."),
    click.option("--labels", "labels_file", type=click.Path(dir_okay=False, path_type=Path),
                 help="Text file, one class name per line, in output order."),
)
_RECORD_NAMES = ("mean", "std", "scale", "channels", "resize", "input_size", "interpolation",
                 "layout", "labels_file")


def record_options(f: Any) -> Any:
    """Add the stated-preprocessing options; the command gets them as one ``record`` argument
    (a ``RecordOptions``, or None when none was given)."""
    import functools

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["record"] = _record(**{name: kwargs.pop(name) for name in _RECORD_NAMES})
        return f(*args, **kwargs)

    for option in reversed(_RECORD_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def _side_or_pair(text: str | None, what: str) -> Any:
    size = _numbers(text, what, int)
    if size is None:
        return None
    if len(size) not in (1, 2) or min(size) < 1:
        msg = f"--{what} {text!r} must be a positive side or HxW, e.g. 224 or 256x320"
        raise ConfigError(msg)
    return size


def _record(mean: str | None, std: str | None, scale: str | None, channels: str | None,
            resize: str | None, input_size: str | None, interpolation: str | None,
            layout: str | None, labels_file: Path | None, name: str | None = None) -> Any:
    """The stated options as one ``RecordOptions`` (None when nothing was stated)."""
    from edgeres.foreign import RecordOptions

    size = _side_or_pair(input_size, "input-size")
    side = _side_or_pair(resize, "resize")
    labels = _labels_file(labels_file)
    options = RecordOptions(
        mean=_numbers(mean, "mean"), std=_numbers(std, "std"),
        scale=float(scale) if scale else None, channels=channels,
        resize=(side[0] if len(side) == 1 else side) if side else None,
        input_size=(size * 2)[:2] if size else None, interpolation=interpolation,
        layout=layout, labels=tuple(labels) if labels is not None else None, name=name)
    return options if options.stated else None


def _labels_file(path: Path | None) -> list[str] | None:
    """``_read_labels`` for a stated labels file, refusing names that would garble output."""
    import unicodedata

    if path is not None and not path.is_file():
        msg = f"labels file {path} does not exist; pass a text file, one label per line"
        raise DataError(msg)
    labels = _read_labels(path)
    for i, label in enumerate(labels or ()):
        if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in label):
            msg = (f"labels file {path}, line {i + 1}: {label!r:.60} holds a control character "
                   "(escape code, tab); labels must be printable text")
            raise DataError(msg)
    return labels


def _onnx_only(path: Path) -> None:
    if path.suffix.lower() != ".onnx":
        msg = (f"{path} is not an .onnx file; preprocessing options apply to ONNX models "
               "(attach the record with `edgeres attach` before converting to OpenVINO IR)")
        raise ConfigError(msg)


def _stated_meta(path: Path, record: Any) -> Any:
    """The record stated for ``path``, for ``runtime.load(meta=...)``; None if none stated."""
    if record is None:
        return None
    _onnx_only(path)
    from edgeres.foreign import stated_record

    return stated_record(path, record)


@cli.command()
@click.argument("model")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The copy of MODEL with the record inside (.onnx).")
@click.option("--name", help="The model's name in the record [default: the file's stem].")
@record_options
def attach(model: str, output: Path, name: str | None, record: Any) -> None:
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

    options = dataclasses.replace(record or RecordOptions(), name=name)
    r = attach_record(resolve_model_file(model), output, options)
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
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def export(model: str, weights: str | None, num_classes: int | None, input_size: str | None,
           labels: Path | None, mean: str | None, std: str | None, opset: int, batch: str,
           fp16: bool, uint8_input: bool, simplify: bool, atol: float | None,
           output: Path) -> None:
    """Export MODEL (see `edgeres models`) to ONNX, checked against PyTorch.

    \b
    Example:
        edgeres export cifar_resnet20 --weights cifar10 --uint8-input -o resnet20.onnx
    """
    from edgeres.export import ExportConfig, export_onnx, zoo_export
    from edgeres.models import model_info

    model_info(model)  # an unknown name fails here, with suggestions, before any work
    _check_outputs([output], inputs=[Path(weights) if weights else None, labels])
    config = ExportConfig(opset=opset, batch=cast("int | Literal['dynamic']", _batch(batch)),
                          fp16=fp16,
                          uint8_input=uint8_input, simplify=simplify, atol=atol)
    net, meta = zoo_export(model, weights=weights, num_classes=num_classes,
                           labels=_read_labels(labels),
                           input_size=_numbers(input_size, "input size", int),
                           mean=_numbers(mean, "mean"), std=_numbers(std, "std"))
    r = export_onnx(net, output, meta=meta, config=config)
    top1 = "n/a (feature map)" if r.top1_agreement is None else f"{r.top1_agreement:.1%}"
    click.echo(f"parity vs PyTorch on {r.parity_inputs} random inputs: max abs err "
               f"{r.max_abs_err:.3g}, max rel err {r.max_rel_err:.3g}, top-1 agreement {top1} "
               f"(tolerance {r.tolerance:.3g})")
    click.echo(f"export time: {r.export_seconds:.2f} s ({r.seconds:.2f} s with verification)")
    click.echo(f"wrote {r.path} ({r.size_bytes / 1e6:.1f} MB, {r.num_nodes} nodes, "
               f"opset {r.opset})")


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

    d = describe_model_file(resolve_model_file(model_file))
    opset = f", opset {d.opset}" if d.opset is not None else ""
    click.echo(f"{d.path}: {d.format}{opset}, {d.size_bytes:,} bytes ({d.size_bytes / 1e6:.1f} MB)")
    for kind, tensors in (("input", d.inputs), ("output", d.outputs)):
        for t in tensors:
            click.echo(f"{kind:<7} {t.name}  [{', '.join(map(str, t.shape))}]  {t.dtype}")
    if d.node_counts is None:
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
    labels made `info` 1,067 lines); `edgeres info` is for reading, the file keeps them all."""
    d = meta.to_dict()
    labels = d.get("labels") or []
    if len(labels) > 2 * _SHOWN_LABELS:
        d["labels"] = [*labels[:_SHOWN_LABELS],
                       f"... {len(labels) - _SHOWN_LABELS} more ({len(labels)} labels)"]
    return json.dumps(d, indent=1)


def _note_fitted(d: ModelFileInfo) -> None:
    """Say so when the graph's input size was changed after export and the record follows it."""
    if len(d.inputs) != 1 or d.meta is None:
        return
    try:
        fitted = d.meta.fitted_to(tuple(d.inputs[0].shape))
    except MetadataError as e:
        click.echo(f"note: {e}")
        return
    if fitted.input_size != d.meta.input_size:
        h, w = fitted.input_size
        click.echo(f"note: the graph takes {h}x{w} images, not the record's "
                   f"{'x'.join(map(str, d.meta.input_size))}; edgeres resizes to {h}x{w} "
                   f"(resize {fitted.preprocess.resize})")


# --- bench -------------------------------------------------------------------------------------

_OUT = click.Path(dir_okay=False, path_type=Path)


class _CommaList(click.ParamType):
    """A comma list option (``--runtime ort-cpu,openvino-cpu``, ``--batch 1,8``) parsed by a
    library parser into a typed tuple; a bad entry is its ``ConfigError``: one line, exit 1."""

    def __init__(self, name: str, parse: Any) -> None:
        self.name, self._parse = name, parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        return value if value is None or isinstance(value, tuple) else self._parse(value)


def _bench_parser(name: str) -> Any:
    """``edgeres.bench.config``'s parser of that name, imported when an option is parsed."""
    def parse(text: str) -> Any:
        from edgeres.bench import config

        return getattr(config, name)(text)
    return parse


_RUNTIMES = _CommaList("runtimes", _bench_parser("parse_runtimes"))
_PRECISIONS = _CommaList("precisions", _bench_parser("parse_precisions"))
_BATCHES = _CommaList("batches", _bench_parser("parse_batches"))


@cli.command()
@click.argument("model", nargs=-1, required=True)
@click.option("--runtime", type=_RUNTIMES, help="Comma list of torch-cpu, torch-cuda, ort-cpu, "
              "ort-cuda, ort-tensorrt, openvino-cpu, openvino-gpu, or all [default: every CPU "
              "runtime installed].")
@click.option("--precision", type=_PRECISIONS, help="Comma list of fp32, fp16, bf16 "
              "(torch-cuda), int8 [default: the model's own].")
@click.option("--calib", default="cifar10", show_default=True, help="Calibration data for int8.")
@click.option("--batch", type=_BATCHES, default="1", show_default=True,
              help="Comma list of batch sizes.")
@click.option("--threads", type=int,
              help="Threads for every runtime [default: physical cores, within CPU affinity].")
@click.option("--warmup", type=int, default=5, show_default=True, help="Untimed calls per row.")
@click.option("--iterations", type=int, help="Timed calls per row per round.")
@click.option("--duration", type=float, help="Timed seconds per row [default: 2].")
@click.option("--rounds", type=int, default=5, show_default=True, help="Interleaved rounds.")
@click.option("--eval", "eval_data", help="Labelled data for top-1/top-5 and agreement.")
@click.option("--limit", type=int, help="Evaluate only this many images.")
@click.option("--no-memory", is_flag=True, help="Skip the per-row peak-memory subprocesses.")
@click.option("--torch-compile", is_flag=True,
              help="Add a torch.compile row beside each torch-cuda row (compiled untimed).")
@click.option("--conditions", help="Free text recorded with the results (machine load, ...).")
@click.option("--cluster", help="Run the rows on the devices of this Ray cluster (HOST:PORT of "
              "the head, or auto = $RAY_ADDRESS); needs edgeres[cluster].")
@click.option("--nodes", help="With --cluster: comma list of device LABELs (nodes advertising "
              "edgeres-device:LABEL) [default: every labelled node].")
@click.option("--json", "json_out", type=_OUT, help="Write results as JSON (schema_version 1).")
@click.option("--csv", "csv_out", type=_OUT, help="Write one CSV line per row.")
@click.option("--markdown", "md_out", type=_OUT, help="Write a markdown report.")
@click.option("--plot", "plot_out", type=_OUT,
              help="Write a plot: .png, .svg or .pdf (needs edgeres[plot]).")
@click.option("--wide", is_flag=True, help="Print every column and skipped row (> 80 columns).")
@record_options
def bench(model: tuple[str, ...], runtime: tuple[str, ...] | None,
          precision: tuple[str, ...] | None, calib: str, batch: tuple[int, ...],
          threads: int | None, warmup: int, iterations: int | None, duration: float | None,
          rounds: int, eval_data: str | None, limit: int | None,
          no_memory: bool, torch_compile: bool, conditions: str | None, json_out: Path | None,
          csv_out: Path | None, md_out: Path | None, plot_out: Path | None, wide: bool,
          record: Any, cluster: str | None = None, nodes: str | None = None) -> None:
    """Latency, throughput, size, memory and accuracy of MODEL(s) on every runtime.

    MODEL is an .onnx file, an OpenVINO .xml, a registered model file (cifar10) or a zoo
    name (exported on the fly). Runtimes that are not available here are listed as skipped.
    --mean/--std/... state the preprocessing of .onnx files without a record.

    \b
    Example:
        edgeres bench resnet18 --precision fp32,int8 --batch 1,8 --json bench.json
    """
    from edgeres.bench import BenchConfig, report, run_bench

    config = BenchConfig(
        runtimes=runtime, precisions=precision, batches=batch, threads=threads, warmup=warmup,
        rounds=rounds,
        iterations=iterations, duration=duration, calib=calib, eval_data=eval_data,
        limit=limit, memory=not no_memory, torch_compile=torch_compile, conditions=conditions)
    report.check_outputs([json_out, csv_out, md_out], plot=plot_out, inputs=_model_files(model))
    if cluster is not None:  # the same rows, measured on each device of a Ray cluster
        from edgeres.cluster import bench_fleet, parse_nodes

        run = bench_fleet(model, config, address=cluster, nodes=parse_nodes(nodes),
                          record=record)
    elif nodes is not None:
        msg = "--nodes picks devices of a cluster; give --cluster ADDRESS too"
        raise ConfigError(msg)
    else:
        run = run_bench(model, config, record=record)
    _render_bench(run, json_out, csv_out, md_out, plot_out, wide=wide)
    if run.interrupted:
        from edgeres import _interrupt

        code, words = _interrupt.exit_status()
        click.echo(f"{words.rstrip('.')}: the results measured so far were saved (rows marked "
                   "partial).", err=True)
        sys.exit(code)
    if not any(r.status == "ok" for r in run.rows):
        reasons = sorted({f"{r.status}: {r.reason}" for r in run.rows if r.reason})
        msg = (f"no configuration was measured ({'; '.join(reasons) or 'no rows'}); see the "
               "table above")
        raise EdgeresError(msg)


def _model_files(models: tuple[str, ...]) -> list[Path]:
    """The files among bench's MODEL arguments (and an IR's .bin), which outputs must spare."""
    files = [Path(m) for m in models if Path(m).is_file()]
    return files + [f.with_suffix(".bin") for f in files if f.suffix.lower() == ".xml"]


def _render_bench(run: Any, json_out: Path | None, csv_out: Path | None, md_out: Path | None,
                  plot_out: Path | None, *, wide: bool = False) -> None:
    """Print the table, the comparisons, the machine and the notes; write the requested files.

    The default fits ``report.WIDTH`` (80) columns, or the terminal when narrower, every line
    wrapped; ``--wide`` prints every column at the width it needs.
    """
    import shutil
    import textwrap

    from rich.console import Console

    from edgeres.bench import report

    if wide:
        width = 250
    else:
        tty = shutil.get_terminal_size((report.WIDTH, 24)).columns if sys.stdout.isatty() \
            else report.WIDTH
        width = max(40, min(report.WIDTH, tty))
    Console(width=width).print(report.table(run, wide=wide))
    lines = report.summary_lines(run, wide=wide) + report.environment_lines(run) + [
        f"note: {report.note_text(note, run.rows)}" for note in run.notes]
    for line in lines:
        click.echo(line if wide else textwrap.fill(line, width, subsequent_indent="  ",
                                                   break_on_hyphens=False))
    for path, write in ((json_out, report.write_json), (csv_out, report.write_csv),
                        (md_out, report.write_markdown), (plot_out, report.write_plot)):
        if path is not None:
            write(run, path)
            click.echo(f"wrote {path}")


# --- eval --------------------------------------------------------------------------------------


@cli.command("eval")
@click.argument("model", nargs=-1, required=True)
@click.option("--data", required=True, help="Labelled data: an image folder, .tar.gz, .npz, "
              "or cifar10-test.")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate a seeded subset of N images.")
@click.option("--batch", type=click.IntRange(min=1), default=100, show_default=True,
              help="Images per inference call.")
@click.option("--backend", type=click.Choice(["auto", "ort", "openvino"]), default="auto",
              show_default=True, help="auto: OpenVINO for .xml, ONNX Runtime for .onnx.")
@click.option("--threads", type=click.IntRange(min=1),
              help="Threads per session [default: the runtime's; 1 per worker on a cluster].")
@click.option("--cluster", help="Evaluate on this Ray cluster (HOST:PORT of the head, or auto "
              "= $RAY_ADDRESS); needs edgeres[cluster].")
@click.option("--workers", type=click.IntRange(min=1),
              help="With --cluster: inference actors [default: the cluster's CPUs].")
@click.option("--json", "json_out", type=_OUT, help="Write the accuracies as JSON.")
def eval_command(model: tuple[str, ...], data: str, limit: int | None, batch: int, backend: str,
                 threads: int | None, cluster: str | None, workers: int | None,
                 json_out: Path | None) -> None:
    """Top-1/top-5 of MODEL(s) on labelled --data, and top-1 agreement with the first MODEL.

    Without --cluster it runs here (no ray); with it, Ray Data feeds an actor pool of
    sessions on the cluster's nodes, and the counts are the same, image for image.

    \b
    Example:
        edgeres eval cifar10 cifar10-int8 --data cifar10-test --cluster auto
    """
    from edgeres.cluster import evaluate_models

    if json_out is not None:
        from edgeres._fs import check_outputs

        check_outputs([json_out], inputs=[Path(m) for m in model if Path(m).is_file()])
    run = evaluate_models(model, data, cluster=cluster, workers=workers, backend=backend,
                          threads=threads, batch_size=batch, limit=limit)
    where = run.where + (f", {run.workers} workers" if run.workers else "")
    click.echo(f"{run.data}: {run.results[0].count} images ({run.results[0].skipped} "
               f"unreadable skipped), {where}, {run.seconds:.1f} s")
    for r in run.results:
        agree = "" if r.agreement is None else f", agreement with {run.results[0].model} " \
            f"{r.agreement:.2f}%"
        click.echo(f"{r.model} ({r.runtime}, {r.executed_precision}): top-1 {r.top1:.2f}% "
                   f"({r.top1_correct}/{r.count}), top-5 {r.top5:.2f}%{agree}")
    if json_out is not None:
        import json

        from edgeres._fs import atomic_write

        with atomic_write(json_out) as tmp:
            tmp.write_text(json.dumps(run.to_dict(), indent=1) + "\n")
        click.echo(f"wrote {json_out}")


# --- predict / package -------------------------------------------------------------------------


def _predictions_json(predictor: Any, images: tuple[str, ...], results: list[Any]) -> str:
    """The --json document; a bundle's infer.py prints the same keys."""
    import json

    return json.dumps({
        "schema_version": 1, "model": predictor.meta.name, "model_file": str(predictor.path),
        "runtime": predictor.runtime, "executed_precision": predictor.executed_precision,
        "predictions": [{"image": image, **r.to_dict()}
                        for image, r in zip(images, results, strict=True)],
    }, indent=1)


def _capped_threads(threads: int | None) -> int | None:
    """``--threads`` within the CPUs this process may use, with a note when capped."""
    from edgeres._resources import cap_threads

    threads, note = cap_threads(threads)
    if note:
        click.echo(f"note: {note}", err=True)
    return threads


def _expand_folders(images: tuple[str, ...]) -> tuple[str, ...]:
    """Each folder among ``images`` replaced by the image files under it, sorted."""
    from edgeres.data import IMAGE_SUFFIXES, image_files
    from edgeres.errors import DataError

    out: list[str] = []
    for image in images:
        if not Path(image).is_dir():
            out.append(image)
            continue
        found = [str(f) for f in image_files(Path(image))]
        if not found:
            msg = f"folder {image} holds no image files ({', '.join(IMAGE_SUFFIXES)})"
            raise DataError(msg)
        out.extend(found)
    return tuple(out)


@cli.command()
@click.argument("model")
@click.argument("images", nargs=-1, required=True)
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Classes to show per image.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema_version 1).")
@click.option("--backend", type=click.Choice(["auto", "ort", "openvino"]), default="auto",
              show_default=True, help="auto: OpenVINO for .xml, ONNX Runtime for .onnx.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "tensorrt", "gpu"]), default="cpu",
              show_default=True, help="A GPU is used only when asked for.")
@click.option("--mode", type=click.Choice(["model", "fast"]), default=None,
              help="model: run the model's own precision [default]; fast: let the runtime "
              "lower fp32 (bf16 on AMX).")
@click.option("--precision", "precision_alias", type=click.Choice(["model", "fast"]),
              hidden=True, help="Old name of --mode (until 0.3).")
@click.option("--threads", type=click.IntRange(min=1), help="Inference threads.")
@record_options
def predict(model: str, images: tuple[str, ...], top_k: int, as_json: bool, backend: str,
            device: str, mode: str | None, precision_alias: str | None, threads: int | None,
            record: Any) -> None:
    """Classify IMAGE(s) with MODEL: an .onnx or OpenVINO .xml file, or a registered name.

    An IMAGE that is a folder stands for every image file under it, in sorted order.
    Works with the base install (numpy, onnxruntime, Pillow; no torch, no onnx). The model's
    metadata record gives the preprocessing and the labels.

    \b
    Example:
        edgeres predict cifar10 cat.jpg dog.png --top-k 3
    """
    from edgeres.names import resolve_model_file
    from edgeres.runtime import load

    images = _expand_folders(images)
    threads = _capped_threads(threads)
    path = resolve_model_file(model)
    precision = cast("Literal['model', 'fast']", mode or precision_alias or "model")
    p = load(path, backend=cast("Backend", backend), device=cast("Device", device),
             precision=precision, threads=threads,
             meta=_stated_meta(path, record))
    results = p.predict(list(images), top_k=top_k)
    if as_json:
        click.echo(_predictions_json(p, images, results))
        return
    click.echo(f"{p.meta.name} on {p.runtime} ({p.executed_precision})")
    for image, r in zip(images, results, strict=True):
        click.echo(image)
        for label, prob in zip(r.labels, r.probabilities, strict=True):
            click.echo(f"  {prob:8.4f}  {label}")


@cli.command("package")
@click.argument("model")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Bundle folder to create, or a path ending in .zip.")
@click.option("--force", is_flag=True, help="Replace an existing bundle at OUTPUT.")
@click.option("--golden", "golden_data", help="Images for golden.npz [default: the validation "
              "or calibration data in the model's record; cifar10-val for CIFAR-10 models].")
@click.option("--golden-samples", type=click.IntRange(min=1), default=64, show_default=True,
              help="Golden images (fewer for large inputs: 2 MiB of pixels at most).")
@record_options
def package_command(model: str, output: Path, force: bool, golden_data: str | None,
                    golden_samples: int, record: Any) -> None:
    """Write a device bundle for MODEL (.onnx, OpenVINO .xml, or a registered name).

    The bundle holds the model, metadata.json, labels.txt, requirements.txt, a one-file
    infer.py and a README, and runs with numpy, Pillow and one runtime: no edgeres needed.

    \b
    Example:
        edgeres package cifar10 -o cifar10-bundle.zip
    """
    import tempfile

    from edgeres.names import resolve_model_file
    from edgeres.package import package

    with tempfile.TemporaryDirectory(prefix="edgeres.attach.") as tmp:
        if record is not None:  # the bundle's model carries the stated record, as attach writes
            from edgeres.foreign import attach as attach_record

            src = resolve_model_file(model)
            _onnx_only(src)
            model = str(attach_record(src, Path(tmp) / src.name, record).path)
        r = package(model, output, overwrite=force, golden=golden_data,
                    golden_samples=golden_samples)
    click.echo(f"wrote {r.path} ({r.size_bytes / 1e6:.1f} MB: {', '.join(r.files)})")
    click.echo(f"needs numpy, Pillow and {r.runtime}; checked: the bundled model loads and "
               f"classifies a grey test image as {r.check_label!r}")


@cli.command("verify")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option("--golden", "golden_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="Another golden file [default: the bundle's golden.npz].")
@click.option("--threads", type=click.IntRange(min=1), help="Inference threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def verify_command(bundle: Path, golden_file: Path | None, threads: int | None,
                   as_json: bool) -> None:
    """Check BUNDLE on this machine against the logits its packaging host computed.

    Runs the bundle's golden inputs and prints one verdict: top-1 agreement, max |delta
    logit|, the precision the runtime executes, this CPU's int8 flags and whether the model's
    quantization target suits it. Exits 1 when the check fails. The bundle's own
    `python infer.py --verify` runs the same check without edgeres.

    \b
    Example:
        edgeres verify cifar10-bundle/
    """
    import json

    from edgeres.golden import render
    from edgeres.verify import verify_bundle

    verdict = verify_bundle(bundle, golden_file=golden_file, threads=threads)
    click.echo(json.dumps(verdict, indent=1) if as_json else render(verdict))
    if not verdict["passed"]:
        sys.exit(1)


# --- quantize -----------------------------------------------------------------------------------


@cli.command("quantize")
@click.argument("model")
@click.option("--calib", required=True, help="Calibration data: folder, .npy/.npz, or cifar10.")
@click.option("--backend", type=click.Choice(["ort", "openvino"]), default="ort", show_default=True,
              help="ort: ONNX Runtime QDQ .onnx; openvino: NNCF, OpenVINO IR .xml.")
@click.option("--target", type=click.Choice(["auto", "x86-vnni", "x86", "arm", "tensorrt"]),
              default="auto", show_default=True, help="Deployment hardware (auto: this host).")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]),
              help="Calibration method [default: minmax for ort, NNCF's own for openvino].")
@click.option("--samples", type=click.IntRange(min=1), default=300, show_default=True,
              help="Calibration images, drawn with a fixed seed.")
@click.option("--per-channel/--per-tensor", default=None, help="Weight scales [default: target's].")
@click.option("--exclude", multiple=True, help="Node name to keep in float (repeatable).")
@click.option("--val", help="Labelled validation data (e.g. cifar10-val) for fp32 vs int8.")
@click.option("--max-drop", type=float, help="Top-1 budget in points on --val; layers go float.")
@click.option("--eval", "eval_data", help="Labelled test data, reported only (e.g. cifar10-test).")
@click.option("--preset", type=click.Choice(["performance", "mixed"]), default="performance",
              show_default=True, help="NNCF preset (openvino backend).")
@click.option("--cluster", help="Score the --max-drop fallback candidates as parallel tasks on "
              "this Ray cluster (HOST:PORT, or auto = $RAY_ADDRESS); needs edgeres[cluster].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="int8 model: .onnx (ort) or .xml (openvino, .bin beside it).")
@record_options
def quantize_command(model: str, calib: str, backend: str, target: str, method: str | None,
                     samples: int, per_channel: bool | None, exclude: tuple[str, ...],
                     val: str | None, max_drop: float | None, eval_data: str | None, preset: str,
                     cluster: str | None, output: Path, record: Any) -> None:
    """Quantize MODEL (.onnx or a registered name) to static int8, calibrated on --calib.

    With --val and --max-drop, the most sensitive layers return to float until the top-1
    drop on the validation data fits the budget. A JSON report goes beside the output.

    \b
    Example:
        edgeres quantize cifar10 --calib cifar10 --val cifar10-val --max-drop 0.5 \\
            --eval cifar10-test -o resnet20-int8.onnx
    """
    from edgeres.calibration import CalibrationSet, model_record
    from edgeres.names import resolve_model_file
    from edgeres.quantize import QuantConfig, quantize

    config = QuantConfig(target=cast("Target", target), method=cast("Method | None", method),
                         samples=samples, per_channel=per_channel,
                         exclude=exclude, val=val, max_drop=max_drop, eval=eval_data,
                         preset=cast("Preset", preset), cluster=cluster)
    src = resolve_model_file(model)
    meta = model_record(src, options=record)
    report = quantize(src, output, CalibrationSet.from_data(calib, meta),
                      backend=cast("QuantBackend", backend), config=config)
    _render_quant(report)


def _echo_accuracy(what: str, acc: Any) -> None:
    """fp32 and int8 top-1 with 95% intervals, and the paired drop with its test."""
    def ci(interval: Any) -> str:
        return f"[{interval[0]:.2f}, {interval[1]:.2f}]"

    both = "" if acc.fp32_interval is None or acc.int8_interval is None else (
        f" (95% intervals {ci(acc.fp32_interval)}, {ci(acc.int8_interval)})")
    click.echo(f"{what} on {acc.data} ({acc.count} images): fp32 top-1 {acc.fp32_top1:.2f}%, "
               f"int8 {acc.int8_top1:.2f}%{both}")
    d = acc.paired
    if d is None:
        click.echo(f"  drop {acc.drop:+.2f} points")
        return
    click.echo(f"  drop {d.drop:+.2f} points, 95% interval [{d.low:+.2f}, {d.high:+.2f}] "
               f"({d.lost} images lost, {d.gained} gained; McNemar p={d.p_value:.2g}): "
               + ("within noise" if d.noise else "a real difference"))


def _render_quant(r: Any) -> None:
    """Print a ``QuantReport``: calibration, types, accuracies, float layers, per-layer SQNR."""
    c, d = r.calibration, r.details
    click.echo(f"calibration: {c.count} images from {r.calibration_data} ({c.skipped} unreadable "
               f"skipped), method {r.method}")
    click.echo(f"target {r.target}: activations {d.activation_type}"
               f"{' symmetric' if d.activation_symmetric else ''}, weights int8 "
               f"{'per-channel' if d.per_channel else 'per-tensor'}"
               f"{', 7-bit (reduce_range)' if d.reduce_range else ''}")
    if d.opset_upgraded:
        old, new = d.opset_upgraded
        click.echo(f"upgraded opset {old} → {new} first (int8 QDQ needs opset {new} or later)")
    if r.layers:
        rows = [[e.name, e.op_type, "float" if e.float else "int8",
                 "inf" if e.sqnr_db == float("inf") else f"{e.sqnr_db:.1f}"] for e in r.layers]
        n = d.layer_report_images
        _echo_table("per-layer output SQNR vs fp32 (dB, higher is better"
                    + (f"; on {n} calibration images)" if n else ")"),
                    ["layer", "op", "kept", "SQNR"], rows)
    for what, acc in (("validation", r.validation), ("evaluation", r.evaluation)):
        if acc is not None:
            _echo_accuracy(what, acc)
    if r.budget_verdict is not None:
        high = r.validation.paired.high if r.validation.paired else None
        bound = "" if high is None else f" (95% upper bound of the drop {high:+.2f})"
        click.echo(f"--max-drop {r.max_drop:g}: {r.budget_verdict}{bound}")
    fb = r.fallback
    if fb is not None and len(fb.attempts) > 1:
        first = fb.attempts[0]
        click.echo(f"all-int8 top-1 {first.top1:.2f}% (drop {first.drop:+.2f}) missed the "
                   f"{r.max_drop:g}-point budget")
    if fb is not None and fb.costs:
        click.echo(f"float layers to meet the {r.max_drop:g}-point budget "
                   f"({len(fb.attempts)} candidates measured):")
        for cost in fb.costs:
            ms = "n/a" if cost.latency_cost_ms is None else f"{cost.latency_cost_ms:+.3f} ms"
            click.echo(f"  {cost.name}: {cost.sqnr_gain_db:+.2f} dB output SQNR, {ms}")
        click.echo(f"  latency (batch 1, 1 thread): all-int8 {fb.latency_ms['int8']:.3f} ms, "
                   f"chosen {fb.latency_ms['chosen']:.3f} ms")
    click.echo(f"float layers: {', '.join(r.float_layers) if r.float_layers else 'none'}")
    click.echo(f"wrote {r.dst} ({r.seconds:.1f} s); report {r.report_path}")


def main() -> None:
    """Console-script entry point: SIGTERM/SIGHUP clean up as Ctrl-C does (``_interrupt``)."""
    from edgeres import _interrupt

    _interrupt.install()
    try:
        cli(prog_name="edgeres")
    finally:
        _interrupt.quiet()
        try:
            sys.stdout.flush()  # click exits through SystemExit; a failed flush must not print
        except OSError as e:
            _stdout_failed(e)
