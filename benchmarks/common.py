"""What the benchmark scripts share: how they find convkit and prepare it to be timed."""

from __future__ import annotations

import shutil
import statistics
import sys
import time
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
