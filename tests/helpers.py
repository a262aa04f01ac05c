"""Checks several test files share: the one-line error of a refused command, and running a
bundle's ``infer.py`` the way a device would (no edgeres, torch or onnx importable)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result

# Runs a bundle's infer.py with the installed edgeres and the modules named in argv[1] (comma
# list; torch and onnx by default) made unimportable, from outside the repo: the only edgeres
# left is the bundle's own copy (edgeres_device/, which infer.py puts first on sys.path).
_ISOLATED = (
    "import os, runpy, sys\n"
    "for name in sys.argv.pop(1).split(','): sys.modules[name] = None\n"
    "sys.path[:] = [p for p in sys.path\n"
    "               if not os.path.isfile(os.path.join(p or '.', 'edgeres', '__init__.py'))]\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def one_error(result: Result, *words: str, codes: tuple[int, ...] = (1,)) -> str:
    """The single ``Error:`` line (on stderr) of a refused command, checked for ``words``;
    the exit code is one of ``codes`` and no traceback was printed."""
    assert result.exit_code in codes, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def run_infer(bundle: Path, *args: str, env: dict[str, str] | None = None,
              blocked: tuple[str, ...] = ("torch", "onnx")) -> subprocess.CompletedProcess:
    """``python infer.py ARGS`` from inside ``bundle`` in isolated mode (-I: no PYTHONPATH,
    no cwd on sys.path; the installed edgeres and the ``blocked`` modules unimportable; -B: no
    __pycache__ left in the bundle)."""
    return subprocess.run([sys.executable, "-I", "-B", "-c", _ISOLATED, ",".join(blocked),
                           str(bundle / "infer.py"), *args], capture_output=True, text=True,
                          cwd=bundle, timeout=120, env=env)


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str, filler: int | None = None) -> Iterator[Path]:
    """A tmpfs of the test's own mounted at ``folder`` (made here; the test is skipped where
    mount is refused), holding one file ``filler`` of ``filler`` bytes, or filled to the last
    byte when ``filler`` is None; unmounted afterwards."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        if filler is not None:
            (folder / "filler").write_bytes(b"\0" * filler)
        else:
            fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
            try:
                while os.write(fd, b"\0" * 4096):
                    pass
            except OSError as e:
                assert e.errno == errno.ENOSPC
            finally:
                os.close(fd)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
