"""The side-by-side comparison PNG: original | each backend | amplified |difference|.

Every panel is labelled; the title names the kernel, padding, operation and rescale policy,
and the kernel's heatmap sits beside the original. The layout reads at any size:

- Panels are at least `PANEL_MIN_SIDE` px on their short side. Tiny images (the tutorials'
  2x2 and 5x5 matrices) are enlarged by a whole factor with nearest-neighbour, so each pixel
  shows as a square; large ones are shrunk to `PANEL_MAX_SIDE`.
- An image more than `ROW_ASPECT` times wider than tall gets one panel per row; a tall one
  keeps the panels side by side. A strip too long for `STRIP_LENGTH` is cut into pieces laid
  next to each other, like lines of text, so that an 8000x40 image shows at 1:1 in five
  lines instead of as a 2 px tall sliver.
- When the panels are shrunk, a 1:1 detail crop of the same region (`detail_region`) follows
  every panel, and the region is outlined on the panels.
- Text is FONT_HERSHEY_SIMPLEX at a scale where capitals are 12 px tall or more; text too
  long for its place is shortened in the middle with "...".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

# Panel sizes, in pixels of the picture.
PANEL_MIN_SIDE = 160
PANEL_MAX_SIDE = 480  # the long side of a panel of an image of ordinary shape
ROW_ASPECT = 3.0  # beyond this ratio of its sides an image is drawn as a strip
STRIP_LENGTH = 1600  # the long side of a strip's panel; longer strips are cut into pieces
FOLD_THICKNESS = 240  # the short side aimed at when a strip is shrunk and cut
FOLD_MAX_THICKNESS = 640  # a strip cut at 1:1 up to this thick; a thicker one is shrunk
FOLD_GAP = 4
DETAIL_SIZE = 256
MAX_EXTENT = 3600  # panels wrap into a further band rather than grow the picture beyond this
GAP = 12

# Text: OpenCV's FONT_HERSHEY_SIMPLEX (0), named here so that importing is cheap.
FONT = 0
LINE_AA = 16
LABEL_SCALE = 0.6  # capitals 12 px, brackets 19 px from top to bottom
LABEL_PITCH = 22
TITLE_SCALE = 0.7  # capitals 14 px
TITLE_PITCH = 26
TEXT_MARGIN = 4
LABEL_MAX_WIDTH = 360  # a label may widen its panel up to this; longer text is shortened
ELLIPSIS = "..."

BACKGROUND = 255
FRAME = 160
MID_GREY = 128
OUTLINE = (0, 220, 255)  # BGR yellow, drawn inside a black line: visible on any picture


def to_display(image: np.ndarray) -> np.ndarray:
    """Any convkit image as 8-bit BGR: 16-bit scaled down, grey repeated, alpha dropped."""
    import cv2

    if image.dtype == np.uint16:
        image = np.rint(image / 257.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    channels = image.shape[2]
    if channels in (1, 2):
        return cv2.cvtColor(np.ascontiguousarray(image[..., 0]), cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(image[..., :3])


def resize_panel(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` resized by ``scale``: area-averaged when shrinking, nearest when enlarging."""
    import cv2

    if scale == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if scale >= 1:
        return cv2.resize(image, size, interpolation=cv2.INTER_NEAREST)
    step = int(1 / scale)
    if step >= 2 and min(height, width) >= 2 * step:
        # Averaging whole blocks first is OpenCV's fast path: 4x quicker on a 12 MP photo.
        image = cv2.resize(image, None, fx=1 / step, fy=1 / step, interpolation=cv2.INTER_AREA)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


# --- text --------------------------------------------------------------------------------


def _printable(text: str) -> str:
    # The Hershey fonts draw ASCII only: anything else would come out as one "?" per byte.
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def _text_extent(text: str, scale: float) -> int:
    import cv2

    return cv2.getTextSize(text, FONT, scale, 1)[0][0]


def text_width(text: str, scale: float = LABEL_SCALE) -> int:
    """The width in px of the widest line of ``text``, margins included."""
    lines = _printable(text).split("\n")
    return max(_text_extent(line, scale) for line in lines) + 2 * TEXT_MARGIN


def fit_text(text: str, width: int, scale: float = LABEL_SCALE) -> str:
    """``text`` (one line), shortened in the middle with "..." until it is ``width`` px wide.

    The middle goes so that both a name's start and what ends it (``_v2.txt``, ``12.3 ms``,
    ``(9x9)``) stay readable.
    """
    text = _printable(text)
    if _text_extent(text, scale) <= width:
        return text
    low, high = 0, len(text)  # the most characters kept that still fit
    while low < high:
        middle = (low + high + 1) // 2
        if _text_extent(_elide(text, middle), scale) <= width:
            low = middle
        else:
            high = middle - 1
    return _elide(text, low) if low else ELLIPSIS[: max(1, width // 10)]


def _elide(text: str, keep: int) -> str:
    head = (keep + 1) // 2
    return text[:head] + ELLIPSIS + text[len(text) - (keep - head) :]


def label_bar(
    text: str,
    width: int,
    height: int | None = None,
    *,
    scale: float = LABEL_SCALE,
    lines: int = 1,
) -> np.ndarray:
    """A white strip with ``text`` in black, one line per ``\\n``, each shortened to fit.

    Parameters
    ----------
    text : str
        The label; ``\\n`` starts a new line.
    width : int
        The strip's width in px.
    height : int, optional
        At least this tall; by default as tall as its lines need.
    scale : float
        The Hershey font scale (`LABEL_SCALE`: capitals 12 px tall).
    lines : int
        At least this many lines tall, so that labels side by side line up.

    Returns
    -------
    ndarray
        An 8-bit BGR image.
    """
    import cv2

    rows = text.split("\n")
    pitch = LABEL_PITCH if scale <= LABEL_SCALE else TITLE_PITCH
    needed = max(len(rows), lines) * pitch + 6
    bar = np.full((max(needed, height or 0), width, 3), BACKGROUND, dtype=np.uint8)
    top = (bar.shape[0] - needed) // 2 + 3
    for i, row in enumerate(rows):
        shown = fit_text(row, width - 2 * TEXT_MARGIN, scale)
        # The baseline sits so that brackets and descenders stay inside the line's pitch.
        baseline = top + i * pitch + round(pitch * 0.75)
        cv2.putText(bar, shown, (TEXT_MARGIN, baseline), FONT, scale, (0, 0, 0), 1, LINE_AA)
    return bar


def labelled(
    panel: np.ndarray, label: str, *, lines: int = 1, max_width: int = LABEL_MAX_WIDTH
) -> np.ndarray:
    """A panel framed in grey under its label.

    The label may widen the panel (which is then centred) up to ``max_width``; a longer
    label is shortened.
    """
    framed = np.pad(panel, ((1, 1), (1, 1), (0, 0)), constant_values=FRAME)
    width = max(framed.shape[1], min(text_width(label), max_width))
    return np.vstack([label_bar(label, width, lines=lines), _widen(framed, width)])


def _widen(picture: np.ndarray, width: int) -> np.ndarray:
    extra = width - picture.shape[1]
    return np.pad(picture, ((0, 0), (extra // 2, extra - extra // 2), (0, 0)),
                  constant_values=BACKGROUND)  # fmt: skip


def _title_bar(title: str, width: int) -> np.ndarray:
    """The title on as few lines as fit ``width``, broken at its ``|`` separators."""
    parts = [part.strip() for part in _printable(title).split("|")]
    lines: list[str] = []
    for part in parts:
        joined = f"{lines[-1]}  |  {part}" if lines else part
        if lines and _text_extent(joined, TITLE_SCALE) <= width - 2 * TEXT_MARGIN:
            lines[-1] = joined
        else:
            lines.append(part)
    return label_bar("\n".join(lines), width, scale=TITLE_SCALE)


def _line_count(text: str) -> int:
    return text.count("\n") + 1


# --- where panels go ---------------------------------------------------------------------


class PanelGeometry(NamedTuple):
    """How an image is drawn as a panel.

    Attributes
    ----------
    scale : float
        Picture px per image px: below 1 shrunk (area average), a whole number above 1
        enlarged (nearest neighbour).
    pieces : int
        The number of pieces a long strip is cut into, laid next to each other across the
        strip (1: not cut).
    piece_length : int
        The length in picture px of each piece along the image's long side.
    stacked : bool
        True for an image much wider than tall: panels go one per row, not side by side.
    """

    scale: float
    pieces: int
    piece_length: int
    stacked: bool

    def panel_shape(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) in px of the panel drawn for a ``height`` x ``width`` image."""
        long_side, short_side = max(height, width), min(height, width)
        thickness = _thickness(short_side, self.scale, self.pieces)
        length = self.piece_length if self.pieces > 1 else max(1, round(long_side * self.scale))
        return (thickness, length) if width >= height else (length, thickness)


def panel_geometry(height: int, width: int) -> PanelGeometry:
    """How to draw a ``height`` x ``width`` image so that its short side is at least
    `PANEL_MIN_SIDE` px and its long side is bounded.

    An image of ordinary shape (sides within `ROW_ASPECT` of each other) has its long side
    brought to at most `PANEL_MAX_SIDE`; a strip to at most `STRIP_LENGTH`, cut into pieces
    if its short side would otherwise be thinner than `PANEL_MIN_SIDE`.
    """
    long_side, short_side = max(height, width), min(height, width)
    stacked = width > ROW_ASPECT * height
    if long_side <= ROW_ASPECT * short_side:
        scale = _uncut_scale(long_side, short_side, PANEL_MAX_SIDE)
        return PanelGeometry(scale, 1, max(1, round(long_side * scale)), stacked)
    scale = _uncut_scale(long_side, short_side, STRIP_LENGTH)
    if scale * short_side >= PANEL_MIN_SIDE and round(long_side * scale) <= STRIP_LENGTH:
        return PanelGeometry(scale, 1, max(1, round(long_side * scale)), stacked)
    scale = _cut_scale(long_side, short_side)
    pieces = _piece_count(long_side, scale)
    piece_length = math.ceil(max(1, round(long_side * scale)) / pieces)
    return PanelGeometry(scale, pieces, piece_length, stacked)


def _uncut_scale(long_side: int, short_side: int, limit: int) -> float:
    if long_side > limit:
        return limit / long_side
    if short_side < PANEL_MIN_SIDE:
        return float(math.ceil(PANEL_MIN_SIDE / short_side))
    return 1.0


def _piece_count(long_side: int, scale: float) -> int:
    return max(1, math.ceil(round(long_side * scale) / STRIP_LENGTH))


def _thickness(short_side: int, scale: float, pieces: int) -> int:
    piece = max(1, round(short_side * scale))
    return pieces * piece + (pieces - 1) * fold_gap(piece)


def fold_gap(piece_thickness: int) -> int:
    """The gap between the pieces of a cut strip: `FOLD_GAP`, less between thin pieces so
    that the gaps do not outweigh the picture."""
    return max(1, min(FOLD_GAP, piece_thickness // 4))


def _cut_scale(long_side: int, short_side: int) -> float:
    """The scale of a strip that is cut into pieces: 1:1 if that gives a panel between
    `PANEL_MIN_SIDE` and `FOLD_MAX_THICKNESS` thick, else the smallest whole enlargement that
    reaches `PANEL_MIN_SIDE`, else the shrink that makes it about `FOLD_THICKNESS` thick."""

    def thickness(scale: float) -> int:
        return _thickness(short_side, scale, _piece_count(long_side, scale))

    if PANEL_MIN_SIDE <= thickness(1.0) <= FOLD_MAX_THICKNESS:
        return 1.0
    if thickness(1.0) < PANEL_MIN_SIDE:
        scale = 2.0
        while thickness(scale) < PANEL_MIN_SIDE:
            scale += 1.0
        return scale
    return math.sqrt(STRIP_LENGTH * FOLD_THICKNESS / (long_side * short_side))


def cut_into_pieces(image: np.ndarray, pieces: int) -> np.ndarray:
    """A scaled strip cut into ``pieces`` equal pieces laid across it, `fold_gap` apart: a
    wide strip's pieces one under the other, a tall strip's side by side."""
    if pieces <= 1:
        return image
    tall = image.shape[0] > image.shape[1]
    strip = image.transpose(1, 0, 2) if tall else image
    length = math.ceil(strip.shape[1] / pieces)
    gap = fold_gap(strip.shape[0])
    rows = []
    for i in range(pieces):
        piece = strip[:, i * length : (i + 1) * length]
        piece = np.pad(piece, ((0, 0), (0, length - piece.shape[1]), (0, 0)),
                       constant_values=BACKGROUND)  # fmt: skip
        rows.append(piece)
        if i < pieces - 1:
            rows.append(np.full((gap, length, 3), BACKGROUND, dtype=np.uint8))
    cut = np.vstack(rows)
    return np.ascontiguousarray(cut.transpose(1, 0, 2)) if tall else cut


# --- the detail region -------------------------------------------------------------------


def detail_region(response: np.ndarray, size: int = DETAIL_SIZE) -> tuple[int, int, int, int]:
    """The ``size`` x ``size`` window of ``response`` with the most local detail.

    The score of a pixel is |response - its 3x3 mean|, summed over channels: large where
    the response changes from pixel to pixel (an edge map's edges, a sharpened photo's
    crispest texture, a bright spot), zero where it is flat or a smooth ramp. The window is
    centred on the peak of that score averaged over about a window's width (a Gaussian on
    blocks of about ``size/16`` px), then moved inside the image. A response with no detail at all
    gets the central window. Windows are clipped to the image: a 40 x 8000 response gets a
    40 x ``size`` one.

    Parameters
    ----------
    response : ndarray
        A float response, (H, W) or (H, W, C). NaN and infinite values count as no detail.
    size : int
        The window's side in px.

    Returns
    -------
    tuple of int
        ``(y, x, height, width)`` in the response's pixel coordinates; deterministic.

    Examples
    --------
    >>> import numpy as np
    >>> response = np.zeros((1000, 1000))
    >>> response[700, 300] = 1.0
    >>> y, x, height, width = detail_region(response)
    >>> (y <= 700 < y + height, x <= 300 < x + width, height, width)
    (True, True, 256, 256)
    """
    response = np.asarray(response)
    if response.ndim not in (2, 3) or 0 in response.shape or size < 1:
        raise ValueError(f"need a non-empty (H, W[, C]) response and size >= 1, got "
                         f"shape {response.shape} and size {size}")  # fmt: skip
    height, width = response.shape[:2]
    window = (min(size, height), min(size, width))
    block = max(1, min(window) // 16)
    rows, columns = -(-height // block), -(-width // block)
    blocks = _block_means(_local_detail(response), rows, columns)
    peak = _weighted_peak(blocks, (window[0] * rows / height, window[1] * columns / width))
    if peak is None:
        centre = (height // 2, width // 2)
    else:
        centre = (int((peak[0] + 0.5) * height / rows), int((peak[1] + 0.5) * width / columns))
    y = int(np.clip(centre[0] - window[0] // 2, 0, height - window[0]))
    x = int(np.clip(centre[1] - window[1] // 2, 0, width - window[1]))
    return y, x, window[0], window[1]


def _local_detail(response: np.ndarray) -> np.ndarray:
    import cv2

    planes = [response] if response.ndim == 2 else np.moveaxis(response, 2, 0)
    detail = np.zeros(response.shape[:2], dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        for plane in planes:
            values = np.asarray(plane, dtype=np.float32)
            detail += np.abs(values - cv2.blur(values, (3, 3)))
    if not np.isfinite(detail.sum()):  # NaN or infinite values (or a sum past float32)
        detail[~np.isfinite(detail)] = 0.0
    return detail


def _block_means(detail: np.ndarray, rows: int, columns: int) -> np.ndarray:
    import cv2

    return cv2.resize(detail, (columns, rows), interpolation=cv2.INTER_AREA)


def _weighted_peak(blocks: np.ndarray, window: tuple[float, float]) -> tuple[int, int] | None:
    """The block where detail averaged over about a ``window`` (in blocks) peaks; None if
    there is no detail anywhere."""
    import cv2

    if not blocks.max() > 0:
        return None
    weighted = cv2.GaussianBlur(blocks, (0, 0), sigmaX=max(0.5, window[1] / 4),
                                sigmaY=max(0.5, window[0] / 4),
                                borderType=cv2.BORDER_CONSTANT)  # fmt: skip
    row, column = np.unravel_index(int(np.argmax(weighted)), weighted.shape)
    return int(row), int(column)


# --- the comparison ----------------------------------------------------------------------


def difference_panel(responses: Mapping[str, np.ndarray], reference: str) -> tuple[np.ndarray, str]:
    """|response - reference|, the largest over backends and channels, stretched to white."""
    base = responses[reference]
    diff = np.zeros(base.shape[:2])
    for name, response in responses.items():
        if name != reference:
            delta = np.subtract(response, base, dtype=np.float64)
            np.abs(delta, out=delta)
            np.maximum(diff, delta.max(axis=2) if delta.ndim == 3 else delta, out=diff)
    peak = float(diff.max())
    if peak == 0.0:
        return np.zeros(diff.shape, dtype=np.uint8), f"|diff| vs {reference}: all 0"
    # divide first: for a subnormal peak (1e-320) 255 / peak overflows to inf
    stretched = np.rint(np.clip(diff / peak, 0.0, 1.0) * 255.0).astype(np.uint8)
    return stretched, f"|diff| vs {reference}, max {peak:.2g} = white"


def constant_value(response: np.ndarray) -> float | None:
    """The value of a response that is the same everywhere (all channels); else None."""
    if response.size == 0:
        return None
    low, high = float(np.min(response)), float(np.max(response))
    return low if low == high else None


@dataclass
class _Tile:
    """One panel to draw: its label, its image (as given: drawn with `to_display` once
    resized or cropped), and where the detail region's corner falls in that image
    (``offset`` added to the region's y, x)."""

    label: str
    image: np.ndarray
    offset: tuple[int, int] = (0, 0)
    crop_only: bool = False  # the image is the detail region alone


def comparison_png(
    original: np.ndarray,
    panels: Sequence[tuple[str, np.ndarray]],
    responses: Mapping[str, np.ndarray],
    reference: str,
    title: str,
    kernel=None,
    *,
    detail: tuple[int, int, int, int] | None = None,
    rescale: str | None = None,
) -> np.ndarray:
    """Lay out the comparison: title above; original, the kernel's picture, each panel,
    then the amplified |diff|; below (or beside) them a 1:1 detail crop when they are shrunk.

    Parameters
    ----------
    original : ndarray
        The image that was filtered.
    panels : sequence of (label, image)
        Images already post-processed: a stack's intermediate maps, then one per backend.
        The last ``len(responses)`` panels show the ``responses``, in their order. A panel
        whose shape is the detail region's (and not the full response's) is the output of a
        backend that ran on that region only: it is drawn as its crop.
    responses : mapping
        Each backend's float response, for the difference panel (shown with 2+ backends),
        the detail region and to tell a constant response.
    reference : str
        The backend the others are compared with.
    title : str
        The line above the panels; broken at its ``|`` if the picture is narrower.
    kernel : Kernel, optional
        Drawn as a heatmap beside the original.
    detail : (y, x, height, width), optional
        The 1:1 region, in the coordinates of the full-size responses; by default
        `detail_region` of the reference's response (or of the first full-size one).
    rescale : str, optional
        The policy the panels were drawn under. A constant response is drawn mid-grey unless
        this is ``clip`` or ``abs`` (which show its value truly); its label says so either way.

    Returns
    -------
    ndarray
        An 8-bit BGR image.
    """
    full = _full_shape(original, panels, responses)
    region = detail if detail is not None else _default_region(responses, panels, reference, full)
    tiles = _tiles(original, panels, responses, reference, full, region, rescale)
    # One scale for every panel, from the smallest (under `valid` padding the outputs are
    # smaller than the original), so that pixels have one size and no panel is too small.
    height, width = min((tile.image.shape[:2] for tile in tiles if not tile.crop_only),
                        key=lambda shape: min(shape))  # fmt: skip
    geometry = panel_geometry(height, width)
    tiles[0].label = f"original  {original.shape[1]}x{original.shape[0]}{_scale_note(geometry)}"
    show_detail = region is not None and (
        geometry.scale < 1 or any(tile.crop_only for tile in tiles)
    )
    shown = region if show_detail else None
    columns = [_tile_cells(tile, geometry, shown, where=i == 0) for i, tile in enumerate(tiles)]
    heatmap = None
    if kernel is not None:
        overview = geometry.panel_shape(height, width)
        side = int(np.clip(min(overview) if geometry.stacked else overview[0], 160, 360))
        heatmap = kernel_picture(kernel, side)
    body = _arrange(columns, heatmap, geometry.stacked)
    framed = np.vstack([_title_bar(title, body.shape[1]), body])
    return np.pad(framed, ((GAP, GAP), (GAP, GAP), (0, 0)), constant_values=BACKGROUND)


def _scale_note(geometry: PanelGeometry) -> str:
    lines = "rows" if geometry.stacked else "columns"
    cut = f", in {geometry.pieces} {lines}" if geometry.pieces > 1 else ""
    if geometry.scale < 1:
        return f", shown at {geometry.scale:.0%}{cut}"
    if geometry.scale > 1:
        return f", shown x{geometry.scale:g}{cut}"
    return cut


def _full_shape(
    original: np.ndarray,
    panels: Sequence[tuple[str, np.ndarray]],
    responses: Mapping[str, np.ndarray],
) -> tuple[int, int]:
    """The shape of a full-size output: the largest response (or panel, without them)."""
    shapes = [r.shape[:2] for r in responses.values()] or [p.shape[:2] for _, p in panels]
    if not shapes:
        return original.shape[:2]
    return max(shapes, key=lambda shape: shape[0] * shape[1])


def _default_region(
    responses: Mapping[str, np.ndarray],
    panels: Sequence[tuple[str, np.ndarray]],
    reference: str,
    full: tuple[int, int],
) -> tuple[int, int, int, int] | None:
    candidates = [responses[reference]] if reference in responses else []
    candidates += list(responses.values()) + [image for _, image in panels]
    for candidate in candidates:
        if candidate.shape[:2] == full:
            return detail_region(candidate)
    return None


def _tiles(
    original: np.ndarray,
    panels: Sequence[tuple[str, np.ndarray]],
    responses: Mapping[str, np.ndarray],
    reference: str,
    full: tuple[int, int],
    region: tuple[int, int, int, int] | None,
    rescale: str | None,
) -> list[_Tile]:
    tiles = [_Tile("original", original, _centring(original.shape[:2], full))]
    shown = dict(zip(range(len(panels) - len(responses), len(panels)), responses, strict=False))
    for i, (label, image) in enumerate(panels):
        if i in shown:
            value = constant_value(responses[shown[i]])
            if value is not None:
                label = f"{label}\nconstant response {value:.4g}"
                if _stretched(rescale, image):
                    image = np.full(image.shape[:2], MID_GREY, dtype=np.uint8)
        tiles.append(_panel_tile(label, image, full, region))
    if len(responses) > 1:
        tiles += _difference_tiles(responses, reference, full, region)
    return tiles


def _stretched(rescale: str | None, image: np.ndarray) -> bool:
    """Whether a constant response's panel was drawn by a min..max stretch, which has no
    span to stretch (and draws black): under ``minmax`` or ``none`` (shown as minmax). With
    the policy unknown, a black panel is taken for one."""
    if rescale is not None:
        return rescale in ("minmax", "none")
    return not to_display(image).any()


def _panel_tile(
    label: str, image: np.ndarray, full: tuple[int, int], region: tuple[int, int, int, int] | None
) -> _Tile:
    shape = image.shape[:2]
    if region is not None and shape != full and shape == tuple(region[2:]):
        return _Tile(label, image, (-region[0], -region[1]), crop_only=True)
    return _Tile(label, image, _centring(shape, full))


def _centring(shape: tuple[int, int], full: tuple[int, int]) -> tuple[int, int]:
    # An image larger than the response (the original under `valid` padding) holds the
    # response's pixels in its middle, exactly so for a centred kernel.
    return (shape[0] - full[0]) // 2, (shape[1] - full[1]) // 2


def _difference_tiles(
    responses: Mapping[str, np.ndarray],
    reference: str,
    full: tuple[int, int],
    region: tuple[int, int, int, int] | None,
) -> list[_Tile]:
    """The |diff| panel; on the detail region alone when a backend ran only there."""
    shapes = {r.shape[:2] for r in responses.values()}
    if shapes == {full}:
        diff, label = difference_panel(responses, reference)
        return [_Tile(label, diff)]
    if region is None or not shapes <= {full, tuple(region[2:])}:
        return []  # outputs of different sizes with no common region: nothing to compare
    y, x, h, w = region
    crops = {name: r if r.shape[:2] == (h, w) else r[y : y + h, x : x + w]
             for name, r in responses.items()}  # fmt: skip
    diff, label = difference_panel(crops, reference)
    return [_Tile(f"{label}\non the detail region", diff, (-y, -x), crop_only=True)]


def _tile_cells(
    tile: _Tile,
    geometry: PanelGeometry,
    region: tuple[int, int, int, int] | None,
    where: bool = False,
) -> tuple[tuple[np.ndarray, str] | None, tuple[np.ndarray, str] | None]:
    """(overview, detail) of one tile, each an image and its label, or None. ``where``: the
    detail's label gives its place."""
    crop = box = None
    if region is not None:
        box = _region_in(tile, region)
        y, x, h, w = box
        label = tile.label if tile.crop_only else "1:1 detail"
        if where:
            label += f" at y {y}, x {x}"
        crop = (to_display(tile.image[y : y + h, x : x + w]), label)
    if tile.crop_only:
        return None, crop
    overview = to_display(resize_panel(tile.image, geometry.scale))
    if box is not None:
        overview = _outlined(overview, box, geometry.scale)
    return (cut_into_pieces(overview, geometry.pieces), tile.label), crop


def _region_in(tile: _Tile, region: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The region in the tile's image, moved inside it (and cut to it if larger)."""
    y, x, h, w = region
    height, width = tile.image.shape[:2]
    h, w = min(h, height), min(w, width)
    y = int(np.clip(y + tile.offset[0], 0, height - h))
    x = int(np.clip(x + tile.offset[1], 0, width - w))
    return y, x, h, w


def _outlined(picture: np.ndarray, box: tuple[int, int, int, int], scale: float) -> np.ndarray:
    import cv2

    y, x, h, w = box
    top, left = math.floor(y * scale), math.floor(x * scale)
    bottom = max(top, math.ceil((y + h) * scale) - 1)
    right = max(left, math.ceil((x + w) * scale) - 1)
    picture = picture.copy()
    cv2.rectangle(picture, (left - 1, top - 1), (right + 1, bottom + 1), (0, 0, 0), 1)
    cv2.rectangle(picture, (left, top), (right, bottom), OUTLINE, 1)
    return picture


def _arrange(columns, heatmap: np.ndarray | None, stacked: bool) -> np.ndarray:
    """The tiles in a grid: side by side with their detail crops below, or (``stacked``) one
    per row with the crop beside; wrapped into bands so the picture stays within
    `MAX_EXTENT`. Labels in one line of the grid get the same number of lines."""
    overview_lines = max((_line_count(cell[1]) for cell, _ in columns if cell), default=1)
    detail_lines = max((_line_count(cell[1]) for _, cell in columns if cell), default=1)
    cells = [
        [_drawn(overview, overview_lines), _drawn(detail, detail_lines)]
        for overview, detail in columns
    ]
    if heatmap is not None and not stacked:
        cells.insert(1, [heatmap, None])
    if stacked:
        bands = _bands(cells, lambda pair: max(c.shape[0] for c in pair if c is not None))
        body = _side_by_side([_grid(band) for band in bands])
        return body if heatmap is None else _side_by_side([body, heatmap])
    bands = _bands(cells, lambda pair: max(c.shape[1] for c in pair if c is not None))
    return _one_under_another([_grid(_transposed(band)) for band in bands])


def _drawn(cell: tuple[np.ndarray, str] | None, lines: int) -> np.ndarray | None:
    return None if cell is None else labelled(cell[0], cell[1], lines=lines)


def _bands(items: list, extent) -> list[list]:
    """``items`` in consecutive groups, each as long as fits in `MAX_EXTENT` (at least one)."""
    bands: list[list] = [[]]
    used = 0
    for item in items:
        size = extent(item) + GAP
        if bands[-1] and used + size > MAX_EXTENT:
            bands.append([])
            used = 0
        bands[-1].append(item)
        used += size
    return bands


def _transposed(rows: list[list]) -> list[list]:
    return [list(column) for column in zip(*rows, strict=True)]


def _grid(rows: list[list[np.ndarray | None]]) -> np.ndarray:
    """Cells top-left aligned in rows and columns `GAP` apart; empty rows left out."""
    rows = [row for row in rows if any(cell is not None for cell in row)]
    widths = [max((c.shape[1] for c in column if c is not None), default=0)
              for column in zip(*rows, strict=True)]  # fmt: skip
    heights = [max(c.shape[0] for c in row if c is not None) for row in rows]
    shape = (sum(heights) + GAP * (len(rows) - 1), sum(widths) + GAP * (len(widths) - 1), 3)
    picture = np.full(shape, BACKGROUND, dtype=np.uint8)
    top = 0
    for row, row_height in zip(rows, heights, strict=True):
        left = 0
        for cell, column_width in zip(row, widths, strict=True):
            if cell is not None:
                picture[top : top + cell.shape[0], left : left + cell.shape[1]] = cell
            left += column_width + GAP
        top += row_height + GAP
    return picture


def _side_by_side(pictures: list[np.ndarray]) -> np.ndarray:
    return _grid([list(_spaced(pictures))])


def _one_under_another(pictures: list[np.ndarray]) -> np.ndarray:
    return _grid([[picture] for picture in _spaced(pictures)])


def _spaced(pictures: list[np.ndarray]):
    # A band gap twice the cell gap, so that bands read as separate.
    for i, picture in enumerate(pictures):
        if i:
            yield np.full((GAP, GAP, 3), BACKGROUND, dtype=np.uint8)
        yield picture


# --- kernels and matrices drawn the way teachers draw them ----------------------------------

POSITIVE = np.array([40.0, 40.0, 200.0])  # BGR: red for positive weights
NEGATIVE = np.array([190.0, 90.0, 20.0])  # blue for negative ones
WHITE = np.array([255.0, 255.0, 255.0])
HATCH = (0, 160, 230)  # BGR orange stripes over cells that come from padding
GRID = (150, 150, 150)
MAX_NUMBERED_SIDE = 15  # a matrix with more rows or columns is drawn without numbers
CELL_MAX_SCALE = 0.6
CELL_MIN_SCALE = 0.45  # digits 9 px tall: the smallest still read without squinting
CELL_PAD = 8
CELL_TEXT_HEIGHT = 26  # px per unit of font scale, from the top of "(" to below "g"


def cell_text(value: float, digits: int = 3) -> str:
    """A weight as people write it: integers plainly, others to ``digits`` significant digits."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.{digits}g}"


def cell_labels(values: np.ndarray, cell: int) -> tuple[list[list[str]], float, int]:
    """The numbers for a matrix's cells, their font scale, and the cell size that holds them.

    Three significant digits if they fit in ``cell`` px at `CELL_MIN_SCALE` or more, else
    two; if even two do not fit, the cells grow until they do at `CELL_MIN_SCALE`.

    Returns
    -------
    labels : list of list of str
    scale : float
    cell : int
        ``cell`` or larger.
    """
    for digits in (3, 2):
        labels = [[cell_text(v, digits) for v in row] for row in values]
        widest = max(_text_extent(label, 1.0) for row in labels for label in row)
        scale = min(CELL_MAX_SCALE, (cell - CELL_PAD) / widest, (cell - 4) / CELL_TEXT_HEIGHT)
        if scale >= CELL_MIN_SCALE:
            return labels, scale, cell
    needed = max(math.ceil(widest * CELL_MIN_SCALE) + CELL_PAD,
                 math.ceil(CELL_TEXT_HEIGHT * CELL_MIN_SCALE) + 4)  # fmt: skip
    return labels, CELL_MIN_SCALE, needed


def matrix_picture(
    values: np.ndarray,
    title: str = "",
    size: int = 360,
    highlight: tuple[int, int] | None = None,
    *,
    grey_top: float | None = None,
    shaded: np.ndarray | None = None,
) -> np.ndarray:
    """A heatmap of a matrix with each value printed in its cell.

    Diverging colours with zero in the middle: white at 0, red for positive, blue for
    negative, scaled by the largest magnitude; or, with ``grey_top``, pixel values as the
    grey they show (0 black, ``grey_top`` white). ``highlight`` outlines one cell (the
    anchor); ``shaded`` cells (padding) are hatched. Every cell of a matrix up to
    `MAX_NUMBERED_SIDE` a side holds its number (to 3 or 2 significant digits; the cells
    grow past ``size`` if they must); a larger one is drawn without numbers, and its title
    says so.

    Parameters
    ----------
    values : array_like
        A 2-D matrix of finite numbers.
    title : str
        The caption above; ``\\n`` starts a new line. Shortened if much wider than the grid.
    size : int
        About how wide and tall the grid is, in px.
    highlight : (row, column), optional
        The cell to outline.
    grey_top : float, optional
        Draw the values as grey levels up to this (255 for 8-bit pixels).
    shaded : ndarray of bool, optional
        The cells to hatch, of the matrix's shape.

    Returns
    -------
    ndarray
        An 8-bit BGR image.
    """
    import cv2

    values = np.asarray(values, dtype=np.float64)
    rows, columns = values.shape
    cell = int(np.clip(size // max(rows, columns), 6, 96))
    numbered = max(rows, columns) <= MAX_NUMBERED_SIDE
    if numbered:
        labels, scale, cell = cell_labels(values, cell)
    if grey_top is None:
        peak = float(np.abs(values).max()) or 1.0
        t = values / peak
        colours = np.where(
            t[..., None] >= 0,
            WHITE + (POSITIVE - WHITE) * t[..., None],
            WHITE + (NEGATIVE - WHITE) * -t[..., None],
        )
        light = np.abs(t) > 0.6
    else:
        grey = np.clip(values / (grey_top or 1.0), 0.0, 1.0) * 255.0
        colours = np.repeat(grey[..., None], 3, axis=-1)
        light = grey < 110
    picture = np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1).astype(np.uint8)
    if shaded is not None:
        _hatch(picture, np.asarray(shaded, dtype=bool), cell)
    for i in range(rows + 1):
        cv2.line(picture, (0, i * cell), (columns * cell, i * cell), GRID, 1)
    for j in range(columns + 1):
        cv2.line(picture, (j * cell, 0), (j * cell, rows * cell), GRID, 1)
    if numbered:
        for i in range(rows):
            for j in range(columns):
                _centred_text(picture, labels[i][j], (i, j), cell, scale, light[i, j])
    if highlight is not None:
        y, x = highlight
        cv2.rectangle(picture, (x * cell, y * cell), ((x + 1) * cell, (y + 1) * cell), (0, 0, 0), 2)
    picture = np.pad(picture, ((1, 1), (1, 1), (0, 0)), constant_values=GRID[0])
    if title and not numbered:
        title = f"{title}\nno numbers: over {MAX_NUMBERED_SIDE}x{MAX_NUMBERED_SIDE} cells"
    if title:
        width = max(picture.shape[1], min(text_width(title), max(picture.shape[1], 360)))
        picture = np.vstack([label_bar(title, width), _widen(picture, width)])
    return picture


def _hatch(picture: np.ndarray, cells: np.ndarray, cell: int) -> None:
    """Diagonal stripes over ``cells``: the mark of padding, readable on any grey."""
    rows, columns = np.indices((cell, cell))
    stripes = (rows + columns) % 8 < 2
    for i, j in zip(*np.nonzero(cells), strict=True):
        block = picture[i * cell : (i + 1) * cell, j * cell : (j + 1) * cell]
        block[stripes] = HATCH


def side_by_side(pictures: list[np.ndarray], separators: list[str] | None = None) -> np.ndarray:
    """Pictures in a row, top-aligned, with an optional symbol (``*``, ``=``) between them."""
    import cv2

    height = max(p.shape[0] for p in pictures)
    parts = []
    for i, picture in enumerate(pictures):
        padded = np.full((height, picture.shape[1], 3), BACKGROUND, dtype=np.uint8)
        padded[: picture.shape[0]] = picture
        parts.append(padded)
        if i < len(pictures) - 1:
            gap = np.full((height, 3 * GAP if separators else GAP, 3), BACKGROUND, dtype=np.uint8)
            if separators:
                cv2.putText(gap, separators[i], (GAP - 2, height // 2 + 8),
                            FONT, 0.9, (0, 0, 0), 2, LINE_AA)  # fmt: skip
            parts.append(gap)
    return np.pad(np.hstack(parts), ((GAP, GAP), (GAP, GAP), (0, 0)), constant_values=BACKGROUND)


def stacked(rows: list[np.ndarray]) -> np.ndarray:
    """Pictures one under another, left-aligned."""
    width = max(r.shape[1] for r in rows)
    return np.vstack(
        [
            np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=BACKGROUND)
            for r in rows
        ]
    )


def _centred_text(picture, text, position, cell, scale, light) -> None:
    import cv2

    (width, height), _ = cv2.getTextSize(text, FONT, scale, 1)
    i, j = position
    origin = (j * cell + (cell - width) // 2 + 1, i * cell + (cell + height) // 2)
    colour = (255, 255, 255) if light else (0, 0, 0)
    cv2.putText(picture, text, origin, FONT, scale, colour, 1, LINE_AA)


def kernel_picture(kernel, size: int = 360) -> np.ndarray:
    """A `Kernel` as a heatmap: weights in their cells, the anchor outlined, name above."""
    kh, kw = kernel.shape
    title = f"{kernel.name} {kh}x{kw}, anchor ({kernel.anchor[0]}, {kernel.anchor[1]})"
    return matrix_picture(kernel.weights, title, size, highlight=kernel.anchor)


def write_kernel_picture(kernel, path) -> Path:
    """Draw ``kernel`` as a heatmap PNG into ``path`` (planned by the caller)."""
    from convkit.imageio import encode_image, write_atomic

    return write_atomic(Path(path), encode_image(kernel_picture(kernel)))
