"""Kernels of low rank as sums of separable passes: K = sum_k outer(column_k, row_k).

A rank-1 kernel (box, Gaussian, Sobel) is one cv2.sepFilter2D pass; a Laplacian, a
difference of Gaussians or a Laplacian of Gaussian has rank 2 or 3, and costs two or three
passes of kH + kW taps each instead of one of kH * kW. The terms come from the SVD, for
kernels that are mirror-symmetric (even or odd) along both axes, as those are, so that each
term is too and OpenCV runs its fast symmetric filters; they are kept only where their sum
is the kernel to within a tenth of DESIGN §2's float64 agreement (1e-9 * sum|K| * max|I|),
and where no term is so much larger than the kernel that its round-off would show.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from convkit.backends.filter2d import separable_factors

Terms = tuple[tuple[np.ndarray, np.ndarray], ...]

# Rank 3 covers the Laplacian of Gaussian made to sum to zero; beyond it filter2D's own DFT
# is cheaper than the passes on every kernel size measured.
MAX_TERMS = 3
# sum|K - sum of terms| at most this fraction of sum|K|: a tenth of the float64 agreement.
RECONSTRUCTION_RTOL = 1e-10
# sum_k sum|column_k| * sum|row_k| at most this many times sum|K|: each pass rounds in
# proportion to its own terms' size, and float32 has 1e-5 of agreement to spend on it.
MAX_AMPLIFICATION = 8.0
# A kernel this close to its mirror image (against its largest weight) has its terms made
# exactly even (or odd); the reconstruction check still holds them to the kernel.
PARITY_RTOL = 1e-12
# Kernels up to this size (a 128 x 128 float64 one) have their terms kept once found.
CACHED_KERNEL_BYTES = 128 * 1024


def separable_terms(weights: np.ndarray, max_terms: int = MAX_TERMS) -> Terms | None:
    """The (column, row) pairs whose outer products sum to ``weights``, or None.

    Parameters
    ----------
    weights : ndarray
        A 2-D float64 kernel.
    max_terms : int
        The most terms to accept.

    Returns
    -------
    tuple of (ndarray, ndarray) or None
        One pair for a separable kernel (the exact factors of `separable_factors`), two or
        three from the SVD for a kernel of that rank, even or odd along both axes; None for
        a 1-row or 1-column kernel, an all-zero one, one of higher rank, one without those
        symmetries, or one whose terms would not sum back to it within
        `RECONSTRUCTION_RTOL`.

    Examples
    --------
    >>> laplacian = np.array([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]])
    >>> len(separable_terms(laplacian))
    2
    >>> separable_terms(np.eye(5)) is None
    True
    """
    if weights.ndim != 2 or min(weights.shape) == 1 or not weights.any():
        return None
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if weights.nbytes > CACHED_KERNEL_BYTES:
        return _terms(weights, max_terms)
    return _cached_terms(weights.shape, weights.tobytes(), max_terms)


@lru_cache(maxsize=32)
def _cached_terms(shape: tuple[int, int], raw: bytes, max_terms: int) -> Terms | None:
    """`_terms` once per kernel: batches and strips of rows filter with one kernel often."""
    return _terms(np.frombuffer(raw, dtype=np.float64).reshape(shape), max_terms)


def _terms(weights: np.ndarray, max_terms: int) -> Terms | None:
    factors = separable_factors(weights)
    if factors is not None:
        # Rank 1: the kernel's own exact factors (box and integer kernels stay exact).
        return (factors,)
    column_parity, row_parity = _parity(weights), _parity(weights.T)
    if not (column_parity and row_parity) or max_terms < 2:
        # Terms that are not mirror images of themselves go through OpenCV's slow generic
        # filters: two or three of them are no faster than filter2D.
        return None
    columns, singular, rows = np.linalg.svd(weights)
    tolerance = RECONSTRUCTION_RTOL * float(np.abs(weights).sum())
    for rank in range(2, min(max_terms, len(singular)) + 1):
        if rank < len(singular) and singular[rank] > tolerance:
            continue  # the first term left out is larger than the tolerance on its own
        terms = tuple(
            (
                _with_parity(columns[:, k] * singular[k], column_parity),
                _with_parity(rows[k], row_parity),
            )
            for k in range(rank)
        )
        if _sums_back(weights, terms, tolerance):
            return terms if _amplification(weights, terms) <= MAX_AMPLIFICATION else None
    return None


def _parity(weights: np.ndarray) -> int:
    """1 if the kernel is even from top to bottom, -1 if odd, 0 if neither (to round-off)."""
    flipped = weights[::-1]
    scale = PARITY_RTOL * float(np.abs(weights).max())
    if float(np.abs(weights - flipped).max()) <= scale:
        return 1
    if float(np.abs(weights + flipped).max()) <= scale:
        return -1
    return 0


def _with_parity(vector: np.ndarray, parity: int) -> np.ndarray:
    """``vector`` made exactly even (``parity`` 1) or odd (-1), as the SVD's terms of an even
    or odd kernel are but for round-off: OpenCV filters with exactly symmetric 1-D kernels
    (`is_symmetric`) up to five times faster in float32."""
    return (vector + parity * vector[::-1]) / 2


def is_symmetric(vector: np.ndarray) -> bool:
    """Whether OpenCV's separable filter takes its symmetric path for this 1-D kernel: equal
    (or opposite) weights either side of the centre, exactly."""
    mirrored = vector[::-1]
    return bool(np.array_equal(vector, mirrored) or np.array_equal(vector, -mirrored))


def asymmetric_passes(terms: Terms) -> int:
    """How many of the terms have a column factor that OpenCV cannot take as symmetric."""
    return sum(not is_symmetric(column) for column, _ in terms)


def _sums_back(weights: np.ndarray, terms: Terms, tolerance: float) -> bool:
    rebuilt = sum(np.outer(column, row) for column, row in terms)
    return float(np.abs(weights - rebuilt).sum()) <= tolerance


def _amplification(weights: np.ndarray, terms: Terms) -> float:
    size = sum(float(np.abs(column).sum() * np.abs(row).sum()) for column, row in terms)
    return size / float(np.abs(weights).sum())


def correlate_terms(
    image: np.ndarray, terms: Terms, anchor: tuple[int, int], border: int
) -> np.ndarray:
    """The sum of one cv2.sepFilter2D pass per term, in the image's float type.

    ``border`` is the OpenCV border type; ``anchor`` is (row, column) in the 2-D kernel.
    """
    ay, ax = anchor
    depth = cv2.CV_32F if image.dtype == np.float32 else cv2.CV_64F

    def one_pass(column, row, dst=None):
        column = column.astype(image.dtype, copy=False)
        row = row.astype(image.dtype, copy=False)
        return cv2.sepFilter2D(
            image, depth, row, column, dst=dst, anchor=(ax, ay), borderType=border
        )

    total = one_pass(*terms[0])
    if len(terms) > 1:
        # One scratch image for the other passes: fresh pages cost more than the adds.
        scratch = np.empty_like(total)
        for column, row in terms[1:]:
            np.add(total, one_pass(column, row, scratch), out=total)
    return total
