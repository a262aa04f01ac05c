"""The bench plot: is int8 worth it here? Speedup and accuracy drop with their intervals, and
latency per image against accuracy with the Pareto front.

Three panels, each answering one question:

- *int8 speedup over fp32*, per runtime and batch (and over the runtime's default precision
  where it has one): the point and its 95% interval on a log axis, a line at 1x. Green when
  the interval lies above 1 (faster), red below (slower), grey when it holds 1.
- *top-1 drop*, per int8 row: points lost against the fp32 reference on the same images, with
  the Newcombe interval and a line at 0; grey when the interval holds 0 (noise).
- *which configuration?*: every measured row on its own line, named (model, precision,
  runtime), grouped by batch size and fastest first, at its p50 latency per image (p50 /
  batch, log axis, whisker: the p50's interval; colour: runtime, marker: precision, size:
  batch, all in the legend below the figure), with its top-1 and Wilson interval in a column
  on the right. The Pareto front of each batch size is ringed and tagged: the fastest row, then
  each slower row whose accuracy is clearly higher (interval above), so accuracies that differ
  by noise count as ties (``front_rows``). A scatter of latency against accuracy was
  unreadable when int8 loses nothing: every point sat at one height under whiskers that
  filled the panel, and the front was whichever row was 0.01 points luckier.

Without accuracy the column says so and the front is the fastest row. matplotlib is imported
only when a plot is drawn (the ``[plot]`` extra); the size is known before drawing
(``plot_size``), so tests can check the file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edgeres._fs import atomic_write
from edgeres.bench.compare import Comparison, comparisons
from edgeres.bench.results import BenchRow, BenchRun
from edgeres.errors import missing_extra

__all__ = ["front_rows", "pareto", "plot_size", "write_plot"]

DPI = 100
_WIDTH = 1100
_ROW = 26  # pixels per bar in the interval panels
_MARKERS = {"fp32": "o", "fp16": "s", "bf16": "D", "int8": "^"}
_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
            "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
_MIN_SPAN = 1.0  # percentage points: the least accuracy range the scatter shows


def _measured(run: BenchRun) -> list[BenchRow]:
    return [r for r in run.rows if r.status == "ok" and r.latency is not None]


def _field(rows: list[BenchRow]) -> tuple[str, str] | None:
    """Which accuracy the scatter plots: top-1 when measured, else agreement, else None."""
    if any(r.accuracy and r.accuracy.top1 is not None for r in rows):
        return "top1", "top-1 accuracy (%)"
    if any(r.accuracy and r.accuracy.agreement is not None for r in rows):
        return "agreement", "top-1 agreement with fp32 (%)"
    return None


def _drops(comps: list[Comparison]) -> list[Comparison]:
    """One comparison per int8 row that has a measured drop."""
    seen, out = set(), []
    for c in comps:
        key = (c.model, c.runtime, c.batch)
        if c.drop is not None and key not in seen:
            seen.add(key)
            out.append(c)
    return out


def plot_size(run: BenchRun) -> tuple[int, int]:
    """Pixel size of the image ``write_plot`` draws for ``run``."""
    rows = _measured(run)
    comps = comparisons(rows)
    top = 0 if not comps else 90 + _ROW * max(len(comps), len(_drops(comps)), 2)
    groups = len({r.batch for r in rows})
    bottom = 150 + _ROW * max(len(rows) + groups, 2)
    return _WIDTH, top + bottom + 40


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both latency (lower) and accuracy (higher), by latency."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def _name(model: str) -> str:
    p = Path(model)
    return p.stem if p.suffix.lower() in (".onnx", ".xml") else model


def _speedups(ax: Any, comps: list[Comparison], several: bool) -> None:
    labels = [f"{_name(c.model) + ' ' if several else ''}{c.runtime} b{c.batch} "
              f"vs {c.against.split(' of ')[0]}" for c in comps]
    ys = list(range(len(comps)))[::-1]
    for y, c in zip(ys, comps, strict=True):
        s = c.speedup
        color = {"faster": "tab:green", "slower": "tab:red"}.get(s.verdict, "tab:gray")
        lo, hi = ((s.low, s.high) if s.low is not None and s.high is not None
                  else (s.estimate, s.estimate))
        ax.errorbar(s.estimate, y, xerr=[[s.estimate - lo], [hi - s.estimate]], fmt="o",
                    color=color, capsize=4, markersize=6)
        ax.annotate(f"{s.estimate:.2f}x" + ("" if s.paired else " (unpaired)"), (hi, y),
                    xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
    ax.axvline(1.0, color="black", linewidth=1, linestyle="--")
    ax.set_xscale("log")
    _log_ticks(ax, [v for c in comps for v in (c.speedup.low or c.speedup.estimate,
                                              c.speedup.high or c.speedup.estimate, 1.0)])
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_ylim(-0.7, len(comps) - 0.3)
    ax.set_xlabel("int8 speedup (x, log scale) with 95% interval")
    ax.set_title("Is int8 faster?  green: yes, red: slower, grey: cannot tell", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3, which="both")


def _log_ticks(ax: Any, values: list[float]) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    lo, hi = min(values), max(values)
    ax.set_xlim(lo / 1.15, hi * 1.35)  # room for the value labels right of each bar
    subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if hi / lo < 8 else (1.0, 2.0, 5.0)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _drop_panel(ax: Any, comps: list[Comparison], several: bool) -> None:
    drops = _drops(comps)
    if not drops:
        ax.text(0.5, 0.5, "no accuracy measured\n(bench --eval DATA)", ha="center",
                va="center", transform=ax.transAxes, fontsize=9, color="tab:gray")
        ax.set_axis_off()
        return
    ys = list(range(len(drops)))[::-1]
    measured = [c.drop for c in drops if c.drop is not None]  # all of them (_drops)
    for y, d in zip(ys, measured, strict=True):
        color = "tab:gray" if d.noise else "tab:red" if d.drop > 0 else "tab:green"
        ax.errorbar(d.drop, y, xerr=[[d.drop - d.low], [d.high - d.drop]], fmt="o",
                    color=color, capsize=4, markersize=6)
        ax.annotate(f"{d.drop:+.2f}" + (" (noise)" if d.noise else ""), (d.high, y),
                    xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
    ax.axvline(0.0, color="black", linewidth=1, linestyle="--")
    lo = min(d.low for d in measured)
    hi = max(d.high for d in measured)
    span = max(hi - lo, 0.2)
    ax.set_xlim(min(lo, 0) - 0.1 * span, max(hi, 0) + 0.45 * span)
    ax.set_yticks(ys, [f"{_name(c.model) + ' ' if several else ''}{c.runtime} b{c.batch}"
                       for c in drops], fontsize=8)
    ax.set_ylim(-0.7, len(drops) - 0.3)
    ax.set_xlabel("top-1 drop (points) with 95% interval")
    ax.set_title("Does int8 lose top-1?  red: yes, grey: noise", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)


def _per_image(r: BenchRow) -> tuple[float, float, float]:
    lat = r.latency
    assert lat is not None  # _measured
    lo = lat.p50_low_ms if lat.p50_low_ms is not None else lat.p50_ms
    hi = lat.p50_high_ms if lat.p50_high_ms is not None else lat.p50_ms
    return lat.p50_ms / r.batch, lo / r.batch, hi / r.batch


def _accuracy(r: BenchRow, field: tuple[str, str] | None) -> tuple[float, float, float] | None:
    """(value, low, high) of the plotted accuracy of ``r``; the interval is the value itself
    where none was measured (agreement has none)."""
    if field is None or r.accuracy is None:
        return None
    y = getattr(r.accuracy, field[0])
    if y is None:
        return None
    lo = r.accuracy.top1_low if field[0] == "top1" else None
    hi = r.accuracy.top1_high if field[0] == "top1" else None
    return y, y if lo is None else lo, y if hi is None else hi


def front_rows(rows: list[BenchRow], field: tuple[str, str] | None) -> list[BenchRow]:
    """The Pareto front of one batch size, honest about accuracy noise: by latency per image,
    the fastest row, then each slower row that is *clearly* more accurate than the last row
    on the front (its interval lies above that row's). Rows whose accuracies differ by less
    than their intervals are ties, and among ties only the fastest is on the front; without
    accuracy the front is the fastest row."""
    front: list[BenchRow] = []
    for r in sorted(rows, key=lambda r: _per_image(r)[0]):
        acc = _accuracy(r, field)
        if not front:
            front.append(r)
            continue
        last = _accuracy(front[-1], field)
        if acc is not None and (last is None or acc[1] > last[2]):
            front.append(r)
    return front


def _label(r: BenchRow, several: bool) -> str:
    precision = (f"{r.precision}→{r.executed_precision}" if r.executed_precision
                 and r.executed_precision != r.precision else r.precision)
    return f"{_name(r.model) + ' · ' if several else ''}{precision} · {r.runtime_label}"


def _accuracy_text(acc: tuple[float, float, float] | None) -> str:
    if acc is None:
        return "–"
    y, lo, hi = acc
    return f"{y:.2f}" + (f" [{lo:.2f}, {hi:.2f}]" if hi > lo else "")


def _layout(rows: list[BenchRow]) -> list[tuple[int, list[BenchRow]]]:
    """Rows grouped by batch (ascending), each group fastest first."""
    batches = sorted({r.batch for r in rows})
    return [(b, sorted((r for r in rows if r.batch == b), key=lambda r: _per_image(r)[0]))
            for b in batches]


_DATA_WIDTH = 0.64  # share of the ranked panel's width for the latencies; the rest: accuracy


def _ranked(ax: Any, rows: list[BenchRow], field: tuple[str, str] | None,
            several: bool) -> None:
    """One line per configuration, grouped by batch and fastest first: latency per image with
    its interval (colour: runtime, marker: precision, size: batch), and beside it the
    accuracy with its interval; the Pareto front of each batch ringed and tagged."""
    runtimes = list(dict.fromkeys(r.runtime_label for r in rows))
    colors = {rt: _PALETTE[i % len(_PALETTE)] for i, rt in enumerate(runtimes)}
    sizes = {b: 6 + 2 * i for i, b in enumerate(sorted({r.batch for r in rows}))}
    y = 0.0
    ticks: list[float] = []
    labels: list[str] = []
    column = ax.get_yaxis_transform()  # x in axes fraction, y in data
    what = "top-1 % [95% interval]" if field and field[0] == "top1" else "agreement %"
    ax.text(_DATA_WIDTH + 0.02, -0.5, what if field else "accuracy not measured\n(bench --eval "
            "DATA)", fontsize=8, color="dimgray", va="center", transform=column)
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((_DATA_WIDTH, 0), 1 - _DATA_WIDTH, 1, transform=ax.transAxes,
                           color="whitesmoke", zorder=0))
    for batch, group in _layout(rows):
        y -= 1
        if ticks:
            ax.axhline(y + 0.5, color="black", linewidth=0.6, alpha=0.4)
        ax.text(0.005, y, f"batch {batch}", fontsize=9, fontweight="bold", va="center",
                transform=column)
        front = {id(r) for r in front_rows(group, field)}
        for r in group:
            y -= 1
            x, xlo, xhi = _per_image(r)
            on_front = id(r) in front
            weight = "bold" if on_front else "normal"
            ax.errorbar(x, y, xerr=[[max(x - xlo, 0)], [max(xhi - x, 0)]],
                        fmt=_MARKERS.get(r.precision, "o"), color=colors[r.runtime_label],
                        markersize=sizes[r.batch], markeredgecolor="black",
                        markeredgewidth=1.6 if on_front else 0.5, elinewidth=1, capsize=3,
                        zorder=3)
            ax.annotate(f"{x:.3g} ms", (xhi, y), xytext=(6, 0), textcoords="offset points",
                        va="center", fontsize=8, fontweight=weight)
            ax.text(_DATA_WIDTH + 0.02, y, _accuracy_text(_accuracy(r, field)), va="center",
                    fontsize=8, fontweight=weight, transform=column)
            if on_front:
                ax.text(0.99, y, "◆ Pareto" if field else "◆ fastest", va="center", ha="right",
                        fontsize=8, fontweight=weight, transform=column)
            ticks.append(y)
            labels.append(_label(r, several))
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_ylim(y - 0.7, -0.1)
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, FuncFormatter

    xs = [v for r in rows for v in _per_image(r)]
    lo, hi = math.log10(min(xs) / 1.3), math.log10(max(xs) * 1.8)  # room for each value label
    ax.set_xlim(10 ** lo, 10 ** (lo + (hi - lo) / _DATA_WIDTH))
    ax.xaxis.set_major_locator(FixedLocator(_nice_ticks(10 ** lo, 10 ** hi)))
    ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("p50 latency per image (ms, log scale; p50 / batch), whisker: 95% interval")
    ax.set_title("Which configuration? Fastest first per batch size; " + (
        "◆ Pareto: no faster row is as accurate\n(accuracies inside each other's 95% intervals "
        "count as ties)" if field else "◆ the fastest"), fontsize=10)
    ax.grid(True, axis="x", alpha=0.3, which="both")
    _legend(ax, rows, colors, sizes)


def _legend(ax: Any, rows: list[BenchRow], colors: dict[str, str], sizes: dict[int, int]
            ) -> None:
    """Colour, marker and marker size explained, below the figure where it hides nothing."""
    from matplotlib.lines import Line2D

    def key(**kw: Any) -> Any:
        return Line2D([], [], linestyle="none", markeredgecolor="black", **kw)

    handles = [key(marker="o", color=c, markersize=7, label=rt) for rt, c in colors.items()]
    handles += [key(marker=m, color="white", markersize=7, label=p)
                for p, m in _MARKERS.items() if any(r.precision == p for r in rows)]
    handles += [key(marker="o", color="lightgray", markersize=s, label=f"batch {b}")
                for b, s in sizes.items()]
    ax.figure.legend(handles=handles, fontsize=8, loc="outside lower center",
                     ncol=min(len(handles), 9), frameon=False)


def _nice_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks (1-1.5-2-3-5-7 over less than a decade and a half) between lo and hi."""
    subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if hi / lo < 30 else (1.0, 2.0, 5.0)
    out = []
    for exp in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        out += [m * 10.0 ** exp for m in subs if lo <= m * 10.0 ** exp <= hi]
    return out


def write_plot(run: BenchRun, path: Path, fmt: str) -> None:
    """Draw the plot of ``run`` into ``path`` in matplotlib format ``fmt``.

    Raises:
        BackendNotAvailable: if matplotlib is not installed (the ``[plot]`` extra).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        package = "matplotlib"
        raise missing_extra(package, "plot") from None
    rows = _measured(run)
    comps = comparisons(rows)
    width, height = plot_size(run)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    several = len({r.model for r in rows}) > 1
    several_int8 = len({c.model for c in comps}) > 1
    field = _field(rows)
    top = 0 if not comps else 90 + _ROW * max(len(comps), len(_drops(comps)), 2)
    grid = fig.add_gridspec(2 if top else 1, 2, height_ratios=[top, height - top] if top else None)
    if top:
        _speedups(fig.add_subplot(grid[0, 0]), comps, several_int8)
        _drop_panel(fig.add_subplot(grid[0, 1]), comps, several_int8)
    if not rows:
        bottom = fig.add_subplot(grid[-1, :])
        bottom.text(0.5, 0.5, "no row was measured", ha="center", transform=bottom.transAxes)
        bottom.set_axis_off()
    else:
        _ranked(fig.add_subplot(grid[-1, :]), rows, field, several)
    threads = run.settings.threads
    fig.suptitle(f"edgeres bench on {run.environment.cpu}, {threads} threads"
                 + (" (interrupted: partial)" if run.interrupted else ""), fontsize=11)
    with atomic_write(Path(path), suffix=f".{fmt}") as tmp:
        fig.savefig(tmp, dpi=DPI, format=fmt)
