"""Where the fast backends cross over: cv2.filter2D, cv2.sepFilter2D and scipy.fft (the fft
backend) on float images, for square kernels of growing size, and how sepFilter2D's time
jumps with the image's width: a quick look. `auto` itself decides by a cost model
(convkit/calibration.py), which `convkit bench --calibrate` fits on each machine;
benchmarks/auto_grid.py checks its picks.

    python benchmarks/cross_over.py [--sizes 1024,2048] [--kernels 3,5,...,201]
                                    [--precision float64] [--repeat 7]
    python benchmarks/cross_over.py --widths 992,1000,...,1096 [--kernels 51]

The three calls of a cell run interleaved, in a new order each round, after one warm-up
each; the table shows medians (and minimums), with the load average beside them: on a
machine shared with other work the figures move with it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from convkit.backends import get_backend
from convkit.padding import make_padding

sys.path.insert(0, str(Path(__file__).parent))

from common import interleaved_ms  # noqa: E402


def cell(image: np.ndarray, k: int, repeat: int, rng: np.random.Generator) -> dict[str, list]:
    depth = cv2.CV_32F if image.dtype == np.float32 else cv2.CV_64F
    weights = rng.random((k, k)).astype(image.dtype)
    column, row = rng.random(k).astype(image.dtype), rng.random(k).astype(image.dtype)
    replicate = cv2.BORDER_REPLICATE
    fft = get_backend("fft")
    return interleaved_ms(
        {
            "filter2D": partial(cv2.filter2D, image, depth, weights, borderType=replicate),
            "sepFilter2D": partial(
                cv2.sepFilter2D, image, depth, row, column, borderType=replicate
            ),
            "scipy.fft": partial(fft, image, weights, (k // 2, k // 2), make_padding("replicate")),
        },
        repeat,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1024,2048", help="square image sides")
    parser.add_argument("--widths", help="instead: 1024-row images of these widths")
    parser.add_argument("--kernels", default="3,5,7,9,11,15,21,31,51,101,151,201")
    parser.add_argument("--precision", default="float64", choices=("float64", "float32"))
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    if args.widths:
        shapes = [(1024, int(w)) for w in args.widths.split(",")]
    else:
        shapes = [(int(n), int(n)) for n in args.sizes.split(",")]
    print(f"{args.precision}, medians (min) of {args.repeat} interleaved runs, ms")
    print("| image | kernel | filter2D | sepFilter2D | scipy.fft | load |")
    print("|---:|---:|---:|---:|---:|---:|")
    for height, width in shapes:
        image = rng.random((height, width)).astype(args.precision)
        for k in (int(v) for v in args.kernels.split(",")):
            times = cell(image, k, args.repeat, rng)
            shown = " | ".join(f"{statistics.median(t):.1f} ({min(t):.1f})" for t in times.values())
            load = os.getloadavg()[0]
            print(f"| {width}x{height} | {k}x{k} | {shown} | {load:.2f} |", flush=True)


if __name__ == "__main__":
    main()
