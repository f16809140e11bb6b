"""OpenCV: cv2.sepFilter2D for separable kernels, cv2.filter2D for the rest.

filter2D correlates (it does not flip the kernel) and takes the anchor as (x, y). Borders it
can do exactly are left to it; the rest (``wrap``, ``valid``, a non-zero constant, pads as wide
as the image) go through the shared padding step, and the result is cropped back.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from convkit.padding import Padding, cv2_border, output_shape, pad_image

# A kernel is separable when its second singular value is this small against the first.
SEPARABLE_RTOL = 1e-12
# cv2.filter2D sums kernels of fewer taps than this directly and takes its DFT path from
# there (dftFilter2D in imgproc's filter.dispatch.cpp): 130 for float32 on a CPU with SSE3.
DFT_MIN_TAPS = 50
DFT_MIN_TAPS_FLOAT32_SSE3 = 130
CPU_SSE3 = 3  # cv::CPU_SSE3, which the Python bindings do not export


def dft_min_taps(precision: str) -> int:
    """The kernel area from which cv2.filter2D takes its DFT path for ``precision`` images
    ("float32" or "float64")."""
    if precision == "float32" and cv2.checkHardwareSupport(CPU_SSE3):
        return DFT_MIN_TAPS_FLOAT32_SSE3
    return DFT_MIN_TAPS


def correlate(
    image: np.ndarray,
    weights: np.ndarray,
    anchor: tuple[int, int],
    padding: Padding,
    progress=None,
) -> np.ndarray:
    """Correlate a float image, (H, W) or (H, W, C<=4), with ``weights`` through OpenCV.

    Computes in the image's float type (float32 or float64) and returns that type.
    """
    return with_borders(image, weights, anchor, padding, _filter)


def correlate_saturated(
    image: np.ndarray, weights: np.ndarray, anchor: tuple[int, int], padding: Padding
) -> np.ndarray:
    """filter2D from an 8- or 16-bit image straight to its own type: each response rounded
    half to even and clipped to the type's range, in one pass with no float image.

    OpenCV sums in float32 and rounds with cvRound, so this equals convkit's exact float path
    followed by ``rescale="clip"`` only where every sum is an exact integer below 2**24 and
    the kernel is small enough for direct summation (`convkit.engine.working_dtype`
    decides); the caller must check that.
    """

    def saturate(image, weights, anchor, border):
        ay, ax = anchor
        kernel = weights.astype(np.float32)
        return cv2.filter2D(image, -1, kernel, anchor=(ax, ay), borderType=border)

    return with_borders(np.ascontiguousarray(image), weights, anchor, padding, saturate)


def with_borders(
    image: np.ndarray,
    weights: np.ndarray,
    anchor: tuple[int, int],
    padding: Padding,
    run: Callable[[np.ndarray, np.ndarray, tuple[int, int], int], np.ndarray],
) -> np.ndarray:
    """``run(image, weights, anchor, border)`` with OpenCV's own border where it is exact,
    else on the image padded by the shared step, cropped back.

    ``border`` is the OpenCV border type ``run`` must use; every OpenCV call that takes one
    (filter2D, sepFilter2D, a sum of passes) gets convkit's padding modes through this.
    """
    ay, ax = anchor
    border = cv2_border(padding, image.shape, weights.shape, anchor)
    if border is not None:
        return run(image, weights, anchor, border)
    padded = np.ascontiguousarray(pad_image(image, weights.shape, anchor, padding))
    # Every kept pixel reads only inside `padded`, so the border type used here never matters.
    full = run(padded, weights, anchor, cv2.BORDER_CONSTANT)
    out_height, out_width = output_shape(image.shape, weights.shape, padding.mode)
    return full[ay : ay + out_height, ax : ax + out_width]


def _filter(image: np.ndarray, weights: np.ndarray, anchor: tuple[int, int], border: int):
    """sepFilter2D for a separable kernel (two 1-D passes), else filter2D.

    Integer weights in float32 are the engine's exact path, whose sums must stay integers:
    they keep filter2D and their 2-D integer weights.
    """
    ay, ax = anchor
    depth = cv2.CV_32F if image.dtype == np.float32 else cv2.CV_64F
    exact_path = image.dtype == np.float32 and np.all(weights == np.round(weights))
    factors = None if exact_path else separable_factors(weights)
    if factors is not None:
        column, row = factors
        return cv2.sepFilter2D(image, depth, row, column, anchor=(ax, ay), borderType=border)
    weights = weights.astype(image.dtype, copy=False)
    return cv2.filter2D(image, depth, weights, anchor=(ax, ay), borderType=border)


def separable_factors(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(column, row) with ``outer(column, row) == weights`` for a rank-1 kernel, else None.

    The factors come from the kernel itself, through its largest weight p at (i, j): the
    column under p, and p's row divided by p. Box and integer kernels then factor exactly
    (1/49 times ones, [-1, -2, -1] and [1, 0, -1]), where an SVD's square roots would not.
    The kernel is rank 1 when their outer product leaves nothing of it, to `SEPARABLE_RTOL`
    of its size (Frobenius norms). No SVD: numpy's runs OpenBLAS's threads, which on a
    machine whose cores are busy, right after an OpenCV call whose own threads still spin,
    took 180 ms for a 101x101 kernel here (0.5 ms alone), on every call of this backend.
    1-row and 1-column kernels are left to filter2D.
    """
    if min(weights.shape) == 1 or not weights.any():
        return None
    i, j = np.unravel_index(np.argmax(np.abs(weights)), weights.shape)
    column, row = weights[:, j].copy(), weights[i, :] / weights[i, j]
    left = weights - np.multiply.outer(column, row)
    if np.sqrt(np.sum(left * left)) > SEPARABLE_RTOL * np.sqrt(np.sum(weights * weights)):
        return None
    return column, row
