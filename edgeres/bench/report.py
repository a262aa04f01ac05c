"""Every way a benchmark run is shown or saved: terminal table, JSON, CSV, markdown, plot.

This is the only module that turns bench numbers into text (STYLE C11): rows hold floats, and
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
from edgeres.bench.results import BenchRow, BenchRun, Note
from edgeres.errors import ConfigError, missing_extra

__all__ = ["PLOT_FORMATS", "check_outputs", "environment_lines", "fastest", "markdown",
           "note_text", "plot_format", "plot_size", "schema", "table", "to_json_dict",
           "write_csv", "write_json", "write_markdown", "write_plot"]

SCHEMA_FILE = Path(__file__).with_name("schema.json")
_COLUMNS = ("", "model", "runtime", "precision", "batch", "p50 ms", "p90 ms", "p99 ms",
            "mean ± std ms", "img/s", "spread", "size MB", "mem MB", "top-1", "agree", "status")
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
    best: dict[tuple[str, int], tuple[float, int]] = {}
    for i, r in enumerate(rows):
        if r.status == "ok" and r.latency is not None:
            key = (r.model, r.batch)
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


def _cells(r: BenchRow, star: bool) -> list[str]:
    lat, acc = r.latency, r.accuracy
    runtime = r.runtime_label
    mem = r.memory.delta_bytes if r.memory else None
    return [
        "*" if star else "", r.model, runtime, _precision(r), str(r.batch),
        _ms(lat and lat.p50_ms), _ms(lat and lat.p90_ms), _ms(lat and lat.p99_ms),
        _DASH if lat is None else f"{_ms(lat.mean_ms)} ± {_ms(lat.std_ms)}",
        _DASH if lat is None else f"{lat.throughput_ips:.1f}",
        _DASH if lat is None else f"{100 * lat.round_spread:.1f}%",
        _mb(r.size_bytes), _mb(mem), _pct(acc and acc.top1), _pct(acc and acc.agreement),
        _status(r),
    ]


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


def environment_lines(run: BenchRun) -> list[str]:
    """The machine and conditions, one fact per line."""
    e = run.environment
    versions = ", ".join(f"{k} {v}" for k, v in e.versions.items() if v)
    load = _DASH if e.load_average is None else " / ".join(f"{v:.2f}" for v in e.load_average)
    s = run.settings
    timing = (f"{s['iterations']} calls" if s.get("iterations") else f"{s['duration']:g} s") + \
        f" per row over {s['rounds']} interleaved rounds after {s['warmup']} warm-up calls"
    lines = [
        f"CPU: {e.cpu} ({e.machine}), {e.physical_cores} physical / {e.logical_cores} logical "
        f"cores; ISA: {', '.join(e.isa) or 'none detected'}",
        *([f"GPU: {_gpu_line(e.gpu)}"] if e.gpu else []),
        f"OS: {e.os}; Python {e.python}; {versions}",
        f"At start: CPU used by other processes {_pct(_scaled(e.busy_others))}; "
        f"load average (1/5/15 min) {load}",
        f"Threads: {s['threads']}; timing: {timing}",
        f"Run: {run.created}" + (" — INTERRUPTED, partial results" if run.interrupted else ""),
    ]
    if s.get("conditions"):
        lines.append(f"Conditions: {s['conditions']}")
    return lines


def table(run: BenchRun) -> Any:
    """A ``rich.table.Table`` of the run, fastest row per model and batch marked ``*``."""
    from rich.table import Table

    t = Table(title="edgeres bench" + (" (interrupted)" if run.interrupted else ""))
    for col in _COLUMNS:
        t.add_column(col, justify="left" if col in ("model", "runtime", "precision", "status")
                     else "right", overflow="fold")
    best = fastest(run.rows)
    for i, r in enumerate(run.rows):
        style = None if r.status == "ok" else "dim" if r.status == "skipped" else "red"
        t.add_row(*_cells(r, i in best), style=style)
    return t


def to_json_dict(run: BenchRun) -> dict[str, Any]:
    """The run as the schema's JSON object."""
    notes = [{"kind": n.kind, "text": note_text(n, run.rows), "model": n.model,
              "runtime": n.runtime, "batch": n.batch, "causes": list(n.causes)}
             for n in run.notes]
    return json_safe({
        "schema_version": run.schema_version, "tool": "edgeres bench", "created": run.created,
        "interrupted": run.interrupted, "environment": run.environment.to_dict(),
        "settings": run.settings, "rows": [r.to_dict() for r in run.rows], "notes": notes,
    })


def write_json(run: BenchRun, path: Path) -> None:
    """Write the JSON report atomically."""
    with atomic_write(Path(path)) as tmp:
        tmp.write_text(json.dumps(to_json_dict(run), indent=1) + "\n")


_CSV_FIELDS = ("model", "source", "runtime", "precision", "executed_precision", "precision_mode",
               "batch", "threads", "status", "reason", "partial", "count", "mean_ms", "std_ms",
               "min_ms", "p50_ms", "p90_ms", "p99_ms", "throughput_ips", "round_spread",
               "size_bytes", "peak_rss_bytes", "memory_delta_bytes", "top1", "top5", "agreement",
               "eval_count", "model_file", "io", "first_call_ms")


def _csv_row(r: BenchRow) -> dict[str, Any]:
    d: dict[str, Any] = {k: getattr(r, k) for k in _CSV_FIELDS if hasattr(r, k)}
    if r.latency is not None:
        d.update({k: getattr(r.latency, k) for k in _CSV_FIELDS if hasattr(r.latency, k)})
    if r.memory is not None:
        d.update(peak_rss_bytes=r.memory.peak_rss_bytes, memory_delta_bytes=r.memory.delta_bytes)
    if r.accuracy is not None:
        d.update(top1=r.accuracy.top1, top5=r.accuracy.top5, agreement=r.accuracy.agreement,
                 eval_count=r.accuracy.count)
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
            "reference row of the fp32 file it was quantized from when that is in the run).", ""]
    if run.notes:
        out += ["## Notes", ""] + [f"- {_md_cell(note_text(n, run.rows))}" for n in run.notes]
        out.append("")
    return "\n".join(out)


def write_markdown(run: BenchRun, path: Path) -> None:
    """Write the markdown report atomically."""
    with atomic_write(Path(path)) as tmp:
        tmp.write_text(markdown(run))


_DPI = 100
_MARKERS = "osD^vP*X"
_MIN_SPAN = 2.0  # percentage points: the least accuracy range a scatter panel shows


def _plotted(run: BenchRun) -> list[BenchRow]:
    return [r for r in run.rows if r.status == "ok" and r.latency is not None]


def _accuracy_of(rows: list[BenchRow]) -> tuple[str, str] | None:
    """Which accuracy the scatter plots: ("top1", label), ("agreement", label) or None."""
    if any(r.accuracy and r.accuracy.top1 is not None for r in rows):
        return "top1", "top-1 accuracy (%)"
    if any(r.accuracy and r.accuracy.agreement is not None for r in rows):
        return "agreement", "top-1 agreement with fp32 (%)"
    return None


def plot_size(run: BenchRun) -> tuple[int, int]:
    """Pixel size of the PNG ``write_plot`` draws for ``run``."""
    rows = _plotted(run)
    models = list(dict.fromkeys(r.model for r in rows)) or [""]
    if any(_accuracy_of([r for r in rows if r.model == m]) for m in models):
        return 600 * len(models) + 40, 600
    return 1100, max(400, 140 + 26 * len(rows))


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both latency (lower) and accuracy (higher)."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def _scatter(ax: Any, rows: list[BenchRow], model: str, colors: dict[str, Any],
             batches: list[int]) -> tuple[str, list[float]] | None:
    """Draw one model's panel; return the accuracy field and the values plotted, if any."""
    field = _accuracy_of(rows)
    if field is None:  # this model has no accuracy (e.g. random weights): show its latencies
        _bars(ax, rows, short=True)
        ax.set_title(f"{model} (no accuracy measured)")
        return None
    key, label = field
    plotted: list[float] = []
    for b_i, batch in enumerate(batches):
        pts = []
        for r in (r for r in rows if r.batch == batch and r.accuracy):
            y = getattr(r.accuracy, key)
            if y is None:
                continue
            runtime = r.runtime_label
            ax.scatter(r.latency.p50_ms, y, color=colors[runtime], s=60, zorder=3,
                       marker=_MARKERS[b_i % len(_MARKERS)], edgecolors="black", linewidths=0.5)
            # Offset by runtime so labels of coinciding points (same accuracy) stay legible.
            k = list(colors).index(runtime)
            ax.annotate(r.executed_precision or r.precision, (r.latency.p50_ms, y), fontsize=8,
                        xytext=(6, 6 - 10 * (k % 3)), textcoords="offset points",
                        color=colors[runtime])
            pts.append((r.latency.p50_ms, y))
        plotted += [y for _, y in pts]
        front = _pareto(pts)
        if len(front) > 1:
            ax.step(*zip(*front, strict=True), where="post", color="grey", linestyle="--",
                    linewidth=1, zorder=2, label="Pareto front" if b_i == 0 else None)
        for x, y in front:
            ax.scatter(x, y, s=170, facecolors="none", edgecolors="grey", zorder=2)
    xs = [r.latency.p50_ms for r in rows]
    if xs and max(xs) / max(min(xs), 1e-9) > 20:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_title(model)
    ax.set_xlabel("p50 latency per call (ms)")
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3)
    return key, plotted


def _share_accuracy_axis(panels: list[tuple[Any, tuple[str, list[float]] | None]]) -> None:
    """One accuracy range for the panels that plot the same field, at least ``_MIN_SPAN`` tall.

    Matplotlib zooms each panel to its data, which makes a 0.2-point spread between two int8
    rows fill a panel as if it were 20 points, and sets fp32 and int8 files side by side on
    different scales.
    """
    for key in {f[0] for _, f in panels if f and f[1]}:
        ys = [y for _, f in panels if f and f[0] == key for y in f[1]]
        lo, hi = min(ys), max(ys)
        pad = max(_MIN_SPAN - (hi - lo), 0) / 2 + 0.1 * max(hi - lo, _MIN_SPAN)
        for ax, f in panels:
            if f and f[0] == key:
                ax.set_ylim(max(lo - pad, 0), min(hi + pad, 100))


def _bars(ax: Any, rows: list[BenchRow], *, short: bool = False) -> None:
    """Horizontal p50 bars with a whisker to p90, fastest per model and batch in green."""
    labels = [f"{'' if short else r.model + ' · '}{_precision(r)}/{r.runtime_label} · b{r.batch}"
              for r in rows]
    p50 = [r.latency.p50_ms for r in rows]
    p90 = [r.latency.p90_ms - r.latency.p50_ms for r in rows]
    best = fastest(rows)
    colors = ["tab:green" if i in best else "tab:blue" for i in range(len(rows))]
    y = list(range(len(rows)))[::-1]
    ax.barh(y, p50, xerr=[[0] * len(rows), p90], color=colors, capsize=3)
    ax.set_yticks(y, labels, fontsize=8)
    for yi, v, w in zip(y, p50, p90, strict=True):
        ax.text(v + w, yi, f"  {_ms(v)}", va="center", fontsize=7)
    log = max(p50) / max(min(p50), 1e-9) > 20  # fast rows stay visible next to slow ones
    if log:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlim(right=max(a + b for a, b in zip(p50, p90, strict=True)) * (4 if log else 1.25))
    scale = ", log scale" if log else ""
    ax.set_xlabel(f"p50 latency per call (ms{scale}); whisker to p90" if short else
                  f"p50 latency per call (ms{scale}); whisker to p90; green = fastest per model "
                  "and batch")
    ax.grid(True, axis="x", alpha=0.3)


def write_plot(run: BenchRun, path: Path) -> None:
    """Latency vs accuracy per model with the Pareto front, or a latency bar chart.

    The format follows ``path``'s suffix: PNG, SVG or PDF (``PLOT_FORMATS``).

    Raises:
        ConfigError: for another suffix.
        BackendNotAvailable: if matplotlib is not installed (the ``[plot]`` extra).
    """
    fmt = plot_format(path)
    try:
        from matplotlib.figure import Figure
    except ImportError:
        package = "matplotlib"
        raise missing_extra(package, "plot") from None
    rows = _plotted(run)
    width, height = plot_size(run)
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, layout="constrained")
    models = list(dict.fromkeys(r.model for r in rows))
    threads = run.settings.get("threads")
    title = f"edgeres bench on {run.environment.cpu}, {threads} threads"
    if models and any(_accuracy_of([r for r in rows if r.model == m]) for m in models):
        runtimes = list(dict.fromkeys(
            r.runtime_label for r in rows))
        palette = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
                   "tab:pink", "tab:olive")
        colors = {rt: palette[i % len(palette)] for i, rt in enumerate(runtimes)}
        batches = sorted({r.batch for r in rows})
        axes = fig.subplots(1, len(models), squeeze=False)[0]
        _share_accuracy_axis([
            (ax, _scatter(ax, [r for r in rows if r.model == model], model, colors, batches))
            for ax, model in zip(axes, models, strict=True)])
        handles = [axes[0].scatter([], [], color=c, label=rt) for rt, c in colors.items()]
        handles += [axes[0].scatter([], [], color="white", edgecolors="black", label=f"batch {b}",
                                    marker=_MARKERS[i % len(_MARKERS)])
                    for i, b in enumerate(batches)]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)),
                   fontsize=8)
        fig.suptitle(f"Latency vs accuracy (ringed, dashed: Pareto front)\n{title}", fontsize=10)
    elif rows:
        _bars(fig.add_subplot(1, 1, 1), rows)
        fig.suptitle(title, fontsize=10)
    else:
        fig.text(0.5, 0.5, "no row was measured", ha="center")
    with atomic_write(Path(path), suffix=f".{fmt}") as tmp:
        fig.savefig(tmp, dpi=_DPI, format=fmt)
