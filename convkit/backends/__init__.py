"""The backend registry: name -> backend, and which backends this machine can run.

A backend is a function ``correlate(image, weights, anchor, padding, progress=None)`` that
takes a 2-D float64 image and returns the float64 correlation response, unclipped. Each
backend module imports its heavy dependency inside itself, so listing backends is cheap.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from functools import cache
from typing import NamedTuple

import numpy as np

from convkit.errors import UsageError
from convkit.padding import Padding

Progress = Callable[[int, int], None]
CorrelateFn = Callable[..., np.ndarray]


class Backend(NamedTuple):
    """One registered backend: where its function lives and what it needs."""

    name: str
    module: str
    description: str
    requires: str | None = None
    # Takes (H, W, C) images with up to 4 channels in one call, as OpenCV does.
    multichannel: bool = False
    # Sums products directly, so exact integer sums stay exact in float32 (FFT does not).
    direct: bool = True
    # A function registered directly (see `register_backend`) instead of a module's.
    function: CorrelateFn | None = None

    def is_available(self) -> bool:
        return self.requires is None or importlib.util.find_spec(self.requires) is not None


KNOWN_BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("naive", "convkit.backends.naive", "textbook per-pixel loop (reference)"),
        Backend(
            "filter2d",
            "convkit.backends.filter2d",
            "OpenCV cv2.filter2D",
            requires="cv2",
            multichannel=True,
        ),  # fmt: skip
        Backend(
            "numpy",
            "convkit.backends.numpy_shift",
            "numpy shift-and-add over the taps",
            multichannel=True,
        ),  # fmt: skip
        Backend(
            "fft",
            "convkit.backends.fft",
            "scipy.fft FFT convolution (large kernels)",
            requires="scipy",
            multichannel=True,
            direct=False,
        ),
        Backend(
            "auto",
            "convkit.backends.auto",
            "the fastest of the above for the kernel",
            requires="cv2",
            multichannel=True,
        ),  # fmt: skip
    )
}


def available_backends() -> list[str]:
    """The names of the backends that can run on this machine, in registry order.

    Examples
    --------
    >>> "naive" in available_backends()
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


@cache
def get_backend(name: str) -> CorrelateFn:
    """The ``correlate`` function of the backend called ``name``."""
    backend = KNOWN_BACKENDS[check_backend_name(name)]
    if backend.function is not None:
        return backend.function
    return importlib.import_module(backend.module).correlate


def register_backend(name: str, function: CorrelateFn, description: str = "") -> None:
    """Add (or replace) a backend: ``function(image, weights, anchor, padding, progress)``.

    It is then run by `convolve`, ``apply --backend NAME`` and ``verify`` like the built-in
    ones, channel by channel on float images.
    """
    KNOWN_BACKENDS[name] = Backend(name, function.__module__, description, function=function)
    get_backend.cache_clear()


def unregister_backend(name: str) -> None:
    """Remove a backend added with `register_backend`."""
    KNOWN_BACKENDS.pop(name, None)
    get_backend.cache_clear()


__all__ = [
    "KNOWN_BACKENDS",
    "Backend",
    "Padding",
    "Progress",
    "available_backends",
    "check_backend_name",
    "get_backend",
    "register_backend",
    "unregister_backend",
]
