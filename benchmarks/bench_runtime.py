"""What edgeres.runtime costs on a device: per-call overhead, cold start, peak memory.

For cifar_resnet20 (the shipped ``cifar10`` file) and ResNet-18 (224x224, fixed-seed random
weights, exported by ``edgeres.export``), each in fp32 and int8 (``edgeres.quantize`` with its
defaults, calibrated on the ``cifar10`` subset; ONNX Runtime ``quantize_static`` U8/S8
per-channel after ``quant_pre_process`` if that fails, labelled as such), at batch 1:

* **overhead**: ``Predictor.run(x)`` against a bare ``InferenceSession.run`` on the same file,
  same threads (1), same input, interleaved rounds (``edgeres.bench.timing.measure``); the
  overhead is the median over rounds of the difference of the per-round medians. Because a
  background job makes those differences noisy, the wrapper's own cost is also measured
  exactly: the same two calls with the ONNX Runtime session replaced by a stub that returns
  at once. Target: at most 50 us.
* **cold start**: a fresh ``python`` process doing import + ``runtime.load`` + one
  ``predict`` on a JPEG, timed inside (each phase) and outside (process wall time, interpreter
  start included), several repetitions visiting the models round-robin.
* **peak RSS** of ``edgeres predict MODEL IMAGE`` in a venv holding only the base install
  (this checkout's wheel, no extras: no torch, no onnx), measured by a parent that reads
  ``RUSAGE_CHILDREN``.

Not a test: writes benchmarks/results/runtime.{json,md}.

    python benchmarks/bench_runtime.py [--rounds 7] [--cold 5] [--rss 3]
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeres import names, runtime  # noqa: E402
from edgeres._fs import atomic_write  # noqa: E402
from edgeres.bench.env import describe_machine  # noqa: E402
from edgeres.bench.timing import measure  # noqa: E402

CACHE = ROOT / ".cache" / "bench-runtime"
RESULTS = ROOT / "benchmarks" / "results"
IMAGE = sorted((names.calibration_dir() / "cifar10-calib" / "cat").glob("*.jpg"))[0]
TARGET_US = 50.0
THREADS = 1  # both sides alike; one thread keeps the shared 2-core machine's noise down
_COLD = """
import time
t0 = time.perf_counter()
from edgeres import runtime
t1 = time.perf_counter()
p = runtime.load({model!r})
t2 = time.perf_counter()
p.predict({image!r})
t3 = time.perf_counter()
import json, sys
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "first_s": t3 - t2,
                  "heavy": sorted({{"torch", "onnx", "nncf"}} & set(sys.modules))}}))
"""
_RSS = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


# --- models ---------------------------------------------------------------------------------


def _resnet18_fp32() -> Path:
    dst = CACHE / "resnet18-fp32.onnx"
    if not dst.exists():
        import torch

        from edgeres.export import export_onnx
        from edgeres.models import create_model
        from edgeres.zoo import zoo_meta

        torch.manual_seed(0)
        export_onnx(create_model("resnet18"), dst, meta=zoo_meta("resnet18"))
    return dst


def _int8(src: Path, name: str) -> tuple[Path, str]:
    """Quantize with edgeres.quantize, else ORT quantize_static; return path and label."""
    dst = CACHE / f"{name}-int8.onnx"
    label_file = dst.with_suffix(".label")
    if dst.exists() and label_file.exists():
        return dst, label_file.read_text()
    meta = runtime.load(src).meta
    try:
        from edgeres.calibration import CalibrationSet
        from edgeres.quantize import quantize

        report = quantize(src, dst, CalibrationSet.from_data("cifar10", meta))
        label = f"edgeres.quantize (ort, target {report.target}, {report.method})"
    except Exception as e:  # any failure selects the labelled fallback
        label = (f"ORT quantize_static U8/S8 per-channel after quant_pre_process "
                 f"(edgeres.quantize failed: {str(e).splitlines()[0][:120]})")
        _ort_static(src, dst, meta)
    label_file.write_text(label)
    return dst, label


def _ort_static(src: Path, dst: Path, meta: Any) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgeres.data import open_data

    class Reader:
        def __init__(self) -> None:
            batches = open_data("cifar10").subset(256).batches(meta, 8)
            self._it = ({meta.input.name: b.inputs} for b in batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory(prefix="bench.quant.") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre))
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True)


def models() -> list[dict[str, Any]]:
    CACHE.mkdir(parents=True, exist_ok=True)
    out = []
    for name, fp32, source in (
        ("cifar_resnet20", names.resolve_model_file("cifar10"), "shipped `cifar10` file"),
        ("resnet18", _resnet18_fp32(), "edgeres.export, random weights (seed 0), 224x224"),
    ):
        out.append({"model": name, "precision": "fp32", "path": fp32, "source": source})
        int8, label = _int8(fp32, name)
        out.append({"model": name, "precision": "int8", "path": int8, "source": label})
    return out


# --- measurements ----------------------------------------------------------------------------


class _StubSession:
    """Returns a fixed output at once: what remains of a call is the caller's own code."""

    def __init__(self, out: np.ndarray) -> None:
        self._out = [out]

    def run(self, names: Any, feeds: Any) -> list[np.ndarray]:
        return self._out


def _round_diffs(t: Any, a: str, b: str) -> list[float]:
    """Per round: median of ``a``'s samples minus median of ``b``'s, in microseconds."""
    diffs = []
    for r in range(t.rounds):
        med = {n: statistics.median(s for s, i in zip(t[n], t.round_index[n], strict=True)
                                    if i == r) for n in (a, b)}
        diffs.append((med[a] - med[b]) * 1e6)
    return diffs


def overhead(path: Path, rounds: int) -> dict[str, Any]:
    import onnxruntime as ort

    p = runtime.load(path, backend="ort", threads=THREADS)
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.log_severity_level = 3
    bare = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = bare.get_inputs()[0].name
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, (1, *p.input_shape), dtype=np.uint8) if p.input_dtype == np.uint8
         else rng.standard_normal((1, *p.input_shape), dtype=np.float32))
    slow = bare.run(None, {name: x})[0]
    t0 = time.perf_counter()
    for _ in range(5):
        bare.run(None, {name: x})
    iterations = max(10, int(0.25 / ((time.perf_counter() - t0) / 5)))  # ~0.25 s per block
    t = measure({"bare": lambda: bare.run(None, {name: x}), "predictor": lambda: p.run(x)},
                warmup=20, rounds=rounds, iterations=iterations)
    diffs = _round_diffs(t, "predictor", "bare")
    stub_backend = copy.copy(p.backend)
    stub_backend.session = stub = _StubSession(slow)
    stub_p = runtime.Predictor(stub_backend, p.meta, p.path)
    w = measure({"bare": lambda: stub.run(None, {name: x}), "predictor": lambda: stub_p.run(x)},
                warmup=200, rounds=rounds, iterations=5000)
    wrapper = _round_diffs(w, "predictor", "bare")
    noise = (max(diffs) - min(diffs)) / 2
    median = statistics.median(diffs)
    # noise = half the spread of the per-round differences; a verdict needs the whole band.
    verdict = "met" if median + noise <= TARGET_US else (
        "not met" if median - noise > TARGET_US else "not resolved")
    return {
        "verdict": verdict, "noise_us": noise,
        "bare_median_us": statistics.median(t["bare"]) * 1e6,
        "predictor_median_us": statistics.median(t["predictor"]) * 1e6,
        "overhead_us": median, "overhead_per_round_us": diffs,
        "wrapper_us": statistics.median(wrapper), "wrapper_per_round_us": wrapper,
        "iterations_per_round": iterations, "rounds": t.rounds,
    }


def cold_start(python: Path, entries: list[dict[str, Any]], reps: int) -> None:
    samples: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(entries))}
    for _ in range(reps):
        for i, e in enumerate(entries):  # round-robin so drift hits every model alike
            code = _COLD.format(model=str(e["path"]), image=str(IMAGE))
            t0 = time.perf_counter()
            out = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                                 cwd=tempfile.gettempdir(), check=True)
            wall = time.perf_counter() - t0
            samples[i].append({**json.loads(out.stdout.splitlines()[-1]), "wall_s": wall})
    for i, e in enumerate(entries):
        s = samples[i]
        e["cold_start"] = {k: statistics.median(x[k] for x in s)
                           for k in ("wall_s", "import_s", "load_s", "first_s")}
        e["cold_start"]["total_s"] = statistics.median(
            x["import_s"] + x["load_s"] + x["first_s"] for x in s)
        e["cold_start"]["samples_wall_s"] = [x["wall_s"] for x in s]
        e["cold_start"]["heavy_modules_loaded"] = sorted({m for x in s for m in x["heavy"]})


def base_install(work: Path) -> Path:
    """A venv with only this checkout's wheel (no extras); returns its bin/ folder."""
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "-q", "--no-deps", str(ROOT), "-w", str(work / "dist")],
                   check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(work / "venv")],
                   check=True)
    wheel = next((work / "dist").glob("edgeres-*.whl"))
    subprocess.run([*pip, "--python", str(work / "venv/bin/python"), "install", "-q",
                    str(wheel)], check=True, capture_output=True)
    return work / "venv" / "bin"


def peak_rss(bin_dir: Path, entries: list[dict[str, Any]], reps: int) -> None:
    for e in entries:
        kib = []
        for _ in range(reps):
            cmd = [str(bin_dir / "python"), "-c", _RSS, str(bin_dir / "edgeres"), "predict",
                   str(e["path"]), str(IMAGE), "--json"]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            kib.append(int(out.stdout.strip()))
        e["peak_rss_mib"] = statistics.median(kib) / 1024
        e["peak_rss_samples_mib"] = [k / 1024 for k in kib]


# --- report -----------------------------------------------------------------------------------


def _markdown(doc: dict[str, Any]) -> str:
    env = doc["machine"]
    lines = [
        "# edgeres.runtime: per-call overhead, cold start, peak memory", "",
        f"{env['cpu']}, {env['physical_cores']} cores ({', '.join(env['isa'])}), "
        f"load average {env['load_average']} at start; {env['os']}, Python {env['python']}, "
        f"onnxruntime {env['versions'].get('onnxruntime')}, numpy {env['versions'].get('numpy')}. "
        f"{doc['conditions']}", "",
        f"Batch 1, ONNX Runtime CPU, {THREADS} intra-op thread on both sides. Overhead = median "
        f"over {doc['settings']['rounds']} interleaved rounds of (median Predictor.run - median "
        "bare InferenceSession.run); wrapper = the same with the session stubbed out (exact cost "
        f"of edgeres' code). Target: <= {TARGET_US:.0f} us. Cold start = fresh process: import + "
        f"load + first predict on a JPEG, median of {doc['settings']['cold_repetitions']}; peak "
        "RSS = `edgeres predict MODEL IMAGE` in a base-install venv (no torch/onnx), median of "
        f"{doc['settings']['rss_repetitions']}.", "",
        "| model | precision | bare run us | Predictor.run us | overhead us (per-round range) "
        "| verdict | wrapper us | cold start s (import / load / first) | process wall s "
        "| peak RSS MiB |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for e in doc["models"]:
        o, c = e["overhead"], e["cold_start"]
        rng = f"{min(o['overhead_per_round_us']):+.1f}..{max(o['overhead_per_round_us']):+.1f}"
        lines.append(
            f"| {e['model']} | {e['precision']} | {o['bare_median_us']:.1f} | "
            f"{o['predictor_median_us']:.1f} | {o['overhead_us']:+.1f} ({rng}) | "
            f"{o['verdict']} | {o['wrapper_us']:.2f} | {c['total_s']:.3f} "
            f"({c['import_s']:.3f} / {c['load_s']:.3f} / {c['first_s']:.3f}) | "
            f"{c['wall_s']:.3f} | {e['peak_rss_mib']:.0f} |")
    lines += ["", "Model sources:", ""]
    lines += [f"- {e['model']} {e['precision']}: {e['source']}" for e in doc["models"]]
    met = doc["target_met"]
    lines += ["", f"Wrapper cost <= {TARGET_US:.0f} us on every model: **{met['wrapper']}** "
              "(exact: the session is stubbed, so only edgeres' own code is timed). End to end, "
              "'met' means median + noise <= the target, 'not met' means median - noise > the "
              "target, and 'not resolved' means the per-round differences scatter too much for "
              "this machine to decide (noise = half their range).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (>= 5)")
    parser.add_argument("--cold", type=int, default=5, help="cold-start repetitions per model")
    parser.add_argument("--rss", type=int, default=3, help="peak-RSS repetitions per model")
    parser.add_argument("--conditions", default="", help="free text recorded with the results")
    args = parser.parse_args()
    env = describe_machine()
    entries = models()
    for e in entries:
        print(f"overhead: {e['model']} {e['precision']}", file=sys.stderr)
        e["overhead"] = overhead(e["path"], args.rounds)
    with tempfile.TemporaryDirectory(prefix="bench-runtime-venv.") as tmp:
        print("building the base-install venv", file=sys.stderr)
        bin_dir = base_install(Path(tmp))
        print("cold start and peak RSS", file=sys.stderr)
        cold_start(bin_dir / "python", entries, args.cold)
        peak_rss(bin_dir, entries, args.rss)
    # The wrapper cost is exact; an end-to-end difference is only as good as the machine's
    # noise, so a model whose difference cannot resolve 50 us says so instead of passing.
    met = {"wrapper": all(e["overhead"]["wrapper_us"] <= TARGET_US for e in entries),
           "end_to_end": {f"{e['model']} {e['precision']}": e["overhead"]["verdict"]
                          for e in entries}}
    doc = {
        "schema_version": 1, "benchmark": "runtime",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": env.to_dict(), "conditions": args.conditions,
        "settings": {"batch": 1, "threads": THREADS, "rounds": args.rounds,
                     "cold_repetitions": args.cold, "rss_repetitions": args.rss,
                     "image": str(IMAGE.relative_to(ROOT)), "target_overhead_us": TARGET_US},
        "models": [{**e, "path": str(Path(e["path"]).relative_to(ROOT))} for e in entries],
        "target_met": met,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    with atomic_write(RESULTS / "runtime.json") as tmp_json:
        tmp_json.write_text(json.dumps(doc, indent=1) + "\n")
    with atomic_write(RESULTS / "runtime.md") as tmp_md:
        tmp_md.write_text(_markdown(doc))
    print(_markdown(doc))


if __name__ == "__main__":
    main()
