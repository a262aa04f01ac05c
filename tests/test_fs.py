"""Atomic outputs: renamed into place on success, gone on failure, with normal permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edgeres._fs import atomic_dir, atomic_write
from edgeres.errors import EdgeresError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_file_and_dir_get_umask_permissions_not_owner_only(tmp_path: Path) -> None:
    """A model written through a temporary file is as readable as one written with open()."""
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "m.onnx") as tmp:
            tmp.write_bytes(b"x")
        with atomic_dir(tmp_path / "bundle") as tmp:
            (tmp / "a.txt").write_text("a")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "m.onnx") == 0o644
    assert _mode(tmp_path / "bundle") == 0o755


def test_failure_leaves_neither_file_nor_temporary(tmp_path: Path) -> None:
    """An exception inside the block keeps the old file and removes the temporary one."""
    dst = tmp_path / "m.onnx"
    dst.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(dst) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError
    assert dst.read_bytes() == b"old" and os.listdir(tmp_path) == ["m.onnx"]


def test_missing_directory_is_a_one_line_error(tmp_path: Path) -> None:
    """Writing into a folder that does not exist says so and how to fix it."""
    with pytest.raises(EdgeresError, match="does not exist; create it first"), atomic_write(
        tmp_path / "no" / "m.onnx"
    ):
        pass
