"""The bench plot: is int8 worth it here? Speedup and accuracy drop with their intervals, and
latency per image against accuracy with the Pareto front.

Three panels, each answering one question:

- *int8 speedup over fp32*, per runtime and batch (and over the runtime's default precision
  where it has one): the point and its 95% interval on a log axis, a line at 1x. Green when
  the interval lies above 1 (faster), red below (slower), grey when it holds 1.
- *top-1 drop*, per int8 row: points lost against the fp32 reference on the same images, with
  the Newcombe interval and a line at 0; grey when the interval holds 0 (noise).
- *latency per image vs accuracy*: every measured row of every model on one shared log axis
  (p50 / batch, whiskers from the p50 interval; top-1 with its Wilson interval), colour by
  runtime, marker by precision, and the Pareto front (no other row is both faster and more
  accurate) drawn as a dashed staircase through ringed, labelled points.

Without accuracy the third panel becomes latency-per-image bars. matplotlib is imported only
when a plot is drawn (the ``[plot]`` extra); the size is known before drawing
(``plot_size``), so tests can check the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeres._fs import atomic_write
from edgeres.bench.compare import Comparison, comparisons
from edgeres.bench.results import BenchRow, BenchRun
from edgeres.errors import missing_extra

__all__ = ["pareto", "plot_size", "write_plot"]

DPI = 100
_WIDTH = 1100
_ROW = 26  # pixels per bar in the interval panels
_SCATTER = 520
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
    bottom = _SCATTER if _field(rows) else 110 + _ROW * max(len(rows), 2)
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


def _scatter(ax: Any, rows: list[BenchRow], field: tuple[str, str], several: bool) -> None:
    key, label = field
    runtimes = list(dict.fromkeys(r.runtime_label for r in rows))
    colors = {rt: _PALETTE[i % len(_PALETTE)] for i, rt in enumerate(runtimes)}
    points, ys = [], []
    for r in rows:
        acc = r.accuracy
        y = getattr(acc, key) if acc else None
        if acc is None or y is None:
            continue
        x, xlo, xhi = _per_image(r)
        ylo = acc.top1_low if key == "top1" and acc.top1_low is not None else y
        yhi = acc.top1_high if key == "top1" and acc.top1_high is not None else y
        ax.errorbar(x, y, xerr=[[max(x - xlo, 0)], [max(xhi - x, 0)]],
                    yerr=[[max(y - ylo, 0)], [max(yhi - y, 0)]],
                    fmt=_MARKERS.get(r.precision, "o"), color=colors[r.runtime_label],
                    markersize=7 if r.batch == 1 else 9, markeredgecolor="black",
                    markeredgewidth=0.5, elinewidth=0.8, capsize=2, alpha=0.75, zorder=3)
        points.append((x, y, r))
        ys += [ylo, yhi]
    front = pareto([(x, y) for x, y, _ in points])
    if front:
        fx, fy = zip(*front, strict=True)
        ax.step(fx, fy, where="post", color="black", linestyle="--", linewidth=1.2, zorder=2,
                label="Pareto front")
        ax.scatter(fx, fy, s=260, facecolors="none", edgecolors="black", zorder=2)
        for i, (x, y) in enumerate(front):
            r = next(r for px, py, r in points if (px, py) == (x, y))
            text = f"{r.precision} {r.runtime_label} b{r.batch}"
            ax.annotate(text, (x, y), xytext=(8, -14 if i % 2 else 8),
                        textcoords="offset points", fontsize=8, zorder=4,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                              "alpha": 0.8})
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if _few_decades(ax) else ""))
    lo, hi = min(ys), max(ys)
    pad = max(_MIN_SPAN - (hi - lo), 0) / 2 + 0.15 * max(hi - lo, 0.1)
    ax.set_ylim(max(lo - pad, 0), min(hi + pad, 100))
    ax.set_xlabel("p50 latency per image (ms, log scale; p50 / batch), whiskers: 95% intervals")
    ax.set_ylabel(label)
    ax.set_title("Latency vs accuracy: upper-left is better; dashed: Pareto front", fontsize=10)
    ax.grid(True, alpha=0.3, which="both")
    handles = [ax.scatter([], [], color=c, marker="o", label=rt) for rt, c in colors.items()]
    handles += [ax.scatter([], [], color="white", edgecolors="black", marker=m, label=p)
                for p, m in _MARKERS.items() if any(r.precision == p for r in rows)]
    handles.append(ax.plot([], [], color="black", linestyle="--", label="Pareto front")[0])
    ax.legend(handles=handles, fontsize=8, loc="best", ncol=2)


def _few_decades(ax: Any) -> bool:
    lo, hi = ax.get_xlim()
    return hi / max(lo, 1e-12) < 30


def _bars(ax: Any, rows: list[BenchRow], several: bool) -> None:
    """Latency per image per row with its interval, when no accuracy was measured."""
    labels = [f"{_name(r.model) + ' · ' if several else ''}{r.precision}/{r.runtime_label} "
              f"b{r.batch}" for r in rows]
    vals = [_per_image(r) for r in rows]
    ys = list(range(len(rows)))[::-1]
    ax.barh(ys, [v[0] for v in vals], color="tab:blue", alpha=0.8,
            xerr=[[v[0] - v[1] for v in vals], [v[2] - v[0] for v in vals]], capsize=3)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("p50 latency per image (ms, log scale), whisker: 95% interval; no accuracy "
                  "measured (bench --eval DATA)")
    ax.grid(True, axis="x", alpha=0.3, which="both")


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
    bottom = fig.add_subplot(grid[-1, :])
    if not rows:
        bottom.text(0.5, 0.5, "no row was measured", ha="center", transform=bottom.transAxes)
        bottom.set_axis_off()
    elif field is not None:
        _scatter(bottom, rows, field, several)
    else:
        _bars(bottom, rows, several)
    threads = run.settings.threads
    fig.suptitle(f"edgeres bench on {run.environment.cpu}, {threads} threads"
                 + (" (interrupted: partial)" if run.interrupted else ""), fontsize=11)
    with atomic_write(Path(path), suffix=f".{fmt}") as tmp:
        fig.savefig(tmp, dpi=DPI, format=fmt)
