"""Turn a float response into an image, the same way whichever backend made it.

The order is fixed: response -> + bias -> activation -> rescale policy.
"""

from __future__ import annotations

import math
import reprlib

import numpy as np

from convkit.errors import UsageError

RESCALE_POLICIES = ("clip", "abs", "minmax", "none")
# The policies that turn each value into a pixel on its own (minmax needs the whole response).
PER_PIXEL_POLICIES = ("clip", "abs")
ACTIVATIONS = ("relu",)
# DESIGN §2: the last of 2 channels (grey + alpha) or of 4 (colour + alpha) is alpha.
ALPHA_CHANNEL_COUNTS = (2, 4)


def has_alpha(image: np.ndarray) -> bool:
    """Whether the last channel of ``image`` is an alpha channel: grey + alpha or BGRA."""
    return image.ndim == 3 and image.shape[2] in ALPHA_CHANNEL_COUNTS


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The channels to filter (a grey plane, or colour), and the alpha channel, or None.

    Examples
    --------
    >>> import numpy as np
    >>> colour, alpha = split_alpha(np.zeros((2, 3, 4)))
    >>> colour.shape, alpha.shape
    ((2, 3, 3), (2, 3))
    """
    if not has_alpha(image):
        return image, None
    if image.shape[2] == 2:  # grey + alpha: the grey plane alone
        return image[..., 0], image[..., 1]
    return image[..., :-1], image[..., -1]


def attach_alpha(image: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """``image`` with ``alpha`` (converted to its type) as its last channel; as is for None."""
    if alpha is None:
        return image
    planes = image if image.ndim == 3 else image[..., np.newaxis]
    return np.concatenate([planes, alpha.astype(image.dtype)[..., np.newaxis]], axis=-1)


def output_dtype(like: np.ndarray | np.dtype | type) -> np.dtype:
    """uint16 for 16-bit images, uint8 for everything else."""
    try:
        dtype = like.dtype if isinstance(like, np.ndarray) else np.dtype(like)
    except TypeError:
        raise UsageError(f"like={reprlib.repr(like)}: pass the input image or its dtype") from None
    return np.dtype(np.uint16) if dtype == np.uint16 else np.dtype(np.uint8)


def check_choice(value: str | None, choices: tuple[str, ...], what: str) -> str | None:
    """``value`` lower-cased if it is one of ``choices``; None stays None."""
    if value is None:
        return None
    key = value.strip().lower() if isinstance(value, str) else None
    if key not in choices:
        raise UsageError(f"unknown {what} {reprlib.repr(value)}: use one of {', '.join(choices)}")
    return key


def check_bias(bias: object) -> float:
    """``bias`` as a finite float; a `UsageError` naming it if it is not one."""
    try:
        value = float(bias) if not isinstance(bias, (str, bytes, bool)) else math.nan
    except (TypeError, ValueError, OverflowError):
        value = math.nan
    if not math.isfinite(value):
        raise UsageError(f"bias {reprlib.repr(bias)} is not a finite number")
    return value


def check_response(response: object) -> np.ndarray:
    """A float array to turn into an image (integers and booleans become float64); a
    `UsageError` if it is not an array of real numbers."""
    try:
        response = np.asarray(response)
    except (ValueError, TypeError, RecursionError):
        raise UsageError("a response must be a rectangular array of numbers") from None
    if response.dtype.kind not in "biuf":
        raise UsageError(f"a response must hold real numbers, got dtype {response.dtype}")
    return response if response.dtype.kind == "f" else response.astype(np.float64)


def check_post_processing(
    rescale: str, bias: float = 0.0, activation: str | None = None
) -> tuple[str, float, str | None]:
    """The rescale policy and activation lower-cased, and the bias as a float.

    Raises
    ------
    UsageError
        For an unknown rescale policy or activation, or a non-finite bias.
    """
    if rescale is None:
        raise UsageError(f"unknown rescale policy None: use one of {', '.join(RESCALE_POLICIES)}")
    policy = check_choice(rescale, RESCALE_POLICIES, "rescale policy")
    return policy, check_bias(bias), check_choice(activation, ACTIVATIONS, "activation")


def activate(response: np.ndarray, bias: float = 0.0, activation: str | None = None) -> np.ndarray:
    """Add ``bias``, then apply ``activation`` (``relu``: max(0, x)); a new float64 array.

    Raises
    ------
    UsageError
        For an unknown activation, a non-finite bias, or a bias whose sum with the response
        overflows float64.
    """
    activation = check_choice(activation, ACTIVATIONS, "activation")
    bias = check_bias(bias)
    try:
        with np.errstate(over="raise"):
            result = np.add(response, bias, dtype=np.float64)
    except FloatingPointError:
        raise UsageError(f"bias {bias:g} added to the response overflows float64") from None
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
        Where ``like`` has an alpha channel (grey + alpha, or 4 channels) and the response as
        many channels, the response's last channel is the alpha that `convolve` carried
        through: it is only converted to the output type, not rescaled, biased or activated.
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

    Raises
    ------
    UsageError
        For an unknown rescale policy or activation, a non-finite bias, a response that is
        not an array of real numbers, or one with NaN values (which no pixel value can show),
        or an infinite one under ``minmax``.

    Examples
    --------
    >>> import numpy as np
    >>> to_image(np.array([[-3.0, 0.5, 1.5, 300.0]]))
    array([[  0,   0,   2, 255]], dtype=uint8)

    The alpha channel of a BGRA image comes back as it was:

    >>> rgba = np.array([[[10, 20, 30, 128]]], dtype=np.uint8)
    >>> to_image(np.array([[[-5.0, 20.4, 300.0, 128.0]]]), like=rgba, bias=1.0)
    array([[[  0,  21, 255, 128]]], dtype=uint8)
    """
    policy, bias, activation = check_post_processing(rescale, bias, activation)
    if _is_lazy(response):
        return _to_image_lazy(response, like, policy, bias, activation)
    response = check_response(response)
    if isinstance(like, np.ndarray) and has_alpha(like) and response.shape[2:] == like.shape[2:]:
        colour, alpha = split_alpha(response)
        return attach_alpha(to_image(colour, like.dtype, policy, bias, activation), alpha)
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
    if values.size and math.isnan(values.min()):  # clipped: only NaN can be left unshowable
        raise _nan_response()
    return np.rint(values, out=values).astype(dtype)


def pixel_steps(
    value: float,
    like: np.ndarray | np.dtype | type = np.uint8,
    rescale: str = "clip",
    bias: float = 0.0,
    activation: str | None = None,
    value_range: tuple[float, float] | None = None,
) -> list[tuple[str, float]]:
    """What `to_image` does to one response value, step by step.

    Each step is ``(what, value after it)``, with the same arithmetic as `to_image`: the
    bias, the activation, then the rescale policy's own steps down to the rounded pixel.
    ``minmax`` needs ``value_range``, the (min, max) of the whole response after bias and
    activation (over all colour channels), as `to_image` takes it.

    Examples
    --------
    >>> pixel_steps(300.4, np.uint8, bias=-40.0, activation="relu")
    [('+ bias -40', 260.4), ('relu', 260.4), ('clip to 0..255', 255.0), ('round', 255.0)]
    """
    policy, bias, activation = check_post_processing(rescale, bias, activation)
    values = np.array([value], dtype=np.float64)
    steps: list[tuple[str, float]] = []
    if bias:
        values = activate(values, bias)
        steps.append((f"+ bias {bias:g}", float(values[0])))
    if activation is not None:
        values = activate(values, 0.0, activation)
        steps.append((activation, float(values[0])))
    if policy == "none":
        return steps
    top = float(np.iinfo(output_dtype(like)).max)
    if policy == "abs":
        values = np.abs(values)
        steps.append(("abs", float(values[0])))
    elif policy == "minmax":
        if value_range is None:
            raise UsageError("minmax needs the (min, max) of the whole response")
        low, high = (float(v) for v in value_range)
        # Stretched with the whole response's ends, as `to_image` stretches every value.
        values = _stretch(np.array([low, values[0], high]), top)[1:2]
        steps.append((f"stretch {low:g}..{high:g} to 0..{top:g}", float(values[0])))
    values = np.clip(values, 0.0, top)
    steps.append((f"clip to 0..{top:g}", float(values[0])))
    steps.append(("round", float(np.rint(values)[0])))
    return steps


def _is_lazy(array: object) -> bool:
    from convkit.tiles import is_dask_array

    return is_dask_array(array)


def _to_image_lazy(response, like, policy: str, bias: float, activation: str | None):
    """`to_image` of a dask response, tile by tile (lazy). ``like`` gives the type and the
    channels (a dask array or an ndarray of the input, or a dtype). Under ``minmax`` the
    range over the whole response (colour channels) is computed first: a pass of its own."""
    import dask.array as da

    channels = tuple(getattr(like, "shape", ())[2:])
    dtype = output_dtype(np.dtype(getattr(like, "dtype", like)))
    probe = np.zeros((1, 1) + channels, dtype=dtype)
    alpha = has_alpha(probe) and response.shape[2:] == channels
    if policy == "minmax":
        colour = activate_lazy(response[..., :-1] if alpha else response, bias, activation)
        low, high = (float(v) for v in da.compute(colour.min(), colour.max()))

        def tile(block: np.ndarray) -> np.ndarray:
            return _stretch_tile(block, probe, low, high, bias, activation, alpha)

    else:

        def tile(block: np.ndarray) -> np.ndarray:
            like_tile = np.broadcast_to(probe, block.shape[:2] + channels)
            return to_image(block, like_tile, policy, bias, activation)

    out = np.float64 if policy == "none" else dtype
    return response.map_blocks(tile, dtype=out, meta=np.empty((0,) * response.ndim, out))


def activate_lazy(response, bias: float, activation: str | None):
    """``activate`` on a dask array, lazily."""
    return response.map_blocks(activate, bias, activation, dtype=np.float64)


def _stretch_tile(block, probe, low, high, bias, activation, alpha) -> np.ndarray:
    """One tile under ``minmax``, stretched by the whole response's range."""
    colour, carried = split_alpha(block) if alpha else (block, None)
    values = activate(colour, bias, activation)
    top = float(np.iinfo(probe.dtype).max)
    if high == low:
        values = np.full_like(values, (top + 1) / 2)
    else:
        values = (values - low) / (high - low) * top
    image = np.rint(np.clip(values, 0.0, top)).astype(probe.dtype)
    return attach_alpha(image, None if carried is None else carried.astype(probe.dtype))


def _nan_response() -> UsageError:
    return UsageError(
        "the response holds NaN values (the image has NaN pixels?): no pixel value can show "
        "them; keep the float response with rescale 'none'"
    )


def _stretch(values: np.ndarray, top: float) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if math.isnan(low):
        raise _nan_response()
    if math.isinf(low) or math.isinf(high):
        raise UsageError("the response holds infinite values: minmax cannot stretch them")
    if high == low:  # nothing to stretch: mid-grey says "constant" where black would not
        return np.full_like(values, (top + 1) / 2)
    span = high - low
    if math.isinf(span):  # from about -1e308 to 1e308: halves cannot overflow
        return (values / 2 - low / 2) * (top / (high / 2 - low / 2))
    if span < 1e-300:  # top / span would overflow: divide first (each ratio is in 0..1)
        return (values - low) / span * top
    return (values - low) * (top / span)
