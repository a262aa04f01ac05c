#!/usr/bin/env bash
# The one prepared device check of issue 18: GPU rows measured on a real GPU.
#
# Run from the repository root on the lent GPU machine (Python 3.12, torch with CUDA,
# onnxruntime CPU-only, no openvino/nncf/tensorrt, no network):
#
#     bash benchmarks/gpu_check.sh              # writes into $OUT (default ./out/gpu-check)
#     GPU_CHECK_DRY=1 bash benchmarks/gpu_check.sh   # short rehearsal, any machine
#
# GPU_CHECK_INSTALL=0 skips the pip install (a shared environment); PYTHON picks the
# interpreter; EDGERES_CACHE the cache (default: a fresh temporary directory).
#
# It logs the machine (nvidia-smi, versions), installs edgeres from this tree without
# dependencies (or runs it from the tree with PYTHONPATH when that fails), then benches
#   1. cifar10: fp32, fp16, bf16 on torch-cuda and ort-cpu, accuracy on cifar10-test
#   2. cifar10-int8: int8 on ort-cpu (torch-cuda's int8 row says why it is skipped), accuracy
#   3. resnet50 (random weights): fp32, fp16, bf16 latency on torch-cuda and ort-cpu
#   4. cifar10 fp16 on torch-cuda, eager and torch.compile side by side (skipped when the run
#      is already past GPU_CHECK_BUDGET_S seconds)
# at batch 1, 8 and 64, each as JSON, markdown and (when matplotlib is installed) a plot under
# $OUT. The full run is sized for under 6 minutes on a 16-core H200 host. Copy $OUT's
# *.json/*.md/*.png and gpu_check.log into benchmarks/results/gpu-h200/.
set -euo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:-./out/gpu-check}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-python3}"
DRY="${GPU_CHECK_DRY:-0}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-240}"  # no compile run once the check has used this much
# Zoo exports and TensorRT engines go in a scratch cache, never into $OUT (ResNet-50 is 100 MB).
export EDGERES_CACHE="${EDGERES_CACHE:-$(mktemp -d)/edgeres-cache}"
export EDGERES_PROGRESS=0
START=$(date +%s)
exec > >(tee -a "$OUT/gpu_check.log") 2>&1

elapsed() { echo $(( $(date +%s) - START )); }
section() { echo; echo "== $* (t=$(elapsed)s)"; }

section "machine"
date -u +%Y-%m-%dT%H:%M:%SZ
uname -a
echo "cpus: $(nproc)"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi || true
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
else
    echo "nvidia-smi: not found"
fi
"$PY" - <<'EOF'
import sys
from importlib import metadata

print("python", sys.version.split()[0])
for name in ("torch", "triton", "onnxruntime", "onnxruntime-gpu", "onnx", "onnxslim", "numpy",
             "Pillow", "click", "rich", "matplotlib", "openvino", "nncf", "tensorrt",
             "hatchling"):
    try:
        print(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        print(f"{name} -- not installed")
try:
    import torch

    print("torch.version.cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
          "cuda available", torch.cuda.is_available())
    if torch.cuda.is_available():
        print("device", torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
except Exception as e:
    print("torch check failed:", e)
try:
    import onnxruntime as ort

    print("onnxruntime providers", ort.get_available_providers())
except Exception as e:
    print("onnxruntime check failed:", e)
EOF

section "install edgeres from this tree"
if [ "${GPU_CHECK_INSTALL:-1}" = "0" ]; then
    echo "GPU_CHECK_INSTALL=0: running from the tree"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
elif "$PY" -m pip install --no-deps --no-build-isolation --no-index -e . >"$OUT/pip.log" 2>&1; then
    echo "installed (pip install --no-deps --no-build-isolation -e .)"
else
    echo "pip install failed (last line: $(tail -n 1 "$OUT/pip.log")); running from the tree"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c "import edgeres; print('edgeres', edgeres.__version__, 'from', edgeres.__file__)"

CONDITIONS="benchmarks/gpu_check.sh"
if [ "$DRY" = "1" ]; then
    CONDITIONS="$CONDITIONS, GPU_CHECK_DRY=1 rehearsal: not a measurement"
    TIMING=(--iterations 2 --rounds 1 --warmup 1)
    BATCH="1,8"
    EVAL=(--eval cifar10-test --limit 200)
else
    TIMING=(--duration 1 --rounds 3 --warmup 5)
    BATCH="1,8,64"
    EVAL=(--eval cifar10-test)
fi
HAVE_PLOT=0
"$PY" -c "import matplotlib" >/dev/null 2>&1 && HAVE_PLOT=1
HAVE_CUDA=0
"$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())" >/dev/null 2>&1 && HAVE_CUDA=1
FAILED=()

bench() {  # bench NAME ARGS...: one edgeres bench run writing NAME.json/.md(/.png) into $OUT
    local name=$1
    shift
    local outputs=(--json "$OUT/$name.json" --markdown "$OUT/$name.md")
    [ "$HAVE_PLOT" = "1" ] && outputs+=(--plot "$OUT/$name.png")
    section "bench $name"
    if ! "$PY" -m edgeres bench "$@" --batch "$BATCH" "${TIMING[@]}" --no-memory \
            --conditions "$CONDITIONS" "${outputs[@]}"; then
        echo "bench $name FAILED"
        FAILED+=("$name")
    fi
}

bench cifar10 cifar10 --runtime torch-cuda,ort-cpu --precision fp32,fp16,bf16 "${EVAL[@]}"
bench cifar10-int8 cifar10-int8 --runtime torch-cuda,ort-cpu "${EVAL[@]}"
bench resnet50 resnet50 --runtime torch-cuda,ort-cpu --precision fp32,fp16,bf16
if [ "$HAVE_CUDA" = "0" ]; then
    section "no torch.compile run: torch.cuda.is_available() is False here"
elif [ "$(elapsed)" -lt "$BUDGET_S" ]; then
    bench cifar10-compile cifar10 --runtime torch-cuda --precision fp16 --torch-compile
else
    section "no torch.compile run: $(elapsed)s used of a ${BUDGET_S}s budget"
fi

section "summary"
"$PY" - "$OUT" <<'EOF'
import json
import sys
from pathlib import Path

for path in sorted(Path(sys.argv[1]).glob("*.json")):
    rows = json.loads(path.read_text())["rows"]
    print(f"{path.name}: " + ", ".join(
        f"{s} {sum(r['status'] == s for r in rows)}" for s in ("ok", "skipped", "failed")))
    for r in rows:
        if r["status"] == "ok":
            lat, acc = r["latency"], r["accuracy"] or {}
            first = r["first_call_ms"]
            print(f"  {r['precision']}/{r['runtime']}/{r['precision_mode']} b{r['batch']}: "
                  f"p50 {lat['p50_ms']:.3f} ms, {lat['throughput_ips']:.0f} img/s, executed "
                  f"{r['executed_precision']}, first call {first or 0:.0f} ms, top-1 "
                  f"{acc.get('top1')}")
        else:
            print(f"  {r['precision']}/{r['runtime']} b{r['batch']}: {r['status']}: "
                  f"{r['reason']}")
EOF
ls -l "$OUT"
echo "done in $(elapsed)s"
if [ "${#FAILED[@]}" -gt 0 ]; then
    echo "failed runs: ${FAILED[*]}"
    exit 1
fi
