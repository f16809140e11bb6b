"""One output pixel, worked by hand: the neighbourhood under the kernel, where each of its
cells came from (the image, or which padding rule), the products, their sum, and every step
after it down to the value that `apply` writes.

The numbers come from the engine's own code: the padding step (`convkit.padding.pad_image`,
run on the image's row and column indices, which tells both the values and where they came
from), the engine's `convolve` for the sum (on the readable reference backend, the textbook
loop), and `convkit.postprocess` for the steps after it and the final pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from convkit.backends import reference_backend
from convkit.engine import (
    DEFAULT_BACKEND,
    as_kernel,
    check_fits,
    check_image,
    convolve,
    convolve_to_image,
)
from convkit.errors import UsageError
from convkit.kernels import Kernel
from convkit.padding import Padding, make_padding, pad_image
from convkit.postprocess import (
    activate,
    check_post_processing,
    output_dtype,
    pixel_steps,
    split_alpha,
)

# Matrices larger than this a side are left out of the text (the record holds them all).
MAX_PRINTED_SIDE = 15
# Up to this many weights the sum is also written out term by term.
MAX_TERMS_WRITTEN = 25


@dataclass(frozen=True)
class ChannelWork:
    """One channel's share of an explanation.

    Attributes
    ----------
    name : str
        ``grey``, ``blue``, ``green``, ``red`` (OpenCV's order), ``channel 0``, ...; or
        ``alpha`` for a carried alpha channel.
    neighbourhood : ndarray
        The values under the kernel, (kH, kW), as the padded image holds them.
    products : ndarray
        ``neighbourhood * weights`` (None for alpha).
    steps : list of (str, float)
        ``sum`` first, then ``+ offset``, ``+ bias``, ``relu`` and the rescale policy's steps.
    value : float
        What `apply` writes at this pixel in this channel.
    """

    name: str
    neighbourhood: np.ndarray
    products: np.ndarray | None
    steps: list[tuple[str, float]]
    value: float

    @property
    def carried(self) -> bool:
        """An alpha channel: carried through unfiltered."""
        return self.products is None


@dataclass(frozen=True)
class Explanation:
    """How `apply` computes the output at one pixel; see `explain`.

    ``at`` is the image pixel under the kernel's anchor and ``output_at`` the index of the
    output pixel it makes (the same, except under ``valid``, whose output starts at the
    anchor). ``sources[i, j]`` is the (row, column) of the image pixel that cell (i, j) of the
    neighbourhood holds, or (-1, -1) for the constant of ``constant`` padding; ``positions``
    where the cell lies, which may be outside the image; ``from_padding`` which cells lie
    outside.
    """

    at: tuple[int, int]
    output_at: tuple[int, int]
    image_shape: tuple[int, ...]
    kernel: Kernel  # as placed: anchored and, with flip, rotated by 180 degrees
    flip: bool
    padding: Padding
    rescale: str
    bias: float
    activation: str | None
    dtype: str  # the type of the pixel written: uint8, uint16, or float64 under rescale none
    positions: np.ndarray  # (kH, kW, 2)
    sources: np.ndarray  # (kH, kW, 2)
    from_padding: np.ndarray  # (kH, kW) bool
    channels: list[ChannelWork] = field(default_factory=list)
    image_name: str = "image"

    @property
    def value(self) -> float | tuple[float, ...]:
        """What `apply` writes at the pixel: one number, or one per channel."""
        values = tuple(channel.value for channel in self.channels)
        return values[0] if len(values) == 1 else values

    def to_dict(self) -> dict:
        """The record as plain JSON types (see the README's `convkit explain --json`)."""
        kh, kw = self.kernel.shape
        return {
            "image": self.image_name,
            "image_shape": list(self.image_shape),
            "at": list(self.at),
            "output_at": list(self.output_at),
            "kernel": {
                "name": self.kernel.name,
                "shape": [kh, kw],
                "weights": _plain(self.kernel.weights),
                "anchor": list(self.kernel.anchor),
                "offset": self.kernel.offset,
                "flipped": self.flip,
            },
            "padding": {
                "mode": self.padding.mode,
                "cval": self.padding.cval,
                "pattern": self.padding.spec.pattern,
            },
            "positions": self.positions.tolist(),
            "sources": self.sources.tolist(),
            "from_padding": self.from_padding.tolist(),
            "rescale": self.rescale,
            "bias": self.bias,
            "activation": self.activation,
            "dtype": self.dtype,
            "channels": [
                {
                    "name": channel.name,
                    "neighbourhood": _plain(channel.neighbourhood),
                    "products": None if channel.carried else _plain(channel.products),
                    "steps": [{"step": what, "value": _number(v)} for what, v in channel.steps],
                    "value": _number(channel.value),
                }
                for channel in self.channels
            ],
            "value": _plain(np.array(self.value))
            if len(self.channels) > 1
            else _number(self.value),
        }

    def lines(self) -> list[str]:
        """The explanation as text, the way one works it on paper."""
        return explanation_lines(self)

    def picture(self) -> np.ndarray:
        """The explanation as a figure (8-bit BGR): see `explanation_picture`."""
        from convkit.explain_figure import explanation_picture

        return explanation_picture(self)

    def _repr_png_(self) -> bytes:
        from convkit.imageio import encode_image

        return encode_image(self.picture())


def explain(
    image: np.ndarray,
    kernel: Kernel | np.ndarray | str,
    at: tuple[int, int],
    *,
    padding: str | Padding = "replicate",
    cval: float = 0.0,
    flip: bool = False,
    anchor: tuple[int, int] | None = None,
    rescale: str = "clip",
    bias: float = 0.0,
    activation: str | None = None,
    channel_names: tuple[str, ...] | None = None,
    image_name: str = "image",
) -> Explanation:
    """Explain how the output at one pixel is computed, step by step.

    Parameters
    ----------
    image : ndarray
        (H, W) or (H, W, C), as `convolve` takes it; an alpha channel (the last of 2 or 4)
        is carried through.
    kernel : Kernel or array_like or str
        As `convolve` takes it.
    at : (int, int)
        The (row, column) of the image pixel under the kernel's anchor.
    padding, cval, flip, anchor
        As for `convolve`.
    rescale, bias, activation
        As for `to_image`.
    channel_names : tuple of str, optional
        Names for the channels (default ``grey`` or ``channel 0``, ``channel 1``, ...).
    image_name : str
        What to call the image in the text and the figure.

    Returns
    -------
    Explanation
        The record: neighbourhood, kernel as placed, products, sum and steps for each
        channel, down to the value `apply` writes (``value``).

    Raises
    ------
    UsageError
        For ``at`` outside the image, or on a pixel that ``valid`` drops (the message names
        the rows and columns that have an output), and whatever `convolve` and `to_image`
        refuse.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90]], dtype=np.uint8)
    >>> record = explain(image, [[0, -1, 0], [-1, 5, -1], [0, -1, 0]], at=(0, 0))
    >>> record.channels[0].neighbourhood
    array([[10., 10., 20.],
           [10., 10., 20.],
           [40., 40., 50.]])
    >>> record.channels[0].steps
    [('sum', -30.0), ('clip to 0..255', 0.0), ('round', 0.0)]
    """
    image = check_image(image)
    kernel = as_kernel(kernel)
    padding = make_padding(padding, cval)
    policy, bias, activation = check_post_processing(rescale, bias, activation)
    placed = kernel if anchor is None else kernel.anchored(anchor)
    if flip:
        placed = placed.flipped()
    colour, alpha = split_alpha(image)
    check_fits(colour.shape, placed, padding)
    y, x = _checked_pixel(at, colour.shape, placed, padding)
    ay, ax = placed.anchor
    output_at = (y - ay, x - ax) if padding.mode == "valid" else (y, x)
    positions, sources = _cell_sources(colour.shape, placed, padding, output_at)
    outside = (positions < 0).any(axis=-1) | (positions >= colour.shape[:2]).any(axis=-1)
    options = {"padding": padding, "flip": flip, "anchor": anchor}
    region = (*output_at, 1, 1)
    loop = {"backend": reference_backend(), "region": region, **options}
    sums, responses = _sums_and_responses(kernel, lambda k: convolve(colour, k, **loop))
    pixels, value_range, whole = _written_pixels(
        colour, kernel, options, output_at, policy, bias, activation
    )
    steps_of = _steps_maker(colour, kernel, policy, bias, activation, value_range)
    if any(steps_of(s, r)[-1][1] != p for s, r, p in zip(sums, responses, pixels, strict=True)):
        # The loop's order of summation gave a last bit other than apply's backend (the
        # sum of non-dyadic weights, on a tie of the rounding): the steps are then worked
        # from that backend's own response at the pixel, so that they end on its pixel.
        sums, responses = _sums_and_responses(kernel, whole)
    planes = [colour] if colour.ndim == 2 else [colour[..., c] for c in range(colour.shape[2])]
    names = _channel_names(channel_names, len(planes), alpha is not None)
    channels = []
    for c, plane in enumerate(planes):
        neighbourhood = _neighbourhood(plane, sources, padding)
        steps = steps_of(sums[c], responses[c])
        products = neighbourhood * placed.weights
        channels.append(ChannelWork(names[c], neighbourhood, products, steps, pixels[c]))
    if alpha is not None:
        kept = float(alpha[y, x])
        channels.append(ChannelWork(names[-1], np.array([[kept]]), None, [], kept))
    dtype = "float64" if policy == "none" else output_dtype(colour).name
    return Explanation(
        (y, x), output_at, image.shape, placed, flip, padding, policy, bias, activation, dtype,
        positions, sources, outside, channels, image_name,
    )  # fmt: skip


def _checked_pixel(
    at: object, shape: tuple[int, ...], kernel: Kernel, padding: Padding
) -> tuple[int, int]:
    """``at`` as (row, column) of a pixel that has an output; a `UsageError` if not."""
    try:
        y, x = (int(v) for v in at)  # type: ignore[union-attr]
        if (y, x) != tuple(at):  # type: ignore[arg-type]
            raise ValueError
    except (TypeError, ValueError):
        raise UsageError(f"at={at!r}: give a pixel as (row, column), two whole numbers") from None
    height, width = shape[:2]
    if not (0 <= y < height and 0 <= x < width):
        raise UsageError(
            f"pixel ({y}, {x}) is outside the {width}x{height} image: rows 0..{height - 1} "
            f"and columns 0..{width - 1}"
        )
    if padding.mode == "valid":
        (kh, kw), (ay, ax) = kernel.shape, kernel.anchor
        rows, columns = (ay, height - kh + ay), (ax, width - kw + ax)
        if not (rows[0] <= y <= rows[1] and columns[0] <= x <= columns[1]):
            raise UsageError(
                f"pixel ({y}, {x}) has no output under padding 'valid' (the {kh}x{kw} kernel "
                f"would reach outside the image): use rows {rows[0]}..{rows[1]} and columns "
                f"{columns[0]}..{columns[1]}"
            )
    return y, x


def _cell_sources(
    shape: tuple[int, ...], kernel: Kernel, padding: Padding, output_at: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Where each cell under the kernel lies, and which image pixel fills it.

    The engine's padding step is run on the image's row indices and column indices (it pads
    rows and columns independently), so the padded index under each cell is the pixel that
    padding copied there; ``constant`` fills the margin with -1 (no pixel).
    """
    (kh, kw), (ay, ax) = kernel.shape, kernel.anchor
    height, width = shape[:2]
    oy, ox = output_at
    marker = Padding(padding.mode, -1.0)
    rows = pad_image(np.arange(height).reshape(height, 1), (kh, 1), (ay, 0), marker)[:, 0]
    columns = pad_image(np.arange(width).reshape(1, width), (1, kw), (0, ax), marker)[0]
    cell_rows, cell_columns = rows[oy : oy + kh], columns[ox : ox + kw]
    top, left = (oy, ox) if padding.mode == "valid" else (oy - ay, ox - ax)
    positions = np.stack(np.meshgrid(np.arange(top, top + kh), np.arange(left, left + kw),
                                     indexing="ij"), axis=-1)  # fmt: skip
    sources = np.stack(np.meshgrid(cell_rows, cell_columns, indexing="ij"), axis=-1)
    sources[(sources < 0).any(axis=-1)] = -1
    return positions, sources.astype(np.int64)


def _neighbourhood(plane: np.ndarray, sources: np.ndarray, padding: Padding) -> np.ndarray:
    """The values under the kernel: each cell's source pixel, or the constant."""
    constant = (sources < 0).any(axis=-1)
    values = plane[np.maximum(sources[..., 0], 0), np.maximum(sources[..., 1], 0)]
    return np.where(constant, padding.cval, values).astype(np.float64)


def _steps_maker(colour, kernel, policy, bias, activation, value_range):
    """A function (sum, response) -> the steps from the sum down to the pixel."""

    def steps_of(total: float, response: float) -> list[tuple[str, float]]:
        steps = [("sum", total)]
        if kernel.offset:
            steps.append((f"+ offset {kernel.offset:g}", response))
        return steps + pixel_steps(response, colour, policy, bias, activation, value_range)

    return steps_of


def _written_pixels(colour, kernel, options, output_at, policy, bias, activation):
    """The pixel `apply` writes at ``output_at``, per channel, computed as apply computes it
    (`convolve_to_image` on the whole image, on apply's backend); the response's range that
    ``minmax`` stretches (None for the other policies, which work pixel by pixel); and a
    function giving that backend's response at the pixel for a kernel."""
    y, x = output_at
    pixels = convolve_to_image(colour, kernel, backend=DEFAULT_BACKEND, rescale=policy,
                               bias=bias, activation=activation, **options)  # fmt: skip
    value_range = None
    if policy == "minmax":
        response = convolve(colour, kernel, backend=DEFAULT_BACKEND, **options)
        activated = activate(response, bias, activation)
        value_range = (float(activated.min()), float(activated.max()))

    def whole(chosen: Kernel) -> np.ndarray:
        response = convolve(colour, chosen, backend=DEFAULT_BACKEND, **options)
        return response[y : y + 1, x : x + 1]

    return _plane_values(pixels[y : y + 1, x : x + 1]), value_range, whole


def _plane_values(array: np.ndarray) -> list[float]:
    """The values of a 1x1 array, one per channel."""
    return [float(v) for v in np.asarray(array).reshape(-1)]


def _sums_and_responses(kernel: Kernel, at_pixel) -> tuple[list[float], list[float]]:
    """The sum of products per channel and the response (the sum plus the kernel's offset),
    each from ``at_pixel(kernel)``, the engine's 1x1 output; one call without an offset."""
    sums = _plane_values(at_pixel(_without_offset(kernel)))
    return sums, _plane_values(at_pixel(kernel)) if kernel.offset else sums


def _without_offset(kernel: Kernel) -> Kernel:
    return Kernel(kernel.name, kernel.weights, kernel.anchor)


def opencv_channel_names(image: np.ndarray) -> tuple[str, ...]:
    """The channels of an image as OpenCV reads it: grey, grey + alpha, BGR or BGRA.

    >>> opencv_channel_names(np.zeros((2, 2, 4)))
    ('blue', 'green', 'red', 'alpha')
    """
    count = 1 if image.ndim == 2 else image.shape[2]
    return {
        1: ("grey",),
        2: ("grey", "alpha"),
        3: ("blue", "green", "red"),
        4: ("blue", "green", "red", "alpha"),
    }.get(count, tuple(f"channel {c}" for c in range(count)))


def _channel_names(names: tuple[str, ...] | None, count: int, alpha: bool) -> list[str]:
    if names is not None:
        names = list(names)
        if len(names) != count + alpha:
            raise UsageError(f"channel_names: {len(names)} names for {count + alpha} channels")
        return names
    colour = ["grey"] if count == 1 else [f"channel {c}" for c in range(count)]
    return colour + ["alpha"] * alpha


# --- text ------------------------------------------------------------------------------------


def explanation_lines(record: Explanation) -> list[str]:
    """The record as lines of text: the setting, then for each channel the neighbourhood,
    the kernel as placed, the products, the sum and the steps."""
    kernel, padding = record.kernel, record.padding
    y, x = record.at
    (kh, kw), (ay, ax) = kernel.shape, kernel.anchor
    operation = "convolution (kernel flipped)" if record.flip else "correlation"
    lines = [
        f"pixel (row {y}, column {x}) of {printable(record.image_name)} "
        f"({record.image_shape[1]}x{record.image_shape[0]})",
        f"kernel {printable(kernel.name)} {kh}x{kw}, anchor ({ay}, {ax}); {operation}; "
        f"padding {_padding_text(padding)}",
    ]
    if padding.mode == "valid":
        oy, ox = record.output_at
        lines.append(f"under 'valid' this is output pixel ({oy}, {ox})")
    top, left = record.positions[0, 0]
    lines.append(
        f"neighbourhood: image rows {top}..{top + kh - 1}, columns {left}..{left + kw - 1}"
    )
    if record.from_padding.any():
        lines += _padding_lines(record)
    lines += _matrix_lines("kernel as placed", kernel.weights, anchor=kernel.anchor)
    for channel in record.channels:
        lines.append("")
        lines += _channel_lines(record, channel)
    return lines


def _padding_text(padding: Padding) -> str:
    if padding.mode == "valid":
        return "valid (no padding: the kernel stays inside the image)"
    cval = f", cval {number_text(padding.cval)}" if padding.mode == "constant" else ""
    return f"{padding.mode} ({padding.spec.pattern}{cval})"


def _padding_lines(record: Explanation) -> list[str]:
    """Which cells come from padding, and what filled each."""
    count = int(record.from_padding.sum())
    head = f"{count} cell{'s' * (count != 1)} marked * lie outside the image"
    if record.padding.mode == "constant":
        return [f"{head}: padding 'constant' fills them with {number_text(record.padding.cval)}"]
    lines = [f"{head}: padding '{record.padding.mode}' fills each with a copy of an image pixel"]
    if max(record.kernel.shape) > MAX_PRINTED_SIDE:
        return lines + ["  (too many to list here; --json gives each cell's source pixel)"]
    lines.append("source pixel (row,column) of each cell:")
    labels = [
        [
            f"{r},{c}" + ("*" if outside else "")
            for (r, c), outside in zip(row_sources, row_outside, strict=True)
        ]
        for row_sources, row_outside in zip(record.sources, record.from_padding, strict=True)
    ]
    return lines + _grid_lines(labels)


def _channel_lines(record: Explanation, channel: ChannelWork) -> list[str]:
    name = channel.name
    if channel.carried:
        return [f"{name}: carried through unfiltered = {number_text(channel.value)}"]
    lines = _matrix_lines(f"{name}: neighbourhood", channel.neighbourhood, record.from_padding)
    lines += _matrix_lines(f"{name}: products (neighbourhood x kernel)", channel.products)
    terms = channel.products.size <= MAX_TERMS_WRITTEN
    width = max(len(what) for what, _ in channel.steps)
    for what, value in channel.steps:
        shown = number_text(value)
        if what == "sum" and terms:
            written = " + ".join(number_text(v) for v in channel.products.reshape(-1))
            shown = f"{written.replace('+ -', '- ')} = {shown}"
        lines.append(f"  {what:<{width}} = {shown}")
    written_at = record.output_at
    lines.append(f"  {name} at output ({written_at[0]}, {written_at[1]}) = "
                 f"{number_text(channel.value)} ({record.dtype})")  # fmt: skip
    return lines


def _matrix_lines(
    title: str,
    values: np.ndarray,
    marked: np.ndarray | None = None,
    anchor: tuple[int, int] | None = None,
) -> list[str]:
    """A titled matrix, columns aligned; ``marked`` cells get a *, the anchor brackets."""
    rows, columns = values.shape
    if max(rows, columns) > MAX_PRINTED_SIDE:
        return [f"{title}: {rows}x{columns}, too large to print (--json has every value)"]
    labels = []
    for i in range(rows):
        row = []
        for j in range(columns):
            text = number_text(values[i, j])
            if anchor == (i, j):
                text = f"[{text}]"
            if marked is not None and marked[i, j]:
                text += "*"
            row.append(text)
        labels.append(row)
    return [f"{title}:"] + _grid_lines(labels)


def _grid_lines(labels: list[list[str]]) -> list[str]:
    width = max(len(label) for row in labels for label in row)
    return ["  " + " ".join(f"{label:>{width}}" for label in row) for row in labels]


def printable(text: str) -> str:
    """``text`` with control characters escaped (a newline as ``\\n``), so that a file or
    kernel name stays on its line of text and of a figure.

    >>> printable("a\\nb.png")
    'a\\\\nb.png'
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def number_text(value: float) -> str:
    """A number as people write it: whole numbers plainly, others to 6 significant digits."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _number(value: float) -> float | int | str:
    """A number for JSON: whole numbers as int, non-finite ones as text."""
    if not math.isfinite(value):
        return str(value)
    return int(value) if value == int(value) and abs(value) < 2**53 else float(value)


def _plain(array: np.ndarray) -> list:
    return [_plain(row) for row in array] if array.ndim else _number(float(array))
