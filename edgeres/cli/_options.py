"""Shared option helpers for the commands: the stated-preprocessing options (``record_options``,
``_record``), number/label/batch parsers, the comma-list ``ParamType``, output paths, and the
table renderer. No command lives here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgeres.errors import ConfigError, DataError
from edgeres.meta import INTERPOLATIONS


def _count(n: int, noun: str) -> str:
    """``1 image``, ``3 images``: a count with its noun in the right number."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


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
    click.option("--interpolation", type=click.Choice(INTERPOLATIONS),
                 help="Resize filter [default: bilinear]; bilinear-no-antialias matches "
                 "cv2.resize INTER_LINEAR and tf.image.resize (Keras/OpenCV pipelines)."),
    click.option("--layout", type=click.Choice(["NCHW", "NHWC"]),
                 help="Input layout (from the graph when unambiguous)."),
    click.option("--labels", "labels_file", type=click.Path(dir_okay=False, path_type=Path),
                 help="Text file, one class name per line, in output order."),
    click.option("--output-kind", type=click.Choice(["logits", "probabilities"]),
                 help="What the output rows are (from the graph when it ends in a Softmax)."),
)
_RECORD_NAMES = ("mean", "std", "scale", "channels", "resize", "input_size", "interpolation",
                 "layout", "labels_file", "output_kind")


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
            layout: str | None, labels_file: Path | None, output_kind: str | None = None,
            name: str | None = None) -> Any:
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
        layout=layout, labels=tuple(labels) if labels is not None else None, name=name,
        output=output_kind)
    return options if options.stated else None


def _labels_file(path: Path | None) -> list[str] | None:
    """``_read_labels`` for a stated labels file, refusing names that would garble output."""
    from edgeres._record_check import unprintable

    if path is not None and not path.is_file():
        msg = f"labels file {path} does not exist; pass a text file, one label per line"
        raise DataError(msg)
    labels = _read_labels(path)
    for i, label in enumerate(labels or ()):
        if unprintable(label):
            msg = (f"labels file {path}, line {i + 1}: {label!r:.60} holds a control character "
                   "(escape code, tab, bidirectional override); labels must be printable text")
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


_OUT = click.Path(dir_okay=False, path_type=Path)

# The one overwrite rule of the commands that write a model or a bundle (export, attach,
# quantize, package): an existing output is replaced only with --force.
force_option = click.option("--force", is_flag=True,
                            help="Replace OUTPUT if it exists (refused otherwise).")


def _refuse_existing(output: Path, force: bool, inputs: tuple[Path | None, ...] = ()) -> None:
    """Refuse an existing regular file at ``output`` without ``--force``.

    Anything else at ``output`` (a FIFO, a link, the run's own input) is left to
    ``_fs.check_output``, whose message names what it is.
    """
    from edgeres.errors import EdgeresError

    if force or output.is_symlink() or not output.is_file():
        return
    if any(p is not None and p.exists() and output.samefile(p) for p in inputs):
        return
    msg = f"{output} already exists; choose another output path or pass --force to replace it"
    raise EdgeresError(msg)


class _CommaList(click.ParamType):
    """A comma list option (``--runtime ort-cpu,openvino-cpu``, ``--batch 1,8``) parsed by a
    library parser into a typed tuple; a bad entry is its ``ConfigError``: one line, exit 1."""

    def __init__(self, name: str, parse: Any) -> None:
        self.name, self._parse = name, parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        return value if value is None or isinstance(value, tuple) else self._parse(value)



def bench_config_options(f: Any) -> Any:
    """Add one option per ``BenchConfig`` field that has help (``bench.config.option_specs``):
    flag, type, default and help all come from the dataclass, so a new bench setting is a
    field there and nothing here. The command receives them by field name."""
    from edgeres.bench import config

    def parser(name: str) -> Any:
        return getattr(config, name)

    for spec in reversed(config.option_specs()):
        kwargs: dict[str, Any] = {"help": spec.help}
        if spec.kind == "bool":
            decl = f"{spec.flag}/--no-{spec.flag[2:]}"
            kwargs.update(default=spec.default, is_flag=True)
        else:
            decl = spec.flag
            kwargs["type"] = ({"int": int, "float": float, "str": str}.get(spec.kind)
                              or _CommaList(spec.name, parser(spec.parser or "")))
            if spec.default is not None:
                kwargs.update(show_default=True, default=(
                    ",".join(map(str, spec.default)) if spec.kind == "list" else spec.default))
        f = click.option(decl, spec.name, **kwargs)(f)
    return f
# --- no input is ever an output ------------------------------------------------------------------

# The parameters, on every command, that name something the command reads or writes.
_READS = ("model", "model_file", "images", "weights", "labels", "labels_file", "calib", "val",
          "eval_data", "data", "golden_data", "golden_file", "class_map")
_WRITES = ("output", "json_out", "csv_out", "md_out", "plot_out")


def _registered(value: str) -> list[Path]:
    """The shipped files a registered name stands for (a model, weights or data set)."""
    from edgeres import names
    from edgeres.errors import UnknownNameError

    found = []
    for resolve in (names.resolve_model_file, names.resolve_weights, names.resolve_data):
        try:
            found.append(resolve(value))
        except (UnknownNameError, OSError, ValueError):
            pass
    return found


def _values(value: Any) -> list[Any]:
    """A parameter's values: none, one, or a tuple of them (``nargs=-1``)."""
    return [v for v in (value if isinstance(value, tuple) else (value,)) if v is not None]


def check_paths(*outputs: Path, folders: bool = False, one_file: bool = False) -> None:
    """Every path the running command reads (model, its .bin, labels, data, calibration,
    golden, images) against every path it writes (and standard output), resolved, before
    any work: ``_fs.check_outputs`` refuses the run in one line if one would replace another.

    Args:
        outputs: outputs the command writes beside the ones it was given (a report, a .bin).
        folders: the output may be an existing folder (``package``'s bundle).
        one_file: the model must be one file (a bundle carries no external data).
    """
    from edgeres._fs import check_outputs, input_files
    from edgeres._onnx_record import check_external_data, check_record_entries, external_files

    params = click.get_current_context().params
    reads: list[str | Path] = []
    for name in _READS:
        for v in _values(params.get(name)):
            reads += [v, *(_registered(str(v)) if name != "images" else ())]
    writes = [params.get(name) for name in _WRITES]
    names = [v for n in ("model", "model_file") for v in _values(params.get(n))]
    for name in names:  # ONNX Runtime and OpenVINO take UTF-8 paths only
        try:
            str(name).encode("utf-8")
        except UnicodeEncodeError:
            msg = (f"the model path {str(name)!a} is not valid UTF-8 (a file name in another "
                   "encoding); rename the file with UTF-8 characters")
            raise ConfigError(msg) from None
    models = [p for p in input_files([*names, *(f for m in names for f in _registered(str(m)))])
              if p.suffix.lower() == ".onnx"]
    for path in models:  # external data outside the folder, a device or FIFO: before any read
        check_external_data(path)
    files = input_files([*reads, *(f for m in models for f in external_files(m))])
    check_outputs([*writes, *outputs], inputs=files, stdout=True, folders=folders)
    for path in models:  # two records, or one not UTF-8: refused by every command alike
        check_record_entries(path)
        if one_file and external_files(path):
            msg = (f"{path} keeps its weights in external data files "
                   f"({', '.join(f.name for f in external_files(path))}); a bundle carries one "
                   "model file: save the model with its weights inside (onnx.save(model, path)"
                   ") and package that")
            raise ConfigError(msg)


def capped_threads(threads: int | None) -> int | None:
    """``--threads`` within the CPUs this process may use (``_resources.cap_threads``, the one
    thread rule), with a note when capped: 100000 threads hung ``eval``, 10**30 overflowed."""
    from edgeres._resources import cap_threads

    threads, note = cap_threads(threads)
    if note:
        click.echo(f"note: {note}", err=True)
    return threads
