"""Data sources as batches of model input: image folders, tar archives, arrays, registered names.

``open_data(value)`` accepts an ImageFolder-layout folder (``<class>/<image>``), a flat folder
of images, a ``.tar``/``.tar.gz`` of such a tree (a top folder every member shares is
stripped, as ``tar czf val.tar.gz val/`` makes one), a ``.npy``/``.npz`` of preprocessed arrays,
or a registered name (``cifar10``, ``cifar10-val``, ``cifar10-test``; see ``edgeres.names``).
Every image goes through ``edgeres.preprocess``; unreadable images are skipped and counted.

What a folder of images is, in every command (``image_files``): every image file under it, at
any depth. It is labelled (ImageFolder layout, the first sub-folder names the class) only when
no image lies at its top level; one image at the top makes it a flat, unlabelled folder of all
of them, so ``quantize --calib`` and ``predict`` use the same images.

Class folders map to the model's outputs by name, case-insensitively (``label_index``); a
folder no label matches is refused, naming both sides, unless a class map says otherwise
(``class_map``: ``"ids"`` for folders named by output index, or folder → index or label).
"""

from __future__ import annotations

import logging
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeres.classmap import ClassMap, by_name, mapped, placeholders
from edgeres.device import IMAGE_SUFFIXES
from edgeres.errors import DataError, first_line
from edgeres.names import resolve_data
from edgeres.preprocess import load_image, pixels_to_input, resize_crop

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """One batch of model input with its labels (None when the source is unlabelled)."""

    inputs: np.ndarray
    labels: np.ndarray | None
    sources: list[str]


@dataclass
class ImageSource:
    """Images from a folder or an archive, optionally labelled by their parent folder.

    Attributes:
        name: what the user passed (for messages).
        items: (source name, class name or None) per image, in a fixed sorted order.
        classes: sorted class names, or None for a flat (unlabelled) folder.
        skipped: images that could not be decoded in the last pass.
        class_map: how class folders map to outputs when their names are not the labels.
    """

    name: str
    items: list[tuple[str, str | None]]
    classes: tuple[str, ...] | None
    _reader: Any = field(repr=False)
    skipped: int = 0
    class_map: ClassMap | None = None

    def __len__(self) -> int:
        return len(self.items)

    def raw(self) -> Iterator[Any]:
        """Each item's undecoded image, in ``items``' order: a path for a folder, bytes for
        an archive (``batches`` decodes them; ``verify``'s golden inputs and ``eval``'s
        cluster rows read them as they are)."""
        return iter(self._reader(self.items))

    def subset(self, n: int | None, seed: int = 0) -> ImageSource:
        """A deterministic random subset of ``n`` images (all of them when ``n`` is None)."""
        if n is None or n >= len(self.items):
            return self
        if n < 1:
            msg = f"sample count must be at least 1, got {n}"
            raise DataError(msg)
        pick = np.sort(np.random.default_rng(seed).choice(len(self.items), n, replace=False))
        return replace(self, items=[self.items[i] for i in pick], skipped=0)

    def label_index(self, labels: tuple[str, ...] | None,
                    num_classes: int | None = None) -> dict[str, int]:
        """Map class folder names to model output indices.

        By ``class_map`` when one is set; else by name, case-insensitively, against the
        model's labels; a model with only placeholder labels (``class_<i>``) or none maps
        folders named by numbers to those indices, and other folders in sorted order when
        there is one per output.

        Raises:
            DataError: if a folder matches no label, a class map misses a folder or names an
                output the model does not have, or folders without names to match are not one
                per output.
        """
        classes = self.classes or ()
        count = num_classes or (len(labels) if labels else 0)
        if self.class_map is not None:
            index = mapped(self.name, classes, self.class_map, labels, count)
        elif labels and not placeholders(labels):
            index = by_name(self.name, classes, labels)
        elif all(c.isdecimal() for c in classes):
            index = {c: int(c) for c in classes}
        else:
            if count and len(classes) != count:  # sorted order is a guess only when 1:1
                msg = (f"{self.name}: {len(classes)} class folders for a {count}-class model "
                       "without class names; state its labels (--labels FILE, one per output "
                       "in order) or map the folders (eval --class-map FILE)")
                raise DataError(msg)
            log.warning("%s: the model has no class names; folders map to outputs in sorted "
                        "order (%s = 0, ...)", self.name, classes[0] if classes else "")
            index = {c: i for i, c in enumerate(classes)}
        bad = sorted(c for c, i in index.items() if count and not 0 <= i < count)
        if bad:
            msg = (f"{self.name}: class folder {bad[0]!r} maps to output {index[bad[0]]}, but "
                   f"the model has {count} outputs (0-{count - 1})")
            raise DataError(msg)
        return index

    def batches(self, meta: Any, batch_size: int = 64, *, labelled: bool = True
                ) -> Iterator[Batch]:
        """Decode, preprocess (through ``edgeres.preprocess``) and yield batches; without
        ``labelled`` (calibration) class folders are not mapped and labels are None."""
        labelled = labelled and self.classes is not None
        index = self.label_index(meta.labels, meta.num_classes) if labelled else {}
        spec = meta.preprocess
        self.skipped = 0
        pixels: list[np.ndarray] = []
        labels: list[int] = []
        sources: list[str] = []
        for (src, cls), raw in zip(self.items, self.raw(), strict=True):
            try:
                pixels.append(resize_crop(load_image(raw, spec.color), spec))
            except DataError as e:
                self.skipped += 1
                log.warning("skipped %s", e)
                continue
            labels.append(index[cls] if labelled and cls is not None else -1)
            sources.append(src)
            if len(pixels) == batch_size:
                yield self._batch(pixels, labels if labelled else None, sources, meta)
                pixels, labels, sources = [], [], []
        if pixels:
            yield self._batch(pixels, labels if labelled else None, sources, meta)

    def _batch(self, pixels: list, labels: list | None, sources: list, meta: Any) -> Batch:
        lab = np.asarray(labels, dtype=np.int64) if labels is not None else None
        return Batch(pixels_to_input(np.stack(pixels), meta), lab, sources)


@dataclass
class ArraySource:
    """Preprocessed arrays from ``.npy``/``.npz`` (``inputs`` or ``x``, optional ``labels``)."""

    name: str
    inputs: np.ndarray
    labels: np.ndarray | None
    classes: tuple[str, ...] | None = None
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, n: int | None, seed: int = 0) -> ArraySource:
        """A deterministic random subset of ``n`` samples (all of them when ``n`` is None)."""
        if n is None or n >= len(self.inputs):
            return self
        pick = np.sort(np.random.default_rng(seed).choice(len(self.inputs), n, replace=False))
        labels = None if self.labels is None else self.labels[pick]
        return ArraySource(self.name, self.inputs[pick], labels, self.classes)

    def batches(self, meta: Any, batch_size: int = 64, *, labelled: bool = True
                ) -> Iterator[Batch]:
        """Check the arrays against the model's input and yield them in batches."""
        shape = tuple(meta.input.shape[1:])
        if tuple(self.inputs.shape[1:]) != shape:
            msg = (f"{self.name}: arrays have sample shape {tuple(self.inputs.shape[1:])}, "
                   f"the model expects {shape}; preprocess to the model's input")
            raise DataError(msg)
        want = np.dtype(meta.input.dtype)
        if np.issubdtype(want, np.integer) != np.issubdtype(self.inputs.dtype, np.integer):
            kind = "raw pixels" if np.issubdtype(want, np.integer) else "normalised float32"
            msg = (f"{self.name}: arrays are {self.inputs.dtype}, the model takes {want} "
                   f"({kind}); save the arrays as the model's input dtype")
            raise DataError(msg)
        for i in range(0, len(self.inputs), batch_size):
            x = np.ascontiguousarray(self.inputs[i : i + batch_size], dtype=want)
            y = None if self.labels is None or not labelled else self.labels[i : i + batch_size]
            yield Batch(x, y, [f"{self.name}[{j}]" for j in range(i, i + len(x))])


DataSource = ImageSource | ArraySource


def open_data(value: str | Path, *, class_map: ClassMap | None = None) -> DataSource:
    """Open a data argument: an existing path, else a registered name.

    ``class_map`` says how class folders map to outputs (see ``ImageSource.label_index``).

    Raises:
        UnknownNameError: if ``value`` is neither a path nor a registered name.
        DataError: if the source holds no usable images or malformed arrays.
    """
    path = resolve_data(value)
    suffixes = "".join(path.suffixes[-2:]).lower()
    if path.is_dir():
        source: DataSource = _folder(path, str(value))
    elif suffixes.endswith((".tar.gz", ".tgz", ".tar")):
        source = _archive(path, str(value))
    elif path.suffix.lower() in (".npy", ".npz"):
        source = _arrays(path, str(value))
    else:
        msg = f"{value}: expected an image folder, a .tar.gz of one, or a .npy/.npz file"
        raise DataError(msg)
    if not len(source):
        msg = f"{value} contains no images; expected <class>/<image> files or a flat folder"
        raise DataError(msg)
    if class_map is not None and isinstance(source, ImageSource):
        source.class_map = class_map
    return source


def image_files(root: Path) -> list[Path]:
    """Every image file under folder ``root`` (by suffix, any depth), sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _folder(root: Path, name: str) -> ImageSource:
    files = image_files(root)
    nested = [p for p in files if p.parent != root]
    if nested and len(nested) == len(files):  # ImageFolder: the first sub-folder is the class
        items: list[tuple[str, str | None]] = [
            (str(p), p.relative_to(root).parts[0]) for p in nested]
        classes: tuple[str, ...] | None = tuple(sorted({c for _, c in items if c is not None}))
    else:
        items, classes = [(str(p), None) for p in files], None

    def read(items: list[tuple[str, str | None]]) -> Iterator[Path]:
        return (Path(src) for src, _ in items)

    return ImageSource(name, items, classes, read)


# A damaged .tar.gz fails in the tar layer, in gzip (EOFError: truncated; zlib.error: bad
# data) or in the OS; an EOFError left alone reaches click, which prints only "Aborted!".
_ARCHIVE_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


def _unreadable(name: str, e: BaseException) -> DataError:
    why = "it is truncated" if isinstance(e, EOFError) else first_line(e)
    msg = f"{name}: not a readable tar archive ({why}); re-download or re-create it"
    return DataError(msg)


def _archive(path: Path, name: str) -> ImageSource:
    try:
        with tarfile.open(path) as tar:
            names = sorted(m.name for m in tar if m.isfile()
                           and Path(m.name).suffix.lower() in IMAGE_SUFFIXES)
    except _ARCHIVE_ERRORS as e:
        raise _unreadable(name, e) from None
    items = _archive_items(names)
    labelled = bool(items) and items[0][1] is not None
    classes = tuple(sorted({c for _, c in items if c is not None})) if labelled else None

    def read(wanted: list[tuple[str, str | None]]) -> Iterator[bytes]:
        # One sequential pass; a member is held only until its turn in ``wanted`` comes, so
        # memory stays small when the archive is in sorted order (as tar writes a folder).
        order = [n for n, _ in wanted]
        want = set(order)
        pending: dict[str, bytes] = {}
        done = 0
        try:
            with tarfile.open(path) as tar:
                for m in tar:
                    if done == len(order):
                        return
                    if m.name not in want or m.name in pending:
                        continue
                    member = tar.extractfile(m)
                    if member is None:  # no longer a regular file: reported below as missing
                        continue
                    pending[m.name] = member.read()
                    while done < len(order) and order[done] in pending:
                        yield pending.pop(order[done])
                        done += 1
        except _ARCHIVE_ERRORS as e:
            raise _unreadable(name, e) from None
        if done < len(order):
            msg = f"{name}: {order[done]} is no longer in the archive; was it rewritten?"
            raise DataError(msg)

    return ImageSource(name, items, classes, read)


def _archive_items(names: list[str]) -> list[tuple[str, str | None]]:
    """(member, class) as ``_folder`` would give for the folder the archive was made from.

    Folders every member shares (``test/`` in ``tar czf test.tar.gz test/``) are stripped
    first; then the first remaining folder is the class when every member is inside one, as
    for a folder; otherwise the archive is flat (unlabelled) and every image is used.
    """
    parts = [Path(n).parts for n in names]
    depth = 0
    while parts and all(len(p) > depth + 1 for p in parts) and len({p[depth] for p in parts}) == 1:
        depth += 1
    nested: list[tuple[str, str | None]] = [
        (n, p[depth]) for n, p in zip(names, parts, strict=True) if len(p) > depth + 1]
    return nested if nested and len(nested) == len(names) else [(n, None) for n in names]


def _declared(f: Any, stored: int, name: str, member: str) -> None:
    """The array whose header ``f`` is at: its declared size checked against the ``stored``
    bytes and the memory available, before numpy allocates it (a 100-byte file declaring
    10**12 samples asked numpy for 12 TB)."""
    from numpy.lib import format as npformat

    from edgeres._resources import check_memory

    try:
        version = npformat.read_magic(f)
        header = (npformat.read_array_header_1_0 if version == (1, 0)
                  else npformat.read_array_header_2_0)
        shape, _, dtype = header(f, max_header_size=1 << 16)
    except (ValueError, EOFError, OSError, SyntaxError, TypeError):
        return  # not an array header numpy reads: np.load says why, below
    if dtype.hasobject:
        return  # refused by allow_pickle=False
    need = int(dtype.itemsize)
    for d in shape:
        need *= int(d)
    shown = "x".join(map(str, shape)) or "a scalar"
    left = stored - f.tell()
    if need > left:
        msg = (f"{name}: {member} declares {shown} {dtype} ({need:,} bytes) but holds "
               f"{max(left, 0):,}; the file is truncated or not what it claims: re-create it")
        raise DataError(msg)
    check_memory(need, f"{name}: {member} ({shown} {dtype})", "use a smaller file")


def _check_headers(path: Path, name: str) -> None:
    """``_declared`` for a .npy file, or for every .npy member of an .npz archive."""
    with open(path, "rb") as f:
        if path.suffix.lower() == ".npy":
            _declared(f, path.stat().st_size, name, "the array")
            return
        with zipfile.ZipFile(f) as z:
            for info in z.infolist():
                if info.filename.endswith(".npy"):
                    with z.open(info) as member:
                        _declared(member, info.file_size, name, info.filename[:-4])


def _arrays(path: Path, name: str) -> ArraySource:
    try:
        _check_headers(path, name)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        msg = f"{name}: not a readable .npy/.npz file ({e})"
        raise DataError(msg) from None
    try:  # an .npz reads its members lazily: their errors surface at data[key]
        if path.suffix.lower() == ".npy":
            x, y = np.load(path, allow_pickle=False), None
        else:
            with np.load(path, allow_pickle=False) as data:
                x, y = _members(data, name)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        msg = f"{name}: not a readable .npy/.npz file ({e})"
        raise DataError(msg) from None
    if not isinstance(x, np.ndarray):  # an .npz saved as .npy
        msg = f"{name}: is an .npz archive named .npy; rename it to .npz"
        raise DataError(msg)
    if x.ndim != 4:
        msg = f"{name}: expected a 4-D array of preprocessed samples, got shape {x.shape}"
        raise DataError(msg)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        msg = f"{name}: arrays of dtype {x.dtype} are not model input; save float32 or uint8"
        raise DataError(msg)
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(axis=1).sum())
        msg = f"{name}: {bad} sample(s) contain NaN or Inf; fix the preprocessing that wrote them"
        raise DataError(msg)
    return ArraySource(name, x, None if y is None else _labels(y, len(x), name))


def _members(data: Any, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    key = next((k for k in ("inputs", "x", "images", "data") if k in data.files), None)
    if key is None:
        msg = f"{name}: .npz needs an 'inputs' array (and optional 'labels'), has {data.files}"
        raise DataError(msg)
    return data[key], (data["labels"] if "labels" in data.files else None)


def _labels(y: np.ndarray, count: int, name: str) -> np.ndarray:
    """``y`` as int64 class indices, one per sample."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != count:
        msg = (f"{name}: 'labels' has shape {y.shape}, expected ({count},): one class index per "
               "sample (not one-hot)")
        raise DataError(msg)
    numeric = np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)
    if not numeric or (np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(y, 1) == 0)):
        msg = f"{name}: 'labels' must be integer class indices, got dtype {y.dtype}"
        raise DataError(msg)
    if len(y) and y.min() < 0:
        msg = f"{name}: 'labels' has negative class index {int(y.min())}"
        raise DataError(msg)
    return y.astype(np.int64)
