"""convkit against the peers, in one run: the library against direct OpenCV calls, and the
whole process against a bare python+cv2 one-shot, `vips conv` and ImageMagick.

1. Library: ``convkit.convolve(img, k, backend="auto")`` against the fastest direct OpenCV
   call (cv2.filter2D or cv2.sepFilter2D, float64 in and out; float32 with
   ``precision="float32"``) on the same array, for 3x3 sharpen, 2x2, 7x7 box, 21x21 box, a
   21x21 random kernel and a 51x51 Gaussian. Medians of interleaved runs.
2. Whole process on a 2048x2048 PNG (grey and colour), read -> filter -> write, for the 3x3
   sharpen and the 21x21 box: ``convkit apply --backend auto --no-compare --quiet`` against
   the one-shot, ``vips conv`` and ``convert -morphology Convolve`` where installed
   (skipped with a message where not; this script installs nothing).

Prints markdown tables of medians and ratios.

    python benchmarks/peers.py [--sizes 2048,4096] [--runs 5] [--skip-library]
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

import cv2
import numpy as np
from common import compile_convkit, convkit_command, median_ms

import convkit

ROOT = Path(__file__).resolve().parent.parent


def _working(tool: str, version_flag: str) -> str | None:
    """The tool's path when it is installed and answers its version flag (some machines
    carry a stand-in `convert` that does nothing else)."""
    path = shutil.which(tool)
    if path is None:
        return None
    done = subprocess.run([path, version_flag], capture_output=True)
    return path if done.returncode == 0 else None


def library_kernels(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "3x3 sharpen": convkit.get_kernel("sharpen").weights,
        "2x2": np.array([[1.0, 2.0], [3.0, 4.0]]),
        "7x7 box": convkit.get_kernel("box:7").weights,
        "21x21 box": convkit.get_kernel("box:21").weights,
        "21x21 random": rng.normal(size=(21, 21)),
        "51x51 gaussian": convkit.get_kernel("gaussian:51").weights,
    }


def direct_opencv(image: np.ndarray, weights: np.ndarray, depth: int) -> np.ndarray:
    """The fastest plain OpenCV call: sepFilter2D for a rank-1 kernel, filter2D otherwise.

    Rank is judged on the float64 weights, as convkit judges it.
    """
    as_float64 = weights.astype(np.float64)
    singular = np.linalg.svd(as_float64, compute_uv=False)
    border = cv2.BORDER_REPLICATE
    if min(weights.shape) > 1 and singular[1] <= 1e-12 * singular[0]:
        u, s, vt = np.linalg.svd(as_float64)
        column = (u[:, 0] * np.sqrt(s[0])).astype(weights.dtype)
        row = (vt[0] * np.sqrt(s[0])).astype(weights.dtype)
        return cv2.sepFilter2D(image, depth, row, column, borderType=border)
    return cv2.filter2D(image, depth, weights, borderType=border)


def library_table(sizes: list[int], runs: int) -> None:
    rng = np.random.default_rng(0)
    print("Library: convkit.convolve(backend='auto') against the fastest direct OpenCV call\n")
    print("| image | kernel | precision | OpenCV ms | convkit ms | ratio |")
    print("|---|---|---|---:|---:|---:|")
    for size in sizes:
        for precision, dtype, depth in (("float64", np.float64, cv2.CV_64F),
                                        ("float32", np.float32, cv2.CV_32F)):  # fmt: skip
            image = rng.random((size, size)).astype(dtype)
            for name, weights in library_kernels(rng).items():
                kernel = weights.astype(dtype)

                def ours(image=image, weights=weights, precision=precision):
                    return convkit.convolve(image, weights, backend="auto", precision=precision)

                def theirs(image=image, kernel=kernel, depth=depth):
                    return direct_opencv(image, kernel, depth)

                ours(), theirs()  # warm-up
                a, b = [], []
                for _ in range(runs):  # interleaved, so that noise hits both alike
                    a.append(median_ms(theirs, 1))
                    b.append(median_ms(ours, 1))
                ma, mb = statistics.median(a), statistics.median(b)
                print(f"| {size}x{size} | {name} | {precision} | {ma:.1f} | {mb:.1f} | "
                      f"{mb / ma:.2f}x |")  # fmt: skip
    print()


ONE_SHOT = (
    "import sys, cv2, numpy as np; "
    "k = np.loadtxt(sys.argv[3], ndmin=2); "
    "cv2.imwrite(sys.argv[2], cv2.filter2D(cv2.imread(sys.argv[1], cv2.IMREAD_UNCHANGED), -1, k))"
)


def process_table(runs: int) -> None:
    convkit_bin = convkit_command()
    vips, magick = _working("vips", "--version"), _working("convert", "-version")
    for tool, name in ((vips, "vips (libvips-tools)"), (magick, "ImageMagick's convert")):
        if tool is None:
            print(f"{name} is not installed: its column is skipped.\n")
    work = Path(tempfile.mkdtemp(prefix="convkit-peers-"))
    photo = cv2.imread(str(ROOT / "sample_images" / "astronaut.png"))
    images = {
        "colour": cv2.resize(photo, (2048, 2048), interpolation=cv2.INTER_CUBIC),
        "grey": cv2.resize(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY), (2048, 2048)),
    }
    kernels = {"3x3 sharpen": convkit.get_kernel("sharpen").weights,
               "21x21 box": convkit.get_kernel("box:21").weights}  # fmt: skip
    print("Whole process, 2048x2048 PNG, read -> filter -> write (median ms)\n")
    header = "| image | kernel | python+cv2 one-shot | convkit | vips | ImageMagick |"
    print(header)
    print("|---|---|---:|---:|---:|---:|")
    ratios = []
    for image_name, image in images.items():
        source = work / f"{image_name}.png"
        cv2.imwrite(str(source), image)
        for kernel_name, weights in kernels.items():
            txt, mat = work / "k.txt", work / "k.mat"
            np.savetxt(txt, weights)
            kh, kw = weights.shape
            mat.write_text(f"{kw} {kh}\n" + "\n".join(" ".join(f"{v:.10g}" for v in row)
                                                    for row in weights) + "\n")  # fmt: skip
            magick_kernel = f"{kw}x{kh}: " + " ".join(f"{v:.10g}" for v in weights.ravel())
            one_shot = [sys.executable, "-c", ONE_SHOT, str(source), str(work / "a.png"), str(txt)]
            commands = {
                "one-shot": one_shot,
                "convkit": [convkit_bin, "apply", "--image", str(source), "--kernel-file",
                            str(txt), "--backend", "auto", "--no-compare", "--quiet",
                            "--out", str(work / "o")],
            }  # fmt: skip
            if vips:
                commands["vips"] = [vips, "conv", str(source), str(work / "v.png"), str(mat)]
            if magick:
                commands["magick"] = [magick, str(source), "-morphology", "Convolve",
                                      magick_kernel, str(work / "m.png")]  # fmt: skip
            times: dict[str, list[float]] = {k: [] for k in commands}
            for _ in range(runs):
                for key, command in commands.items():
                    started = time.perf_counter()
                    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
                    times[key].append((time.perf_counter() - started) * 1000)
            med = {k: statistics.median(v) for k, v in times.items()}
            cells = [
                f"{med[k]:.0f}" if k in med else "-"
                for k in ("one-shot", "convkit", "vips", "magick")
            ]
            print(f"| {image_name} | {kernel_name} | " + " | ".join(cells) + " |")
            ratios.append((image_name, kernel_name, med))
    print()
    print("| image | kernel | convkit / one-shot | vips / convkit | ImageMagick / convkit |")
    print("|---|---|---:|---:|---:|")
    for image_name, kernel_name, med in ratios:
        vips_ratio = f"{med['vips'] / med['convkit']:.2f}x" if "vips" in med else "-"
        magick_ratio = f"{med['magick'] / med['convkit']:.2f}x" if "magick" in med else "-"
        print(f"| {image_name} | {kernel_name} | {med['convkit'] / med['one-shot']:.2f}x | "
              f"{vips_ratio} | {magick_ratio} |")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    compile_convkit()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2048,4096")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-library", action="store_true")
    parser.add_argument("--skip-process", action="store_true")
    args = parser.parse_args()
    if not args.skip_library:
        library_table([int(s) for s in args.sizes.split(",")], args.runs)
    if not args.skip_process:
        process_table(args.runs)


if __name__ == "__main__":
    main()
