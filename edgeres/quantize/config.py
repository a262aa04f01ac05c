"""Quantization options: ``QuantConfig`` and the deployment targets it resolves to.

A target says what the *deployment* hardware needs from an int8 model (activation type,
symmetry, 7-bit weights, per-channel weights), not what the quantizing machine happens to be;
``auto`` means "this host" and is resolved from ``/proc/cpuinfo`` flags and the platform.
Everything is validated when built (CONTRIBUTING R5), so a typo fails before any work. Stdlib only.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgeres._hw import cpu_flags, host_target
from edgeres.errors import ConfigError

Target = Literal["auto", "x86-vnni", "x86", "arm", "tensorrt"]
Method = Literal["minmax", "entropy", "percentile"]
Preset = Literal["performance", "mixed"]
TARGET_NAMES: tuple[str, ...] = ("auto", "x86-vnni", "x86", "arm", "tensorrt")
METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")
PRESETS: tuple[str, ...] = ("performance", "mixed")
AUTO_BATCH = 8  # calibration samples per run at most, when batch_size is None
# and at most this much input per run (see QuantConfig.batch_size): 4 ResNet-50 images at 224
AUTO_BATCH_BYTES = 5 << 19  # 2.5 MiB
DEFAULT_METHOD = "minmax"  # ORT backend; measured best or equal on the reference model (bench)


@dataclass(frozen=True)
class TargetSpec:
    """What one deployment target needs from an ONNX Runtime QDQ model.

    Attributes:
        name: the target ("x86-vnni", "x86", "arm", "tensorrt").
        activation_type: "uint8" or "int8".
        activation_symmetric: zero point fixed at 0 for activations.
        reduce_range: 7-bit weights, which x86 without VNNI needs to avoid saturating
            VPMADDUBSW's 16-bit sums (ORT ``quantize_static`` docs, "x86/x64 CPU without VNNI").
        per_channel: one weight scale per output channel.
        why: one line saying where the choice comes from.
    """

    name: str
    activation_type: Literal["uint8", "int8"]
    activation_symmetric: bool
    reduce_range: bool
    per_channel: bool
    why: str
    weight_type: Literal["int8"] = "int8"


# Measured on this project's x86 host (AVX-512 VNNI + AMX, ORT 1.31, ResNet-50 batch 1):
# U8 activations x S8 per-channel weights after quant_pre_process run ~2.8x faster than fp32,
# S8 activations fall back to slow kernels, and ORT's defaults (S8/S8 per-tensor, no
# pre-processing) are no faster than fp32. TensorRT only takes symmetric S8/S8 QDQ.
TARGETS: dict[str, TargetSpec] = {
    "x86-vnni": TargetSpec("x86-vnni", "uint8", False, False, True,
                           "x86 with VNNI/AMX: U8 activations x S8 per-channel weights"),
    "x86": TargetSpec("x86", "uint8", False, True, True,
                      "x86 without VNNI: U8 x S8 with 7-bit weights to avoid saturation"),
    "arm": TargetSpec("arm", "int8", False, False, True,
                      "ARM: S8 activations x S8 per-channel weights (sdot kernels)"),
    "tensorrt": TargetSpec("tensorrt", "int8", True, False, True,
                           "TensorRT: symmetric S8 activations and weights"),
}


def detect_target(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The target this host is: ``arm`` on ARM, ``x86-vnni`` when VNNI/AMX flags are present.

    Args:
        cpuinfo: the file listing CPU flags (Linux); missing means "no VNNI known".
    """
    return host_target(platform.machine(), cpu_flags(cpuinfo))  # the one rule, edgeres._hw


def resolve_target(name: str) -> TargetSpec:
    """The spec of target ``name`` (``auto`` resolved to this host).

    Raises:
        ConfigError: if ``name`` is not a known target (a ``ConfigError``).
    """
    if name not in TARGET_NAMES:
        msg = f"unknown target {name!r}; use one of {', '.join(TARGET_NAMES)}"
        raise ConfigError(msg)
    return TARGETS[detect_target() if name == "auto" else name]


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize; validated when built.

    Attributes:
        target: deployment hardware ("auto" = this host); picks types and symmetry.
        method: calibration method; None is the backend's default (ORT: minmax; NNCF: its
            own range estimators).
        samples: calibration images, drawn with ``seed`` from the calibration data.
        per_channel: per-channel weight scales; None lets the target decide.
        exclude: node names kept in float from the start.
        seed: seed of the calibration sample draw.
        batch_size: calibration batch; None picks up to 8 samples and at most 2.5 MiB of
            input (activations grow with the batch: ResNet-50 at 224 peaks at 2.4 GB with 8,
            1.5 GB with 4 and 0.9 GB with 1; with 4, edgeres quantizes it in 1.03x the time of
            plain quantize_static, benchmarks/results/everyday_quantize.md). A model with a
            fixed batch uses its own.
        preset: NNCF preset: "performance" (symmetric) or "mixed" (asymmetric activations).
        val: labelled validation data (a path or a registered name such as ``cifar10-val``)
            measured for fp32 and int8; needed by ``max_drop``.
        max_drop: top-1 budget in points on ``val``; layers return to float until it holds.
        val_samples: validation images drawn with ``seed`` (all when None).
        eval: labelled test data reported only (never used for decisions).
        ranking_samples: calibration images used to rank layer sensitivity.
        layer_report_samples: calibration images used for the per-layer SQNR report (0: none).
            8 by default: every layer's output holds thousands of values per image, so 8
            images settle its SQNR, and the report ran two unoptimised graphs over 64 (a
            quarter of a ResNet-50 quantize).
    """

    target: Target = "auto"
    method: Method | None = None
    samples: int = 300
    per_channel: bool | None = None
    exclude: tuple[str, ...] = ()
    seed: int = 0
    batch_size: int | None = None
    preset: Preset = "performance"
    val: str | Path | None = None
    max_drop: float | None = None
    val_samples: int | None = None
    eval: str | Path | None = None
    ranking_samples: int = 64
    layer_report_samples: int = 8

    def __post_init__(self) -> None:
        self._check_names()
        for name in ("samples", "batch_size", "ranking_samples"):
            value = getattr(self, name)
            if value is None and name == "batch_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"{name} must be a positive integer, got {value!r}"
                raise ConfigError(msg)
        if self.val_samples is not None and (
            isinstance(self.val_samples, bool) or not isinstance(self.val_samples, int)
            or self.val_samples < 1
        ):
            msg = f"val_samples must be a positive integer or None, got {self.val_samples!r}"
            raise ConfigError(msg)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            msg = f"seed must be an integer of 0 or more, got {self.seed!r}"
            raise ConfigError(msg)
        if not isinstance(self.layer_report_samples, int) or self.layer_report_samples < 0:
            msg = f"layer_report_samples must be 0 or more, got {self.layer_report_samples!r}"
            raise ConfigError(msg)
        if isinstance(self.exclude, str) or not all(isinstance(n, str) for n in self.exclude):
            msg = "exclude must be a tuple of node names, e.g. ('/conv1/Conv',)"
            raise ConfigError(msg)
        self._check_accuracy_options()

    def _check_names(self) -> None:
        if self.target not in TARGET_NAMES:
            msg = f"unknown target {self.target!r}; use one of {', '.join(TARGET_NAMES)}"
            raise ConfigError(msg)
        if self.method is not None and self.method not in METHODS:
            msg = f"unknown calibration method {self.method!r}; use one of {', '.join(METHODS)}"
            raise ConfigError(msg)
        if self.preset not in PRESETS:
            msg = f"unknown preset {self.preset!r}; use performance or mixed"
            raise ConfigError(msg)

    def _check_accuracy_options(self) -> None:
        if self.max_drop is None:
            return
        if self.val is None:
            msg = "max_drop needs validation data: pass val DATA (e.g. cifar10-val)"
            raise ConfigError(msg)
        if isinstance(self.max_drop, bool) or not isinstance(self.max_drop, int | float) or not (
            0 <= self.max_drop <= 100
        ):
            msg = f"max_drop is a top-1 budget in points from 0 to 100, got {self.max_drop!r}"
            raise ConfigError(msg)
