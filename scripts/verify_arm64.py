"""Host side of scripts/verify_arm64.sh: make the bundles, then report what arm64 said.

``prepare OUT``: quantize the shipped ``cifar10`` model for each CPU ``--target`` (ONNX Runtime
backend, calibrated on the ``cifar10`` train subset), package the fp32 model and each int8
model (``OUT/bundles/<name>``, each with its own golden file), and write for each a second
golden file of CIFAR-10 *test* images with this host's (x86) logits (``OUT/test-<name>.npz``),
which gives arm64's test accuracy and its |delta logit| against x86. When this Python has
edgeres[litert] (``make setup-edge``), the shipped model exported to ``.tflite`` and its LiteRT
int8 (``litert-fp32``, ``litert-int8``) are bundled too; without it they are left out, said
on stderr.

``report OUT``: read the verdicts the arm64 root printed (``OUT/arm64/*.json``) and write
``benchmarks/results/arm64_verify.{json,md}`` with both hosts named. Emulated timings mean
nothing, so none are recorded.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("x86", "x86-vnni", "arm")


def _edgeres(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "edgeres", *map(str, args)], check=True,
                   stdout=subprocess.DEVNULL)


def prepare(out: Path, test_images: int) -> None:
    """Bundles, their golden files and the test-image golden files, under ``out``."""
    from edgeres.device.infer import find_model
    from edgeres.meta import ModelMeta
    from edgeres.names import resolve_model_file
    from edgeres.verify import make_golden, verify_bundle

    models = {"fp32": resolve_model_file("cifar10")}
    (out / "models").mkdir(parents=True, exist_ok=True)
    for target in TARGETS:
        dst = out / "models" / f"cifar10-int8-{target}.onnx"
        if not dst.is_file():
            _edgeres("quantize", "cifar10", "--calib", "cifar10", "--target", target,
                     "-o", str(dst))
        models[f"int8-{target}"] = dst
    models.update(_litert_models(out / "models"))
    host: dict[str, Any] = {}
    for name, model in models.items():
        bundle = out / "bundles" / name
        bundle.parent.mkdir(exist_ok=True)
        _edgeres("package", str(model), "-o", str(bundle), "--force")
        record = (bundle / "metadata.json").read_text("utf-8")
        test = out / f"test-{name}.npz"
        make_golden(test, find_model(bundle), ModelMeta.from_json(record),
                    record, data="cifar10-test", samples=test_images, max_bytes=1 << 30)
        host[name] = {"golden": verify_bundle(bundle),
                      "test": verify_bundle(bundle, golden_file=test)}
    (out / "x86.json").write_text(json.dumps({"host": _host(), "verdicts": host}, indent=1))


def _litert_models(folder: Path) -> dict[str, Path]:
    """The shipped model as .tflite and its LiteRT int8, when edgeres[litert] is here."""
    import importlib.util

    if not all(importlib.util.find_spec(m) for m in ("ai_edge_litert", "litert_torch")):
        print("verify-arm64: no LiteRT bundles (edgeres[litert] is not installed for "
              f"{sys.executable}; make setup-edge and PY=.venv-edge/bin/python)", file=sys.stderr)
        return {}
    fp32, int8 = folder / "cifar_resnet20.tflite", folder / "cifar_resnet20-int8.tflite"
    if not fp32.is_file():
        _edgeres("export", "cifar_resnet20", "--weights", "cifar10", "-o", str(fp32))
    if not int8.is_file():
        _edgeres("quantize", str(fp32), "--backend", "litert", "--calib", "cifar10",
                 "-o", str(int8))
    return {"litert-fp32": fp32, "litert-int8": int8}


def _host() -> dict[str, Any]:
    from edgeres.bench.env import describe_machine

    env = describe_machine(sample_load=False)
    return {"machine": platform.machine(), "cpu": env.cpu, "isa": list(env.isa),
            "python": platform.python_version(),
            "onnxruntime": env.versions.get("onnxruntime"), "numpy": env.versions.get("numpy")}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def report(out: Path, results: Path) -> int:
    """Write the results files; return 1 when a bundle failed on arm64."""
    x86 = json.loads((out / "x86.json").read_text())
    versions = (out / "arm64" / "versions.txt").read_text().split()
    rows = []
    for name, host in x86["verdicts"].items():
        own = _read(out / "arm64" / f"{name}.golden.json")
        test = _read(out / "arm64" / f"{name}.test.json")
        rows.append({
            "bundle": name, "precision": host["golden"]["precision"],
            "target": host["golden"]["target"],
            "golden_source": host["golden"]["golden"]["source"],
            "golden_passed": bool(own and own["passed"]),
            "golden_agreement": own and own["agreement"],
            "golden_max_abs_dlogit": own and own["max_abs_dlogit"],
            "golden_failures": own["failures"] if own else ["no verdict"],
            "test_images": test and test["samples"],
            "test_accuracy_arm64": test and test["accuracy"],
            "test_accuracy_x86": host["test"]["accuracy"],
            "test_agreement_vs_x86": test and test["agreement"],
            "test_max_abs_dlogit_vs_x86": test and test["max_abs_dlogit"],
            "test_passed": bool(test and test["passed"]),
            "executed_precision": own and own["executed_precision"],
            "arm64_isa": own and own["isa"],
            "target_warning": own and own["target_warning"],
            "tolerances": host["golden"]["tolerances"],
        })
    doc = {
        "what": "each bundle's infer.py --verify on arm64 (qemu-user emulation, Debian bookworm "
                "root) against the x86 packaging host; no timings (emulated)",
        "x86_host": x86["host"],
        "arm64": {"machine": versions[0], "onnxruntime": versions[1], "numpy": versions[2],
                  "emulation": "qemu-aarch64 (user mode) on the x86 host"},
        "rows": rows,
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    results.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    results.with_suffix(".md").write_text(_markdown(doc))
    print(_markdown(doc))
    return 0 if all(r["golden_passed"] for r in rows) else 1


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def _markdown(doc: dict[str, Any]) -> str:
    h, a = doc["x86_host"], doc["arm64"]
    lines = [
        "# Bundles verified on arm64 (emulated)",
        "",
        f"Packaged on {h['cpu']} ({h['machine']}, ONNX Runtime {h['onnxruntime']}, "
        f"int8 flags: {', '.join(h['isa'])}); run on {a['machine']} under {a['emulation']} "
        f"with ONNX Runtime {a['onnxruntime']} and numpy {a['numpy']} (aarch64 wheels from "
        "PyPI). Made by `make verify-arm64` (scripts/verify_arm64.sh). Emulated timings mean "
        "nothing; none are reported.",
        "",
        "`golden`: the bundle's own `infer.py --verify` (its golden.npz: 64 train-split "
        "images, see below; pass/fail and top-1 agreement). The other columns: the same check "
        "on CIFAR-10 test images against x86's logits: top-1 accuracy on each machine, "
        "top-1 agreement and the largest |delta logit| between them. Under emulation ONNX "
        "Runtime warns that cpuinfo cannot detect the CPU's features (no /sys; /proc/cpuinfo "
        "is the x86 host's), so it may use baseline aarch64 kernels: a real board with "
        "dotprod or i8mm can take other int8 paths, which `infer.py --verify` on it checks.",
        "",
        "| bundle | target | golden | golden max \\|Δlogit\\| | test images | accuracy arm64 "
        "| accuracy x86 | agreement vs x86 | max \\|Δlogit\\| vs x86 | executed | atol |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in doc["rows"]:
        lines.append(
            f"| {r['bundle']} | {r['target'] or '-'} | "
            f"{'pass' if r['golden_passed'] else 'FAIL'} ({_pct(r['golden_agreement'])}) | "
            f"{_num(r['golden_max_abs_dlogit'])} | {r['test_images']} | "
            f"{_pct(r['test_accuracy_arm64'])} | {_pct(r['test_accuracy_x86'])} | "
            f"{_pct(r['test_agreement_vs_x86'])} | {_num(r['test_max_abs_dlogit_vs_x86'])} | "
            f"{r['executed_precision']} | {_num(r['tolerances']['atol'])} |")
    lines += ["", "Golden inputs:", ""] + [f"- {r['bundle']}: {r['golden_source']}"
                                            for r in doc["rows"]]
    warnings = {r["bundle"]: r["target_warning"] for r in doc["rows"] if r["target_warning"]}
    if warnings:
        lines += ["", "Target warnings printed on arm64:", ""]
        lines += [f"- {b}: {w}" for b, w in warnings.items()]
    failures = {r["bundle"]: r["golden_failures"] for r in doc["rows"] if r["golden_failures"]}
    if failures:
        lines += ["", "Failures:", ""] + [f"- {b}: {'; '.join(f)}" for b, f in failures.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    """``prepare OUT`` or ``report OUT``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("prepare", "report"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--test-images", type=int, default=500)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks/results/arm64_verify")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.out, args.test_images)
        return 0
    return report(args.out, args.results)


if __name__ == "__main__":
    sys.exit(main())
