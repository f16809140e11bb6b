"""The memory model of `convkit.resources` against measured peaks.

For each case, runs ``convkit apply`` in a child process, reads its peak RSS (ru_maxrss of
the child), takes away that of the same command on an 8x8 image (the interpreter and its
imports, which the model leaves out), and prints the rest beside the estimate that
``--max-memory`` is checked against.
The model should never be below the measurement (a run it admits must fit) and not far
above it (or it refuses runs that would fit).

    python benchmarks/memory_model.py [--size 3000x4000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import compile_convkit, convkit_command  # noqa: E402

CASES = [
    ("sharpen", []),
    ("large_blur", []),
    ("gaussian:51", ["-b", "fft"]),
    ("motion:21:30", ["-b", "numpy"]),
    ("log:61", ["-b", "filter2d"]),
    ("sharpen", ["-b", "filter2d", "--no-compare"]),
    ("large_blur", ["-b", "filter2d", "--no-compare"]),
]


def estimate(path: Path, kernel: str, extra: list[str]) -> int:
    """The estimate `convkit.pipeline.check_resources` compares with --max-memory."""
    from convkit.imageio import read_image
    from convkit.kernel_files import resolve_kernel
    from convkit.pipeline import ApplySettings, streamed_rows
    from convkit.resources import run_peak_bytes

    image = read_image(path)
    backend = extra[extra.index("-b") + 1] if "-b" in extra else "filter2d"
    settings = ApplySettings(backends=(backend,), compare="--no-compare" not in extra)
    k = resolve_kernel(kernel, kernel)
    rows = streamed_rows(image, k, (backend,), settings)
    return run_peak_bytes((backend,), image.shape, 1, k.shape, False, 8, rows, encoded=True)[
        backend
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="3000x4000", help="HxW of the colour test image")
    args = parser.parse_args()
    height, width = (int(n) for n in args.size.split("x"))
    compile_convkit()
    import cv2
    import numpy as np

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "image.png"
        rng = np.random.default_rng(1)
        cv2.imwrite(str(path), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        tiny = Path(folder) / "tiny.png"
        cv2.imwrite(str(tiny), np.zeros((8, 8, 3), dtype=np.uint8))
        print(f"{os.uname().machine}, {width}x{height} colour; MB (2**20 bytes); 'arrays' is the")
        print("peak less that of the same command on an 8x8 image (the interpreter's own)")
        print(f"{'kernel':14} {'options':28} {'measured':>9} {'arrays':>7} {'estimate':>9} "
              f"{'ratio':>6}")  # fmt: skip
        for kernel, extra in CASES:
            peak = child_peak(path, kernel, extra, Path(folder) / "out")
            arrays = peak - child_peak(tiny, kernel, extra, Path(folder) / "tiny-out")
            guess = estimate(path, kernel, extra)
            print(
                f"{kernel:14} {' '.join(extra):28} {peak / 2**20:9.0f} {arrays / 2**20:7.0f} "
                f"{guess / 2**20:9.0f} {guess / arrays:6.2f}"
            )


def child_peak(path: Path, kernel: str, extra: list[str], out: Path) -> int:
    """The peak RSS of ``convkit apply`` on ``path``, run in a fresh child so that ru_maxrss
    is that child's own."""
    command = [convkit_command(), "apply", "-i", str(path), "-k", kernel, *extra]
    command += ["-o", str(out), "-q"]
    wrapper = [sys.executable, "-c", _CHILD, *command]
    return int(subprocess.run(wrapper, capture_output=True, text=True, check=True).stdout)


# Runs the command and prints its peak RSS in bytes: a fresh parent for every case.
_CHILD = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""

if __name__ == "__main__":
    main()
