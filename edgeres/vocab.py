"""The shared vocabulary (CONTRIBUTING, "Vocabulary"): each list of names defined once.

Backends, devices, precisions, precision modes and the values a metadata record may hold.
Every other module imports these (``meta``, ``_record_check``, ``bench.config``, the CLI's
choices); none retypes them. Stdlib only, and imports nothing of edgeres, so the record's
checks and the device side can read it.
"""

from __future__ import annotations

from typing import Literal

# backend: the library that runs a model file; a runtime label is `{backend}-{device}`.
BackendName = Literal["ort", "openvino", "torch", "litert", "executorch"]
BACKENDS: tuple[str, ...] = ("ort", "openvino", "torch", "litert", "executorch")
DeviceName = Literal["cpu", "cuda", "tensorrt", "gpu"]
DEVICES: tuple[str, ...] = ("cpu", "cuda", "tensorrt", "gpu")
# precision: what a file stores or a row requests.
Precision = Literal["fp32", "fp16", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")
# mode: run the file's precision ("model") or let the runtime lower fp32 ("fast", bf16 on AMX).
Mode = Literal["model", "fast"]
MODES: tuple[str, ...] = ("model", "fast")
# What a metadata record may say about preprocessing and outputs.
# "bilinear-no-antialias": cv2.resize INTER_LINEAR / tf.image.resize (antialias=False), which
# Keras and OpenCV pipelines train with; the others are Pillow's (antialiased when shrinking).
INTERPOLATIONS: tuple[str, ...] = ("nearest", "bilinear", "bicubic", "bilinear-no-antialias")
CHANNEL_ORDERS: tuple[str, ...] = ("RGB", "BGR")
OUTPUT_KINDS: tuple[str, ...] = ("logits", "probabilities")
