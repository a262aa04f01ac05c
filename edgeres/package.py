"""Device bundles: one folder (or .zip) that classifies images without edgeres installed.

``package(model, dst)`` writes the model file (ONNX, or an OpenVINO IR's .xml + .bin),
``metadata.json`` (the record's ``to_json()``, byte for byte as stored in the model; fitted to
the graph when a tool changed the graph's input size after export, see ``ModelMeta.fitted_to``),
``labels.txt``, ``requirements.txt`` (numpy, Pillow and the one runtime, at the oldest versions
the install test runs), ``infer.py`` and a README. ``infer.py`` is a thin entry point over
``edgeres_device/``: edgeres' device package (``edgeres.device``: preprocessing, the record and
its checks, the runtime, the golden check) and the one runtime module the model needs, copied
as files, unchanged, so there is one implementation of each and nothing to keep in sync by
hand. Before the bundle is moved into place its own ``infer.py`` classifies a test image, and
must agree with ``edgeres.runtime``; it is written atomically: a failure leaves nothing at ``dst``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

from edgeres import __version__, _model_needs, runtimes
from edgeres._fs import (
    NO_ROOM,
    OutputWriteError,
    atomic_dir,
    atomic_write,
    check_output,
    tmp_problem,
    write_errors,
)
from edgeres.errors import EdgeresError, ModelFileError
from edgeres.meta import ModelMeta

__all__ = ["TESTED_MINIMUMS", "TESTED_PLATFORMS", "PackageReport", "copy_device_code", "package"]

# The oldest releases tests/test_install.py installs (pinned with ==) and runs a bundle's
# infer.py with; raise one only together with that test. numpy 1.24.4 is the first numpy
# onnxruntime 1.17.0 accepts; each runtime's own minimum is its module's ``min_version``.
# A runtime needing more of numpy or Pillow says so in its device requirements (ExecuTorch).
TESTED_MINIMUMS: dict[str, str] = {
    **{dist: version for rt in map(runtimes.get, runtimes.RUNTIME_NAMES)
       for dist, version in runtimes.device_requirements(rt)},
    "numpy": "1.24.4", "Pillow": "10.0.0",
}
# Platforms on which tests/test_install.py has installed and run a bundle (it fails on a
# platform missing here, so the claim in requirements.txt stays true).
TESTED_PLATFORMS: tuple[str, ...] = ("Linux-x86_64 CPython 3.11",)
_CHECK_TIMEOUT_S = 300  # one image through infer.py; generous for a busy machine
_TIE = 1e-6  # top-1 probabilities this close may rank two classes either way
_BUNDLE_MARKS = ("metadata.json", "infer.py")  # files that make a folder or .zip a bundle
@contextlib.contextmanager
def _room_errors(dst: Path, tmp: Path | None = None) -> Iterator[None]:
    """A full disk (or quota, or size limit) while the block writes: in ``tmp`` (the
    temporary folder) it names TMPDIR; otherwise the output and the free space beside it
    (``_fs.OutputWriteError``, as every command's output says it)."""
    try:
        yield
    except OSError as e:
        if e.errno not in (*NO_ROOM, errno.EROFS):
            raise
        if tmp is not None:
            raise EdgeresError(tmp_problem(e, tmp, f"build {dst.name}")) from None
        raise OutputWriteError(dst, e.strerror or str(e)) from None


@dataclass(frozen=True)
class PackageReport:
    """What ``package`` wrote.

    Attributes:
        path: the bundle folder or .zip.
        files: names of the files in the bundle.
        runtime: the one inference runtime it needs ("onnxruntime" or "openvino").
        size_bytes: total size of the files.
        meta: the model's record (as in ``metadata.json``).
        check_label: top-1 label the bundled model gave a grey test image when it was checked.
        golden_data: where the golden images came from, in words (``_golden_data``).
        runtime_needs: what else the runtime needs on the device besides numpy and Pillow
            (``("torch",)`` for ExecuTorch's Python runtime).
    """

    path: Path
    files: tuple[str, ...]
    runtime: str
    size_bytes: int
    meta: ModelMeta
    check_label: str
    golden_data: str = ""
    runtime_needs: tuple[str, ...] = ()


def platform_label() -> str:
    """This machine as ``TESTED_PLATFORMS`` names platforms: ``Linux-x86_64 CPython 3.11``."""
    return (f"{platform.system()}-{platform.machine()} "
            f"{platform.python_implementation()} {sys.version_info[0]}.{sys.version_info[1]}")


def copy_device_code(folder: Path, runtime: str) -> list[str]:
    """Copy ``infer.py`` and the device package for ``runtime`` into bundle ``folder``.

    Returns:
        The paths written, relative to ``folder``.
    """
    from edgeres.device import bundle_files

    written = []
    for src, rel in bundle_files(runtime):
        dst = folder / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        written.append(rel)
    return written


def _version(dist: str) -> str:
    try:
        return _metadata.version(dist)
    except _metadata.PackageNotFoundError:
        return "not installed"


def runtime_minimum(model: Path) -> tuple[str, str]:
    """The oldest release of ``model``'s runtime that reads it, and why (``_model_needs``):
    from its IR version and opset imports for ONNX, its layers' opsets for an OpenVINO IR;
    never below the runtime's tested ``min_version``.

    Raises:
        ModelFileError: if the model file cannot be read.
    """
    rt = runtimes.for_file(model)
    try:
        if rt.name == "ort":
            ir, imports, _ = _model_needs.onnx_needs(model.read_bytes())
            return _model_needs.ort_minimum(ir, imports, rt.min_version, _version(rt.dist))
        if rt.name == "openvino":
            return _model_needs.ir_needs(model, rt.min_version)
    except (OSError, ValueError) as e:
        msg = f"cannot read {model} to find the runtime version it needs ({e}); re-export it"
        raise ModelFileError(msg) from None
    return rt.min_version, "the runtime's tested minimum"


def render_requirements(runtime: str, minimum: tuple[str, str] | None = None,
                        also: tuple[tuple[str, str], ...] = ()) -> str:
    """``requirements.txt``: the minimum versions and where they were tested.

    Args:
        runtime: the runtime's pip distribution.
        minimum: (version, why) the model needs of it (``runtime_minimum``); None: the
            tested minimum.
        also: (distribution, minimum) of what else the runtime needs on the device
            (``runtimes.device_requirements`` after its own: torch for ExecuTorch); one naming
            numpy or Pillow raises that pin.
    """
    need, why = minimum or (TESTED_MINIMUMS[runtime], "the runtime's tested minimum")
    pins = list({"numpy": TESTED_MINIMUMS["numpy"], "Pillow": TESTED_MINIMUMS["Pillow"],
                 runtime: need, **dict(also)}.items())
    checked = ", ".join(f"{name} {_version(name)}" for name, _ in pins)
    return (
        "# Python >= 3.10. Install: pip install -r requirements.txt\n"
        "# Minimum versions: the oldest releases edgeres' install test runs infer.py with; "
        f"{runtime} {need} for this model ({why})"
        + "".join(f"; {runtime} needs {name} >= {version}" for name, version in also) + ".\n"
        f"# Tested on: {'; '.join(TESTED_PLATFORMS)}\n"
        f"# Packaged and checked on {platform_label()} with {checked} (edgeres {__version__})\n"
        + "".join(f"{name}>={version}\n" for name, version in pins)
    )


def render_readme(meta: ModelMeta, model_files: list[str], runtime: str,
                  also: tuple[str, ...] = ()) -> str:
    """A short README: what the bundle holds and how to run it; ``also`` names what else the
    runtime needs on the device (torch for ExecuTorch's Python runtime)."""
    pre = meta.preprocess
    h, w = meta.input_size
    needs = "".join(f"\n{runtime}'s Python runtime also needs {name}, which requirements.txt "
                    "installs." for name in also)
    layout = ("uint8 NHWC pixels" if meta.input.normalized_in_graph
              else f"float32 {meta.input.layout}")
    return f"""# {meta.name} — edgeres device bundle

Classifies images into {meta.num_classes} classes ({', '.join(meta.labels[:5])}{', ...' if
len(meta.labels) > 5 else ''}) with {runtime}, numpy and Pillow; edgeres is not needed.{needs}

```
pip install -r requirements.txt
python infer.py photo.jpg other.png --top-k 3
python infer.py photo.jpg --json      # for scripts (schema_version 1)
python infer.py --verify              # this device vs the packaging host; exit 1 on FAIL
```

| file | what |
|---|---|
| {' + '.join(model_files)} | the model ({meta.precision}, input {layout} {h}x{w}) |
| metadata.json | the model's edgeres record: preprocessing, labels, provenance |
| labels.txt | one class name per line, in output order |
| requirements.txt | tested minimum versions and platforms |
| infer.py | the command line; runs the code in edgeres_device/ |
| edgeres_device/ | edgeres' device code (preprocessing, record, runtime, golden check), unchanged |
| golden.npz | golden inputs, the packaging host's logits and the tolerances `--verify` checks |

Preprocessing (from metadata.json): resize {pre.resize} ({pre.interpolation}), centre crop
{h}x{w}, {pre.color}, mean {list(pre.mean)}, std {list(pre.std)} on the 0-1 scale.

Packaged with edgeres {__version__}.
"""


def _model_files(path: Path) -> list[tuple[Path, str]]:
    """(source, name in the bundle) of the model and the files its runtime needs beside it:
    ``model`` in place of the model's stem (``m.xml`` + ``m.bin``, ``r20.pte`` +
    ``r20.pte.json`` become ``model.xml`` + ``model.bin``, ``model.pte`` + ``model.pte.json``)."""
    files = [path, *runtimes.for_file(path).companion_files(path)]
    return [(f, "model" + (f.name[len(path.stem):] if f.name.startswith(path.stem)
                           else f.suffix).lower()) for f in files]


def _is_bundle_zip(path: Path) -> bool:
    """A .zip that ``package`` wrote: every member in one folder, with infer.py and metadata."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    top = {n.split("/", 1)[0] for n in names}
    return len(top) == 1 and {f"{t}/{f}" for t in top for f in _BUNDLE_MARKS} <= names


def _check_destination(dst: Path, inputs: list[Path], overwrite: bool) -> None:
    is_zip = dst.suffix.lower() == ".zip"
    check_output(dst, inputs=inputs, folder=not is_zip)
    if not dst.exists():
        return
    if not overwrite:
        msg = f"{dst} already exists; choose another output path or pass --force to replace it"
        raise EdgeresError(msg)
    if is_zip:
        is_bundle = dst.is_file() and _is_bundle_zip(dst)
    else:
        is_bundle = dst.is_dir() and all((dst / f).is_file() for f in _BUNDLE_MARKS)
    if not is_bundle:
        msg = f"{dst} exists and is not an edgeres bundle; not replacing it, choose a new path"
        raise EdgeresError(msg)


def _golden_data(given: str | Path | None, model: Path, meta: ModelMeta
                 ) -> tuple[str | Path | None, str]:
    """The golden images and, in words, where they come from.

    A record is untrusted input: the validation or calibration data it names is used only
    when it is a registered name or a path inside the model's folder (a relative one read
    from there, never from the current directory); anything else is refused, so a model file
    cannot make ``package`` copy images it was never given into a bundle.

    Raises:
        DataError: when the record names data outside the model's folder and none was given.
    """
    from edgeres.errors import DataError
    from edgeres.names import dataset_paths
    from edgeres.verify import _default_data

    if given is not None:
        return given, f"{given} (--golden)"
    name = _default_data(meta)
    if name is None:
        return None, "random pixels (no validation data known; pass --golden DATA)"
    if name in dataset_paths():  # shipped data, never a path the record can point anywhere
        return name, f"{name} (chosen from the model's record)"
    folder = model.parent.resolve()
    where = (Path(name) if Path(name).is_absolute() else model.parent / name).resolve()
    if where.is_relative_to(folder) and where.exists():
        return where, f"{where} (named in the model's record, inside the model's folder)"
    msg = (f"the record of {model} names {name[:200]!r} as its validation or calibration data; "
           "edgeres follows a record's path only inside the model's folder: pass the golden "
           "images with --golden DATA")
    raise DataError(msg)


def _write_bundle(folder: Path, path: Path, meta: ModelMeta, record: str,
                  golden: tuple[str | Path | None, int] = (None, 64)) -> tuple[list[str], str]:
    """Write every bundle file into ``folder``; return the file names and the runtime.

    ``golden`` is (data, samples) for ``golden.npz`` (``edgeres.verify.make_golden``).
    """
    from edgeres.verify import make_golden

    copies, rt = _model_files(path), runtimes.for_file(path)
    runtime, *also = runtimes.device_requirements(rt)
    for src, name in copies:
        shutil.copyfile(src, folder / name)
    model = folder / copies[0][1]
    if rt.name == "ort":  # imports no node uses would raise the minimum
        try:
            model.write_bytes(_model_needs.drop_unused_opsets(model.read_bytes()))
        except ValueError as e:
            msg = f"{path} is not a readable ONNX model ({e}); re-export it"
            raise ModelFileError(msg) from None
    copy_device_code(folder, rt.name)
    # The record exactly as the model file stores it (ModelMeta.to_json() wrote it there).
    (folder / "metadata.json").write_bytes(record.encode("utf-8"))
    (folder / "labels.txt").write_text("".join(f"{label}\n" for label in meta.labels), "utf-8")
    (folder / "requirements.txt").write_text(
        render_requirements(runtime[0], runtime_minimum(model), tuple(also)), "utf-8")
    (folder / "README.md").write_text(
        render_readme(meta, [n for _, n in copies], runtime[0],
                      tuple(n for n, _ in also if n not in ("numpy", "Pillow"))),
        "utf-8")
    make_golden(folder / "golden.npz", model, meta, record, data=golden[0],
                samples=golden[1])
    return sorted(p.name for p in folder.iterdir()), runtime[0]


def _tree(folder: Path) -> list[Path]:
    """Every file in the bundle ``folder``, sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _check_bundle(folder: Path, path: Path) -> str:
    """Run the bundle's own ``infer.py`` on a grey image and compare it with edgeres.runtime.

    The rendered ``infer.py`` runs in a subprocess with this interpreter, so a bug in the
    template (ranking, runtime set-up, reported precision) fails here rather than on a device.

    Returns:
        The top-1 label of the grey image.

    Raises:
        EdgeresError: if ``infer.py`` fails, or its top class, runtime or executed precision
            differ from what edgeres.runtime gives for the same image.
    """
    from PIL import Image

    from edgeres.device.infer import find_model
    from edgeres.runtime import load

    model = find_model(folder)
    meta = ModelMeta.from_json((folder / "metadata.json").read_text("utf-8"))
    h, w = meta.input_size
    with tempfile.TemporaryDirectory(prefix="edgeres.check.") as tmp:
        image = Path(tmp) / "grey.png"
        Image.new("L" if meta.input.channels == 1 else "RGB", (w, h), 128).save(image)
        predictor = load(model, meta=meta)
        want = predictor.predict(image, top_k=1)[0]
        doc = _run_infer(folder, image)
    got = doc["predictions"][0]
    expected = (predictor.runtime, predictor.executed_precision, want.indices[0])
    found = (doc["runtime"], doc["executed_precision"], got["indices"][0])
    # Two classes whose probabilities tie may rank either way; anything else is a bug.
    tie = abs(want.probabilities[0] - got["probabilities"][0]) <= _TIE
    if found[:2] != expected[:2] or (found[2] != expected[2] and not tie):
        msg = (f"the bundle's infer.py gives (runtime, precision, top class) {found} for a grey "
               f"image but edgeres.runtime gives {expected}; fix edgeres/device")
        raise EdgeresError(msg)
    return want.labels[0]


def _run_infer(folder: Path, image: Path) -> dict[str, Any]:
    """``python infer.py IMAGE --json --top-k 1`` in the bundle, parsed."""
    folder = folder.absolute()  # run with cwd=folder: a relative path would be joined twice
    # -B: no __pycache__ written into the bundle's edgeres_device/
    cmd = [sys.executable, "-B", str(folder / "infer.py"), str(Path(image).absolute()), "--json",
           "--top-k", "1"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=folder,
                             timeout=_CHECK_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        msg = f"the bundle's infer.py did not finish in {_CHECK_TIMEOUT_S} s on a grey image"
        raise EdgeresError(msg) from None
    lines = out.stderr.strip().splitlines()
    if out.returncode != 0:
        why = lines[-1][:200] if lines else f"exit code {out.returncode}"
        msg = (f"the bundle's infer.py failed on a grey image ({why}); nothing was written, "
               "report this with the model")
        raise EdgeresError(msg)
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        msg = "the bundle's infer.py --json printed no JSON; fix edgeres/device"
        raise EdgeresError(msg) from None


def _check_golden(folder: Path) -> None:
    """``python infer.py --verify --json`` in the new bundle must pass on this host."""
    cmd = [sys.executable, "-B", str(folder.absolute() / "infer.py"), "--verify", "--json"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=folder,
                             timeout=_CHECK_TIMEOUT_S, check=False)
        verdict = json.loads(out.stdout)
    except subprocess.TimeoutExpired:
        msg = f"the bundle's infer.py --verify did not finish in {_CHECK_TIMEOUT_S} s"
        raise EdgeresError(msg) from None
    except json.JSONDecodeError:
        lines = out.stderr.strip().splitlines()
        msg = (f"the bundle's infer.py --verify printed no verdict "
               f"({lines[-1][:200] if lines else out.returncode}); fix edgeres")
        raise EdgeresError(msg) from None
    target = [str(f) for f in verdict.get("failures", []) if str(f).startswith("target: ")]
    if target:  # golden logits made here would be the wrong ones (golden.target_fails)
        msg = (f"this host cannot make the golden file: {target[0][len('target: '):]}; "
               "package it on a CPU the quantization target suits")
        raise EdgeresError(msg)
    if not verdict.get("passed"):
        msg = (f"the new bundle fails its own golden check on this host "
               f"({'; '.join(verdict.get('failures', []))[:300]}); report this with the model")
        raise EdgeresError(msg)


def package(model: str | Path, dst: str | Path, *, overwrite: bool = False,
            golden: str | Path | None = None, golden_samples: int = 64) -> PackageReport:
    """Write a self-contained device bundle for ``model``.

    Args:
        model: an ``.onnx`` file, an OpenVINO IR ``.xml``, or a registered model name
            (``cifar10``; see ``edgeres.names``).
        dst: the bundle folder to create, or a path ending in ``.zip`` for a zip archive
            whose files sit in a folder named after it.
        overwrite: replace an existing bundle folder or .zip at ``dst`` (anything else at
            ``dst`` is never replaced).
        golden: images for ``golden.npz`` (a path or registered name); None takes the
            validation or calibration data the record names (``edgeres.verify.make_golden``).
        golden_samples: how many golden images (fewer for large inputs).

    Returns:
        A ``PackageReport``.

    Raises:
        UnknownNameError: if ``model`` is neither a file nor a registered name.
        ModelFileError: if the model file is not ONNX/IR or does not load.
        MetadataError: if the model carries no metadata record.
        EdgeresError: if ``dst`` exists (without ``overwrite``) or cannot be written.
    """
    from edgeres.names import resolve_model_file
    from edgeres.runtime import load

    path = resolve_model_file(model)
    if not runtimes.readers(path):
        msg = f"{path} is not a model file; package {runtimes.suffix_list()}"
        raise ModelFileError(msg)
    loaded = load(path)  # loads the graph and its record: a broken model fails here
    meta, record = loaded.meta, loaded.backend.record_text
    if record is None or ModelMeta.from_json(record).input_size != meta.input_size:
        record = meta.to_json()  # infer.py must resize to the size the graph takes
    dst = Path(dst)
    _check_destination(dst, [p for p, _ in _model_files(path)], overwrite)
    golden, golden_words = _golden_data(golden, path, meta)
    if dst.suffix.lower() == ".zip":
        try:
            work = tempfile.TemporaryDirectory(prefix="edgeres.package.")
        except OSError as e:
            raise EdgeresError(tmp_problem(e, None, f"build {dst.name}")) from None
        with write_errors(dst), work as tmp:
            folder = Path(tmp) / dst.stem
            with _room_errors(dst, Path(tmp)):
                folder.mkdir()
                files, runtime = _write_bundle(folder, path, meta, record,
                                               (golden, golden_samples))
            label = _check_bundle(folder, path)
            _check_golden(folder)
            with atomic_write(dst) as tmp_zip, _room_errors(dst):
                with zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_DEFLATED) as z:
                    for file in _tree(folder):
                        z.write(file, f"{dst.stem}/{file.relative_to(folder).as_posix()}")
            size = sum(f.stat().st_size for f in _tree(folder))
    else:
        with atomic_dir(dst) as folder, _room_errors(dst):
            files, runtime = _write_bundle(folder, path, meta, record, (golden, golden_samples))
            label = _check_bundle(folder, path)
            _check_golden(folder)
            size = sum(f.stat().st_size for f in _tree(folder))
    needs = tuple(name for name, _ in runtimes.device_requirements(runtimes.for_file(path))[1:]
                  if name not in ("numpy", "Pillow"))
    return PackageReport(dst, tuple(files), runtime, size, meta, label, golden_words, needs)
