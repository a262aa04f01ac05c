"""The measuring commands: ``bench`` (and its rendering of a ``BenchRun``) and ``eval``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from edgeres.cli._group import cli
from edgeres.cli._options import (
    _OUT,
    _count,
    _stated_meta,
    bench_config_options,
    capped_threads,
    check_paths,
    record_options,
)
from edgeres.errors import ConfigError, EdgeresError
from edgeres.runtimes import RUNTIME_NAMES  # --backend: the registered runtimes


@cli.command()
@click.argument("model", nargs=-1, required=True)
@bench_config_options
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
def bench(model: tuple[str, ...], json_out: Path | None, csv_out: Path | None,
          md_out: Path | None, plot_out: Path | None, wide: bool, record: Any,
          cluster: str | None = None, nodes: str | None = None, **settings: Any) -> None:
    """Latency, throughput, size, memory and accuracy of MODEL(s) on every runtime.

    MODEL is an .onnx file, an OpenVINO .xml, a registered model file (cifar10) or a zoo
    name (exported on the fly). Runtimes that are not available here are listed as skipped.
    --mean/--std/... state the preprocessing of .onnx files without a record.

    \b
    Example:
        edgeres bench resnet18 --precision fp32,int8 --batch 1,8 --json bench.json
    """
    from edgeres.bench import BenchConfig, report, run_bench

    check_paths()
    config = BenchConfig(**settings)  # the options bench_config_options made from its fields
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
    from edgeres._fs import input_files

    return input_files(models)


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
@click.option("--backend", type=click.Choice(["auto", *RUNTIME_NAMES]), default="auto",
              show_default=True, help="auto: the runtime of the file's format (OpenVINO for "
              ".xml, ONNX Runtime for .onnx, LiteRT for .tflite, ExecuTorch for .pte).")
@click.option("--threads", type=click.IntRange(min=1),
              help="Threads per session [default: the runtime's; 1 per worker on a cluster].")
@click.option("--cluster", help="Evaluate on this Ray cluster (HOST:PORT of the head, or auto "
              "= $RAY_ADDRESS); needs edgeres[cluster].")
@click.option("--workers", type=click.IntRange(min=1),
              help="With --cluster: inference actors [default: the cluster's CPUs].")
@click.option("--json", "json_out", type=_OUT, help="Write the accuracies as JSON.")
@click.option("--class-map", "class_map", metavar="ids|FILE",
              help="How class folders map to outputs when they are not named by the labels: "
              "ids (folders 0, 1, ...) or a JSON file {\"folder\": label or index}.")
@record_options
def eval_command(model: tuple[str, ...], data: str, limit: int | None, batch: int, backend: str,
                 threads: int | None, cluster: str | None, workers: int | None,
                 json_out: Path | None, class_map: str | None, record: Any) -> None:
    """Top-1/top-5 of MODEL(s) on labelled --data, and top-1 agreement with the first MODEL.

    Class folders are matched to the model's labels by name (case-insensitive); --class-map
    maps folders named otherwise. --mean/--std/... state the preprocessing of .onnx files
    without a record, as in the other commands. Without --cluster it runs here (no ray); with
    it, Ray Data feeds an actor pool of sessions on the cluster's nodes, and the counts are
    the same, image for image.

    \b
    Example:
        edgeres eval cifar10 cifar10-int8 --data cifar10-test --cluster auto
    """
    from edgeres.classmap import read_class_map
    from edgeres.names import resolve_model_file

    check_paths()
    if cluster is None:  # on a cluster, threads are per worker on its nodes' CPUs
        threads = capped_threads(threads)
    metas = None if record is None else [_stated_meta(resolve_model_file(m), record)
                                          for m in model]
    options: dict[str, Any] = {
        "backend": backend, "threads": threads, "batch_size": batch, "limit": limit,
        "metas": metas, "class_map": None if class_map is None else read_class_map(class_map)}
    if cluster is None and workers is None:  # here: the cluster code is never imported
        from edgeres.evaluation import evaluate_models

        run = evaluate_models(model, data, **options)
    else:  # builds the cluster's evaluator (and says that --workers needs --cluster)
        from edgeres.cluster import evaluate_models as evaluate_on

        run = evaluate_on(model, data, cluster=cluster, workers=workers, **options)
    where = run.where + (f", {run.workers} workers" if run.workers else "")
    click.echo(f"{run.data}: {_count(run.results[0].count, 'image')} "
               f"({run.results[0].skipped} unreadable skipped), {where}, {run.seconds:.1f} s")
    for r, rep in zip(run.results, run.reports or [None] * len(run.results), strict=True):
        agree = "" if r.agreement is None else f", agreement with {run.results[0].model} " \
            f"{r.agreement:.2f}%"
        # top-5 of a model with 5 classes or fewer is 100% by construction: not shown
        classes = None if rep is None else rep.logits.shape[1]
        top5 = "" if classes is not None and classes <= 5 else f", top-5 {r.top5:.2f}%"
        click.echo(f"{r.model} ({r.runtime}, {r.executed_precision}): top-1 {r.top1:.2f}% "
                   f"({r.top1_correct}/{r.count}){top5}{agree}")
    if json_out is not None:
        import json

        from edgeres._fs import atomic_write

        with atomic_write(json_out) as tmp:
            tmp.write_text(json.dumps(run.to_dict(), indent=1) + "\n")
        click.echo(f"wrote {json_out}")

