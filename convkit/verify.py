"""``convkit verify``: every backend against every other, over every padding mode, flip,
the whole bank and random odd, even and rectangular kernels. The command to put in CI.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from convkit.backends import KNOWN_BACKENDS, available_backends, check_backend_name
from convkit.engine import convolve
from convkit.errors import UsageError
from convkit.kernels import BANK, Kernel, get_kernel
from convkit.padding import PADDING_MODES
from convkit.timing import agreement_factor, agreement_tolerance

# With a slow backend (one with a registry cost: the naive loop, ~4 us a sample) cases run
# on a centre crop of this many samples (96 x 96 grey, 55 x 55 colour), about 12 s for all
# cases on two cores.
SLOW_SAMPLES = 96 * 96
PARAMETRIC_SAMPLES = ("box:4", "gaussian:5", "gaussian:9:2", "log:7", "motion:9:30")
# Random kernels: odd, even and rectangular shapes (rows, columns).
RANDOM_SHAPES = ((3, 3), (5, 5), (2, 2), (4, 4), (3, 5), (1, 7), (6, 1), (2, 3))


@dataclass(frozen=True)
class Case:
    """One kernel x padding x flip, and how far the backends' responses drifted apart."""

    kernel: str
    kernel_shape: tuple[int, int]
    padding: str
    flip: bool
    max_abs_diff: float
    tolerance: float
    worst_pair: tuple[str, str] | None

    @property
    def agrees(self) -> bool:
        return self.max_abs_diff <= self.tolerance


@dataclass
class VerifyReport:
    """All cases of a verify run."""

    image: str
    shape: tuple[int, ...]
    backends: tuple[str, ...]
    factor: float
    cases: list[Case] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> list[Case]:
        return [case for case in self.cases if not case.agrees]


def synthetic_image(size: int = 512) -> np.ndarray:
    """A deterministic 8-bit test card: a gradient, hard edges, a thin cross and noise."""
    rng = np.random.default_rng(512)
    y, x = np.mgrid[0:size, 0:size]
    card = (x + y) * (255.0 / max(1, 2 * size - 2)) * 0.6  # a 1x1 card is one grey pixel
    card[(x // 32 + y // 32) % 2 == 0] += 60
    card[size // 2, :] = card[:, size // 2] = 255
    card += rng.normal(0, 12, card.shape)
    return np.clip(np.rint(card), 0, 255).astype(np.uint8)


def verify_kernels(seed: int = 20261125) -> list[Kernel]:
    """The whole bank, some parametric kernels, and random kernels of every kind of shape."""
    rng = np.random.default_rng(seed)
    kernels = list(BANK.values()) + [get_kernel(name) for name in PARAMETRIC_SAMPLES]
    for kh, kw in RANDOM_SHAPES:
        weights = np.round(rng.normal(0, 2, (kh, kw)), 3)
        kernels.append(Kernel(f"random{kh}x{kw}", weights))
    return kernels


def run_verify(
    image: np.ndarray,
    image_name: str = "synthetic",
    backends: Sequence[str] | None = None,
    factor: float | None = None,
    kernels: Sequence[Kernel] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Run every backend on every case and record the largest disagreement between any two.

    A case agrees when that is at most ``factor * sum|K| * max|I|``, ``factor`` by default
    the loosest registry tolerance of the backends compared (`agreement_factor`). With a slow
    backend the cases run on a centre crop of at most `SLOW_SAMPLES` samples, so that the
    run stays short; colour images are checked channel by channel, alpha carried unfiltered.
    """
    names = tuple(dict.fromkeys(check_backend_name(b) for b in backends or available_backends()))
    if len(names) < 2:
        raise UsageError(f"verify compares backends: name at least two (got {', '.join(names)})")
    kernels = list(kernels) if kernels is not None else verify_kernels()
    if factor is None:
        factor = agreement_factor(names)
    if any(KNOWN_BACKENDS[name].cost is not None for name in names):
        channels = image.shape[2] if image.ndim == 3 else 1
        image = centre_crop(image, int((SLOW_SAMPLES / channels) ** 0.5))
    report = VerifyReport(image_name, image.shape, names, factor)
    cases = list(itertools.product(kernels, PADDING_MODES, (False, True)))
    started = time.perf_counter()
    for done, (kernel, padding, flip) in enumerate(cases, start=1):
        if padding == "valid" and not fits(kernel, image):
            continue
        responses = {
            b: convolve(image, kernel, padding=padding, backend=b, flip=flip) for b in names
        }
        worst, pair = 0.0, None
        for a, b in itertools.combinations(names, 2):
            diff = float(np.max(np.abs(responses[a] - responses[b])))
            if pair is None or diff > worst:
                worst, pair = diff, (a, b)
        tolerance = agreement_tolerance(kernel.weights, image, factor)
        report.cases.append(Case(kernel.name, kernel.shape, padding, flip, worst, tolerance, pair))
        if progress is not None:
            progress(done, len(cases))
    report.seconds = time.perf_counter() - started
    return report


def fits(kernel: Kernel, image: np.ndarray) -> bool:
    return kernel.shape[0] <= image.shape[0] and kernel.shape[1] <= image.shape[1]


def centre_crop(image: np.ndarray, side: int) -> np.ndarray:
    """The middle ``side`` x ``side`` pixels (or the whole image if it is smaller)."""
    height, width = image.shape[:2]
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    return image[top : top + side, left : left + side]
