"""auto: for each call, the way of filtering that this machine runs fastest, exactly enough.

Three strategies, all over OpenCV's borders (or the shared padding step where OpenCV cannot
pad exactly):

- ``filter2d``: cv2.filter2D, which sums directly below 50 taps (130 in float32) and above
  goes through its own DFT, tile by tile;
- ``separable``: one cv2.sepFilter2D pass per term of a kernel of rank 1 to 3
  (`convkit.backends.lowrank.separable_terms`: box, Gaussian, Laplacian, DoG, LoG);
- ``fft``: the ``fft`` backend, scipy.fft over the whole image.

`plan` predicts each one's time with `convkit.calibration.cost_model` (this machine's
measurements after ``convkit bench --calibrate``, else a built-in model) and runs the
cheapest. Two rules come before speed: the engine's exact float32 path (integer weights on
integer samples, `convkit.engine.working_dtype`) keeps filter2D's direct integer sums, and
kernels small enough for direct summation never go through a Fourier transform, since
`convkit.engine.check_range` gives them no headroom for its intermediate sums.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import cv2
import numpy as np

from convkit.backends.filter2d import _with_borders
from convkit.backends.lowrank import (
    CACHED_KERNEL_BYTES,
    MAX_TERMS,
    Terms,
    asymmetric_passes,
    correlate_terms,
    separable_terms,
)
from convkit.calibration import CostModel, Geometry, cost_model
from convkit.engine import DIRECT_FILTER_MAX_AREA
from convkit.padding import Padding, cv2_border


class Plan(NamedTuple):
    """What `auto` runs: a strategy name and, for ``separable``, its terms."""

    strategy: str
    terms: Terms | None = None


def plan(
    image: np.ndarray,
    weights: np.ndarray,
    anchor: tuple[int, int],
    padding: Padding,
    model: CostModel | None = None,
) -> Plan:
    """The strategy `correlate` runs for this image, kernel, anchor and padding.

    Parameters
    ----------
    image : ndarray
        (H, W) or (H, W, C), float32 or float64, as the engine hands it to backends.
    weights : ndarray
        The 2-D kernel, already flipped for convolution.
    anchor : (int, int)
        The kernel's (row, column) over the output pixel.
    padding : Padding
        How the image is extended.
    model : CostModel, optional
        The cost model to predict with; by default `convkit.calibration.cost_model`.

    Returns
    -------
    Plan
        ``filter2d``, ``separable`` (with its terms) or ``fft``.

    Examples
    --------
    >>> from convkit.padding import make_padding
    >>> image = np.zeros((64, 64))
    >>> plan(image, np.ones((9, 9)) / 81, (4, 4), make_padding("replicate")).strategy
    'separable'
    """
    model = cost_model() if model is None else model
    if weights.nbytes > CACHED_KERNEL_BYTES:
        return _plan(image.shape, image.dtype, weights, anchor, padding, model)
    weights = np.ascontiguousarray(weights)
    kernel = (weights.shape, weights.dtype.str, weights.tobytes())
    return _cached_plan(image.shape, image.dtype.str, kernel, anchor, padding, model)


@lru_cache(maxsize=64)
def _cached_plan(
    image_shape: tuple[int, ...],
    image_dtype: str,
    kernel: tuple[tuple[int, int], str, bytes],
    anchor: tuple[int, int],
    padding: Padding,
    model: CostModel,
) -> Plan:
    """`_plan` once per image shape, kernel and padding: a batch, or an image's strips of
    rows, would otherwise pay for the choice again on every call."""
    shape, dtype, raw = kernel
    weights = np.frombuffer(raw, dtype=dtype).reshape(shape)
    return _plan(image_shape, np.dtype(image_dtype), weights, anchor, padding, model)


def _plan(
    image_shape: tuple[int, ...],
    image_dtype: np.dtype,
    weights: np.ndarray,
    anchor: tuple[int, int],
    padding: Padding,
    model: CostModel,
) -> Plan:
    integral = bool(np.all(weights == np.round(weights)))
    if integral and image_dtype == np.float32 and weights.size <= DIRECT_FILTER_MAX_AREA:
        # Perhaps the engine's exact path: filter2D's direct sums, nothing else.
        return Plan("filter2d")
    geometry = _geometry(image_shape, image_dtype, weights.shape, anchor, padding)
    candidates = [Plan("filter2d")]
    # Integer weights sum exactly in direct sums, as the registry promises for auto; the
    # SVD's terms would not, so such kernels keep to the exact factors of rank 1.
    terms = separable_terms(weights, max_terms=1 if integral else MAX_TERMS)
    if terms is not None:
        candidates.append(Plan("separable", terms))
    if weights.size > DIRECT_FILTER_MAX_AREA:
        candidates.append(Plan("fft"))

    def predicted_ms(candidate: Plan) -> float:
        terms = candidate.terms or ()
        return model.predict_ms(candidate.strategy, geometry, len(terms), asymmetric_passes(terms))

    return min(candidates, key=predicted_ms)


def _geometry(
    image_shape: tuple[int, ...],
    image_dtype: np.dtype,
    kernel_shape: tuple[int, int],
    anchor: tuple[int, int],
    padding: Padding,
) -> Geometry:
    """The sizes the cost model needs, including the shared padding step's when OpenCV cannot
    pad by itself."""
    pads = cv2_border(padding, image_shape, kernel_shape, anchor) is None
    height, width = image_shape[:2]
    if pads and padding.mode != "valid":
        height, width = height + kernel_shape[0] - 1, width + kernel_shape[1] - 1
    channels = image_shape[2] if len(image_shape) == 3 else 1
    return Geometry(height, width, channels, kernel_shape, image_dtype.name, padded=pads)


def correlate(
    image: np.ndarray,
    weights: np.ndarray,
    anchor: tuple[int, int],
    padding: Padding,
    progress=None,
) -> np.ndarray:
    """Correlate through the strategy `plan` picks; in the image's float type."""
    return run_plan(plan(image, weights, anchor, padding), image, weights, anchor, padding)


def run_plan(
    chosen: Plan,
    image: np.ndarray,
    weights: np.ndarray,
    anchor: tuple[int, int],
    padding: Padding,
) -> np.ndarray:
    """Run one strategy; calibration and the benchmarks time each one through this."""
    if chosen.strategy == "fft":
        from convkit.backends import get_backend

        return get_backend("fft")(image, weights, anchor, padding)
    if chosen.strategy == "separable":

        def passes(image, weights, anchor, border):
            return correlate_terms(image, chosen.terms, anchor, border)

        return _with_borders(image, weights, anchor, padding, passes)
    return _with_borders(image, weights, anchor, padding, _plain_filter2d)


def _plain_filter2d(
    image: np.ndarray, weights: np.ndarray, anchor: tuple[int, int], border: int
) -> np.ndarray:
    """cv2.filter2D whatever the kernel's rank: its direct sums or its own DFT."""
    ay, ax = anchor
    depth = cv2.CV_32F if image.dtype == np.float32 else cv2.CV_64F
    kernel = weights.astype(image.dtype, copy=False)
    return cv2.filter2D(image, depth, kernel, anchor=(ax, ay), borderType=border)
