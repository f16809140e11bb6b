"""Pure numpy: pad once, then add up one shifted copy of the image per kernel tap.

``O = sum_ij K[i, j] * P[i : i + H, j : j + W]`` over the padded image P: the textbook sum
with the loops over pixels vectorised away, a cross-check that needs nothing but numpy.
Works on (H, W) and (H, W, C) alike, in the image's float type.
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
    """Correlate ``image`` with ``weights`` by shift-and-add over the kernel's taps."""
    padded = pad_image(image, weights.shape, anchor, padding)
    height, width = output_shape(image.shape, weights.shape, padding.mode)
    response = np.zeros((height, width) + image.shape[2:], dtype=image.dtype)
    weights = weights.astype(image.dtype, copy=False)
    rows, columns = weights.shape
    for i in range(rows):
        for j in range(columns):
            if weights[i, j] != 0:
                response += weights[i, j] * padded[i : i + height, j : j + width]
        if progress is not None:
            progress(i + 1, rows)
    return response
