"""Wall time of the default run on one photo: `convkit apply PHOTO -k sharpen`.

With no --backend, filter2d runs on the whole image and the naive loop on a 256x256 crop;
the run writes the filtered PNG and the comparison PNG. The goal (DESIGN §6): a photo of up
to 12 MP in at most 3 s on a 2-core machine. Photos of 0.25, 2 and 12 MP are made from the
sample cat (upscaled, saved as JPEG) and timed whole-process, interleaved, median of N runs.

    python benchmarks/default_run.py [--runs 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import compile_convkit, convkit_command  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"0.25 MP": (512, 512), "2 MP": (1632, 1224), "12 MP": (4000, 3000)}


def make_photos(folder: Path) -> dict[str, Path]:
    import cv2

    cat = cv2.imread(str(ROOT / "sample_images" / "chelsea.png"))
    photos = {}
    for label, (width, height) in SIZES.items():
        path = folder / f"photo_{width}x{height}.jpg"
        photo = cv2.resize(cat, (width, height), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(path), photo, [cv2.IMWRITE_JPEG_QUALITY, 92])
        photos[label] = path
    return photos


def processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown processor"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    compile_convkit()
    with tempfile.TemporaryDirectory() as folder:
        photos = make_photos(Path(folder))
        times: dict[str, list[float]] = {label: [] for label in photos}
        for _ in range(args.runs):
            for label, path in photos.items():  # interleaved: load changes hit every size
                command = [convkit_command(), "apply", str(path), "-k", "sharpen"]
                command += ["-o", str(Path(folder) / "out"), "-q"]
                started = time.perf_counter()
                subprocess.run(command, check=True)
                times[label].append(time.perf_counter() - started)
        print(f"{processor()}, default run (filter2d whole + naive on a 256x256 crop)")
        for label, seconds in times.items():
            print(
                f"{label:>8}: median {statistics.median(seconds):.2f} s, "
                f"min {min(seconds):.2f} s over {len(seconds)} runs"
            )


if __name__ == "__main__":
    main()
