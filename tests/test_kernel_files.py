import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convkit import load_kernel, parse_kernel
from convkit.errors import ConvkitError, KernelParseError, UsageError
from convkit.kernel_files import looks_inline, resolve_kernels


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_text_rows_with_comments_commas_and_fractions(tmp_path):
    path = _write(
        tmp_path, "mean.txt", "# a 3x3 mean\n1/9 1/9 1/9\n1/9, 1/9, 1/9  # middle\n\n1/9,1/9,1/9\n"
    )
    kernel = load_kernel(path)
    assert kernel.name == "mean"
    np.testing.assert_allclose(kernel.weights, np.full((3, 3), 1 / 9))


def test_csv(tmp_path):
    kernel = load_kernel(_write(tmp_path, "edge.csv", "-1,0,1\n-2,0,2\n-1,0,1\n"))
    np.testing.assert_array_equal(kernel.weights, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])


def test_npy(tmp_path):
    path = tmp_path / "k.npy"
    np.save(path, np.array([[1, 2, 3]], dtype=np.int32))
    kernel = load_kernel(path)
    assert kernel.shape == (1, 3) and kernel.weights.dtype == np.float64


def test_json_list_and_object_with_scale(tmp_path):
    rows = load_kernel(_write(tmp_path, "rows.json", "[[1, 2], [3, 4]]"))
    assert rows.name == "rows"
    named = load_kernel(
        _write(
            tmp_path,
            "o.json",
            json.dumps({"name": "blur2", "kernel": [[1, 1], [1, 1]], "scale": 0.25}),
        )
    )
    assert named.name == "blur2"
    np.testing.assert_array_equal(named.weights, np.full((2, 2), 0.25))


def test_libvips_mat_divides_by_scale_and_keeps_offset(tmp_path):
    kernel = load_kernel(_write(tmp_path, "sharp.mat", "3 2 4 128\n1 2 1\n-1 -2 -1\n"))
    np.testing.assert_array_equal(kernel.weights, [[0.25, 0.5, 0.25], [-0.25, -0.5, -0.25]])
    assert kernel.offset == 128


def test_inline():
    kernel = parse_kernel("0,-1,0; -1,5,-1; 0,-1,0", "inline1")
    np.testing.assert_array_equal(kernel.weights, [[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
    assert parse_kernel("1 2 1").shape == (1, 3)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.txt", "", r"empty.txt: no kernel rows found"),
        ("comments.txt", "# nothing\n\n", r"comments.txt: no kernel rows found"),
        ("ragged.txt", "1 2 3\n4 5\n", r"ragged.txt:2: row has 2 entries but line 1 has 3"),
        ("words.txt", "1 2 3\n4 five 6\n", r"words.txt:2: 'five' is not a number"),
        ("zero.txt", "1/0 1\n", r"zero.txt:1: '1/0' is not a number"),
        ("nan.csv", "1,nan\n", r"nan.csv:1: 'nan' is not a finite number"),
        ("bad.json", "[[1, 2], [3,", r"bad.json:1: invalid JSON"),
        ("ragged.json", "[[1, 2], [3]]", r"ragged.json: row 2 has 1 entries but row 1 has 2"),
        ("text.json", '[[1, "x"]]', r"'x' is not a number"),
        ("nokernel.json", '{"name": "a"}', r'needs a "kernel" key'),
        ("header.mat", "3\n1 2 3\n", r"header.mat:1: header '3' must be 'width height"),
        ("size.mat", "3 3\n1 2 3\n", r"size.mat:1: header says 3x3 .* but the file has 3x1"),
        ("scale.mat", "1 1 0\n1\n", r"scale.mat:1: scale 0"),
    ],
)
def test_parse_errors_name_file_line_and_token(tmp_path, name, text, message):
    with pytest.raises(KernelParseError, match=message):
        load_kernel(_write(tmp_path, name, text))


def test_corrupt_npy(tmp_path):
    path = _write(tmp_path, "bad.npy", "not numpy")
    with pytest.raises(KernelParseError, match=r"bad.npy: not a readable .npy"):
        load_kernel(path)


def test_npy_must_be_two_dimensional(tmp_path):
    path = tmp_path / "flat.npy"
    np.save(path, np.ones(3))
    with pytest.raises(KernelParseError, match=r"2-D"):
        load_kernel(path)


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="kernel file not found"):
        load_kernel(tmp_path / "nope.txt")


def test_inline_errors_name_the_string():
    with pytest.raises(
        KernelParseError, match=r"inline kernel '1,2; 3': row 2: it has 1 entries but row 1 has 2"
    ):
        parse_kernel("1,2; 3")


@pytest.mark.parametrize("value", ["1,2,1", "0 -1 0; -1 5 -1", "1/9", "-1 2 -1"])
def test_matrices_look_inline(value):
    assert looks_inline(value)


@pytest.mark.parametrize("value", ["sobel_x", "all", "gaussian:5:1.4", "edges.txt"])
def test_names_do_not_look_inline(value):
    assert not looks_inline(value)


def test_resolve_numbers_inline_kernels_and_deduplicates(tmp_path):
    path = _write(tmp_path, "edges.txt", "1 -1\n")
    kernels = resolve_kernels(["1,2,1", "sharpen", "1;2", str(path), "sharpen"], [str(path)])
    assert [k.name for k in kernels] == [
        "inline1",
        "sharpen",
        "inline2",
        "edges",
        "sharpen-2",
        "edges-2",
    ]


def test_resolve_a_missing_kernel_file_says_so(tmp_path):
    with pytest.raises(UsageError, match="kernel file not found: .*edges.txt"):
        resolve_kernels([str(tmp_path / "edges.txt")])


# --- ImageMagick kernel strings --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shape", "anchor"),
    [
        ("3x3: 0,-1,0 -1,5,-1 0,-1,0", (3, 3), (1, 1)),
        ("3x3+0+0: 0,-1,0 -1,5,-1 0,-1,0", (3, 3), (0, 0)),
        ("3x2+2+1: 1 2 3 4 5 6", (2, 3), (1, 2)),  # +X+Y: column 2, row 1
        ("3: 1,1,1 1,1,1 1,1,1", (3, 3), (1, 1)),  # one size: square
        ("1x4:1,2,3,4", (4, 1), (1, 0)),  # ImageMagick's origin: row (4 - 1) // 2
        ("2x2: 1 2 3 4", (2, 2), (0, 0)),  # not OpenCV's (1, 1)
    ],
)
def test_imagemagick_strings(text, shape, anchor):
    kernel = parse_kernel(text, "im")
    assert kernel.shape == shape and kernel.anchor == anchor
    assert kernel.warnings == ()


def test_imagemagick_values_fill_rows_in_order():
    kernel = parse_kernel("3x2: 1 2 3 4 5 6")
    np.testing.assert_array_equal(kernel.weights, [[1, 2, 3], [4, 5, 6]])


def test_imagemagick_nan_and_dash_cells_become_zero_with_a_warning():
    kernel = parse_kernel("3x1: 1 nan -", "holes")
    np.testing.assert_array_equal(kernel.weights, [[1, 0, 0]])
    assert kernel.warnings == (
        "kernel 'holes': 2 nan/- cells read as 0: (row 0, col 1), (row 0, col 2)",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3x3: 1 2 3", "3x3 needs 9 values, got 3"),
        ("2x2+2+0: 1 1 1 1", "origin +2+0 lies outside the 2x2 kernel"),
        ("2x2+0-1: 1 1 1 1", "origin +0+-1 lies outside"),
        ("2x1: 1 x", "'x' is not a number"),
    ],
)
def test_imagemagick_errors(text, message):
    with pytest.raises(KernelParseError, match=re.escape(message)):
        parse_kernel(text)


def test_imagemagick_files_and_at_file(tmp_path):
    path = _write(
        tmp_path, "sharpen.txt", "# ImageMagick style\n3x3+0+0:\n 0,-1,0\n -1,5,-1\n 0,-1,0\n"
    )
    kernel = load_kernel(path)
    assert kernel.name == "sharpen" and kernel.anchor == (0, 0) and kernel.weights[1, 1] == 5
    [at] = resolve_kernels([f"@{path}"])
    assert at.anchor == (0, 0)
    with pytest.raises(UsageError, match="kernel file not found"):
        resolve_kernels([f"@{tmp_path / 'missing.txt'}"])


# --- where a kernel came from; byte order marks ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("rows.txt", "1 2\n3 4\n"),
        ("rows.csv", "1,2\n3,4\n"),
        ("rows.json", "[[1, 2], [3, 4]]"),
        ("rows.mat", "2 2\n1 2\n3 4\n"),
        ("magick.txt", "2x2: 1 2 3 4\n"),
    ],
)
def test_load_kernel_records_its_file(tmp_path, name, content):
    path = _write(tmp_path, name, content)
    kernel = load_kernel(path)
    assert kernel.source == path
    np.testing.assert_array_equal(kernel.weights, [[1, 2], [3, 4]])


def test_npy_records_its_file(tmp_path):
    path = tmp_path / "k.npy"
    np.save(path, np.eye(2))
    assert load_kernel(str(path)).source == path


def test_every_way_of_naming_a_file_records_it(tmp_path):
    path = _write(tmp_path, "edges.txt", "1 -1\n")
    by_path, by_at, inline, bank, by_option = resolve_kernels(
        [str(path), f"@{path}", "1,2", "sharpen"], [str(path)]
    )
    assert by_path.source == by_at.source == by_option.source == path
    assert inline.source is None and bank.source is None


def test_renamed_duplicates_keep_their_file(tmp_path):
    path = _write(tmp_path, "edges.txt", "1 -1\n")
    first, second = resolve_kernels([str(path)], [str(path)])
    assert second.name == "edges-2" and first.source == second.source == path


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("excel.csv", "1,2\r\n3,4\r\n"),
        ("rows.txt", "# comment\n1 2\n3 4\n"),
        ("rows.json", "[[1, 2], [3, 4]]"),
        ("rows.mat", "2 2\n1 2\n3 4\n"),
        ("magick.txt", "2x2: 1 2 3 4"),
    ],
)
def test_a_utf8_byte_order_mark_is_accepted(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + content.encode())
    np.testing.assert_array_equal(load_kernel(path).weights, [[1, 2], [3, 4]])


def test_a_byte_order_mark_inside_the_text_is_still_an_error(tmp_path):
    path = _write(tmp_path, "late.txt", "1 2\n\ufeff3 4\n")
    # Shown escaped: an invisible character in a message would leave the user guessing.
    with pytest.raises(KernelParseError, match=re.escape("late.txt:2: '\\ufeff3' is not a number")):
        load_kernel(path)


# --- fuzzing: the parsers accept a kernel or raise a ConvkitError, nothing else -----------


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789-+./eE ,;#\nnaif\t x")), max_size=60))
def test_kernel_parser_accepts_or_raises_convkit_errors(text):
    try:
        kernel = parse_kernel(text)
    except ConvkitError:
        return
    assert np.isfinite(kernel.weights).all() and kernel.weights.ndim == 2


def test_kernel_files_of_random_bytes_load_or_raise_convkit_errors(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(100):
        path = tmp_path / f"k{i}{['.txt', '.csv', '.json', '.mat', '.npy'][i % 5]}"
        data = rng.integers(0, 256, int(rng.integers(0, 80))).astype(np.uint8).tobytes()
        path.write_bytes(data)
        try:
            kernel = load_kernel(path)
        except ConvkitError:
            pass
        else:
            assert np.isfinite(kernel.weights).all() and kernel.weights.ndim == 2
        assert path.read_bytes() == data  # read, never changed
