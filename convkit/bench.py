"""``convkit bench``: time every backend over image sizes and kernels, in one process.

A slow backend (one whose registry entry has a `convkit.backends.Cost`, such as the naive
loop) runs once, with no warm-up, and only where its estimate is within
`SLOW_BUDGET_SECONDS`; its larger cells are extrapolated from its measured cost per pixel
and marked as such.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from convkit.backends import KNOWN_BACKENDS, available_backends, check_backend_name, get_backend
from convkit.engine import convolve
from convkit.kernels import Kernel
from convkit.timing import run_timed
from convkit.verify import synthetic_image

DEFAULT_SIZES = (512, 2048)
DEFAULT_KERNELS = ("sharpen", "small_blur", "large_blur", "motion:21:30")
# A slow backend is measured where its estimate is at most this (the naive loop: about a
# megapixel with a small kernel), else extrapolated.
SLOW_BUDGET_SECONDS = 4.0
# A slow backend never measured on a kernel learns its rate on a card this large.
RATE_CARD_SIZE = 256


@dataclass(frozen=True)
class BenchCell:
    """One (size, kernel, backend) timing."""

    size: int
    kernel: str
    kernel_shape: tuple[int, int]
    backend: str
    runs: int
    median_ms: float
    min_ms: float
    extrapolated: bool = False

    def as_dict(self) -> dict:
        row = dict(self.__dict__)
        row["kernel_shape"] = list(self.kernel_shape)
        return row


def run_bench(
    sizes: Sequence[int] = DEFAULT_SIZES,
    kernels: Sequence[Kernel] = (),
    backends: Sequence[str] | None = None,
    repeat: int = 3,
    progress: Callable[[int, int], None] | None = None,
) -> list[BenchCell]:
    """Median and min wall time of `convolve` on a float64 test card of each size."""
    names = tuple(dict.fromkeys(check_backend_name(b) for b in backends or available_backends()))
    for name in names:
        get_backend(name)  # imports outside the timings
    cells: list[BenchCell] = []
    ms_per_pixel: dict[tuple[str, str], float] = {}  # a slow backend's measured rate
    total = len(sizes) * len(kernels) * len(names)
    for size in sorted(sizes):
        image = synthetic_image(size).astype(np.float64)
        for kernel in kernels:
            for backend in names:
                if _over_budget(backend, size, kernel):
                    cells.append(_extrapolated(size, kernel, backend, ms_per_pixel))
                else:
                    cells.append(_measure(image, kernel, backend, repeat))
                    if KNOWN_BACKENDS[backend].cost is not None:
                        ms_per_pixel[backend, kernel.name] = cells[-1].median_ms / (size * size)
                if progress is not None:
                    progress(len(cells), total)
    return cells


def _over_budget(backend: str, size: int, kernel: Kernel) -> bool:
    """Whether a slow backend's estimate for this cell exceeds `SLOW_BUDGET_SECONDS`."""
    cost = KNOWN_BACKENDS[backend].cost
    return cost is not None and cost.seconds(size * size, kernel.shape) > SLOW_BUDGET_SECONDS


def _measure(image: np.ndarray, kernel: Kernel, backend: str, repeat: int) -> BenchCell:
    slow = KNOWN_BACKENDS[backend].cost is not None
    if not slow:
        convolve(image, kernel, backend=backend)  # warm-up: first-call set-up is not timed
    runs = 1 if slow else repeat
    _, timing = run_timed(backend, lambda: convolve(image, kernel, backend=backend), runs)
    size = image.shape[0]
    return BenchCell(
        size, kernel.name, kernel.shape, backend, timing.runs, timing.median_ms, timing.min_ms
    )


def _extrapolated(
    size: int, kernel: Kernel, backend: str, ms_per_pixel: dict[tuple[str, str], float]
) -> BenchCell:
    if (backend, kernel.name) not in ms_per_pixel:  # never measured: time a small card
        card = _measure(synthetic_image(RATE_CARD_SIZE).astype(np.float64), kernel, backend, 1)
        ms_per_pixel[backend, kernel.name] = card.median_ms / RATE_CARD_SIZE**2
    estimate = ms_per_pixel[backend, kernel.name] * size * size
    return BenchCell(size, kernel.name, kernel.shape, backend, 0, estimate, estimate, True)


def fastest_ratios(cells: Sequence[BenchCell]) -> dict[tuple[int, str, str], float]:
    """Each cell's median over the fastest measured median of its (size, kernel)."""
    best: dict[tuple[int, str], float] = {}
    for cell in cells:
        if not cell.extrapolated:
            key = (cell.size, cell.kernel)
            best[key] = min(best.get(key, float("inf")), cell.median_ms)
    return {
        (c.size, c.kernel, c.backend): c.median_ms / best[(c.size, c.kernel)]
        for c in cells
        if best.get((c.size, c.kernel))
    }


def plot_bench(cells: Sequence[BenchCell], path) -> None:
    """Time against kernel size per backend (log scale), one line per image size.

    Needs matplotlib (``pip install "convkit[plot]"``); raises ImportError without it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for backend in dict.fromkeys(c.backend for c in cells):
        for size in sorted({c.size for c in cells}):
            points = sorted(
                (c.kernel_shape[0] * c.kernel_shape[1], c.median_ms, c.extrapolated)
                for c in cells
                if c.backend == backend and c.size == size
            )
            style = "--" if any(p[2] for p in points) else "-"
            axes.plot([p[0] for p in points], [p[1] for p in points], style, marker="o",
                      label=f"{backend}, {size}x{size}")  # fmt: skip
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("kernel taps (kH x kW)")
    axes.set_ylabel("median ms")
    axes.set_title("convkit bench (dashed: extrapolated)")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
