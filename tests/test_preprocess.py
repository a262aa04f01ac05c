"""Tests for edgeres.preprocess: the one numpy preprocessing every component shares."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edgeres.errors import DataError
from edgeres.meta import InputSpec, ModelMeta, PreprocessSpec
from edgeres.preprocess import load_image, normalize, pad_batch, prepare, resize_crop
from edgeres.zoo import family_preprocess


def _meta(spec: PreprocessSpec, **inp: Any) -> ModelMeta:
    h, w = spec.crop
    return ModelMeta(name="m", family="custom", num_classes=2, labels=("a", "b"),
                     input=InputSpec(shape=("batch", 3, h, w), **inp), preprocess=spec)


def test_normalize_matches_formula() -> None:
    """(x/255 - mean)/std in NCHW, computed by hand for one pixel per channel."""
    spec = SimpleNamespace(mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    batch = np.array([[[[255, 0, 51]]]], dtype=np.uint8)  # N=1, H=1, W=1, C=3
    out = normalize(batch, spec)
    assert out.shape == (1, 3, 1, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), [1.0, -1.0, 0.2], rtol=1e-6)


def test_resize_shorter_side_then_center_crop_like_torchvision() -> None:
    """A 100x200 image resized to shorter side 50 becomes 50x100, then the centre 40x40."""
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 100:] = 255  # right half white: the centre crop straddles the edge
    spec = PreprocessSpec(resize=50, crop=(40, 40))
    out = resize_crop(img, spec)
    assert out.shape == (40, 40, 3)
    # the crop spans columns 30..69 of the 100-wide resized image: half dark, half bright
    assert out[:, :15].max() < 10 and out[:, -15:].min() > 245


def test_exact_resize_and_no_op_for_model_sized_images() -> None:
    """Exact (h, w) resizes; an image already at the crop size is passed through untouched."""
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    cifar = family_preprocess("cifar", (32, 32))
    np.testing.assert_array_equal(resize_crop(img, cifar), img)
    ocr = PreprocessSpec(resize=(16, 64), crop=(16, 64))
    assert resize_crop(img, ocr).shape == (16, 64, 3)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "RGB"])
def test_any_color_mode_becomes_rgb(mode: str) -> None:
    """Grayscale, RGBA and palette images are converted to 3-channel uint8."""
    buf = io.BytesIO()
    Image.new(mode, (8, 6)).save(buf, format="PNG")
    arr = load_image(buf.getvalue())
    assert arr.shape == (6, 8, 3) and arr.dtype == np.uint8


def test_16_bit_grayscale_is_scaled_not_clipped() -> None:
    """A 16-bit PNG keeps its tones: value v becomes round(v / 257), not min(v, 255)."""
    wide = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(wide).save(buf, format="PNG")
    arr = load_image(buf.getvalue())
    np.testing.assert_array_equal(arr[..., 0], np.round(wide / 257).astype(np.uint8))
    assert arr.shape == (64, 64, 3) and 0.4 < (arr < 128).mean() < 0.6


def test_a_decompression_bomb_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """An image over Pillow's pixel limit is refused like any unreadable image."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, format="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4,096 px is then over twice the limit
    with pytest.raises(DataError, match="exceeds Pillow.s limit of 2,000 pixels"):
        load_image(buf.getvalue())


def test_grayscale_models_get_one_channel() -> None:
    """color='L' yields HxWx1 from RGB arrays with Pillow's luma weights."""
    rgb = np.full((2, 2, 3), (100, 150, 200), np.uint8)
    out = load_image(rgb, "L")
    assert out.shape == (2, 2, 1)
    assert out[0, 0, 0] == round(100 * 0.299 + 150 * 0.587 + 200 * 0.114)


def test_uint8_input_graphs_get_raw_pixels() -> None:
    """A graph that normalises inside receives NHWC uint8, not floats."""
    spec = PreprocessSpec(resize=4, crop=(4, 4))
    meta = _meta(spec).evolve(input=InputSpec(shape=("batch", 4, 4, 3), layout="NHWC",
                                              dtype="uint8", normalized_in_graph=True))
    img = np.random.default_rng(1).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    out = prepare([img, img], meta)
    assert out.dtype == np.uint8 and out.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(out[1], img)


@pytest.mark.parametrize(("source", "fragment"), [
    (b"not an image", "not a readable image"),
    ("/nonexistent/cat.jpg", "does not exist"),
    (np.zeros((4, 4, 3), np.float32), "uint8"),
    (np.zeros((4, 4, 5), np.uint8), "shape"),
])
def test_bad_images_raise_data_error(source: object, fragment: str) -> None:
    """Unreadable files, missing paths and wrong arrays give one-line DataErrors."""
    with pytest.raises(DataError, match=fragment) as info:
        load_image(source)
    assert "\n" not in str(info.value)


def test_pad_batch_is_the_one_fill_up_to_a_fixed_batch() -> None:
    """pad_batch: zeros by default, cycled fill rows on request, untouched when full or dynamic."""
    x = np.arange(6, dtype=np.float16).reshape(2, 3)
    zeros = pad_batch(x, 4)
    assert zeros.dtype == np.float16 and zeros.shape == (4, 3)
    np.testing.assert_array_equal(zeros[:2], x)
    assert not zeros[2:].any()
    last = pad_batch(x, 5, fill=x[-1:])  # evaluate(): repeat the last image
    np.testing.assert_array_equal(last[2:], np.repeat(x[-1:], 3, axis=0))
    head = np.array([[9, 9, 9], [8, 8, 8]], np.float16)  # calibration: real samples, cycled
    np.testing.assert_array_equal(pad_batch(x, 5, fill=head)[2:], head[[0, 1, 0]])
    assert pad_batch(x, 2) is x and pad_batch(x, 0) is x and pad_batch(x, 1) is x



def _linear_reference(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """cv2.resize INTER_LINEAR / tf.image.resize(antialias=False) written out per pixel: the
    source point of output (i, j) is ((i + 0.5) * H / out_h - 0.5, ...), clamped to the
    image, and its four neighbours are blended bilinearly; rounded to uint8."""
    h, w = image.shape[:2]
    out = np.zeros((out_h, out_w, image.shape[2]), np.float64)
    for i in range(out_h):
        y = min(max((i + 0.5) * h / out_h - 0.5, 0.0), h - 1)
        y0 = int(np.floor(y))
        y1, dy = min(y0 + 1, h - 1), y - y0
        for j in range(out_w):
            x = min(max((j + 0.5) * w / out_w - 0.5, 0.0), w - 1)
            x0 = int(np.floor(x))
            x1, dx = min(x0 + 1, w - 1), x - x0
            top = image[y0, x0] * (1 - dx) + image[y0, x1] * dx
            bottom = image[y1, x0] * (1 - dx) + image[y1, x1] * dx
            out[i, j] = top * (1 - dy) + bottom * dy
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def test_bilinear_without_antialias_matches_cv2_and_tf_resize() -> None:
    """interpolation "bilinear-no-antialias" (Keras/OpenCV pipelines) equals the per-pixel
    reference within 1 (float rounding) when shrinking, enlarging and changing the aspect, and
    hand-computed values exactly; Pillow's antialiased bilinear differs when shrinking."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for size in [(16, 16), (80, 100), (37, 20), (5, 90)]:
        spec = PreprocessSpec(resize=size, crop=size, interpolation="bilinear-no-antialias")
        got = resize_crop(image, spec)
        want = _linear_reference(image, *size)
        assert got.shape == (*size, 3) and got.dtype == np.uint8
        assert np.abs(got.astype(int) - want).max() <= 1
        assert (got == want).mean() > 0.99
    square = np.array([[0, 40], [80, 120]], np.uint8)[:, :, None]
    up = resize_crop(square, PreprocessSpec(resize=(4, 4), crop=(4, 4),
                                            interpolation="bilinear-no-antialias"))
    assert up[:, :, 0].tolist() == [[0, 10, 30, 40], [20, 30, 50, 60], [60, 70, 90, 100],
                                    [80, 90, 110, 120]]
    down = PreprocessSpec(resize=(16, 16), crop=(16, 16), interpolation="bilinear")
    assert np.abs(resize_crop(image, down).astype(int) - _linear_reference(image, 16, 16)
                  ).max() > 10


def test_an_image_over_the_pixel_limit_says_so_and_how_to_allow_it(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A decompression bomb is named as one (its pixels, Pillow's limit, the variable that
    raises it), not "not a readable image"; with the limit raised the image loads."""
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(DataError) as info:
        load_image(path)
    text = str(info.value)
    assert "2,000 pixels" in text and "limit of 1,000 pixels" in text
    assert "decompression bomb" in text and "EDGERES_MAX_IMAGE_PIXELS" in text
    monkeypatch.setenv("EDGERES_MAX_IMAGE_PIXELS", "4000")
    assert load_image(path).shape == (40, 50, 3) and Image.MAX_IMAGE_PIXELS == 500
