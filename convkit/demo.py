"""``convkit demo``: the worked examples convkit grew from, recomputed by the engine.

The inputs are the tutorials' (typed here as they appear there); every number in the
results is computed by `convolve`, none is typed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import numpy as np

from convkit.animate import encode_animation, slide_frames
from convkit.compare import (
    labelled,
    matrix_picture,
    resize_panel,
    side_by_side,
    stacked,
    to_display,
)
from convkit.engine import convolve
from convkit.kernels import TUTORIAL_BANK, Kernel, get_kernel
from convkit.postprocess import to_image

# The tutorials' inputs.
TWO_BY_TWO = {
    "flat": [[200, 200], [200, 200]],
    "horizontal edge": [[200, 200], [0, 0]],
    "vertical edge": [[200, 0], [200, 0]],
}
THREE_BY_THREE = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
SWAP_KERNEL = [[0, 1], [1, 0]]
CROSS = np.zeros((5, 5), dtype=np.uint8)
CROSS[2, :] = CROSS[:, 2] = 1
PATCH = [[93, 139, 101], [26, 252, 196], [135, 230, 18]]
ANIMATION_FPS = 1.0  # slow enough to say each frame's sum aloud


class DemoOutput(NamedTuple):
    """One file a section writes: its name in the output folder, and how to encode it."""

    name: str
    encode: Callable[[], bytes]


@dataclass
class DemoSection:
    """One worked example: its title, the lines to print, a figure and an animation to write."""

    title: str
    lines: list[str] = field(default_factory=list)
    figure: np.ndarray | None = None
    figure_name: str = ""
    animation: Sequence[np.ndarray] | None = None  # frames, as `slide_frames` draws them
    animation_name: str = ""

    def outputs(self) -> list[DemoOutput]:
        """The files to write, in order: the figure (PNG), then the animation (GIF)."""
        from convkit.imageio import encode_image

        files = []
        if self.figure is not None:
            files.append(DemoOutput(self.figure_name, partial(encode_image, self.figure)))
        if self.animation is not None:
            encode = partial(encode_animation, self.animation, ANIMATION_FPS)
            files.append(DemoOutput(self.animation_name, encode))
        return files


def format_matrix(values: np.ndarray) -> list[str]:
    """Rows of a matrix, right-aligned, integers without a decimal point."""
    cells = [[f"{v:g}" for v in row] for row in np.asarray(values, dtype=float)]
    width = max(len(c) for row in cells for c in row)
    return ["  [" + "  ".join(c.rjust(width) for c in row) + "]" for row in cells]


def edge_confidence() -> DemoSection:
    """The 2x2 edge kernels on three 2x2 images: 0/0, 800/0, 0/800."""
    section = DemoSection(
        "2x2 edge detectors on 2x2 images (padding valid)", figure_name="demo_edges.png"
    )
    kernels = [get_kernel("horizontal_edge"), get_kernel("vertical_edge")]
    rows = []
    for name, values in TWO_BY_TWO.items():
        image = np.array(values, dtype=np.uint8)
        scores = [convolve(image, k, padding="valid").item() for k in kernels]
        section.lines.append(
            f"{name:>16}: horizontal_edge {scores[0]:g}, vertical_edge {scores[1]:g}"
        )
        rows.append(side_by_side([
            matrix_picture(image, name, 140),
            matrix_picture(kernels[0].weights, f"horizontal_edge -> {scores[0]:g}", 140),
            matrix_picture(kernels[1].weights, f"vertical_edge -> {scores[1]:g}", 140),
        ]))  # fmt: skip
    section.figure = stacked(rows)
    return section


def valid_correlation() -> DemoSection:
    """[[1,2,3],[4,5,6],[7,8,9]] correlated with [[0,1],[1,0]] under valid: [[6,8],[12,14]]."""
    image = np.array(THREE_BY_THREE)
    kernel = np.array(SWAP_KERNEL, dtype=float)
    result = convolve(image, kernel, padding="valid")
    section = DemoSection("a 2x2 kernel slid over a 3x3 matrix (padding valid)",
                          figure_name="demo_valid.png",
                          animation_name="demo_valid_slide.gif")  # fmt: skip
    section.lines += ["input", *format_matrix(image), "kernel", *format_matrix(kernel)]
    section.lines += ["output", *format_matrix(result)]
    top_left = image[:2, :2]
    terms = " + ".join(f"{k:g}x{v}" for k, v in zip(kernel.ravel(), top_left.ravel(), strict=True))
    section.lines.append(f"output[0, 0] = {terms} = {result[0, 0]:g}")
    section.figure = side_by_side(
        [matrix_picture(image, "input", 240), matrix_picture(kernel, "kernel", 160),
         matrix_picture(result, "output", 160)],
        separators=["*", "="],
    )  # fmt: skip
    named = Kernel("[[0, 1], [1, 0]]", kernel)
    section.animation = slide_frames(image, named, padding="valid")
    return section


def line_detectors() -> DemoSection:
    """The 5x5 cross through the vertical-line, horizontal-line and cross detectors, with ReLU."""
    section = DemoSection("line detectors on a 5x5 cross, before and after ReLU (padding valid)",
                          figure_name="demo_cross.png",
                          animation_name="demo_cross_slide.gif")  # fmt: skip
    section.lines += ["image", *format_matrix(CROSS)]
    rows = [side_by_side([matrix_picture(CROSS, "image", 200)])]
    for name in ("vertical_line", "horizontal_line", "cross"):
        kernel = get_kernel(name)
        response = convolve(CROSS, kernel, padding="valid")
        activated = to_image(response, rescale="none", activation="relu")
        section.lines += [f"{name}: response", *format_matrix(response)]
        section.lines += [f"{name}: after ReLU", *format_matrix(activated)]
        rows.append(side_by_side(
            [matrix_picture(kernel.weights, name, 160), matrix_picture(response, "response", 160),
             matrix_picture(activated, "ReLU", 160)],
            separators=["*", ">"],
        ))  # fmt: skip
    section.figure = stacked(rows)
    section.animation = slide_frames(CROSS, "vertical_line", padding="valid", rescale="none",
                                     activation="relu")  # fmt: skip
    return section


def mean_by_hand() -> DemoSection:
    """One output pixel of a 3x3 mean filter, worked by hand: 1190 / 9 = 132.2 -> 132."""
    patch = np.array(PATCH, dtype=np.uint8)
    total = convolve(patch, np.ones((3, 3)), padding="valid").item()
    mean = convolve(patch, get_kernel("box:3"), padding="valid").item()
    rounded = to_image(np.array([[mean]])).item()
    section = DemoSection("one output pixel of a 3x3 mean filter, by hand",
                          figure_name="demo_mean.png")  # fmt: skip
    section.lines += ["patch", *format_matrix(patch)]
    section.lines.append(f"sum = {' + '.join(str(v) for v in patch.ravel())} = {total:g}")
    section.lines.append(f"mean = {total:g} / 9 = {mean:.4f} -> rounded {rounded}")
    box = get_kernel("box:3").weights
    section.figure = side_by_side(
        [matrix_picture(patch, "patch", 200), matrix_picture(box, "box:3", 200),
         matrix_picture(np.array([[rounded]]), f"{mean:.2f} -> {rounded}", 70)],
        separators=["*", "="],
    )  # fmt: skip
    return section


def tutorial_bank(photo: np.ndarray) -> DemoSection:
    """The tutorial's seven kernels on a grey photo, as one labelled grid."""
    import cv2

    gray = photo if photo.ndim == 2 else cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    section = DemoSection("the tutorial's bank of seven on a photo (grey, padding replicate)",
                          figure_name="demo_bank.png")  # fmt: skip
    tiles = [labelled(resize_panel(to_display(gray), 0.5), "original (grey)")]
    for name in TUTORIAL_BANK:
        kernel: Kernel = get_kernel(name)
        response = convolve(gray, kernel)
        policy = "abs" if abs(kernel.total) < 1e-12 else "clip"  # edge responses are signed
        tiles.append(labelled(resize_panel(to_display(to_image(response, gray, policy)), 0.5),
                              f"{name} ({policy})"))  # fmt: skip
        section.lines.append(
            f"{name:>11}: response from {response.min():g} to {response.max():g}, shown {policy}"
        )
    rows = [side_by_side(tiles[:4]), side_by_side(tiles[4:])]
    section.figure = stacked(rows)
    return section


def run_demo(photo: np.ndarray | None = None) -> list[DemoSection]:
    """All the worked examples, in the order the tutorials tell them."""
    if photo is None:
        from skimage import data  # ships Chelsea the cat: nothing is downloaded

        photo = data.chelsea()[..., ::-1]
    return [edge_confidence(), valid_correlation(), line_detectors(), mean_by_hand(),
            tutorial_bank(photo)]  # fmt: skip
