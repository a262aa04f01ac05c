"""``edgeres eval --cluster`` and ``quantize --cluster``: top-1 measured on a Ray cluster.

``RayEvaluator`` is the cluster's ``edgeres.evaluate.Evaluator``; ``edgeres.evaluation``
(the local ``edgeres eval``) and ``quantize`` take it and never import this module. On a
cluster the same images are cut into the same batches the local loop
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

import contextlib
import importlib
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from edgeres.errors import ConfigError, DataError
from edgeres.evaluate import DEFAULT_BATCH  # the local loop's, so batches coincide
from edgeres.preprocess import pad_batch

if TYPE_CHECKING:
    from edgeres.evaluation import EvalRun
    from edgeres.runtime import Backend

log = logging.getLogger(__name__)
# Each stage asks for half a CPU: an actor pool that took every CPU slot would leave none for
# the preprocessing tasks and the dataset would hang (ray-project/ray#44687).
_STAGE_CPUS = 0.5


def evaluate_models(  # noqa: PLR0913 - one keyword per `edgeres eval` option
        models: Sequence[str | Path], data: str | Path, *, cluster: str | None = None,
        workers: int | None = None, backend: str = "auto", threads: int | None = None,
        batch_size: int = DEFAULT_BATCH, limit: int | None = None,
        metas: Sequence[Any] | None = None, class_map: Any = None) -> EvalRun:
    """``edgeres.evaluation.evaluate_models``, here or (with ``cluster=``) on a Ray cluster.

    Args:
        models, data, backend, batch_size, limit, metas, class_map: as
            ``edgeres.evaluation.evaluate_models``.
        cluster: a Ray address (``auto`` = ``$RAY_ADDRESS``); None evaluates here without ray.
        workers: actors in the cluster's pool; None = the cluster's CPUs.
        threads: intra-op threads per session; None = the runtime's default locally, 1 per
            actor on a cluster.

    Returns:
        An ``EvalRun``; a cluster run's counts equal a local run's on the same arguments.

    Raises:
        ConfigError: for invalid options; DataError: for unlabelled or unreadable data;
        UnknownNameError/ModelFileError: for a bad model or data argument; ClusterError: if
        the cluster cannot be reached.
    """
    from edgeres.evaluation import check_eval_options
    from edgeres.evaluation import evaluate_models as evaluate_here

    check_eval_options(models, threads, batch_size, limit)
    for ok, msg in ((workers is None or workers >= 1, "--workers must be at least 1"),
                    (workers is None or cluster is not None, "--workers needs --cluster ADDRESS")):
        if not ok:
            raise ConfigError(msg)
    options: dict[str, Any] = {"backend": backend, "batch_size": batch_size, "limit": limit,
                               "metas": metas, "class_map": class_map}
    if cluster is None:
        return evaluate_here(models, data, threads=threads, **options)
    with ray_evaluator(cluster, workers=workers, backend=backend,
                       threads=threads or 1) as evaluator:
        return evaluate_here(models, data, evaluator=evaluator, **options)


@contextlib.contextmanager
def ray_evaluator(address: str, *, workers: int | None = None, backend: str = "auto",
                  threads: int = 1) -> Iterator[RayEvaluator]:
    """Connect to the Ray cluster at ``address`` and yield a ``RayEvaluator`` on it.

    Args:
        address: a Ray address (``auto`` = ``$RAY_ADDRESS``).
        workers: actors in the pool; None = the cluster's CPUs.
        backend, threads: each actor's session.

    Raises:
        BackendNotAvailable: if ray is not installed; ConfigError: for a bad address;
        ClusterError: if no cluster answers there.
    """
    from edgeres.cluster import connect

    with connect(address) as ray:
        used = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        yield RayEvaluator(ray, address, workers=used, backend=backend, threads=threads)


class RayEvaluator:
    """An ``evaluate.Evaluator`` on a connected Ray cluster: Ray Data and an actor pool for
    one model (``evaluate_on_cluster``), parallel Ray tasks for several (``candidate_top1``).
    """

    def __init__(self, ray: Any, address: str, *, workers: int, backend: str = "auto",
                 threads: int = 1) -> None:
        self.ray, self.where, self.workers = ray, f"cluster {address}", workers
        self.backend, self.threads = backend, threads

    def evaluate(self, predictor: Any, data: Any, meta: Any, *,
                 batch_size: int = DEFAULT_BATCH, description: str = "evaluating") -> Any:
        """``evaluate_on_cluster`` of ``predictor``'s file."""
        log.info("%s on the cluster (%d workers)", description, self.workers)
        return evaluate_on_cluster(self.ray, predictor.path, data, meta, workers=self.workers,
                                   backend=self.backend, threads=self.threads,
                                   batch_size=batch_size)

    def top1_many(self, paths: Sequence[Path], data: Any, meta: Any) -> list[float]:
        """``candidate_top1``: the files as parallel Ray tasks."""
        return candidate_top1(self.ray, paths, data, meta, backend=self.backend,
                              threads=self.threads)



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
        index = source.label_index(meta.labels)
        raws = list(source.raw())
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
