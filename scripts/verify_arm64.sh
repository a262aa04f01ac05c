#!/usr/bin/env bash
# Run `infer.py --verify` of edgeres bundles on arm64, emulated with qemu-user, on an x86 host.
#
# Builds (once, cached in $ARM64_ROOT, default .cache/arm64-root) a minimal arm64 Debian
# bookworm root with debootstrap, installs the bundles' requirements there as aarch64 wheels
# from PyPI, makes the fp32 bundle of the shipped `cifar10` model and one int8 bundle per
# --target (x86, x86-vnni, arm) on the host, and runs each bundle's own infer.py inside the
# root: `--verify` on its golden file, and on a golden file of CIFAR-10 test images for
# accuracy and |delta logit| vs x86. With a PY that has edgeres[litert] (make setup-edge;
# `make verify-arm64` picks .venv-edge when it is built) the shipped model's LiteRT fp32 and int8
# bundles too (ai-edge-litert's aarch64 wheel is tagged manylinux_2_27, which bookworm's glibc
# 2.36 takes). scripts/verify_arm64.py writes
# benchmarks/results/arm64_verify.{json,md}. Emulated timings mean nothing; none are reported.
#
# Usage: sudo scripts/verify_arm64.sh [--check] [--build-root]
#   --check       only say whether root, binfmt and a cached root are available (exit 0 if so)
#   --build-root  build the arm64 root and its venv, run nothing
# Environment: ARM64_ROOT (root folder), PY (host python with edgeres, default .venv/bin/python),
#   OUT (work folder, default .cache/arm64-verify), TEST_IMAGES (default 500),
#   RESULTS (results stem, default benchmarks/results/arm64_verify).
#
# Needs root (debootstrap, chroot, mount) and the packages qemu-user-static, debootstrap and
# binfmt-support (installed with apt-get when missing). Only /proc is mounted in the root: a
# bind-mounted host /sys makes onnxruntime's cpuinfo crash under qemu.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=${ARM64_ROOT:-.cache/arm64-root}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-.cache/arm64-verify}
TEST_IMAGES=${TEST_IMAGES:-500}
RESULTS=${RESULTS:-benchmarks/results/arm64_verify}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
READY="$ROOT/.edgeres-ready"
VENV=/opt/edgeres-venv   # inside the root
MODE=run
case "${1:-}" in
  --check) MODE=check ;;
  --build-root) MODE=build ;;
  "") ;;
  *) echo "usage: $0 [--check|--build-root]" >&2; exit 2 ;;
esac

say() { echo "verify-arm64: $*" >&2; }
die() { say "$*"; exit 2; }

binfmt_ok() { [ -r /proc/sys/fs/binfmt_misc/qemu-aarch64 ] \
  && grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; }

if [ "$MODE" = check ]; then
  [ "$(id -u)" = 0 ] || { echo "not root: debootstrap, chroot and mount need root"; exit 1; }
  binfmt_ok || { echo "qemu-aarch64 is not registered with binfmt_misc"; exit 1; }
  [ -f "$READY" ] || { echo "arm64 root not cached in $ROOT; run make verify-arm64"; exit 1; }
  echo "ok"; exit 0
fi

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mount); run it with sudo"

need=()
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" \
    || die "could not install ${need[*]}; install them with apt-get and retry"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
    || die "cannot mount binfmt_misc (a container without --privileged?)"
fi
binfmt_ok || update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
binfmt_ok || update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
binfmt_ok || die "qemu-aarch64 is not registered with binfmt_misc (update-binfmts --enable \
qemu-aarch64 failed); on Docker run with --privileged"

cleanup() {
  if mountpoint -q "$ROOT/proc" 2>/dev/null; then umount -l "$ROOT/proc" || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

in_root() { chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin LANG=C.UTF-8 "$@"; }

# pip in the root trusts what the host's pip trusts (a proxy's CA) and uses its index.
pip_env=(PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180)
host_ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
[ -n "${PIP_INDEX_URL:-}" ] && pip_env+=(PIP_INDEX_URL="$PIP_INDEX_URL")
root_pip() {
  if [ -f "$host_ca" ]; then cp "$host_ca" "$ROOT/etc/edgeres-host-ca.crt"; fi
  local ca=()
  [ -f "$ROOT/etc/edgeres-host-ca.crt" ] && ca=(PIP_CERT=/etc/edgeres-host-ca.crt)
  in_root "${pip_env[@]}" "${ca[@]}" "$VENV/bin/pip" install -q --only-binary=:all: "$@"
}

if [ ! -f "$READY" ]; then
  say "building the arm64 Debian root in $ROOT (once; several minutes under emulation)"
  if [ ! -f "$ROOT/.edgeres-debootstrapped" ]; then
    rm -rf "$ROOT"
    mkdir -p "$ROOT"
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,python3-pip \
      bookworm "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 \
      || die "debootstrap failed; see $ROOT.debootstrap.log"
    # qemu-user-static registers with the F flag, so the host interpreter serves the root;
    # a copy inside makes it work where the flag is missing too.
    cp /usr/bin/qemu-aarch64-static "$ROOT/usr/bin/"
    touch "$ROOT/.edgeres-debootstrapped"
  fi
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  mount -t proc proc "$ROOT/proc"
  [ -x "$ROOT$VENV/bin/python" ] || in_root python3 -m venv "$VENV"
  # The bundle's requirements.txt (numpy, Pillow, onnxruntime), as aarch64 wheels only.
  root_pip numpy Pillow onnxruntime || die "pip could not install aarch64 wheels in the root"
  umount "$ROOT/proc"
  in_root "$VENV/bin/python" -c "import platform; print(platform.machine())" | grep -qx aarch64 \
    || die "the root does not run as aarch64"
  touch "$READY"
  say "arm64 root ready"
fi
[ "$MODE" = build ] && exit 0

mkdir -p "$OUT"
say "making the bundles and golden files on the host"
"$PY" scripts/verify_arm64.py prepare "$OUT" --test-images "$TEST_IMAGES"

WORK="$ROOT/work"
rm -rf "$WORK"
mkdir -p "$WORK"
cp -r "$OUT/bundles" "$WORK/"
cp "$OUT"/test-*.npz "$WORK/"
mount -t proc proc "$ROOT/proc"
for req in "$WORK"/bundles/*/requirements.txt; do  # onnxruntime, openvino, ai-edge-litert
  root_pip -r "/work/bundles/$(basename "$(dirname "$req")")/requirements.txt" \
    || die "pip could not install the requirements of $(dirname "$req") in the root"
done
mkdir -p "$OUT/arm64"
for bundle in "$OUT"/bundles/*/; do
  name=$(basename "$bundle")
  say "verifying $name on arm64"
  # A failed verdict exits 1 but is a result to record, not a script failure.
  in_root "$VENV/bin/python" "/work/bundles/$name/infer.py" --verify --json \
    >"$OUT/arm64/$name.golden.json" || true
  in_root "$VENV/bin/python" "/work/bundles/$name/infer.py" --verify \
    --golden "/work/test-$name.npz" --json >"$OUT/arm64/$name.test.json" || true
done
in_root "$VENV/bin/python" -c "import platform, onnxruntime, numpy; print(platform.machine(), \
onnxruntime.__version__, numpy.__version__)" >"$OUT/arm64/versions.txt"
umount "$ROOT/proc"
"$PY" scripts/verify_arm64.py report "$OUT" --results "$RESULTS"
