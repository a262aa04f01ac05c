"""Golden files for bundles (made on the packaging host) and ``edgeres verify`` (run anywhere).

``make_golden`` draws N images from the model's validation or calibration data (train split
only; never the test split unless ``--golden DATA`` names it), keeps them as model-sized uint8
pixels, runs them through the bundled model here and stores the logits, the labels and the
tolerances. The tolerances are measured for each bundle, not guessed: the same inputs also run
through other kernels of the same model (ONNX Runtime with graph optimisation off, i.e. QDQ as
float reference math instead of fused int8 kernels, and OpenVINO's CPU plugin when installed),
and the largest difference found, times ``MARGIN``, becomes the tolerance, never below
``FLOOR`` (a share of the output's scale: probabilities are compared as probabilities, logits
relative to their spread; the shares come from the precision's cross-machine spread measured
on x86 vs emulated arm64, see benchmarks/results/arm64_verify.md). Required top-1 agreement is
the share of inputs whose two best outputs are further apart than drift within that tolerance
could close, never below what a model ignoring its input would meet
(``golden.required_agreement``). ``edgeres verify`` re-checks both against the device's own
outputs, so an edited golden file cannot loosen them.

``verify_bundle`` is the host side of ``edgeres verify``: it runs
``edgeres.device.infer.verify_folder``, the same code a bundle's ``infer.py --verify`` runs.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import tempfile
import zipfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from edgeres import __version__, golden
from edgeres._fs import NO_ROOM, tmp_problem
from edgeres.errors import DataError, EdgeresError
from edgeres.meta import CIFAR10_LABELS, ModelMeta
from edgeres.preprocess import load_image, pad_batch, pixels_to_input, resize_crop

__all__ = ["FLOOR", "MARGIN", "make_golden", "verify_bundle"]

log = logging.getLogger(__name__)

GOLDEN_SAMPLES = 64
MAX_PIXEL_BYTES = 2 << 20  # fewer samples for big inputs: 64 CIFAR images are 196 kB
MARGIN = 2.0  # measured kernel spread x this = output tolerance
# (atol, rtol) never gone below; atol is a share of the output's scale (``golden.output_scale``:
# 1 for probabilities, the median spread of a row's logits otherwise), so probabilities are
# compared as probabilities and logits relative to their spread. From measurements on the
# reference model (cifar_resnet20, logits spanning ~10): fp32 logits differed by at most 4.5e-6
# between x86 and emulated arm64 ONNX Runtime (benchmarks/results/arm64_verify.md) and 3.8e-6
# between ORT and OpenVINO. int8 logits move in output quantization steps (0.046 there): x86
# vs arm64 differed by up to 3 steps (0.138, the S8 'arm' target), ORT fused vs unfused QDQ by
# 3 steps, ORT vs OpenVINO by up to 11 (0.51 on 682 validation images), i.e. 5% of the scale;
# fp16/bf16 floors scale fp32's by their mantissa (unmeasured here: no fp16 CPU kernels).
FLOOR: dict[str, tuple[float, float]] = {
    "fp32": (1e-4, 1e-3), "fp16": (2e-3, 1e-2), "bf16": (1e-2, 2e-2), "int8": (0.05, 0.02),
}


def _default_data(meta: ModelMeta) -> str | None:
    """Validation, else calibration data named in the record; cifar10-val for CIFAR models."""
    q = meta.quantization
    for name in (q.validation_data, q.calibration_data) if q else ():
        if isinstance(name, str) and name and not name.endswith("-test"):
            return name
    if tuple(meta.labels) == CIFAR10_LABELS and meta.input_size == (32, 32):
        return "cifar10-val"
    return None


def _draw(meta: ModelMeta, data: str | Path | None, samples: int, seed: int,
          max_bytes: int = MAX_PIXEL_BYTES) -> tuple[np.ndarray, str, np.ndarray | None, str]:
    """(data, kind, labels, description): model-sized pixels or preprocessed inputs."""
    from edgeres.data import ArraySource, open_data

    h, w = meta.input_size
    per = h * w * meta.input.channels
    n = max(min(samples, 8), min(samples, max_bytes // per))
    name = data if data is not None else _default_data(meta)
    if name is None:
        rng = np.random.default_rng(seed)
        log.warning("no validation data known for %s: golden inputs are random pixels; pass "
                    "--golden DATA for real images", meta.name)
        pixels = rng.integers(0, 256, (n, h, w, meta.input.channels), dtype=np.uint8)
        return pixels, "pixels", None, f"{n} random pixel images (seed {seed})"
    source = open_data(name).subset(n, seed)
    what = f"{len(source)} images of {name} (seed {seed})"
    if isinstance(source, ArraySource):
        return source.inputs.astype(meta.input.dtype), "inputs", source.labels, what
    try:  # the golden check compares outputs; labels only add the host's own accuracy
        index: dict[str, int] | None = source.label_index(meta.labels)
    except DataError as e:
        log.info("golden: %s; its images are used without labels", e)
        index = None
    images: list[np.ndarray] = []
    labels: list[int] = []
    # ImageSource reads its items in order; each is decoded and resized here as data.py does.
    for (_, cls), raw in zip(source.items, source.raw(), strict=True):
        try:
            images.append(resize_crop(load_image(raw, meta.preprocess.color), meta.preprocess))
        except DataError as e:
            log.warning("golden: skipped %s", e)
            continue
        labels.append(index[cls] if index is not None and cls is not None else -1)
    if not images:
        msg = f"{name}: no readable images for the golden file; pass --golden DATA"
        raise DataError(msg)
    lab = np.asarray(labels, np.int64) if source.classes and index is not None else None
    return np.stack(images), "pixels", lab, what


def _logits(predictor: Any, data: np.ndarray, kind: str) -> np.ndarray:
    """Logits of ``data`` through ``predictor``, 32 at a time (padded for fixed batches)."""
    step = predictor.fixed_batch or 32
    rows = []
    for start in range(0, len(data), step):
        chunk = data[start : start + step]
        x = pixels_to_input(chunk, predictor.meta) if kind == "pixels" else chunk
        x = x.astype(predictor.input_dtype, copy=False)
        n = len(x)
        x = pad_batch(x, predictor.fixed_batch or 0)
        rows.append(np.asarray(predictor.run(x))[:n].reshape(n, -1))
    return np.concatenate(rows).astype(np.float64)


def _alternatives(path: Path, meta: ModelMeta) -> dict[str, Any]:
    """Other kernels for the same model: ORT without graph optimisation, OpenVINO CPU."""
    from edgeres.runtime import load

    out: dict[str, Any] = {}
    if path.suffix.lower() != ".onnx":
        return out  # an IR runs on OpenVINO only, which made the host logits: the floor holds
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    out["ort-cpu, graph optimisation off"] = load(path, meta=meta, session_options=so)
    try:
        out["openvino-cpu"] = load(path, backend="openvino", meta=meta)
    except EdgeresError as e:  # not installed, or cannot compile this graph: fewer alternatives
        log.info("golden: no OpenVINO alternative (%s)", e)
    return out


def _tolerances(host: np.ndarray, others: dict[str, np.ndarray], precision: str,
                probabilities: bool | None = None) -> dict[str, Any]:
    """Tolerances from the measured spread between kernels, with ``MARGIN`` and ``FLOOR``.

    The floor is a share of the output's scale (``golden.output_scale``); the required top-1
    agreement is the share of inputs without a near-tie, never below what a model ignoring its
    input meets (``golden.required_agreement``: a binomial bound from the number of classes
    and inputs).
    """
    measured = {}
    for name, logits in others.items():
        delta = np.abs(logits - host)
        measured[name] = {"max_abs_dlogit": float(delta.max()),
                          "agreement": float((logits.argmax(1) == host.argmax(1)).mean())}
    spread = max((m["max_abs_dlogit"] for m in measured.values()), default=0.0)
    scale = golden.output_scale(host, probabilities)
    floor_share, rtol = FLOOR.get(precision, FLOOR["fp32"])
    floor_atol = floor_share * scale
    atol = max(floor_atol, MARGIN * spread)
    if atol > golden.MAX_ATOL_SHARE * scale:
        log.warning("golden: the kernels measured disagree by up to %.3g, more than %.0f%% of "
                    "the output's scale (%.3g) once doubled: verify will fail this bundle; "
                    "re-quantize for this CPU's target", spread,
                    100 * golden.MAX_ATOL_SHARE, scale)
    # Two outputs each drifting by the largest measured amount, in opposite directions, swap
    # the top class only where they were at most twice that apart.
    tie_gap = 2 * max(spread, floor_atol / MARGIN)
    ties = golden.ambiguous(host, tie_gap)
    random = golden.required_agreement(host.shape[1], len(host))
    share = float(np.floor((1 - ties.mean()) * 1000) / 1000)
    return {
        "tolerances": {"atol": atol, "rtol": rtol, "tie_gap": tie_gap,
                       "min_agreement": max(share, random)},
        "tolerance_derivation": {
            "measured": measured, "margin": MARGIN, "floor": [floor_atol, rtol],
            "scale": scale, "random_agreement": random,
            "rule": "scale = 1 for probabilities, else the median of each row's max - min "
                    "output; atol = max(floor share x scale, margin x largest |delta| between "
                    "the kernels measured); tie_gap = 2 x max(that delta, floor / margin); "
                    "min_agreement = max(share of inputs whose top-2 gap exceeds tie_gap, the "
                    f"agreement a model ignoring its input meets with chance <= "
                    f"{golden.RANDOM_PASS:g} (binomial, 1/classes per input))",
        },
    }


def make_golden(dst: Path, model: Path, meta: ModelMeta, record: str, *,
                data: str | Path | None = None, samples: int = GOLDEN_SAMPLES,
                seed: int = 0, max_bytes: int = MAX_PIXEL_BYTES) -> dict[str, Any]:
    """Write the golden file ``dst`` (a bundle's ``golden.npz``) for ``model``; return its info.

    Args:
        dst: the golden file to write.
        model: the bundled model file.
        meta: the record ``metadata.json`` holds.
        record: the text of ``metadata.json``.
        data: golden images (a path or registered name); None picks validation or calibration
            data named in the record (cifar10-val for CIFAR-10 models), else random pixels.
        samples: how many (fewer when their pixels would exceed ``max_bytes``).
        seed: seed of the draw.
        max_bytes: most bytes of pixels stored.

    Raises:
        DataError: if ``data`` cannot be read or holds no usable images.
    """
    from edgeres.runtime import load

    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        msg = f"golden samples must be a positive integer, got {samples!r}"
        raise DataError(msg)
    inputs, kind, labels, source = _draw(meta, data, samples, seed, max_bytes)
    predictor = load(model, meta=meta)
    host = _logits(predictor, inputs, kind)
    others = {name: _logits(p, inputs, kind) for name, p in _alternatives(model, meta).items()}
    flags = golden.cpu_flags()
    info = {
        **_tolerances(host, others, meta.precision, meta.outputs_probabilities),
        "source": source,
        "precision": meta.precision, "runtime": predictor.runtime,
        "executed_precision": predictor.executed_precision,
        "target": meta.quantization.target if meta.quantization else None,
        "model_sha256": golden.sha256_file(model),
        "record_sha256": hashlib.sha256(record.encode("utf-8")).hexdigest(),
        "host": {"machine": platform.machine(),
                 "isa": golden.int8_isa(platform.machine(), flags),
                 "runtime_version": predictor.backend.details.get("version"),
                 "edgeres": __version__},
    }
    golden.save_golden(dst, data=inputs, kind=kind,
                       logits=host, labels=labels, info=info)
    return info


def _bundle_folder(path: Path, stack: ExitStack) -> Path:
    """The bundle folder; a bundle .zip is extracted into a temporary folder (TMPDIR) first.

    Raises:
        EdgeresError: for every way the path, the .zip or the temporary folder fails.
    """
    try:
        is_zip = path.is_file() and path.suffix.lower() == ".zip"
        if is_zip:
            try:
                tmp = Path(stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="edgeres.verify.")))
            except OSError as e:  # TMPDIR missing, read-only or full
                raise EdgeresError(tmp_problem(e, None, f"extract {path}")) from None
            try:
                with zipfile.ZipFile(path) as z:
                    z.extractall(tmp)
            except OSError as e:
                if e.errno in NO_ROOM or (e.filename and str(e.filename).startswith(str(tmp))):
                    raise EdgeresError(tmp_problem(e, tmp, f"extract {path}")) from None
                why = e.strerror or type(e).__name__
                msg = f"{path} cannot be read ({why}); copy it again"
                raise EdgeresError(msg) from None
            except (zipfile.BadZipFile, EOFError, ValueError, RuntimeError,
                    NotImplementedError, KeyError) as e:  # truncated, corrupt, encrypted
                why = str(e).splitlines()[0] if str(e) else repr(e)
                msg = (f"{path} is not a readable bundle .zip ({why[:200]}); re-package it or "
                       "copy it again")
                raise EdgeresError(msg) from None
            tops = [p for p in tmp.iterdir() if p.is_dir()]
            path = tops[0] if len(tops) == 1 else tmp
        has_record = (path / "metadata.json").is_file()
    except OSError as e:  # a name too long, a folder without permission
        msg = f"cannot read bundle {str(path)[:200]} ({e.strerror or type(e).__name__})"
        raise EdgeresError(msg) from None
    if not has_record:
        msg = (f"{str(path)[:200]} is not an edgeres bundle (no metadata.json); pass a bundle "
               "folder or .zip")
        raise EdgeresError(msg)
    return path


def verify_bundle(bundle: str | Path, *, golden_file: str | Path | None = None,
                  threads: int | None = None) -> dict[str, Any]:
    """Run a bundle's golden inputs here and compare them with the packaging host's logits.

    Args:
        bundle: a bundle folder or .zip written by ``edgeres package``.
        golden_file: another golden file to check against (default: the bundle's own).
        threads: inference threads (the runtime's default when None).

    Returns:
        The verdict of ``edgeres.golden.verify``: ``passed``, ``failures`` and the numbers.

    Raises:
        EdgeresError: if the bundle or its golden file is missing or unreadable.
    """
    from edgeres.device.infer import verify_folder

    try:
        with ExitStack() as stack:
            folder = _bundle_folder(Path(bundle), stack)
            verdict = verify_folder(folder, Path(golden_file) if golden_file else None,
                                    threads)
    except OSError as e:  # anything the bundle's files do that the checks above did not name
        name = e.filename if e.filename else bundle
        msg = f"cannot read {str(name)[:200]} ({e.strerror or type(e).__name__}); copy it again"
        raise EdgeresError(msg) from None
    verdict["bundle"] = str(bundle)
    return verdict
