"""Padding modes: one vocabulary, one table mapping it onto OpenCV, numpy.pad and scipy.ndimage.

Nowhere else in convkit spells a border constant: backends ask this module.
"""

from __future__ import annotations

import math
import reprlib
from typing import NamedTuple

import numpy as np

from convkit.errors import UsageError


class PaddingMode(NamedTuple):
    """How one padding mode is spelled by each library.

    ``cv2_border`` is the name of the ``cv2.BORDER_*`` constant, or None where filter2D
    cannot do the mode itself and the shared padding step must.
    """

    name: str
    pattern: str
    cv2_border: str | None
    numpy_mode: str | None
    scipy_mode: str | None


# `abcdefgh` is one row; the bars mark the image's edges.
PADDING_MODES: dict[str, PaddingMode] = {
    mode.name: mode
    for mode in (
        PaddingMode("replicate", "aaa|abcdefgh|hhh", "BORDER_REPLICATE", "edge", "nearest"),
        PaddingMode("constant", "000|abcdefgh|000", "BORDER_CONSTANT", "constant", "constant"),
        PaddingMode("reflect", "cba|abcdefgh|hgf", "BORDER_REFLECT", "symmetric", "reflect"),
        PaddingMode("reflect101", "dcb|abcdefgh|gfe", "BORDER_REFLECT_101", "reflect", "mirror"),
        # filter2D refuses BORDER_WRAP (and its DFT path gets it wrong): always pad first.
        PaddingMode("wrap", "fgh|abcdefgh|abc", None, "wrap", "wrap"),
        PaddingMode("valid", "no padding: the output shrinks", None, None, None),
    )
}

PADDING_ALIASES: dict[str, str] = {
    "edge": "replicate",
    "nearest": "replicate",
    "zero": "constant",
    "symmetric": "reflect",
    "mirror": "reflect101",
    "circular": "wrap",
}

DEFAULT_PADDING = "replicate"


class Padding(NamedTuple):
    """A resolved padding mode and the constant used by ``constant``."""

    mode: str = DEFAULT_PADDING
    cval: float = 0.0

    @property
    def spec(self) -> PaddingMode:
        return PADDING_MODES[self.mode]


def resolve_padding(name: str) -> str:
    """Return the canonical padding name for ``name`` or one of its aliases.

    Raises
    ------
    UsageError
        If the name is unknown (or not a string); the message lists the valid names.
    """
    key = name.strip().lower().replace("-", "").replace("_", "") if isinstance(name, str) else ""
    if key in PADDING_MODES:
        return key
    if key in PADDING_ALIASES:
        return PADDING_ALIASES[key]
    names = ", ".join(PADDING_MODES)
    aliases = ", ".join(f"{a} ({c})" for a, c in PADDING_ALIASES.items())
    raise UsageError(
        f"unknown padding mode {reprlib.repr(name)}: use one of {names}; aliases: {aliases}"
    )


def make_padding(mode: str | Padding = DEFAULT_PADDING, cval: float = 0.0) -> Padding:
    """Build a `Padding` from a name (or alias) and a constant.

    A `Padding` is returned as is once checked (its own ``cval`` wins over ``cval``).

    Raises
    ------
    UsageError
        For an unknown mode, or a ``cval`` that is not a finite number; the message names
        the value.
    """
    if isinstance(mode, Padding):
        return Padding(resolve_padding(mode.mode), check_cval(mode.cval))
    return Padding(resolve_padding(mode), check_cval(cval))


def check_cval(cval: object) -> float:
    """``cval`` as a finite float; a `UsageError` naming it if it is not one."""
    try:
        value = float(cval) if not isinstance(cval, (str, bytes, bool)) else math.nan
    except (TypeError, ValueError, OverflowError):
        value = math.nan
    if not math.isfinite(value):
        raise UsageError(
            f"cval {reprlib.repr(cval)}: the constant outside the image must be a finite number"
        )
    return value


def pad_widths(
    kernel_shape: tuple[int, int], anchor: tuple[int, int], mode: str
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Rows and columns to add ((top, bottom), (left, right)) so the output keeps its size.

    The anchor decides the split: a kernel reaches ``ay`` rows above the output pixel and
    ``kH - 1 - ay`` below, which is not symmetric for even or off-centre kernels.
    ``valid`` adds nothing.
    """
    if mode == "valid":
        return (0, 0), (0, 0)
    (kh, kw), (ay, ax) = kernel_shape, anchor
    return (ay, kh - 1 - ay), (ax, kw - 1 - ax)


def output_shape(
    image_shape: tuple[int, ...], kernel_shape: tuple[int, int], mode: str
) -> tuple[int, int]:
    """The (H, W) of the response: the image's, or shrunk by the kernel under ``valid``."""
    h, w = image_shape[:2]
    if mode == "valid":
        return h - kernel_shape[0] + 1, w - kernel_shape[1] + 1
    return h, w


def pad_image(
    image: np.ndarray, kernel_shape: tuple[int, int], anchor: tuple[int, int], padding: Padding
) -> np.ndarray:
    """The shared padding step: an image extended by ``padding`` around ``anchor``.

    Rows and columns are padded; channels, if any, are not. Uses numpy.pad, which handles
    pads wider than the image (the pattern repeats).
    """
    if padding.mode == "valid":
        return image
    widths = pad_widths(kernel_shape, anchor, padding.mode) + ((0, 0),) * (image.ndim - 2)
    numpy_mode = padding.spec.numpy_mode
    if numpy_mode == "constant":
        return np.pad(image, widths, mode="constant", constant_values=padding.cval)
    return np.pad(image, widths, mode=numpy_mode)


def cv2_border(
    padding: Padding,
    image_shape: tuple[int, int],
    kernel_shape: tuple[int, int],
    anchor: tuple[int, int],
) -> int | None:
    """The cv2.BORDER_* constant that lets OpenCV pad by itself, or None to pad first.

    OpenCV is not handed a mode it cannot do exactly: ``wrap`` and ``valid``, a constant
    other than 0 (filter2D has no border value), and pads as wide as the image.
    """
    name = padding.spec.cv2_border
    if name is None or (padding.mode == "constant" and padding.cval != 0.0):
        return None
    (top, bottom), (left, right) = pad_widths(kernel_shape, anchor, padding.mode)
    height, width = image_shape[:2]
    if max(top, bottom) >= height or max(left, right) >= width:
        return None
    import cv2

    return getattr(cv2, name)
