"""The backend registry: name -> backend, what each can do, and which this machine can run.

A backend is a function ``correlate(image, weights, anchor, padding, progress=None)`` that
takes a float image (2-D, or (H, W, C) for a backend that takes all channels at once) and
returns its correlation response, unclipped, in the image's float type. Each backend module
imports its heavy dependency inside itself, so listing backends is cheap.

Whatever differs between backends is a trait of its `Backend` entry, never a test of its
name elsewhere: which is the readable reference, which report progress, take all channels at
once, may run on strips of rows, write pixels in one pass, what a slow one costs, and how
closely each must agree with the others.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import NamedTuple

import numpy as np

from convkit.errors import UsageError
from convkit.padding import Padding

Progress = Callable[[int, int], None]
CorrelateFn = Callable[..., np.ndarray]

# DESIGN §2: backends that sum products directly agree within this many units of
# sum|K| * max|I| in float64.
AGREEMENT_FACTOR = 1e-9
# FFT round-off grows with the image: the fft backend is held to this instead.
FFT_AGREEMENT_FACTOR = 1e-6


class Cost(NamedTuple):
    """A slow backend's estimated time: a part per output sample (pixel x channel) and a part
    per sample and kernel tap."""

    seconds_per_sample: float
    seconds_per_tap: float = 0.0

    def seconds(self, samples: int, kernel_shape: tuple[int, int]) -> float:
        """The estimated time for ``samples`` output samples with a kernel of this shape."""
        taps = kernel_shape[0] * kernel_shape[1]
        return samples * (self.seconds_per_sample + self.seconds_per_tap * taps)


class Backend(NamedTuple):
    """One registered backend: where its function lives, what it needs, what it can do."""

    name: str
    module: str
    description: str
    requires: str | None = None
    # The readable reference: what the others are checked against by default.
    reference: bool = False
    # Calls progress(done, total) as it goes; the others are called without it.
    progress: bool = False
    # Takes (H, W, C) images with up to 4 channels in one call, as OpenCV does.
    multichannel: bool = False
    # May filter an image in strips of rows (each strip padded by the shared step, `valid`).
    streams: bool = True
    # The module whose ``correlate_saturated(image, weights, anchor, padding)`` writes 8- and
    # 16-bit pixels in one pass (OpenCV's saturating filter2D), or None.
    saturating: str | None = None
    # Slow backends' estimated time, checked before they run (the naive loop); None: fast.
    cost: Cost | None = None
    # Held to agree within tolerance * sum|K| * max|I| in float64.
    tolerance: float = AGREEMENT_FACTOR
    # Sums products directly, so exact integer sums stay exact in float32 (FFT does not).
    direct: bool = True
    # What it allocates, for `convkit.resources`: "shifts" (a padded copy and two output
    # planes per channel, the generic case), "opencv" (a padded copy where OpenCV cannot
    # border; DFT tiles from 50 taps), "fft" (whole-image spectra), or "opencv+fft"
    # (whichever of the two is larger, for a backend that may run either).
    memory: str = "shifts"
    # Its module's ``measure(sizes, kernels, repeat, progress)`` times its own strategies on
    # this machine for `convkit.calibration` (``convkit bench --calibrate``).
    calibrates: bool = False
    # A function registered directly (see `register_backend`) instead of a module's.
    function: CorrelateFn | None = None

    def is_available(self) -> bool:
        return self.requires is None or is_installed(self.requires)


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported here, without importing it (cv2 takes 100 ms).

    A module already in `sys.modules` is installed, whatever state its import is in: another
    thread may be importing it right now, and cv2's loader replaces its own entry there while
    it loads the native module, where `importlib.util.find_spec` may raise ValueError (a
    module whose ``__spec__`` is not set yet). A module found once is remembered for the
    life of the process; one not found is looked for again, so that no race is remembered.
    A `sys.modules` entry of None (an import blocked on purpose) means not installed.
    """
    if module in sys.modules:
        return sys.modules[module] is not None
    if module in _INSTALLED:
        return True
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    # An import that finished while find_spec was looking has put the module there.
    if found or sys.modules.get(module) is not None:
        _INSTALLED.add(module)
        return True
    return False


_INSTALLED: set[str] = set()


# The naive loop's cost, measured on a 2-core AMD EPYC: 4.0 us per sample with a 1x1 kernel
# (the Python loop), +1.3 ns per tap up to 401x401 (numpy's multiply-and-sum).
NAIVE_COST = Cost(seconds_per_sample=4e-6, seconds_per_tap=1.3e-9)

KNOWN_BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend(
            "naive",
            "convkit.backends.naive",
            "textbook per-pixel loop (reference)",
            reference=True,
            progress=True,
            streams=False,
            cost=NAIVE_COST,
        ),
        Backend(
            "filter2d",
            "convkit.backends.filter2d",
            "OpenCV cv2.filter2D",
            requires="cv2",
            multichannel=True,
            saturating="convkit.backends.filter2d",
            memory="opencv",
        ),
        Backend(
            "numpy",
            "convkit.backends.numpy_shift",
            "numpy shift-and-add over the taps",
            progress=True,
            multichannel=True,
        ),
        Backend(
            "fft",
            "convkit.backends.fft",
            "scipy.fft FFT convolution (large kernels)",
            requires="scipy",
            multichannel=True,
            tolerance=FFT_AGREEMENT_FACTOR,
            direct=False,
            memory="fft",
        ),
        Backend(
            "auto",
            "convkit.backends.auto",
            "the fastest of the above for the kernel",
            requires="cv2",
            multichannel=True,
            saturating="convkit.backends.filter2d",
            memory="opencv+fft",
            calibrates=True,
        ),
    )
}


def available_backends() -> list[str]:
    """The names of the backends that can run on this machine, in registry order.

    Examples
    --------
    >>> "filter2d" in available_backends()
    True
    """
    return [name for name, backend in KNOWN_BACKENDS.items() if backend.is_available()]


def check_backend_name(name: str) -> str:
    """The canonical name of a known, available backend; a `UsageError` listing them if not."""
    key = name.strip().lower()
    if key not in KNOWN_BACKENDS:
        valid = ", ".join(KNOWN_BACKENDS)
        raise UsageError(f"unknown backend {name!r}: use one of {valid}")
    if not KNOWN_BACKENDS[key].is_available():
        needs = KNOWN_BACKENDS[key].requires
        raise UsageError(f"backend {key!r} needs the Python package {needs!r}, not installed here")
    return key


def reference_backend() -> str:
    """The registry's readable reference backend (the first one, where several say so).

    Examples
    --------
    >>> reference_backend()
    'naive'
    """
    return next(name for name, backend in KNOWN_BACKENDS.items() if backend.reference)


def reference_among(names: Iterable[str]) -> str | None:
    """The first of ``names`` that is a readable reference, or None."""
    return next((name for name in names if KNOWN_BACKENDS[name].reference), None)


@cache
def get_backend(name: str) -> CorrelateFn:
    """The ``correlate`` function of the backend called ``name``."""
    backend = KNOWN_BACKENDS[check_backend_name(name)]
    if backend.function is not None:
        return backend.function
    return importlib.import_module(backend.module).correlate


def get_saturating(name: str) -> CorrelateFn | None:
    """The one-pass ``correlate_saturated`` of the backend called ``name``, or None."""
    module = KNOWN_BACKENDS[check_backend_name(name)].saturating
    return None if module is None else importlib.import_module(module).correlate_saturated


def measure_strategies(
    name: str,
    sizes: Sequence[int],
    kernels: Sequence[tuple[int, int]],
    repeat: int,
    progress: Progress | None = None,
) -> list:
    """This machine's times of the strategies of the backend called ``name`` (one whose
    entry ``calibrates``): its module's ``measure``, for `convkit.calibration`."""
    backend = KNOWN_BACKENDS[check_backend_name(name)]
    if not backend.calibrates:
        raise ValueError(f"backend {name!r} has no strategies to calibrate")
    return importlib.import_module(backend.module).measure(sizes, kernels, repeat, progress)


def register_backend(
    name: str,
    function: CorrelateFn,
    description: str = "",
    *,
    reference: bool = False,
    progress: bool = False,
    multichannel: bool = False,
    streams: bool = True,
    cost: Cost | tuple[float, float] | None = None,
    tolerance: float = AGREEMENT_FACTOR,
    direct: bool = True,
    memory: str = "shifts",
) -> None:
    """Add (or replace) a backend ``function(image, weights, anchor, padding[, progress])``.

    It is then run by `convolve`, ``apply --backend NAME``, ``verify`` and ``bench`` like the
    built-in ones, and listed in ``apply --help``.

    Parameters
    ----------
    name : str
        The lower-case name to call it by.
    function : callable
        Correlates a float image with ``weights`` around ``anchor`` under ``padding``
        (`convkit.padding.pad_image` pads for it) and returns the response in the image's
        float type.
    description : str
        One line for listings.
    reference : bool
        The readable reference, that the others are checked against by default.
    progress : bool
        ``function`` takes a fifth argument, ``progress(done, total)``, and calls it.
    multichannel : bool
        ``function`` takes (H, W, C) images with up to 4 channels; else it gets one 2-D
        channel at a time.
    streams : bool
        ``function`` may be run on strips of rows of a large image.
    cost : Cost or (float, float), optional
        Seconds per output sample and per sample and tap, for a slow backend whose runs are
        estimated before they start (left out of defaults, extrapolated in ``bench``).
    tolerance : float
        It agrees with the others within ``tolerance * sum|K| * max|I|`` in float64.
    direct : bool
        It sums products directly, so integer sums in float32 stay exact.
    memory : str
        Which of `convkit.resources`' memory models estimates its peak: "shifts" (a padded
        copy and two output planes per channel), "opencv", "fft" or "opencv+fft".
    """
    KNOWN_BACKENDS[name] = Backend(
        name, function.__module__, description, reference=reference, progress=progress,
        multichannel=multichannel, streams=streams, cost=None if cost is None else Cost(*cost),
        tolerance=tolerance, direct=direct, memory=memory, function=function,
    )  # fmt: skip
    get_backend.cache_clear()


def unregister_backend(name: str) -> None:
    """Remove a backend added with `register_backend`."""
    KNOWN_BACKENDS.pop(name, None)
    get_backend.cache_clear()


__all__ = [
    "AGREEMENT_FACTOR",
    "KNOWN_BACKENDS",
    "Backend",
    "Cost",
    "Padding",
    "Progress",
    "available_backends",
    "check_backend_name",
    "get_backend",
    "get_saturating",
    "is_installed",
    "measure_strategies",
    "reference_among",
    "reference_backend",
    "register_backend",
    "unregister_backend",
]
