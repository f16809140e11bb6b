"""Images larger than memory: convkit's tiled run against `vips conv` and dask-image.

1. A 20000 x 20000 grey uint8 TIFF (400 MB, tiled 256 x 256, made in a temporary folder)
   filtered with the 3x3 ``sharpen`` and the 21x21 ``large_blur`` box, each tool in its own
   process, its wall time, CPU time and peak RSS (``os.wait4``) measured:
   - convkit: `convkit.tiled.apply_tiled` under ``max_memory`` 128M, backend filter2d, no
     comparison picture (what ``convkit apply big.tif -k K --max-memory 128M -b filter2d
     --no-compare`` runs once wired), writing a tiled TIFF;
   - ``vips conv`` (streaming; ``--precision integer``, exact for these integer masks, and
     ``approximate``, which libvips offers for large masks), writing a tiled TIFF;
   - ``dask_image.ndfilters.convolve`` on the file read lazily (tifffile's Zarr view) in
     convkit's own chunking, float32, clipped and rounded to uint8 as convkit does,
     written with ``to_zarr``.
   Each output is compared with convkit's in a corner (where the padding shows) and in the
   centre (max |difference| in grey levels).
2. ``wrap`` and ``reflect101`` agreement across chunk borders: a 1000 x 1300 image in
   256 x 256 chunks, convkit's lazy response and dask-image's against the in-memory one.
3. How the tiled run's time and peak memory grow from 1e8 to 1e9 pixels (sharpen).

dask-image is not a convkit dependency: ``pip install dask-image`` to include it (skipped
with a message otherwise); ``vips`` comes with libvips-tools (``apt-get install
libvips-tools``; skipped with a message where missing). The machine's load average is
printed with the results: on a shared machine, CPU time says more than wall time.

    python benchmarks/scale.py [--side 20000] [--runs 3] [--sizes 1e8,2.5e8,4e8,1e9]
                               [--skip-peers] [--skip-scaling] [--keep DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

TILE = 256
LIMIT = 128 * 2**20
KERNELS = ("sharpen", "large_blur")


class Measure(NamedTuple):
    wall: float  # seconds
    cpu: float  # user + system seconds
    peak: int  # bytes of peak RSS


def run_measured(command: list[str], env: dict | None = None) -> Measure:
    """Run ``command`` to its end; its wall time, CPU time and peak RSS (its own, by
    ``wait4``)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    out, err = process.stdout.read(), process.stderr.read()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"{command[0]} failed ({process.returncode}): {err.decode()[-2000:]}")
    del out
    return Measure(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)


def median_of(runs: list[Measure]) -> Measure:
    return Measure(
        statistics.median(r.wall for r in runs),
        statistics.median(r.cpu for r in runs),
        max(r.peak for r in runs),
    )


# --- the image ----------------------------------------------------------------------------


def make_image(path: Path, side: int) -> Path:
    """A grey uint8 TIFF of ``side`` x ``side``, tiled 256 x 256, like a scanned photo:
    gradients, edges of several sizes and noise. Written tile by tile."""
    import tifffile

    rng = np.random.default_rng(20000)
    yy, xx = np.mgrid[0:TILE, 0:TILE].astype(np.int32)

    def tiles():
        for top in range(0, side, TILE):
            for left in range(0, side, TILE):
                y, x = yy + top, xx + left
                base = (y // 7 + x // 11) % 160 + 40 * ((y // 300 + x // 500) % 2)
                noise = rng.integers(0, 56, (TILE, TILE), dtype=np.int32)
                yield (base + noise).astype(np.uint8)

    tifffile.imwrite(path, tiles(), shape=(side, side), dtype=np.uint8, tile=(TILE, TILE),
                     metadata=None, bigtiff=side * side > 3 * 2**30)  # fmt: skip
    return path


# --- the tools ----------------------------------------------------------------------------

CONVKIT_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from convkit.kernels import get_kernel
    from convkit.pipeline import ApplySettings
    from convkit.tiled import apply_tiled, limit_heap_retention

    source, output, kernel = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    limit, compare = int(sys.argv[4]), sys.argv[5] == "1"
    limit_heap_retention()  # as the command line does before a tiled run
    settings = ApplySettings(out_dir=output.parent, max_memory=limit, compare=compare,
                             backends=None if compare else ("filter2d",))
    picture = output.with_name(output.stem + "_compare.png") if compare else None
    report = apply_tiled(source, [get_kernel(kernel)], settings, [(output, picture)])
    print(report.notes[-1], file=sys.stderr)
    """
)

DASK_IMAGE_CHILD = textwrap.dedent(
    """
    import sys
    import dask, dask.array as da, numpy as np, tifffile, zarr
    from dask_image import ndfilters
    from convkit.kernels import get_kernel

    source, output, kernel, rows, columns = sys.argv[1:6]
    weights = get_kernel(kernel).weights.astype(np.float32)
    image = da.from_zarr(zarr.open(tifffile.imread(source, aszarr=True), mode="r"),
                         chunks=(int(rows), int(columns)))
    response = ndfilters.convolve(image.astype(np.float32), weights[::-1, ::-1], mode="nearest")
    pixels = da.clip(da.round(response), 0, 255).astype(np.uint8)
    with dask.config.set(scheduler="threads"):
        pixels.to_zarr(output, overwrite=True)
    """
)


def convkit_run(source: Path, output: Path, kernel: str, compare: bool = False) -> Measure:
    output.unlink(missing_ok=True)
    command = [sys.executable, "-c", CONVKIT_CHILD, str(source), str(output), kernel,
               str(LIMIT), "1" if compare else "0"]  # fmt: skip
    return run_measured(command)


def vips_mask(kernel: str, folder: Path) -> Path:
    """The kernel as a libvips matrix file: integer weights, scale = their sum (or 1)."""
    from convkit.kernels import get_kernel

    weights = get_kernel(kernel).weights
    scale = 1
    if not np.all(weights == np.round(weights)):  # a box: its integer mask and its sum
        scale = round(1 / weights.flat[0])
        weights = np.round(weights * scale)
    path = folder / f"{kernel}.mat"
    rows = [" ".join(str(int(v)) for v in row) for row in weights]
    path.write_text(f"{weights.shape[1]} {weights.shape[0]} {scale} 0\n" + "\n".join(rows) + "\n")
    return path


def vips_run(vips: str, source: Path, output: Path, mask: Path, precision: str) -> Measure:
    output.unlink(missing_ok=True)
    target = f"{output}[tile,tile-width={TILE},tile-height={TILE}]"
    return run_measured([vips, "conv", str(source), target, str(mask), "--precision", precision])


def dask_image_run(source: Path, output: Path, kernel: str, chunks: tuple[int, int]) -> Measure:
    shutil.rmtree(output, ignore_errors=True)
    command = [sys.executable, "-c", DASK_IMAGE_CHILD, str(source), str(output), kernel,
               str(chunks[0]), str(chunks[1])]  # fmt: skip
    return run_measured(command)


def convkit_chunks(side: int, kernel: str) -> tuple[int, int]:
    """The bands and chunks convkit's plan picks for this image under the limit."""
    from convkit.kernels import get_kernel
    from convkit.tiled import plan_tiles

    plan = plan_tiles((side, side), 1, 1, [get_kernel(kernel)], "filter2d", LIMIT)
    return plan.band_rows, plan.chunk_columns


def region(path: Path, where: tuple[int, int], size: int = 512) -> np.ndarray:
    """A size x size region of a TIFF or Zarr output, read lazily."""
    import tifffile
    import zarr

    store = zarr.open(str(path), mode="r") if path.is_dir() else zarr.open(
        tifffile.imread(path, aszarr=True), mode="r")  # fmt: skip
    y, x = where
    return np.asarray(store[y : y + size, x : x + size]).astype(np.int16)


def agreement(reference: Path, other: Path, side: int) -> str:
    corner = np.abs(region(reference, (0, 0)) - region(other, (0, 0))).max()
    middle = (side // 2 - 256, side // 2 - 256)
    centre = np.abs(region(reference, middle) - region(other, middle)).max()
    return f"{corner}, {centre}"


# --- the sections -------------------------------------------------------------------------


def peers_table(folder: Path, side: int, runs: int, skip_peers: bool) -> list[str]:
    source = make_image(folder / "big.tif", side)
    vips = shutil.which("vips")
    try:
        import dask_image  # noqa: F401

        has_dask_image = True
    except ImportError:
        has_dask_image = False
    lines = [
        f"### {side}x{side} grey uint8 TIFF ({source.stat().st_size / 1e6:.0f} MB, tiled "
        f"{TILE}x{TILE}), median of {runs} runs; differences in grey levels, in a 512x512",
        "corner (where the padding shows) and in the centre",
        "",
        "| kernel | tool | wall s | CPU s | peak RSS MB | max abs diff vs convkit |",
        "|---|---|---|---|---|---|",
    ]
    for kernel in KERNELS:
        ours = folder / f"convkit_{kernel}.tif"
        measure = median_of([convkit_run(source, ours, kernel) for _ in range(runs)])
        lines.append(_row(kernel, "convkit tiled, 128M", measure, "-"))
        if skip_peers:
            continue
        if vips is None:
            lines.append(f"| {kernel} | vips conv | skipped: vips not installed | | | |")
        else:
            mask = vips_mask(kernel, folder)
            for precision in ("integer", "approximate"):
                theirs = folder / f"vips_{kernel}_{precision}.tif"
                measure = median_of(
                    [vips_run(vips, source, theirs, mask, precision) for _ in range(runs)]
                )
                lines.append(_row(kernel, f"vips conv --precision {precision}", measure,
                                  agreement(ours, theirs, side)))  # fmt: skip
        if not has_dask_image:
            lines.append(f"| {kernel} | dask-image | skipped: pip install dask-image | | | |")
            continue
        chunks = convkit_chunks(side, kernel)
        theirs = folder / f"dask_image_{kernel}.zarr"
        measure = median_of([dask_image_run(source, theirs, kernel, chunks) for _ in range(runs)])
        label = f"dask-image convolve, chunks {chunks[0]}x{chunks[1]}"
        lines.append(_row(kernel, label, measure, agreement(ours, theirs, side)))
    measure = convkit_run(source, folder / "convkit_default.tif", "sharpen", compare=True)
    lines.append(_row("sharpen", "convkit tiled + comparison (naive on the crop)", measure, "-"))
    return lines


def _row(kernel: str, tool: str, measure: Measure, diff: str) -> str:
    return (
        f"| {kernel} | {tool} | {measure.wall:.2f} | {measure.cpu:.2f} | "
        f"{measure.peak / 2**20:.0f} | {diff} |"
    )


def wrap_table() -> list[str]:
    """convkit's lazy response and dask-image's against the in-memory one, across chunk
    borders, for wrap and reflect101."""
    import dask.array as da

    from convkit.engine import convolve
    from convkit.kernels import Kernel, get_kernel
    from convkit.padding import make_padding
    from convkit.tiles import convolve_lazy

    rng = np.random.default_rng(242)
    image = rng.integers(0, 256, (1000, 1300)).astype(np.float64)
    kernels = [get_kernel("large_blur"), Kernel("asym5x3", rng.integers(-4, 5, (5, 3)))]
    lines = [
        "### Agreement across chunk borders (1000x1300 float image, 256x256 chunks)",
        "",
        "| padding | kernel | convkit lazy max abs diff | dask-image max abs diff |",
        "|---|---|---|---|",
    ]
    try:
        from dask_image import ndfilters
    except ImportError:
        ndfilters = None
    chunked = da.from_array(image, chunks=(256, 256))
    for mode, scipy_mode in (("wrap", "wrap"), ("reflect101", "mirror")):
        padding = make_padding(mode)
        for kernel in kernels:
            expected = convolve(image, kernel, padding=padding)
            ours = convolve_lazy(chunked, kernel, padding).compute()
            theirs = "not installed"
            if ndfilters is not None:
                response = ndfilters.correlate(chunked, kernel.weights, mode=scipy_mode).compute()
                theirs = f"{np.abs(response - expected).max():.3g}"
            lines.append(f"| {mode} | {kernel.name} | {np.abs(ours - expected).max():.3g} | "
                         f"{theirs} |")  # fmt: skip
    return lines


def scaling_table(folder: Path, sizes: list[float]) -> list[str]:
    free = shutil.disk_usage(folder).free
    lines = [
        "### Tiled run (sharpen, 128M) from 1e8 to 1e9 pixels",
        "",
        "| pixels | side | wall s | CPU s | peak RSS MB | MP/s |",
        "|---|---|---|---|---|---|",
    ]
    for pixels in sizes:
        side = math.isqrt(int(pixels))
        if 2.2 * side * side > free:
            lines.append(f"| {pixels:.2g} | {side} | skipped: {free / 1e9:.0f} GB free | | | |")
            continue
        source = make_image(folder / f"scale_{side}.tif", side)
        measure = convkit_run(source, folder / f"scale_{side}_out.tif", "sharpen")
        lines.append(
            f"| {pixels:.2g} | {side} | {measure.wall:.2f} | {measure.cpu:.2f} | "
            f"{measure.peak / 2**20:.0f} | {side * side / 1e6 / measure.wall:.0f} |"
        )
        source.unlink()
        (folder / f"scale_{side}_out.tif").unlink(missing_ok=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="1e8,2.5e8,4e8,1e9")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR and keep it")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="convkit-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    try:
        lines = peers_table(folder, args.side, args.runs, args.skip_peers) + [""]
        lines += wrap_table() + [""]
        if not args.skip_scaling:
            lines += scaling_table(folder, [float(s) for s in args.sizes.split(",")])
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    lines += ["", f"load average at start {load[0]:.1f}, at end {os.getloadavg()[0]:.1f} "
              f"({os.cpu_count()} cores)"]  # fmt: skip
    print("\n".join(lines))


if __name__ == "__main__":
    main()
