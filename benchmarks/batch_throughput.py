"""Batch throughput: convkit over a folder against the tools a user would reach for instead.

Runs, in one script and interleaved round by round (so a noisy machine slows all alike):

- ``convkit apply --image DIR --backend filter2d --no-compare --jobs 2`` over N copies of a
  512x512 colour PNG, with the 3x3 sharpen kernel;
- a bare Python script doing cv2.imread -> cv2.filter2D -> cv2.imwrite in a 2-process pool;
- ImageMagick's ``mogrify -morphology Convolve`` (skipped where it is not installed);
- a shell loop starting ``convkit apply`` once per file, against a shell loop starting the
  bare ``python -c`` one-shot once per file.

Prints a markdown table of median wall times, images per second and ratios. Installs nothing.

    python benchmarks/batch_throughput.py [--images 200] [--loop-images 20] [--rounds 3]
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
PHOTO = ROOT / "sample_images" / "astronaut.png"  # 512x512 colour
SHARPEN_MAGICK = "3x3: 0,-1,0 -1,5,-1 0,-1,0"

POOL_SCRIPT = """
import os, sys
from multiprocessing import Pool
import cv2, numpy as np
K = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float32)
def one(path):
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    cv2.imwrite(os.path.join(sys.argv[2], os.path.basename(path)), cv2.filter2D(image, -1, K))
if __name__ == "__main__":
    files = sorted(os.path.join(sys.argv[1], f) for f in os.listdir(sys.argv[1]))
    with Pool(2) as pool:
        pool.map(one, files, chunksize=4)
"""

ONE_SHOT = (
    "import sys, cv2, numpy as np; "
    "K = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float32); "
    "cv2.imwrite(sys.argv[2], cv2.filter2D(cv2.imread(sys.argv[1], cv2.IMREAD_UNCHANGED), -1, K))"
)


def timed(command: list[str] | str, shell: bool = False) -> float:
    started = time.perf_counter()
    subprocess.run(command, shell=shell, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def main() -> None:
    compile_convkit()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--loop-images", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    convkit = convkit_command()
    mogrify = shutil.which("mogrify")
    work = Path(tempfile.mkdtemp(prefix="convkit-bench-"))
    images = fresh(work / "in")
    for i in range(args.images):
        shutil.copyfile(PHOTO, images / f"img{i:04d}.png")
    loop_files = sorted(images.iterdir())[: args.loop_images]
    pool_script = work / "pool.py"
    pool_script.write_text(POOL_SCRIPT)

    def run_convkit() -> float:
        out = fresh(work / "out-convkit")
        return timed([convkit, "apply", "--image", str(images), "--kernel", "sharpen",
                      "--backend", "filter2d", "--no-compare", "--jobs", "2", "--quiet",
                      "--out", str(out)])  # fmt: skip

    def run_pool() -> float:
        return timed([sys.executable, str(pool_script), str(images), str(fresh(work / "out-pool"))])

    def run_mogrify() -> float:
        out = fresh(work / "out-mogrify")
        files = [str(p) for p in sorted(images.iterdir())]
        return timed(
            [mogrify, "-path", str(out), "-morphology", "Convolve", SHARPEN_MAGICK, *files]
        )

    def run_convkit_loop() -> float:
        out = fresh(work / "out-loop-convkit")
        script = "; ".join(
            f"{convkit} apply --image {f} --kernel sharpen --backend filter2d --no-compare "
            f"--quiet --out {out}"
            for f in loop_files
        )
        return timed(script, shell=True)

    def run_python_loop() -> float:
        out = fresh(work / "out-loop-python")
        script = "; ".join(
            f"{sys.executable} -c '{ONE_SHOT}' {f} {out / f.name}" for f in loop_files
        )
        return timed(script, shell=True)

    runs = {
        "convkit --jobs 2": (run_convkit, args.images),
        "bare cv2 pool script (2 processes)": (run_pool, args.images),
        "convkit, shell loop, one process per file": (run_convkit_loop, len(loop_files)),
        "python -c cv2 one-shot, shell loop": (run_python_loop, len(loop_files)),
    }
    if mogrify:
        runs["ImageMagick mogrify -morphology Convolve"] = (run_mogrify, args.images)
    else:
        print("ImageMagick's mogrify is not installed: its row is skipped.", file=sys.stderr)

    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, (run, _count) in runs.items():
            times[name].append(run())

    rate = {name: runs[name][1] / statistics.median(t) for name, t in times.items()}
    title = f"{args.images} copies of a 512x512 colour PNG, 3x3 sharpen"
    print(f"{title}, median of {args.rounds} rounds\n")
    print("| run | images | median s | images/s |")
    print("|---|---:|---:|---:|")
    for name, t in times.items():
        print(f"| {name} | {runs[name][1]} | {statistics.median(t):.2f} | {rate[name]:.1f} |")
    print()
    convkit_rate = rate["convkit --jobs 2"]
    ratios = [
        (
            "convkit / bare pool script",
            convkit_rate / rate["bare cv2 pool script (2 processes)"],
            0.8,
        ),
        (
            "convkit shell loop / python -c shell loop",
            rate["convkit, shell loop, one process per file"]
            / rate["python -c cv2 one-shot, shell loop"],
            0.85,
        ),
    ]
    if mogrify:
        magick_rate = rate["ImageMagick mogrify -morphology Convolve"]
        ratios.insert(0, ("convkit / mogrify", convkit_rate / magick_rate, 4.0))
    print("| ratio (images/s) | measured | goal |")
    print("|---|---:|---:|")
    for name, value, goal in ratios:
        print(f"| {name} | {value:.2f}x | >= {goal}x |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
