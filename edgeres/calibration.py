"""Calibration data: ``CalibrationSet`` yields ``{input_name: batch}`` arrays for one model.

A set wraps an ``edgeres.data`` source (image folder, ``.npy``/``.npz``, or a registered
name such as ``cifar10``) and the model's metadata record, so every image goes through
``edgeres.preprocess`` exactly as at inference. Samples are drawn deterministically
(``select(samples, seed)``); unreadable images are skipped and counted; a set with no usable
sample is an error. After a full pass the set knows its sample count and the sha256 of the
arrays it produced, which the quantized model's record keeps. The two adapters are tiny:
``ort_reader`` (ONNX Runtime's ``CalibrationDataReader``) and ``nncf_dataset``.
``model_record`` and ``onnx_record`` (which find a model's record, or build one from stated
preprocessing) moved to ``edgeres.modelfile``; they are re-exported here.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeres.data import ArraySource, DataSource, ImageSource, open_data
from edgeres.errors import DataError
from edgeres.meta import ModelMeta
from edgeres.preprocess import pad_batch

__all__ = ["CalibrationSet", "CalibrationStats", "nncf_dataset", "ort_reader"]

log = logging.getLogger(__name__)

CACHE_BYTES = 64 << 20  # sets up to this size keep their batches after the first pass


@dataclass(frozen=True)
class CalibrationStats:
    """What one full pass over a set produced.

    Attributes:
        count: samples used.
        skipped: unreadable images left out.
        sha256: hash of the float32 sample arrays, in order (identifies the calibration set).
    """

    count: int
    skipped: int
    sha256: str


class CalibrationSet:
    """Calibration batches for one model, as ``{input_name: ndarray}`` (CONTRIBUTING R7).

    Arrays have the model's input dtype (float32, or uint8 for graphs that normalise inside).

    Iterating decodes and preprocesses the samples through ``edgeres.data`` each time
    (small sets are cached). Every batch has ``batch_size`` samples except possibly the
    last; a model with a fixed batch axis gets that size always, its last batch filled up
    with samples from the start of the set.
    """

    def __init__(self, source: DataSource, meta: ModelMeta, *, batch_size: int = 8) -> None:
        fixed = meta.input.shape[0]
        self.source = source
        self.meta = meta
        self.input_name = meta.input.name
        self.fixed_batch = isinstance(fixed, int)
        self.batch_size = int(fixed) if isinstance(fixed, int) else int(batch_size)
        if self.batch_size < 1:
            msg = f"calibration batch size must be positive, got {batch_size}"
            raise DataError(msg)
        self._stats: CalibrationStats | None = None
        self._cache: list[tuple[np.ndarray, int]] | None = None  # (batch, real samples)

    @classmethod
    def from_data(cls, data: str | Path | DataSource, meta: ModelMeta, *,
                  batch_size: int = 8) -> CalibrationSet:
        """Open ``data`` (a path, a registered name, or an opened source) for ``meta``'s model.

        Raises:
            UnknownNameError: if ``data`` is neither a path nor a registered name.
            DataError: if it holds no images or malformed arrays.
        """
        source = data if isinstance(data, ImageSource | ArraySource) else open_data(data)
        return cls(source, meta, batch_size=batch_size)

    def select(self, samples: int | None, seed: int = 0,
               batch_size: int | None = None) -> CalibrationSet:
        """A deterministic draw of ``samples`` samples (all when None or more than there are)."""
        size = self.batch_size if batch_size is None else batch_size
        return CalibrationSet(self.source.subset(samples, seed), self.meta, batch_size=size)

    def __len__(self) -> int:
        """Batches in one pass (counting unreadable images, which are found while decoding)."""
        return math.ceil(len(self.source) / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for feed, _ in self.counted():
            yield feed

    def counted(self) -> Iterator[tuple[dict[str, np.ndarray], int]]:
        """The feeds of one pass, each with how many of its samples are real: for a fixed
        batch axis the last batch is filled up with repeated samples, which statistics over
        samples (histograms) must leave out."""
        if self._cache is not None:
            yield from (({self.input_name: x}, real) for x, real in self._cache)
            return
        digest = hashlib.sha256()
        count, kept = 0, []
        cacheable = len(self.source) * self._sample_bytes() <= CACHE_BYTES
        for x, real in self._batches():
            count += real
            digest.update(x[:real].tobytes())
            if cacheable:
                kept.append((x, real))
            yield {self.input_name: x}, real
        if count == 0:
            msg = (f"no usable calibration sample in {self.source.name} "
                   f"({self.source.skipped} unreadable skipped); pass a folder of JPEG/PNG images")
            raise DataError(msg)
        self._stats = CalibrationStats(count, self.source.skipped, digest.hexdigest())
        if cacheable:
            self._cache = kept

    def _batches(self) -> Iterator[tuple[np.ndarray, int]]:
        """Fixed-size batches with the number of real (not filled-up) samples in each."""
        buffer: list[np.ndarray] = []
        head: np.ndarray | None = None
        for batch in self.source.batches(self.meta, self.batch_size, labelled=False):
            x = np.ascontiguousarray(batch.inputs)
            if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
                msg = (f"{self.source.name}: calibration inputs contain NaN or Inf; "
                       "fix the preprocessing that wrote them")
                raise DataError(msg)
            head = x if head is None else head
            buffer.append(x)
            while sum(map(len, buffer)) >= self.batch_size:
                whole = np.concatenate(buffer)
                rest = whole[self.batch_size :]
                buffer = [rest] if len(rest) else []
                yield whole[: self.batch_size], self.batch_size
        if buffer:
            last = np.concatenate(buffer)
            real = len(last)
            if self.fixed_batch and head is not None:  # the graph takes exactly batch_size
                last = pad_batch(last, self.batch_size, fill=head)  # real samples, cycled
            yield last, real

    def _sample_bytes(self) -> int:
        dims = [d for d in self.meta.input.shape[1:] if isinstance(d, int)]
        return 4 * math.prod(dims) if dims else CACHE_BYTES

    @property
    def stats(self) -> CalibrationStats:
        """Count, skipped and sha256 of the set (runs one pass if none has completed)."""
        if self._stats is None:
            for _ in self:
                pass
        assert self._stats is not None  # set by the completed pass
        return self._stats

    def first(self, samples: int) -> Iterator[np.ndarray]:
        """The first ``samples`` real samples, in batches (for ranking and error reports)."""
        left = samples
        for feed in self:
            x = feed[self.input_name]
            if left <= 0:
                break
            yield x[:left] if not self.fixed_batch else x
            left -= len(x)


def ort_reader(calibration: CalibrationSet) -> Any:
    """ONNX Runtime's ``CalibrationDataReader`` over ``calibration`` (one pass)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    return _Reader()


def nncf_dataset(calibration: CalibrationSet) -> Any:
    """An ``nncf.Dataset`` of single samples (NNCF's ``subset_size`` counts items)."""
    import nncf

    return nncf.Dataset(calibration.select(None, batch_size=1))
