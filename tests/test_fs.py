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


def test_atomic_files_publish_all_or_none(tmp_path: Path) -> None:
    """A model and its report land together; a failure leaves both old files and no temps."""
    from edgeres._fs import atomic_files

    model, report = tmp_path / "m.onnx", tmp_path / "m.onnx.quant.json"
    model.write_bytes(b"old model")
    report.write_bytes(b"old report")
    with pytest.raises(RuntimeError), atomic_files(model, report) as tmps:
        tmps[model].write_bytes(b"new model")
        raise RuntimeError
    assert model.read_bytes() == b"old model" and report.read_bytes() == b"old report"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "m.onnx.quant.json"]
    with atomic_files(model, report) as tmps:
        tmps[model].write_bytes(b"new model")
        tmps[report].write_bytes(b"new report")
    assert model.read_bytes() == b"new model" and report.read_bytes() == b"new report"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "m.onnx.quant.json"]


def test_check_output_rules(tmp_path: Path) -> None:
    """Devices/FIFOs/folders/links, an input, or a second output on the same file: refused."""
    from edgeres._fs import check_output, check_outputs

    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    (tmp_path / "m.onnx").write_bytes(b"m")
    (tmp_path / "link").symlink_to(tmp_path / "m.onnx")
    for name, words in (("fifo", "FIFO"), ("dir", "directory"), ("link", "symbolic link")):
        with pytest.raises(EdgeresError, match=words):
            check_output(tmp_path / name)
    check_output(tmp_path / "dir", folder=True)  # a bundle folder may be replaced
    with pytest.raises(EdgeresError, match="is the input"):
        check_output(tmp_path / "dir" / ".." / "m.onnx", inputs=[tmp_path / "m.onnx"])
    with pytest.raises(EdgeresError, match="same file"):
        check_outputs([tmp_path / "a.json", tmp_path / "." / "a.json"])
    check_outputs([tmp_path / "a.json", tmp_path / "a.csv"], inputs=[tmp_path / "m.onnx"])
