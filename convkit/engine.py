"""The engine, the one way from an image and a kernel to a response or a filtered image.

`convolve` validates once, sets the alpha channel aside, orients the kernel (anchor, flip)
and dispatches to a backend, all channels at once or one by one as its registry entry says;
`convolve_to_image` goes on to pixels, in strips of rows where it can. Only this module and
`convkit.backends` import a backend module.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from convkit.backends import (
    KNOWN_BACKENDS,
    Backend,
    check_backend_name,
    get_backend,
    get_saturating,
)
from convkit.errors import UsageError
from convkit.kernels import Kernel
from convkit.padding import Padding, make_padding, output_shape, pad_image
from convkit.postprocess import (
    PER_PIXEL_POLICIES,
    attach_alpha,
    check_post_processing,
    output_dtype,
    split_alpha,
    to_image,
)
from convkit.tiles import is_dask_array

DEFAULT_BACKEND = "filter2d"
# A strip of streamed response holds about this many bytes of float64.
STRIP_BYTES = 8 * 2**20
Region = tuple[int, int, int, int]  # y, x, height, width
VALID = Padding("valid")


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
    *,
    padding: str | Padding = "replicate",
    cval: float = 0.0,
    backend: str = DEFAULT_BACKEND,
    flip: bool = False,
    anchor: tuple[int, int] | None = None,
    precision: str = "float64",
    progress: Callable[[int, int], None] | None = None,
    region: Region | None = None,
    cast: bool = True,
) -> np.ndarray:
    """Filter an image with a kernel and return the float response.

    By default this *correlates*, as cv2.filter2D does:
    ``O[y, x] = sum_ij K[i, j] * P[y + i - ay, x + j - ax]`` with P the padded image and
    ``(ay, ax)`` the kernel's anchor. With ``flip=True`` it convolves (the kernel rotated by
    180 degrees, the anchor with it), which for odd kernels equals scipy.ndimage.convolve.

    Parameters
    ----------
    image : ndarray
        (H, W) or (H, W, C), any real dtype. Channels are filtered one by one; the last of 2
        (grey + alpha) or 4 channels (colour + alpha) is alpha, carried through unfiltered.
    kernel : Kernel or array_like or str
        A `Kernel`, a 2-D array (anchor ``(kH // 2, kW // 2)``), or a kernel name, inline
        matrix or kernel file as ``--kernel`` takes them.
    padding : str
        ``replicate`` (default), ``constant``, ``reflect``, ``reflect101``, ``wrap`` or
        ``valid``, or an alias (``edge``, ``zero``, ``symmetric``, ``mirror``, ...).
    cval : float
        The value outside the image for ``constant``.
    backend : str
        A name from `available_backends`.
    flip : bool
        True convolution instead of correlation.
    anchor : (int, int), optional
        The (row, column) of the weight over the output pixel, instead of the kernel's own
        (by default OpenCV's ``(kH // 2, kW // 2)``). With ``flip`` it is rotated too.
    precision : {"float64", "float32"}
        ``float32`` computes and returns float32: half the memory traffic, about 1e-7
        relative round-off. The default is exact to float64 (computed in float32 only where
        that is provably exact).
    progress : callable, optional
        ``progress(done, total)``, called as they go by backends whose registry entry says
        they report progress (``naive``, ``numpy``).
    region : (y, x, height, width), optional
        Compute only this window of the output, equal to the same window of the whole
        response (the default naive reference runs on such a crop).
    cast : bool
        False returns the response in the float type it was computed in: float32 where the
        engine proved float32 exact (integer image and weights, every sum below 2**24), whose
        values are the float64 ones, saving a cast of the whole response.

    Returns
    -------
    ndarray
        float64 (float32 for ``precision="float32"``), shape (H, W[, C]), or
        (H - kH + 1, W - kW + 1[, C]) under ``valid``, or (height, width[, C]) for a
        ``region``. The kernel's ``offset`` is added; nothing is clipped or rounded.

    Raises
    ------
    UsageError
        For an empty or non-numeric image, an unknown padding, backend or precision, a
        non-finite ``cval``, a kernel larger than the image under ``valid``, a region
        outside the output, or a response that would overflow (see `check_range`).
    KernelError
        For a kernel that is not a 2-D matrix of finite real numbers, a string that names
        no kernel, or an anchor that is not two whole numbers inside the kernel.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    >>> convolve(image, [[0, 1], [1, 0]], padding="valid")
    array([[ 6.,  8.],
           [12., 14.]])
    >>> convolve(image, [[0, 1], [1, 0]], padding="valid", region=(1, 0, 1, 2))
    array([[12., 14.]])
    """
    if is_dask_array(image):
        return _convolve_dask(image, kernel, padding, cval, backend, flip, anchor, precision)
    request = _prepare(image, kernel, padding, cval, backend, flip, anchor, precision, progress)
    if region is None:
        response = _correlate(request.colour, request, request.padding)
    else:
        response = _correlate(_window(request, region), request, VALID)
    if cast:
        response = response.astype(request.precision, copy=False)
    return attach_alpha(response, _carried_alpha(request, region))


def convolve_to_image(
    image: np.ndarray,
    kernel: Kernel | np.ndarray,
    *,
    padding: str | Padding = "replicate",
    cval: float = 0.0,
    backend: str = DEFAULT_BACKEND,
    flip: bool = False,
    anchor: tuple[int, int] | None = None,
    precision: str = "float64",
    rescale: str = "clip",
    bias: float = 0.0,
    activation: str | None = None,
    strip_bytes: int = STRIP_BYTES,
) -> np.ndarray:
    """``to_image(convolve(image, kernel, ...), like=image, ...)``, without holding the whole
    float response where the case allows: the image as it will be written.

    Where the rescale policy works pixel by pixel (`strip_rows`), the image is padded once
    in its own type and each strip of output rows is filtered ``valid`` with its halo of
    kH - 1 rows and turned into pixels at once; where OpenCV's saturating filter2D gives the
    same bits (integer sums that float32 holds exactly, plain ``clip``), in one pass with no
    float image at all. Peak memory: about the image, its padded copy, the output and one
    strip of floats.

    Parameters
    ----------
    image, kernel, padding, cval, backend, flip, anchor, precision
        As for `convolve`.
    rescale, bias, activation
        As for `convkit.postprocess.to_image`.
    strip_bytes : int
        About how many bytes of float response a strip holds.

    Returns
    -------
    ndarray
        uint8 or uint16 as `to_image` makes them (float64 for ``rescale="none"``), the
        input's alpha channel, if any, carried through unfiltered.

    Raises
    ------
    UsageError, KernelError
        As `convolve` and `to_image` do.
    """
    request = _prepare(image, kernel, padding, cval, backend, flip, anchor, precision, None)
    policy, bias, activation = check_post_processing(rescale, bias, activation)
    colour, kernel = request.colour, request.kernel
    rows = strip_rows(colour, kernel, request.padding, request.backend, policy, strip_bytes)
    if rows is None:
        response = _correlate(colour, request, request.padding)
        pixels = to_image(response, colour, policy, bias, activation)
    elif _saturates_exactly(request, policy, bias, activation):
        saturate = get_saturating(request.backend)
        pixels = saturate(colour, kernel.weights, kernel.anchor, request.padding)
    else:
        pixels = _in_strips(request, rows, policy, bias, activation)
    return attach_alpha(pixels, _carried_alpha(request, None))


def strip_rows(
    image: np.ndarray,
    kernel: Kernel,
    padding: Padding,
    backend: str,
    rescale: str,
    strip_bytes: int = STRIP_BYTES,
) -> int | None:
    """The rows of output per strip with which `convolve_to_image` filters ``image``, or
    None where it holds the whole float response.

    Strips need a backend that streams (its registry entry), a rescale policy that turns
    each value into a pixel on its own (``clip``, ``abs``), and, under ``constant``, a
    ``cval`` that the image's own type holds (the image is padded in that type).
    """
    if not KNOWN_BACKENDS[backend].streams or rescale not in PER_PIXEL_POLICIES:
        return None
    if padding.mode == "constant" and not _type_holds(image.dtype, padding.cval):
        return None
    width = output_shape(image.shape, kernel.shape, padding.mode)[1]
    channels = image.shape[2] if image.ndim == 3 else 1
    return max(1, strip_bytes // (width * channels * 8))


def crop_alpha(
    alpha: np.ndarray | None, kernel: Kernel, padding: Padding, flip: bool = False
) -> np.ndarray | None:
    """The alpha under each output pixel: all of it, or under ``valid`` the pixels that the
    kernel's anchor passes over ((y, x) of the output sits over (y + ay, x + ax)).

    ``kernel`` may be anything with a ``shape`` and an ``anchor`` (a stack's receptive
    field); with ``flip`` its anchor is rotated as `Kernel.flipped` rotates it.
    """
    if alpha is None or padding.mode != "valid":
        return alpha
    (kh, kw), (ay, ax) = kernel.shape, kernel.anchor
    if flip:
        ay, ax = kh - 1 - ay, kw - 1 - ax
    return alpha[ay : ay + alpha.shape[0] - kh + 1, ax : ax + alpha.shape[1] - kw + 1]


class _Request(NamedTuple):
    """A validated call: what to filter, with what, how, and in which float type."""

    colour: np.ndarray  # the channels to filter (alpha set aside)
    alpha: np.ndarray | None
    kernel: Kernel  # anchored and, for true convolution, flipped: what the backend correlates
    padding: Padding
    backend: str
    dtype: np.dtype  # the float type the backend computes in
    precision: np.dtype  # the float type asked for
    progress: Callable[[int, int], None] | None


def _convolve_dask(image, kernel, padding, cval, backend, flip, anchor, precision):
    """A dask array: the same checks, then a lazy response computed tile by tile
    (`convkit.tiles`), of the shape and dtype the in-memory call returns."""
    from convkit.tiles import convolve_lazy

    if image.ndim not in (2, 3) or 0 in image.shape:
        raise UsageError(f"an image must be a non-empty (H, W) or (H, W, C), got {image.shape}")
    if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
        raise UsageError(f"an image must hold real numbers, got dtype {image.dtype}")
    kernel = as_kernel(kernel)
    if anchor is not None:
        kernel = kernel.anchored(anchor)
    padding = make_padding(padding, cval)
    name = _backend_name(backend)
    precision_dtype(precision)
    get_backend(name)
    if flip:
        kernel = kernel.flipped()
    return convolve_lazy(image, kernel, padding, name, precision)


def _prepare(image, kernel, padding, cval, backend, flip, anchor, precision, progress) -> _Request:
    """Validate every argument once, set the alpha channel aside and orient the kernel."""
    image = check_image(image)
    kernel = as_kernel(kernel)
    if anchor is not None:
        kernel = kernel.anchored(anchor)
    padding = make_padding(padding, cval)
    name = _backend_name(backend)
    requested = precision_dtype(precision)
    if progress is not None and not callable(progress):
        raise UsageError(f"progress must be a function progress(done, total), got {progress!r}")
    get_backend(name)  # the backend's library imports (or fails) before any work
    colour, alpha = split_alpha(image)
    check_fits(colour.shape, kernel, padding)
    spec = KNOWN_BACKENDS[name]
    check_range(colour, kernel, padding, requested, exact_sums=spec.direct)
    if flip:
        kernel = kernel.flipped()
    dtype = requested
    if spec.direct and requested == np.float64:
        dtype = working_dtype(colour.dtype, kernel.weights, padding.cval, kernel.offset)
    return _Request(colour, alpha, kernel, padding, name, dtype, requested, progress)


def _correlate(image: np.ndarray, request: _Request, padding: Padding) -> np.ndarray:
    """The backend's response to ``image`` in the working type, offset added: all channels
    in one call where the backend takes them, else channel by channel."""
    spec = KNOWN_BACKENDS[request.backend]
    kernel, dtype = request.kernel, request.dtype
    if image.ndim == 3 and spec.multichannel and image.shape[2] <= 4:
        # One call over all channels: no per-channel copies, no stacking.
        planes = np.ascontiguousarray(image, dtype=dtype)
        response = _run_backend(spec, planes, kernel, padding, request.progress)
        return _with_offset(response.astype(dtype, copy=False), kernel)
    channels = image[..., np.newaxis] if image.ndim == 2 else image
    count = channels.shape[2]
    responses = []
    for c in range(count):
        plane = np.ascontiguousarray(channels[..., c], dtype=dtype)
        report = _channel_progress(request.progress, c, count)
        response = _run_backend(spec, plane, kernel, padding, report)
        responses.append(response.astype(dtype, copy=False))
    response = responses[0] if image.ndim == 2 else np.stack(responses, axis=-1)
    return _with_offset(response, kernel)


def _run_backend(
    spec: Backend,
    image: np.ndarray,
    kernel: Kernel,
    padding: Padding,
    progress: Callable[[int, int], None] | None,
) -> np.ndarray:
    """One call of the backend; progress is handed to those that report it."""
    correlate = get_backend(spec.name)
    if spec.progress:
        return correlate(image, kernel.weights, kernel.anchor, padding, progress)
    return correlate(image, kernel.weights, kernel.anchor, padding)


def _window(request: _Request, region: Region) -> np.ndarray:
    """The padded image under ``region`` of the output: filtered ``valid``, it gives that
    region of the whole response."""
    y, x, height, width = _check_region(region, request)
    kernel = request.kernel
    padded = pad_image(_holding_cval(request), kernel.shape, kernel.anchor, request.padding)
    return padded[y : y + height + kernel.shape[0] - 1, x : x + width + kernel.shape[1] - 1]


def _holding_cval(request: _Request) -> np.ndarray:
    """The image to pad: as it is, or in the working float type where its own integer type
    cannot hold the ``constant`` padding's cval (12.5 or -3 on 8-bit would be cut or wrap)."""
    colour, padding = request.colour, request.padding
    if padding.mode == "constant" and not _type_holds(colour.dtype, padding.cval):
        return colour.astype(request.dtype)
    return colour


def _type_holds(dtype: np.dtype, value: float) -> bool:
    """Whether an array of ``dtype`` holds ``value`` exactly (floats: any finite cval)."""
    if dtype.kind == "b":
        return value in (0.0, 1.0)
    if dtype.kind not in "ui":
        return True
    info = np.iinfo(dtype)
    return value == round(value) and info.min <= value <= info.max


def _check_region(region: object, request: _Request) -> Region:
    """``region`` as four whole numbers inside the output; a `UsageError` if it is not."""
    out_height, out_width = output_shape(
        request.colour.shape, request.kernel.shape, request.padding.mode
    )
    try:
        y, x, height, width = (operator.index(n) for n in region)
    except (TypeError, ValueError):
        raise UsageError(
            f"region must be four whole numbers (y, x, height, width), got {region!r}"
        ) from None
    if min(y, x) < 0 or min(height, width) < 1 or y + height > out_height or x + width > out_width:
        raise UsageError(
            f"region (y={y}, x={x}, height={height}, width={width}) is not inside the "
            f"{out_width}x{out_height} output"
        )
    return y, x, height, width


def _carried_alpha(request: _Request, region: Region | None) -> np.ndarray | None:
    """The alpha under the output (or under ``region`` of it), as it was."""
    alpha = crop_alpha(request.alpha, request.kernel, request.padding)
    if alpha is None or region is None:
        return alpha
    y, x, height, width = region
    return alpha[y : y + height, x : x + width]


def _saturates_exactly(request: _Request, policy: str, bias: float, activation: str | None) -> bool:
    """Whether the backend's one-pass saturating path (its registry entry: OpenCV's
    saturating filter2D) writes the pixels bit for bit as the float path would: integer sums
    that float32 holds exactly (`working_dtype`), plain clipping, an 8- or 16-bit image of up
    to 4 channels written in its own type."""
    colour = request.colour
    one_pass = KNOWN_BACKENDS[request.backend].saturating is not None
    plain = policy == "clip" and not bias and activation is None
    small = colour.ndim == 2 or colour.shape[2] <= 4
    exact = request.dtype == np.float32 and request.precision == np.float64
    return one_pass and plain and small and exact and colour.dtype == output_dtype(colour)


def _in_strips(
    request: _Request, rows: int, policy: str, bias: float, activation: str | None
) -> np.ndarray:
    """The pixels, strip of ``rows`` output rows by strip: each strip the ``valid``
    response of its padded rows plus a halo of kH - 1, turned into pixels at once."""
    colour, kernel = request.colour, request.kernel
    padded = pad_image(colour, kernel.shape, kernel.anchor, request.padding)
    height, width = output_shape(colour.shape, kernel.shape, request.padding.mode)
    out = np.empty((height, width) + colour.shape[2:], dtype=output_dtype(colour))
    halo = kernel.shape[0] - 1
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        response = _correlate(padded[top : bottom + halo], request, VALID)
        out[top:bottom] = to_image(response, colour, policy, bias, activation)
    return out


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
# it may take its DFT path, which is not exact. `convkit.backends.filter2d.DFT_MIN_TAPS` - 1,
# restated because that module imports cv2, which importing convkit must not (a test holds
# the two, and resources.DIRECT_MAX_TAPS, together).
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
