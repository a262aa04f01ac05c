"""Atomic file output: a failure never leaves a half-written model or report behind."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeres.errors import EdgeresError


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask(0) would
    briefly loosen it for every other thread of the host program)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp: Path, mode: int) -> None:
    """Give ``tmp`` the permissions a plain ``open()``/``mkdir()`` would have: mkstemp and
    mkdtemp create owner-only files, which would make every model edgeres writes private."""
    os.chmod(tmp, mode & ~_umask())


@contextlib.contextmanager
def output_dir(dst: Path) -> Iterator[Path]:
    """Yield ``dst``'s directory; a missing one, or an OSError while writing into it inside
    the block, becomes a one-line fix-it ``EdgeresError``."""
    parent = dst.parent if str(dst.parent) else Path(".")
    if not parent.is_dir():
        msg = f"cannot write {dst}: directory {parent} does not exist; create it first"
        raise EdgeresError(msg)
    try:
        yield parent
    except OSError as e:
        msg = f"cannot write {dst}: {e.strerror}; choose a writable output path"
        raise EdgeresError(msg) from None


@contextlib.contextmanager
def atomic_write(dst: Path, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dst``; rename it onto ``dst`` only if the block succeeds.

    The temporary file lives in ``dst``'s directory so the final ``os.replace`` is atomic.

    Args:
        dst: the final output path.
        suffix: suffix of the temporary name (defaults to ``dst``'s, which some writers need).

    Raises:
        EdgeresError: if ``dst``'s directory does not exist or is not writable.
    """
    dst = Path(dst)
    with output_dir(dst) as parent:
        fd, name = tempfile.mkstemp(
            prefix=f".{dst.name}.", suffix=suffix if suffix is not None else dst.suffix,
            dir=parent,
        )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _publish(tmp, 0o666)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(dst: Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``dst``; move it onto ``dst`` only on success.

    An existing ``dst`` directory is replaced only after the new one is complete.

    Raises:
        EdgeresError: if ``dst``'s parent directory does not exist or is not writable.
    """
    dst = Path(dst)
    with output_dir(dst) as parent:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=parent))
    try:
        yield tmp
        _publish(tmp, 0o777)
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def json_safe(value: Any) -> Any:
    """The same value, writable as strict JSON: non-finite floats become null, tuples lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
