"""convolve(): validate once, split channels, flip for true convolution, dispatch to a backend."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from convkit.backends import check_backend_name, get_backend
from convkit.errors import UsageError
from convkit.kernels import Kernel
from convkit.padding import Padding, make_padding

DEFAULT_BACKEND = "filter2d"


def as_kernel(kernel: Kernel | np.ndarray | list) -> Kernel:
    """A `Kernel` as is; a 2-D array-like becomes an unnamed kernel with the default anchor."""
    if isinstance(kernel, Kernel):
        return kernel
    return Kernel("array", np.asarray(kernel, dtype=np.float64))


def check_image(image: np.ndarray) -> np.ndarray:
    """An (H, W) or (H, W, C) array of real numbers, not empty; raises `UsageError` if not."""
    image = np.asarray(image)
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

    Returns
    -------
    ndarray
        float64, shape (H, W[, C]), or (H - kH + 1, W - kW + 1[, C]) under ``valid``. The
        kernel's ``offset`` is added; nothing is clipped or rounded.

    Raises
    ------
    UsageError
        For an empty or non-numeric image, an unknown padding or backend, or a kernel larger
        than the image under ``valid``.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    >>> convolve(image, [[0, 1], [1, 0]], padding="valid", backend="naive")
    array([[ 6.,  8.],
           [12., 14.]])
    """
    image = check_image(image)
    kernel = as_kernel(kernel)
    padding = make_padding(padding, cval)
    correlate = get_backend(check_backend_name(backend))
    check_fits(image.shape, kernel, padding)
    if flip:
        kernel = kernel.flipped()
    channels = image[..., np.newaxis] if image.ndim == 2 else image
    count = channels.shape[2]
    responses = []
    for c in range(count):
        plane = np.ascontiguousarray(channels[..., c], dtype=np.float64)
        report = _channel_progress(progress, c, count)
        responses.append(correlate(plane, kernel.weights, kernel.anchor, padding, report))
    response = responses[0] if image.ndim == 2 else np.stack(responses, axis=-1)
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
