"""FFT convolution through scipy.fft: for large kernels, whose cost it makes independent of
the kernel's size.

The image is padded by the shared padding step, multiplied with the kernel in the frequency
domain (``rfft2`` at a fast length), and the valid part cropped back. The transforms need
only the padded image's length, not the full linear convolution's: the circular
convolution wraps onto the first kH - 1 rows and kW - 1 columns alone, which the crop drops
(101x101 on 512x512: 625^2 samples where 720^2 would be the full length). They run on as
many threads as OpenCV's filters: all cores, or one in a batch's worker processes, which
share the cores among themselves. Round-off is larger than that of direct sums and grows
with the image: about 1e-12 of sum|K| * max|I| in float64 here, well inside the tolerance
its registry entry gives it (`FFT_AGREEMENT_FACTOR`).
"""

from __future__ import annotations

import numpy as np
from scipy import fft

from convkit.calibration import opencv_threads
from convkit.padding import Padding, output_shape, pad_image


def correlate(
    image: np.ndarray,
    weights: np.ndarray,
    anchor: tuple[int, int],
    padding: Padding,
    progress=None,
) -> np.ndarray:
    """Correlate ``image`` (H, W) or (H, W, C) with ``weights`` by FFT, in its float type."""
    padded = pad_image(image, weights.shape, anchor, padding)
    height, width = output_shape(image.shape, weights.shape, padding.mode)
    rows, columns = weights.shape
    # Correlation is convolution with the kernel rotated by 180 degrees.
    kernel = weights[::-1, ::-1].astype(image.dtype, copy=False)
    shape = transform_shape(padded.shape[:2])
    workers = opencv_threads()
    spectrum = fft.rfft2(padded, shape, axes=(0, 1), workers=workers)
    kernel_spectrum = fft.rfft2(kernel, shape, axes=(0, 1), workers=workers)
    if padded.ndim == 3:
        kernel_spectrum = kernel_spectrum[..., np.newaxis]
    # In place: one image-sized spectrum fewer to allocate (and fault in) per call.
    spectrum *= kernel_spectrum
    full = fft.irfft2(spectrum, shape, axes=(0, 1), workers=workers, overwrite_x=True)
    # Convolution index (y + kH - 1, x + kW - 1) is the correlation at (y, x); the circular
    # wrap reaches only indices below kH - 1 and kW - 1.
    return full[rows - 1 : rows - 1 + height, columns - 1 : columns - 1 + width]


def transform_shape(padded_shape: tuple[int, int]) -> tuple[int, int]:
    """The real transforms' (rows, columns) for an image already padded to ``padded_shape``:
    the next fast length of each side."""
    return (
        fft.next_fast_len(padded_shape[0], real=True),
        fft.next_fast_len(padded_shape[1], real=True),
    )
