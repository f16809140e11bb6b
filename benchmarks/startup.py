"""Start-up: the wall time of short convkit commands next to Python's own floor.

Each command runs --runs times (after one warm-up run), interleaved, and the median is kept:

- ``python -c pass``: the interpreter alone;
- ``python -c "import cv2"``: what any OpenCV script pays before its first line of work;
- ``convkit --help`` and ``convkit kernels``: must not import cv2 or scipy;
- ``convkit apply --backend filter2d --no-compare --quiet`` on a 512x512 PNG;
- the same job as a bare ``python -c`` cv2 one-shot.

    python benchmarks/startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import compile_convkit, convkit_command

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "sample_images" / "astronaut.png"
ONE_SHOT = (
    "import sys, cv2, numpy as np; "
    "K = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float32); "
    "cv2.imwrite(sys.argv[2], cv2.filter2D(cv2.imread(sys.argv[1], cv2.IMREAD_UNCHANGED), -1, K))"
)


def main() -> None:
    compile_convkit()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    convkit = convkit_command()
    out = Path(tempfile.mkdtemp(prefix="convkit-startup-"))
    python = sys.executable
    commands = {
        "python -c pass": [python, "-c", "pass"],
        'python -c "import cv2"': [python, "-c", "import cv2"],
        "convkit --help": [convkit, "--help"],
        "convkit kernels": [convkit, "kernels"],
        "convkit apply, 512x512 PNG, sharpen, filter2d": [
            convkit, "apply", "--image", str(PHOTO), "--kernel", "sharpen", "--backend",
            "filter2d", "--no-compare", "--quiet", "--out", str(out),
        ],
        "python -c cv2 one-shot, same job": [
            python, "-c", ONE_SHOT, str(PHOTO), str(out / "x.png"),
        ],
    }  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(args.runs + 1):
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            if round_:  # the first round warms the file cache
                times[name].append(time.perf_counter() - started)
    print(f"median of {args.runs} runs each\n")
    print("| command | median ms | min ms |")
    print("|---|---:|---:|")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t) * 1000:.0f} | {min(t) * 1000:.0f} |")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
