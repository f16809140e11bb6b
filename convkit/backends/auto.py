"""auto: the fastest backend for the kernel, by a rule measured on this project's machines.

Measured with benchmarks/cross_over.py on 2 cores, float64 (ms, 1024x1024 / 2048x2048):

- separable kernels: cv2.sepFilter2D beats cv2.filter2D from 5x5 up (2048^2, 7x7: 13 vs 30;
  51x51: 50 vs 68) and is what the filter2d backend already does for them;
- non-separable kernels: filter2D, which switches to its own DFT from 50 taps, beats
  scipy.fft up to 151x151 (1024^2: 35 vs 61), and loses from 201x201 (120 vs 76).

So: filter2d, except for a non-separable kernel with a side of `FFT_MIN_SIDE` or more.
"""

from __future__ import annotations

import numpy as np

from convkit.padding import Padding

# Between the last size where filter2D won (151) and the first where FFT did (201).
FFT_MIN_SIDE = 176


def choose(weights: np.ndarray) -> str:
    """The backend `auto` runs for ``weights``."""
    from convkit.backends.filter2d import separable_factors

    if max(weights.shape) >= FFT_MIN_SIDE and separable_factors(weights) is None:
        return "fft"
    return "filter2d"


def correlate(
    image: np.ndarray,
    weights: np.ndarray,
    anchor: tuple[int, int],
    padding: Padding,
    progress=None,
) -> np.ndarray:
    """Correlate through the backend `choose` picks."""
    from convkit.backends import get_backend

    return get_backend(choose(weights))(image, weights, anchor, padding, progress)
