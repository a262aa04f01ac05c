"""The ``quantize`` command and its rendering of a ``QuantReport`` (``_render_quant``,
``_echo_accuracy``)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from edgeres.cli._group import cli
from edgeres.cli._options import (
    _count,
    _echo_table,
    _refuse_existing,
    check_paths,
    force_option,
    record_options,
)
from edgeres.runtimes import RUNTIME_NAMES as QUANT_BACKENDS  # each has a quantizer

if TYPE_CHECKING:
    from edgeres.quantize._protocol import QuantBackend
    from edgeres.quantize.config import Method, Preset, Target

# click.Choice hands commands plain str; the casts to the library's Literal names below mark
# that boundary (the library checks its options again and names a bad value, CONTRIBUTING R5).


@cli.command("quantize")
@click.argument("model")
@click.option("--calib", required=True, help="Calibration data: folder, .npy/.npz, or cifar10.")
@click.option("--backend", type=click.Choice(QUANT_BACKENDS), default="ort", show_default=True,
              help="ort: ONNX Runtime QDQ .onnx; openvino: NNCF, OpenVINO IR .xml; litert: "
              "ai-edge-quantizer on an fp32 .tflite; executorch: PT2E on the PyTorch model "
              "behind an fp32 .pte.")
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
@click.option("--cluster", help="Measure --val/--eval top-1 and the --max-drop fallback "
              "candidates on this Ray cluster (HOST:PORT, or auto = $RAY_ADDRESS); needs "
              "edgeres[cluster].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="int8 model: .onnx (ort), .xml (openvino, .bin beside it), .tflite (litert) "
              "or .pte (executorch, its record beside it).")
@force_option
@record_options
def quantize_command(model: str, calib: str, backend: str, target: str, method: str | None,
                     samples: int, per_channel: bool | None, exclude: tuple[str, ...],
                     val: str | None, max_drop: float | None, eval_data: str | None, preset: str,
                     cluster: str | None, output: Path, force: bool, record: Any) -> None:
    """Quantize MODEL (.onnx or a registered name) to static int8, calibrated on --calib.

    With --val and --max-drop, the most sensitive layers return to float until the top-1
    drop on the validation data fits the budget. A JSON report goes beside the output.

    \b
    Example:
        edgeres quantize cifar10 --calib cifar10 --val cifar10-val --max-drop 0.5 \\
            --eval cifar10-test -o resnet20-int8.onnx
    """
    from edgeres.calibration import CalibrationSet
    from edgeres.modelfile import model_record
    from edgeres.names import resolve_model_file
    from edgeres.quantize import QuantConfig, quantize
    from edgeres.quantize._report import report_path_for

    check_paths(report_path_for(output), *([output.with_suffix(".bin")]
                                           if output.suffix.lower() == ".xml" else []))
    config = QuantConfig(target=cast("Target", target), method=cast("Method | None", method),
                         samples=samples, per_channel=per_channel,
                         exclude=exclude, val=val, max_drop=max_drop, eval=eval_data,
                         preset=cast("Preset", preset))
    from edgeres._interrupt import deferred

    src = resolve_model_file(model)
    _refuse_existing(output, force, (src,))
    meta = model_record(src, options=record)
    with contextlib.ExitStack() as stack:
        evaluator = None
        if cluster is not None and (val is not None or eval_data is not None):
            from edgeres.cluster import ray_evaluator

            evaluator = stack.enter_context(ray_evaluator(cluster))
        with deferred():  # a signal is raised between steps, never inside ORT/NNCF's callbacks
            report = quantize(src, output, CalibrationSet.from_data(calib, meta),
                              backend=cast("QuantBackend", backend), config=config,
                              evaluator=evaluator)
    _render_quant(report)


def _echo_accuracy(what: str, acc: Any) -> None:
    """fp32 and int8 top-1 with 95% intervals, and the paired drop with its test."""
    def ci(interval: Any) -> str:
        return f"[{interval[0]:.2f}, {interval[1]:.2f}]"

    both = "" if acc.fp32_interval is None or acc.int8_interval is None else (
        f" (95% intervals {ci(acc.fp32_interval)}, {ci(acc.int8_interval)})")
    click.echo(f"{what} on {acc.data} ({_count(acc.count, 'image')}): fp32 top-1 "
               f"{acc.fp32_top1:.2f}%, "
               f"int8 {acc.int8_top1:.2f}%{both}")
    d = acc.paired
    if d is None:
        click.echo(f"  drop {acc.drop:+.2f} points")
        return
    click.echo(f"  drop {d.drop:+.2f} points, 95% interval [{d.low:+.2f}, {d.high:+.2f}] "
               f"({_count(d.lost, 'image')} lost, {d.gained} gained; McNemar "
               f"p={d.p_value:.2g}): "
               + ("within noise" if d.noise else "a real difference"))


def _render_quant(r: Any) -> None:
    """Print a ``QuantReport``: calibration, types, accuracies, float layers, per-layer SQNR."""
    c, d = r.calibration, r.details
    click.echo(f"calibration: {_count(c.count, 'image')} from {r.calibration_data} "
               f"({c.skipped} unreadable skipped), method {r.method}")
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
        click.echo(f"  latency (batch 1, 1 thread): fp32 {fb.latency_ms['fp32']:.3f} ms, "
                   f"all-int8 {fb.latency_ms['int8']:.3f} ms, chosen "
                   f"{fb.latency_ms['chosen']:.3f} ms")
    click.echo(f"float layers: {', '.join(r.float_layers) if r.float_layers else 'none'}")
    click.echo(f"wrote {r.dst} ({r.seconds:.1f} s); report {r.report_path}")
