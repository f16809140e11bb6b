"""OpenCV's cv2.filter2D in float64.

filter2D correlates (it does not flip the kernel) and takes the anchor as (x, y). Borders it
can do exactly are left to it; the rest (``wrap``, ``valid``, a non-zero constant, pads as wide
as the image) go through the shared padding step, and the result is cropped back.
"""

from __future__ import annotations

import cv2
import numpy as np

from convkit.padding import Padding, cv2_border, output_shape, pad_image


def correlate(
    image: np.ndarray,
    weights: np.ndarray,
    anchor: tuple[int, int],
    padding: Padding,
    progress=None,
) -> np.ndarray:
    """Correlate a float image, (H, W) or (H, W, C<=4), with ``weights`` through filter2D.

    Computes in the image's float type (float32 or float64) and returns that type.
    """
    ay, ax = anchor
    depth = cv2.CV_32F if image.dtype == np.float32 else cv2.CV_64F
    weights = weights.astype(image.dtype, copy=False)
    border = cv2_border(padding, image.shape, weights.shape, anchor)
    if border is not None:
        return cv2.filter2D(image, depth, weights, anchor=(ax, ay), borderType=border)
    padded = np.ascontiguousarray(pad_image(image, weights.shape, anchor, padding))
    # Every kept pixel reads only inside `padded`, so the border type used here never matters.
    full = cv2.filter2D(padded, depth, weights, anchor=(ax, ay), borderType=cv2.BORDER_CONSTANT)
    out_height, out_width = output_shape(image.shape, weights.shape, padding.mode)
    return full[ay : ay + out_height, ax : ax + out_width]
