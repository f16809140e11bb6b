"""`convkit explain --png`: one output pixel drawn the way the tutorials draw it.

For each channel a row: the neighbourhood (grey cells, padding hatched, the anchor's cell
outlined) × the kernel as placed = the products, then the sum and each step after it down to
the written value. Every number is the record's (`convkit.explain`).
"""

from __future__ import annotations

import numpy as np

from convkit.compare import (
    TITLE_SCALE,
    label_bar,
    matrix_picture,
    side_by_side,
    stacked,
    text_width,
)
from convkit.explain import ChannelWork, Explanation, explanation_lines, number_text

CELL_PX = 64  # a cell of a small matrix; larger matrices shrink to MATRIX_PX
MATRIX_PX = 360


def explanation_picture(record: Explanation) -> np.ndarray:
    """The record as a figure: a title, a row per channel, the steps beside each row.

    Returns
    -------
    ndarray
        An 8-bit BGR image.
    """
    lines = explanation_lines(record)
    rows = [_channel_row(record, channel) for channel in record.channels if not channel.carried]
    carried = [c for c in record.channels if c.carried]
    notes = [_padding_note(record)] + [
        f"{c.name}: carried through unfiltered = {number_text(c.value)}" for c in carried
    ]
    width = max(row.shape[1] for row in rows)
    title = "\n".join(lines[:2])
    title_width = max(width, max(text_width(line, TITLE_SCALE) for line in lines[:2]) + 16)
    parts = [label_bar(title, title_width, scale=TITLE_SCALE), *rows]
    parts.append(label_bar("\n".join(n for n in notes if n), title_width))
    return stacked(parts)


def _channel_row(record: Explanation, channel: ChannelWork) -> np.ndarray:
    """neighbourhood x kernel = products, and the steps."""
    kernel = record.kernel
    size = min(MATRIX_PX, CELL_PX * max(kernel.shape))
    top = 255.0 if channel.neighbourhood.max() <= 255 else 65535.0
    neighbourhood = matrix_picture(
        channel.neighbourhood, f"{channel.name}: neighbourhood", size, kernel.anchor,
        grey_top=top, shaded=record.from_padding,
    )  # fmt: skip
    weights = matrix_picture(kernel.weights, "kernel as placed", size, kernel.anchor)
    products = matrix_picture(channel.products, "products", size)
    steps = [f"{what} = {number_text(value)}" for what, value in channel.steps]
    oy, ox = record.output_at
    steps.append(f"written at ({oy}, {ox}): {number_text(channel.value)} ({record.dtype})")
    text = label_bar("\n".join(steps), max(text_width(s) for s in steps) + 16)
    return side_by_side([neighbourhood, weights, products, text], separators=["x", "=", ""])


def _padding_note(record: Explanation) -> str:
    if not record.from_padding.any():
        return "every cell lies inside the image"
    padding = record.padding
    fill = (
        f"the constant {number_text(padding.cval)}"
        if padding.mode == "constant"
        else f"'{padding.mode}' ({padding.spec.pattern})"
    )
    return f"hatched cells lie outside the image: padding fills them with {fill}"
