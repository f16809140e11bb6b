"""The pictures: kernel heatmaps and the comparison layout."""

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from convkit.cli import main
from convkit.compare import (
    LABEL_MAX_WIDTH,
    LABEL_SCALE,
    MID_GREY,
    OUTLINE,
    TITLE_SCALE,
    cell_labels,
    cell_text,
    comparison_png,
    constant_value,
    detail_region,
    fit_text,
    kernel_picture,
    label_bar,
    labelled,
    matrix_picture,
    panel_geometry,
    text_width,
)
from convkit.kernels import get_kernel


def _cell_colour(picture, grid_shape, rows, columns, i, j):
    # the grid is at the bottom of the picture, centred: find it from its own shape
    body = picture[picture.shape[0] - grid_shape[0] + 1 : -1, :]
    cell = (grid_shape[0] - 2) // rows
    left = (body.shape[1] - cell * columns) // 2
    return body[i * cell + 3, left + j * cell + 3].astype(int)  # a corner pixel, away from text


def test_diverging_colours_zero_is_white_positive_red_negative_blue():
    kernel = get_kernel("sobel_x")
    picture = kernel_picture(kernel, size=300)
    grid = matrix_picture(kernel.weights, size=300).shape
    b, g, r = _cell_colour(picture, grid, 3, 3, 1, 2)  # +2: the strongest red
    assert r > 150 and b < 100
    b, g, r = _cell_colour(picture, grid, 3, 3, 1, 0)  # -2: the strongest blue
    assert b > 150 and r < 100
    assert (_cell_colour(picture, grid, 3, 3, 0, 1) == 255).all()  # 0: white


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


# --- pictures that read at any size ---------------------------------------------------------

RED, GREEN, BLUE = (0, 0, 255), (0, 255, 0), (255, 0, 0)


def _solid(shape, colour):
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (*shape, 3)).copy()


def _noise(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, size=shape).astype(np.uint8)


def _colour_boxes(picture, colour):
    """(x, y, width, height, area) of each connected patch of exactly ``colour``."""
    mask = (picture == np.array(colour, dtype=np.uint8)).all(axis=2).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    return [tuple(int(v) for v in stats[i]) for i in range(1, count)]


def _union(boxes):
    left = min(x for x, _, _, _, _ in boxes)
    top = min(y for _, y, _, _, _ in boxes)
    right = max(x + w for x, _, w, _, _ in boxes)
    bottom = max(y + h for _, y, _, h, _ in boxes)
    return right - left, bottom - top


def _solid_comparison(height, width):
    """Original red, two backends green and blue (with a non-constant response each)."""
    response = _noise((height, width), 1).astype(float)
    panels = [("naive  1.0 ms", _solid((height, width), GREEN)),
              ("filter2d  0.1 ms", _solid((height, width), BLUE))]  # fmt: skip
    responses = {"naive": response, "filter2d": response}
    return comparison_png(_solid((height, width), RED), panels, responses, "naive", "t",
                          kernel=get_kernel("sharpen"))  # fmt: skip


@pytest.mark.parametrize("height, width", [(40, 8000), (8000, 40), (2, 2), (1, 8000)])
def test_every_panel_of_a_strip_or_a_tiny_image_is_at_least_160_px_and_the_picture_bounded(
    height, width
):
    picture = _solid_comparison(height, width)
    assert max(picture.shape[:2]) <= 4000
    for colour in (RED, GREEN, BLUE):
        boxes = _colour_boxes(picture, colour)
        panel_width, panel_height = _union(boxes)  # a cut strip's pieces, gaps included
        assert min(panel_width, panel_height) >= 160
        # the image is all there, at 1:1 or enlarged: no detail crop is needed
        assert sum(area for *_, area in boxes) >= height * width


def test_an_8000_by_40_image_is_drawn_at_1_to_1_in_rows_one_panel_under_another():
    picture = _solid_comparison(40, 8000)
    pieces = _colour_boxes(picture, RED)
    assert len(pieces) == 5 and all(h == 40 for _, _, _, h, _ in pieces)
    assert sum(w for _, _, w, _, _ in pieces) == 8000
    green_top = min(y for _, y, _, _, _ in _colour_boxes(picture, GREEN))
    assert green_top > max(y + h for _, y, _, h, _ in pieces)  # the next panel is below


def test_a_large_photo_gets_480_px_panels_and_a_256_px_detail_at_1_to_1():
    picture = _solid_comparison(1080, 1920)
    assert max(picture.shape[:2]) <= 4000
    for colour in (RED, GREEN, BLUE):
        boxes = sorted(_colour_boxes(picture, colour), key=lambda box: -box[4])
        overview, crop = boxes[0], boxes[1]
        assert min(overview[2:4]) >= 160 and max(overview[2:4]) <= 480
        assert crop[2:4] == (256, 256)


@pytest.mark.parametrize(
    "height, width", [(1, 1), (2, 2), (5, 5), (100, 290), (300, 451), (1080, 1920), (40, 8000),
                      (8000, 40), (1, 8000), (1000, 20000), (400, 1600), (3000, 4000)],
)  # fmt: skip
def test_panel_geometry_keeps_every_panel_between_160_and_1600_px(height, width):
    geometry = panel_geometry(height, width)
    shape = geometry.panel_shape(height, width)
    assert min(shape) >= 160 and max(shape) <= 1600
    assert geometry.stacked == (width > 3 * height)
    if geometry.scale > 1:
        assert geometry.scale == int(geometry.scale)  # whole pixels, nearest neighbour


def test_valid_padding_outputs_smaller_than_the_original_still_get_160_px():
    image = np.array([[200, 200], [0, 0]], dtype=np.uint8)
    response = np.array([[3.0]])
    panels = [("naive", _solid((1, 1), GREEN)), ("filter2d", _solid((1, 1), BLUE))]
    picture = comparison_png(image, panels, {"naive": response, "filter2d": response}, "naive",
                             "t")  # fmt: skip
    for colour in (GREEN, BLUE):
        assert min(_union(_colour_boxes(picture, colour))) >= 160


def test_detail_region_lies_inside_the_image_and_is_deterministic():
    rng = np.random.default_rng(3)
    for shape in [(2, 2), (5, 5), (40, 8000), (8000, 40), (300, 451, 3), (1080, 1920)]:
        response = rng.normal(size=shape)
        y, x, h, w = detail_region(response)
        assert (h, w) == (min(256, shape[0]), min(256, shape[1]))
        assert 0 <= y <= shape[0] - h and 0 <= x <= shape[1] - w
        assert detail_region(response.copy()) == (y, x, h, w)
    assert detail_region(np.zeros((600, 900)), size=100) == (250, 400, 100, 100)  # centred


@pytest.mark.parametrize("spot", [(900, 1700), (0, 0), (1079, 1919), (540, 10)])
def test_detail_region_contains_a_bright_spot_on_a_flat_image(spot):
    response = np.full((1080, 1920, 3), 40.0)
    response[spot] = 255.0
    y, x, h, w = detail_region(response)
    assert y <= spot[0] < y + h and x <= spot[1] < x + w


def test_detail_region_picks_the_strongest_of_two_responses():
    response = np.zeros((1000, 3000))
    response[200:203, 300:303] = 10.0
    response[800:803, 2500:2503] = 100.0
    y, x, h, w = detail_region(response, size=128)
    assert y <= 801 < y + h and x <= 2501 < x + w


def test_detail_region_ignores_nan_and_infinite_values():
    response = np.zeros((500, 500))
    response[:10, :10] = np.nan
    response[-10:, -10:] = np.inf
    response[250, 250] = 5.0
    y, x, h, w = detail_region(response, size=64)
    assert y <= 250 < y + h and x <= 250 < x + w


def _find(picture, block):
    """Where ``block`` sits in ``picture`` pixel for pixel, or None."""
    probe = block[:24, :24]
    scores = cv2.matchTemplate(picture, probe, cv2.TM_SQDIFF)
    # an exact match scores about 0 (float rounding); any other place millions
    for y, x in zip(*np.nonzero(scores < 1000), strict=True):
        if np.array_equal(picture[y : y + block.shape[0], x : x + block.shape[1]], block):
            return int(y), int(x)
    return None


def test_the_detail_crop_is_each_panels_pixels_at_1_to_1():
    original = _noise((600, 900, 3), 0)
    naive, fast = _noise((600, 900, 3), 1), _noise((600, 900), 2)
    responses = {"naive": naive.astype(float), "filter2d": naive.astype(float)}
    panels = [("naive  1.0 ms", naive), ("filter2d  0.1 ms", fast)]
    picture = comparison_png(original, panels, responses, "naive", "t")
    y, x, h, w = detail_region(responses["naive"])
    for image in (original, naive, cv2.cvtColor(fast, cv2.COLOR_GRAY2BGR)):
        assert _find(picture, image[y : y + h, x : x + w]) is not None


def test_a_region_given_is_the_one_shown_and_outlined():
    original = _noise((700, 1000, 3), 4)
    responses = {"filter2d": original.astype(float)}
    region = (100, 600, 200, 256)
    picture = comparison_png(original, [("filter2d", original)], responses, "filter2d", "t",
                             detail=region)  # fmt: skip
    assert _find(picture, original[100:300, 600:856]) is not None
    outline = (picture == np.array(OUTLINE, dtype=np.uint8)).all(axis=2)
    assert outline.sum() > 2 * 4 * 50  # a rectangle on each of the two panels


def test_a_backend_that_ran_on_the_region_only_is_drawn_as_its_crop_and_compared_there():
    original = _noise((700, 1000), 5)
    whole = original.astype(float)
    region = (300, 400, 256, 256)
    crop = whole[300:556, 400:656] + 0.5  # a reference that differs by 0.5 on its crop
    responses = {"filter2d": whole, "naive": crop}
    panels = [("filter2d  1 ms", original), ("naive, 256x256 crop", _noise((256, 256), 6))]
    picture = comparison_png(original, panels, responses, "naive", "t", detail=region)
    assert _find(picture, cv2.cvtColor(panels[1][1], cv2.COLOR_GRAY2BGR)) is not None
    white = _colour_boxes(picture, (255, 255, 255))
    assert any(box[2:4] == (256, 256) for box in white)  # |diff| 0.5 everywhere on the crop


def test_a_constant_response_is_drawn_mid_grey():
    image = _noise((200, 300), 7)
    responses = {"naive": np.full((200, 300), 7.0), "filter2d": np.full((200, 300), 7.0)}
    black = np.zeros((200, 300), dtype=np.uint8)  # what a min..max stretch makes of it
    panels = [("naive", black), ("filter2d", black)]
    picture = comparison_png(image, panels, responses, "naive", "t", rescale="minmax")
    grey = [box for box in _colour_boxes(picture, (MID_GREY,) * 3) if box[2:4] == (300, 200)]
    assert len(grey) == 2
    assert comparison_png(image, panels, responses, "naive", "t").tobytes() == picture.tobytes()


def test_a_constant_response_under_clip_shows_its_value():
    image = _noise((200, 300), 7)
    responses = {"filter2d": np.full((200, 300), 800.0)}
    white = np.full((200, 300), 255, dtype=np.uint8)
    picture = comparison_png(image, [("filter2d", white)], responses, "filter2d", "t",
                             rescale="clip")  # fmt: skip
    assert not any(box[2:4] == (300, 200) for box in _colour_boxes(picture, (MID_GREY,) * 3))
    assert constant_value(responses["filter2d"]) == 800.0


def _cells(picture, grid_shape, rows, columns):
    """Each cell's interior, the grid found at the bottom-centre of ``picture``."""
    grid = picture[picture.shape[0] - grid_shape[0] + 1 : -1]
    left = (picture.shape[1] - grid_shape[1]) // 2 + 1
    cell = (grid_shape[0] - 2) // rows
    for i in range(rows):
        for j in range(columns):
            yield (i, j), grid[i * cell + 4 : (i + 1) * cell - 3,
                               left + j * cell + 4 : left + (j + 1) * cell - 3]  # fmt: skip


@pytest.mark.parametrize("name", ["motion:9:30", "gaussian:15:3", "log:9:1.4", "sharpen"])
def test_every_cell_of_a_kernel_heatmap_holds_its_number(name):
    kernel = get_kernel(name)
    for size in (160, 360):
        picture = kernel_picture(kernel, size)
        grid_shape = matrix_picture(kernel.weights, size=size).shape
        for (i, j), area in _cells(picture, grid_shape, *kernel.shape):
            fill = area[1, 1].astype(int)  # a corner, above the number
            glyph = (np.abs(area.astype(int) - fill).max(axis=2) > 80).sum()
            assert glyph >= 8, f"cell {i},{j} of {name} at size {size} has no number"


def test_heatmap_numbers_get_fewer_digits_and_larger_cells_when_they_must():
    labels, scale, cell = cell_labels(get_kernel("motion:9:30").weights, 40)
    assert labels[4][4] == "0.11" and labels[0][0] == "0"
    assert scale >= 0.45 and cell > 40
    labels, scale, cell = cell_labels(np.array([[1.0, -2.0]]), 96)
    assert labels == [["1", "-2"]] and cell == 96


def test_a_kernel_too_large_for_numbers_says_so_in_its_caption():
    small = kernel_picture(get_kernel("gaussian:15:3"), 360)
    large = kernel_picture(get_kernel("gaussian:31:5"), 360)
    large_grid = matrix_picture(get_kernel("gaussian:31:5").weights, size=360)
    small_grid = matrix_picture(get_kernel("gaussian:15:3").weights, size=360)
    assert large.shape[0] - large_grid.shape[0] >= 2 * 22  # + "no numbers: over 15x15 cells"
    assert small.shape[0] - small_grid.shape[0] < 2 * 22  # the name alone


@pytest.mark.parametrize("scale", [LABEL_SCALE, TITLE_SCALE])
def test_label_capitals_are_at_least_12_px_tall(scale):
    bar = label_bar("HEIGHT 0123", 300, scale=scale)
    rows = np.nonzero((bar < 128).any(axis=(1, 2)))[0]
    assert rows.max() - rows.min() + 1 >= 12


def test_long_labels_are_shortened_in_the_middle_and_never_cut_off():
    name = "a_very_long_kernel_file_name_from_the_lab_archive_final_v2.txt"
    shown = fit_text(name, 200)
    assert "..." in shown and shown.startswith("a_very") and shown.endswith("v2.txt")
    assert text_width(shown) - 8 <= 200
    bar = label_bar(f"{name}  12.5 ms\nsecond line {name}", 200)
    ink_columns = np.nonzero((bar < 128).any(axis=(0, 2)))[0]
    assert ink_columns.max() < 200 - 2  # the text stops before the edge: shortened, not cut
    assert fit_text("caf\u00e9.png", 300) == "caf?.png"  # the Hershey fonts draw ASCII only


def test_a_label_widens_its_panel_up_to_a_limit_then_is_shortened():
    panel = np.zeros((200, 160, 3), dtype=np.uint8)
    assert labelled(panel, "naive").shape[1] == 162  # the panel and its frame
    tile = labelled(panel, "x" * 300)
    assert tile.shape[1] == LABEL_MAX_WIDTH
    ink = np.nonzero((tile[:28] < 128).any(axis=(0, 2)))[0]
    assert ink.min() >= 2 and ink.max() < tile.shape[1] - 2  # inside its tile: no overlap


def test_the_title_breaks_at_its_separators_when_the_picture_is_narrow():
    image = _noise((2, 2), 9)
    title = "kernel (3x3)  |  padding replicate  |  convolution (flipped)  |  rescale minmax"
    picture = comparison_png(image, [], {}, "naive", title)
    assert picture.shape[1] < 400
    top = (picture[:120] < 128).any(axis=(1, 2))
    lines = np.count_nonzero(np.diff(top.astype(int)) == 1)
    assert lines >= 3
