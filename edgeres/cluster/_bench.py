"""``edgeres bench --cluster``: the bench matrix measured on each device of a Ray cluster.

A device joins the cluster advertising the custom resource ``edgeres-device:LABEL`` (one
unit). The driver resolves every MODEL here (zoo names are exported and int8 files quantized
here, so a device needs only the torch-free runtime), puts the model files into Ray's object
store once, and starts one task per label that needs that resource: Ray runs it on that
node, and since the node has one unit, never two of edgeres' timings there at once. The task
writes the files into a temporary folder and runs bench's own pipeline (``bench.bench_models``:
load, interleaved timing rounds, memory, accuracy, notes, Ctrl-C) exactly as a local
``edgeres bench`` does, then returns its rows and that node's ``Environment``. The
driver merges them into one ``BenchRun`` whose rows carry the node label (``BenchRow.node``)
and whose ``nodes`` hold each node's machine and versions.

What a node cannot run is "skipped" or "failed" with its reason, as on one machine; a label
no node advertises gives skipped rows, and a node that dies mid-run gives failed rows that
say so, while the other nodes' rows and the report are kept.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeres.bench.config import BenchConfig, RunSettings
from edgeres.bench.results import BenchRow, BenchRun, Note, Status
from edgeres.errors import ConfigError, first_line

log = logging.getLogger(__name__)

_EVAL_SHIP_BYTES = 1024 * 2**20  # preprocessed --eval arrays shipped per model, at most


def bench_fleet(models: Sequence[str], config: BenchConfig | None = None, *, address: str,
                nodes: Sequence[str] | None = None, record: Any = None) -> BenchRun:
    """Run the bench matrix of ``models`` on every labelled node of the cluster at ``address``.

    Args:
        models: MODEL arguments, as ``run_bench`` takes them (resolved on this machine).
        config: the matrix and measurement settings, applied on every node.
        address: a Ray address (``auto`` = ``$RAY_ADDRESS``).
        nodes: device labels to run on; None = every ``edgeres-device:*`` label advertised.
        record: ``edgeres.foreign.RecordOptions`` for ONNX files without a record, as
            ``run_bench`` takes it.

    Returns:
        One ``BenchRun``: each node's rows (``node`` set), the driver's ``environment`` and
        each node's under ``nodes``.

    Raises:
        ConfigError: for invalid settings, or a cluster where no node advertises a label.
        ClusterError: if the cluster cannot be reached.
        BackendNotAvailable: if ray is not installed.
    """
    from edgeres.bench import resolve_model
    from edgeres.bench.env import describe_machine
    from edgeres.cluster import RESOURCE_PREFIX, connect, device_labels

    config = BenchConfig() if config is None else config
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    sources = [resolve_model(m, config.cache_root, record=record)
               for m in models]  # bad names fail first
    payload = [_ship(src, config) for src in sources]
    evals = _eval_payload(sources, config)
    env = describe_machine()
    with connect(address) as ray:
        present = device_labels(ray)
        labels = tuple(nodes) if nodes else present
        if not labels:
            msg = (f"no node of the cluster at {address} advertises an edgeres device; join one "
                   f"with ray start --address=HEAD --resources='{{\"{RESOURCE_PREFIX}LABEL\": 1}}'")
            raise ConfigError(msg)
        results, interrupted = _run_on_nodes(ray, labels, present, payload, evals, config)
    return _merge(labels, results, sources, config, env, created, interrupted, address)


def _ship(src: Any, config: BenchConfig) -> dict[str, Any]:
    """What a node needs of one MODEL: its record and the bytes of each precision's file."""
    from edgeres.bench import RowNotRun, model_file

    files: dict[str, dict[str, Any]] = {}
    failed: dict[str, tuple[str, str]] = {}
    for precision in config.precisions or (src.own_precision,):
        try:
            path = model_file(src, precision, calib=config.calib)
        except RowNotRun as e:
            failed[precision] = (e.reason, e.status)
            continue
        from edgeres.cluster._eval import model_payload

        files[precision] = {"name": path.name, "origin": str(path), "data": model_payload(path)}
    weights = None
    if src.kind == "zoo" and src.workdir is not None and (src.workdir / "weights.pt").is_file():
        weights = (src.workdir / "weights.pt").read_bytes()
    return {"arg": src.arg, "kind": src.kind, "meta": src.meta, "zoo_name": src.zoo_name,
            "sha256": src.sha256, "files": files, "failed": failed, "weights": weights}


def _eval_payload(sources: list[Any], config: BenchConfig) -> dict[str, Any] | None:
    """--eval images decoded and preprocessed here once per model, to ship as arrays."""
    if config.eval_data is None:
        return None
    from edgeres.bench import eval_source
    from edgeres.data import ArraySource, open_data

    data = open_data(config.eval_data)
    out: dict[str, Any] = {}
    for src in sources:
        arrays = eval_source(data, src.meta, config.limit)
        if not isinstance(arrays, ArraySource) or arrays.inputs.nbytes > _EVAL_SHIP_BYTES:
            msg = (f"--eval {config.eval_data} is too large to ship to the devices as arrays; "
                   "evaluate with `edgeres eval --cluster` or pass --limit")
            raise ConfigError(msg)
        out[src.arg] = arrays
    return out


def _run_on_nodes(ray: Any, labels: Sequence[str], present: Sequence[str],
                  payload: list[dict[str, Any]], evals: dict[str, Any] | None,
                  config: BenchConfig) -> tuple[dict[str, Any], bool]:
    """One task per label on the node with that resource; label -> its result or an error."""
    from edgeres.cluster import RESOURCE_PREFIX

    task = ray.remote(_node_bench)
    shipped = ray.put(payload)  # once into the object store; each node pulls its copy
    eval_ref = ray.put(evals)
    refs = {}
    results: dict[str, Any] = {}
    for label in labels:
        if label not in present:
            results[label] = ("skipped", f"no node of the cluster advertises {RESOURCE_PREFIX}"
                              f"{label}")
            continue
        refs[label] = task.options(resources={f"{RESOURCE_PREFIX}{label}": 1}, max_retries=0,
                                   name=f"edgeres-bench:{label}").remote(
            label, shipped, eval_ref, config)
    interrupted = False
    try:
        for label, ref in refs.items():
            try:
                results[label] = ray.get(ref)
            except ray.exceptions.RayError as e:
                log.debug("bench on %s failed", label, exc_info=True)
                results[label] = ("failed", f"node {label} failed during the run: "
                                  f"{_reason(e)}")
    except KeyboardInterrupt:
        interrupted = True
        for label, ref in refs.items():
            if label not in results:
                ray.cancel(ref, force=True)
                results[label] = ("skipped", "interrupted before this node finished")
    return results, interrupted


def _reason(e: BaseException) -> str:
    """The first line that says something: Ray's errors start with their class name."""
    cause = getattr(e, "cause", None)
    if cause is not None and not isinstance(cause, type(e)):
        return first_line(cause)
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return " ".join(lines[:2])[:300] if lines else type(e).__name__


def _node_bench(label: str, payload: list[dict[str, Any]], evals: dict[str, Any] | None,
                config: BenchConfig) -> dict[str, Any]:
    """Runs ON THE DEVICE NODE: bench's own pipeline (``bench_models``) on the shipped files."""
    from edgeres.bench import bench_models

    with tempfile.TemporaryDirectory(prefix="edgeres-fleet-") as tmp:
        root = Path(tmp)
        cfg = dataclasses.replace(config, cache=root / "cache", limit=None)
        origins: dict[str, str] = {}
        sources = [_materialize(item, root / f"m{i}", origins) for i, item in enumerate(payload)]
        run = bench_models(sources, cfg, data=evals)
        rows = [dataclasses.replace(r, node=label, model_file=origins.get(
            str(r.model_file), r.model_file)) for r in run.rows]
        import ray

        return {"rows": [r.to_dict() for r in rows], "environment": run.environment.to_dict(),
                "node_id": ray.get_runtime_context().get_node_id(),
                "notes": [dataclasses.asdict(n) for n in run.notes],
                "settings": run.settings.to_dict(), "interrupted": run.interrupted}


def _materialize(item: dict[str, Any], folder: Path, origins: dict[str, str]) -> Any:
    """A ``ModelSource`` over the shipped files, written into ``folder``."""
    from edgeres.bench import ModelSource, RowNotRun

    folder.mkdir(parents=True)
    files: dict[str, Path] = {}
    for precision, f in item["files"].items():
        sub = folder / precision
        sub.mkdir()
        for name, data in f["data"].items():
            (sub / name).write_bytes(data)
        files[precision] = sub / f["name"]
        origins[str(files[precision])] = f["origin"]
    if item["weights"] is not None:
        (folder / "weights.pt").write_bytes(item["weights"])
    own = item["meta"].precision if item["kind"] != "zoo" else "fp32"
    src = ModelSource(item["arg"], item["kind"], item["meta"], path=files.get(own),
                      zoo_name=item["zoo_name"], workdir=folder, sha256=item["sha256"],
                      files=files)
    for precision, (reason, status) in item["failed"].items():
        src.fail(precision, RowNotRun(reason, status))
    return src


def _failed_rows(label: str, status: Status, reason: str, sources: list[Any],
                 config: BenchConfig) -> list[BenchRow]:
    """The rows a node would have given, each ``status`` with ``reason``."""
    from edgeres.bench import default_runtimes, planned_rows

    runtimes = config.runtimes or default_runtimes()
    return [dataclasses.replace(row, status=status, reason=reason, node=label)
            for src in sources
            for row in planned_rows(src, runtimes, config.threads or 1, config)]


def _merge(labels: Sequence[str], results: dict[str, Any], sources: list[Any],
           config: BenchConfig, env: Any, created: str, interrupted: bool,
           address: str) -> BenchRun:
    from edgeres.bench.env import Environment

    rows: list[BenchRow] = []
    notes: list[Note] = []
    nodes: dict[str, Environment] = {}
    settings: RunSettings | None = None
    node_ids: dict[str, str] = {}
    for label in labels:
        result = results[label]
        if isinstance(result, tuple):
            status, reason = result
            rows += _failed_rows(label, status, reason, sources, config)
            notes.append(Note("cluster", f"node {label}: {reason}"))
            continue
        rows += [BenchRow.from_dict(r) for r in result["rows"]]
        nodes[label] = Environment.from_dict(result["environment"])
        node_ids[label] = result["node_id"]
        for n in result["notes"]:
            note = Note(**{**n, "causes": tuple(n["causes"])})
            notes.append(dataclasses.replace(note, text=f"node {label}: {note.text}"))
        settings = settings or RunSettings.from_dict(result["settings"])
        interrupted = interrupted or bool(result.get("interrupted"))
    if settings is None:
        from edgeres.bench import default_runtimes

        settings = config.settings(config.runtimes or default_runtimes(), config.threads or 1)
    settings = settings.evolve(cluster=address, nodes=tuple(labels), node_ids=node_ids)
    return BenchRun(rows=tuple(rows), environment=env, settings=settings, notes=tuple(notes),
                    interrupted=interrupted, created=created, nodes=nodes)
