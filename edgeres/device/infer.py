"""A bundle's ``infer.py``: classify images, or ``--verify`` this device against the packaging
host, with the bundle's model, record and golden file. Also ``edgeres verify``'s engine.

The bundle's folder holds ``metadata.json`` (the record, read and checked with the same rules
as everywhere in edgeres: ``ModelMeta.from_json``), one model file ``model.<suffix>`` of the
runtime the bundle carries, and ``golden.npz``. Loading goes through ``edgeres.runtime.load``
with that record, so the runtime label, executed precision, preprocessing and ranking are
edgeres'. Every expected failure is an ``EdgeresError``; ``main`` prints it as one
``Error:`` line and exits 1. Device-safe: stdlib, numpy and the device modules only.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeres import golden, runtimes
from edgeres._model_needs import version_tuple
from edgeres.device import IMAGE_SUFFIXES
from edgeres.errors import (
    BackendNotAvailable,
    DataError,
    EdgeresError,
    MetadataError,
    ModelFileError,
)
from edgeres.meta import ModelMeta
from edgeres.preprocess import pixels_to_input
from edgeres.runtime import Predictor, load

__all__ = ["FOLDER_SUFFIXES", "check_runtime_version", "classify", "find_model", "main",
           "needed_version", "read_record", "verify_folder"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1  # of the --json output, the same as `edgeres predict --json`
RECORD_FILE = "metadata.json"
REQUIREMENTS_FILE = "requirements.txt"
FOLDER_SUFFIXES = IMAGE_SUFFIXES  # the files `edgeres predict` takes from a folder


def read_record(folder: Path) -> tuple[ModelMeta, bytes]:
    """The bundle's record, checked as edgeres checks every record, and its bytes.

    Raises:
        EdgeresError: if ``metadata.json`` is missing or unreadable.
        MetadataError: if it is not UTF-8 JSON or breaks a rule of the record.
    """
    path = folder / RECORD_FILE
    try:
        raw = path.read_bytes()
    except OSError as e:
        msg = f"{path} cannot be read ({e.strerror or e}); re-package the bundle"
        raise EdgeresError(msg) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        msg = f"{path} is not UTF-8 text (byte {e.start}); re-package the bundle"
        raise MetadataError(msg) from None
    return ModelMeta.from_json(text), raw


def find_model(folder: Path) -> Path:
    """The bundle's model file: ``model.<suffix>`` of a runtime carried here.

    Raises:
        ModelFileError: if there is none.
    """
    wanted = [f"model{runtimes.get(name).suffixes[0]}" for name in runtimes.present()]
    for name in wanted:
        if (folder / name).is_file():
            return folder / name
    msg = f"{folder} holds no model file ({' or '.join(wanted)}); re-package the bundle"
    raise ModelFileError(msg)


def _installed_version(dist: str) -> str | None:
    """The installed version of pip distribution ``dist``, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def needed_version(folder: Path, dist: str) -> str | None:
    """The ``dist>=VERSION`` the bundle's ``requirements.txt`` states, or None."""
    try:
        lines = (folder / REQUIREMENTS_FILE).read_text("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in lines:
        name, sep, version = line.split("#", 1)[0].strip().partition(">=")
        if sep and name.strip().lower() == dist.lower() and version_tuple(version.strip()):
            return version.strip()
    return None


def check_runtime_version(folder: Path, model: Path) -> None:
    """Refuse, before loading, a runtime older than the model needs (``requirements.txt``,
    which ``edgeres package`` derives from the model: ``edgeres._model_needs``), or older than
    a release the runtime needs beside it (torch for ExecuTorch) states there.

    Raises:
        BackendNotAvailable: naming both versions and the install line.
    """
    for dist, _ in runtimes.device_requirements(runtimes.for_file(model)):
        need, have = needed_version(folder, dist), _installed_version(dist)
        if need and have and version_tuple(have) < version_tuple(need):
            msg = (f"this bundle's model needs {dist} >= {need} but {have} is installed; run "
                   "pip install -r requirements.txt")
            raise BackendNotAvailable(msg)


def _load(folder: Path, threads: int | None,
          warn: bool = True) -> tuple[Predictor, bytes, Path]:
    """The bundle's predictor, record bytes and model file; ``warn`` logs, before loading,
    what running an int8 model quantized for another CPU risks here (``golden.target_risk``;
    ``golden.verify`` logs it itself)."""
    meta, raw = read_record(folder)
    model = find_model(folder)
    check_runtime_version(folder, model)
    target = meta.quantization.target if meta.quantization else None
    if warn and meta.precision == "int8":
        risk = golden.target_risk(target, platform.machine(), golden.cpu_flags())
        if risk:
            log.warning("%s", risk)
    return load(model, meta=meta, threads=threads), raw, model


def expand_folders(images: list[str]) -> list[str]:
    """Each folder among ``images`` replaced by the image files under it, sorted, as
    ``edgeres predict`` does.

    Raises:
        DataError: if a folder holds no images.
    """
    out: list[str] = []
    for image in images:
        root = Path(image)
        if not root.is_dir():
            out.append(image)
            continue
        found = sorted(str(p) for p in root.rglob("*")
                       if p.is_file() and p.suffix.lower() in FOLDER_SUFFIXES)
        if not found:
            msg = f"folder {image} holds no image files ({', '.join(FOLDER_SUFFIXES)})"
            raise DataError(msg)
        out.extend(found)
    return out


def classify(folder: Path, images: list[str], top_k: int,
             threads: int | None = None) -> dict[str, Any]:
    """Top-k labels, indices and probabilities per image, as ``edgeres predict --json`` gives.

    Raises:
        EdgeresError: if the bundle or an image cannot be read.
    """
    predictor, _, _ = _load(folder, threads)
    found = predictor.predict(images, top_k=top_k)
    return {"schema_version": SCHEMA_VERSION, "model": predictor.meta.name,
            "runtime": predictor.runtime, "executed_precision": predictor.executed_precision,
            "predictions": [{"image": image, **p.to_dict()}
                            for image, p in zip(images, found, strict=True)]}


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for this file system, ...
        return False


def _read_golden(path: Path) -> dict[str, Any]:
    """``golden.load_golden``, every way a file can be broken made one ``EdgeresError``."""
    if not _is_file(path):
        msg = (f"{path} does not exist: the bundle was packaged without golden data; "
               "re-package it with this edgeres")
        raise EdgeresError(msg)
    try:
        return golden.load_golden(path)
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile, RuntimeError,
            NotImplementedError) as e:
        msg = f"cannot read golden file {path}: {str(e).splitlines()[0] if str(e) else e!r}"
        raise EdgeresError(msg) from None


def verify_folder(folder: Path, golden_file: Path | None = None,
                  threads: int | None = None) -> dict[str, Any]:
    """Run the bundle's golden inputs here and compare them with the packaging host's logits.

    Returns:
        The verdict of ``edgeres.golden.verify``: ``passed``, ``failures`` and the numbers.

    Raises:
        EdgeresError: if the bundle, its record, model or golden file is missing or unreadable.
    """
    gold = _read_golden(golden_file or folder / golden.GOLDEN_FILE)
    predictor, raw, model = _load(folder, threads, warn=False)
    meta = predictor.meta

    def to_input(pixels: np.ndarray) -> np.ndarray:
        return pixels_to_input(pixels, meta).astype(predictor.input_dtype, copy=False)

    return golden.verify(
        gold, predictor.run, to_input, runtime=predictor.runtime,
        executed=predictor.executed_precision, precision=meta.precision,
        target=meta.quantization.target if meta.quantization else None,
        model_sha256=golden.sha256_file(model), record_sha256=hashlib.sha256(raw).hexdigest(),
        fixed_batch=predictor.fixed_batch or 0, probabilities=meta.outputs_probabilities)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infer.py",
                                     description="Classify images with this bundle's model.")
    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help="image files, or folders (every image under them)")
    parser.add_argument("--top-k", type=int, default=5, help="classes per image (default 5)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("--threads", type=int, default=None, help="inference threads")
    parser.add_argument("--verify", action="store_true",
                        help="check this device against the packaging host's golden logits")
    parser.add_argument("--golden", metavar="FILE", help="golden file for --verify "
                        "(default: golden.npz in this folder)")
    return parser


def _text(report: dict[str, Any]) -> str:
    lines = []
    for item in report["predictions"]:
        lines.append(item["image"])
        lines += [f"  {p:8.4f}  {label}"
                  for label, p in zip(item["labels"], item["probabilities"], strict=True)]
    return "\n".join(lines)


def _run(args: argparse.Namespace, folder: Path) -> tuple[str, int]:
    """The text to print and the exit code."""
    if args.verify:
        verdict = verify_folder(folder, Path(args.golden) if args.golden else None, args.threads)
        verdict["bundle"] = str(folder)
        out = json.dumps(verdict, indent=1) if args.json else golden.render(verdict)
        return out, 0 if verdict["passed"] else 1
    report = classify(folder, expand_folders(args.images), args.top_k, args.threads)
    return (json.dumps(report, indent=1) if args.json else _text(report)), 0


def main(argv: list[str] | None = None, folder: Path | None = None) -> int:
    """Command-line entry point; returns the exit code (1 on any error, or a failed --verify).

    Args:
        argv: the arguments (``sys.argv[1:]`` when None).
        folder: the bundle (the folder of the running ``infer.py`` when None).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.verify and not args.images:
        parser.error("give at least one IMAGE, or --verify")
    if not args.verify and args.top_k < 1:
        parser.error("--top-k must be at least 1")
    folder = folder or Path(sys.argv[0]).resolve().parent
    if not logging.getLogger().handlers:  # warnings (a target this CPU runs wrongly) on stderr
        logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    try:
        out, code = _run(args, folder)
    except EdgeresError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    try:
        print(out, flush=True)
    except BrokenPipeError:  # `infer.py ... | head -1`: the reader left; nothing more to say
        # Python's documented recipe (library/signal.html, "Note on SIGPIPE"): point stdout
        # at devnull so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code
