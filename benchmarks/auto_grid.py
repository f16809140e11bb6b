"""Is `auto` the fastest? A grid of kernel shapes, ranks, precisions and image sizes, each
cell timed through `auto` and through every alternative that convkit and OpenCV offer.

    python benchmarks/auto_grid.py [--quick] [--sizes 512,2048] [--shapes 2x2,51x51]
                                   [--repeat 9] [--threads N] [--calibrate] [--no-confirm]
                                   [--json F]

Contenders in each cell, all on the same float image with replicate borders, timed in
--repeat interleaved rounds (in a new order each round; more rounds for cells of quick calls,
until a typical call has had 100 ms, at most 200 rounds) after one warm-up of each; the
ratios compare medians (what a user typically gets), the ratios of minimums are kept beside
them. A cell over the 1.1x goal is timed once more, every contender with it, with twice the
rounds; both passes are reported (--no-confirm: one pass only).

- ``auto`` with the built-in cost model, and with this machine's calibration when there is
  one (``--calibrate`` makes one first, in the cache folder `convkit.calibration` uses);
- the ``filter2d`` backend (sepFilter2D for rank 1, else filter2D);
- plain ``cv2.filter2D`` (direct sums below 50 taps, 130 in float32; its own DFT above);
- ``cv2.sepFilter2D`` with the kernel's exact factors, for rank 1;
- low-rank sums, one sepFilter2D pass per SVD term, for rank 2 (and for full-rank kernels
  of 2 or 3 rows or columns, whose rank is that small);
- the ``fft`` backend, from 50 taps (below, it is slower than the others many times over);
- the ``numpy`` backend (shift-and-add), up to 9 taps.

Kernels: rank 1 is a Gaussian, rank 2 a difference of Gaussians, full rank random weights.
Prints auto's ratio to the fastest alternative per cell, the worst cells, the processor and
the load average (the ratios mean little on a busy machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from convkit.backends import get_backend
from convkit.backends.auto import plan, run_plan
from convkit.backends.filter2d import separable_factors
from convkit.backends.lowrank import correlate_terms, separable_terms
from convkit.calibration import (
    CostModel,
    built_in_model,
    calibrate,
    calibration_path,
    machine_fingerprint,
    opencv_threads,
    read_calibration,
)
from convkit.padding import make_padding

sys.path.insert(0, str(Path(__file__).parent))

from common import interleaved_ms  # noqa: E402

SQUARE_SIDES = (2, 3, 5, 7, 9, 11, 15, 21, 31, 51, 75, 101)
RECTANGLES = ((3, 31), (31, 3), (5, 51), (51, 5), (2, 75), (75, 2), (21, 51), (51, 21),
              (11, 101), (101, 11))  # fmt: skip
QUICK_SQUARE_SIDES = (3, 7, 11, 21, 51, 101)
QUICK_RECTANGLES = ((5, 51), (51, 5), (11, 101))
# At 4096^2 a cell takes seconds: fewer shapes there.
LARGE_IMAGE = 4096
LARGE_SQUARE_SIDES = (3, 9, 21, 51, 101)
LARGE_RECTANGLES = ((5, 51), (101, 11))
RANKS = ("1", "2", "full")
FFT_MIN_TAPS = 50
NUMPY_MAX_TAPS = 9
REPLICATE = make_padding("replicate")
# A quick cell is timed in more rounds, up to these.
MIN_TIMED_MS = 100.0
MAX_ROUNDS = 200


def gaussian(taps: int, sigma: float) -> np.ndarray:
    offsets = np.arange(taps) - (taps - 1) / 2
    weights = np.exp(-(offsets**2) / (2 * sigma * sigma))
    return weights / weights.sum()


def kernel_of_rank(rank: str, kh: int, kw: int, rng: np.random.Generator) -> np.ndarray:
    """A Gaussian (rank 1), a difference of Gaussians (rank 2) or random weights (full)."""
    narrow = np.outer(gaussian(kh, kh / 6 + 0.5), gaussian(kw, kw / 6 + 0.5))
    if rank == "1":
        return narrow
    if rank == "2":
        wide = np.outer(gaussian(kh, kh / 3.75 + 0.8), gaussian(kw, kw / 3.75 + 0.8))
        return narrow - wide
    return rng.random((kh, kw)) - 0.5


def contenders(
    image: np.ndarray, weights: np.ndarray, models: dict[str, CostModel]
) -> dict[str, Callable[[], np.ndarray]]:
    """Every way of filtering this cell: auto per model first, then the alternatives."""
    kh, kw = weights.shape
    anchor = (kh // 2, kw // 2)
    cv_anchor = (kw // 2, kh // 2)
    depth = cv2.CV_32F if image.dtype == np.float32 else cv2.CV_64F
    border = cv2.BORDER_REPLICATE
    runs: dict[str, Callable[[], np.ndarray]] = {}
    for name, model in models.items():
        runs[name] = lambda model=model: run_plan(
            plan(image, weights, anchor, REPLICATE, model), image, weights, anchor, REPLICATE
        )
    runs["filter2d backend"] = lambda: get_backend("filter2d")(image, weights, anchor, REPLICATE)
    kernel = weights.astype(image.dtype)
    runs["cv2.filter2D"] = lambda: cv2.filter2D(
        image, depth, kernel, anchor=cv_anchor, borderType=border
    )
    factors = separable_factors(weights)
    if factors is not None:
        column, row = (f.astype(image.dtype) for f in factors)
        runs["cv2.sepFilter2D"] = lambda: cv2.sepFilter2D(
            image, depth, row, column, anchor=cv_anchor, borderType=border
        )
    terms = separable_terms(weights)
    if terms is not None and len(terms) > 1:
        runs["low-rank sum"] = lambda: correlate_terms(image, terms, anchor, border)
    if kh * kw <= NUMPY_MAX_TAPS:
        runs["numpy backend"] = lambda: get_backend("numpy")(image, weights, anchor, REPLICATE)
    if kh * kw >= FFT_MIN_TAPS:
        runs["fft backend"] = lambda: get_backend("fft")(image, weights, anchor, REPLICATE)
    return runs


def measure_cell(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, dict]:
    """Median and min ms of each run.

    The ratios use the median, what a user typically gets: OpenCV's parallel passes vary
    far more than its one-thread DFT (sepFilter2D, 51-tap Gaussian, 2048^2 float64: 46 ms
    at best, 76 typically; filter2D's DFT 45 and 45), so ratios of minimums would crown
    lucky runs. The ratios of minimums are reported beside them.
    """
    times = interleaved_ms(runs, repeat, MIN_TIMED_MS, MAX_ROUNDS)
    return {
        "min": {name: min(ts) for name, ts in times.items()},
        "median": {name: statistics.median(ts) for name, ts in times.items()},
    }


def grid_shapes(size: int, quick: bool) -> list[tuple[int, int]]:
    if quick:
        sides, rectangles = QUICK_SQUARE_SIDES, QUICK_RECTANGLES
    elif size >= LARGE_IMAGE:
        sides, rectangles = LARGE_SQUARE_SIDES, LARGE_RECTANGLES
    else:
        sides, rectangles = SQUARE_SIDES, RECTANGLES
    return [(n, n) for n in sides] + list(rectangles)


def strategy_label(image: np.ndarray, weights: np.ndarray, model: CostModel) -> str:
    kh, kw = weights.shape
    chosen = plan(image, weights, (kh // 2, kw // 2), REPLICATE, model)
    return f"{chosen.strategy}{len(chosen.terms)}" if chosen.terms else chosen.strategy


def run_grid(args: argparse.Namespace, models: dict[str, CostModel]) -> list[dict]:
    rng = np.random.default_rng(0)
    cells = []
    for size in args.sizes:
        for precision in args.precisions:
            image = rng.random((size, size)).astype(precision)
            for kh, kw in args.shapes or grid_shapes(size, args.quick):
                for rank in RANKS:
                    if rank == "2" and min(kh, kw) < 2:
                        continue
                    weights = kernel_of_rank(rank, kh, kw, rng)
                    runs = contenders(image, weights, models)
                    cell = {"size": size, "precision": precision, "kernel": [kh, kw],
                            "rank": rank}  # fmt: skip
                    cell["picks"] = {m: strategy_label(image, weights, models[m]) for m in models}
                    record(cell, measure_cell(runs, args.repeat), models)
                    if max(cell["ratios"].values()) > GOAL and args.confirm:
                        # Timed again, every contender with it, twice as many rounds: a cell
                        # over the goal by the neighbours' doing comes back under it, a real
                        # miss stays. Both passes are kept and reported.
                        cell["first_pass"] = {k: cell.pop(k) for k in PASS_KEYS}
                        record(cell, measure_cell(runs, 2 * args.repeat), models)
                    cells.append(cell)
                    print(cell_line(cell), flush=True)
    return cells


GOAL = 1.1
PASS_KEYS = ("ms", "min_ms", "load", "fastest", "ratios", "min_ratios")


def record(cell: dict, measured: dict[str, dict], models: dict[str, CostModel]) -> None:
    """Put one pass's times, fastest alternative and auto's ratios into ``cell``."""
    times, least = measured["median"], measured["min"]
    cell["ms"], cell["min_ms"] = times, least
    cell["load"] = os.getloadavg()[0]
    fastest = min((t, n) for n, t in times.items() if n not in models)
    cell["fastest"] = fastest[1]
    cell["ratios"] = {m: times[m] / fastest[0] for m in models}
    best = min(t for n, t in least.items() if n not in models)
    cell["min_ratios"] = {m: least[m] / best for m in models}


def cell_line(cell: dict) -> str:
    kh, kw = cell["kernel"]
    autos = "  ".join(
        f"{m} {cell['ms'][m]:7.2f} ms ({cell['picks'][m]}) x{cell['ratios'][m]:.2f} "
        f"(min x{cell['min_ratios'][m]:.2f})"
        for m in cell["ratios"]
    )
    fastest = cell["fastest"]
    again = ""
    if "first_pass" in cell:
        first = max(cell["first_pass"]["ratios"].values())
        again = f" [first pass x{first:.2f}, timed again]"
    return (
        f"{cell['size']:>4}² {cell['precision']} {kh:>3}x{kw:<3} rank {cell['rank']:<4} "
        f"{autos}  | fastest {fastest} {cell['ms'][fastest]:.2f} ms, load "
        f"{cell['load']:.2f}{again}"
    )


# The alternative that runs what auto picked, as a plain call.
PLAIN_CALL = {"filter2d": "cv2.filter2D", "separable1": "cv2.sepFilter2D", "fft": "fft backend"}


def choice_ratio(cell: dict, model: str) -> float:
    """The plain call of auto's pick over the fastest alternative: the quality of the choice
    alone, without auto's own overhead or the noise between its runs and that call's."""
    if cell["picks"][model] == "zeros":  # a kernel of zeros: no call to make plainly
        return cell["ratios"][model]
    plain = PLAIN_CALL.get(cell["picks"][model], "low-rank sum")
    if plain not in cell["ms"]:  # a rank-1 kernel of one row or column: filter2D's call
        plain = "cv2.filter2D"
    return cell["ms"][plain] / cell["ms"][cell["fastest"]]


def noise_ratio(cell: dict) -> float:
    """How far two runs of one call disagree in this cell: the filter2d backend and
    cv2.filter2D, the same call for a kernel that is not of rank 1."""
    pair = cell["ms"]["filter2d backend"], cell["ms"]["cv2.filter2D"]
    return max(pair) / min(pair)


def twin_ratios(cells: list[dict], contender: str) -> list[float]:
    """max/min of ``contender``'s medians in the rank-2 and full-rank cells of each size,
    precision and kernel shape: runs of identical work in two places of the grid."""
    pairs: dict[tuple, list[float]] = {}
    for cell in cells:
        if cell["rank"] != "1" and contender in cell["ms"]:
            key = (cell["size"], cell["precision"], tuple(cell["kernel"]))
            pairs.setdefault(key, []).append(cell["ms"][contender])
    return [max(p) / min(p) for p in pairs.values() if len(p) == 2]


def summary(cells: list[dict], models: dict[str, CostModel]) -> None:
    print()
    fingerprint = machine_fingerprint()
    print(f"processor: {fingerprint['processor']}, {fingerprint['cores']} cores, "
          f"OpenCV {fingerprint['opencv']}, numpy {fingerprint['numpy']}, "
          f"scipy {fingerprint['scipy']}")  # fmt: skip
    loads = [c["load"] for c in cells]
    print(f"load average (1 min) while measuring: {min(loads):.2f} to {max(loads):.2f}, "
          f"median {statistics.median(loads):.2f}")  # fmt: skip
    twins = [noise_ratio(c) for c in cells if c["rank"] != "1"]
    print(f"noise floor: the filter2d backend and cv2.filter2D make the same call in "
          f"{len(twins)} cells (rank 2 and full); their medians differ by more than {GOAL}x in "
          f"{sum(r > GOAL for r in twins)}, by up to x{max(twins, default=1):.2f}")  # fmt: skip
    fft_twins = twin_ratios(cells, "fft backend")
    print(f"the fft backend's work is the same for rank 2 and full rank: its medians in the two "
          f"cells differ by more than {GOAL}x in {sum(r > GOAL for r in fft_twins)} of "
          f"{len(fft_twins)} pairs, by up to x{max(fft_twins, default=1):.2f} (both cores: "
          f"what else runs on them shows)")  # fmt: skip
    for name in models:
        ratios = sorted(cells, key=lambda c: c["ratios"][name], reverse=True)
        over = sum(c["ratios"][name] > GOAL for c in cells)
        first = sum(c.get("first_pass", c)["ratios"][name] > GOAL for c in cells)
        geometric = float(np.exp(np.mean([np.log(c["ratios"][name]) for c in cells])))
        by_min = sum(c["min_ratios"][name] > GOAL for c in cells)
        choices = [choice_ratio(c, name) for c in cells]
        print(f"{name}: {len(cells)} cells, {over} over {GOAL}x by medians ({first} in the "
              f"first pass; {by_min} by minimums), geometric mean x{geometric:.3f}; "
              f"its pick as a plain call: "
              f"{sum(r > GOAL for r in choices)} over {GOAL}x, worst x{max(choices):.2f}; "
              f"worst cells:")  # fmt: skip
        for cell in ratios[:5]:
            print("   ", cell_line(cell))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer shapes, 512 and 2048 only")
    parser.add_argument("--sizes", help="image sides, comma-separated")
    parser.add_argument("--precisions", default="float64,float32")
    parser.add_argument("--shapes", help="only these kernels, e.g. 2x2,51x51 (cells again)")
    parser.add_argument("--repeat", type=int, default=9, help="interleaved rounds per cell")
    parser.add_argument(
        "--no-confirm",
        dest="confirm",
        action="store_false",
        help="do not time cells over the goal again",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="OpenCV threads (and so the FFT's), e.g. 1 as in a batch's --jobs workers",
    )
    parser.add_argument("--calibrate", action="store_true", help="calibrate this machine first")
    parser.add_argument("--json", help="write the cells to this file")
    args = parser.parse_args()
    default_sizes = "512,2048" if args.quick else "512,1024,2048,4096"
    args.sizes = [int(s) for s in (args.sizes or default_sizes).split(",")]
    args.precisions = args.precisions.split(",")
    if args.shapes:
        args.shapes = [tuple(int(n) for n in s.split("x")) for s in args.shapes.split(",")]
    if args.threads:
        cv2.setNumThreads(args.threads)
    print(f"OpenCV threads: {cv2.getNumThreads()}")
    if args.calibrate:
        done = calibrate()
        print(f"calibrated in {done.seconds:.0f} s: {done.path}")
    models = {"auto": built_in_model(opencv_threads())}
    calibrated = read_calibration(calibration_path())
    if calibrated is not None:
        models["auto (calibrated)"] = calibrated
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    started = time.perf_counter()
    cells = run_grid(args, models)
    summary(cells, models)
    print(f"load average after: {os.getloadavg()[0]:.2f}; {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(cells, out, indent=1)


if __name__ == "__main__":
    main()
