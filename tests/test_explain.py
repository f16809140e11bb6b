"""`convkit explain`: the worked pixel ends on the value that `apply` writes, on every padding
mode, with and without --flip, for odd, even and rectangular kernels, at corners and edges;
its neighbourhood and sources agree with an independent padding (numpy.pad's index
arithmetic written out here) and the sum with scipy.ndimage."""

from __future__ import annotations

import itertools
import json

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
from click.testing import CliRunner

from convkit import Kernel, UsageError
from convkit.cli import main
from convkit.explain import explain
from convkit.padding import PADDING_MODES
from convkit.pipeline import ApplySettings, apply_image
from tests.conftest import SAMPLES

KERNELS = {
    "odd 3x3": Kernel("odd", [[1, -2, 3], [0, 4, -1], [2, 1, -3]]),
    "even 2x2": Kernel("even2", [[1, 2], [3, -4]]),
    "even 4x4": Kernel("even4", np.arange(16).reshape(4, 4) - 7),
    "rect 2x5": Kernel("rect25", np.arange(10).reshape(2, 5) / 8 - 0.5),
    "rect 5x2 anchored": Kernel("rect52", np.arange(10).reshape(5, 2) / 4 - 1, anchor=(4, 0)),
}
MODES = list(PADDING_MODES)


def positions(shape, kernel: Kernel, mode: str, flip: bool):
    """Corners, edge midpoints and the centre of the pixels that have an output."""
    height, width = shape[:2]
    rows, columns = (0, height - 1), (0, width - 1)
    if mode == "valid":
        (kh, kw), (ay, ax) = kernel.shape, kernel.anchor
        if flip:
            ay, ax = kh - 1 - ay, kw - 1 - ax
        rows, columns = (ay, height - kh + ay), (ax, width - kw + ax)
    middle_row, middle_column = sum(rows) // 2, sum(columns) // 2
    ys, xs = (rows[0], middle_row, rows[1]), (columns[0], middle_column, columns[1])
    return sorted(set(itertools.product(ys, xs)))


def applied(image: np.ndarray, kernel: Kernel, tmp_path, **settings) -> np.ndarray:
    """What `apply` writes for ``image`` (PNG, or .npy under rescale none), read back."""
    source = tmp_path / "in.png"
    cv2.imwrite(str(source), image)
    out = tmp_path / "out"
    chosen = ApplySettings(out_dir=out, compare=False, backends=("filter2d",), **settings)
    report = apply_image(source, [kernel], chosen)
    written = report.results[0].output
    if written.suffix == ".npy":
        return np.load(written)
    return cv2.imread(str(written), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("flip", [False, True], ids=["correlate", "flip"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(KERNELS))
def test_the_final_value_is_what_apply_writes(name, mode, flip, tmp_path, rng):
    kernel = KERNELS[name]
    image = rng.integers(0, 256, (6, 7), dtype=np.uint8)
    settings = {"padding": mode, "flip": flip}
    if mode == "constant":
        settings["cval"] = 37
    written = applied(image, kernel, tmp_path, padding=_padding(mode, 37), flip=flip,
                      rescale="abs")  # fmt: skip
    for y, x in positions(image.shape, kernel, mode, flip):
        record = explain(image, kernel, (y, x), rescale="abs", **settings)
        oy, ox = record.output_at
        assert record.value == written[oy, ox], (y, x)
        assert record.channels[0].steps[-1] == ("round", written[oy, ox])


def _padding(mode, cval):
    from convkit.padding import make_padding

    return make_padding(mode, cval)


@pytest.mark.parametrize(
    "post",
    [
        {"rescale": "clip", "bias": 40.5, "activation": "relu"},
        {"rescale": "minmax"},
        {"rescale": "minmax", "bias": -100.0, "activation": "relu"},
        {"rescale": "none", "bias": 2.0},
    ],
    ids=["bias-relu-clip", "minmax", "relu-minmax", "none"],
)
def test_every_post_processing_step_ends_on_apply_s_pixel(post, tmp_path, rng):
    """Colour + alpha (the alpha carried), a Gaussian whose weights are not dyadic."""
    image = rng.integers(0, 256, (5, 6, 4), dtype=np.uint8)
    kernel = Kernel("g", cv2.getGaussianKernel(3, 0.8) @ cv2.getGaussianKernel(3, 0.8).T)
    written = applied(image, kernel, tmp_path, padding=_padding("reflect101", 0), **post)
    if post["rescale"] == "none":
        written = written[..., [2, 1, 0, 3]]  # .npy is RGB(A); the record is OpenCV's BGR(A)
    for y, x in positions(image.shape, kernel, "reflect101", False):
        record = explain(image, kernel, (y, x), padding="reflect101", **post)
        assert [c.name for c in record.channels][-1] == "alpha"
        assert record.channels[-1].value == image[y, x, 3]
        assert record.channels[-1].carried
        np.testing.assert_allclose(record.value, written[y, x], rtol=0, atol=1e-9)


def test_sixteen_bit_pixels_clip_to_65535(tmp_path, rng):
    image = rng.integers(0, 65536, (5, 5), dtype=np.uint16)
    kernel = Kernel("sharpen", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
    written = applied(image, kernel, tmp_path)
    record = explain(image, kernel, (2, 2))
    assert record.dtype == "uint16"
    assert record.channels[0].steps[-2][0] == "clip to 0..65535"
    assert record.value == written[2, 2]


@pytest.mark.parametrize("mode", [m for m in MODES if m != "valid"])
def test_neighbourhood_and_sources_follow_the_padding_rule(mode, rng):
    """An independent oracle: each mode's index rule written out, and scipy's sum."""
    image = rng.integers(0, 256, (3, 4), dtype=np.uint8).astype(np.float64)
    weights = rng.integers(-3, 4, (5, 5)).astype(np.float64)  # reaches past a 3-row image
    for y, x in itertools.product(range(3), range(4)):
        record = explain(image, weights, (y, x), padding=mode, cval=-2.5)
        for i, j in itertools.product(range(5), range(5)):
            row, column = y - 2 + i, x - 2 + j
            source = (_source(row, 3, mode), _source(column, 4, mode))
            outside = not (0 <= row < 3 and 0 <= column < 4)
            assert tuple(record.positions[i, j]) == (row, column)
            assert bool(record.from_padding[i, j]) == outside
            if mode == "constant" and outside:
                assert tuple(record.sources[i, j]) == (-1, -1)
                assert record.channels[0].neighbourhood[i, j] == -2.5
            else:
                assert tuple(record.sources[i, j]) == source
                assert record.channels[0].neighbourhood[i, j] == image[source]
        expected = ndi.correlate(image, weights, mode=PADDING_MODES[mode].scipy_mode, cval=-2.5)
        assert record.channels[0].steps[0] == ("sum", pytest.approx(expected[y, x], abs=1e-9))


def _source(index: int, size: int, mode: str) -> int:
    """Where ``index`` (maybe outside 0..size-1) reads from, as each mode defines it."""
    if mode in ("replicate", "constant"):
        return min(max(index, 0), size - 1)
    if mode == "wrap":
        return index % size
    period = 2 * size if mode == "reflect" else 2 * size - 2
    index %= period
    if mode == "reflect":
        return index if index < size else period - 1 - index
    return index if index < size else period - index


def test_flip_places_the_kernel_rotated_with_its_anchor():
    image = np.arange(20, dtype=np.uint8).reshape(4, 5)
    kernel = Kernel("k", [[1, 2, 3], [4, 5, 6]], anchor=(0, 0))
    record = explain(image, kernel, (1, 1), flip=True, padding="constant")
    np.testing.assert_array_equal(record.kernel.weights, [[6, 5, 4], [3, 2, 1]])
    assert record.kernel.anchor == (1, 2)
    # The anchor (1, 2) sits on pixel (1, 1): the window is rows 0..1, columns -1..1.
    np.testing.assert_array_equal(record.channels[0].neighbourhood, [[0, 0, 1], [0, 5, 6]])
    np.testing.assert_array_equal(record.from_padding, [[True, False, False]] * 2)
    # 6*0 + 5*0 + 4*1 + 3*0 + 2*5 + 1*6, by hand
    assert record.channels[0].steps[0] == ("sum", 20.0)


def test_valid_names_the_output_pixel_and_refuses_dropped_pixels():
    image = np.arange(30, dtype=np.uint8).reshape(5, 6)
    record = explain(image, np.ones((3, 3)), (1, 1), padding="valid")
    assert record.output_at == (0, 0)
    assert not record.from_padding.any()
    for at in [(0, 0), (4, 3), (2, 5)]:
        with pytest.raises(UsageError, match=r"use rows 1\.\.3 and columns 1\.\.4"):
            explain(image, np.ones((3, 3)), at, padding="valid")


@pytest.mark.parametrize("at", [(-1, 0), (0, 6), (5, 0), (1.5, 2), "1,2", (1,)])
def test_a_pixel_outside_the_image_is_refused(at):
    image = np.zeros((5, 6), dtype=np.uint8)
    with pytest.raises(UsageError):
        explain(image, np.ones((3, 3)), at)


def test_an_offset_is_its_own_step():
    kernel = Kernel("k", [[1, 1]], offset=10.5)
    record = explain(np.full((2, 2), 3, dtype=np.uint8), kernel, (0, 1))
    steps = record.channels[0].steps
    assert steps[:2] == [("sum", 6.0), ("+ offset 10.5", 16.5)]
    assert record.value == 16  # 16.5 rounds half to even


def test_text_marks_padded_cells_and_writes_the_sum_out():
    image = np.array([[10, 20], [30, 40]], dtype=np.uint8)
    lines = explain(image, [[0, 1, 0], [1, -4, 1], [0, 1, 0]], (0, 0), padding="constant").lines()
    text = "\n".join(lines)
    assert "5 cells marked * lie outside the image: padding 'constant' fills them with 0" in text
    assert "0 + 0 + 0 + 0 - 40 + 20 + 0 + 30 + 0 = 10" in text
    assert "grey at output (0, 0) = 10 (uint8)" in text


def test_the_figure_draws_and_shows_in_a_notebook():
    image = np.arange(25, dtype=np.uint8).reshape(5, 5)
    record = explain(image, "sobel_x", (0, 4), padding="wrap")
    picture = record.picture()
    assert picture.dtype == np.uint8 and picture.ndim == 3
    png = record._repr_png_()
    assert png.startswith(b"\x89PNG")
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.shape == picture.shape


# --- the command line ---------------------------------------------------------------------


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


JSON_KEYS = {
    "image", "image_shape", "at", "output_at", "kernel", "padding", "positions", "sources",
    "from_padding", "rescale", "bias", "activation", "dtype", "channels", "value",
}  # fmt: skip


def test_cli_json_record_matches_apply(tmp_path):
    photo = SAMPLES / "chelsea.png"
    result = run_cli("explain", photo, "-k", "sharpen", "--at", "0,450", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert set(record) == JSON_KEYS
    assert set(record["kernel"]) == {"name", "shape", "weights", "anchor", "offset", "flipped"}
    assert [c["name"] for c in record["channels"]] == ["blue", "green", "red"]
    assert set(record["channels"][0]) == {"name", "neighbourhood", "products", "steps", "value"}
    out = tmp_path / "out"
    done = run_cli("apply", photo, "-k", "sharpen", "--no-compare", "-b", "filter2d", "-o", out)
    assert done.exit_code == 0, done.output
    written = cv2.imread(str(out / "chelsea_sharpen.png"))
    assert record["value"] == written[0, 450].tolist()


def test_cli_gray_and_png(tmp_path):
    figure = tmp_path / "pixel.png"
    result = run_cli("explain", SAMPLES / "chelsea.png", "-k", "box:3", "--at", "5,5", "--gray",
                     "--png", figure)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "grey: neighbourhood:" in result.output
    assert f"wrote {figure}" in result.output
    assert cv2.imread(str(figure)).shape[0] > 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "300,0"], "outside the 451x300 image: rows 0..299"),
        (["--at", "0,0", "--padding", "valid"], "has no output under padding 'valid'"),
        (["--at", "1"], "is not Y,X"),
        (["--at", "1,x"], "is not Y,X"),
        (["--at", "1,1", "-k", "sobel_x,sobel_y"], "names 2 kernels"),
    ],
)
def test_cli_refusals_are_one_line_with_exit_2(args, message):
    base = ["explain", SAMPLES / "chelsea.png"]
    if "-k" not in args:
        base += ["-k", "sharpen"]
    result = run_cli(*base, *args)
    assert result.exit_code == 2
    assert message in result.output


def test_cli_png_never_replaces_the_image(tmp_path):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((4, 4), np.uint8))
    before = image.read_bytes()
    result = run_cli("explain", image, "-k", "sharpen", "--at", "1,1", "--png", image)
    assert result.exit_code == 2
    assert image.read_bytes() == before


# --- hostile input ----------------------------------------------------------------------------


def test_a_name_with_a_newline_and_markup_stays_on_its_line(tmp_path):
    image = tmp_path / "a\n[bold]b.png"
    cv2.imwrite(str(tmp_path / "plain.png"), np.full((3, 3), 9, np.uint8))
    (tmp_path / "plain.png").rename(image)
    result = run_cli("explain", image, "-k", "box:3", "--at", "1,1")
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith("pixel (row 1, column 1) of ") and "\\n[bold]b.png" in first
    record = json.loads(run_cli("explain", image, "-k", "box:3", "--at", "1,1", "--json").output)
    assert record["image"] == str(image)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_non_finite_pixel_is_refused_not_explained_as_a_number(value):
    image = np.ones((3, 3))
    image[1, 1] = value
    with pytest.raises(UsageError):
        explain(image, np.ones((3, 3)), (1, 1))


def test_huge_coordinates_are_a_usage_error():
    result = run_cli("explain", SAMPLES / "chelsea.png", "-k", "sharpen", "--at",
                     "99999999999999999999999,0")  # fmt: skip
    assert result.exit_code == 2
    assert "outside the 451x300 image" in result.output


def test_png_must_be_a_png_and_is_written_before_anything_is_printed(tmp_path):
    result = run_cli("explain", SAMPLES / "chelsea.png", "-k", "sharpen", "--at", "1,1",
                     "--png", tmp_path / "x.jpg")  # fmt: skip
    assert result.exit_code == 2
    assert (
        result.output
        == f"Error: --png '{tmp_path / 'x.jpg'}': the figure is a PNG: give a path ending .png\n"
    )
    blocked = tmp_path / "file"
    blocked.write_text("")
    result = run_cli("explain", SAMPLES / "chelsea.png", "-k", "sharpen", "--at", "1,1", "--json",
                     "--png", blocked / "x.png")  # fmt: skip
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "{" not in result.output
    assert list(tmp_path.iterdir()) == [blocked]
