"""Ray cluster: distributed eval equals local eval to the image, fleet bench rows land on their
nodes, a dead node fails its rows but not the run, and no Ray process outlives the tests.

A real cluster of two nodes (three for the node-death test) runs on this machine, every node
started with ``--node-ip-address 127.0.0.1`` and stopped with ``ray stop``. The tests marked
``cluster`` need ray (``make test-cluster`` installs ``edgeres[cluster]``); ``make test``
deselects them and keeps the no-ray checks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pytest
from click.testing import CliRunner

from edgeres.cli import cli

if TYPE_CHECKING:
    from edgeres.bench.results import BenchRow, BenchRun
    from edgeres.cluster import LocalCluster
    from edgeres.quantize import Quantizer

LIMIT = 300  # eval images: enough for several 100-image batches and a short last one
FAST: dict[str, Any] = dict(runtimes=("ort-cpu",), warmup=1, rounds=2, iterations=3,
                            memory=False)
# Ray marks a node dead after this many missed health checks of this period (defaults: 5 x 3 s)
HEALTH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
          "RAY_health_check_initial_delay_ms": "1000"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A head labelled fake-x86 and a second node labelled fake-arm, one CPU each; afterwards
    ``ray stop`` and a check that none of the cluster's processes is left."""
    pytest.importorskip("ray", reason="ray is not installed: `make test-cluster` installs "
                        "edgeres[cluster]")
    from edgeres.cluster._local import non_loopback_interfaces

    others = non_loopback_interfaces()
    if others:  # Ray registers a multi-node cluster on the host's own address, not 127.0.0.1
        pytest.skip(f"network interfaces besides lo ({', '.join(others)}): Ray would use the "
                    "host's address; `make test-cluster` runs these tests in a private "
                    "loopback-only network namespace (needs root and unshare)")
    from edgeres.cluster import LocalCluster

    # Short: Ray's Unix socket paths live under it (sockaddr_un holds ~107 bytes).
    temp = Path(tempfile_short(tmp_path_factory))
    c = LocalCluster(temp, [{"edgeres-device:fake-arm": 1}],
                     head_resources={"edgeres-device:fake-x86": 1}, env=HEALTH)
    c.start()
    try:
        yield c
    finally:
        left = c.stop()
    assert not left, f"Ray processes of the test cluster still running: {left}"


def tempfile_short(factory: pytest.TempPathFactory) -> str:
    """A short folder for Ray's --temp-dir (pytest's own base can be long)."""
    import tempfile

    base = factory.getbasetemp()
    return str(base / "r") if len(str(base)) < 40 else tempfile.mkdtemp(prefix="er", dir="/tmp")


def _node_of(address: str, label: str) -> str:
    """The Ray node id that advertises ``edgeres-device:label``."""
    import ray

    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        return next(n["NodeID"] for n in ray.nodes()
                    if n["Alive"] and f"edgeres-device:{label}" in n["Resources"])
    finally:
        ray.shutdown()


@pytest.mark.cluster
def test_every_node_of_the_test_cluster_is_on_loopback(cluster: LocalCluster) -> None:
    """Every node registers 127.0.0.1, so no cluster traffic goes to any other address."""
    import ray

    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    try:
        addresses = {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
    assert addresses == {"127.0.0.1"}


@pytest.mark.cluster
def test_cluster_eval_counts_equal_local_to_the_image(cluster: LocalCluster) -> None:
    """Ray Data + actor pool gives the local loop's top-1/top-5 counts, logits and agreement."""
    from edgeres.cluster import evaluate_models

    models = ["cifar10", "cifar10-int8"]
    local = evaluate_models(models, "cifar10-test", limit=LIMIT)
    remote = evaluate_models(models, "cifar10-test", limit=LIMIT, cluster=cluster.address,
                             workers=2)
    assert remote.workers == 2 and remote.where.startswith("cluster")
    for a, b, ra, rb in zip(local.results, remote.results, local.reports, remote.reports,
                            strict=True):
        assert (b.count, b.top1_correct, b.top5_correct, b.skipped) == (
            a.count, a.top1_correct, a.top5_correct, a.skipped)
        assert a.count == LIMIT and a.top1_correct > 0.8 * LIMIT
        assert np.array_equal(rb.labels, ra.labels)
        assert np.array_equal(rb.logits.argmax(axis=1), ra.logits.argmax(axis=1))
        np.testing.assert_allclose(rb.logits, ra.logits, rtol=0, atol=1e-5)
    assert remote.results[1].agreement == local.results[1].agreement is not None


@pytest.mark.cluster
def test_eval_command_on_cluster_matches_local(cluster: LocalCluster, tmp_path: Path) -> None:
    """`edgeres eval --cluster` writes the same counts as the local command, with exit 0."""
    outs = {}
    for name, extra in (("local", []), ("cluster", ["--cluster", cluster.address])):
        outs[name] = tmp_path / f"{name}.json"
        res = CliRunner().invoke(cli, ["eval", "cifar10", "--data", "cifar10-test", "--limit",
                                       "150", "--batch", "64", "--json", str(outs[name]),
                                       *extra])
        assert res.exit_code == 0, res.output
        assert "top-1" in res.output
    local, remote = (json.loads(outs[k].read_text())["results"][0] for k in ("local", "cluster"))
    assert {k: remote[k] for k in ("count", "top1_correct", "top5_correct")} == {
        k: local[k] for k in ("count", "top1_correct", "top5_correct")}
    assert local["count"] == 150


@pytest.mark.cluster
def test_fleet_rows_land_on_their_nodes_and_match_a_local_run(cluster: LocalCluster) -> None:
    """Each label's rows ran on the node with that resource; row set and accuracy equal local;
    a label no node advertises gives skipped rows with the reason."""
    from edgeres.bench import BenchConfig, run_bench
    from edgeres.cluster import bench_fleet

    config = BenchConfig(precisions=("fp32", "int8"), eval_data="cifar10-test", limit=200,
                         **FAST)
    run = bench_fleet(["cifar10"], config, address=cluster.address,
                      nodes=("fake-arm", "fake-x86", "nope"))
    local = run_bench(["cifar10"], config)
    for label in ("fake-arm", "fake-x86"):
        assert run.settings.node_ids[label] == _node_of(cluster.address, label)
        rows = [r for r in run.rows if r.node == label]
        assert {(r.precision, r.runtime, r.precision_mode, r.batch) for r in rows} == {
            (r.precision, r.runtime, r.precision_mode, r.batch) for r in local.rows}
        assert all(r.status == "ok" and r.latency is not None for r in rows)
        acc = {r.precision: (r.accuracy.count, r.accuracy.top1) for r in rows if r.accuracy}
        assert len(acc) == len({r.precision for r in rows})  # every row was scored
        assert acc == {r.precision: (r.accuracy.count, r.accuracy.top1) for r in local.rows
                       if r.accuracy}
        assert run.nodes[label].cpu and run.nodes[label].versions["onnxruntime"]
    nope = [r for r in run.rows if r.node == "nope"]
    assert nope and all(r.status == "skipped" and "edgeres-device:nope" in (r.reason or "")
                        for r in nope)


@pytest.mark.cluster
def test_bench_command_cluster_writes_node_column(cluster: LocalCluster, tmp_path: Path) -> None:
    """`bench --cluster --nodes` rows carry the node in JSON (schema-valid), CSV and markdown."""
    import csv

    import jsonschema

    from edgeres.bench import report

    out = {k: tmp_path / f"b.{k}" for k in ("json", "csv", "md")}
    res = CliRunner().invoke(cli, [
        "bench", "cifar10", "--cluster", cluster.address, "--nodes", "fake-arm",
        "--runtime", "ort-cpu", "--iterations", "2", "--rounds", "1", "--warmup", "0",
        "--no-memory", "--json", str(out["json"]), "--csv", str(out["csv"]),
        "--markdown", str(out["md"])])
    assert res.exit_code == 0, res.output
    doc = json.loads(out["json"].read_text())
    jsonschema.validate(doc, report.schema())
    assert [r["node"] for r in doc["rows"]] == ["fake-arm"]
    assert set(doc["nodes"]) == {"fake-arm"} and doc["nodes"]["fake-arm"]["isa"] is not None
    with open(out["csv"]) as f:
        assert [r["node"] for r in csv.DictReader(f)] == ["fake-arm"]
    md = out["md"].read_text()
    assert "ort-cpu@fake-arm" in md and "Node fake-arm:" in md


@pytest.mark.cluster
def test_fallback_candidates_as_ray_tasks_score_as_locally(cluster: LocalCluster) -> None:
    """Candidates evaluated as parallel Ray tasks get the local loop's top-1, each."""
    import ray

    from edgeres.cluster._eval import candidate_top1
    from edgeres.data import open_data
    from edgeres.evaluate import evaluate
    from edgeres.names import resolve_model_file
    from edgeres.runtime import load

    paths = [resolve_model_file(m) for m in ("cifar10", "cifar10-int8")]
    source = open_data("cifar10-val").subset(250)
    preds = [load(p, threads=1) for p in paths]
    local = [evaluate(p.run, source, p.meta).top1 for p in preds]
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    try:
        remote = candidate_top1(ray, paths, source, preds[0].meta)
    finally:
        ray.shutdown()
    assert remote == local and local[0] > 80


@pytest.mark.cluster
def test_node_dying_mid_run_fails_its_rows_and_the_report_is_written(
        cluster: LocalCluster, tmp_path: Path) -> None:
    """Killing a node's raylet during its timing gives failed rows saying so; the other node's
    rows are measured and the report is still written."""
    import ray

    from edgeres.bench import BenchConfig, report
    from edgeres.cluster import bench_fleet

    cluster.add_node({"edgeres-device:doomed": 1})
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    try:
        @ray.remote(resources={"edgeres-device:doomed": 1})
        def raylet_pid() -> int:
            return os.getppid()  # a task's worker is a child of its node's raylet

        pid = ray.get(raylet_pid.remote())
        assert b"raylet" in Path(f"/proc/{pid}/cmdline").read_bytes()
        config = BenchConfig(runtimes=("ort-cpu",), warmup=1, rounds=2, duration=30.0,
                             memory=False)
        result: dict[str, BenchRun] = {}
        worker = threading.Thread(target=lambda: result.update(run=bench_fleet(
            ["cifar10"], config, address=cluster.address, nodes=("doomed", "fake-arm"))))
        worker.start()
        time.sleep(8)  # the doomed node is timing by now (30 s of timed calls)
        os.kill(pid, signal.SIGKILL)
        worker.join(timeout=150)
        assert not worker.is_alive()
    finally:
        ray.shutdown()
    run = result["run"]
    doomed = [r for r in run.rows if r.node == "doomed"]
    assert doomed and all(r.status == "failed" and "doomed" in (r.reason or "") for r in doomed)
    assert all(r.status == "ok" for r in run.rows if r.node == "fake-arm")
    report.write_json(run, tmp_path / "r.json")
    report.write_markdown(run, tmp_path / "r.md")
    assert json.loads((tmp_path / "r.json").read_text())["rows"][0]["status"] == "failed"
    assert "failed" in (tmp_path / "r.md").read_text()


@pytest.mark.cluster
def test_cluster_options_fail_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """--nodes without --cluster and --cluster auto without RAY_ADDRESS: exit 1, one line."""
    pytest.importorskip("ray", reason="ray is not installed")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for args, words in ((["bench", "cifar10", "--nodes", "orin"], "--cluster"),
                        (["eval", "cifar10", "--data", "cifar10-test", "--cluster", "auto"],
                         "RAY_ADDRESS")):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 1
        assert words in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1


def test_local_eval_needs_no_ray() -> None:
    """`edgeres eval` without --cluster evaluates here and never imports ray."""
    code = ("import sys; from edgeres.cli import cli\n"
            "try:\n cli(['eval', 'cifar10', '--data', 'cifar10-test', '--limit', '50'])\n"
            "except SystemExit as e:\n assert e.code in (0, None), e.code\n"
            "print('RAY', 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert "top-1" in out and "50 images" in out
    assert out.strip().endswith("RAY False")


def test_parallel_fallback_search_chooses_as_one_at_a_time() -> None:
    """fit_budget with measure_many (the ladder, then the bisection range, at once) picks the
    same float layers as measuring one candidate at a time, met or not."""
    from edgeres.quantize.sensitivity import Attempt, fit_budget

    class Builder:
        def build(self, floats: tuple[str, ...]) -> Path:
            return Path("/".join(floats) or "none")

    builder = cast("Quantizer", Builder())  # fit_budget calls build() only

    ranking = [(f"l{i}", 1.0) for i in range(11)]

    def top1(path: Path) -> float:  # each float layer recovers one point
        return 80.0 + (0 if str(path) == "none" else len(str(path).split("/")))

    for budget in (3.0, 12.0, -2.0):  # 7 layers; none; never met (best kept)
        first = Attempt((), 80.0, 10.0)
        kwargs: dict[str, Any] = dict(base=(), ranking=ranking, measure=top1, fp32_top1=90.0,
                                      budget=budget)
        one = fit_budget(builder, first=first, **kwargs)
        many = fit_budget(builder, first=first, measure_many=lambda ps: [top1(p) for p in ps],
                          **kwargs)
        assert many[:2] == one[:2]
        assert {a.float_layers for a in one[2]} <= {a.float_layers for a in many[2]}
    assert one[1] is False and len(fit_budget(builder, first=first, **{
        **kwargs, "budget": 3.0})[0]) == 7


@pytest.mark.cluster
def test_quantize_fallback_search_on_the_cluster_chooses_as_locally(cluster: LocalCluster,
                                                                  tmp_path: Path) -> None:
    """quantize --cluster measures validation top-1 on the cluster and scores the fallback
    candidates as Ray tasks: the same counts and the same float layers as the local search (one
    calibration image forces a fallback on 100 val images)."""
    from edgeres.calibration import CalibrationSet
    from edgeres.cluster import ray_evaluator
    from edgeres.modelfile import model_record
    from edgeres.names import resolve_model_file
    from edgeres.quantize import QuantConfig, quantize

    src = resolve_model_file("cifar10")
    meta = model_record(src)
    config = QuantConfig(samples=1, val="cifar10-val", val_samples=100, max_drop=0.0,
                         layer_report_samples=0)
    reports = {"local": quantize(src, tmp_path / "local.onnx",
                                 CalibrationSet.from_data("cifar10", meta), config=config)}
    with ray_evaluator(cluster.address) as evaluator:
        reports["cluster"] = quantize(src, tmp_path / "cluster.onnx",
                                      CalibrationSet.from_data("cifar10", meta), config=config,
                                      evaluator=evaluator)
    local, remote = reports["local"], reports["cluster"]
    assert local.fallback is not None and len(local.fallback.attempts) > 1  # a search happened
    assert remote.float_layers == local.float_layers and local.float_layers
    assert remote.validation is not None and local.validation is not None
    assert remote.validation.int8_top1 == local.validation.int8_top1  # measured on the cluster
    assert remote.validation.fp32_top1 == local.validation.fp32_top1
    assert remote.validation.paired == local.validation.paired  # the same images, paired
    assert remote.fallback is not None
    assert len(remote.fallback.attempts) >= len(local.fallback.attempts)  # the whole ladder


def test_a_node_runs_the_local_pipeline_on_shipped_files(tmp_path: Path) -> None:
    """What a node does, without ray: the shipped model file, materialized, goes through
    bench.bench_models to the local run's rows; a node that never ran gives those rows failed."""
    from edgeres.bench import BenchConfig, bench_models, resolve_model, run_bench
    from edgeres.cluster._bench import _failed_rows, _materialize, _ship

    config = BenchConfig(cache=tmp_path / "cache", **FAST)
    src = resolve_model("cifar10", config.cache_root)
    origins: dict[str, str] = {}
    node_src = _materialize(_ship(src, config), tmp_path / "m0", origins)
    node = bench_models([node_src], config)
    local = run_bench(["cifar10"], config)

    def keys(rows: Iterable[BenchRow]) -> list[tuple[object, ...]]:
        return [(r.precision, r.runtime, r.precision_mode, r.batch, r.io) for r in rows]

    assert keys(node.rows) == keys(local.rows) and all(r.status == "ok" for r in node.rows)
    assert origins[str(node.rows[0].model_file)] == str(src.path)
    failed = _failed_rows("orin", "failed", "node orin died", [src], config)
    assert keys(failed) == keys(local.rows)
    assert all(r.status == "failed" and r.node == "orin" and r.reason == "node orin died"
               for r in failed)
