"""THE image preprocessing, in numpy, driven by the model's metadata record.

Calibration, evaluation, bench, the runtime and the bundle's ``infer.py`` all go through this
module, so a model sees the same pixels everywhere. The recipe is torchvision's ``Resize``
(shorter side, or exact size) + ``CenterCrop`` + ``Normalize``; resizing uses Pillow, which is
imported only when an image actually needs resizing or decoding. This file depends on nothing
but numpy, Pillow, the stdlib and ``edgeres.errors``, so a bundle carries it unchanged in its
device package (``edgeres.device``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeres.errors import DataError, ModelFileError

_RESAMPLE = {"nearest": 0, "bilinear": 2, "bicubic": 3}  # Pillow's Image.Resampling values
MAX_PIXELS_ENV = "EDGERES_MAX_IMAGE_PIXELS"  # raises Pillow's decompression-bomb limit


def _convert(img: Any, color: str) -> Any:
    """``img.convert(color)``, with 16-bit grayscale scaled to 8 bits (convert would clip it)."""
    from PIL import Image

    if img.mode.startswith("I;16") or img.mode == "I":
        wide = np.asarray(img, dtype=np.uint32) if img.mode != "I" else np.asarray(img)
        eight = ((np.clip(wide, 0, 65535).astype(np.uint32) + 128) // 257).astype(np.uint8)
        img = Image.fromarray(eight, "L")
    return img.convert(color)


def load_image(source: Any, color: str = "RGB") -> np.ndarray:
    """Decode an image into an HWC uint8 array in ``color`` ("RGB" or "L").

    Args:
        source: a file path, raw encoded bytes, a PIL image, or an HWC/HW uint8 array.
        color: "RGB" for 3-channel models, "L" for grayscale ones. Grayscale, RGBA and
            palette images are converted, so any readable image works.

    Returns:
        An ``(H, W, C)`` uint8 array with C = 3 for RGB and 1 for L.

    Raises:
        DataError: if the source is missing, not an image, or an array of the wrong kind.
    """
    if isinstance(source, np.ndarray):
        return _check_array(source, color)
    from PIL import Image, UnidentifiedImageError

    if not isinstance(source, str | os.PathLike | bytes | bytearray | Image.Image):
        msg = (f"cannot read an image from a {type(source).__name__}; pass a file path, "
               "encoded bytes, a PIL image or an HWC uint8 array")
        raise DataError(msg)

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = _pixel_limit(saved)
    try:
        if isinstance(source, Image.Image):
            arr = np.asarray(_convert(source, color))
        else:
            if isinstance(source, bytes | bytearray):
                import io

                source_file: Any = io.BytesIO(source)
            else:
                source_file = _open_file(Path(source))
            # closes the file as soon as it is decoded
            with source_file, Image.open(source_file) as img:
                arr = np.asarray(_convert(img, color))
    except FileNotFoundError:
        msg = f"image {_shown(source)} does not exist; check the path"
        raise DataError(msg) from None
    except Image.DecompressionBombError as e:
        name = "image bytes" if isinstance(source, bytes | bytearray) else _shown(source)
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)  # Pillow refuses above twice its setting
        msg = (f"{name} exceeds Pillow's limit of {limit:,} pixels ({_bomb_size(e)}), a guard "
               f"against decompression bombs; shrink the image, or if you trust it set "
               f"{MAX_PIXELS_ENV} to a larger pixel count")
        raise DataError(msg) from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        name = "image bytes" if isinstance(source, bytes | bytearray) else _shown(source)
        msg = f"{name} is not a readable image ({type(e).__name__}); pass a JPEG/PNG/BMP file"
        raise DataError(msg) from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    return _not_empty(arr[:, :, None] if arr.ndim == 2 else arr)


def _pixel_limit(default: int | None) -> int | None:
    """Pillow's ``MAX_IMAGE_PIXELS`` for ``EDGERES_MAX_IMAGE_PIXELS`` (a pixel count), else
    ``default``; Pillow refuses images above twice the setting."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return default
    if not value.isdecimal() or int(value) < 1:
        msg = f"{MAX_PIXELS_ENV}={value!r:.40} must be a positive pixel count, e.g. 500000000"
        raise DataError(msg)
    return max(1, int(value) // 2)


def _bomb_size(e: BaseException) -> str:
    """The pixel count Pillow's DecompressionBombError names ("Image size (N pixels) ...")."""
    import re

    found = re.search(r"\((\d+) pixels\)", str(e))
    return f"{int(found.group(1)):,} pixels" if found else "too many pixels"
def _shown(path: Any) -> str:
    """A path for a message: a 10,000-character one cut to 200."""
    text = str(path)
    return text if len(text) <= 200 else text[:197] + "..."


def _open_file(path: Path) -> Any:
    """``path`` opened for reading if it is a regular file: opened without blocking first, so
    a FIFO (which would wait for a writer forever), a device or a folder is refused at once."""
    import stat

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a folder"
                    if stat.S_ISDIR(mode) else "a device" if stat.S_ISCHR(mode) or
                    stat.S_ISBLK(mode) else "not a regular file")
            msg = f"image {path} is {kind}, not an image file; pass a JPEG/PNG/BMP file"
            raise DataError(msg)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _not_empty(arr: np.ndarray) -> np.ndarray:
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        msg = f"the image is empty ({arr.shape[1]}x{arr.shape[0]} pixels); pass a real image"
        raise DataError(msg)
    return arr


def _check_array(arr: np.ndarray, color: str) -> np.ndarray:
    if arr.dtype != np.uint8:
        msg = f"image arrays must be uint8 HWC pixels, got dtype {arr.dtype}; use .astype(np.uint8)"
        raise DataError(msg)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        msg = f"image arrays must be HWC with 1, 3 or 4 channels, got shape {arr.shape}"
        raise DataError(msg)
    want = 1 if color == "L" else 3
    _not_empty(arr)
    if arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.shape[2] == want:
        return arr
    if want == 3:
        return np.repeat(arr, 3, axis=2)
    # ITU-R 601-2 luma, the weights Pillow's convert("L") uses.
    luma = arr[:, :, 0] * 0.299 + arr[:, :, 1] * 0.587 + arr[:, :, 2] * 0.114
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[:, :, None]


def resize_crop(image: np.ndarray, spec: Any) -> np.ndarray:
    """Resize then centre-crop an HWC uint8 image to ``spec.crop``, as torchvision does.

    Args:
        image: HWC uint8 array.
        spec: a ``PreprocessSpec`` (``resize``, ``crop``, ``interpolation``).

    Returns:
        An HWC uint8 array of shape ``(*spec.crop, C)``.
    """
    h, w = image.shape[:2]
    if isinstance(spec.resize, int):
        short = min(h, w)
        # torchvision Resize(int): the shorter side becomes `resize`, the longer keeps the ratio.
        size = (spec.resize, int(spec.resize * w / h)) if h <= w else (
            int(spec.resize * h / w), spec.resize)
        if short == spec.resize:
            size = (h, w)
    else:
        size = tuple(spec.resize)
    if size != (h, w):
        image = _resize(image, size, spec.interpolation)
    return _center_crop(image, tuple(spec.crop))


def _resize(image: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    if interpolation == "bilinear-no-antialias":
        return _resize_linear(image, size)
    from PIL import Image

    squeeze = image.shape[2] == 1
    pil = Image.fromarray(image[:, :, 0] if squeeze else image)
    out = np.asarray(pil.resize((size[1], size[0]), _RESAMPLE.get(interpolation, 2)))
    return out[:, :, None] if squeeze else out


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weight of the second one for each output position: pixel centres
    aligned (``(i + 0.5) * n_in / n_out - 0.5``), clamped at the edges, two taps whatever
    the scale, as cv2.resize INTER_LINEAR and tf.image.resize(antialias=False) compute."""
    src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(np.float32)


def _resize_linear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize without antialiasing (a shrunk image aliases, as in OpenCV and TF),
    rounded to uint8."""
    y0, y1, fy = _linear_taps(image.shape[0], size[0])
    x0, x1, fx = _linear_taps(image.shape[1], size[1])
    img = image.astype(np.float32)
    rows = img[y0] * (1 - fy)[:, None, None] + img[y1] * fy[:, None, None]
    out = rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _center_crop(image: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    h, w = image.shape[:2]
    ch, cw = crop
    if h < ch or w < cw:  # torchvision pads with zeros when the crop is larger than the image
        # torchvision center_crop: top/left get diff // 2, bottom/right get (diff + 1) // 2.
        pad = ((max(0, (ch - h) // 2), max(0, (ch - h + 1) // 2)),
               (max(0, (cw - w) // 2), max(0, (cw - w + 1) // 2)), (0, 0))
        image = np.pad(image, pad)
        h, w = image.shape[:2]
    top = int(round((h - ch) / 2.0))
    left = int(round((w - cw) / 2.0))
    return image[top : top + ch, left : left + cw]


def normalize(batch: np.ndarray, spec: Any, layout: str = "NCHW") -> np.ndarray:
    """Turn an NHWC uint8 batch into normalised float32 in ``layout``.

    Computes ``(x * pixel_scale / 255 - mean) / std`` as one multiply-add per element:
    ``pixel_scale`` 1 gives torchvision's 0-1 scale, 255 the 0-255 scale of Caffe-style
    models, with ``mean`` and ``std`` stated on that scale.
    """
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    pixel_scale = float(getattr(spec, "pixel_scale", 1.0))  # records before it have none
    scale = (pixel_scale / (255.0 * std)).astype(np.float32)
    shift = (-mean / std).astype(np.float32)
    out = batch.astype(np.float32) * scale + shift
    if layout == "NCHW":
        out = out.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out)


def prepare(images: Sequence[Any] | Any, meta: Any) -> np.ndarray:
    """Turn images into the model's input tensor, using only the metadata record.

    Args:
        images: one image or a list (paths, bytes, PIL images, HWC uint8 arrays).
        meta: the model's ``ModelMeta``.

    Returns:
        NCHW float32 (or NHWC float32), or NHWC uint8 for graphs that normalise inside.

    Raises:
        DataError: if an image cannot be read or an array has the wrong dtype/shape.
    """
    if not isinstance(images, list | tuple):
        images = [images]
    if not images:
        msg = "no images given; pass at least one image"
        raise DataError(msg)
    spec = meta.preprocess
    batch = np.stack([resize_crop(load_image(img, spec.color), spec) for img in images])
    return pixels_to_input(batch, meta)


def pixels_to_input(batch: np.ndarray, meta: Any) -> np.ndarray:
    """Map an NHWC uint8 batch of model-sized RGB (or L) images to the model's input tensor.

    A model trained on BGR pixels (OpenCV, Caffe) gets its channels reversed first; its mean
    and std are stated in that order.
    """
    spec = meta.preprocess
    if getattr(spec, "channel_order", "RGB") == "BGR" and spec.color != "L":
        batch = batch[..., ::-1]
    if meta.input.normalized_in_graph:
        return np.ascontiguousarray(batch)
    return normalize(batch, meta.preprocess, meta.input.layout)


def pad_batch(x: np.ndarray, size: int, fill: np.ndarray | None = None) -> np.ndarray:
    """``x`` filled up to ``size`` rows for a fixed-batch graph (unchanged when it has them).

    The added rows are ``fill``'s rows, cycled (``np.resize``), or zeros when ``fill`` is None.
    Callers keep only the first ``len(x)`` outputs, except calibration, whose extra rows must be
    real samples (``fill`` = the first batch) so they do not skew the ranges.
    """
    n = len(x)
    if not size or n >= size:
        return x
    rows = (size - n, *x.shape[1:])
    extra = np.zeros(rows, x.dtype) if fill is None else np.resize(fill, rows).astype(x.dtype)
    return np.concatenate([x, extra])


def rows_are_probabilities(scores: np.ndarray) -> bool:
    """THE rule for output rows that are already probabilities (never softmax them again):
    every value at least -1e-6 and every row summing to 1 within 1e-3. An empty batch is not.

    Here beside the input side of the model contract so that the runtime, ``foreign`` (a
    record's ``output``) and a bundle's copy of this file read outputs alike.
    """
    z = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
    return bool(len(z)) and bool((z >= -1e-6).all()) and bool(
        (np.abs(z.sum(axis=1) - 1.0) <= 1e-3).all())


def check_finite(values: np.ndarray, what: str) -> None:
    """THE rule for a model's outputs: NaN or infinity is a broken model, never a score.

    Args:
        values: outputs (logits, probabilities, a layer's activations).
        what: whose outputs on what, for the message ("m.onnx on cifar10-val").

    Raises:
        ModelFileError: naming how many values were not finite.
    """
    values = np.asarray(values)
    if values.dtype.kind not in "fc":
        return
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        msg = (f"{what}: the model gives NaN or infinity ({bad:,} of {values.size:,} values), "
               "so no prediction or score is meaningful; its weights or a layer are broken "
               "(an overflow): re-export or retrain it")
        raise ModelFileError(msg)
