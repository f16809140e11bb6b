"""Where the fast backends cross over: cv2.filter2D, cv2.sepFilter2D and scipy.fft (the fft
backend) on float64 images, for square kernels of growing size: a quick look at where they
cross. `auto` itself decides by a cost model (convkit/calibration.py), which
`convkit bench --calibrate` fits on each machine; benchmarks/auto_grid.py checks its picks.

    python benchmarks/cross_over.py [--sizes 1024,2048] [--kernels 3,5,...,201]
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import cv2
import numpy as np

from convkit.backends import fft
from convkit.padding import Padding


def best_ms(work, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1024,2048")
    parser.add_argument("--kernels", default="3,5,7,9,11,15,21,31,51,101,151,201")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| image | kernel | filter2D ms | sepFilter2D ms | scipy.fft ms |")
    print("|---:|---:|---:|---:|---:|")
    for n in (int(v) for v in args.sizes.split(",")):
        image = rng.random((n, n))
        for k in (int(v) for v in args.kernels.split(",")):
            weights = rng.random((k, k))
            column, row = rng.random((k, 1)), rng.random((1, k))
            replicate = cv2.BORDER_REPLICATE
            anchor = (k // 2, k // 2)
            direct = best_ms(
                partial(cv2.filter2D, image, cv2.CV_64F, weights, borderType=replicate)
            )
            separable = best_ms(
                partial(cv2.sepFilter2D, image, cv2.CV_64F, row, column, borderType=replicate)
            )
            spectral = best_ms(partial(fft.correlate, image, weights, anchor, Padding("replicate")))
            print(f"| {n}x{n} | {k}x{k} | {direct:.1f} | {separable:.1f} | {spectral:.1f} |")


if __name__ == "__main__":
    main()
