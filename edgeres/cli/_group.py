"""The click group ``cli`` and the console-script entry point ``main``.

``_Group.invoke`` is the one place where every ``EdgeresError`` becomes ``Error: <message>``
and exit code 1 (``--debug`` re-raises it with its traceback), a missing optional package
names its extra, Ctrl-C/SIGTERM exit quietly and a dead stdout ends the run without a
traceback. The command modules register their commands on ``cli``.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from edgeres import __version__
from edgeres.errors import ConfigError, EdgeresError

# Optional imports → the extra that provides them (README "Install by hand"); quantize's own
# onnx and openvino come with the quantize extra.
_EXTRAS = {"torch": "torch", "onnx": "torch", "onnxslim": "torch", "nncf": "quantize",
           "openvino": "openvino", "matplotlib": "plot", "ray": "cluster"}


def _missing_extra(e: ModuleNotFoundError, command: str | None) -> EdgeresError | None:
    """The fix-it error for an optional package that is not installed, else None (a bug)."""
    import importlib.util

    top = (e.name or "").split(".")[0]
    extra = _EXTRAS.get(top)
    if extra is None:
        return None
    try:
        if importlib.util.find_spec(top) is not None:
            return None  # installed but broken inside: keep the traceback
    except (ImportError, ValueError):
        pass
    if command == "quantize" and top in ("onnx", "openvino"):
        extra = "quantize"
    from edgeres.errors import missing_extra

    return missing_extra(top, extra)


def _stdout_failed(e: OSError) -> None:
    """stdout closed early (``| head``) or full: a quiet exit 141 or one line, no traceback."""
    import errno
    import os

    try:  # nothing more may reach the dead stream, not even the interpreter's final flush
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    if e.errno == errno.EPIPE:
        sys.exit(141)  # 128 + SIGPIPE, what a shell reports for a writer whose reader left
    click.echo(f"Error: cannot write to standard output: {e.strerror}; free space or "
               "redirect elsewhere", err=True)
    sys.exit(1)


# Library messages name parameters (``max_drop must be ...``); the CLI says the flag instead.
# Parameter -> flag where the two differ in more than "_" vs "-" (QuantConfig.eval is --eval);
# bench's parameters and flags are added from BenchConfig (bench.config.option_specs).
_FLAG_NAMES = {"eval_data": "--eval", "calibration": "--calib"}
_PARAMS = ("max_drop", "eval_data", "per_channel", "input_size", "num_classes", "uint8_input",
           "samples", "opset", "atol", "rtol", "mean", "std", "target", "method", "preset", "val",
           "eval", "exclude", "weights", "labels", "batch", "calibration")
_PARAM_RE = None


def _as_flags(message: str) -> str:
    """``max_drop needs val data`` -> ``--max-drop needs --val data``: a parameter name that
    opens the message, or follows "give"/"pass"/"and", or has an underscore, becomes its flag."""
    import re

    from edgeres.bench.config import option_specs

    global _PARAM_RE
    if _PARAM_RE is None:
        _FLAG_NAMES.update({s.name: s.flag for s in option_specs()
                            if s.flag != "--" + s.name.replace("_", "-")})
        params = (*_PARAMS, *(s.name for s in option_specs()  # numbers and lists: "x must be"
                              if s.kind not in ("bool", "str") and s.name not in _PARAMS))
        names = "|".join(sorted(params, key=len, reverse=True))
        _PARAM_RE = re.compile(rf"(?:^|(?<=\bgive )|(?<=\bpass )|(?<=\band ))(?<![-\w])"
                               rf"({names})(?![-\w])|(?<![-\w])"
                               rf"({'|'.join(p for p in params if '_' in p)})(?![-\w])")

    def flag(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return _FLAG_NAMES.get(name, "--" + name.replace("_", "-"))

    return _PARAM_RE.sub(flag, message)


class _Group(click.Group):
    """Click group that turns expected errors into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        from edgeres import _interrupt

        try:
            return super().invoke(ctx)
        except EdgeresError as e:
            if ctx.params.get("debug"):
                raise
            text = _as_flags(str(e)) if isinstance(e, ConfigError) else str(e)
            raise click.ClickException(text) from None
        except ModuleNotFoundError as e:
            err = None if ctx.params.get("debug") else _missing_extra(e, ctx.invoked_subcommand)
            if err is None:
                raise
            raise click.ClickException(str(err)) from None
        except KeyboardInterrupt as e:
            _interrupt.quiet()
            code, words = _interrupt.exit_status(e)
            click.echo(words, err=True)
            sys.exit(code)
        except OSError as e:  # a library's files are wrapped (_fs.write_errors): this is stdout
            if e.filename is not None or ctx.params.get("debug"):
                raise
            _stdout_failed(e)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeres")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """edgeres: ResNet-family models from PyTorch to edge devices, with honest numbers.

    \b
    Example:
        edgeres models
    """
    import logging

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s: %(message)s"
    )


def main() -> None:
    """Console-script entry point: SIGTERM/SIGHUP clean up as Ctrl-C does (``_interrupt``)."""
    from edgeres import _interrupt

    _interrupt.install()
    try:
        cli(prog_name="edgeres")
    finally:
        _interrupt.quiet()
        try:
            sys.stdout.flush()  # click exits through SystemExit; a failed flush must not print
        except OSError as e:
            _stdout_failed(e)
