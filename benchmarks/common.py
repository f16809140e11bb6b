"""What the benchmark scripts share: how they find convkit and prepare it to be timed."""

from __future__ import annotations

import math
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path


def compile_convkit() -> None:
    """Byte-compile convkit as a regular pip install does, so that no run pays for compiling
    its modules (an editable install under PYTHONDONTWRITEBYTECODE never caches them)."""
    import compileall

    import convkit

    compileall.compile_dir(Path(convkit.__file__).parent, quiet=1)


def convkit_command() -> str:
    """The convkit console script beside this interpreter.

    A version manager's shim on PATH (pyenv's is a bash script) would add its own start-up to
    every convkit run but not to python's.
    """
    beside = Path(sys.executable).parent / "convkit"
    found = str(beside) if beside.exists() else shutil.which("convkit")
    if found is None:
        sys.exit("convkit is not installed: pip install -e .")
    return found


def median_ms(work, runs: int) -> float:
    """The median wall time of ``runs`` calls of ``work``, in milliseconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def interleaved_ms(
    works: dict[str, Callable[[], object]],
    repeat: int,
    min_timed_ms: float = 0.0,
    max_rounds: int = 200,
) -> dict[str, list[float]]:
    """Each work's times in ms over ``repeat`` interleaved rounds, in a new order each round,
    after one warm-up of each; more rounds for quick works, until the typical one has had
    ``min_timed_ms`` (at most ``max_rounds``): a median of 9 calls of 0.2 ms measures
    whatever else the machine did in those 2 ms.

    The order is shuffled, not turned: turning a fixed list leaves each work after the same
    neighbour every round, and a call pays for what the one before it did (its freed memory
    given back to the system, the caches it filled): auto, first in the list, always ran
    after the numpy backend and took 1.2 ms where the same cv2.filter2D call took 0.3.
    """
    warm_up = []
    for work in works.values():
        started = time.perf_counter()
        work()
        warm_up.append((time.perf_counter() - started) * 1000)
    typical = statistics.median(warm_up)
    repeat = max(repeat, min(max_rounds, math.ceil(min_timed_ms / max(typical, 1e-3))))
    names = list(works)
    order = random.Random(len(names) * 1000 + repeat)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeat):
        order.shuffle(names)
        for name in names:
            started = time.perf_counter()
            works[name]()
            times[name].append((time.perf_counter() - started) * 1000)
    return times
