"""The textbook loop, kept readable on purpose: pad, slide the kernel, multiply, sum.

For every output pixel (y, x), the window of the padded image whose top-left corner is at
(y, x) lies under the kernel; the response is the sum of the element-wise products. This is
correlation with the kernel's anchor over the output pixel, because the padding put
``anchor`` rows and columns before the image.
"""

from __future__ import annotations

import numpy as np

from convkit.padding import Padding, output_shape, pad_image


def correlate(
    image: np.ndarray,
    weights: np.ndarray,
    anchor: tuple[int, int],
    padding: Padding,
    progress=None,
) -> np.ndarray:
    """Correlate a 2-D image with ``weights``, one output pixel at a time.

    ``progress(rows_done, rows_total)`` is called after every output row.
    """
    kernel_height, kernel_width = weights.shape
    padded = pad_image(image, weights.shape, anchor, padding)
    out_height, out_width = output_shape(image.shape, weights.shape, padding.mode)
    response = np.empty((out_height, out_width), dtype=np.float64)
    for y in range(out_height):
        for x in range(out_width):
            window = padded[y : y + kernel_height, x : x + kernel_width]
            response[y, x] = (window * weights).sum()
        if progress is not None:
            progress(y + 1, out_height)
    return response
