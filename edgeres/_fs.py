"""Atomic file output: a failure never leaves a half-written model or report behind.

One rule decides whether a path may be written (``check_output``): an existing output must be
a regular file (a bundle folder for ``package``), never a device, FIFO, socket or folder; a
symbolic link is refused rather than silently replaced by a file; and an output may not be one
of the run's inputs or another of its outputs. The writers (``atomic_write``, ``atomic_files``,
``atomic_dir``) apply it again when they start, create their temporary files only then, and
turn an ``OSError`` while writing (disk full, read-only file system) into a one-line
``EdgeresError``.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
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


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _same(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (hard links and ``..`` included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return a.resolve() == b.resolve()


def check_output(dst: Path, *, inputs: Iterable[Path | None] = (),
                 others: Iterable[Path | None] = (), folder: bool = False) -> Path:
    """Refuse an output path edgeres must not write, before any work is done.

    Args:
        dst: the output path.
        inputs: files the run reads; writing one of them would destroy it.
        others: the run's other outputs; two outputs on one path would overwrite each other.
        folder: ``dst`` is a bundle folder (an existing folder is then acceptable).

    Returns:
        ``dst`` as a ``Path``.

    Raises:
        EdgeresError: if ``dst``'s directory does not exist or is not writable, ``dst`` is a
            symbolic link, an existing non-regular file (device, FIFO, socket, or a folder
            where a file is written), or the same file as an input or another output.
    """
    dst = Path(dst)
    parent = dst.parent if str(dst.parent) else Path(".")
    _check_kind(dst, folder)
    if not parent.is_dir():
        msg = f"cannot write {dst}: directory {parent} does not exist; create it first"
        raise EdgeresError(msg)
    if not os.access(parent, os.W_OK | os.X_OK):
        msg = f"cannot write {dst}: directory {parent} is not writable; choose another output"
        raise EdgeresError(msg)
    for src in inputs:
        if src is not None and Path(src).exists() and _same(dst, Path(src)):
            msg = f"output {dst} is the input {src}; writing it would destroy it, choose another"
            raise EdgeresError(msg)
    for other in others:
        if other is not None and Path(other) is not dst and _same(dst, Path(other)):
            msg = (f"two outputs of this run are the same file ({dst} and {other}); "
                   "give each its own path")
            raise EdgeresError(msg)
    return dst


def _check_kind(dst: Path, folder: bool) -> None:
    """Refuse an output that is a symbolic link, or an existing file that is not a regular
    one (a folder is one only when ``folder``), for ``check_output``."""
    if os.path.islink(dst):
        target = os.path.realpath(dst)
        msg = (f"output {dst} is a symbolic link (to {target}); edgeres replaces files, not "
               f"link targets: give {target} itself or remove the link")
        raise EdgeresError(msg)
    try:
        mode = dst.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        msg = f"cannot write {dst}: {e.strerror}; choose another output path"
        raise EdgeresError(msg) from None
    if not stat.S_ISREG(mode) and not (folder and stat.S_ISDIR(mode)):
        msg = (f"cannot write {dst}: it is {_kind(mode)}; edgeres writes only regular files, "
               "choose a file path")
        raise EdgeresError(msg)


def input_files(values: Iterable[str | Path | None]) -> list[Path]:
    """The files among a run's inputs that no output may replace: every value that is an
    existing file (a folder's images are not listed: an output beside them destroys nothing),
    and the ``.bin`` beside an OpenVINO IR ``.xml``. Registered names are resolved by the
    caller; a value that is not a path (a name, a 10,000-character string) is skipped."""
    found: list[Path] = []
    for value in values:
        if value is None:
            continue
        path = Path(value)
        try:
            if not path.is_file():
                continue
        except (OSError, ValueError):  # a name too long for the file system, a NUL byte
            continue
        found.append(path)
        if path.suffix.lower() == ".xml":
            found.append(path.with_suffix(".bin"))
    return found


def _stdout_input(inputs: Iterable[Path]) -> Path | None:
    """The input that standard output is appended to (``>> model.onnx``), if any."""
    try:
        out = os.fstat(1)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(out.st_mode):
        return None
    for src in inputs:
        try:
            st = os.stat(src)
        except (OSError, ValueError):
            continue
        if (st.st_dev, st.st_ino) == (out.st_dev, out.st_ino):
            return src
    return None


def check_outputs(paths: Iterable[Path | None], *, inputs: Iterable[Path | None] = (),
                  stdout: bool = False, folders: bool = False) -> None:
    """``check_output`` for every output of one run, each against the inputs and the others.

    This is the one place a run's inputs meet its outputs: the CLI passes every path a
    command reads (model, its .bin, labels, data, calibration, golden) and every path it
    writes, before any work.

    Args:
        paths: the run's outputs.
        inputs: the files it reads (``input_files``).
        stdout: also refuse a standard output that is redirected onto one of the inputs.
        folders: an existing folder among ``paths`` is acceptable (``package``'s bundle).

    Raises:
        EdgeresError: as ``check_output``, or standard output is one of the inputs.
    """
    given = [Path(p) for p in paths if p is not None]
    sources = [Path(p) for p in inputs if p is not None]
    for i, dst in enumerate(given):
        check_output(dst, inputs=sources, others=given[:i],
                     folder=folders)
    src = _stdout_input(sources) if stdout else None
    if src is not None:
        msg = (f"standard output is the input {src}; writing to it would destroy it, "
               "redirect the output to another file")
        raise EdgeresError(msg)


@contextlib.contextmanager
def write_errors(dst: Path) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``dst`` (ENOSPC, EROFS, EIO...) into one line."""
    try:
        yield
    except OSError as e:
        raise OutputWriteError(dst, e.strerror or type(e).__name__) from None


@contextlib.contextmanager
def output_dir(dst: Path, *, folder: bool = False) -> Iterator[Path]:
    """Yield ``dst``'s directory (absolute) after ``check_output(dst, folder=folder)``; an
    OSError while writing into it inside the block becomes a one-line fix-it ``EdgeresError``."""
    dst = check_output(dst, folder=folder)
    parent = (dst.parent if str(dst.parent) else Path(".")).absolute()
    with write_errors(dst):
        yield parent


@contextlib.contextmanager
def atomic_write(dst: Path, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dst``; rename it onto ``dst`` only if the block succeeds.

    The temporary file lives in ``dst``'s directory so the final ``os.replace`` is atomic; it
    is created when the block is entered, so enter it when the data is ready to write.

    Args:
        dst: the final output path.
        suffix: suffix of the temporary name (defaults to ``dst``'s, which some writers need).

    Raises:
        EdgeresError: if ``dst`` is not an acceptable output (``check_output``), or writing
            fails (disk full, read-only file system).
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
def atomic_files(*dsts: Path) -> Iterator[dict[Path, Path]]:
    """Write several files that belong together (a model and its report, an IR's .xml and
    .bin): yield a temporary path for each, all in one hidden folder beside the first; on
    success rename them into place, the first (the file users name) last; on failure remove
    them all and leave every old file untouched.

    A temporary path has its destination's file name, so a writer that puts a companion file
    beside it (OpenVINO's ``.bin``) puts it in the same folder: list the companion too.

    Raises:
        EdgeresError: if a destination is not an acceptable output, two are the same file, or
            writing fails.
    """
    paths = [Path(d) for d in dsts]
    check_outputs(paths)
    with output_dir(paths[0]) as parent:
        folder = Path(tempfile.mkdtemp(prefix=f".{paths[0].name}.", dir=parent))
        try:
            tmps = {d: folder / d.name for d in paths}
            try:
                yield tmps
            except OutputWriteError as e:  # a writer's own temporary: name the user's file
                real = next((d for d, t in tmps.items() if e.path.parent == folder
                             and e.path.name == t.name), None)
                if real is None:
                    raise
                raise OutputWriteError(real, e.why) from None
            missing = [str(d) for d, t in tmps.items() if not t.is_file()]
            if missing:
                msg = f"nothing was written for {', '.join(missing)}; report this"
                raise EdgeresError(msg)
            for d in paths:
                check_output(d)  # nothing has taken the place of an output meanwhile
            for d in [*paths[1:], paths[0]]:
                _publish(tmps[d], 0o666)
                os.replace(tmps[d], d)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(dst: Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``dst`` (absolute); move it onto ``dst`` only on
    success.

    An existing ``dst`` directory is replaced only after the new one is complete.

    Raises:
        EdgeresError: if ``dst``'s parent directory does not exist or is not writable, ``dst``
            is a link or a non-directory that is not a regular file, or writing fails.
    """
    dst = Path(dst)
    with output_dir(dst, folder=True) as parent:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=parent))
        try:
            yield tmp
            _publish(tmp, 0o777)
            if dst.is_dir():
                shutil.rmtree(dst)
            os.replace(tmp, dst)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# A temporary folder with less than this free after a failure ran out of room, whatever the
# library that hit it made of the error (ORT: "could not be prepared", OpenVINO: "iostream
# error"). Errors writing the outputs (OutputWriteError) keep their own message.
LOW_SPACE = 1 << 20  # bytes
_NO_ROOM = {errno.ENOSPC: "No space left", errno.EDQUOT: "Disk quota exceeded",
            errno.EFBIG: "File too large"}
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a full disk, a quota, a file-size limit


class OutputWriteError(EdgeresError):
    """Writing an output failed (``write_errors``): the output is named, not TMPDIR (unless
    the output was itself a file in the temporary folder)."""

    def __init__(self, path: Path, why: str) -> None:
        room = ""
        if "No space" in why or "quota" in why:
            try:
                parent = Path(path).absolute().parent
                room = f" ({shutil.disk_usage(parent).free / 1e6:.1f} MB free in {parent})"
            except OSError:
                pass
        super().__init__(f"cannot write {path}: {why}{room}; free space or choose another "
                         "output path")
        self.path, self.why = Path(path), why


def _no_room(e: BaseException, errnos: tuple[int, ...]) -> bool:
    """Whether ``e`` or an exception behind it is one of ``errnos`` (or says so in words, as
    ORT and onnx quote an OSError in their own exceptions)."""
    seen: set[int] = set()
    cause: BaseException | None = e
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if (isinstance(cause, OSError) and cause.errno in errnos) \
                or any(_NO_ROOM[n] in str(cause) for n in errnos):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _file_size_limit() -> int | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:  # the folder is missing or unreadable
        return None


def temp_room_gone(folder: Path | None, e: BaseException) -> bool:
    """Whether an error in work under the temporary ``folder`` (None: not made yet) was for
    want of room there: the file system nearly full, a quota, or a file-size limit. An error
    writing an output elsewhere (``OutputWriteError``) is the output's, never the folder's."""
    where = folder if folder is not None else Path(tempfile.gettempdir())
    if isinstance(e, OutputWriteError) and not e.path.absolute().is_relative_to(where):
        return False
    free = _free_bytes(where)
    return ((_file_size_limit() is not None and _no_room(e, (errno.EFBIG,)))
            or (free is not None and free < LOW_SPACE)
            or _no_room(e, (errno.ENOSPC, errno.EDQUOT)))


def tmp_problem(e: BaseException, tmp: Path | None, doing: str | None = None) -> str:
    """THE one line for an error in the temporary folder ``tmp`` (None: not made yet): it
    names that folder, TMPDIR and the free space there, never the output or the input.

    Args:
        e: the error.
        tmp: the temporary folder the work was in, or None when it could not be made.
        doing: what the command was doing there ("extract b.zip"); None when the caller
            knows only that room ran out (``temporary_dir``, after ``temp_room_gone``).
    """
    where = tmp.parent if tmp is not None else Path(tempfile.gettempdir())
    free = _free_bytes(tmp if tmp is not None else where)
    env = os.environ.get("TMPDIR")
    tmpdir = f"TMPDIR={env}" if env else "TMPDIR is not set"
    room = "" if free is None else (f", {free / 1e9:.1f} GB free" if free >= 1e9
                                    else f", {free / 1e6:.1f} MB free")
    limit = _file_size_limit()
    if limit is not None and _no_room(e, (errno.EFBIG,)):
        return (f"{f'cannot {doing}: ' if doing else ''}a temporary file in {where} passed "
                f"the file-size limit (ulimit -f) of {limit:,} bytes ({tmpdir}{room}); raise "
                "the limit for this command")
    fix = "free space there or set TMPDIR to a folder on a larger disk"
    if doing is None:
        return f"the temporary folder {where} ran out of room ({tmpdir}{room}); {fix}"
    why = (e.strerror if isinstance(e, OSError) else None) or type(e).__name__
    if temp_room_gone(tmp, e) or (isinstance(e, OSError) and e.errno in NO_ROOM):
        return (f"cannot {doing} in the temporary folder {where} (no room): {why} "
                f"({tmpdir}{room}); {fix}")
    return (f"cannot {doing} in the temporary folder {where}: {why} ({tmpdir}); set TMPDIR to "
            "a folder that exists and that you can write to")


@contextlib.contextmanager
def temporary_dir(prefix: str) -> Iterator[Path]:
    """``tempfile.TemporaryDirectory`` whose failures for want of room (``temp_room_gone``)
    are one line blaming the temporary folder (``tmp_problem``); every other error passes
    unchanged."""
    try:
        tmp = tempfile.TemporaryDirectory(prefix=prefix)
    except OSError as e:
        if not temp_room_gone(None, e):
            raise
        raise EdgeresError(tmp_problem(e, None)) from None
    with tmp as name:
        try:
            yield Path(name)
        except Exception as e:
            if not temp_room_gone(Path(name), e):
                raise
            raise EdgeresError(tmp_problem(e, Path(name))) from None


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
