"""SIGTERM and SIGHUP take the Ctrl-C path: one exception in the main thread, so every
``with`` block (temporary directories, atomic writes) cleans up, then exit 128 + signal.

``install()`` is called by the CLI's entry point only: a library must not take over a host
program's signal handlers. After the first signal the others are ignored, so a second Ctrl-C
during cleanup cannot interrupt it half-way (it used to end in a traceback from
``threading._shutdown``).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                 if hasattr(signal, name))
_WORDS = {"SIGINT": "Interrupted.", "SIGTERM": "Terminated.", "SIGHUP": "Hung up."}
received: list[int] = []  # the signal that ended this run (the first; later ones are ignored)


class Signalled(KeyboardInterrupt):
    """A termination signal, raised where ``KeyboardInterrupt`` would be, so the same cleanup
    runs; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _first(signum: int, frame: FrameType | None) -> None:
    received.append(signum)
    quiet()
    raise Signalled(signum)


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
