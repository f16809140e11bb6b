"""Turn a float response into an image, the same way whichever backend made it.

The order is fixed: response -> + bias -> activation -> rescale policy.
"""

from __future__ import annotations

import numpy as np

from convkit.errors import UsageError

RESCALE_POLICIES = ("clip", "abs", "minmax", "none")
ACTIVATIONS = ("relu",)


def output_dtype(like: np.ndarray | np.dtype | type) -> np.dtype:
    """uint16 for 16-bit images, uint8 for everything else."""
    dtype = like.dtype if isinstance(like, np.ndarray) else np.dtype(like)
    return np.dtype(np.uint16) if dtype == np.uint16 else np.dtype(np.uint8)


def check_choice(value: str | None, choices: tuple[str, ...], what: str) -> str | None:
    if value is None:
        return None
    key = value.strip().lower()
    if key not in choices:
        raise UsageError(f"unknown {what} {value!r}: use one of {', '.join(choices)}")
    return key


def activate(response: np.ndarray, bias: float = 0.0, activation: str | None = None) -> np.ndarray:
    """Add ``bias``, then apply ``activation`` (``relu``: max(0, x)); a new float64 array."""
    activation = check_choice(activation, ACTIVATIONS, "activation")
    result = np.add(response, bias, dtype=np.float64)
    if activation == "relu":
        np.maximum(result, 0.0, out=result)
    return result


def to_image(
    response: np.ndarray,
    like: np.ndarray | np.dtype | type = np.uint8,
    rescale: str = "clip",
    bias: float = 0.0,
    activation: str | None = None,
) -> np.ndarray:
    """Turn a float response into an 8- or 16-bit image.

    Parameters
    ----------
    response : ndarray
        A float response from `convolve`.
    like : ndarray or dtype
        The input image (or its dtype): 16-bit stays 16-bit, anything else becomes 8-bit.
    rescale : {"clip", "abs", "minmax", "none"}
        ``clip``: clip to the depth's range and round half to even. ``abs``: absolute value,
        then clip (the usual way to show edge responses). ``minmax``: stretch the response's
        min..max (over all channels) to the full range. ``none``: keep the float response.
    bias : float
        Added to the response first.
    activation : {None, "relu"}
        Applied after the bias.

    Returns
    -------
    ndarray
        uint8 or uint16; float64 for ``rescale="none"``.

    Examples
    --------
    >>> import numpy as np
    >>> to_image(np.array([[-3.0, 0.5, 1.5, 300.0]]))
    array([[  0,   0,   2, 255]], dtype=uint8)
    """
    policy = check_choice(rescale, RESCALE_POLICIES, "rescale policy")
    activation = check_choice(activation, ACTIVATIONS, "activation")
    if policy == "none":
        return activate(response, bias, activation)
    dtype = output_dtype(like)
    top = float(np.iinfo(dtype).max)
    if policy == "clip" and not bias and activation is None:
        # The common case in one pass that leaves the response alone: clip into a new array
        # of the response's own float type (rounding an exact float32 integer is exact).
        values = np.clip(response, 0.0, top)
    else:
        values = activate(response, bias, activation)
        if policy == "abs":
            np.abs(values, out=values)
        elif policy == "minmax":
            values = _stretch(values, top)
        np.clip(values, 0.0, top, out=values)
    return np.rint(values, out=values).astype(dtype)


def _stretch(values: np.ndarray, top: float) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high == low:
        return np.zeros_like(values)
    return (values - low) * (top / (high - low))
