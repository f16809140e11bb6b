"""Images larger than memory: convkit's tiled run against `vips conv` and dask-image.

1. A 20000 x 20000 grey uint8 TIFF (400 MB, tiled 256 x 256, made in a temporary folder)
   filtered with the 3x3 ``sharpen`` and the 21x21 ``large_blur`` box, each tool in its own
   process, its wall time, CPU time and peak RSS (``os.wait4``) measured; the tools take
   turns (one run of each, then the next round), and the load average before each run is
   recorded, as the machine may be shared:
   - convkit: ``convkit apply big.tif -k K --max-memory 128M -b filter2d --no-compare``,
     the command line as a user runs it (start-up included), writing a tiled TIFF; also
     with its comparison (default backends: the naive loop on a crop) and, with
     ``--cluster``, through ``--scheduler local:2``;
   - ``vips conv`` (streaming; ``--precision integer``, exact for these integer masks, and
     ``approximate``, which libvips offers for large masks), writing a tiled TIFF;
   - ``dask_image.ndfilters.convolve`` on the file read lazily (tifffile's Zarr view) in
     convkit's own chunking, float32, clipped and rounded to uint8 as convkit does,
     written with ``to_zarr``.
   Each output is compared with convkit's in a corner (where the padding shows) and in the
   centre (max |difference| in grey levels). convkit's time against vips's is the median
   of the ratios of runs made side by side.
2. ``wrap`` and ``reflect101`` agreement across chunk borders: a 1000 x 1300 image in
   256 x 256 chunks, convkit's lazy response and dask-image's against the in-memory one.
3. How the tiled run's time and peak memory grow from 1e8 to 1e9 pixels (sharpen).

dask-image is not a convkit dependency: ``pip install dask-image`` to include it (skipped
with a message otherwise); ``vips`` comes with libvips-tools (``apt-get install
libvips-tools``; skipped with a message where missing). On a shared machine, CPU time says
more than wall time.

    python benchmarks/scale.py [--side 20000] [--runs 3] [--kernels sharpen,large_blur]
                               [--tools convkit,compare,vips,dask-image] [--cluster]
                               [--sizes 1e8,2.5e8,4e8,1e9] [--skip-scaling] [--keep DIR]
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
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np

TILE = 256
LIMIT = 128 * 2**20
KERNELS = ("sharpen", "large_blur")


ROOT = Path(__file__).resolve().parent.parent


class Measure(NamedTuple):
    wall: float  # seconds
    cpu: float  # user + system seconds
    peak: int  # bytes of peak RSS
    load: float = 0.0  # the 1-minute load average when it started


def run_measured(command: list[str], env: dict | None = None) -> Measure:
    """Run ``command`` to its end; its wall time, CPU time and peak RSS (its own, by
    ``wait4``), and the load average as it started."""
    load = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    out, err = process.stdout.read(), process.stderr.read()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"{command[0]} failed ({process.returncode}): {err.decode()[-2000:]}")
    del out
    return Measure(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, load)


def median_of(runs: list[Measure]) -> Measure:
    return Measure(
        statistics.median(r.wall for r in runs),
        statistics.median(r.cpu for r in runs),
        max(r.peak for r in runs),
        statistics.median(r.load for r in runs),
    )


def child_env() -> dict[str, str]:
    """This checkout first on the path, whether convkit is installed or not."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


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


def convkit_run(source: Path, output: Path, kernel: str, compare: bool = False,
                scheduler: str | None = None) -> Measure:  # fmt: skip
    """``convkit apply`` as a user runs it; ``output`` is the filtered image it writes."""
    output.unlink(missing_ok=True)
    output.with_name(output.stem + "_compare.png").unlink(missing_ok=True)
    command = [sys.executable, "-m", "convkit", "apply", str(source), "-k", kernel,
               "--max-memory", f"{LIMIT // 2**20}M", "-o", str(output.parent),
               "--quiet"]  # fmt: skip
    if not compare:
        command += ["-b", "filter2d", "--no-compare"]
    if scheduler is not None:
        command += ["--scheduler", scheduler]
    return run_measured(command, child_env())


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
    return run_measured(command, child_env())


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


class Tool(NamedTuple):
    label: str
    run: object  # () -> Measure
    output: Path | None  # compared with convkit's, where given


def peers_table(folder: Path, side: int, runs: int, kernels: list[str], tools: set[str],
                cluster: bool) -> list[str]:  # fmt: skip
    from convkit.kernels import get_kernel

    source = make_image(folder / "big.tif", side)
    vips = shutil.which("vips")
    try:
        import dask_image  # noqa: F401

        has_dask_image = True
    except ImportError:
        has_dask_image = False
    lines = [
        f"### {side}x{side} grey uint8 TIFF ({source.stat().st_size / 1e6:.0f} MB, tiled "
        f"{TILE}x{TILE}), median of {runs} runs taken in turns; differences in grey levels,",
        "in a 512x512 corner (where the padding shows) and in the centre; load: the 1-minute",
        f"load average as each run started ({os.cpu_count()} cores)",
        "",
        "| kernel | tool | wall s | CPU s | peak RSS MB | load | max abs diff vs convkit |",
        "|---|---|---|---|---|---|---|",
    ]
    skipped = []
    for kernel in kernels:
        ours = folder / "convkit" / f"big_{kernel}.tif"
        chosen = [Tool("convkit tiled, 128M", partial(convkit_run, source, ours, kernel), None)]
        if "compare" in tools:
            shown = folder / "compare" / f"big_{kernel}.tif"
            run = partial(convkit_run, source, shown, kernel, compare=True)
            chosen.append(Tool("convkit tiled + comparison (naive on the crop)", run, None))
        if cluster:
            spread = folder / "cluster" / f"big_{kernel}.tif"
            run = partial(convkit_run, source, spread, kernel, scheduler="local:2")
            chosen.append(Tool("convkit tiled, --scheduler local:2", run, spread))
        if "vips" in tools and vips is None:
            skipped.append(f"| {kernel} | vips conv | skipped: vips not installed | | | | |")
        elif "vips" in tools:
            mask = vips_mask(kernel, folder)
            large = max(get_kernel(kernel).shape) >= 7  # libvips's option for large masks
            for precision in ("integer", "approximate") if large else ("integer",):
                theirs = folder / f"vips_{kernel}_{precision}.tif"
                run = partial(vips_run, vips, source, theirs, mask, precision)
                chosen.append(Tool(f"vips conv --precision {precision}", run, theirs))
        if "dask-image" in tools and not has_dask_image:
            skipped.append(f"| {kernel} | dask-image | skipped: pip install dask-image | | | | |")
        elif "dask-image" in tools:
            chunks = convkit_chunks(side, kernel)
            theirs = folder / f"dask_image_{kernel}.zarr"
            run = partial(dask_image_run, source, theirs, kernel, chunks)
            chosen.append(Tool(f"dask-image convolve, chunks {chunks[0]}x{chunks[1]}", run, theirs))
        measures: dict[str, list[Measure]] = {tool.label: [] for tool in chosen}
        for _ in range(runs):
            for tool in chosen:
                measures[tool.label].append(tool.run())
        for tool in chosen:
            diff = "-" if tool.output is None else agreement(ours, tool.output, side)
            lines.append(_row(kernel, tool.label, median_of(measures[tool.label]), diff))
        vips_runs = measures.get("vips conv --precision integer")
        if vips_runs:
            pairs = list(zip(measures[chosen[0].label], vips_runs, strict=True))
            wall = statistics.median(a.wall / b.wall for a, b in pairs)
            cpu = statistics.median(a.cpu / b.cpu for a, b in pairs)
            lines.append(f"| {kernel} | convkit / vips integer, run by run | {wall:.2f}x | "
                         f"{cpu:.2f}x | | | |")  # fmt: skip
    return lines + skipped


def _row(kernel: str, tool: str, measure: Measure, diff: str) -> str:
    return (
        f"| {kernel} | {tool} | {measure.wall:.2f} | {measure.cpu:.2f} | "
        f"{measure.peak / 2**20:.0f} | {measure.load:.1f} | {diff} |"
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
        "| pixels | side | wall s | CPU s | peak RSS MB | MP/s | load |",
        "|---|---|---|---|---|---|---|",
    ]
    for pixels in sizes:
        side = math.isqrt(int(pixels))
        if 2.2 * side * side > free:
            lines.append(f"| {pixels:.2g} | {side} | skipped: {free / 1e9:.0f} GB free | | | | |")
            continue
        source = make_image(folder / f"scale_{side}.tif", side)
        output = folder / "scaling" / f"scale_{side}_sharpen.tif"
        measure = convkit_run(source, output, "sharpen")
        lines.append(
            f"| {pixels:.2g} | {side} | {measure.wall:.2f} | {measure.cpu:.2f} | "
            f"{measure.peak / 2**20:.0f} | {side * side / 1e6 / measure.wall:.0f} | "
            f"{measure.load:.1f} |"
        )
        source.unlink()
        output.unlink(missing_ok=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="1e8,2.5e8,4e8,1e9")
    parser.add_argument("--kernels", default=",".join(KERNELS))
    parser.add_argument(
        "--tools",
        default="convkit,compare,vips,dask-image",
        help="which rows: convkit (always), compare, vips, dask-image",
    )
    parser.add_argument("--cluster", action="store_true", help="also --scheduler local:2")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-wrap", action="store_true")
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR and keep it")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="convkit-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    tools = set(args.tools.split(","))
    try:
        lines = peers_table(folder, args.side, args.runs, args.kernels.split(","), tools,
                            args.cluster) + [""]  # fmt: skip
        if not args.skip_wrap:
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
