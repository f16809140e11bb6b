"""Does convkit's parallel PNG encoder (convkit/png.py) pay for itself?

Encodes a 2048x2048 colour photo (the sample cat, upscaled) and the same size of noise with
`convkit.png.encode_png` on all cores and with `cv2.imencode`, interleaved, and prints the
medians and the ratio. png.py stays only while it is at least 20 % faster on a photo.

    python benchmarks/png_encode.py [--runs 9] [--size 2048]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import cv2
import numpy as np

from convkit.png import encode_png

sys.path.insert(0, str(Path(__file__).parent))

from common import median_ms  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    cat = cv2.imread(str(ROOT / "sample_images" / "chelsea.png"))
    photo = cv2.resize(cat, (args.size, args.size), interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(0).integers(0, 256, photo.shape, dtype=np.uint8)
    print(f"{args.size}x{args.size} colour, {threads} threads, medians of {args.runs}")
    for name, image in (("photo", photo), ("noise", noise)):
        opencv, ours = [], []
        for _ in range(args.runs):  # interleaved, so that load changes hit both alike
            opencv.append(median_ms(lambda image=image: cv2.imencode(".png", image), 1))
            ours.append(median_ms(lambda image=image: encode_png(image, threads=threads), 1))
        a, b = statistics.median(opencv), statistics.median(ours)
        print(f"{name}: cv2.imencode {a:.0f} ms, png.py {b:.0f} ms (png.py / cv2 = {b / a:.2f})")


if __name__ == "__main__":
    main()
