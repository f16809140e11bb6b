"""Run a backend N times, collect timings, and measure how far backends disagree."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import NamedTuple, TypeVar

import numpy as np

from convkit.backends import AGREEMENT_FACTOR, KNOWN_BACKENDS

T = TypeVar("T")

# float32 keeps about 7 digits: every backend agrees within this in float32.
FLOAT32_AGREEMENT_FACTOR = 1e-5


def agreement_factor(backends: Iterable[str], precision: str = "float64") -> float:
    """How loose the agreement check between ``backends`` is, in units of sum|K| * max|I|:
    the loosest of their registry tolerances, and no tighter than float32's round-off when
    ``precision`` is float32."""
    factor = max((KNOWN_BACKENDS[b].tolerance for b in backends), default=AGREEMENT_FACTOR)
    return max(factor, FLOAT32_AGREEMENT_FACTOR) if precision == "float32" else factor


class Timing(NamedTuple):
    """Wall-clock times of repeated runs of one backend, in seconds."""

    backend: str
    seconds: tuple[float, ...]

    @property
    def runs(self) -> int:
        return len(self.seconds)

    @property
    def median_ms(self) -> float:
        return _median(self.seconds) * 1000.0

    @property
    def min_ms(self) -> float:
        return min(self.seconds) * 1000.0


def _median(values: tuple[float, ...]) -> float:
    """The median, without np.median (which imports numpy.ma, 10 ms at start-up)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def run_timed(backend: str, work: Callable[[], T], repeat: int = 1) -> tuple[T, Timing]:
    """Call ``work`` ``repeat`` times; return the last result and the times."""
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    seconds = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        seconds.append(time.perf_counter() - start)
    return result, Timing(backend, tuple(seconds))


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """The largest absolute difference between two responses of the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"responses differ in shape: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def agreement_tolerance(
    weights: np.ndarray, image: np.ndarray, factor: float = AGREEMENT_FACTOR
) -> float:
    """``factor * sum|K| * max|I|``: how far two exact backends may differ by round-off."""
    peak = float(np.max(np.abs(image))) if image.size else 0.0
    return factor * float(np.abs(weights).sum()) * max(peak, 1.0)
