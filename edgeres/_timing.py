"""Latency measurement: warm-up, then interleaved rounds of ``time.perf_counter`` calls.

A neutral layer-0 module (stdlib only) so that both ``edgeres.bench`` and
``edgeres.quantize.sensitivity`` time with it without quantize importing bench;
``edgeres.bench.timing`` re-exports it.

This module owns *how* time is taken and nothing else: it returns raw seconds per call, and
``edgeres.bench.stats`` turns them into numbers. Configurations are visited round-robin (one
block of calls per configuration per round, the starting configuration rotating every round),
so slow drift — thermal throttling, a background job, frequency scaling — hits all of them
alike instead of penalising whichever ran last (pytest-benchmark's rounds, OpenVINO
benchmark_app's warm-up-then-measure). The garbage collector is disabled while timing, as
``timeit`` does, so a collection triggered by one configuration is not billed to another.
Stdlib only.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

__all__ = ["Timings", "measure"]

OnRound = Callable[[int, int], None]  # (finished round index, total rounds)


@dataclass
class Timings(Mapping[str, list[float]]):
    """Raw seconds per call for each configuration, in call order; reads like a dict.

    Attributes:
        seconds: configuration name → seconds of each timed call.
        round_index: configuration name → the round each sample was taken in (same length),
            so per-round medians can be computed.
        rounds: rounds completed (fewer than asked for when interrupted).
        interrupted: True when Ctrl-C stopped the measurement; the samples so far are kept.
    """

    seconds: dict[str, list[float]] = field(default_factory=dict)
    round_index: dict[str, list[int]] = field(default_factory=dict)
    rounds: int = 0
    interrupted: bool = False

    def __getitem__(self, name: str) -> list[float]:
        return self.seconds[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.seconds)

    def __len__(self) -> int:
        return len(self.seconds)

    def round_medians(self, name: str) -> list[float]:
        """The median seconds per call of ``name`` in each round, in round order."""
        by_round: dict[int, list[float]] = {}
        for r, t in zip(self.round_index[name], self.seconds[name], strict=True):
            by_round.setdefault(r, []).append(t)
        return [statistics.median(v) for _, v in sorted(by_round.items())]


def _check(warmup: int, rounds: int, iterations: int | None, duration: float | None) -> None:
    if warmup < 0 or rounds < 1:
        msg = f"warmup must be >= 0 and rounds >= 1, got warmup={warmup}, rounds={rounds}"
        raise ValueError(msg)
    if (iterations is None) == (duration is None):
        msg = "give exactly one of iterations (calls per round) or duration (seconds)"
        raise ValueError(msg)
    if iterations is not None and iterations < 1:
        msg = f"iterations must be >= 1, got {iterations}"
        raise ValueError(msg)
    if duration is not None and not duration > 0:
        msg = f"duration must be > 0 seconds, got {duration}"
        raise ValueError(msg)


def measure(
    fns: Mapping[str, Callable[[], object]],
    *,
    warmup: int,
    rounds: int,
    iterations: int | None = None,
    duration: float | None = None,
    on_round: OnRound | None = None,
) -> Timings:
    """Time each callable: ``warmup`` untimed calls each, then interleaved timed rounds.

    Args:
        fns: configuration name → zero-argument callable doing one unit of work (one
            inference on prepared inputs).
        warmup: untimed calls per configuration before the first round (caches, lazy
            allocation, JIT and thread-pool start-up are not measured).
        rounds: rounds; in each, every configuration runs one block of calls, the order
            rotating by one configuration per round.
        iterations: timed calls per configuration per round.
        duration: instead of ``iterations``: timed seconds per configuration in total, spread
            evenly over the rounds (each block runs until its share is used, at least once).
        on_round: called after each round with ``(round index, rounds)``, for progress.

    Returns:
        ``Timings``: seconds per call and the round of each sample, per configuration. On
        Ctrl-C it returns what was measured so far with ``interrupted=True``.

    Raises:
        ValueError: if the counts are not positive or both/neither of iterations and
            duration are given (a programming error: callers validate user input first).
    """
    _check(warmup, rounds, iterations, duration)
    names = list(fns)
    out = Timings({n: [] for n in names}, {n: [] for n in names})
    budget = None if duration is None else duration / rounds
    was_enabled = gc.isenabled()
    try:
        for name in names:
            for _ in range(warmup):
                fns[name]()
        gc.collect()
        gc.disable()
        for r in range(rounds):
            for k in range(len(names)):
                name = names[(r + k) % len(names)]
                _block(fns[name], out.seconds[name], iterations, budget)
                out.round_index[name].extend([r] * (len(out.seconds[name])
                                                    - len(out.round_index[name])))
            out.rounds = r + 1
            if on_round is not None:
                on_round(r, rounds)
    except KeyboardInterrupt:
        out.interrupted = True
        for name in names:  # a block cut short keeps its samples; give them their round
            missing = len(out.seconds[name]) - len(out.round_index[name])
            out.round_index[name].extend([out.rounds] * missing)
    finally:
        if was_enabled:
            gc.enable()
    return out


def _block(fn: Callable[[], object], sink: list[float], iterations: int | None,
           budget: float | None) -> None:
    """One configuration's calls in one round, appended to ``sink`` as they finish."""
    clock = time.perf_counter
    if iterations is not None:
        for _ in range(iterations):
            t0 = clock()
            fn()
            sink.append(clock() - t0)
        return
    assert budget is not None, "measure() passes iterations or a time budget"
    start = clock()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        sink.append(t1 - t0)
        if t1 - start >= budget:
            return
