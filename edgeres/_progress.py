"""Progress bars for long work (calibration, evaluation, benchmarks), on stderr via rich.

Shown only when stderr is a terminal or ``EDGERES_PROGRESS=1``, so logs and tests stay clean.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterable
from typing import TypeVar

T = TypeVar("T")


def progress_enabled() -> bool:
    """True when progress bars should be drawn."""
    flag = os.environ.get("EDGERES_PROGRESS")
    if flag is not None:
        return flag not in ("0", "")
    return sys.stderr.isatty()


def track(items: Iterable[T], *, total: int | None, description: str
          ) -> Generator[T, None, None]:
    """Yield ``items`` while advancing a progress bar of ``total`` steps; each step is a safe
    point for a deferred signal (``_interrupt.checkpoint``)."""
    from edgeres._interrupt import checkpoint

    if not progress_enabled():
        for item in items:
            checkpoint()
            yield item
        checkpoint()
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            checkpoint()
            yield item
            bar.advance(task)
        checkpoint()
