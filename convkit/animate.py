"""The kernel sliding over a small image, one frame per output pixel, as an animated GIF.

Each frame shows the padded input as a grid of grey cells with their values (the cells that
padding made hatched), the window under the kernel outlined with the kernel's weight in a
tag at the corner of each cell, the output matrix filling in row by row, and the sum written
out term by term, followed by each step after it down to the value written.

Every number drawn comes from `convkit.explain.explain` for that output pixel: the padded
input is put together from the records' neighbourhoods, the weights are the kernel as placed
(flipped with ``flip``), the sum and the steps are the record's own. Nothing is recomputed
on the side.

Frames are 8-bit BGR (OpenCV's order, as the rest of convkit draws); `write_animation`
turns them into RGB for the GIF.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convkit.compare import (
    BACKGROUND,
    FONT,
    GAP,
    GRID,
    HATCH,
    LABEL_SCALE,
    LINE_AA,
    NEGATIVE,
    POSITIVE,
    TITLE_SCALE,
    WHITE,
    cell_labels,
    cell_text,
    label_bar,
    labelled,
    matrix_picture,
    side_by_side,
    stacked,
    text_width,
)
from convkit.engine import as_kernel, check_fits, check_image
from convkit.errors import UsageError
from convkit.explain import Explanation, explain, printable
from convkit.kernels import Kernel
from convkit.padding import make_padding, output_shape

ANIMATE_MAX_SIDE = 16  # larger images are refused: one frame per pixel, numbers in every cell
# The padded input drawn has at most this many cells a side: a 16x16 image under the bank's
# largest kernel (large_blur, 21x21). Larger grids take minutes to draw, 256 times over.
ANIMATE_MAX_GRID = ANIMATE_MAX_SIDE + 20
DEFAULT_FPS = 2.0
MAX_FPS = 50.0  # GIF delays are in hundredths of a second; viewers slow anything faster
LAST_FRAME_SECONDS = 3.0  # the finished output stays up this long before the loop restarts
CUBE_LEVELS = 6  # the GIF's palette: a 6x6x6 colour cube ...
EXTRA_GREYS = 38  # ... and greys between its six, 254 colours in all
UNCHANGED = 255  # the palette index of a frame's transparent pixels: those left as they were

GRIDS_WIDTH_GOAL = 720  # px that the input and output grids together aim to fill
CELL_LARGEST = 72
CELL_SMALLEST = 30
MAX_TERM_SIDE = 7  # kernels with more rows or columns have their sum written as one number
TEXT_PITCH = 24
TAG_SCALE = 0.5
TAG_SMALLEST_SCALE = 0.35
TAG_SMALLEST_CELL = 46  # smaller cells hold their value only: the kernel goes beside
TEXT_WIDEST = 900  # px: a sum whose terms need more is written as one number
WINDOW_OUTER = (0, 0, 0)  # the window: yellow inside a black line, visible on any grey
WINDOW_INNER = (0, 220, 255)
PENDING = (230, 230, 230)  # output cells not computed yet
DARK_TEXT_BELOW = 110  # grey levels darker than this get white numbers


# --- input checks --------------------------------------------------------------------------


def check_animation_size(image: np.ndarray) -> None:
    """A `UsageError` for an image over `ANIMATE_MAX_SIDE` pixels a side, suggesting a crop.

    Examples
    --------
    >>> check_animation_size(np.zeros((16, 16)))
    >>> check_animation_size(np.zeros((20, 30)))
    Traceback (most recent call last):
    ...
    convkit.errors.UsageError: the image is 30x20: animate draws images up to 16x16 (one frame per output pixel); pick a part with --crop Y,X,H,W, e.g. --crop 2,7,16,16
    """  # noqa: E501
    height, width = image.shape[:2]
    if height <= ANIMATE_MAX_SIDE and width <= ANIMATE_MAX_SIDE:
        return
    h, w = min(height, ANIMATE_MAX_SIDE), min(width, ANIMATE_MAX_SIDE)
    y, x = (height - h) // 2, (width - w) // 2
    raise UsageError(
        f"the image is {width}x{height}: animate draws images up to {ANIMATE_MAX_SIDE}x"
        f"{ANIMATE_MAX_SIDE} (one frame per output pixel); pick a part with --crop Y,X,H,W, "
        f"e.g. --crop {y},{x},{h},{w}"
    )


def check_grid_size(
    image: np.ndarray,
    kernel: Kernel | np.ndarray | str,
    padding: str = "replicate",
    anchor: tuple[int, int] | None = None,
) -> None:
    """A `UsageError` when the padded input would have more than `ANIMATE_MAX_GRID` cells a
    side (the image plus the kernel's reach), naming the largest kernel that fits.

    Examples
    --------
    >>> check_grid_size(np.zeros((16, 16)), "large_blur")
    >>> check_grid_size(np.zeros((16, 16)), "box:25")
    Traceback (most recent call last):
    ...
    convkit.errors.UsageError: kernel 'box:25' (25x25) over the 16x16 image makes a padded input of 40x40 cells: animate draws up to 36x36; use a kernel up to 21x21, a smaller --crop, or --padding valid
    """  # noqa: E501
    kernel = as_kernel(kernel)
    if anchor is not None:
        kernel = kernel.anchored(anchor)
    if make_padding(padding).mode == "valid":
        return
    (height, width), (kh, kw) = image.shape[:2], kernel.shape
    rows, columns = height + kh - 1, width + kw - 1
    if max(rows, columns) <= ANIMATE_MAX_GRID:
        return
    fits = (ANIMATE_MAX_GRID + 1 - height, ANIMATE_MAX_GRID + 1 - width)
    raise UsageError(
        f"kernel {kernel.name!r} ({kh}x{kw}) over the {width}x{height} image makes a padded "
        f"input of {columns}x{rows} cells: animate draws up to {ANIMATE_MAX_GRID}x"
        f"{ANIMATE_MAX_GRID}; use a kernel up to {fits[0]}x{fits[1]}, a smaller --crop, or "
        "--padding valid"
    )


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The part of ``image`` in ``box`` = (y, x, height, width), checked to lie inside it.

    Parameters
    ----------
    image : ndarray
        (H, W) or (H, W, C).
    box : (int, int, int, int)
        The top row, the left column, the height and the width, as ``--crop Y,X,H,W``.

    Returns
    -------
    ndarray
        ``image[y:y + height, x:x + width]`` (a view).

    Raises
    ------
    UsageError
        For sizes below 1 or a box that reaches outside the image; the message names the
        rows and columns the image has.

    Examples
    --------
    >>> crop(np.arange(20).reshape(4, 5), (1, 2, 2, 3))
    array([[ 7,  8,  9],
           [12, 13, 14]])
    """
    height, width = image.shape[:2]
    try:
        y, x, h, w = (int(v) for v in box)
        if (y, x, h, w) != tuple(box):
            raise ValueError
    except (TypeError, ValueError):
        raise UsageError(f"--crop {box!r}: give Y,X,H,W as four whole numbers") from None
    text = f"--crop {y},{x},{h},{w}"
    if h < 1 or w < 1:
        raise UsageError(f"{text}: the height and width must be 1 or more")
    if not (0 <= y <= height - h and 0 <= x <= width - w):
        raise UsageError(
            f"{text} reaches outside the {width}x{height} image: rows 0..{height - 1} and "
            f"columns 0..{width - 1} (need 0 <= Y, Y+H <= {height}, 0 <= X, X+W <= {width})"
        )
    return image[y : y + h, x : x + w]


# --- the records ---------------------------------------------------------------------------


def explain_every_pixel(
    image: np.ndarray,
    kernel: Kernel | np.ndarray | str,
    *,
    padding: str = "replicate",
    cval: float = 0.0,
    flip: bool = False,
    anchor: tuple[int, int] | None = None,
    rescale: str = "clip",
    bias: float = 0.0,
    activation: str | None = None,
    channel_names: tuple[str, ...] | None = None,
) -> list[Explanation]:
    """`explain` for every output pixel, row by row (the options as `explain` takes them).

    Under ``valid`` only the pixels where the kernel fits have an output: the record of
    output pixel (r, c) is that of image pixel (r + ay, c + ax), under the placed anchor.
    """
    image = check_image(image)
    kernel = as_kernel(kernel)
    mode = make_padding(padding, cval)
    placed = kernel if anchor is None else kernel.anchored(anchor)
    placed = placed.flipped() if flip else placed
    check_fits(image.shape, placed, mode)
    rows, columns = output_shape(image.shape, placed.shape, mode.mode)
    ay, ax = placed.anchor if mode.mode == "valid" else (0, 0)
    options = {"padding": mode, "flip": flip, "anchor": anchor, "rescale": rescale,
               "bias": bias, "activation": activation, "channel_names": channel_names}  # fmt: skip
    return [
        explain(image, kernel, at=(r + ay, c + ax), **options)
        for r in range(rows)
        for c in range(columns)
    ]


# --- the frames ----------------------------------------------------------------------------


def slide_frames(
    image: np.ndarray,
    kernel: Kernel | np.ndarray | str,
    *,
    padding: str = "replicate",
    cval: float = 0.0,
    flip: bool = False,
    anchor: tuple[int, int] | None = None,
    rescale: str = "clip",
    bias: float = 0.0,
    activation: str | None = None,
    channel_names: tuple[str, ...] | None = None,
) -> SlideFrames:
    """The kernel sliding over ``image``: one frame per output pixel, row by row.

    Parameters
    ----------
    image : ndarray
        (H, W) or (H, W, C), at most `ANIMATE_MAX_SIDE` pixels a side (`crop` cuts a part).
        A colour image gets one row of grids per channel; an alpha channel is left out.
    kernel : Kernel or array_like or str
        As `convolve` takes it.
    padding, cval, flip, anchor
        As for `convolve`; under ``valid`` there is a frame only where the kernel fits.
    rescale, bias, activation
        As for `to_image`: the steps after the sum, down to the value written.
    channel_names : tuple of str, optional
        As `explain` takes them (``("blue", "green", "red")`` for an image that
        `convkit.imageio.read_image` read; an alpha channel's name last).

    Returns
    -------
    SlideFrames
        A sequence of 8-bit BGR frames, all the same size, drawn when read (a 16x16
        image's 256 frames need not be in memory at once); ``list(frames)`` gives a list.

    Raises
    ------
    UsageError
        For an image over `ANIMATE_MAX_SIDE` a side (the message suggests ``--crop``), and
        whatever `explain` refuses.

    Examples
    --------
    >>> frames = slide_frames(np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]]),
    ...                       [[0, 1], [1, 0]], padding="valid")
    >>> len(frames), frames[0].dtype, frames[0].shape == frames[-1].shape
    (4, dtype('uint8'), True)
    """
    image = check_image(image)
    check_animation_size(image)
    check_grid_size(image, kernel, padding, anchor)
    records = explain_every_pixel(
        image, kernel, padding=padding, cval=cval, flip=flip, anchor=anchor,
        rescale=rescale, bias=bias, activation=activation, channel_names=channel_names,
    )  # fmt: skip
    return SlideFrames(records, image.dtype)


class SlideFrames(Sequence[np.ndarray]):
    """The frames of `slide_frames`: a read-only sequence of 8-bit BGR arrays, each drawn
    when it is read, all the same size.

    Attributes
    ----------
    records : list of Explanation
        One per frame: the output pixel it shows, as `explain` worked it.
    """

    def __init__(self, records: list[Explanation], image_dtype: np.dtype) -> None:
        self.records = records
        self._drawing = _Drawing.of(records, np.dtype(image_dtype))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._drawing.frame(range(len(self))[index])

    def sum_text(self, index: int, channel: int = 0) -> str:
        """The last line written under frame ``index``: ``= sum -> step: value ...``."""
        return _result_text(self.records[index].channels[channel])


@dataclass
class _Grids:
    """One channel's base pictures: the padded input and the finished output."""

    name: str
    input_values: np.ndarray
    input_picture: np.ndarray
    output_picture: np.ndarray


@dataclass
class _Drawing:
    """What every frame shares: the base grids, cell size, text columns and the title."""

    records: list[Explanation]
    grids: list[_Grids]
    cell: int
    origin: tuple[int, int]  # image (row, column) of the padded grid's top-left cell
    tag_scale: float | None  # None: cells too small for tags, the kernel drawn beside
    kernel_panel: np.ndarray | None
    terms: bool  # the sum written term by term (False: too wide for the frame)
    term_columns: list[int]  # the x of each column of terms, after the prefix
    text_width: int
    title: str
    input_label: str

    @classmethod
    def of(cls, records: list[Explanation], image_dtype: np.dtype) -> _Drawing:
        first = records[0]
        origin, values, padded = padded_input(records)
        outputs = _output_values(records)
        grid_cells = values.shape[2] + outputs.shape[2]
        cell = int(np.clip(GRIDS_WIDTH_GOAL // grid_cells, CELL_SMALLEST, CELL_LARGEST))
        _, scale_in, cell = cell_labels(values.reshape(-1, values.shape[-1]), cell)
        _, scale_out, cell = cell_labels(outputs.reshape(-1, outputs.shape[-1]), cell)
        natural = _natural_top(image_dtype)
        out_natural = _natural_top(np.dtype(first.dtype)) if natural is not None else None
        grids = []
        for c, channel in enumerate(_drawn_channels(first)):
            input_top = _display_top(values[c], natural)
            output_top = _display_top(outputs[c], out_natural)
            grids.append(_Grids(
                channel,
                values[c],
                _grid_picture(values[c], cell, scale_in, input_top, padded),
                _grid_picture(outputs[c], cell, scale_out, output_top),
            ))  # fmt: skip
        tag_scale = _tag_scale(first.kernel, cell)
        kernel_panel = None
        if tag_scale is None:
            kernel = first.kernel
            kernel_panel = labelled(
                matrix_picture(kernel.weights, "", 40 * max(kernel.shape), highlight=kernel.anchor),
                "kernel as placed",
            )
        panels = sum(p.shape[1] for p in (grids[0].input_picture, grids[0].output_picture))
        room = max(panels + 4 * GAP, TEXT_WIDEST)
        terms = _writes_terms(first.kernel)
        columns, width = _text_columns(records, len(grids), terms)
        if terms and width > room:
            terms = False
            columns, width = _text_columns(records, len(grids), terms)
        return cls(records, grids, cell, origin, tag_scale, kernel_panel, terms, columns, width,
                   _title(first), _input_label(first))  # fmt: skip

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index``: 8-bit BGR."""
        record = self.records[index]
        oy, ox = record.output_at
        heading = f"{self.title}\noutput pixel {index + 1} of {len(self.records)}: out[{oy}, {ox}]"
        rows = [label_bar(heading, self._width(), scale=TITLE_SCALE)]
        for c, grids in enumerate(self.grids):
            named = f"{grids.name}: " if len(self.grids) > 1 else ""
            panels = [labelled(self._input_frame(grids, record), named + self.input_label)]
            if self.kernel_panel is not None:
                panels.append(self.kernel_panel)
            panels.append(labelled(self._output_frame(grids, index), named + "output"))
            separators = ["*", "->"] if self.kernel_panel is not None else ["->"]
            rows.append(side_by_side(panels, separators=separators))
            rows.append(self._text(record, c))
        return _padded_to_width(stacked(rows), self._width())

    def _width(self) -> int:
        grids = self.grids[0]
        panels = [grids.input_picture, grids.output_picture]
        if self.kernel_panel is not None:
            panels.append(self.kernel_panel)
        gaps = (3 * len(panels) + 1) * GAP
        title = text_width(self.title, TITLE_SCALE)
        return max(sum(p.shape[1] + 2 for p in panels) + gaps, self.text_width + 2 * GAP, title)

    def _input_frame(self, grids: _Grids, record: Explanation) -> np.ndarray:
        picture = grids.input_picture.copy()
        kh, kw = record.kernel.shape
        top = int(record.positions[0, 0, 0]) - self.origin[0]
        left = int(record.positions[0, 0, 1]) - self.origin[1]
        if self.tag_scale is not None:
            for i in range(kh):
                for j in range(kw):
                    _weight_tag(picture, record.kernel.weights[i, j], (top + i, left + j),
                                self.cell, self.tag_scale)  # fmt: skip
        ay, ax = record.kernel.anchor
        _outline(picture, (top + ay, left + ax), (1, 1), self.cell, thin=True)
        _outline(picture, (top, left), (kh, kw), self.cell)
        return picture

    def _output_frame(self, grids: _Grids, index: int) -> np.ndarray:
        picture = grids.output_picture.copy()
        for later in self.records[index + 1 :]:
            _blank_cell(picture, later.output_at, self.cell)
        _outline(picture, self.records[index].output_at, (1, 1), self.cell)
        return picture

    def _text(self, record: Explanation, c: int) -> np.ndarray:
        channel = record.channels[c]
        lines = _term_lines(record, channel, len(self.grids) > 1, self.terms)
        width = self._width()
        block = np.full((len(lines) * TEXT_PITCH + 8, width, 3), BACKGROUND, dtype=np.uint8)
        for n, (prefix, terms) in enumerate(lines):
            baseline = 4 + n * TEXT_PITCH + round(TEXT_PITCH * 0.75)
            _put(block, prefix, (GAP, baseline))
            for x, term in zip(self.term_columns, terms, strict=False):
                _put(block, term, (GAP + x, baseline))
        return block


# --- the pieces of a frame -----------------------------------------------------------------


def padded_input(records: list[Explanation]) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """The padded input put together from the records' neighbourhoods: its top-left image
    position, its values (channels first) and which of its cells padding made."""
    positions = np.concatenate([r.positions.reshape(-1, 2) for r in records])
    top, left = positions.min(axis=0)
    bottom, right = positions.max(axis=0)
    channels = _drawn_channels(records[0])
    values = np.zeros((len(channels), bottom - top + 1, right - left + 1))
    padded = np.zeros(values.shape[1:], dtype=bool)
    for record in records:
        rows = record.positions[..., 0] - top
        columns = record.positions[..., 1] - left
        for c in range(len(channels)):
            values[c, rows, columns] = record.channels[c].neighbourhood
        padded[rows, columns] = record.from_padding
    return (int(top), int(left)), values, padded


def _output_values(records: list[Explanation]) -> np.ndarray:
    """The values written, channels first, from each record's ``value``."""
    rows = 1 + max(r.output_at[0] for r in records)
    columns = 1 + max(r.output_at[1] for r in records)
    channels = _drawn_channels(records[0])
    values = np.zeros((len(channels), rows, columns))
    for record in records:
        for c in range(len(channels)):
            values[(c, *record.output_at)] = record.channels[c].value
    return values


def _drawn_channels(record: Explanation) -> list[str]:
    """The names of the channels drawn: all but a carried alpha channel."""
    return [channel.name for channel in record.channels if not channel.carried]


def _natural_top(dtype: np.dtype) -> float | None:
    """White for the type: 255 for 8-bit, 65535 for 16-bit; None for other types."""
    return float(np.iinfo(dtype).max) if dtype in (np.uint8, np.uint16) else None


def _display_top(values: np.ndarray, natural: float | None) -> float | None:
    """The value drawn white: the type's white, or the largest value for a 0/1 mask and
    for matrices typed by hand; None (red and blue around white) when values are negative."""
    if values.min() < 0:
        return None
    peak = float(values.max())
    if natural is not None and peak > 1:
        return natural
    return peak or 1.0


def _cell_colours(values: np.ndarray, top: float | None) -> tuple[np.ndarray, np.ndarray]:
    """BGR colours of the cells and which of them are dark (white numbers)."""
    if top is not None:
        grey = np.clip(values / top, 0.0, 1.0) * 255.0
        return np.repeat(grey[..., None], 3, axis=-1), grey < DARK_TEXT_BELOW
    t = values / (float(np.abs(values).max()) or 1.0)
    towards = np.where(t[..., None] >= 0, POSITIVE, NEGATIVE)
    return WHITE + (towards - WHITE) * np.abs(t)[..., None], np.abs(t) > 0.6


def _grid_picture(
    values: np.ndarray,
    cell: int,
    scale: float,
    top: float | None,
    hatched: np.ndarray | None = None,
) -> np.ndarray:
    """A matrix as cells of ``cell`` px with their values: grey levels up to ``top`` (or
    red and blue for signed values), ``hatched`` cells striped. No border around it: cell
    (i, j) spans rows i*cell..(i+1)*cell, the last line being the grid's."""
    import cv2

    rows, columns = values.shape
    colours, dark = _cell_colours(values, top)
    picture = np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1).astype(np.uint8)
    picture = np.pad(picture, ((0, 1), (0, 1), (0, 0)), constant_values=GRID[0])
    if hatched is not None:
        stripes = np.add.outer(np.arange(cell), np.arange(cell)) % 8 < 2
        for i, j in zip(*np.nonzero(hatched), strict=True):
            picture[i * cell : (i + 1) * cell, j * cell : (j + 1) * cell][stripes] = HATCH
    for i in range(rows + 1):
        cv2.line(picture, (0, i * cell), (columns * cell, i * cell), GRID, 1)
    for j in range(columns + 1):
        cv2.line(picture, (j * cell, 0), (j * cell, rows * cell), GRID, 1)
    for i in range(rows):
        for j in range(columns):
            text = cell_text(values[i, j])
            (width, height), _ = cv2.getTextSize(text, FONT, scale, 1)
            origin = (j * cell + (cell - width) // 2 + 1, i * cell + (cell + height) // 2 + 2)
            colour = (255, 255, 255) if dark[i, j] else (0, 0, 0)
            cv2.putText(picture, text, origin, FONT, scale, colour, 1, LINE_AA)
    return picture


def _tag_scale(kernel: Kernel, cell: int) -> float | None:
    """The font scale of the weight tags: `TAG_SCALE`, smaller if the widest weight would
    cover more than two thirds of a cell; None when even `TAG_SMALLEST_SCALE` would not fit
    or the cells are smaller than `TAG_SMALLEST_CELL` (the kernel is then drawn beside)."""
    import cv2

    if cell < TAG_SMALLEST_CELL:
        return None
    widest = max(cv2.getTextSize(cell_text(w, 2), FONT, 1.0, 1)[0][0]
                 for w in kernel.weights.reshape(-1))  # fmt: skip
    scale = min(TAG_SCALE, (cell * 2 / 3 - 4) / max(widest, 1))
    return scale if scale >= TAG_SMALLEST_SCALE else None


def _weight_tag(picture: np.ndarray, weight: float, at: tuple[int, int], cell: int,
                scale: float) -> None:  # fmt: skip
    """The weight in a small coloured box at the top-left corner of cell ``at``."""
    import cv2

    text = cell_text(weight, 2)
    (width, height), _ = cv2.getTextSize(text, FONT, scale, 1)
    colours, dark = _cell_colours(np.array([[weight]]), None)
    y, x = at[0] * cell + 2, at[1] * cell + 2
    box = (x + width + 4, y + height + 5)
    cv2.rectangle(picture, (x, y), box, tuple(int(v) for v in colours[0, 0]), -1)
    cv2.rectangle(picture, (x, y), box, (60, 60, 60), 1)
    colour = (255, 255, 255) if dark[0, 0] else (0, 0, 0)
    cv2.putText(picture, text, (x + 2, y + height + 2), FONT, scale, colour, 1, LINE_AA)


def _outline(picture: np.ndarray, at: tuple[int, int], size: tuple[int, int], cell: int,
             *, thin: bool = False) -> None:  # fmt: skip
    """A yellow frame inside a black one around ``size`` cells from cell ``at``; ``thin``
    for the anchor's cell inside the window."""
    import cv2

    top_left = (at[1] * cell, at[0] * cell)
    bottom_right = ((at[1] + size[1]) * cell, (at[0] + size[0]) * cell)
    if thin:
        inner = (top_left[0] + 3, top_left[1] + 3)
        cv2.rectangle(picture, inner, (bottom_right[0] - 3, bottom_right[1] - 3), WINDOW_INNER, 2)
        return
    cv2.rectangle(picture, top_left, bottom_right, WINDOW_OUTER, 5)
    cv2.rectangle(picture, top_left, bottom_right, WINDOW_INNER, 2)


def _blank_cell(picture: np.ndarray, at: tuple[int, int], cell: int) -> None:
    """Cell ``at`` emptied to `PENDING`, its grid lines kept."""
    y, x = at[0] * cell, at[1] * cell
    picture[y + 1 : y + cell, x + 1 : x + cell] = PENDING


def _padded_to_width(picture: np.ndarray, width: int) -> np.ndarray:
    extra = max(0, width - picture.shape[1])
    return np.pad(picture, ((0, GAP), (0, extra), (0, 0)), constant_values=BACKGROUND)


def _put(picture: np.ndarray, text: str, origin: tuple[int, int]) -> None:
    import cv2

    cv2.putText(picture, text, origin, FONT, LABEL_SCALE, (0, 0, 0), 1, LINE_AA)


# --- the words -----------------------------------------------------------------------------


def _title(record: Explanation) -> str:
    kh, kw = record.kernel.shape
    height, width = record.image_shape[:2]
    operation = "convolution (kernel flipped)" if record.flip else "correlation"
    return (f"{printable(record.kernel.name)} {kh}x{kw} over a {width}x{height} image | "
            f"padding {record.padding.mode} | {operation}")  # fmt: skip


def _input_label(record: Explanation) -> str:
    if record.padding.mode == "valid":
        return "input (valid: no padding)"
    if record.padding.mode == "constant":
        return f"input, padded (constant {_number(record.padding.cval)}: hatched)"
    return f"input, padded ({record.padding.mode}: hatched)"


def _number(value: float) -> str:
    """A number as people write it: whole numbers plainly, others to 6 significant digits."""
    if value == 0:
        return "0"
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _factor(value: float) -> str:
    text = _number(value)
    return f"({text})" if text.startswith("-") else text


def _writes_terms(kernel: Kernel) -> bool:
    return max(kernel.shape) <= MAX_TERM_SIDE


def _term_lines(
    record: Explanation, channel, named: bool, terms: bool = True
) -> list[tuple[str, list[str]]]:
    """The lines under the grids: (prefix, terms) for each kernel row, then the result.

    Each term is ``weight*value`` from the kernel as placed and the record's neighbourhood;
    the result line holds the record's sum and steps.
    """
    oy, ox = record.output_at
    name = f"{channel.name}: " if named else ""
    head = f"{name}out[{oy}, {ox}] ="
    if not terms:
        count = record.kernel.weights.size
        return [(head, [f"the sum of the {count} products weight*value"]),
                ("", [_result_text(channel)])]  # fmt: skip
    lines = []
    for i, row in enumerate(record.kernel.weights):
        terms = [f"{_factor(w)}*{_factor(v)}" for w, v in
                 zip(row, channel.neighbourhood[i], strict=True)]  # fmt: skip
        terms = [f"{term} +" for term in terms[:-1]] + terms[-1:]
        lines.append((head if i == 0 else "+", terms))
    return lines + [("", [_result_text(channel)])]


def _result_text(channel) -> str:
    """``= sum`` then ``-> step: value`` for each step after it, from the record."""
    (_, total), *after = channel.steps
    return "= " + "  ->  ".join(
        [_number(total)] + [f"{what}: {_number(value)}" for what, value in after]
    )


def _text_columns(records: list[Explanation], channels: int, terms: bool) -> tuple[list[int], int]:
    """Where each column of terms starts (the same in every frame, so nothing jumps), and
    the width the text needs."""
    prefixes, columns, results = [], [], []
    for record in records:
        for c in range(channels):
            channel = record.channels[c]
            for prefix, written in _term_lines(record, channel, channels > 1, terms)[:-1]:
                prefixes.append(prefix)
                columns.append(written)
            results.append(_result_text(channel))
    start = max(text_width(p) for p in prefixes) + 4
    count = max(len(terms) for terms in columns)
    widths = [max((text_width(terms[j]) for terms in columns if len(terms) > j), default=0)
              for j in range(count)]  # fmt: skip
    positions = [start + sum(widths[:j]) + 6 * j for j in range(count)]
    needed = max(positions[-1] + widths[-1], start + max(text_width(r) for r in results))
    return positions, needed + GAP


# --- the GIF -------------------------------------------------------------------------------


def encode_animation(frames: Sequence[np.ndarray], fps: float = DEFAULT_FPS) -> bytes:
    """Frames as an animated GIF that loops forever, the last frame held
    `LAST_FRAME_SECONDS` (or four frames, if longer).

    Parameters
    ----------
    frames : sequence of ndarray
        8-bit BGR frames of one size, as `slide_frames` draws them.
    fps : float
        Frames per second, more than 0 and at most `MAX_FPS`.

    Returns
    -------
    bytes
        The GIF, with one fixed palette for every frame (`gif_palette`): colours never
        drift from frame to frame, and a weight's small coloured tag keeps its colour. Each
        frame after the first holds only the rectangle that changed; one frame is drawn and
        encoded at a time (Pillow's own animated writer keeps every frame in memory: 256
        large frames took gigabytes).

    Raises
    ------
    UsageError
        For no frames, frames of different sizes or types, or an fps out of range.
    """
    from PIL import GifImagePlugin, Image

    delay = _frame_milliseconds(fps)
    if len(frames) == 0:
        raise UsageError("an animation needs at least one frame")
    shape = _checked_frame(frames[-1], len(frames) - 1, None)
    palette = gif_palette()
    last = max(delay * 4, round(LAST_FRAME_SECONDS * 1000))
    gif = bytearray(_gif_header(shape[1], shape[0], palette))
    previous = None
    for index in range(len(frames)):
        frame = frames[index]
        _checked_frame(frame, index, shape)
        paletted = _rgb(frame).quantize(palette=palette, dither=Image.Dither.NONE)
        indices = np.array(paletted)
        top, left, bottom, right = _changed_box(previous, indices)
        part = indices[top:bottom, left:right]
        if previous is not None:  # what did not change shows through: long runs, small LZW
            part = np.where(previous[top:bottom, left:right] == part, UNCHANGED, part)
        picture = Image.fromarray(np.ascontiguousarray(part, dtype=np.uint8), "P")
        duration = last if index == len(frames) - 1 else delay
        # Disposal 1: each frame is drawn over the one before, which it leaves in place.
        for chunk in GifImagePlugin.getdata(picture, offset=(left, top), duration=duration,
                                            disposal=1, transparency=UNCHANGED):  # fmt: skip
            gif += chunk
        previous = indices
    gif += b";"
    return bytes(gif)


def _gif_header(width: int, height: int, palette) -> bytes:
    """GIF89a, the canvas, a global table of 256 colours (the palette's, then black), and
    the NETSCAPE extension that loops forever."""
    colours = bytes(palette.getpalette()[: 3 * 256])
    table = colours + bytes(3 * 256 - len(colours))
    screen = struct.pack("<HHBBB", width, height, 0x80 | 7, 0, 0)
    loop = b"!\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", 0) + b"\x00"
    return b"GIF89a" + screen + table + loop


def _changed_box(previous: np.ndarray | None, indices: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the pixels that differ from the previous frame: the
    whole frame first, one pixel when nothing changed."""
    if previous is None:
        return 0, 0, indices.shape[0], indices.shape[1]
    changed = previous != indices
    rows, columns = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    if rows.size == 0:
        return 0, 0, 1, 1
    return int(rows[0]), int(columns[0]), int(rows[-1]) + 1, int(columns[-1]) + 1


def write_animation(frames: Sequence[np.ndarray], path: str | Path,
                    fps: float = DEFAULT_FPS) -> Path:  # fmt: skip
    """Write ``frames`` as an animated GIF (`encode_animation`) to ``path``, atomically.

    The GIF is encoded in memory first, then written through `convkit.imageio.write_atomic`:
    an interrupted run leaves no partial file.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    UsageError
        As `encode_animation`.
    ImageWriteError
        If the file cannot be written.
    """
    from convkit.imageio import write_atomic

    return write_atomic(Path(path), encode_animation(frames, fps))


def gif_palette():
    """A Pillow palette image of the 216 colours of a 6x6x6 cube and 38 greys between them:
    every grey within 3 levels, any colour near enough; index `UNCHANGED` is left for
    the pixels that a frame leaves as they were."""
    from PIL import Image

    levels = np.linspace(0, 255, CUBE_LEVELS).round().astype(int)
    cube = [(r, g, b) for r in levels for g in levels for b in levels]
    greys = [v for v in np.linspace(0, 255, EXTRA_GREYS + CUBE_LEVELS).round().astype(int)
             if v not in levels][:EXTRA_GREYS]  # fmt: skip
    palette = Image.new("P", (1, 1))
    palette.putpalette([int(v) for colour in cube + [(g, g, g) for g in greys]
                        for v in colour])  # fmt: skip
    return palette


def _frame_milliseconds(fps: float) -> int:
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise UsageError(f"--fps {fps!r}: give a number of frames per second") from None
    if not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise UsageError(f"--fps {fps:g} is outside 0..{MAX_FPS:g} (more than 0)")
    return max(20, round(1000 / fps / 10) * 10)  # GIF delays count hundredths of a second


def _checked_frame(frame: np.ndarray, index: int, shape: tuple[int, ...] | None) -> tuple:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise UsageError(f"frame {index} is no 8-bit BGR image ({frame.dtype}, {frame.shape})")
    if shape is not None and frame.shape != shape:
        raise UsageError(f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, the last "
                         f"{shape[1]}x{shape[0]}: all frames must be the same size")  # fmt: skip
    return frame.shape


def _rgb(frame: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(np.asarray(frame)[..., ::-1]), "RGB")
