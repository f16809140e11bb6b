"""convolve(): validate once, split channels, flip for true convolution, dispatch to a backend."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from convkit.backends import KNOWN_BACKENDS, check_backend_name, get_backend
from convkit.errors import UsageError
from convkit.kernels import Kernel
from convkit.padding import Padding, make_padding

DEFAULT_BACKEND = "filter2d"


def as_kernel(kernel: Kernel | np.ndarray | list | str) -> Kernel:
    """A `Kernel` as is; a string as the command line reads ``--kernel`` (a bank or
    parametric name, an inline matrix or a kernel file); a 2-D array-like becomes an unnamed
    kernel with the default anchor.

    Raises
    ------
    KernelError
        For a string that names no kernel, or an array that is not a 2-D matrix of finite
        real numbers.
    """
    if isinstance(kernel, Kernel):
        return kernel
    if isinstance(kernel, str):
        from convkit.kernel_files import resolve_kernel

        return resolve_kernel(kernel, "inline")
    return Kernel("array", kernel)


def check_image(image: np.ndarray) -> np.ndarray:
    """An (H, W) or (H, W, C) array of real numbers, not empty; raises `UsageError` if not."""
    try:
        image = np.asarray(image)
    except (ValueError, TypeError, RecursionError):
        raise UsageError(
            "an image must be a rectangular (H, W) or (H, W, C) array of numbers"
        ) from None
    if image.ndim not in (2, 3):
        raise UsageError(f"an image must be (H, W) or (H, W, C), got shape {image.shape}")
    if image.size == 0:
        raise UsageError(f"the image is empty (shape {image.shape})")
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool) or np.iscomplexobj(image):
        raise UsageError(f"an image must hold real numbers, got dtype {image.dtype}")
    return image


def check_fits(image_shape: tuple[int, ...], kernel: Kernel, padding: Padding) -> None:
    """Under ``valid`` the kernel must fit inside the image."""
    if padding.mode != "valid":
        return
    (h, w), (kh, kw) = image_shape[:2], kernel.shape
    if kh > h or kw > w:
        raise UsageError(
            f"kernel {kernel.name!r} ({kh}x{kw}) is larger than the image ({h}x{w}) under "
            "padding 'valid': use a smaller kernel or another padding mode"
        )


def convolve(
    image: np.ndarray,
    kernel: Kernel | np.ndarray,
    padding: str | Padding = "replicate",
    cval: float = 0.0,
    backend: str = DEFAULT_BACKEND,
    flip: bool = False,
    progress: Callable[[int, int], None] | None = None,
    anchor: tuple[int, int] | None = None,
    precision: str = "float64",
) -> np.ndarray:
    """Filter an image with a kernel and return the float64 response.

    By default this *correlates*, as cv2.filter2D does:
    ``O[y, x] = sum_ij K[i, j] * P[y + i - ay, x + j - ax]`` with P the padded image and
    ``(ay, ax)`` the kernel's anchor. With ``flip=True`` it convolves (the kernel rotated by
    180 degrees, the anchor with it), which for odd kernels equals scipy.ndimage.convolve.

    Parameters
    ----------
    image : ndarray
        (H, W) or (H, W, C), any real dtype. Channels are filtered one by one.
    kernel : Kernel or array_like
        A `Kernel`, or a 2-D array (anchor ``(kH // 2, kW // 2)``).
    padding : str
        ``replicate`` (default), ``constant``, ``reflect``, ``reflect101``, ``wrap`` or
        ``valid``, or an alias (``edge``, ``zero``, ``symmetric``, ``mirror``, ...).
    cval : float
        The value outside the image for ``constant``.
    backend : str
        A name from `available_backends`.
    flip : bool
        True convolution instead of correlation.
    progress : callable, optional
        ``progress(done, total)``, called by backends that report progress (``naive``).
    anchor : (int, int), optional
        The (row, column) of the weight over the output pixel, instead of the kernel's own
        (by default OpenCV's ``(kH // 2, kW // 2)``). With ``flip`` it is rotated too.
    precision : {"float64", "float32"}
        ``float32`` computes and returns float32: half the memory traffic, about 1e-7
        relative round-off. The default is exact to float64 (computed in float32 only where
        that is provably exact).

    Returns
    -------
    ndarray
        float64, shape (H, W[, C]), or (H - kH + 1, W - kW + 1[, C]) under ``valid``. The
        kernel's ``offset`` is added; nothing is clipped or rounded.

    Raises
    ------
    UsageError
        For an empty or non-numeric image, an unknown padding, backend or precision, a
        non-finite ``cval``, a kernel larger than the image under ``valid``, or a response
        that would overflow float64 (see `check_range`).
    KernelError
        For a kernel that is not a 2-D matrix of finite real numbers, a string that names
        no kernel, or an anchor that is not two whole numbers inside the kernel.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    >>> convolve(image, [[0, 1], [1, 0]], padding="valid", backend="naive")
    array([[ 6.,  8.],
           [12., 14.]])
    """
    response = convolve_exact(
        image, kernel, padding, cval, backend, flip, progress, anchor, precision
    )
    return response.astype(PRECISIONS[precision], copy=False)


def convolve_exact(
    image: np.ndarray,
    kernel: Kernel | np.ndarray,
    padding: str | Padding = "replicate",
    cval: float = 0.0,
    backend: str = DEFAULT_BACKEND,
    flip: bool = False,
    progress: Callable[[int, int], None] | None = None,
    anchor: tuple[int, int] | None = None,
    precision: str = "float64",
) -> np.ndarray:
    """`convolve`, returning the response in the float type it was computed in.

    That is float32 only where `working_dtype` proves float32 exact, so the values are the
    float64 ones; the pipeline uses this to skip a cast and halve its memory traffic.
    """
    image = check_image(image)
    kernel = as_kernel(kernel)
    if anchor is not None:
        kernel = kernel.anchored(anchor)
    padding = make_padding(padding, cval)
    name = _backend_name(backend)
    dtype = precision_dtype(precision)
    if progress is not None and not callable(progress):
        raise UsageError(f"progress must be a function progress(done, total), got {progress!r}")
    correlate = get_backend(name)
    check_fits(image.shape, kernel, padding)
    spec = KNOWN_BACKENDS[name]
    check_range(image, kernel, padding, dtype, exact_sums=spec.direct)
    if flip:
        kernel = kernel.flipped()
    if spec.direct and precision == "float64":
        dtype = working_dtype(image.dtype, kernel.weights, padding.cval, kernel.offset)
    if image.ndim == 3 and spec.multichannel and image.shape[2] <= 4:
        # One call over all channels: no per-channel copies, no stacking.
        planes = np.ascontiguousarray(image, dtype=dtype)
        response = correlate(planes, kernel.weights, kernel.anchor, padding, progress)
        return _with_offset(response.astype(dtype, copy=False), kernel)
    channels = image[..., np.newaxis] if image.ndim == 2 else image
    count = channels.shape[2]
    responses = []
    for c in range(count):
        plane = np.ascontiguousarray(channels[..., c], dtype=dtype)
        report = _channel_progress(progress, c, count)
        response = correlate(plane, kernel.weights, kernel.anchor, padding, report)
        responses.append(response.astype(dtype, copy=False))
    response = responses[0] if image.ndim == 2 else np.stack(responses, axis=-1)
    return _with_offset(response, kernel)


def _backend_name(backend: object) -> str:
    if not isinstance(backend, str):
        valid = ", ".join(KNOWN_BACKENDS)
        raise UsageError(f"unknown backend {backend!r}: use one of {valid}")
    return check_backend_name(backend)


def precision_dtype(precision: object) -> np.dtype:
    """The dtype of ``"float64"`` or ``"float32"``; a `UsageError` naming anything else."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}: use float64 or float32")
    return PRECISIONS[precision]


def check_range(
    image: np.ndarray,
    kernel: Kernel,
    padding: Padding,
    dtype: np.dtype | str = "float64",
    exact_sums: bool = True,
) -> None:
    """Refuse a response that float arithmetic cannot hold: no inf, NaN or warning later.

    Every response value is bounded by ``sum|K| * max|I| + |offset|`` (``max|I|`` including
    ``cval`` under ``constant``); that bound must be finite in ``dtype``. A backend that may
    sum through a Fourier transform (``exact_sums`` False, or more than
    `DIRECT_FILTER_MAX_AREA` taps, where OpenCV takes its DFT path) has intermediate sums up
    to (samples)**2 times larger, so it gets that much headroom.

    Raises
    ------
    UsageError
        If the image holds an infinite value, or the bound overflows ``dtype``; the message
        names sum|K| and max|I|.
    """
    peak = largest_magnitude(image)
    if math.isinf(peak):
        raise UsageError("the image holds infinite values: convkit filters finite numbers only")
    if padding.mode == "constant":
        peak = max(peak, abs(padding.cval))
    if math.isnan(peak):  # every pixel NaN: the response is NaN whatever the kernel
        return
    largest = float(np.finfo(dtype).max)
    headroom = 1.0
    if not exact_sums or kernel.weights.size > DIRECT_FILTER_MAX_AREA:
        (h, w), (kh, kw) = image.shape[:2], kernel.shape
        headroom = float((h + 2 * kh) * (w + 2 * kw)) ** 2
    bound = kernel.abs_sum * peak + abs(kernel.offset)
    if bound * headroom > largest:  # inf compares larger too
        overflow = (
            f"would overflow {np.dtype(dtype).name}"
            if headroom == 1.0
            else f"could overflow {np.dtype(dtype).name} in the sums of a Fourier transform"
        )
        raise UsageError(
            f"kernel {kernel.name!r}: sum|K| x max|I| = {kernel.abs_sum:g} x {peak:g} "
            f"{overflow}: scale the kernel or the image down"
        )


def largest_magnitude(image: np.ndarray) -> float:
    """``max|I|``: from the dtype's range for integers up to 32 bits (no pass over the
    pixels), else the largest magnitude present, ignoring NaN (NaN if every pixel is)."""
    if image.dtype.kind == "b":
        return 1.0
    if image.dtype.kind in "iu" and image.dtype.itemsize <= 4:
        info = np.iinfo(image.dtype)
        return float(max(-int(info.min), int(info.max)))
    with np.errstate(invalid="ignore"):
        high = float(np.fmax.reduce(image, axis=None))
        low = float(np.fmin.reduce(image, axis=None))
    return max(abs(high), abs(low)) if not math.isnan(high) else math.nan


PRECISIONS = {"float64": np.dtype(np.float64), "float32": np.dtype(np.float32)}
# float32 holds every integer up to 2**24 exactly.
FLOAT32_EXACT_LIMIT = 2**24
# Below this kernel area OpenCV filters directly; from 50 taps (float64) or 130 (float32) on
# it may take its DFT path, which is not exact.
DIRECT_FILTER_MAX_AREA = 49


def working_dtype(
    image_dtype: np.dtype, weights: np.ndarray, cval: float = 0.0, offset: float = 0.0
) -> np.dtype:
    """The float type a backend computes in: float32 where that is exact, else float64.

    With integer samples, integer weights and every partial sum below 2**24, each product
    and each partial sum is an integer that float32 holds exactly, in any order of summation:
    the response is the exact one, bit for bit what float64 gives, at half the memory traffic.
    """
    image_dtype = np.dtype(image_dtype)
    if image_dtype.kind not in "iu" or offset or not math.isfinite(cval):
        return np.dtype(np.float64)
    if weights.size > DIRECT_FILTER_MAX_AREA or not np.all(weights == np.round(weights)):
        return np.dtype(np.float64)
    info = np.iinfo(image_dtype)
    largest = max(abs(int(info.min)), int(info.max), abs(cval))
    if cval != round(cval) or largest * float(np.abs(weights).sum()) >= FLOAT32_EXACT_LIMIT:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _with_offset(response: np.ndarray, kernel: Kernel) -> np.ndarray:
    if kernel.offset:
        response += kernel.offset
    return response


def _channel_progress(
    progress: Callable[[int, int], None] | None, channel: int, count: int
) -> Callable[[int, int], None] | None:
    """Turn a backend's per-channel progress into progress over all channels."""
    if progress is None:
        return None

    def report(done: int, total: int) -> None:
        progress(channel * total + done, count * total)

    return report
