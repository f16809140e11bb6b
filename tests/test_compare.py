"""The pictures: kernel heatmaps and the comparison layout."""

import cv2
import numpy as np
from click.testing import CliRunner

from convkit.cli import main
from convkit.compare import cell_text, comparison_png, kernel_picture, matrix_picture
from convkit.kernels import get_kernel


def _cell_colour(picture, rows, columns, i, j, title_height=26):
    body = picture[title_height + 1 : -1, :]
    # the grid is centred in the picture: find it from the kernel's shape
    cell = (body.shape[0]) // rows
    left = (body.shape[1] - cell * columns) // 2
    return body[i * cell + 3, left + j * cell + 3].astype(int)  # a corner pixel, away from text


def test_diverging_colours_zero_is_white_positive_red_negative_blue():
    picture = kernel_picture(get_kernel("sobel_x"), size=300)
    b, g, r = _cell_colour(picture, 3, 3, 1, 2)  # +2: the strongest red
    assert r > 150 and b < 100
    b, g, r = _cell_colour(picture, 3, 3, 1, 0)  # -2: the strongest blue
    assert b > 150 and r < 100
    assert (_cell_colour(picture, 3, 3, 0, 1) == 255).all()  # 0: white


def test_cell_text_is_how_people_write_weights():
    assert [cell_text(v) for v in (2.0, -1.0, 1 / 49, 0.5, 1e-7)] == [
        "2",
        "-1",
        "0.0204",
        "0.5",
        "1e-07",
    ]


def test_numbers_are_drawn_in_cells_big_enough_and_not_in_tiny_ones():
    small = matrix_picture(np.array([[1.0, -1.0]]), size=200)
    blank = matrix_picture(np.ones((60, 60)), size=200)
    dark_in_small = (small < 100).any(axis=2).sum()
    assert dark_in_small > 20  # glyphs
    assert (blank[:, :, 2] > 100).all()  # all cells the same colour, no glyphs


def test_comparison_carries_the_kernel_picture():
    image = np.full((40, 60), 128, dtype=np.uint8)
    responses = {"naive": image.astype(float), "filter2d": image.astype(float)}
    panels = [("naive", image), ("filter2d", image)]
    without = comparison_png(image, panels, responses, "naive", "t")
    with_kernel = comparison_png(
        image, panels, responses, "naive", "t", kernel=get_kernel("sharpen")
    )
    assert with_kernel.shape[1] > without.shape[1] + 100


def test_kernels_png_writes_one_picture_per_kernel(tmp_path):
    result = CliRunner().invoke(
        main, ["kernels", "sobel_x", "gaussian:5:1.4", "--png", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gaussian-5-1.4.png", "sobel_x.png"]
    assert cv2.imread(str(tmp_path / "sobel_x.png")) is not None


def test_kernels_png_needs_names(tmp_path):
    result = CliRunner().invoke(main, ["kernels", "--png", str(tmp_path)])
    assert result.exit_code == 2 and "add NAMES" in result.output
