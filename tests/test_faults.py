"""The bad-input and fault matrix (issue 14): every class of fault, over the commands it hits.

Each case checks the exit code, that stderr has exactly one ``Error:`` line saying what and
how to fix it (or the one interruption line), that no traceback is printed, and that nothing
was left, replaced or half-written. Nothing here points at the system's own null or full
devices: a device node, FIFO or full file system is made in the test's own folder.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import one_error, small_tmpfs
from PIL import Image

from edgeres.cli import cli
from edgeres.names import resolve_data, resolve_model_file

FAST_BENCH = ["--runtime", "ort-cpu", "--duration", "0.1", "--rounds", "1", "--warmup", "1",
              "--no-memory"]
EDGERES = [sys.executable, "-m", "edgeres"]


def _run(*args: object, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env=env).invoke(cli, [str(a) for a in args])


def _listing(folder: Path) -> list[str]:
    """Every name under ``folder``, hidden temporaries included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# Commands that write a file, with the output suffix each needs (fast settings throughout).
WRITERS: dict[str, tuple[str, Callable[[Path], list[object]]]] = {
    "export": (".onnx", lambda o: ["export", "cifar_resnet20", "--weights", "cifar10", "-o", o]),
    "quantize": (".onnx", lambda o: ["quantize", "cifar10", "--calib", "cifar10", "--samples", 4,
                                     "-o", o]),
    "quantize-openvino": (".xml", lambda o: ["quantize", "cifar10", "--calib", "cifar10",
                                             "--samples", 4, "--backend", "openvino", "-o", o]),
    "bench-json": (".json", lambda o: ["bench", "cifar10", *FAST_BENCH, "--json", o]),
    "bench-csv": (".csv", lambda o: ["bench", "cifar10", *FAST_BENCH, "--csv", o]),
    "bench-markdown": (".md", lambda o: ["bench", "cifar10", *FAST_BENCH, "--markdown", o]),
    "package-zip": (".zip", lambda o: ["package", "cifar10", "-o", o]),
}
_SLOW_WRITERS = {"export", "quantize-openvino", "package-zip"}  # > 1 s each: not in test-fast


def _make_node(path: Path, kind: str) -> str:
    """Put a ``kind`` at ``path``; return the word the refusal must use."""
    if kind == "fifo":
        os.mkfifo(path)
        return "FIFO"
    if kind == "folder":
        path.mkdir()
        return "directory"
    if kind == "device":
        try:  # the null device's numbers, in the test's own folder: writes to it are harmless
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs root")
        return "character device"
    target = path.with_name("target" + path.suffix)
    target.write_bytes(b"keep")
    path.symlink_to(target)
    return "symbolic link"


def _kind_of(path: Path) -> str:
    mode = os.lstat(path).st_mode
    return ("fifo" if stat.S_ISFIFO(mode) else "folder" if stat.S_ISDIR(mode)
            else "device" if stat.S_ISCHR(mode) else "link" if stat.S_ISLNK(mode) else "file")


# --- class: outputs that are not regular files ---------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "folder", "device", "link"])
@pytest.mark.parametrize("command", list(WRITERS))
def test_output_that_is_not_a_regular_file_is_refused(tmp_path: Path, command: str,
                                                      kind: str) -> None:
    """A FIFO, folder, device node or symlink at the output is refused and left as it was."""
    suffix, args = WRITERS[command]
    out = tmp_path / f"out{suffix}"
    word = _make_node(out, kind)
    before = _listing(tmp_path)
    # click itself refuses a folder for a file option (usage error, exit 2)
    one_error(_run(*args(out)), str(out), word, codes=(1, 2) if kind == "folder" else (1,))
    assert _kind_of(out) == ("link" if kind == "link" else kind)
    assert _listing(tmp_path) == before
    if kind == "link":
        assert out.read_bytes() == b"keep"


# --- class: outputs that collide with inputs or with each other ---------------------------------


def test_bench_output_that_is_the_model_is_refused(tmp_path: Path) -> None:
    """`bench m.onnx --json m.onnx` would overwrite the model with JSON: refused, model intact."""
    model = tmp_path / "m.onnx"
    shutil.copy(resolve_model_file("cifar10"), model)
    data = model.read_bytes()
    one_error(_run("bench", model, *FAST_BENCH, "--json", model), "is the input")
    assert model.read_bytes() == data


@pytest.mark.parametrize("second", ["--csv", "--markdown"])
def test_two_bench_outputs_on_one_path_are_refused(tmp_path: Path, second: str) -> None:
    """`--json x --csv x` (also through another spelling of the path) is refused up front."""
    one_error(_run("bench", "cifar10", *FAST_BENCH, "--json", tmp_path / "x",
                    second, tmp_path / "." / "x"), "same file")
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("command", ["export", "quantize"])
def test_output_that_is_an_input_is_refused(tmp_path: Path, command: str) -> None:
    """export -o over its --weights, quantize -o over its model: refused, the input intact."""
    if command == "export":
        src = tmp_path / "w.pt"
        shutil.copy(resolve_model_file("cifar10").with_suffix(".pt"), src)
        args = ["export", "cifar_resnet20", "--weights", src, "-o", src]
    else:
        src = tmp_path / "m.onnx"
        shutil.copy(resolve_model_file("cifar10"), src)
        args = ["quantize", src, "--calib", "cifar10", "-o", src]
    data = src.read_bytes()
    one_error(_run(*args), "input")
    assert src.read_bytes() == data and _listing(tmp_path) == [src.name]


@pytest.mark.parametrize("unrelated", ["text", "zip", "folder"])
def test_package_force_never_replaces_an_unrelated_file(tmp_path: Path, unrelated: str) -> None:
    """--force replaces a bundle, never a file or folder edgeres did not write."""
    out = tmp_path / ("b" if unrelated == "folder" else "b.zip")
    if unrelated == "text":
        out.write_text("my notes")
    elif unrelated == "zip":
        with zipfile.ZipFile(out, "w") as z:
            z.writestr("photos/cat.jpg", b"jpeg")
    else:
        out.mkdir()
        (out / "thesis.tex").write_text("x")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    one_error(_run("package", "cifar10", "-o", out, "--force"), "not an edgeres bundle")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_quantize_reports_of_onnx_and_xml_outputs_do_not_collide() -> None:
    """`-o m.onnx` and `-o m.xml` in one folder get a report each; the old name is still read."""
    from edgeres.quantize._report import find_report, legacy_report_path, report_path_for

    onnx_report, xml_report = report_path_for(Path("d/m.onnx")), report_path_for(Path("d/m.xml"))
    assert onnx_report == Path("d/m.onnx.quant.json") and xml_report == Path("d/m.xml.quant.json")
    assert legacy_report_path(Path("d/m.onnx")) == Path("d/m.quant.json")
    assert find_report(Path("/nonexistent/m.onnx")) is None


# --- class: all-or-nothing outputs ----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["ort", pytest.param("openvino", marks=pytest.mark.slow)])
def test_quantize_report_failure_keeps_old_model_and_report(
        tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the report cannot be written, the old model (.xml and .bin) and report stay."""
    import edgeres.quantize as q

    out = tmp_path / ("m.onnx" if backend == "ort" else "m.xml")
    olds = [out, out.with_name(out.name + ".quant.json")]
    olds += [out.with_suffix(".bin")] if backend == "openvino" else []
    for path in olds:
        path.write_bytes(b"old " + path.name.encode())

    def full(report: object, path: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(q, "write_report", full)
    one_error(_run("quantize", "cifar10", "--calib", "cifar10", "--samples", 4, "--backend",
                    backend, "--force", "-o", out), "No space left on device")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {
        p.name: b"old " + p.name.encode() for p in olds}


def test_quantize_report_path_taken_by_a_folder_fails_before_work(tmp_path: Path) -> None:
    """A folder where the report goes is found before calibrating, and no model is written."""
    (tmp_path / "m.onnx.quant.json").mkdir()
    one_error(_run("quantize", "cifar10", "--calib", "cifar10", "-o", tmp_path / "m.onnx"),
               "m.onnx.quant.json", "directory")
    assert _listing(tmp_path) == ["m.onnx.quant.json"]


# --- class: disk full and closed streams --------------------------------------------------------


@pytest.mark.parametrize("command", [pytest.param(c, marks=pytest.mark.slow) if c in _SLOW_WRITERS
                                     else c for c in WRITERS])
def test_disk_full_at_the_write_is_one_line_and_leaves_nothing(
        tmp_path: Path, command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while an output is written (injected at the publishing step every writer
    shares): one line, exit 1, no output and no temporary left."""
    import edgeres._fs as fs

    def full(path: Path, mode: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fs, "_publish", full)
    suffix, args = WRITERS[command]
    one_error(_run(*args(tmp_path / f"out{suffix}")), "No space left on device")
    assert _listing(tmp_path) == []


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs of the test's own, filled to the last byte (skipped where mount is refused)."""
    with small_tmpfs(tmp_path / "full", "1m") as mnt:
        yield mnt


@pytest.mark.parametrize("command", [pytest.param(c, marks=pytest.mark.slow)
                                     if c in _SLOW_WRITERS else c
                                     for c in ("export", "bench-json", "package-zip")])
def test_real_full_file_system_is_one_line(small_fs: Path, command: str) -> None:
    """On a file system with no space left: one line, exit 1, nothing but the filler there."""
    suffix, args = WRITERS[command]
    one_error(_run(*args(small_fs / f"out{suffix}")), "No space left on device")
    assert _listing(small_fs) == ["filler"]


def _images(folder: Path, n: int) -> list[str]:
    folder.mkdir()
    Image.new("RGB", (32, 32), (120, 30, 200)).save(folder / "a.png")
    return [str(folder / "a.png")] * n


@pytest.mark.slow
def test_stdout_closed_early_is_quiet(tmp_path: Path) -> None:
    """`predict ... | head -c1`: no traceback, exit 0 or 141 (the shell's SIGPIPE status)."""
    args = [*EDGERES, "predict", "cifar10", *_images(tmp_path / "img", 400), "--json"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.read(1) == b"{"
    p.stdout.close()
    _, err = p.communicate(timeout=300)
    assert p.returncode in (0, 141), err
    assert b"Traceback" not in err and b"Exception ignored" not in err, err


def test_stdout_on_a_full_file_system_is_one_line(tmp_path: Path, small_fs: Path) -> None:
    """`predict ... > full-disk/out.txt`: one line naming the cause, exit 1, no traceback."""
    with open(small_fs / "out.txt", "w") as out:
        p = subprocess.run([*EDGERES, "predict", "cifar10", *_images(tmp_path / "img", 50)],
                           stdout=out, stderr=subprocess.PIPE, timeout=300, check=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and "Traceback" not in err and "Exception ignored" not in err, err
    assert err.strip().splitlines()[-1].startswith("Error: cannot write to standard output")


# --- class: signals ---------------------------------------------------------------------------


def _default_signals() -> None:
    """In the child: SIGINT/SIGHUP/SIGTERM at their defaults. edgeres keeps a signal its parent
    ignores (as `nohup` asks), and a test runner started in the background or under nohup
    passes SIGINT/SIGHUP on ignored, which would make these tests measure that instead."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def _start_quantize(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """A quantize run long enough to be caught working, with its own TMPDIR."""
    tmpdir, out = tmp_path / "tmp", tmp_path / "out"
    tmpdir.mkdir()
    out.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    p = subprocess.Popen([*EDGERES, "quantize", "cifar10", "--calib", "cifar10", "--val",
                          "cifar10-val", "--samples", "300", "-o", str(out / "m.onnx")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                         preexec_fn=_default_signals)
    deadline = time.monotonic() + 120
    while not any(tmpdir.glob("edgeres.quant.*")):
        assert p.poll() is None, p.communicate()[1]
        assert time.monotonic() < deadline, "quantize never made its temporary folder"
        time.sleep(0.05)
    time.sleep(0.5)  # inside the work, not at its start
    return p, tmpdir, out


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "words"), [
    (signal.SIGTERM, 143, "Terminated."), (signal.SIGHUP, 129, "Hung up."),
    (signal.SIGINT, 130, "Interrupted.")])
def test_signal_cleans_up_and_exits_128_plus_signal(tmp_path: Path, sig: int, code: int,
                                                    words: str) -> None:
    """SIGTERM/SIGHUP/SIGINT mid-quantize: 128+signal, one line, no temporaries anywhere."""
    p, tmpdir, out = _start_quantize(tmp_path)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    text = err.decode()
    assert p.returncode == code, text
    assert "Traceback" not in text and text.strip().splitlines()[-1] == words, text
    assert _listing(tmpdir) == [] and _listing(out) == []


@pytest.mark.slow
def test_second_ctrl_c_during_cleanup_prints_no_traceback(tmp_path: Path) -> None:
    """Two Ctrl-C in a row: still one line, exit 130, and the cleanup finished."""
    p, tmpdir, out = _start_quantize(tmp_path)
    p.send_signal(signal.SIGINT)
    time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    text = err.decode()
    assert p.returncode == 130 and "Traceback" not in text, text
    assert _listing(tmpdir) == [] and _listing(out) == []


# --- class: resource requests -------------------------------------------------------------------


def test_bench_batch_too_large_for_memory_is_refused_with_the_figure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """--batch beyond memory is refused before allocating, with the estimate and what is free."""
    import edgeres._resources as res

    monkeypatch.setattr(res, "available_memory", lambda: 2 * 10**9)
    line = one_error(_run("bench", "cifar10", *FAST_BENCH, "--batch", 100000),
                      "--batch 100000", "GB of memory", "2.0 GB is available", "smaller --batch")
    assert "--input-size" not in line


def test_export_huge_batch_blames_batch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`export --batch 1000000` names --batch (it blamed --input-size) and writes nothing."""
    import edgeres._resources as res

    monkeypatch.setattr(res, "available_memory", lambda: 2 * 10**9)
    line = one_error(_run("export", "cifar_resnet20", "--batch", 1000000, "-o",
                           tmp_path / "m.onnx"), "--batch 1000000", "smaller --batch")
    assert "--input-size" not in line and _listing(tmp_path) == []


@pytest.mark.parametrize("command", ["bench", "predict"])
def test_threads_above_the_cpus_are_capped_with_a_note(tmp_path: Path, command: str) -> None:
    """--threads 1000 runs with the usable CPUs and says so."""
    from edgeres._resources import usable_cpus

    cpus = usable_cpus()
    if command == "bench":
        out = tmp_path / "b.json"
        result = _run("bench", "cifar10", *FAST_BENCH, "--threads", 1000, "--json", out)
        assert result.exit_code == 0, result.output
        rows = json.loads(out.read_text())["rows"]
        assert {r["threads"] for r in rows} == {cpus}
    else:
        result = _run("predict", "cifar10", *_images(tmp_path / "img", 1), "--threads", 1000)
        assert result.exit_code == 0, result.output
    assert f"--threads 1000 is more than the {cpus} CPUs" in result.output


# --- class: inputs that are not what they seem ------------------------------------------------


@pytest.mark.parametrize("use", ["quantize --calib", "bench --eval"])
def test_truncated_archive_is_one_line(tmp_path: Path, use: str) -> None:
    """A .tar.gz cut short is 'truncated', not click's bare 'Aborted!'."""
    archive = tmp_path / "data.tar.gz"
    archive.write_bytes(resolve_data("cifar10-test").read_bytes()[:200_000])
    if use.startswith("quantize"):
        args = ["quantize", "cifar10", "--calib", archive, "--samples", 4, "-o",
                tmp_path / "q.onnx"]
    else:
        args = ["bench", "cifar10", *FAST_BENCH, "--eval", archive]
    result = _run(*args)
    one_error(result, "data.tar.gz", "truncated", "re-create it")
    assert "Aborted!" not in result.output and _listing(tmp_path) == ["data.tar.gz"]


# --- class: exit codes --------------------------------------------------------------------------


def test_bench_with_no_row_measured_fails_and_still_writes_its_report(tmp_path: Path) -> None:
    """Every requested row skipped: exit 1 naming why, and the JSON still records the rows."""
    out = tmp_path / "b.json"
    line = one_error(_run("bench", "cifar10-int8", "--precision", "fp32", *FAST_BENCH,
                           "--json", out), "no configuration was measured", "skipped")
    assert "cannot make fp32" in line
    assert [r["status"] for r in json.loads(out.read_text())["rows"]] == ["skipped"]


# --- class: messages ----------------------------------------------------------------------------


class _RunsCode:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("true",))


@pytest.mark.parametrize("payload", ["class", "function"])
def test_checkpoint_that_would_run_code_is_refused_as_unsafe(tmp_path: Path,
                                                             payload: str) -> None:
    """torch 2.13 words the refusal two ways; both say 'refused as unsafe', not 'not a
    checkpoint'."""
    import argparse

    import torch

    ckpt = tmp_path / "w.pt"
    obj = {"args": argparse.Namespace(lr=0.1)} if payload == "class" else _RunsCode()
    torch.save(obj, ckpt)
    line = one_error(_run("export", "cifar_resnet20", "--weights", ckpt, "-o",
                           tmp_path / "m.onnx"), "refused as unsafe")
    assert "not a PyTorch checkpoint" not in line
    assert ("argparse.Namespace" if payload == "class" else "system") in line


@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_errors_quote_no_internal_temp_paths(tmp_path: Path, backend: str) -> None:
    """An unknown --exclude layer names the user's model, not edgeres' temporary copy."""
    line = one_error(_run("quantize", "cifar10", "--calib", "cifar10", "--samples", 4,
                           "--backend", backend, "--exclude", "no_such_layer", "-o",
                           tmp_path / ("q.onnx" if backend == "ort" else "q.xml")),
                      "no_such_layer")
    assert "edgeres.quant." not in line and "preprocessed.onnx" not in line


# --- class: side effects ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_no_files_written_outside_the_outputs(tmp_path: Path, backend: str) -> None:
    """predict writes nothing under HOME (ONNX Runtime's and OpenVINO's telemetry are off)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    env.pop("EDGERES_TELEMETRY", None)
    p = subprocess.run([*EDGERES, "predict", "cifar10", *_images(tmp_path / "img", 1),
                        "--backend", backend], env=env, capture_output=True, timeout=300,
                       check=False)
    assert p.returncode == 0, p.stderr
    assert _listing(home) == []


def test_telemetry_opt_in_leaves_the_runtimes_alone() -> None:
    """EDGERES_TELEMETRY=1 sets no ORT variable and hides no module; unset, both are off."""
    code = ("import os, sys, edgeres; print(os.environ.get('ORT_DISABLE_TELEMETRY'), "
            "'openvino_telemetry' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORT_")}
    on = subprocess.run([sys.executable, "-c", code], env={**env, "EDGERES_TELEMETRY": "1"},
                        capture_output=True, text=True, check=True)
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert on.stdout.split() == ["None", "False"] and off.stdout.split() == ["1", "True"]


def test_bench_cache_entry_is_verified_and_rebuilt_when_altered(tmp_path: Path) -> None:
    """A cache file whose sha256 does not match its seal (or has none) is removed, not used."""
    from edgeres.bench._models import _cached, _seal

    entry = tmp_path / "fp32.onnx"
    entry.write_bytes(b"model")
    assert not _cached(entry) and not entry.exists()  # unsealed: an interrupted write
    entry.write_bytes(b"model")
    _seal(entry)
    assert _cached(entry)
    entry.write_bytes(b"edited")
    assert not _cached(entry) and _listing(tmp_path) == []


# --- part 3: the README's own path --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("form", ["bundle/", "bundle", "sub/../bundle", "absolute"])
def test_readme_package_command_works_with_any_path(tmp_path: Path, form: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`edgeres package cifar10-int8 -o bundle/` (the README's words) and other spellings."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    out = str(tmp_path / "bundle") if form == "absolute" else form
    result = _run("package", "cifar10-int8", "-o", out)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "bundle" / "infer.py").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "sub"]


@pytest.mark.slow
def test_bundle_infer_takes_a_folder_like_predict(tmp_path: Path) -> None:
    """The bundle's infer.py expands a folder to its images, in predict's order."""
    from edgeres.data import IMAGE_SUFFIXES

    assert _run("package", "cifar10-int8", "-o", tmp_path / "b").exit_code == 0
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    for i, name in enumerate(["b.png", "a.jpg", "sub/c.png"]):
        Image.new("RGB", (32, 32), (40 * i, 90, 10)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    infer = subprocess.run([sys.executable, str(tmp_path / "b" / "infer.py"), str(folder),
                            "--json"], capture_output=True, text=True, check=True)
    got = [p["image"] for p in json.loads(infer.stdout)["predictions"]]
    predict = _run("predict", "cifar10-int8", folder, "--json")
    assert got == [p["image"] for p in json.loads(predict.stdout)["predictions"]] and len(got) == 3
    from edgeres.device.infer import FOLDER_SUFFIXES

    assert FOLDER_SUFFIXES == IMAGE_SUFFIXES


# Blocks the optional packages in a fresh interpreter: the base install, without a second venv.
_BASE_INSTALL = """
import sys
# None in sys.modules: `import torch` raises ModuleNotFoundError, find_spec says None.
for name in ("torch", "torchvision", "onnx", "onnxslim", "nncf", "openvino", "matplotlib"):
    sys.modules[name] = None
from edgeres.cli import main
sys.argv = ["edgeres", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize(("args", "extra"), [
    (["models"], None),  # a constant table: works in the base install
    (["export", "resnet18", "-o", "{tmp}/m.onnx"], "torch"),
    (["quantize", "cifar10", "--calib", "cifar10", "-o", "{tmp}/q.onnx"], "quantize"),
    (["bench", "resnet18", "--runtime", "ort-cpu", "--no-memory"], "torch"),
    (["info", "cifar10"], None),
    (["predict", "cifar10", "{img}"], None),
    pytest.param(["package", "cifar10", "-o", "{tmp}/b"], None, marks=pytest.mark.slow),
])
def test_base_install_names_the_extra_to_install(tmp_path: Path, args: list[str],
                                                 extra: str | None) -> None:
    """Without torch, onnx, nncf, openvino: a command either works or names its extra."""
    img = _images(tmp_path / "img", 1)[0]
    argv = [a.format(tmp=tmp_path, img=img) for a in args]
    p = subprocess.run([sys.executable, "-c", _BASE_INSTALL, *argv], capture_output=True,
                       text=True, timeout=300, check=False)
    assert "Traceback" not in p.stderr, p.stderr
    if extra is None:
        assert p.returncode == 0, p.stderr
    else:
        assert p.returncode == 1, p.stderr
        last = p.stderr.strip().splitlines()[-1]
        assert last.startswith("Error:") and f"pip install 'edgeres[{extra}]'" in last


def test_no_fault_test_touches_the_real_devices() -> None:
    """This file makes its own devices, FIFOs and full file systems (a temp-and-rename aimed
    at the system's null device would replace it for everyone)."""
    text = Path(__file__).read_text()
    for real in ("/dev/" + "null", "/dev/" + "full"):
        assert real not in text


@pytest.mark.parametrize("command", [
    ["info"], ["predict", "IMAGE"], ["bench", *FAST_BENCH], ["quantize", "--calib", "cifar10",
                                                           "-o", "OUT/q.onnx"],
    ["package", "-o", "OUT/b"], ["eval", "--data", "cifar10-val", "--limit", "4"],
])
def test_a_folder_given_as_the_model_is_one_line(tmp_path: Path, command: list[str]) -> None:
    """A folder where a model file belongs is named as such (not 'does not exist'), exit 1."""
    folder = tmp_path / "models"
    folder.mkdir()
    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32), (90, 120, 150)).save(image)
    args = [str(image) if a == "IMAGE" else a.replace("OUT", str(tmp_path)) for a in command]
    text = one_error(_run(args[0], str(folder), *args[1:]))
    assert "does not exist" not in text
    assert "folder" in text or "not a model file" in text or "not an ONNX model" in text, text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "x.png"]  # nothing written
