"""SIGTERM and SIGHUP take the Ctrl-C path: one exception in the main thread, so every
``with`` block (temporary directories, atomic writes) cleans up, then exit 128 + signal.

``install()`` is called by the CLI's entry point only: a library must not take over a host
program's signal handlers.

Inside ``deferred()`` (the CLI's ``quantize``) the handler only records the signal: raised
inside a Python callback that ONNX Runtime, NNCF or OpenVINO call from C++, the exception
became ``pybind11::error_already_set`` and ``terminate`` (exit -6, temporary folders left).
It is raised instead at the next safe point: ``checkpoint()``, which every progress step
(``_progress.track``) calls, or the end of the block.

After the first signal the others are ignored, so a second Ctrl-C during cleanup cannot
interrupt it half-way (it used to end in a traceback from ``threading._shutdown``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                 if hasattr(signal, name))
_WORDS = {"SIGINT": "Interrupted.", "SIGTERM": "Terminated.", "SIGHUP": "Hung up."}
received: list[int] = []  # the signal that ended this run (the first; later ones are ignored)
_deferring: list[bool] = []  # non-empty inside deferred(): the handler records, never raises


class Signalled(KeyboardInterrupt):
    """A termination signal, raised where ``KeyboardInterrupt`` would be, so the same cleanup
    runs; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _first(signum: int, frame: FrameType | None) -> None:
    received.append(signum)
    quiet()
    if _deferring:  # perhaps inside a callback from native code: raise at a safe point
        return
    raise Signalled(signum)


def checkpoint() -> None:
    """A safe point: raise the signal recorded inside ``deferred()``, if any."""
    if _deferring and received:
        raise Signalled(received[0])


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Record SIGINT/SIGTERM/SIGHUP inside this block and raise them at ``checkpoint()`` or
    when the block ends, never inside whatever native code was running."""
    _deferring.append(True)
    try:
        yield
    finally:
        _deferring.pop()
    if received and not _deferring:
        raise Signalled(received[0])


def install() -> None:
    """Route SIGINT, SIGTERM and SIGHUP through ``Signalled`` (main thread only)."""
    for sig in _SIGNALS:
        if signal.getsignal(sig) is signal.SIG_IGN:
            continue  # nohup and friends asked for this signal to be ignored
        signal.signal(sig, _first)


def quiet() -> None:
    """Ignore these signals from now on: the run is already ending. (A Python-level handler
    is not enough: the interpreter restores the default action while it shuts down, and a
    second Ctrl-C then killed the process after its one line.)"""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in _SIGNALS:
        if signal.getsignal(sig) is _first:
            signal.signal(sig, signal.SIG_IGN)


def exit_status(e: BaseException | None = None) -> tuple[int, str]:
    """Exit code (128 + signal) and the one line to print for an interruption."""
    signum = e.signum if isinstance(e, Signalled) else received[0] if received else signal.SIGINT
    name = signal.Signals(signum).name
    return 128 + int(signum), _WORDS.get(name, f"Stopped by {name}.")
