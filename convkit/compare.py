"""The side-by-side comparison PNG: original | each backend | amplified |difference|.

Every panel is labelled; the title names the kernel, padding and operation. Tiny images (the
tutorials' 2x2 and 5x5 matrices) are enlarged with nearest-neighbour so each pixel shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

PANEL_MAX_SIDE = 480
PANEL_MIN_SIDE = 160
LABEL_HEIGHT = 26
TITLE_HEIGHT = 32
GAP = 8
BACKGROUND = 255
FRAME = 160
FONT_SCALE = 0.5


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


def panel_scale(height: int, width: int) -> float:
    """Shrink large images to fit a panel; enlarge tiny ones so their pixels can be seen."""
    side = max(height, width)
    if side > PANEL_MAX_SIDE:
        return PANEL_MAX_SIDE / side
    if side < PANEL_MIN_SIDE:
        return float(PANEL_MIN_SIDE // side)
    return 1.0


def resize_panel(image: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    if scale == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
    return cv2.resize(image, size, interpolation=interpolation)


def difference_panel(responses: Mapping[str, np.ndarray], reference: str) -> tuple[np.ndarray, str]:
    """|response - reference|, the largest over backends and channels, stretched to white."""
    base = responses[reference]
    diff = np.zeros(base.shape[:2])
    for name, response in responses.items():
        if name != reference:
            delta = np.abs(response - base)
            diff = np.maximum(diff, delta.max(axis=2) if delta.ndim == 3 else delta)
    peak = float(diff.max())
    if peak == 0.0:
        return np.zeros(diff.shape, dtype=np.uint8), f"|diff| vs {reference}: all 0"
    stretched = np.rint(diff * (255.0 / peak)).astype(np.uint8)
    return stretched, f"|diff| vs {reference}, max {peak:.2g} = white"


def label_bar(text: str, width: int, height: int = LABEL_HEIGHT) -> np.ndarray:
    """A white strip with ``text`` in black, cut short to fit ``width``."""
    import cv2

    bar = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    while text:
        (text_width, text_height), _ = cv2.getTextSize(text, font, FONT_SCALE, 1)
        if text_width <= width - 8 or len(text) <= 3:
            break
        text = text[:-4] + "..."
    baseline_y = (height + text_height) // 2
    cv2.putText(bar, text, (4, baseline_y), font, FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def text_width(text: str) -> int:
    import cv2

    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE, 1)[0][0] + 8


def labelled(panel: np.ndarray, label: str) -> np.ndarray:
    """A panel framed in grey under its label, widened if the label is wider than it."""
    framed = np.pad(panel, ((1, 1), (1, 1), (0, 0)), constant_values=FRAME)
    width = max(framed.shape[1], text_width(label))
    extra = width - framed.shape[1]
    framed = np.pad(
        framed, ((0, 0), (extra // 2, extra - extra // 2), (0, 0)), constant_values=BACKGROUND
    )
    return np.vstack([label_bar(label, width), framed])


def comparison_png(
    original: np.ndarray,
    panels: Sequence[tuple[str, np.ndarray]],
    responses: Mapping[str, np.ndarray],
    reference: str,
    title: str,
    kernel=None,
) -> np.ndarray:
    """Lay out the comparison: title above; original, the kernel's picture, each backend,
    then |diff|.

    Parameters
    ----------
    original : ndarray
        The image that was filtered.
    panels : sequence of (label, image)
        Each backend's output image, already post-processed.
    responses : mapping
        Each backend's float response, for the difference panel (shown with 2+ backends).
    reference : str
        The backend the others are compared with.
    title : str
        The line above the panels.
    kernel : Kernel, optional
        Drawn as a heatmap beside the original.

    Returns
    -------
    ndarray
        An 8-bit BGR image.
    """
    scale = panel_scale(*original.shape[:2])
    first = labelled(resize_panel(to_display(original), scale), "original")
    tiles = [first]
    if kernel is not None:
        side = max(120, min(360, first.shape[0] - LABEL_HEIGHT))
        tiles.append(kernel_picture(kernel, side))
    tiles += [labelled(resize_panel(to_display(image), scale), label) for label, image in panels]
    if len(responses) > 1:
        diff, label = difference_panel(responses, reference)
        tiles.append(labelled(resize_panel(to_display(diff), scale), label))
    height = max(tile.shape[0] for tile in tiles)
    row = []
    for tile in tiles:
        padded = np.full((height, tile.shape[1], 3), BACKGROUND, dtype=np.uint8)
        padded[: tile.shape[0]] = tile
        row += [padded, np.full((height, GAP, 3), BACKGROUND, dtype=np.uint8)]
    body = np.hstack(row[:-1])
    framed = np.vstack([label_bar(title, body.shape[1], TITLE_HEIGHT), body])
    return np.pad(framed, ((GAP, GAP), (GAP, GAP), (0, 0)), constant_values=BACKGROUND)


# --- kernels and matrices drawn the way teachers draw them ----------------------------------

POSITIVE = np.array([40.0, 40.0, 200.0])  # BGR: red for positive weights
NEGATIVE = np.array([190.0, 90.0, 20.0])  # blue for negative ones
WHITE = np.array([255.0, 255.0, 255.0])


def cell_text(value: float) -> str:
    """A weight as people write it: integers plainly, others to 3 significant digits."""
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}"


def matrix_picture(
    values: np.ndarray,
    title: str = "",
    size: int = 360,
    highlight: tuple[int, int] | None = None,
) -> np.ndarray:
    """A heatmap of a matrix with each value printed in its cell.

    Diverging colours with zero in the middle: white at 0, red for positive, blue for
    negative, scaled by the largest magnitude. ``highlight`` outlines one cell (the anchor).
    Cells too small to hold their number are left unlabelled.

    Returns
    -------
    ndarray
        An 8-bit BGR image.
    """
    import cv2

    values = np.asarray(values, dtype=np.float64)
    rows, columns = values.shape
    cell = int(np.clip(size // max(rows, columns), 6, 96))
    peak = float(np.abs(values).max()) or 1.0
    t = values / peak
    colours = np.where(
        t[..., None] >= 0,
        WHITE + (POSITIVE - WHITE) * t[..., None],
        WHITE + (NEGATIVE - WHITE) * -t[..., None],
    )
    picture = np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1).astype(np.uint8)
    for i in range(rows + 1):
        cv2.line(picture, (0, i * cell), (columns * cell, i * cell), (150, 150, 150), 1)
    for j in range(columns + 1):
        cv2.line(picture, (j * cell, 0), (j * cell, rows * cell), (150, 150, 150), 1)
    labels = [[cell_text(v) for v in row] for row in values]
    widest = max(
        cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)[0][0]
        for row in labels
        for label in row
    )
    scale = min(0.6, (cell - 8) / widest)
    if scale >= 0.3:
        for i in range(rows):
            for j in range(columns):
                _centred_text(picture, labels[i][j], (i, j), cell, scale, abs(t[i, j]) > 0.6)
    if highlight is not None:
        y, x = highlight
        cv2.rectangle(picture, (x * cell, y * cell), ((x + 1) * cell, (y + 1) * cell), (0, 0, 0), 2)
    picture = np.pad(picture, ((1, 1), (1, 1), (0, 0)), constant_values=150)
    if title:
        width = max(picture.shape[1], text_width(title))
        picture = np.vstack([label_bar(title, width), _widen(picture, width)])
    return picture


def _widen(picture: np.ndarray, width: int) -> np.ndarray:
    extra = width - picture.shape[1]
    return np.pad(picture, ((0, 0), (extra // 2, extra - extra // 2), (0, 0)),
                  constant_values=BACKGROUND)  # fmt: skip


def _centred_text(picture, text, position, cell, scale, light) -> None:
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    (width, height), _ = cv2.getTextSize(text, font, scale, 1)
    i, j = position
    origin = (j * cell + (cell - width) // 2, i * cell + (cell + height) // 2)
    colour = (255, 255, 255) if light else (0, 0, 0)
    cv2.putText(picture, text, origin, font, scale, colour, 1, cv2.LINE_AA)


def kernel_picture(kernel, size: int = 360) -> np.ndarray:
    """A `Kernel` as a heatmap: weights in their cells, the anchor outlined, name above."""
    kh, kw = kernel.shape
    title = f"{kernel.name} {kh}x{kw}, anchor ({kernel.anchor[0]}, {kernel.anchor[1]})"
    return matrix_picture(kernel.weights, title, size, highlight=kernel.anchor)


def write_kernel_picture(kernel, path) -> Path:
    """Draw ``kernel`` as a heatmap PNG into ``path`` (planned by the caller)."""
    from convkit.imageio import encode_image, write_atomic

    return write_atomic(Path(path), encode_image(kernel_picture(kernel)))
