"""`convkit.animate`: one frame per output pixel, all the same size, every number from
`explain`; the GIF read back with Pillow; the refusals (over 16x16, bad crops, bad fps)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageSequence

from convkit import Kernel, UsageError
from convkit.animate import (
    ANIMATE_MAX_SIDE,
    LAST_FRAME_SECONDS,
    crop,
    encode_animation,
    padded_input,
    slide_frames,
    write_animation,
)
from convkit.engine import convolve
from convkit.explain import explain
from convkit.padding import make_padding, pad_image
from convkit.postprocess import to_image

IMAGE = np.array(
    [[10, 20, 30, 40, 50], [60, 70, 80, 90, 100], [110, 120, 130, 140, 150], [5, 15, 25, 35, 45]],
    dtype=np.uint8,
)  # 4 rows, 5 columns
SHARPEN = [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]
RECT = Kernel("rect", [[1, 0, -1], [2, 0, -2]], anchor=(1, 2))  # even height, off-centre


@pytest.mark.parametrize(
    ("kernel", "padding", "expected"),
    [
        pytest.param(SHARPEN, "replicate", 20, id="3x3 replicate: H*W"),
        pytest.param(SHARPEN, "valid", 2 * 3, id="3x3 valid"),
        pytest.param([[0, 1], [1, 0]], "valid", 3 * 4, id="2x2 valid"),
        pytest.param(RECT, "constant", 20, id="2x3 anchored constant"),
        pytest.param(RECT, "valid", 3 * 3, id="2x3 anchored valid"),
    ],
)
def test_one_frame_per_output_pixel_all_the_same_size(kernel, padding, expected):
    frames = slide_frames(IMAGE, kernel, padding=padding)
    assert len(frames) == expected
    shapes = {frame.shape for frame in frames}
    assert len(shapes) == 1
    (shape,) = shapes
    assert shape[2] == 3 and frames[0].dtype == np.uint8


def test_frames_go_row_by_row_and_under_valid_start_at_the_anchor():
    frames = slide_frames(IMAGE, RECT, padding="valid")
    assert [r.output_at for r in frames.records][:4] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert frames.records[0].at == (1, 2)  # the placed anchor


def test_a_5x5_image_makes_a_frame_a_slide_can_hold():
    frames = slide_frames(np.arange(25, dtype=np.uint8).reshape(5, 5) * 10, SHARPEN)
    height, width = frames[0].shape[:2]
    assert 600 <= width <= 1000 and height <= 800


@pytest.mark.parametrize("padding", ["replicate", "constant", "reflect", "reflect101", "wrap"])
def test_the_padded_grid_is_the_engines_padding(padding):
    records = slide_frames(IMAGE, RECT, padding=padding, cval=9).records
    origin, values, padded = padded_input(records)
    mode = make_padding(padding, 9)
    expected = pad_image(IMAGE.astype(float), RECT.shape, RECT.anchor, mode)
    assert origin == (-1, -2)
    np.testing.assert_array_equal(values[0], expected)
    assert padded.sum() == expected.size - IMAGE.size


@pytest.mark.parametrize("flip", [False, True], ids=["correlate", "flip"])
def test_the_sum_written_ends_on_the_value_apply_writes(flip):
    frames = slide_frames(IMAGE, RECT, padding="reflect", flip=flip, bias=-20, activation="relu")
    written = to_image(convolve(IMAGE, RECT, padding="reflect", flip=flip), IMAGE,
                       bias=-20, activation="relu")  # fmt: skip
    for index, record in enumerate(frames.records):
        y, x = record.output_at
        worked = explain(IMAGE, RECT, at=(y, x), padding="reflect", flip=flip, bias=-20,
                         activation="relu")  # fmt: skip
        text = frames.sum_text(index)
        total = worked.channels[0].steps[0][1]
        assert text.startswith(f"= {total:g}  ->  + bias -20: ")
        assert text.endswith(f"round: {worked.value:g}")
        assert worked.value == written[y, x]


def test_a_colour_image_gets_a_row_per_channel_and_leaves_alpha_out():
    grey = slide_frames(IMAGE, SHARPEN)[0]
    bgra = np.dstack([IMAGE, IMAGE, IMAGE, np.full_like(IMAGE, 255)])
    frames = slide_frames(bgra, SHARPEN, channel_names=("blue", "green", "red", "alpha"))
    assert len(frames) == IMAGE.size
    assert frames[0].shape[0] > 2.5 * grey.shape[0]
    assert frames.sum_text(3, channel=2) == frames.sum_text(3, channel=0)


def test_large_kernels_are_drawn_beside_the_grid_and_summed_in_one_line():
    frames = slide_frames(IMAGE, "box:5", padding="constant")
    assert len({f.shape for f in frames[:2] + frames[-1:]}) == 1
    assert frames.sum_text(0).startswith("= ")


def test_the_gif_has_every_frame_loops_and_holds_the_last(tmp_path):
    frames = slide_frames(IMAGE[:3, :3], SHARPEN)
    path = write_animation(frames, tmp_path / "slide.gif", fps=4)
    assert path == tmp_path / "slide.gif"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slide.gif"]  # no temporary left
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 9
        assert gif.size == (frames[0].shape[1], frames[0].shape[0])
        assert gif.info["loop"] == 0
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(gif)]
        last = np.asarray(gif.convert("RGB"))[..., ::-1]
    assert durations[:-1] == [250] * 8 and durations[-1] == LAST_FRAME_SECONDS * 1000
    assert np.abs(last.astype(int) - frames[-1]).max() <= 32  # the palette's nearest colours


def test_the_gif_keeps_the_weight_colours():
    frames = slide_frames(IMAGE[:3, :3], SHARPEN)
    with Image.open(io.BytesIO(encode_animation(frames, 2))) as gif:
        gif.seek(4)
        shown = np.asarray(gif.convert("RGB"))[..., ::-1].astype(int)
    red = (shown[..., 2] > 150) & (shown[..., 1] < 90) & (shown[..., 0] < 90)
    blue = (shown[..., 0] > 150) & (shown[..., 2] < 90)
    assert red.sum() > 50 and blue.sum() > 50  # the 5 and the four -1 tags


def test_images_over_16x16_are_refused_with_a_crop_suggested():
    side = ANIMATE_MAX_SIDE
    assert len(slide_frames(np.zeros((side, 2)), SHARPEN)) == 2 * side
    assert len(slide_frames(np.zeros((2, side)), SHARPEN)) == 2 * side
    with pytest.raises(UsageError, match=r"is 18x17: .* --crop Y,X,H,W, e\.g\. --crop 0,1,16,16"):
        slide_frames(np.zeros((17, 18)), SHARPEN)


def test_crop_takes_a_part_inside_the_image():
    np.testing.assert_array_equal(crop(IMAGE, (1, 2, 2, 3)), IMAGE[1:3, 2:5])
    assert crop(IMAGE, (0, 0, 4, 5)).shape == (4, 5)


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((0, 0, 0, 2), "the height and width must be 1 or more"),
        ((-1, 0, 2, 2), r"reaches outside the 5x4 image: rows 0..3 and columns 0..4"),
        ((3, 0, 2, 2), r"--crop 3,0,2,2 reaches outside .* Y\+H <= 4"),
        ((0, 4, 1, 2), r"X\+W <= 5"),
        ((0, 0, 1.5, 2), "four whole numbers"),
        ((0, 0, 1), "four whole numbers"),
    ],
)
def test_bad_crops_are_one_line_usage_errors(box, message):
    with pytest.raises(UsageError, match=message) as error:
        crop(IMAGE, box)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("fps", [0, -1, 51, float("nan"), "fast"])
def test_fps_outside_its_range_is_refused(fps):
    frames = [np.zeros((4, 4, 3), np.uint8)]
    with pytest.raises(UsageError, match="--fps"):
        encode_animation(frames, fps)


def test_frames_of_different_sizes_are_refused():
    frames = [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)]
    with pytest.raises(UsageError, match="frame 0 is 4x4, the last 5x4"):
        encode_animation(frames, 2)
    with pytest.raises(UsageError, match="at least one frame"):
        encode_animation([], 2)


def test_a_kernel_shows_as_its_heatmap_in_jupyter():
    png = Kernel("k", SHARPEN)._repr_png_()
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.format == "PNG" and min(picture.size) > 100
