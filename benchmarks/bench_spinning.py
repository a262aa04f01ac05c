"""ONNX Runtime thread spinning on vs off, on a quiet host and on one this script loads itself.

ONNX Runtime's intra-op threads spin (busy-wait) for work between operators unless
``session.intra_op.allow_spinning`` is "0". edgeres turns spinning off by default
(``edgeres.runtime.backends.DEFAULT_SPIN``): issue 24 saw ResNet-50 3-5% slower with it off on a
quiet 2-core host, and 25-30% faster with it off while other jobs loaded that host. This script
measures both sides with edgeres' own pieces: the models come from bench's cache (a zoo name is
exported, its int8 quantized with ``edgeres.quantize`` calibrated on ``--calib``, exactly as
``edgeres bench --precision int8`` makes them), each model file is loaded twice with
``edgeres.runtime.load(spin=True)`` and ``spin=False`` (same threads), and every configuration
is timed in ONE ``edgeres.bench.timing.measure`` call per condition (interleaved rounds, the
same seeded input), summarised by ``LatencyStats`` (p50 and its 95% interval) and compared
with ``bench.stats.speedup`` (paired per-round ratio with its 95% interval).

Two conditions, in order:

* **quiet**: nothing started; ``uptime`` and the CPU share other processes used just before
  are recorded (run it on an otherwise idle machine).
* **loaded**: the script starts ``--load-procs`` busy-loop processes (``multiprocessing``,
  each pinned to one of the last usable CPUs where the OS allows it), waits until they run,
  measures, and stops them; each also stops itself after a bound computed from the settings,
  so none outlives the script.

The ratio reported is time with spinning on / time with spinning off: above 1, spinning off is
faster. Writes ``--out``.json and ``--out``.md (default benchmarks/results/ort_spinning.*)
naming the host (lscpu model name, VNNI/AMX flags).

    python benchmarks/bench_spinning.py [--models resnet50] [--precisions fp32,int8]
        [--duration 10] [--rounds 10] [--threads N] [--load-procs 1]

Smoke test (seconds, the shipped ResNet-20 only):

    python benchmarks/bench_spinning.py --models cifar10 --precisions fp32 --duration 0.2 \\
        --rounds 2 --warmup 1 --out /tmp/spin-smoke
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeres import runtime  # noqa: E402
from edgeres._fs import atomic_write  # noqa: E402
from edgeres.bench import model_file, resolve_model  # noqa: E402
from edgeres.bench.config import cache_dir  # noqa: E402
from edgeres.bench.env import busy_fraction, default_threads, describe_machine  # noqa: E402
from edgeres.bench.stats import LatencyStats, speedup  # noqa: E402
from edgeres.bench.timing import measure  # noqa: E402
from edgeres.runtime.backends import DEFAULT_SPIN  # noqa: E402

SCHEMA_VERSION = 1
RESULTS = ROOT / "benchmarks" / "results"
_VNNI = ("avx512_vnni", "avx_vnni", "avx_vnni_int8")
_AMX = ("amx_tile", "amx_int8", "amx_bf16")


# --- the host and its load ------------------------------------------------------------------


def host() -> dict[str, Any]:
    """lscpu's model name and flags (VNNI, AMX), with edgeres' own machine description."""
    env = describe_machine()
    name, flags = env.cpu, set(env.isa)
    if shutil.which("lscpu"):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            key, _, value = (s.strip() for s in line.partition(":"))
            if key == "Model name" and value:
                name = value
            elif key == "Flags":
                flags = set(value.split())
    return {"cpu": name, "machine": env.machine, "physical_cores": env.physical_cores,
            "logical_cores": env.logical_cores, "usable_cpus": sorted(_usable()),
            "vnni": sorted(f for f in _VNNI if f in flags),
            "amx": sorted(f for f in _AMX if f in flags), "environment": env.to_dict()}


def _usable() -> set[int]:
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set(
        range(os.cpu_count() or 1))


def uptime() -> str:
    """``uptime``'s line, or the load average where there is no such command."""
    if shutil.which("uptime"):
        out = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
        if out.stdout.strip():
            return out.stdout.strip()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return "load average: " + (", ".join(f"{v:.2f}" for v in load) if load else "unknown")


def _busy_loop(stop: Any, ready: Any, cpu: int | None, seconds: float) -> None:
    """One core's worth of pure-Python work until ``stop`` is set or ``seconds`` have passed."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    ready.set()
    end, x = time.monotonic() + seconds, 0
    while not stop.is_set() and time.monotonic() < end:
        for _ in range(20_000):
            x += 1


class CpuLoad:
    """``procs`` busy-loop processes, each pinned to one of the last usable CPUs; a context
    manager that starts them (and waits until they run) and stops them."""

    def __init__(self, procs: int, seconds: float) -> None:
        ctx = mp.get_context("spawn")  # no fork of a process that holds ORT thread pools
        cpus = sorted(_usable())
        self.cpus = [cpus[-1 - i % len(cpus)] for i in range(procs)]
        self.seconds = seconds
        self._stop = ctx.Event()
        self._ready = [ctx.Event() for _ in self.cpus]
        self._procs = [ctx.Process(target=_busy_loop, args=(self._stop, r, cpu, seconds),
                                   daemon=True) for r, cpu in zip(self._ready, self.cpus,
                                                                   strict=True)]

    def __enter__(self) -> CpuLoad:
        for p in self._procs:
            p.start()
        for r in self._ready:
            if not r.wait(60):
                self.__exit__()
                msg = "a load process did not start within 60 s"
                raise RuntimeError(msg)
        time.sleep(1.0)  # let the scheduler settle before anything is sampled
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for p in self._procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join(5)


# --- models and measurement -----------------------------------------------------------------


def model_files(models: list[str], precisions: list[str], calib: str,
                cache: Path) -> list[tuple[str, str, Path]]:
    """(model, precision, file) for each pair, made as ``edgeres bench`` makes them."""
    out = []
    for arg in models:
        src = resolve_model(arg, cache)
        for precision in precisions:
            out.append((arg, precision, model_file(src, precision, calib=calib)))
    return out


def run_condition(configs: dict[str, Any], inputs: dict[Any, np.ndarray], args: Any
                  ) -> dict[str, Any]:
    """Every configuration timed in one interleaved ``measure`` call; stats per name."""
    fns = {name: (lambda p=p, x=inputs[p.input_dtype]: p.run(x)) for name, p in configs.items()}
    for name, fn in fns.items():  # a configuration that cannot run fails before timing
        try:
            fn()
        except Exception as e:
            msg = f"{name} failed its trial call: {e}"
            raise SystemExit(msg) from None
    t = measure(fns, warmup=args.warmup, rounds=args.rounds, duration=args.duration)
    if t.interrupted:
        raise KeyboardInterrupt
    return {name: LatencyStats.from_samples(t[name], rounds=t.round_index[name])
            for name in fns}


def _name(model: str, precision: str, spin: bool) -> str:
    return f"{model}/{precision}/spin-{'on' if spin else 'off'}"


def compare(stats: dict[str, LatencyStats], pairs: list[tuple[str, str, Path]]
            ) -> list[dict[str, Any]]:
    """One row per (model, precision): both p50s with intervals, on/off with its interval."""
    rows = []
    for model, precision, path in pairs:
        on, off = stats[_name(model, precision, True)], stats[_name(model, precision, False)]
        ratio = speedup(on.round_medians_ms, off.round_medians_ms, paired=True)
        verdict = {"faster": "spinning off faster", "slower": "spinning on faster"}.get(
            ratio.verdict, "no clear difference")
        rows.append({"model": model, "precision": precision, "file": str(path),
                     "on": on.to_dict(), "off": off.to_dict(),
                     "on_over_off": ratio.to_dict(), "verdict": verdict})
    return rows


# --- report ---------------------------------------------------------------------------------


def _p50(s: dict[str, Any]) -> str:
    lo, hi = s.get("p50_low_ms"), s.get("p50_high_ms")
    band = "" if lo is None or hi is None else f" [{lo:.2f}, {hi:.2f}]"
    return f"{s['p50_ms']:.2f}{band}"


def _ratio(r: dict[str, Any]) -> str:
    band = "" if r["low"] is None else f" [{r['low']:.3f}, {r['high']:.3f}]"
    return f"{r['estimate']:.3f}{band}"


def markdown(doc: dict[str, Any]) -> str:
    h, s = doc["host"], doc["settings"]
    lines = [
        "# ONNX Runtime thread spinning: on vs off", "",
        f"Host: {h['cpu']} ({h['machine']}), {h['physical_cores']} physical / "
        f"{h['logical_cores']} logical cores; VNNI: {', '.join(h['vnni']) or 'no'}; "
        f"AMX: {', '.join(h['amx']) or 'no'}; onnxruntime "
        f"{h['environment']['versions'].get('onnxruntime')}.",
        f"Settings: {s['threads']} intra-op threads, {s['duration']:g} s timed per "
        f"configuration over {s['rounds']} interleaved rounds after {s['warmup']} warm-up calls, "
        f"batch 1, seeded random input; models made as `edgeres bench` makes them "
        f"(int8: `edgeres.quantize`, calibrated on {s['calib']}).",
        f"edgeres' default: spinning {'on' if doc['default_spin'] else 'off'} "
        "(`edgeres.runtime.backends.DEFAULT_SPIN`; `--ort-spinning` turns it on).",
        "on/off = time with spinning on / time with it off (paired per round, 95% interval): "
        "above 1, spinning off is faster.", "",
        f"Command: `{doc['command']}`", "",
    ]
    for c in doc["conditions"]:
        busy = c["busy_others"]
        load = "" if c["load"] is None else (
            f"; load: {c['load']['procs']} busy-loop process(es) pinned to CPU(s) "
            f"{', '.join(map(str, c['load']['cpus']))}")
        lines += [f"## {c['name']}", "",
                  f"`uptime` before: {c['uptime_before']}; CPU used by other processes: "
                  f"{'unknown' if busy is None else f'{100 * busy:.0f}%'}{load}.", ""]
        if c["name"] == "quiet" and busy is not None and busy > 0.25:
            lines += ["**Warning:** other processes used more than 25% of the CPUs: this host "
                      "was not quiet, so these are not quiet-host figures.", ""]
        lines += ["| model | precision | p50 ms spinning on [95%] | p50 ms spinning off [95%] "
                  "| on/off [95%] | verdict |", "|---|---|---:|---:|---:|---|"]
        for r in c["rows"]:
            lines.append(f"| {r['model']} | {r['precision']} | {_p50(r['on'])} | "
                         f"{_p50(r['off'])} | {_ratio(r['on_over_off'])} | {r['verdict']} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50",
                        help="Comma list of bench MODEL arguments [default: resnet50].")
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--conditions", default="quiet,loaded")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="Timed seconds per configuration, over the rounds.")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, help="[default: bench's: physical cores]")
    parser.add_argument("--load-procs", type=int, default=1,
                        help="Busy-loop processes of the loaded condition, one core each.")
    parser.add_argument("--calib", default="cifar10")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "ort_spinning",
                        help="Writes OUT.json and OUT.md.")
    args = parser.parse_args()
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    if not conditions or set(conditions) - {"quiet", "loaded"} or args.load_procs < 1 \
            or not (args.duration > 0 and math.isfinite(args.duration)) or args.rounds < 1:
        parser.error("conditions are quiet and/or loaded; --load-procs, --rounds >= 1; "
                     "--duration > 0")
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    machine = host()
    threads = args.threads or default_threads(machine["physical_cores"])
    pairs = model_files(args.models.split(","), args.precisions.split(","), args.calib,
                        args.cache or cache_dir())
    configs = {_name(m, p, spin): runtime.load(path, backend="ort", threads=threads, spin=spin)
               for m, p, path in pairs for spin in (True, False)}
    rng = np.random.default_rng(0)
    inputs = {}
    for pred in configs.values():
        if pred.input_dtype not in inputs:
            shape = (1, *pred.input_shape)
            inputs[pred.input_dtype] = (
                rng.integers(0, 256, shape, dtype=np.uint8) if pred.input_dtype == np.uint8
                else rng.standard_normal(shape, dtype=np.float32).astype(pred.input_dtype))
    # the load's own bound: far beyond one condition's timing, so it never ends too soon
    bound = 120.0 + 4 * len(configs) * (args.duration + args.warmup)
    results = []
    for name in conditions:
        before = uptime()
        if name == "loaded":
            load = CpuLoad(args.load_procs, bound)
            with load:
                busy = busy_fraction(0.5)
                stats = run_condition(configs, inputs, args)
            described = {"procs": args.load_procs, "cpus": load.cpus, "bound_s": bound}
        else:
            busy = busy_fraction(0.5)
            stats = run_condition(configs, inputs, args)
            described = None
        results.append({"name": name, "uptime_before": before, "busy_others": busy,
                        "load": described, "rows": compare(stats, pairs)})
        print(f"{name}: " + "; ".join(f"{r['model']} {r['precision']} on/off "
                                      f"{_ratio(r['on_over_off'])}" for r in results[-1]["rows"]))
    doc = {"schema_version": SCHEMA_VERSION, "tool": "benchmarks/bench_spinning.py",
           "created": created, "command": " ".join(["python", *sys.argv]), "host": machine,
           "default_spin": DEFAULT_SPIN,
           "settings": {"threads": threads, "duration": args.duration, "rounds": args.rounds,
                        "warmup": args.warmup, "batch": 1, "calib": args.calib,
                        "models": args.models.split(","), "precisions": args.precisions.split(",")},
           "conditions": results}
    out = Path(args.out)
    with atomic_write(out.with_name(out.name + ".json")) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    with atomic_write(out.with_name(out.name + ".md")) as tmp:
        tmp.write_text(markdown(doc) + "\n")
    print(f"wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
