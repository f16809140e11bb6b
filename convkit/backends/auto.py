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
cheapest, where the passes and the FFT must win by `FILTER2D_PREFERENCE` (a kernel of zeros
runs nothing: its response is zeros). Two rules come before speed: the engine's exact
float32 path (integer weights on integer samples, `convkit.engine.working_dtype`) keeps
filter2D's direct integer sums, and kernels small enough for direct summation never go
through a Fourier transform, since `convkit.engine.check_range` gives them no headroom for
its intermediate sums.

`measure` times the strategies for `convkit.calibration.calibrate` (the registry entry's
``calibrates`` trait), so that the calibration imports no backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from typing import NamedTuple

import cv2
import numpy as np

from convkit.backends.filter2d import DFT_MIN_TAPS, dft_min_taps, with_borders
from convkit.backends.lowrank import (
    CACHED_KERNEL_BYTES,
    MAX_TERMS,
    Terms,
    asymmetric_passes,
    correlate_terms,
    separable_terms,
)
from convkit.calibration import PRECISIONS, CostModel, Geometry, Sample, cost_model
from convkit.padding import Padding, cv2_border, make_padding, output_shape

STRATEGIES = ("filter2d", "separable", "fft")
# The passes and the FFT must be predicted this much faster than filter2D to be picked.
# They run on all cores and vary with what else the cores do (sepFilter2D with a 51-tap
# Gaussian, 2048^2 float64: 46 ms at best, 76 typically, 92 while other work ran), where
# filter2D's DFT keeps to one core and to its time (45, 45, 46): a pick that is wrong by
# the margin costs at most the margin, one that trusts a lucky measurement up to 2x.
FILTER2D_PREFERENCE = 1.1


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
        ``filter2d``, ``separable`` (with its terms) or ``fft``; ``zeros`` for a kernel of
        zeros, whose response is zeros.

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
    if not weights.any():
        # Every response is a sum of zeros, whatever the padding: nothing to filter.
        return Plan("zeros")
    integral = bool(np.all(weights == np.round(weights)))
    if integral and image_dtype == np.float32 and weights.size < DFT_MIN_TAPS:
        # Perhaps the engine's exact path: filter2D's direct sums, nothing else.
        return Plan("filter2d")
    geometry = _geometry(image_shape, image_dtype, weights.shape, anchor, padding)
    candidates = [Plan("filter2d")]
    # Integer weights sum exactly in direct sums, as the registry promises for auto; the
    # SVD's terms would not, so such kernels keep to the exact factors of rank 1.
    terms = separable_terms(weights, max_terms=1 if integral else MAX_TERMS)
    if terms is not None:
        candidates.append(Plan("separable", terms))
    if weights.size >= DFT_MIN_TAPS:
        candidates.append(Plan("fft"))

    def predicted_ms(candidate: Plan) -> float:
        terms = candidate.terms or ()
        kind = cost_kind(candidate.strategy, geometry)
        predicted = model.predict_ms(kind, geometry, len(terms), asymmetric_passes(terms))
        return predicted if candidate.strategy == "filter2d" else predicted * FILTER2D_PREFERENCE

    return min(candidates, key=predicted_ms)


def cost_kind(strategy: str, geometry: Geometry) -> str:
    """Which kind of work of the cost model ``strategy`` does on ``geometry``: filter2D's
    direct sums or its DFT, separable passes, or scipy's FFT."""
    if strategy == "filter2d":
        taps = geometry.kernel[0] * geometry.kernel[1]
        return "direct" if taps < dft_min_taps(geometry.precision) else "opencv_dft"
    if strategy in ("separable", "fft"):
        return strategy
    raise ValueError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")


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
    if chosen.strategy == "zeros":
        height, width = output_shape(image.shape, weights.shape, padding.mode)
        return np.zeros((height, width, *image.shape[2:]), dtype=image.dtype)
    if chosen.strategy == "fft":
        from convkit.backends import get_backend

        return get_backend("fft")(image, weights, anchor, padding)
    if chosen.strategy == "separable":

        def passes(image, weights, anchor, border):
            return correlate_terms(image, chosen.terms, anchor, border)

        return with_borders(image, weights, anchor, padding, passes)
    return with_borders(image, weights, anchor, padding, _plain_filter2d)


def _plain_filter2d(
    image: np.ndarray, weights: np.ndarray, anchor: tuple[int, int], border: int
) -> np.ndarray:
    """cv2.filter2D whatever the kernel's rank: its direct sums or its own DFT."""
    ay, ax = anchor
    depth = cv2.CV_32F if image.dtype == np.float32 else cv2.CV_64F
    kernel = weights.astype(image.dtype, copy=False)
    return cv2.filter2D(image, depth, kernel, anchor=(ax, ay), borderType=border)


# --- measuring, for convkit.calibration ------------------------------------------------------

# Images of up to this many pixels get every round asked for; larger ones proportionally
# fewer (a 4096^2 cell takes seconds, and varies less from run to run).
FULL_ROUNDS_PIXELS = 2048 * 2048
# A median needs a few runs.
MIN_ROUNDS = 3


def measure(
    sizes: Sequence[int],
    kernels: Sequence[tuple[int, int]],
    repeat: int = 3,
    progress: Callable[[int, int], None] | None = None,
) -> list[Sample]:
    """Typical (median) times of each strategy on random images and kernels of each size
    and shape, in both precisions, under replicate borders.

    Each cell runs every strategy that applies (filter2D; one and two passes of symmetric
    terms and one of asymmetric terms where the kernel has two sides; the FFT from
    `DFT_MIN_TAPS` taps) once, then ``repeat`` more times interleaved (fewer beyond
    `FULL_ROUNDS_PIXELS`, never fewer than `MIN_ROUNDS`), and keeps each one's median.
    """
    rng = np.random.default_rng(0)
    total, done = len(PRECISIONS) * len(sizes) * len(kernels), 0
    samples = []
    for precision in PRECISIONS:
        for size in sorted(sizes):
            image = rng.random((size, size)).astype(precision)
            for kernel in kernels:
                samples += _time_cell(rng, image, kernel, repeat)
                done += 1
                if progress is not None:
                    progress(done, total)
    return samples


def _time_cell(
    rng: np.random.Generator, image: np.ndarray, kernel: tuple[int, int], repeat: int
) -> list[Sample]:
    kh, kw = kernel
    weights = rng.random(kernel)
    plans = _plans_to_time(rng, kh, kw)
    arguments = (image, weights, (kh // 2, kw // 2), make_padding("replicate"))
    rounds = max(min(MIN_ROUNDS, repeat), round(repeat * min(1.0, FULL_ROUNDS_PIXELS / image.size)))
    typical = _typical_of([partial(run_plan, plan, *arguments) for plan in plans], rounds, rng)
    geometry = Geometry(image.shape[0], image.shape[1], 1, kernel, image.dtype.name)
    return [
        Sample(
            geometry,
            cost_kind(plan.strategy, geometry),
            len(plan.terms or ()),
            asymmetric_passes(plan.terms or ()),
            milliseconds,
        )
        for plan, milliseconds in zip(plans, typical, strict=True)
    ]


def _plans_to_time(rng: np.random.Generator, kh: int, kw: int) -> list[Plan]:
    """filter2D; one and two passes of symmetric terms (those of Gaussians, LoG, DoG) and one
    of asymmetric terms, where the kernel has two sides; the FFT from `DFT_MIN_TAPS`."""
    plans = [Plan("filter2d")]
    if min(kh, kw) > 1:
        asymmetric = (rng.random(kh), rng.random(kw))
        symmetric = tuple((rng.random(kh), rng.random(kw)) for _ in range(2))
        symmetric = tuple((v + v[::-1], w + w[::-1]) for v, w in symmetric)
        plans += [
            Plan("separable", symmetric[:1]),
            Plan("separable", symmetric),
            Plan("separable", (asymmetric,)),
        ]
    if kh * kw >= DFT_MIN_TAPS:
        plans.append(Plan("fft"))
    return plans


def _typical_of(
    works: Sequence[Callable[[], object]], rounds: int, rng: np.random.Generator
) -> list[float]:
    """Each work's median time in ms over ``rounds`` interleaved rounds in a new order each,
    after a first run each.

    The median, not the best: what a user gets from a call is its typical time, and
    OpenCV's parallel passes vary far more than its one-thread DFT (sepFilter2D with a 51-tap
    Gaussian on 2048^2 float64: 46 ms at best, 76 typically, against 45 and 45 for filter2D's
    DFT), so a model fitted to best times would pick them where they seldom win. A new order
    each round: a call pays for what the one before it freed and evicted, and a fixed order
    would charge one work for its neighbour every time.
    """
    times: list[list[float]] = [[] for _ in works]
    order = list(range(len(works)))
    for round_ in range(rounds + 1):
        for i in order:
            started = time.perf_counter()
            works[i]()
            if round_:  # the first run of each warms up
                times[i].append((time.perf_counter() - started) * 1000)
        rng.shuffle(order)
    return [float(np.median(t)) for t in times]
