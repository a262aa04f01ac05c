"""``edgeres eval``: accuracy of model files on labelled data, here or on a Ray cluster.

Locally every model goes through ``edgeres.evaluate.evaluate`` (THE top-1 loop) and ray is
never imported. On a cluster the same images are cut into the same batches the local loop
uses (``batch_size`` consecutive images of ``data.subset(limit)``), and Ray Data runs two
stages over them: a task stage that decodes and preprocesses each batch with
``edgeres.preprocess`` (the one numpy implementation), and an actor pool where each actor
holds one ``edgeres.runtime`` Predictor, loaded from the model file shipped once through the
object store (``ray.put``) and written to the actor's own temporary folder. The driver puts
the logits back in image order and scores them with ``evaluate.topk_accuracy``, so a cluster
run counts exactly what a local run counts, image for image.

Where the images come from: an image folder is read by the Ray Data tasks from its path (on
several machines that path must be shared storage, as ImageNet-val usually is); the images of
a tar archive are read once by the driver and shipped; ``.npy``/``.npz`` arrays are shipped.
"""

from __future__ import annotations

import importlib
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from edgeres.errors import ConfigError, DataError
from edgeres.preprocess import pad_batch

if TYPE_CHECKING:
    from edgeres.runtime import Backend

log = logging.getLogger(__name__)

DEFAULT_BATCH = 100  # the local loop's default (evaluate.evaluate), so batches coincide
# Each stage asks for half a CPU: an actor pool that took every CPU slot would leave none for
# the preprocessing tasks and the dataset would hang (ray-project/ray#44687).
_STAGE_CPUS = 0.5


@dataclass(frozen=True)
class ModelAccuracy:
    """One model's accuracy on the data.

    Attributes:
        model: the MODEL argument; file: the model file.
        top1, top5: percent; top1_correct, top5_correct: the counts behind them.
        count: images evaluated; skipped: unreadable images left out.
        agreement: percent of images whose top-1 class equals the first model's (None for
            the first model, or when the counts differ).
        runtime, executed_precision: what ran (as ``Predictor`` reports it on the driver).
    """

    model: str
    file: str
    top1: float
    top5: float
    top1_correct: int
    top5_correct: int
    count: int
    skipped: int
    agreement: float | None
    runtime: str
    executed_precision: str


@dataclass(frozen=True)
class EvalRun:
    """An ``edgeres eval`` run.

    Attributes:
        data: the data argument; results: one entry per model, in order.
        where: "local" or "cluster ADDRESS"; workers: actors in the pool (None locally).
        batch_size: images per inference call; seconds: wall time of the evaluation.
        reports: the full ``EvalReport``s (logits included), for callers that need them.
    """

    data: str
    results: tuple[ModelAccuracy, ...]
    where: str
    workers: int | None
    batch_size: int
    seconds: float
    reports: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (no logits)."""
        from dataclasses import asdict

        return {"schema_version": 1, "tool": "edgeres eval", "data": self.data,
                "where": self.where, "workers": self.workers, "batch_size": self.batch_size,
                "seconds": self.seconds, "results": [asdict(r) for r in self.results]}


def evaluate_models(models: Sequence[str | Path], data: str | Path, *, cluster: str | None = None,
                    workers: int | None = None, backend: str = "auto", threads: int | None = None,
                    batch_size: int = DEFAULT_BATCH, limit: int | None = None,
                    metas: Sequence[Any] | None = None, class_map: Any = None) -> EvalRun:
    """top-1/top-5 of every model on ``data``, and top-1 agreement with the first model.

    Args:
        models: model files (``.onnx``, OpenVINO ``.xml``) or registered names (``cifar10``).
        data: labelled data: a path or a registered name (``cifar10-test``).
        cluster: a Ray address (``auto`` = ``$RAY_ADDRESS``); None evaluates here without ray.
        workers: actors in the cluster's pool; None = the cluster's CPUs.
        backend: ``auto``, ``ort`` or ``openvino`` (each actor holds one such session).
        threads: intra-op threads per session; None = the runtime's default locally, 1 per
            actor on a cluster.
        batch_size: images per call (a fixed-batch graph always gets its own batch).
        limit: evaluate a seeded subset of this many images (``DataSource.subset``).
        metas: one record per model (``runtime.load(meta=...)``: stated preprocessing), None
            in it or for it uses each model's own.
        class_map: how class folders map to outputs (``data.ClassMap``); None: by label name.

    Returns:
        An ``EvalRun``; a cluster run's counts equal a local run's on the same arguments.

    Raises:
        ConfigError: for invalid options; DataError: for unlabelled or unreadable data;
        UnknownNameError/ModelFileError: for a bad model or data argument; ClusterError: if
        the cluster cannot be reached.
    """
    from edgeres.data import open_data
    from edgeres.names import resolve_model_file
    from edgeres.runtime import load

    _check(models, workers, threads, batch_size, limit, cluster)
    files = [resolve_model_file(m) for m in models]
    source = open_data(data, class_map=class_map).subset(limit)
    metas = metas or [None] * len(files)
    # backend: a label load() checks itself ("auto", "ort", "openvino")
    preds = [load(f, backend=cast("Backend", backend), threads=1 if cluster else threads, meta=m)
             for f, m in zip(files, metas, strict=True)]
    start = time.perf_counter()
    if cluster is None:
        from edgeres.evaluate import evaluate

        reports = [evaluate(p.run, source, p.meta, batch_size=batch_size,
                            description=f"{m}: evaluating") for m, p in zip(models, preds,
                                                                           strict=True)]
        where, used = "local", None
    else:
        from edgeres.cluster import connect

        with connect(cluster) as ray:
            used = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            reports = [evaluate_on_cluster(ray, f, source, p.meta, workers=used,
                                           backend=backend, threads=threads or 1,
                                           batch_size=batch_size)
                       for f, p in zip(files, preds, strict=True)]
        where = f"cluster {cluster}"
    seconds = time.perf_counter() - start
    results = tuple(_accuracy(str(m), f, r, reports[0] if i else None, p)
                    for i, (m, f, r, p) in enumerate(zip(models, files, reports, preds,
                                                         strict=True)))
    return EvalRun(str(data), results, where, used, batch_size, seconds, tuple(reports))


def _check(models: Sequence[Any], workers: int | None, threads: int | None, batch_size: int,
           limit: int | None, cluster: str | None) -> None:
    checks = [(bool(models), "give at least one MODEL"),
              (workers is None or workers >= 1, "--workers must be at least 1"),
              (workers is None or cluster is not None, "--workers needs --cluster ADDRESS"),
              (threads is None or threads >= 1, "--threads must be at least 1"),
              (batch_size >= 1, "--batch must be at least 1"),
              (limit is None or limit >= 1, "--limit must be at least 1")]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)


def _accuracy(model: str, file: Path, report: Any, first: Any, pred: Any) -> ModelAccuracy:
    agreement = None
    if first is not None and first.logits.shape == report.logits.shape:
        agreement = report.agreement(first)
    return ModelAccuracy(
        model=model, file=str(file), top1=report.top1, top5=report.top5,
        top1_correct=round(report.top1 * report.count / 100),
        top5_correct=round(report.top5 * report.count / 100), count=report.count,
        skipped=report.skipped, agreement=agreement, runtime=pred.runtime,
        executed_precision=pred.executed_precision)


# --- the cluster path ---------------------------------------------------------------------------


def model_payload(path: Path) -> dict[str, bytes]:
    """The model's files by name: the file itself, plus an IR's ``.bin`` or ONNX external data."""
    files = {path.name: path.read_bytes()}
    for extra in (path.with_suffix(".bin"), Path(f"{path}.data")):
        if extra.is_file() and (extra.suffix == ".bin") == (path.suffix.lower() == ".xml"):
            files[extra.name] = extra.read_bytes()
    return files


def _chunks(source: Any, meta: Any, batch: int) -> list[dict[str, Any]]:
    """The local loop's batches as dataset rows: images (path or bytes) or arrays, labels."""
    if source.classes is None and getattr(source, "labels", None) is None:
        msg = (f"{source.name} has no labels; accuracy needs an ImageFolder layout "
               "(<class>/<image>)")
        raise DataError(msg)
    rows: list[dict[str, Any]] = []
    if hasattr(source, "items"):  # ImageSource: a folder yields paths, an archive bytes
        index = source.label_index(meta.labels, meta.num_classes)
        raws = list(source._reader(source.items))  # noqa: SLF001 - data's own reader, in order
        labels = [index[c] for _, c in source.items]
        for k, start in enumerate(range(0, len(raws), batch)):
            part = raws[start:start + batch]
            paths = [str(r) for r in part if isinstance(r, Path)]
            rows.append({"chunk": k, "paths": paths,
                         "blobs": [] if paths else [bytes(r) for r in part],
                         "truth": np.asarray(labels[start:start + batch], np.int64)})
        return rows
    # ArraySource: check against the model as its batches() does, by asking for the first
    first = next(source.batches(meta, batch))
    for k, start in enumerate(range(0, len(source), batch)):
        x = source.inputs[start:start + batch]
        rows.append({"chunk": k, "arrays": np.ascontiguousarray(x, dtype=first.inputs.dtype),
                     "truth": np.asarray(source.labels[start:start + batch], np.int64)})
    return rows


def _preprocess(batch: dict[str, Any], meta: Any) -> dict[str, Any]:
    """Ray Data task: decode and preprocess one chunk, exactly as ``data.ImageSource`` does."""
    from edgeres.preprocess import load_image, pixels_to_input, resize_crop

    if "arrays" in batch:
        x, truth, skipped = batch["arrays"][0], batch["truth"][0], 0
    else:
        spec = meta.preprocess
        paths, blobs = list(batch["paths"][0]), list(batch["blobs"][0])
        raws = [Path(p) for p in paths] if paths else [bytes(b) for b in blobs]
        pixels, keep = [], []
        for i, raw in enumerate(raws):
            try:
                pixels.append(resize_crop(load_image(raw, spec.color), spec))
                keep.append(i)
            except DataError as e:
                log.warning("skipped %s", e)
        if not pixels:
            return {"chunk": batch["chunk"], "inputs": np.zeros((1, 0)), "truth":
                    np.zeros((1, 0), np.int64), "skipped": np.asarray([len(raws)])}
        x = pixels_to_input(np.stack(pixels), meta)
        truth, skipped = np.asarray(batch["truth"][0])[keep], len(raws) - len(keep)
    return {"chunk": batch["chunk"], "inputs": x[None], "truth": np.asarray(truth)[None],
            "skipped": np.asarray([skipped])}


class _Infer:
    """Ray Data actor: one runtime session, loaded from the shipped model files."""

    def __init__(self, files: list[Any], name: str, backend: str, threads: int) -> None:
        import ray

        from edgeres.runtime import load

        payload = ray.get(files[0])  # a list keeps Ray from resolving the reference early
        self._dir = tempfile.TemporaryDirectory(prefix="edgeres-eval-")
        for fname, data in payload.items():
            (Path(self._dir.name) / fname).write_bytes(data)
        self.pred = load(Path(self._dir.name) / name, backend=cast("Backend", backend),
                         threads=threads)
        first = self.pred.meta.input.shape[0]
        self.fixed = first if isinstance(first, int) and first > 0 else 0
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        x = np.asarray(batch["inputs"][0])
        n = len(x)
        if n == 0:
            out = np.zeros((0, 0), np.float32)
        else:
            x = pad_batch(x, self.fixed, fill=x[-1:])  # as evaluate() does
            out = np.asarray(self.pred.run(x), dtype=np.float32)
            out = out.reshape(len(x), -1)[:n]
        return {"chunk": batch["chunk"], "logits": out[None], "truth": batch["truth"],
                "skipped": batch["skipped"], "node": np.asarray([self.node])}


def _quiet_ray_data(ray: Any) -> None:
    from edgeres._progress import progress_enabled

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress_enabled()
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def evaluate_on_cluster(ray: Any, path: Path, source: Any, meta: Any, *, workers: int,
                        backend: str = "auto", threads: int = 1,
                        batch_size: int = DEFAULT_BATCH) -> Any:
    """One model's ``EvalReport`` from Ray Data and an actor pool of ``workers`` sessions.

    Args:
        ray: the connected ``ray`` module (``edgeres.cluster.connect``).
        path: the model file on this machine; shipped to the actors through the object store.
        source: the (already subset) data source.
        meta: the model's record (drives preprocessing and the label mapping).
        workers: actors; backend, threads: each actor's session.
        batch_size: images per call, as in the local loop.

    Returns:
        An ``edgeres.evaluate.EvalReport`` equal to the local one.

    Raises:
        DataError: for unlabelled data or no readable image.
    """
    importlib.import_module("ray.data")  # the extra's Ray Data part, as ray.data below

    from edgeres.evaluate import EvalReport, topk_accuracy

    first = meta.input.shape[0]
    batch = first if isinstance(first, int) and first > 0 else batch_size
    rows = _chunks(source, meta, batch)
    _quiet_ray_data(ray)
    files = ray.put(model_payload(Path(path)))
    ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), max(4 * workers, 8)))
    ds = ds.map_batches(_preprocess, batch_size=1, batch_format="numpy",
                        fn_kwargs={"meta": meta}, num_cpus=_STAGE_CPUS)
    ds = ds.map_batches(_Infer, batch_size=1, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=workers),
                        fn_constructor_args=([files], Path(path).name, backend, threads),
                        num_cpus=_STAGE_CPUS)
    out = sorted(ds.iter_rows(), key=lambda r: int(r["chunk"]))
    if len(out) != len(rows):
        msg = f"the cluster returned {len(out)} of {len(rows)} batches of {source.name}"
        raise DataError(msg)
    parts = [np.asarray(r["logits"]) for r in out if len(r["truth"])]
    skipped = int(sum(int(r["skipped"]) for r in out))
    if not parts:
        msg = f"no readable images in {source.name} ({skipped} skipped)"
        raise DataError(msg)
    logits = np.concatenate(parts).astype(np.float32)
    truth = np.concatenate([np.asarray(r["truth"], np.int64) for r in out if len(r["truth"])])
    nodes = sorted({str(r["node"]) for r in out})
    log.info("evaluated %s on %d node(s), %d batches", path, len(nodes), len(out))
    return EvalReport(top1=topk_accuracy(logits, truth, 1), top5=topk_accuracy(logits, truth, 5),
                      count=len(truth), skipped=skipped, logits=logits, labels=truth)


def _candidate_logits(files: dict[str, bytes], name: str, inputs: np.ndarray, batch: int,
                      backend: str, threads: int) -> np.ndarray:
    """Ray task: one candidate model's logits on the shipped, preprocessed inputs."""
    from edgeres.runtime import load

    with tempfile.TemporaryDirectory(prefix="edgeres-cand-") as tmp:
        for fname, data in files.items():
            (Path(tmp) / fname).write_bytes(data)
        pred = load(Path(tmp) / name, backend=cast("Backend", backend), threads=threads)
        out = [np.asarray(pred.run(inputs[i:i + batch]), np.float32).reshape(
            len(inputs[i:i + batch]), -1) for i in range(0, len(inputs), batch)]
    return np.concatenate(out)


def candidate_top1(ray: Any, paths: Sequence[Path], source: Any, meta: Any, *,
                   backend: str = "auto", threads: int = 1,
                   batch_size: int = DEFAULT_BATCH) -> list[float]:
    """top-1 of several model files (the fallback search's candidates) as parallel Ray tasks.

    The labelled data is decoded and preprocessed once here, through ``data.batches`` (so in
    the local loop's batches), and shipped once; each task loads one candidate and runs it
    over the same batches. For ``sensitivity.fit_budget(measure_many=...)``.

    Raises:
        DataError: for unlabelled data or data without readable images.
    """
    from edgeres.evaluate import topk_accuracy

    first = meta.input.shape[0]
    if isinstance(first, int) and first > 0:
        msg = "the parallel fallback search needs a graph with a dynamic batch axis"
        raise ConfigError(msg)
    if source.classes is None and getattr(source, "labels", None) is None:
        msg = f"{source.name} has no labels; accuracy needs an ImageFolder layout"
        raise DataError(msg)
    batches = list(source.batches(meta, batch_size))
    if not batches:
        msg = f"no readable images in {source.name}"
        raise DataError(msg)
    inputs = ray.put(np.concatenate([b.inputs for b in batches]))
    truth = np.concatenate([b.labels for b in batches])
    task = ray.remote(_candidate_logits).options(max_retries=0)
    refs = [task.remote(ray.put(model_payload(Path(p))), Path(p).name, inputs, batch_size,
                        backend, threads) for p in paths]
    return [topk_accuracy(ray.get(r), truth, 1) for r in refs]
