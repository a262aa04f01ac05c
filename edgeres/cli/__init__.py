"""The ``edgeres`` command line: a thin click shell over the library.

This is the only package that imports click. Torch-side modules (models, export, quantize) are
imported inside the commands that need them, so ``edgeres --help`` and ``edgeres predict`` run
with the base install. Every ``EdgeresError`` becomes ``Error: <message>`` and exit code 1, in
one place (``_group._Group.invoke``); ``--debug`` re-raises it with its traceback.

Modules: ``_group`` (the group, its error handling, ``main``), ``_options`` (shared options and
parsers), ``_model`` (models, attach, export, info), ``_bench`` (bench, eval), ``_device``
(predict, package, verify), ``_quantize`` (quantize). Importing this package registers every
command.
"""

from __future__ import annotations

from edgeres.cli import _bench, _device, _model, _quantize  # noqa: F401  (registers the commands)
from edgeres.cli._group import _as_flags, _Group, _missing_extra, _stdout_failed, cli, main

__all__ = ["_Group", "_as_flags", "_missing_extra", "_stdout_failed", "cli", "main"]
