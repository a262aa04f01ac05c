# template: the source of a bundle's infer.py, rendered by edgeres.package.render_infer(),
# template: which drops these "# template:" lines and replaces the marked import block with
# template: the code of edgeres/preprocess.py, the runtime's _softmax_topk, edgeres/_hw.py (the
# template: CPU and runtime rules) and edgeres/golden.py (one copy of each).
"""Classify images with the model in this folder: numpy, Pillow and one runtime, nothing else.

Usage:
    python infer.py IMAGE|FOLDER [...] [--top-k 5] [--json] [--threads N]

This file was written by ``edgeres package``. The preprocessing in it is edgeres'
``preprocess.py`` copied unchanged (only its ``DataError`` import became a local class), and the
top-k ranking is the runtime's own function, so results match ``edgeres predict`` on the same
model. The hardware rules (which precision a runtime executes, the OpenVINO precision hint) are
edgeres' ``_hw.py`` copied unchanged, so this file reports what ``edgeres.runtime`` reports.
Everything the code needs to know about the model comes from ``metadata.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# edgeres:begin-copied-code  (edgeres package replaces this block with preprocess.py's code)
from edgeres._hw import int8_execution, ort_executed, ov_precision_hint, ov_precision_name
from edgeres.errors import DataError
from edgeres.golden import GOLDEN_FILE, load_golden, render, sha256_file, verify
from edgeres.preprocess import pad_batch, pixels_to_input, prepare
from edgeres.runtime import _softmax_topk

# edgeres:end-copied-code

SCHEMA_VERSION = 1  # of the --json output, the same as `edgeres predict --json`
BATCH = 32  # images decoded and run per call


def read_meta(folder: Path) -> SimpleNamespace:
    """The metadata record as attribute access, the way the preprocessing code reads it."""
    record = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    pre = dict(record["preprocess"])
    if not isinstance(pre["resize"], int):
        pre["resize"] = tuple(pre["resize"])
    pre["crop"] = tuple(pre["crop"])
    pre.setdefault("channel_order", "RGB")  # records before these fields: RGB, 0-1 scale
    pre.setdefault("pixel_scale", 1.0)
    # Whether outputs are probabilities already (never softmax twice), as ModelMeta says it:
    # stated in the record, logits for edgeres exports, else the rows decide (None).
    steps = {p.get("step") for p in record.get("provenance", [])}
    probabilities = {"probabilities": True, "logits": False}.get(
        record.get("output"), False if "export" in steps else None)
    return SimpleNamespace(
        name=record["name"], labels=tuple(record["labels"]), precision=record["precision"],
        input=SimpleNamespace(**record["input"]), preprocess=SimpleNamespace(**pre),
        probabilities=probabilities,
    )


def load_model(folder: Path, meta: Any, threads: int | None) -> tuple[str, str, Any, Callable]:
    """Open ``model.onnx`` with ONNX Runtime or ``model.xml`` with OpenVINO (CPU).

    Returns:
        (runtime label, executed precision, graph input shape, run function).
    """
    if (folder / "model.xml").is_file():
        import openvino as ov

        # Keep the record's precision (edgeres' _hw rule, as edgeres.runtime applies it).
        core = ov.Core()
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        hint = ov_precision_hint(meta.precision, capabilities)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = core.compile_model(str(folder / "model.xml"), "CPU", config)
        request = compiled.create_infer_request()
        shape = [d.get_length() if d.is_static else None for d in compiled.input(0).partial_shape]
        # The hint is a request: a CPU without f16/bf16 support silently runs f32, so report
        # what the compiled model says it runs.
        ran = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        # An int8 model whose float layers run in f16/bf16 is not what was packaged: say so.
        executed = int8_execution(ran) if meta.precision == "int8" else ov_precision_name(ran)
        return "openvino-cpu", executed, shape, lambda x: request.infer({0: x})[0]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(folder / "model.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    output = [session.get_outputs()[0].name]
    shape = [d if isinstance(d, int) else None for d in inp.shape]
    # fp16 runs as fp32 on ONNX Runtime's x86 CPU provider (edgeres' _hw rule).
    executed = ort_executed("cpu", "model", meta.precision, platform.machine()) or meta.precision
    return "ort-cpu", executed, shape, lambda x: session.run(output, {inp.name: x})[0]


def classify(images: list[str], top_k: int, threads: int | None = None) -> dict[str, Any]:
    """Top-k labels, indices and probabilities per image, as ``edgeres predict --json`` gives.

    Raises:
        DataError: if an image cannot be read.
    """
    folder = Path(__file__).resolve().parent
    meta = read_meta(folder)
    runtime, executed, shape, run = load_model(folder, meta, threads)
    fixed = shape[0] if isinstance(shape[0], int) else 0
    results = []
    for start in range(0, len(images), fixed or BATCH):
        chunk = images[start : start + (fixed or BATCH)]
        x = prepare(chunk, meta)
        x = pad_batch(x, fixed)  # a fixed-batch graph: pad the last chunk
        order, probs = _softmax_topk(run(x)[: len(chunk)], top_k, meta.probabilities)
        for image, row, prow in zip(chunk, order.tolist(), probs.tolist(), strict=True):
            labels = [meta.labels[i] if i < len(meta.labels) else str(i) for i in row]
            results.append({"image": image, "labels": labels,
                            "indices": row, "probabilities": prow})
    return {"schema_version": SCHEMA_VERSION, "model": meta.name, "runtime": runtime,
            "executed_precision": executed, "predictions": results}


# The suffixes `edgeres predict` takes from a folder (edgeres.data.IMAGE_SUFFIXES).
FOLDER_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm")


def expand_folders(images: list[str]) -> list[str]:
    """Each folder among ``images`` replaced by the image files under it, sorted, as
    ``edgeres predict`` does."""
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


def verify_here(golden_file: str | None, threads: int | None = None) -> dict[str, Any]:
    """Run the golden inputs here and compare with the packaging host (golden.py's verdict)."""
    folder = Path(__file__).resolve().parent
    meta = read_meta(folder)
    runtime, executed, shape, run = load_model(folder, meta, threads)
    gold = load_golden(Path(golden_file) if golden_file else folder / GOLDEN_FILE)
    model = folder / ("model.xml" if (folder / "model.xml").is_file() else "model.onnx")
    record = (folder / "metadata.json").read_bytes()
    quant = json.loads(record).get("quantization")
    verdict = verify(gold, run, lambda pixels: pixels_to_input(pixels, meta), runtime=runtime,
                     executed=executed, precision=meta.precision,
                     target=quant.get("target") if isinstance(quant, dict) else None,
                     model_sha256=sha256_file(model),
                     record_sha256=hashlib.sha256(record).hexdigest(),
                     fixed_batch=shape[0] if isinstance(shape[0], int) else 0)
    verdict["bundle"] = str(folder)
    return verdict


def _verify_main(args: argparse.Namespace) -> int:
    """``--verify``: print the verdict; exit 1 when it fails."""
    try:
        verdict = verify_here(args.golden, args.threads)
    except (OSError, ValueError, KeyError) as e:
        print(f"Error: cannot verify: {e}", file=sys.stderr)
        return 1
    print(json.dumps(verdict, indent=1) if args.json else render(verdict))
    return 0 if verdict["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (1 on an unreadable image)."""
    parser = argparse.ArgumentParser(description="Classify images with this bundle's model.")
    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help="image files, or folders (every image under them)")
    parser.add_argument("--top-k", type=int, default=5, help="classes per image (default 5)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("--threads", type=int, default=None, help="inference threads")
    parser.add_argument("--verify", action="store_true",
                        help="check this device against the packaging host's golden logits")
    parser.add_argument("--golden", metavar="FILE", help="golden file for --verify "
                        "(default: golden.npz in this folder)")
    args = parser.parse_args(argv)
    if args.verify:
        return _verify_main(args)
    if not args.images:
        parser.error("give at least one IMAGE, or --verify")
    if args.top_k < 1:
        parser.error("--top-k must be at least 1")
    try:
        report = classify(expand_folders(args.images), args.top_k, args.threads)
    except DataError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for item in report["predictions"]:
        print(item["image"])
        for label, p in zip(item["labels"], item["probabilities"], strict=True):
            print(f"  {p:8.4f}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
