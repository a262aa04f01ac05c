"""The on-device commands: ``predict`` (torch-free), ``package`` (a device bundle) and
``verify`` (a bundle against its golden logits)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from edgeres.cli._group import cli
from edgeres.cli._options import (
    _count,
    _onnx_only,
    _stated_meta,
    capped_threads,
    check_paths,
    record_options,
)
from edgeres.runtime.backends import SPIN_HELP
from edgeres.runtimes import RUNTIME_NAMES  # --backend: the registered runtimes
from edgeres.vocab import DEVICES, MODES

if TYPE_CHECKING:
    from edgeres.runtime import Backend, Device
    from edgeres.vocab import Mode

# click.Choice hands commands plain str; the casts to the library's Literal names below mark
# that boundary (the library checks its options again and names a bad value, CONTRIBUTING R5).


def _predictions_json(predictor: Any, images: tuple[str, ...], results: list[Any]) -> str:
    """The --json document; a bundle's infer.py prints the same keys."""
    import json

    return json.dumps({
        "schema_version": 1, "model": predictor.meta.name, "model_file": str(predictor.path),
        "runtime": predictor.runtime, "executed_precision": predictor.executed_precision,
        "predictions": [{"image": image, **r.to_dict()}
                        for image, r in zip(images, results, strict=True)],
    }, indent=1)


def _expand_folders(images: tuple[str, ...]) -> tuple[str, ...]:
    """Each folder among ``images`` replaced by the image files under it, sorted."""
    from edgeres.data import IMAGE_SUFFIXES, image_files
    from edgeres.errors import DataError

    out: list[str] = []
    for image in images:
        try:
            folder = Path(image).is_dir()
        except (OSError, ValueError):  # a name too long: load_image says so, in one line
            folder = False
        if not folder:
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
@click.option("--backend", type=click.Choice(["auto", *RUNTIME_NAMES]), default="auto",
              show_default=True, help="auto: the runtime of the file's format (OpenVINO for "
              ".xml, ONNX Runtime for .onnx, LiteRT for .tflite, ExecuTorch for .pte).")
@click.option("--device", type=click.Choice(DEVICES), default="cpu",
              show_default=True, help="A GPU is used only when asked for.")
@click.option("--mode", type=click.Choice(MODES), default="model", show_default=True,
              help="model: run the model's own precision; fast: let the runtime lower fp32 "
              "(bf16 on AMX).")
@click.option("--threads", type=click.IntRange(min=1), help="Inference threads.")
@click.option("--ort-spinning/--no-ort-spinning", "spin", default=None, help=SPIN_HELP)
@record_options
def predict(model: str, images: tuple[str, ...], top_k: int, as_json: bool, backend: str,
            device: str, mode: str, threads: int | None, spin: bool | None,
            record: Any) -> None:
    """Classify IMAGE(s) with MODEL: an .onnx or OpenVINO .xml file, or a registered name.

    An IMAGE that is a folder stands for every image file under it, in sorted order.
    Works with the base install (numpy, onnxruntime, Pillow; no torch, no onnx). The model's
    metadata record gives the preprocessing and the labels.

    \b
    Example:
        edgeres predict cifar10 cat.jpg dog.png --top-k 3
    """
    import numpy as np

    from edgeres.names import resolve_model_file
    from edgeres.runtime import load

    check_paths()
    images = _expand_folders(images)
    threads = capped_threads(threads)
    path = resolve_model_file(model)
    p = load(path, backend=cast("Backend", backend), device=cast("Device", device),
             mode=cast("Mode", mode), threads=threads, spin=spin,
             meta=_stated_meta(path, record))
    asked = images
    images, results, skipped = _predict_readable(p, images, top_k)
    from edgeres.preprocess import check_finite  # NaN is never printed, nor emitted as JSON

    check_finite(np.array([r.probabilities for r in results]), str(path))
    if as_json:
        click.echo(_predictions_json(p, images, results))
    else:
        click.echo(f"{p.meta.name} on {p.runtime} ({p.executed_precision})")
        for image, r in zip(images, results, strict=True):
            click.echo(image)
            for label, prob in zip(r.labels, r.probabilities, strict=True):
                click.echo(f"  {prob:8.4f}  {label}")
    if skipped:
        first = next(i for i in asked if i not in images)
        click.echo(f"Error: {skipped} of {_count(len(asked), 'image')} could not be read "
                   f"and have no result ({first}{', ...' if skipped > 1 else ''}; listed above)",
                   err=True)
        sys.exit(1)


def _predict_readable(p: Any, images: tuple[str, ...], top_k: int
                      ) -> tuple[tuple[str, ...], list[Any], int]:
    """Predictions for the readable images, with one stderr line per unreadable one.

    The rule of every command that reads images (eval, quantize, bench, predict): an
    unreadable image is skipped with one line naming it, and the skips are counted; predict,
    whose output is one result per image asked for, then exits 1.
    """
    from edgeres.errors import DataError

    try:
        return images, p.predict(list(images), top_k=top_k), 0
    except DataError:
        if len(images) == 1:
            raise
    kept: list[str] = []
    results: list[Any] = []
    for image in images:  # one at a time only after a batch failed: find the bad ones
        try:
            results.extend(p.predict([image], top_k=top_k))
        except DataError as e:
            click.echo(f"skipped {e}", err=True)
            continue
        kept.append(image)
    return tuple(kept), results, len(images) - len(kept)


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

    check_paths(folders=True, one_file=True)
    with tempfile.TemporaryDirectory(prefix="edgeres.attach.") as tmp:
        if record is not None:  # the bundle's model carries the stated record, as attach writes
            from edgeres.foreign import attach as attach_record

            src = resolve_model_file(model)
            _onnx_only(src)
            model = str(attach_record(src, Path(tmp) / src.name, record).path)
        r = package(model, output, overwrite=force, golden=golden_data,
                    golden_samples=golden_samples)
    click.echo(f"wrote {r.path} ({r.size_bytes / 1e6:.1f} MB: {', '.join(r.files)})")
    click.echo(f"golden images: {r.golden_data}")
    needs = "".join(f" (which needs {name})" for name in r.runtime_needs)
    click.echo(f"needs numpy, Pillow and {r.runtime}{needs}; checked: the bundled model loads and "
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

