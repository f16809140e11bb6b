"""The --kernel syntax borrowed from ImageMagick and the shell: comma lists of kernel names,
ImageMagick's old style of N*N bare numbers, and ImageMagick's default origin."""

import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import convkit
from convkit import parse_kernel
from convkit.cli import main
from convkit.errors import KernelError, KernelParseError
from convkit.kernel_files import imagemagick_origin, looks_inline, resolve_kernel, resolve_kernels
from convkit.kernels import BANK, TUTORIAL_BANK, expand_kernel_names, split_kernel_list

# --- comma lists of kernel names -------------------------------------------------------------


def names(values):
    return [k.name for k in resolve_kernels(values)]


def test_a_comma_list_of_bank_names_is_several_kernels():
    first, second = resolve_kernels(["sobel_x,sobel_y"])
    assert (first.name, second.name) == ("sobel_x", "sobel_y")
    np.testing.assert_array_equal(first.weights, BANK["sobel_x"].weights)
    np.testing.assert_array_equal(second.weights, BANK["sobel_y"].weights)


def test_a_list_may_hold_parametric_names_and_spaces():
    assert names(["sobel_x, gaussian:5:1.4 ,motion:9:-30,box:2"]) == [
        "sobel_x",
        "gaussian:5:1.4",
        "motion:9:-30",
        "box:2",
    ]


def test_all_inside_a_list_is_the_tutorials_seven():
    assert names(["identity,all"]) == ["identity", *TUTORIAL_BANK]


def test_repeated_names_in_lists_get_numbered():
    assert names(["sharpen,sharpen", "sharpen"]) == ["sharpen", "sharpen-2", "sharpen-3"]


def test_inline_kernels_around_a_list_keep_their_numbers():
    assert names(["1,2,1", "sobel_x,sobel_y", "1;2", "emboss"]) == [
        "inline1",
        "sobel_x",
        "sobel_y",
        "inline2",
        "emboss",
    ]


def test_an_unknown_name_in_a_list_gets_did_you_mean():
    with pytest.raises(KernelError, match=r"unknown kernel 'sobelx': did you mean sobel_x"):
        resolve_kernels(["sobel_x,sobelx"])


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("sobel_x,1", "'1' is not a kernel name"),
        ("sobel_x,", "item 2 is empty"),
        ("gaussian:5,1.4", "'1.4' is not a kernel name"),
        ("sobel_x,edges.txt", "'edges.txt' is not a kernel name, and there is no file"),
    ],
)
def test_a_list_with_something_else_than_names_names_it(value, what):
    with pytest.raises(KernelError, match=re.escape(f"kernel list {value!r}: {what}")):
        resolve_kernels([value])


def test_a_file_whose_name_holds_commas_is_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a,b.txt").write_text("1 -1\n")
    [kernel] = resolve_kernels(["a,b.txt"])
    assert kernel.name == "a,b" and kernel.source is not None
    np.testing.assert_array_equal(kernel.weights, [[1, -1]])
    # Even when every part of its name is shaped like a kernel name.
    (tmp_path / "sobel_x,sobel_y").write_text("2 2\n")
    [named] = resolve_kernels(["sobel_x,sobel_y"])
    np.testing.assert_array_equal(named.weights, [[2, 2]])
    [at] = resolve_kernels(["@a,b.txt"])
    np.testing.assert_array_equal(at.weights, [[1, -1]])


def test_a_missing_file_with_commas_says_there_is_no_such_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KernelError, match=r"there is no file 'a,b.txt'"):
        resolve_kernels(["a,b.txt"])


@pytest.mark.parametrize(
    ("value", "shape"),
    [("1,2,1", (1, 3)), ("1,-2,1", (1, 3)), ("0,-1,0; -1,5,-1; 0,-1,0", (3, 3)), ("1,nan", None)],
)
def test_inline_matrices_with_commas_stay_matrices(value, shape):
    assert split_kernel_list(value) is None and looks_inline(value)
    if shape is None:
        with pytest.raises(KernelParseError, match="'nan' is not a finite number"):
            resolve_kernels([value])
    else:
        [kernel] = resolve_kernels([value])
        assert kernel.name == "inline1" and kernel.shape == shape


def test_name_lists_do_not_look_inline():
    assert not looks_inline("sobel_x,sobel_y")
    assert not looks_inline("all,gaussian:5:1.4")
    assert expand_kernel_names("sobel_x,all") == ["sobel_x", *TUTORIAL_BANK]


def test_one_kernel_wanted_refuses_a_list():
    with pytest.raises(KernelError, match=r"'sobel_x,sobel_y' is a list of 2 kernels"):
        resolve_kernel("sobel_x,sobel_y", "inline")
    with pytest.raises(KernelError, match=r"is a list of 2 kernels"):
        convkit.convolve(np.zeros((4, 4)), "sobel_x,sobel_y")


def test_convkit_kernels_prints_each_kernel_of_a_list():
    result = CliRunner().invoke(main, ["kernels", "sobel_x,gaussian:3"])
    assert result.exit_code == 0, result.output
    assert "sobel_x" in result.output and "gaussian:3" in result.output


def test_apply_writes_one_output_per_kernel_of_a_list(tmp_path):
    path = tmp_path / "flat.png"
    cv2.imwrite(str(path), np.full((6, 6), 100, dtype=np.uint8))
    args = ["apply", str(path), "-k", "sobel_x,sobel_y", "-b", "filter2d", "--no-compare",
            "-o", str(tmp_path / "o")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "flat_sobel_x.png",
        "flat_sobel_y.png",
    ]


def test_apply_refuses_an_unknown_name_in_a_list(tmp_path):
    path = tmp_path / "flat.png"
    cv2.imwrite(str(path), np.full((6, 6), 100, dtype=np.uint8))
    result = CliRunner().invoke(main, ["apply", str(path), "-k", "sobel_x,sobelx"])
    assert result.exit_code == 2
    assert "unknown kernel 'sobelx': did you mean sobel_x" in result.output


# --- ImageMagick's old style: N*N bare numbers ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "weights", "anchor"),
    [
        ("0 -1 0 -1 5 -1 0 -1 0", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]], (1, 1)),
        ("0,-1,0,-1,5,-1,0,-1,0", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]], (1, 1)),
        ("1, 2 3,4", [[1, 2], [3, 4]], (0, 0)),  # 2x2 at ImageMagick's origin, not (1, 1)
        (" ".join(str(v) for v in range(16)), np.arange(16).reshape(4, 4), (1, 1)),
        (" ".join(str(v) for v in range(25)), np.arange(25).reshape(5, 5), (2, 2)),
        ("1/9 " * 9, np.full((3, 3), 1 / 9), (1, 1)),
    ],
)
def test_n_squared_numbers_are_an_n_by_n_kernel(text, weights, anchor):
    kernel = parse_kernel(text, "old")
    np.testing.assert_array_equal(kernel.weights, weights)
    assert kernel.anchor == anchor
    side = kernel.shape[0]
    assert kernel.warnings == (
        f"kernel 'old': {side * side} numbers without ';' read as a {side}x{side} square, "
        "as ImageMagick does (end with ';' for one row)",
    )


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 10, 24])
def test_other_counts_stay_one_row(count):
    values = np.arange(1, count + 1)
    kernel = parse_kernel(" ".join(map(str, values)))
    np.testing.assert_array_equal(kernel.weights, [values])
    assert kernel.anchor == (0, count // 2) and kernel.warnings == ()


@pytest.mark.parametrize("text", ["1,1,1,1;", "1 1 1 1\n", "1 2 3 4 5 6 7 8 9;"])
def test_a_semicolon_or_line_break_keeps_one_row(text):
    kernel = parse_kernel(text)
    assert kernel.shape[0] == 1 and kernel.warnings == ()


def test_a_file_line_of_n_squared_numbers_stays_a_row(tmp_path):
    path = tmp_path / "row.txt"
    path.write_text("0 -1 0 -1 5 -1 0 -1 0\n")
    assert resolve_kernels([str(path)])[0].shape == (1, 9)


def test_the_old_style_through_resolve_is_named_inline():
    [kernel] = resolve_kernels(["0 -1 0 -1 5 -1 0 -1 0"])
    assert kernel.name == "inline1" and kernel.shape == (3, 3)


# --- ImageMagick's default origin -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shape", "anchor"),
    [
        ("2x2: 0.1,0.2 0.3,0.4", (2, 2), (0, 0)),
        ("3x3: 0,-1,0 -1,5,-1 0,-1,0", (3, 3), (1, 1)),
        ("4x4: " + " ".join(["1"] * 16), (4, 4), (1, 1)),
        ("5x3: " + " ".join(["1"] * 15), (3, 5), (1, 2)),  # W=5, H=3: row 1, column 2
        ("2x5: " + " ".join(["1"] * 10), (5, 2), (2, 0)),  # W=2, H=5: row 2, column 0
        ("4: " + " ".join(["1"] * 16), (4, 4), (1, 1)),
        ("2x2+1+1: 1 2 3 4", (2, 2), (1, 1)),  # +X+Y still wins
    ],
)
def test_imagemagick_strings_take_imagemagicks_default_origin(text, shape, anchor):
    kernel = parse_kernel(text)
    assert kernel.shape == shape and kernel.anchor == anchor


@pytest.mark.parametrize(("width", "height"), [(1, 1), (3, 3), (5, 7), (9, 1)])
def test_odd_sizes_keep_the_centre(width, height):
    assert imagemagick_origin(width, height) == (height // 2, width // 2)


def test_an_imagemagick_file_takes_the_same_origin(tmp_path):
    path = tmp_path / "edge.txt"
    path.write_text("2x2: 1 2 3 4\n")
    assert convkit.load_kernel(path).anchor == (0, 0)


IMAGE = np.array(
    [[1, 2, 3, 4, 5], [6, 7, 1, 2, 3], [4, 5, 6, 7, 1], [2, 3, 4, 5, 6]], dtype=np.uint8
)


def correlated_at_origin_0_0(image: np.ndarray) -> np.ndarray:
    """By hand, for "2x2: 1,2 3,4" at ImageMagick's origin (0, 0), zeros outside:
    O[y, x] = 1*I[y, x] + 2*I[y, x+1] + 3*I[y+1, x] + 4*I[y+1, x+1]."""
    padded = np.zeros((image.shape[0] + 1, image.shape[1] + 1))
    padded[:-1, :-1] = image
    return 1 * padded[:-1, :-1] + 2 * padded[:-1, 1:] + 3 * padded[1:, :-1] + 4 * padded[1:, 1:]


def test_a_2x2_imagemagick_string_reads_down_and_right():
    expected = np.array(
        [
            [51, 33, 22, 32, 14],
            [52, 48, 51, 33, 6],
            [32, 42, 52, 48, 19],
            [8, 11, 14, 17, 6],
        ]
    )
    np.testing.assert_array_equal(correlated_at_origin_0_0(IMAGE), expected)
    for text in ("2x2: 1,2 3,4", "1 2 3 4"):
        response = convkit.convolve(IMAGE, text, padding="constant", backend="naive")
        np.testing.assert_array_equal(response, expected)
    # OpenCV's anchor (1, 1) would read up and left instead: the old, one-pixel-off result.
    opencv = convkit.convolve(IMAGE, np.array([[1, 2], [3, 4]]), padding="constant")
    assert not np.array_equal(opencv, expected)


def test_every_backend_agrees_on_the_imagemagick_origin(backend):
    response = convkit.convolve(IMAGE, "2x2: 1,2 3,4", padding="constant", backend=backend)
    np.testing.assert_allclose(response, correlated_at_origin_0_0(IMAGE), atol=1e-9)


def _imagemagick() -> str | None:
    """ImageMagick's own command (``magick``, else ``convert``), if a real one is here."""
    for name in ("magick", "convert"):
        command = shutil.which(name)
        if command is None:
            continue
        try:
            done = subprocess.run([command, "-version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0 and done.stdout.startswith("Version: ImageMagick"):
            return command
    return None


@pytest.mark.parametrize(
    ("method", "flip", "kernel"),
    [
        ("Correlate", False, "2x2: 1,2 3,4"),
        ("Convolve", True, "2x2: 1,2 3,4"),
        ("Correlate", False, "3x2: 1,0,2 0,3,1"),
        ("Correlate", False, "4x4: 1,0,0,0 0,0,1,0 0,2,0,0 0,0,0,1"),
        ("Correlate", False, "1 2 3 4"),
    ],
)
def test_imagemagick_itself_agrees(tmp_path, method, flip, kernel):
    command = _imagemagick()
    if command is None:
        pytest.skip("ImageMagick is not installed (no magick or convert that runs -version)")
    source, output = tmp_path / "in.png", tmp_path / "out.png"
    cv2.imwrite(str(source), IMAGE)
    # Zeros outside, as padding="constant"; integer weights and a small image keep every
    # sum exact and below 256, so ImageMagick's flooring and convkit's rounding agree.
    subprocess.run(
        [command, str(source), "-virtual-pixel", "Black", "-morphology", method, kernel,
         "-depth", "8", str(output)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    theirs = cv2.imread(str(output), cv2.IMREAD_GRAYSCALE)
    ours = convkit.convolve(IMAGE, kernel, padding="constant", flip=flip, backend="naive")
    np.testing.assert_array_equal(theirs, ours)
