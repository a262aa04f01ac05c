"""Tests for edgeres.bench.timing: warm-up, interleaved rounds, GC off, partial results."""

from __future__ import annotations

import gc
from collections.abc import Callable

import pytest

from edgeres.bench.timing import Timings, measure


def _recorders(names: str, log: list[str]) -> dict[str, Callable[[], object]]:
    def recorder(name: str) -> Callable[[], object]:
        return lambda: log.append(name)

    return {n: recorder(n) for n in names}


def test_warmup_then_rotating_round_robin_blocks() -> None:
    """Each config is warmed up first, then rounds visit configs in blocks, rotating the start."""
    log: list[str] = []
    t = measure(_recorders("abc", log), warmup=2, rounds=3, iterations=2)
    warm, timed = log[:6], log[6:]
    assert warm == ["a", "a", "b", "b", "c", "c"]
    assert timed == (["a", "a", "b", "b", "c", "c"]      # round 0 starts at a
                     + ["b", "b", "c", "c", "a", "a"]    # round 1 starts at b
                     + ["c", "c", "a", "a", "b", "b"])   # round 2 starts at c
    assert {n: len(v) for n, v in t.items()} == {"a": 6, "b": 6, "c": 6}
    assert t.round_index["a"] == [0, 0, 1, 1, 2, 2]
    assert t.rounds == 3 and not t.interrupted


def test_samples_are_seconds_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Samples are perf_counter differences around exactly one call each."""
    clock = iter(float(i) for i in range(100))
    monkeypatch.setattr("edgeres.bench.timing.time.perf_counter", lambda: next(clock))
    t = measure({"x": lambda: None}, warmup=0, rounds=2, iterations=3)
    assert t["x"] == [1.0] * 6
    assert t.round_index["x"] == [0, 0, 0, 1, 1, 1]


def test_gc_disabled_while_timing_and_restored() -> None:
    """The garbage collector is off during timed calls and back on afterwards."""
    states: list[bool] = []
    assert gc.isenabled()
    measure({"x": lambda: states.append(gc.isenabled())}, warmup=0, rounds=2, iterations=2)
    assert states == [False] * 4
    assert gc.isenabled()


def test_duration_runs_each_block_until_its_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """duration / rounds seconds per block; a slow call still counts once per round."""
    now = [0.0]

    def fake_clock() -> float:
        return now[0]

    def tick(dt: float) -> Callable[[], object]:
        return lambda: now.__setitem__(0, now[0] + dt)

    monkeypatch.setattr("edgeres.bench.timing.time.perf_counter", fake_clock)
    t = measure({"fast": tick(0.25), "slow": tick(5.0)}, warmup=0, rounds=2, duration=2.0)
    assert t["fast"] == [0.25] * 8 and t.round_index["fast"] == [0] * 4 + [1] * 4  # 1 s/round
    assert t["slow"] == [5.0, 5.0] and t.round_index["slow"] == [0, 1]


def test_ctrl_c_keeps_samples_so_far() -> None:
    """A KeyboardInterrupt mid-round returns the samples taken, marked interrupted."""
    calls = {"n": 0}

    def boom() -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt

    t = measure({"a": lambda: None, "b": boom}, warmup=0, rounds=5, iterations=2)
    assert t.interrupted and t.rounds == 1
    assert len(t["a"]) == 2 and len(t["b"]) == 3  # round 1 starts at b: its 2nd call stops
    assert t.round_index["b"] == [0, 0, 1]
    assert gc.isenabled()


def test_round_medians_are_per_round_in_round_order() -> None:
    """One median per round, from that round's samples only."""
    t = Timings({"a": [1.0, 3.0, 10.0, 20.0, 40.0, 5.0]}, {"a": [0, 0, 1, 1, 1, 2]}, rounds=3)
    assert t.round_medians("a") == [2.0, 20.0, 5.0]


def test_timings_reads_like_a_dict() -> None:
    """Timings is a Mapping of name to samples."""
    t = Timings({"a": [1.0]}, {"a": [0]})
    assert dict(t) == {"a": [1.0]} and len(t) == 1 and list(t) == ["a"]


@pytest.mark.parametrize("kwargs", [
    {"warmup": -1, "rounds": 1, "iterations": 1},
    {"warmup": 0, "rounds": 0, "iterations": 1},
    {"warmup": 0, "rounds": 1},
    {"warmup": 0, "rounds": 1, "iterations": 1, "duration": 1.0},
    {"warmup": 0, "rounds": 1, "iterations": 0},
    {"warmup": 0, "rounds": 1, "duration": 0.0},
])
def test_invalid_counts_raise(kwargs: dict) -> None:
    """Nonsensical counts are a ValueError before anything runs."""
    with pytest.raises(ValueError):
        measure({"x": lambda: None}, **kwargs)
