"""Every way a benchmark run is shown or saved: terminal table, JSON, CSV, markdown, plot.

This is the only module that turns bench numbers into text (CONTRIBUTING R11): rows hold floats, and
here they become "0.648 ms". The JSON follows ``edgeres/bench/schema.json`` (``schema_version``
1): one object per row plus the environment block, the settings and the notes, with non-finite
floats written as null. The fastest ok row per model and batch size is marked ``*``. The plot
needs matplotlib (the ``[plot]`` extra), imported only when a plot is asked for.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgeres._fs import atomic_write, json_safe
from edgeres._fs import check_outputs as _check_outputs
from edgeres.bench.config import RuntimeLabel
from edgeres.bench.results import BenchRow, BenchRun, Note
from edgeres.errors import ConfigError, missing_extra

__all__ = ["PLOT_FORMATS", "check_outputs", "environment_lines", "fastest", "markdown",
           "note_text", "plot_format", "plot_size", "schema", "table", "to_json_dict",
           "write_csv", "write_json", "write_markdown", "write_plot"]

SCHEMA_FILE = Path(__file__).with_name("schema.json")
_COLUMNS = ("", "model", "runtime", "precision", "batch", "p50 ms", "p50 95% CI", "p90 ms",
            "p99 ms", "mean ± std ms", "img/s", "spread", "size MB", "mem MB", "top-1",
            "top-1 95% CI", "agree", "drop [95% CI]", "McNemar p", "status")
# The default table: what fits 80 columns (``--wide`` gives _COLUMNS).
_COMPACT = ("", "runtime", "precision", "batch", "p50 ms", "img/s", "top-1 %", "agree/drop",
            "status")
_LEFT = ("model", "runtime", "precision", "prec", "status")
WIDTH = 80
_DASH = "–"
PLOT_FORMATS: dict[str, str] = {".png": "png", ".svg": "svg", ".pdf": "pdf"}  # suffix → format


def schema() -> dict[str, Any]:
    """The JSON schema the ``--json`` output follows."""
    return json.loads(SCHEMA_FILE.read_text())


def plot_format(path: Path) -> str:
    """The matplotlib format a plot path asks for by its suffix.

    Raises:
        ConfigError: for a suffix other than .png, .svg or .pdf.
    """
    fmt = PLOT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        msg = (f"cannot tell the plot format of {path}; end the name in "
               f"{', '.join(PLOT_FORMATS)}")
        raise ConfigError(msg)
    return fmt


def check_outputs(paths: Iterable[Path | None], *, plot: Path | None = None,
                  inputs: Iterable[Path | None] = ()) -> None:
    """Fail before a long run, not after it, when an output cannot be written.

    Args:
        paths: the --json, --csv and --markdown outputs (None where not asked for).
        plot: the --plot output.
        inputs: the model files benchmarked, which no output may overwrite.

    Raises:
        EdgeresError: if an output's directory does not exist, an output is a directory,
            device, FIFO or link, is one of the models, or two outputs are the same file.
        ConfigError: if the plot's suffix is not .png, .svg or .pdf.
        BackendNotAvailable: if a plot is asked for and matplotlib is not installed.
    """
    import importlib.util

    if plot is not None:
        plot_format(plot)
    _check_outputs([*paths, plot], inputs=inputs)
    if plot is not None and importlib.util.find_spec("matplotlib") is None:
        package = "matplotlib"
        raise missing_extra(package, "plot")


def _ms(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return _DASH
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def _mb(v: int | None) -> str:
    return _DASH if v is None else f"{v / 1e6:.1f}"


def _pct(v: float | None) -> str:
    return _DASH if v is None else f"{v:.1f}%"


def fastest(rows: Iterable[BenchRow]) -> set[int]:
    """Indices (in ``rows``) of the lowest-p50 ok row per (model, batch)."""
    best: dict[tuple[str, int, str | None], tuple[float, int]] = {}
    for i, r in enumerate(rows):
        if r.status == "ok" and r.latency is not None:
            key = (r.model, r.batch, r.node)
            if key not in best or r.latency.p50_ms < best[key][0]:
                best[key] = (r.latency.p50_ms, i)
    return {i for _, i in best.values()}


def _precision(r: BenchRow) -> str:
    if r.executed_precision and r.executed_precision != r.precision:
        return f"{r.precision}→{r.executed_precision}"
    return r.precision


def _status(r: BenchRow) -> str:
    text = r.status if r.reason is None else f"{r.status}: {r.reason}"
    return f"{text} (partial)" if r.partial else text


def _ci(low: float | None, high: float | None, fmt: Any = None) -> str:
    fmt = fmt or _ms
    return _DASH if low is None or high is None else f"[{fmt(low)}, {fmt(high)}]"


def _drop_cells(acc: Any) -> list[str]:
    d = acc and acc.drop
    if not d:
        return [_DASH, _DASH]
    return [f"{d.drop:+.2f} [{d.low:+.2f}, {d.high:+.2f}]", f"{d.p_value:.2g}"]


def _cells(r: BenchRow, star: bool) -> list[str]:
    """The wide table's (and markdown's) cells, ``_COLUMNS``."""
    lat, acc = r.latency, r.accuracy
    mem = r.memory.delta_bytes if r.memory else None
    return [
        "*" if star else "", r.model, r.runtime_label, _precision(r), str(r.batch),
        _ms(None if lat is None else lat.p50_ms),
        _ci(None if lat is None else lat.p50_low_ms, None if lat is None else lat.p50_high_ms),
        _ms(None if lat is None else lat.p90_ms), _ms(None if lat is None else lat.p99_ms),
        _DASH if lat is None else f"{_ms(lat.mean_ms)} ± {_ms(lat.std_ms)}",
        _DASH if lat is None else f"{lat.throughput_ips:.1f}",
        _DASH if lat is None else f"{100 * lat.round_spread:.1f}%",
        _mb(r.size_bytes), _mb(mem), _top1(None if acc is None else acc.top1),
        _ci(None if acc is None else acc.top1_low, None if acc is None else acc.top1_high, _top1),
        _pct(None if acc is None else acc.agreement), *_drop_cells(acc), _status(r),
    ]


def _top1(v: float | None) -> str:
    return _DASH if v is None else f"{v:.2f}"


def short_model(r: BenchRow) -> str:
    """A row's model as a reader names it: a file's name without its folder and suffix; for
    torch rows the checkpoint they run (``resnet18 weights.pt``), not the .onnx."""
    if RuntimeLabel.parse(r.runtime).backend == "torch" and r.model_file:
        zoo = r.details.get("zoo_name")
        ckpt = Path(r.model_file).name
        return f"{zoo} {ckpt}" if zoo else ckpt
    p = Path(r.model)
    return p.stem if p.suffix.lower() in (".onnx", ".xml") else r.model


def _plus_minus(value: float, low: float | None, high: float | None) -> str:
    """``±x%``: the larger distance from ``value`` to an interval end, relative to it."""
    if low is None or high is None or value <= 0:
        return ""
    rel = 100 * max(high - value, value - low) / value
    return f" ±{rel:.1f}%" if rel < 10 else f" ±{rel:.0f}%"


def _agree_drop(r: BenchRow) -> str:
    acc = r.accuracy
    if acc is None:
        return _DASH
    if acc.drop is not None:
        return f"{acc.drop.drop:.2f} " + ("noise" if acc.drop.noise else "pt")
    if acc.reference == f"{r.precision}/{r.runtime}" and r.precision_mode == "model" \
            and r.io != "host":
        return "ref"
    return _pct(acc.agreement)


def _compact_cells(r: BenchRow, star: bool) -> list[str]:
    """The default table's cells, ``_COMPACT``."""
    lat, acc = r.latency, r.accuracy
    p50 = _DASH if lat is None else _ms(lat.p50_ms) + _plus_minus(
        lat.p50_ms, lat.p50_low_ms, lat.p50_high_ms)
    ips = _DASH if lat is None else (f"{lat.throughput_ips:.0f}" if lat.throughput_ips >= 100
                                     else f"{lat.throughput_ips:.1f}")
    top1 = _top1(None if acc is None else acc.top1)
    if (acc and acc.top1 is not None and acc.top1_low is not None
            and acc.top1_high is not None):
        top1 += f"±{max(acc.top1_high - acc.top1, acc.top1 - acc.top1_low):.2f}"
    status = r.status + (" (partial)" if r.partial else "")
    return ["*" if star else "", r.runtime_label, _precision(r), str(r.batch), p50, ips, top1,
            _agree_drop(r), status]


def note_text(note: Note, rows: Iterable[BenchRow] = ()) -> str:
    """One line for a note; ``int8-slower`` notes get the two p50s they compare."""
    where = ", ".join(p for p in (note.model, note.runtime,
                                  None if note.batch is None else f"batch {note.batch}") if p)
    text = note.text
    if note.kind == "int8-slower":
        p50 = {r.precision: r.latency.p50_ms for r in rows
               if (r.model, r.runtime, r.batch) == (note.model, note.runtime, note.batch)
               and r.precision_mode == "model" and r.io != "host" and r.latency is not None}
        text = (f"int8 p50 {_ms(p50.get('int8'))} ms is not below fp32 p50 "
                f"{_ms(p50.get('fp32'))} ms")
    if note.causes:
        text += ("; likely: " if note.kind == "int8-slower" else ": ") + "; ".join(note.causes)
    return f"{where}: {text}" if where else text


def _scaled(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction


def _gpu_line(gpu: dict[str, Any]) -> str:
    facts = [("driver", gpu.get("driver")), ("driver CUDA", gpu.get("cuda_driver")),
             ("torch CUDA", gpu.get("torch_cuda")), ("cuDNN", gpu.get("cudnn")),
             ("compute capability", gpu.get("capability"))]
    count = f"{gpu['count']} x " if gpu.get("count", 1) > 1 else ""
    mem = f", {gpu['memory_mib'] / 1024:.0f} GiB" if gpu.get("memory_mib") else ""
    return f"{count}{gpu.get('name')}{mem}; " + ", ".join(f"{k} {v}" for k, v in facts if v)


def _spinning(spin: bool | None) -> str:
    """ONNX Runtime's thread spinning for the threads line; nothing in older results."""
    return "" if spin is None else f" (ONNX Runtime spinning {'on' if spin else 'off'})"


def environment_lines(run: BenchRun) -> list[str]:
    """The machine and conditions, one fact per line."""
    e = run.environment
    versions = ", ".join(f"{k} {v}" for k, v in e.versions.items() if v)
    load = _DASH if e.load_average is None else " / ".join(f"{v:.2f}" for v in e.load_average)
    s = run.settings
    timing = (f"{s.iterations} calls" if s.iterations else f"{s.duration:g} s") + \
        f" per row over {s.rounds} interleaved rounds after {s.warmup} warm-up calls"
    lines = [
        f"CPU: {e.cpu} ({e.machine}), {e.physical_cores} physical / {e.logical_cores} logical "
        f"cores; ISA: {', '.join(e.isa) or 'none detected'}",
        *([f"GPU: {_gpu_line(e.gpu)}"] if e.gpu else []),
        f"OS: {e.os}; Python {e.python}; {versions}",
        f"At start: CPU used by other processes {_pct(_scaled(e.busy_others))}; "
        f"load average (1/5/15 min) {load}",
        f"Threads: {s.threads}{_spinning(s.ort_spinning)}; timing: {timing}",
        f"Run: {run.created}" + (" — INTERRUPTED, partial results" if run.interrupted else ""),
    ]
    if s.conditions:
        lines.append(f"Conditions: {s.conditions}")
    for label, n in run.nodes.items():  # edgeres bench --cluster: where each row ran
        versions = ", ".join(f"{k} {v}" for k, v in n.versions.items() if v)
        lines.append(f"Node {label}: {n.cpu} ({n.machine}), {n.physical_cores} physical / "
                     f"{n.logical_cores} logical cores; ISA: {', '.join(n.isa) or 'none detected'}"
                     f"; {n.os}; Python {n.python}; {versions}")
    return lines


def table(run: BenchRun, *, wide: bool = False) -> Any:
    """The run for a terminal, fastest row per model and batch marked ``*``.

    The default is compact: one ``WIDTH``-column (80) table per model, titled with its name
    (for torch rows, the checkpoint they run), skipped rows left to ``summary_lines``.
    ``wide`` gives one ``rich.table.Table`` with every column and every row.
    """
    from rich.console import Group
    from rich.table import Table

    title = "edgeres bench" + (" (interrupted)" if run.interrupted else "")
    best = fastest(run.rows)
    if wide:
        t = Table(title=title)
        for col in _COLUMNS:
            t.add_column(col, justify="left" if col in _LEFT else "right", overflow="fold")
        for i, r in enumerate(run.rows):
            t.add_row(*_cells(r, i in best), style=_style(r))
        return t
    tables = []
    for model in dict.fromkeys(r.model for r in run.rows):
        shown = [(i, r) for i, r in enumerate(run.rows)
                 if r.model == model and r.status != "skipped"]
        if not shown:
            continue
        t = _compact_table(f"{title}: {short_model_name(model)}")
        for i, r in shown:
            t.add_row(*_compact_cells(r, i in best), style=_style(r))
        ckpts = sorted({short_model(r) for _, r in shown
                        if RuntimeLabel.parse(r.runtime).backend == "torch"})
        if ckpts:
            t.caption = f"torch rows run {', '.join(ckpts)}"
        tables.append(t)
    return Group(*tables)


def _style(r: BenchRow) -> str | None:
    return None if r.status == "ok" else "dim" if r.status == "skipped" else "red"


def _compact_table(title: str) -> Any:
    from rich import box
    from rich.table import Table

    t = Table(title=title, box=box.SIMPLE_HEAD, padding=0, pad_edge=False,
              show_edge=False, title_justify="left", caption_justify="left")
    for col in _COMPACT:
        t.add_column(col, justify="left" if col in _LEFT else "right", overflow="fold",
                     no_wrap=col not in ("runtime", "status"),
                     min_width=len("openvino-cpu") if col == "runtime" else None)
    return t


def _fmt_speedup(s: Any) -> str:
    ci = "" if s.low is None else f" [{s.low:.2f}, {s.high:.2f}]"
    return f"{s.estimate:.2f}x{ci}"


def comparison_lines(run: BenchRun) -> list[str]:
    """One sentence per int8 row: its speedup over each fp32 baseline and its top-1 drop, each
    with its 95% interval and what the interval allows one to say."""
    from edgeres.bench.compare import comparisons

    grouped: dict[tuple[str, str, int], list[Any]] = {}
    for c in comparisons(run.rows):
        grouped.setdefault((c.model, c.runtime, c.batch), []).append(c)
    several = len({model for model, _, _ in grouped}) > 1
    lines = []
    for (model, runtime, batch), cs in grouped.items():
        where = (f"{short_model_name(model)} " if several else "") + f"{runtime} batch {batch}"
        parts = [f"{_fmt_speedup(c.speedup)} vs {c.against.split(' of ')[0]}: "
                 + _VERDICT[c.speedup.verdict] for c in cs]
        text = f"{where}: int8 " + "; ".join(parts)
        d = cs[0].drop
        if d is not None:
            text += (f"; top-1 drop {d.drop:+.2f} points [{d.low:+.2f}, {d.high:+.2f}], "
                     f"McNemar p={d.p_value:.2g}: " + ("noise" if d.noise else "real"))
        lines.append(text)
    return lines


_VERDICT = {"faster": "faster", "slower": "slower", "no clear difference": "not clearly faster"}


def short_model_name(model: str) -> str:
    """A MODEL argument without its folder and model suffix."""
    p = Path(model)
    return p.stem if p.suffix.lower() in (".onnx", ".xml") else model


def summary_lines(run: BenchRun, *, wide: bool = False) -> list[str]:
    """What the compact table leaves out: skipped rows (one line per reason), failures, the
    comparisons and a key. ``wide`` omits the skipped rows, which its table lists."""
    out = []
    if not wide:
        by_reason: dict[str, list[str]] = {}
        for r in run.rows:
            if r.status == "skipped":
                what = f"{short_model_name(r.model)} {r.label}"
                names = by_reason.setdefault(r.reason or "", [])
                if what not in names:
                    names.append(what)
        for reason, names in by_reason.items():
            out.append(f"skipped {', '.join(names)}: {reason}")
    for r in run.rows:
        if r.status == "failed":
            out.append(f"failed {short_model_name(r.model)} {r.label} batch {r.batch}: {r.reason}")
    out += comparison_lines(run)
    if not wide and any(r.latency for r in run.rows):
        out.append("p50 ± the farther end of its 95% interval; top-1 ± its 95% Wilson interval; "
                   "drop = points of top-1 lost against the reference on the same images, "
                   "'noise' when its 95% interval holds 0; speedup [95% interval], 'faster' "
                   "only when the interval excludes 1 (unpaired for a separate int8 file, "
                   "timed in other rounds); img/s = batch / mean latency (what back-to-back "
                   "calls sustain; p50 is the typical call); * fastest; --wide for all columns")
    return out


def to_json_dict(run: BenchRun) -> dict[str, Any]:
    """The run as the schema's JSON object, with each int8 row's comparisons to fp32."""
    from edgeres.bench.compare import comparisons

    notes = [{"kind": n.kind, "text": note_text(n, run.rows), "model": n.model,
              "runtime": n.runtime, "batch": n.batch, "causes": list(n.causes)}
             for n in run.notes]
    return json_safe({
        "schema_version": run.schema_version, "tool": "edgeres bench", "created": run.created,
        "interrupted": run.interrupted, "environment": run.environment.to_dict(),
        "settings": run.settings.to_dict(), "rows": [r.to_dict() for r in run.rows], "notes": notes,
        "comparisons": [c.to_dict() for c in comparisons(run.rows)],
        **({"nodes": {k: e.to_dict() for k, e in run.nodes.items()}} if run.nodes else {}),
    })


def write_json(run: BenchRun, path: Path) -> None:
    """Write the JSON report atomically."""
    with atomic_write(Path(path)) as tmp:
        tmp.write_text(json.dumps(to_json_dict(run), indent=1) + "\n")


_CSV_FIELDS = ("model", "source", "runtime", "precision", "executed_precision", "precision_mode",
               "batch", "threads", "status", "reason", "partial", "count", "mean_ms", "std_ms",
               "min_ms", "p50_ms", "p90_ms", "p99_ms", "throughput_ips", "round_spread",
               "size_bytes", "peak_rss_bytes", "memory_delta_bytes", "top1", "top5", "agreement",
               "eval_count", "model_file", "io", "first_call_ms", "node", "spinning")


def _csv_row(r: BenchRow) -> dict[str, Any]:
    d: dict[str, Any] = {k: getattr(r, k) for k in _CSV_FIELDS if hasattr(r, k)}
    if r.latency is not None:
        d.update({k: getattr(r.latency, k) for k in _CSV_FIELDS if hasattr(r.latency, k)})
    if r.memory is not None:
        d.update(peak_rss_bytes=r.memory.peak_rss_bytes, memory_delta_bytes=r.memory.delta_bytes)
    if r.accuracy is not None:
        d.update(top1=r.accuracy.top1, top5=r.accuracy.top5, agreement=r.accuracy.agreement,
                 eval_count=r.accuracy.count)
    d["spinning"] = r.details.get("spinning")  # ONNX Runtime rows: their threads' spinning
    return {k: "" if v is None else repr(v) if isinstance(v, float) else v for k, v in d.items()}


def write_csv(run: BenchRun, path: Path) -> None:
    """One CSV line per row, raw numbers (ms, bytes, percent), empty where not measured."""
    with atomic_write(Path(path)) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_CSV_FIELDS)
        writer.writeheader()
        for r in run.rows:
            writer.writerow(_csv_row(r))


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(run: BenchRun) -> str:
    """The run as markdown: conditions, the table, notes."""
    out = ["# edgeres bench" + (" (interrupted: partial results)" if run.interrupted else ""), ""]
    out += [f"- {line}" for line in environment_lines(run)] + [""]
    out.append("| " + " | ".join(c or "fastest" for c in _COLUMNS) + " |")
    out.append("|" + "|".join("---" if c in ("", "model", "runtime", "precision", "status")
                              else "---:" for c in _COLUMNS) + "|")
    best = fastest(run.rows)
    for i, r in enumerate(run.rows):
        out.append("| " + " | ".join(_md_cell(c) for c in _cells(r, i in best)) + " |")
    out += ["", "p50/p90/p99: numpy 'linear' percentiles of per-call latency; img/s = batch / "
            "mean; spread = (max - min) / p50 of the per-round medians; mem = peak RSS of a "
            "process running the row minus one that only imported the runtime; agree = top-1 "
            "agreement with the fp32 reference row on the same images (for an int8 file, the "
            "reference row of the fp32 file it was quantized from when that is in the run); "
            "95% intervals: p50 from the order statistics of the calls, top-1 Wilson, drop "
            "(reference top-1 minus the row's, same images) Newcombe with an exact McNemar "
            "test.", ""]
    lines = comparison_lines(run)
    if lines:
        out += ["## int8 against fp32", ""] + [f"- {_md_cell(line)}" for line in lines] + [""]
    if run.notes:
        out += ["## Notes", ""] + [f"- {_md_cell(note_text(n, run.rows))}" for n in run.notes]
        out.append("")
    return "\n".join(out)


def write_markdown(run: BenchRun, path: Path) -> None:
    """Write the markdown report atomically."""
    with atomic_write(Path(path)) as tmp:
        tmp.write_text(markdown(run))


def plot_size(run: BenchRun) -> tuple[int, int]:
    """Pixel size of the PNG ``write_plot`` draws for ``run`` (``edgeres.bench.plot``)."""
    from edgeres.bench.plot import plot_size as size

    return size(run)


def write_plot(run: BenchRun, path: Path) -> None:
    """int8 speedup and drop with their intervals, and latency vs accuracy with the Pareto
    front (``edgeres.bench.plot``). The format follows ``path``'s suffix: PNG, SVG or PDF.

    Raises:
        ConfigError: for another suffix.
        BackendNotAvailable: if matplotlib is not installed (the ``[plot]`` extra).
    """
    from edgeres.bench.plot import write_plot as draw

    draw(run, path, plot_format(path))
