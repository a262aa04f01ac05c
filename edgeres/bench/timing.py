"""``edgeres.bench.timing``: the old import path of ``edgeres._timing``, re-exported.

The timing primitives live in the neutral ``edgeres._timing`` so ``edgeres.quantize`` can time
models without importing ``edgeres.bench`` (issue 13); bench code and user scripts keep using
this name.
"""

from __future__ import annotations

import time  # noqa: F401 - tests patch ``edgeres.bench.timing.time.perf_counter``

from edgeres._timing import OnRound, Timings, measure

__all__ = ["OnRound", "Timings", "measure"]
