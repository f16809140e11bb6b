"""What the benchmark scripts share: how they find convkit and prepare it to be timed."""

from __future__ import annotations

import shutil
import sys
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
