"""Hostile input against the library (issue 9, items 3, 4, 5, 8 and 9).

Every case asserts the exact exception class (a `ConvkitError` subclass, never a ValueError,
OverflowError, RecursionError or "internal error"), that the message is one line naming the
culprit (the value or the file), and, since every test here runs with warnings turned into
errors, that no numpy RuntimeWarning (or any other warning) escaped on the way.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from convkit import Kernel, convolve, get_kernel, load_kernel, parse_kernel, to_image
from convkit.engine import convolve_to_image
from convkit.errors import ConvkitError, KernelError, KernelParseError, UsageError
from convkit.kernel_files import MAX_JSON_DEPTH, MAX_KERNEL_FILE_BYTES, resolve_kernel
from convkit.kernels import SIGMA_RANGE, adjust_kernels
from convkit.padding import Padding, make_padding
from convkit.stack import Stack

FLOAT_MAX = float(np.finfo(np.float64).max)
HUGE_INTEGER = "1" + "0" * 400
DIGITS_5000 = "1" * 5000
DEEP_JSON = "[" * 100_000 + "]" * 100_000


@pytest.fixture(autouse=True)
def warnings_are_errors():
    """A warning raised as an exception fails the `refused` check: it is not the error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def refused(call, error: type[ConvkitError], *culprits: str) -> str:
    """Run ``call``; it must raise exactly ``error``, in one line that names each culprit."""
    with pytest.raises(ConvkitError) as info:
        call()
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert "\n" not in message
    for culprit in culprits:
        assert culprit in message, f"{culprit!r} not in {message!r}"
    return message


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# --- numbers in text kernel files ------------------------------------------------------------

TEXT_FILES = [
    ("fraction.txt", f"1 {HUGE_INTEGER}/1\n", "fraction.txt:1", "(403 characters) is too large"),
    ("digits.txt", f"{DIGITS_5000}\n", "digits.txt:1", "(5000 characters) is too large"),
    ("digits_fraction.csv", f"1,{DIGITS_5000}/3\n", "digits_fraction.csv:1", "too large"),
    ("overflow.txt", "1 1e400\n", "overflow.txt:1", "'1e400' is too large"),
    ("overflow_product.txt", "1e200/1e-200\n", "overflow_product.txt:1", "'1e200/1e-200'"),
    ("nan.txt", "1 nan\n", "nan.txt:1", "'nan' is not a finite number"),
    ("inf.csv", "inf,1\n", "inf.csv:1", "'inf' is not a finite number"),
    ("minus_inf.txt", "1\n-inf\n", "minus_inf.txt:2", "'-inf' is not a finite number"),
    ("zero_division.txt", "1/0\n", "zero_division.txt:1", "division by 0"),
    ("zero_by_zero.txt", "0/0\n", "zero_by_zero.txt:1", "'0/0' is not a number"),
    ("two_slashes.txt", "1/2/3\n", "two_slashes.txt:1", "'1/2/3' is not a number"),
    ("huge_exponent.txt", "1e999999999999999999999/1\n", "huge_exponent.txt:1", "not a number"),
    ("empty.txt", "", "empty.txt", "no kernel rows found"),
    ("comments.csv", "# nothing\n  # at all\n\n", "comments.csv", "no kernel rows found"),
    ("bom_only.txt", "\ufeff\n\n", "bom_only.txt", "no kernel rows found"),
    ("ragged.txt", "1 2 3\n4 5\n", "ragged.txt:2", "2 entries but line 1 has 3"),
    ("nul.txt", "1 2\x00\n", "nul.txt:1", "is not a number"),
    ("magick_size.txt", "99999999999x1: 1\n", "magick_size.txt", "'99999999999' is too large"),
    ("magick_origin.txt", "1x1+99999999999+0: 1\n", "magick_origin.txt", "lies outside"),
    ("magick_count.txt", "2x2: 1 2 3\n", "magick_count.txt", "needs 4 values, got 3"),
    ("sum.txt", "1e308 1e308\n", "sum.txt", "sum of its |weights| overflows float64"),
]


@pytest.mark.parametrize(("name", "text", "where", "what"), TEXT_FILES)
def test_text_kernel_files(tmp_path, name, text, where, what):
    refused(lambda: load_kernel(write(tmp_path, name, text)), KernelParseError, where, what)


def test_non_utf8_text_names_line_and_byte(tmp_path):
    path = write(tmp_path, "latin.txt", b"1 2\n3 \xff\n")
    refused(lambda: load_kernel(path), KernelParseError, "latin.txt:2", "0xff at offset 6")


# --- numbers in inline kernels ---------------------------------------------------------------

INLINE = [
    (f"{HUGE_INTEGER}/1", "too large"),
    (DIGITS_5000, "(5000 characters) is too large"),
    (f"1, -{DIGITS_5000}", "too large"),
    ("1, 1e999", "'1e999' is too large"),
    ("nan, 1", "'nan' is not a finite number"),
    ("1; inf", "row 2: 'inf' is not a finite number"),
    ("1/0, 1", "division by 0"),
    ("1,2; 3", "row 2: it has 1 entries but row 1 has 2"),
    (";;", "no kernel rows found"),
    ("", "no kernel rows found"),
    ("3x3: 1 2", "3x3 needs 9 values, got 2"),
    ("1x1+1+0: 1", "origin +1+0 lies outside the 1x1 kernel"),
    ("1e308, 1e308", "sum of its |weights| overflows float64"),
]


@pytest.mark.parametrize(("text", "what"), INLINE)
def test_inline_kernels(text, what):
    message = refused(lambda: parse_kernel(text), KernelParseError, "inline kernel", what)
    assert len(message) < 300  # a 5000-digit value is shortened, not echoed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{HUGE_INTEGER}/{HUGE_INTEGER}", 1.0),
        ("1e400/1e399", 10.0),
        (f"1/{DIGITS_5000}", 0.0),  # 9e-5001 rounds to 0, as float() rounds 1e-5000
        ("1/9", 1 / 9),
        ("-2/3", -2 / 3),
        ("1.5/3", 0.5),
    ],
)
def test_fractions_with_huge_parts_are_exact(text, expected):
    assert parse_kernel(text).weights[0, 0] == expected


# --- JSON kernels ----------------------------------------------------------------------------

JSON_FILES = [
    ("digits400.json", f"[[{'1' * 400}]]", "(400 characters) is too large"),
    ("digits5000.json", f"[[1, {DIGITS_5000}]]", "(5000 characters) is too large"),
    ("float400.json", "[[1e400]]", "'1e400' is too large"),
    ("nan.json", "[[NaN]]", "NaN is not a finite number"),
    ("infinity.json", "[[1, Infinity]]", "Infinity is not a finite number"),
    ("minus_infinity.json", "[[-Infinity]]", "-Infinity is not a finite number"),
    ("deep.json", DEEP_JSON, f"nested too deep (more than {MAX_JSON_DEPTH} levels)"),
    ("deep_object.json", '{"a": ' * 50_000 + "1" + "}" * 50_000, "nested too deep"),
    ("deep_row.json", "[[" + "[" * 20 + "1" + "]" * 20 + "]]", "nested too deep"),
    ("scale.json", '{"kernel": [[10]], "scale": 1e308}', "scale 1e+308 makes the weights overflow"),
    ("scale_nan.json", '{"kernel": [[1]], "scale": "nan"}', "'nan' is not a finite number"),
    ("scale_bool.json", '{"kernel": [[1]], "scale": true}', "scale: True is not a number"),
    ("bool.json", "[[true, 1]]", "row 1: True is not a number"),
    ("null.json", "[[null]]", "row 1: None is not a number"),
    ("nested_row.json", "[[[1]]]", "row 1: [1.0] is not a number"),
    ("empty.json", "", "invalid JSON"),
    ("empty_list.json", "[]", "no kernel rows found"),
    ("empty_row.json", "[[]]", "no kernel rows found"),
    ("ragged.json", "[[1, 2], [3]]", "row 2 has 1 entries but row 1 has 2"),
    ("string.json", '{"kernel": "sharpen"}', "must be a list of rows"),
    ("no_kernel.json", '{"name": "x"}', 'needs a "kernel" key'),
    ("sum.json", "[[1e308, 1e308]]", "sum of its |weights| overflows float64"),
]


@pytest.mark.parametrize(("name", "text", "what"), JSON_FILES)
def test_json_kernel_files(tmp_path, name, text, what):
    refused(lambda: load_kernel(write(tmp_path, name, text)), KernelParseError, name, what)


def test_json_brackets_inside_strings_are_not_nesting(tmp_path):
    text = json.dumps({"name": "[[[[[[[[[[{{{{{{{{", "kernel": [[1, 2]], "note": '\\"]]]]['})
    kernel = load_kernel(write(tmp_path, "strings.json", text))
    assert kernel.name == "[[[[[[[[[[{{{{{{{{"
    np.testing.assert_array_equal(kernel.weights, [[1, 2]])


# --- .npy kernels ----------------------------------------------------------------------------


def _npy(tmp_path: Path, name: str, array: np.ndarray, allow_pickle: bool = False) -> Path:
    path = tmp_path / name
    np.save(path, array, allow_pickle=allow_pickle)
    return path


def _npy_with_header(tmp_path: Path, name: str, header: dict, data: bytes) -> Path:
    from io import BytesIO

    from numpy.lib import format as npy

    stream = BytesIO()
    npy.write_array_header_1_0(stream, header)
    return write(tmp_path, name, stream.getvalue() + data)


NPY_ARRAYS = [
    ("pickle.npy", np.array([[1, "a"]], dtype=object), "holds Python objects (a pickle)"),
    ("cube.npy", np.ones((2, 2, 2)), "needs a non-empty 2-D array, got (2, 2, 2)"),
    ("flat.npy", np.ones(3), "got (3,)"),
    ("scalar.npy", np.float64(1.0), "got ()"),
    ("bool.npy", np.ones((2, 2), dtype=bool), "needs real numbers, got dtype bool"),
    ("complex.npy", np.ones((2, 2), dtype=complex), "got dtype complex128"),
    ("text.npy", np.array([["a", "b"]]), "got dtype <U1"),
    ("dates.npy", np.array([["2026-01-01"]], dtype="datetime64[D]"), "datetime64"),
    ("record.npy", np.zeros((1, 1), dtype=[("a", "f8")]), "needs real numbers"),
    ("one_by_zero.npy", np.zeros((1, 0)), "non-empty 2-D array, got (1, 0)"),
    ("nan.npy", np.array([[1.0, np.nan]]), "NaN or infinite weights"),
    ("inf.npy", np.array([[np.inf]], dtype=np.float32), "NaN or infinite weights"),
    ("sum.npy", np.array([[1e308, 1e308]]), "sum of its |weights| overflows"),
]


@pytest.mark.parametrize(("name", "array", "what"), NPY_ARRAYS)
def test_npy_kernel_files(tmp_path, name, array, what):
    path = _npy(tmp_path, name, array, allow_pickle=array.dtype.hasobject)
    refused(lambda: load_kernel(path), KernelParseError, name, what)


@pytest.mark.skipif(np.finfo(np.longdouble).max <= FLOAT_MAX, reason="long double is float64 here")
def test_npy_long_double_beyond_float64(tmp_path):
    path = _npy(tmp_path, "long.npy", np.array([[np.longdouble("1e400")]]))
    refused(lambda: load_kernel(path), KernelParseError, "long.npy", "not finite in float64")


def test_npy_whose_header_lies_about_its_size(tmp_path):
    full = _npy(tmp_path, "full.npy", np.ones((2, 2))).read_bytes()
    path = write(tmp_path, "short.npy", full[:-8])
    refused(
        lambda: load_kernel(path),
        KernelParseError,
        "short.npy",
        "header says 2x2 float64 (32 bytes of data) but the file holds 24",
    )


def test_npy_header_claiming_a_huge_array_allocates_nothing(tmp_path):
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**9, 10**9)}
    path = _npy_with_header(tmp_path, "huge.npy", header, b"\0" * 16)
    refused(lambda: load_kernel(path), KernelParseError, "huge.npy", "but the file holds 16")


@pytest.mark.parametrize(
    ("name", "content", "what"),
    [
        ("garbage.npy", b"not numpy at all", "not a readable .npy array"),
        ("empty.npy", b"", "not a readable .npy array"),
        ("magic_only.npy", b"\x93NUMPY\x01\x00", "not a readable .npy array"),
    ],
)
def test_npy_that_is_not_npy(tmp_path, name, content, what):
    refused(lambda: load_kernel(write(tmp_path, name, content)), KernelParseError, name, what)


def test_fortran_order_npy_is_read_right(tmp_path):
    array = np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3))
    np.testing.assert_array_equal(load_kernel(_npy(tmp_path, "f.npy", array)).weights, array)


# --- libvips .mat kernels --------------------------------------------------------------------

MAT_FILES = [
    ("lies.mat", "2 2\n1 2 3\n4 5 6\n", "lies.mat:1", "header says 2x2 (width x height)"),
    ("lies_rows.mat", "1 3\n1\n2\n", "lies_rows.mat:1", "header says 1x3"),
    ("wide.mat", f"{DIGITS_5000} 1\n1\n", "wide.mat:1", "too large for a kernel"),
    ("word.mat", "x 1\n1\n", "word.mat:1", "'x' is not a whole number"),
    ("negative.mat", "-1 1\n1\n", "negative.mat:1", "'-1' is not a whole number"),
    ("zero.mat", "0 1\n1\n", "zero.mat:1", "'0' must be at least 1"),
    ("tiny_scale.mat", "1 1 1e-320\n1\n", "tiny_scale.mat", "dividing by scale 9.99989e-321"),
    ("nan_scale.mat", "1 1 nan\n1\n", "nan_scale.mat:1", "'nan' is not a finite number"),
    ("zero_scale.mat", "1 1 0\n1\n", "zero_scale.mat:1", "scale 0"),
    ("offset.mat", "1 1 1 inf\n1\n", "offset.mat:1", "'inf' is not a finite number"),
    ("huge_offset.mat", f"1 1 1 {HUGE_INTEGER}\n1\n", "huge_offset.mat:1", "too large"),
    ("empty.mat", "", "empty.mat", "a .mat needs a 'width height' header"),
    ("header_only.mat", "1 1\n", "header_only.mat", "no kernel rows found"),
]


@pytest.mark.parametrize(("name", "text", "where", "what"), MAT_FILES)
def test_vips_mat_kernel_files(tmp_path, name, text, where, what):
    refused(lambda: load_kernel(write(tmp_path, name, text)), KernelParseError, where, what)


# --- what the path is ------------------------------------------------------------------------


def returns_promptly(call, seconds: float = 5.0):
    """Run ``call`` in a thread; fail (instead of hanging the suite) if it blocks."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"blocked for more than {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@pytest.fixture
def fifo(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    path = tmp_path / "pipe.txt"
    os.mkfifo(path)
    yield path
    # A reader stuck in open() or read() (the bug this guards against) gets EOF.
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda p: load_kernel(p), id="load_kernel"),
        pytest.param(lambda p: resolve_kernel(str(p), "inline1"), id="--kernel PATH"),
        pytest.param(lambda p: resolve_kernel(f"@{p}", "inline1"), id="--kernel @PATH"),
        pytest.param(lambda p: convolve(np.ones((3, 3)), str(p)), id="convolve(kernel=PATH)"),
    ],
)
def test_fifo_is_refused_without_blocking(fifo, call):
    refused(
        lambda: returns_promptly(lambda: call(fifo)),
        UsageError,
        f"kernel file {fifo} is a FIFO (named pipe), not a regular file",
    )


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_dev_zero_is_refused_unread():
    refused(
        lambda: returns_promptly(lambda: load_kernel("/dev/zero")),
        UsageError,
        "kernel file /dev/zero is a character device, not a regular file",
    )


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_symlink_to_a_device_is_refused(tmp_path):
    link = tmp_path / "zero.txt"
    link.symlink_to("/dev/zero")
    refused(lambda: load_kernel(link), UsageError, f"{link} is a character device")


def test_socket_is_refused(tmp_path):
    path = tmp_path / "k.sock"
    if len(str(path)) > 100:
        pytest.skip("temporary path too long for a Unix socket")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        refused(lambda: load_kernel(path), UsageError, f"kernel file {path} is a socket")
    finally:
        server.close()


def test_folder_is_refused(tmp_path):
    folder = tmp_path / "kernels.txt"
    folder.mkdir()
    refused(lambda: load_kernel(folder), UsageError, f"kernel file {folder} is a directory")


@pytest.mark.parametrize(
    ("name", "shown"),
    [("missing.txt", "missing.txt"), ("missing/deeper.csv", "missing/deeper.csv")],
)
def test_missing_file(tmp_path, name, shown):
    refused(lambda: load_kernel(tmp_path / name), UsageError, "kernel file not found:", shown)


def test_file_used_as_a_folder_is_not_found(tmp_path):
    path = write(tmp_path, "k.txt", "1") / "inner.txt"
    refused(lambda: load_kernel(path), UsageError, "kernel file not found:", "k.txt/inner.txt")


def test_dangling_symlink_is_not_found(tmp_path):
    link = tmp_path / "gone.txt"
    link.symlink_to(tmp_path / "nowhere.txt")
    refused(lambda: load_kernel(link), UsageError, f"kernel file not found: {link}")


def test_nul_byte_in_the_name():
    refused(lambda: load_kernel("k\0.txt"), UsageError, "kernel file not found: 'k\\x00.txt'")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads all")
def test_unreadable_file(tmp_path):
    path = write(tmp_path, "secret.txt", "1")
    path.chmod(0)
    refused(lambda: load_kernel(path), UsageError, f"cannot read kernel file {path}")


def test_file_over_the_size_limit_is_refused_unread(tmp_path):
    path = tmp_path / "big.txt"
    with open(path, "wb") as file:  # sparse: nothing is written but its size
        file.truncate(MAX_KERNEL_FILE_BYTES + 1)
    refused(
        lambda: load_kernel(path),
        UsageError,
        f"kernel file {path} is {MAX_KERNEL_FILE_BYTES + 1} bytes",
        "limit of 16777216 bytes (16 MiB)",
    )


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="no /proc")
def test_file_larger_than_its_stat_size_is_read_only_to_the_limit(monkeypatch):
    # /proc files report size 0 and then hold more: as a file that grew since stat.
    monkeypatch.setattr("convkit.kernel_files.MAX_KERNEL_FILE_BYTES", 10)
    refused(
        lambda: load_kernel("/proc/self/status"),
        UsageError,
        "/proc/self/status is more than 10 bytes",
    )


@pytest.mark.parametrize("path", [None, 5, b"k.txt"[0]])
def test_a_path_that_is_not_a_path(path):
    refused(lambda: load_kernel(path), UsageError, f"a kernel file is a path, got {path!r}")


def test_at_sign_alone():
    refused(lambda: resolve_kernel("@", "inline1"), UsageError, "@ needs a kernel file name")


# --- parametric kernels ----------------------------------------------------------------------

SIGMAS = ["1e-300", "1e-320", "0", "-1", "nan", "inf", "-inf", "1e308", "1e5", DIGITS_5000]


@pytest.mark.parametrize("family", ["gaussian:5", "log:9"])
@pytest.mark.parametrize("sigma", SIGMAS)
def test_sigma_out_of_range(family, sigma):
    low, high = SIGMA_RANGE
    shown = sigma if len(sigma) < 40 else "(5000 characters)"
    refused(
        lambda: get_kernel(f"{family}:{sigma}"),
        KernelError,
        f"SIGMA must be a number from {low:g} to {high:g}",
        shown,
    )


@pytest.mark.parametrize("sigma", [str(SIGMA_RANGE[0]), str(SIGMA_RANGE[1])])
@pytest.mark.parametrize("family", ["gaussian", "log"])
def test_sigma_at_the_ends_of_its_range_gives_finite_weights(family, sigma):
    kernel = get_kernel(f"{family}:9:{sigma}")
    assert np.isfinite(kernel.weights).all()
    if family == "gaussian":
        assert kernel.total == pytest.approx(1.0)


@pytest.mark.parametrize("angle", ["inf", "-inf", "nan", "1e999"])
def test_motion_angle_must_be_finite(angle):
    refused(lambda: get_kernel(f"motion:5:{angle}"), KernelError, "ANGLE", f"'{angle}'")


def test_huge_motion_angle_keeps_its_true_direction():
    # 1e308 degrees is exactly fmod(1e308, 360) degrees: the same kernel, no round-off.
    direction = math.fmod(1e308, 360.0)
    np.testing.assert_array_equal(
        get_kernel("motion:9:1e308").weights, get_kernel(f"motion:9:{direction!r}").weights
    )


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("box:99999999999999999999", "size '99999999999999999999' is larger than 1001"),
        (f"box:{'9' * 5000}", "(5000 characters) is larger than 1001"),
        ("box:1e3", "got '1e3'"),
        ("box:-3", "got '-3'"),
        ("gaussian:4", "odd whole number"),
        ("log:1003", "size 1003 is larger than 1001"),
    ],
)
def test_parametric_sizes(name, what):
    refused(lambda: get_kernel(name), KernelError, what)


@pytest.mark.parametrize("name", [None, 3, ["sharpen"]])
def test_a_kernel_name_that_is_not_a_string(name):
    refused(lambda: get_kernel(name), KernelError, f"got {name!r}")


def test_imagemagick_holes_are_counted_not_all_listed():
    kernel = parse_kernel("100x1: " + " ".join(["nan"] * 100), "holes")
    assert not kernel.weights.any()
    (warning,) = kernel.warnings
    assert warning.endswith("(row 0, col 7) and 92 more")
    assert warning.startswith("kernel 'holes': 100 nan/- cells read as 0: (row 0, col 0), ")


# --- --scale and --normalize -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("scale", "what"),
    [
        (math.inf, "--scale inf is not a finite number"),
        (-math.inf, "--scale -inf is not a finite number"),
        (math.nan, "--scale nan is not a finite number"),
        ("2", "--scale '2' is not a number"),
        (1e308, "--scale 1e+308 makes kernel 'sharpen' overflow float64"),
        (-1e308, "--scale -1e+308 makes kernel 'sharpen' overflow float64"),
        (10**400, "--scale 100000000000000000…0000000000 (401 characters) is not a finite"),
    ],
)
def test_bad_scale(scale, what):
    refused(lambda: adjust_kernels([get_kernel("sharpen")], scale=scale), KernelError, what)


def test_scale_zero_is_allowed():
    (kernel,) = adjust_kernels([get_kernel("sharpen")], scale=0)
    np.testing.assert_array_equal(kernel.weights, np.zeros((3, 3)))


def test_scale_that_overflows_only_the_sum():
    kernel = Kernel("k", [[1e307] * 10])  # sum|K| = 1e308
    refused(lambda: kernel.scaled(2.0), KernelError, "scaled by 2.0 overflows float64")


@pytest.mark.parametrize("name", ["log:9", "log:21:3"])
def test_normalize_leaves_a_sum_of_round_off_alone(name):
    kernel = get_kernel(name)
    assert kernel.total != 0  # round-off: dividing by it would blow the weights up
    assert kernel.normalized() is kernel


def test_normalize_divides_by_a_real_sum_exactly():
    np.testing.assert_array_equal(Kernel("k", [[1.0, 3.0]]).normalized().weights, [[0.25, 0.75]])


# --- Kernel(...) -----------------------------------------------------------------------------

BAD_WEIGHTS = [
    ([[1, 2], [3]], "rectangular 2-D matrix of numbers"),
    ([[1e308, 1e308]], "sum of its |weights| overflows float64 (largest |weight| 1e+308)"),
    ([[10**400]], "100000000000000000…0000000000 (401 characters) at (row 0, col 0)"),
    ([[1, None]], "weight None at (row 0, col 1) is not a real number"),
    ([[1, "2"]], "must be real numbers, got dtype <U21"),
    ([["sharpen"]], "'sharpen'"),
    (np.array([[1 + 2j]]), "got dtype complex128 (such as (1+2j))"),
    (np.array([[1, 2j]], dtype=object), "weight 2j at (row 0, col 1) is not a real number"),
    (np.array([[True]]), "got dtype bool"),
    (np.array([[b"1"]]), "got dtype |S1"),
    (np.ones((2, 2, 2)), "got shape (2, 2, 2)"),
    (np.zeros((1, 0)), "got shape (1, 0)"),
    ([], "got shape (0,)"),
    (None, "got shape ()"),
    (5.0, "got shape ()"),
    ([[math.nan]], "NaN or infinite weights: nan at (row 0, col 0)"),
    ([[1.0], [-math.inf]], "-inf at (row 1, col 0)"),
]


@pytest.mark.parametrize(("weights", "what"), BAD_WEIGHTS)
def test_bad_weights(weights, what):
    refused(lambda: Kernel("k", weights), KernelError, "kernel 'k'", what)


def test_deeply_nested_list_weights():
    deep: list = [1.0]
    for _ in range(10_000):
        deep = [deep]
    refused(lambda: Kernel("k", deep), KernelError, "kernel 'k'")


@pytest.mark.parametrize(
    ("anchor", "what"),
    [
        ((1,), "anchor (1,) must be two whole numbers"),
        ((1, 1, 1), "anchor (1, 1, 1) must be two whole numbers"),
        ((1.5, 0.5), "anchor (1.5, 0.5) must be two whole numbers"),
        ((math.nan, 0), "anchor (nan, 0) must be two whole numbers"),
        (("1", "1"), "anchor ('1', '1') must be two whole numbers"),
        ("11", "anchor '11' must be two whole numbers"),
        (3, "anchor 3 must be two whole numbers"),
        ((3, 0), "anchor (3, 0) lies outside its 3x3 weights"),
        ((0, -1), "anchor (0, -1) lies outside its 3x3 weights"),
        ((10**30, 0), "lies outside its 3x3 weights"),
    ],
)
def test_bad_anchor(anchor, what):
    refused(lambda: Kernel("k", np.ones((3, 3)), anchor=anchor), KernelError, what)


def test_whole_float_and_numpy_anchors_are_taken():
    assert Kernel("k", np.ones((3, 3)), anchor=(2.0, np.int64(0))).anchor == (2, 0)


@pytest.mark.parametrize("offset", [math.nan, math.inf, "1"])
def test_bad_offset(offset):
    refused(lambda: Kernel("k", [[1]], offset=offset), KernelError, "offset")


# --- convolve / convolve_to_image -----------------------------------------------------------

IMAGE = np.arange(25, dtype=np.uint8).reshape(5, 5)

BAD_CONVOLVE_ARGUMENTS = [
    ({"kernel": [[1, 2], [3]]}, KernelError, "rectangular 2-D matrix"),
    ({"kernel": "no_such_kernel"}, KernelError, "unknown kernel 'no_such_kernel'"),
    ({"kernel": "sharpn"}, KernelError, "did you mean sharpen"),
    ({"kernel": "1,2; 3"}, KernelParseError, "row 2: it has 1 entries"),
    ({"kernel": "gaussian:5:nan"}, KernelError, "SIGMA must be a number from"),
    ({"kernel": "missing.txt"}, UsageError, "kernel file not found: missing.txt"),
    ({"kernel": np.array([[1 + 1j]])}, KernelError, "complex128"),
    ({"kernel": np.array([[object()]])}, KernelError, "is not a real number"),
    ({"kernel": np.array([["a"]])}, KernelError, "got dtype <U1"),
    ({"kernel": np.ones((2, 2, 2))}, KernelError, "got shape (2, 2, 2)"),
    ({"kernel": [[math.nan]]}, KernelError, "NaN or infinite weights"),
    ({"kernel": None}, KernelError, "got shape ()"),
    ({"cval": math.nan, "padding": "constant"}, UsageError, "cval nan"),
    ({"cval": math.inf, "padding": "constant"}, UsageError, "cval inf"),
    ({"cval": -math.inf}, UsageError, "cval -inf"),
    ({"cval": "zero"}, UsageError, "cval 'zero'"),
    ({"cval": None}, UsageError, "cval None"),
    ({"padding": None}, UsageError, "unknown padding mode None"),
    ({"padding": 3}, UsageError, "unknown padding mode 3"),
    ({"padding": "bounce"}, UsageError, "unknown padding mode 'bounce'"),
    ({"padding": Padding("constant", math.nan)}, UsageError, "cval nan"),
    ({"padding": Padding("bounce")}, UsageError, "unknown padding mode 'bounce'"),
    ({"backend": None}, UsageError, "unknown backend None"),
    ({"backend": 3}, UsageError, "unknown backend 3"),
    ({"backend": "cuda"}, UsageError, "unknown backend 'cuda'"),
    ({"anchor": (1,)}, KernelError, "anchor (1,) must be two whole numbers"),
    ({"anchor": (1.5, 0.5)}, KernelError, "anchor (1.5, 0.5) must be two whole numbers"),
    ({"anchor": (3, 3)}, KernelError, "anchor (3, 3) lies outside its 3x3 weights"),
    ({"anchor": 1}, KernelError, "anchor 1 must be two whole numbers"),
    ({"kernel": ""}, KernelError, "unknown kernel ''"),
    ({"kernel": "@"}, UsageError, "@ needs a kernel file name"),
    ({"progress": 5}, UsageError, "progress must be a function progress(done, total), got 5"),
    ({"precision": None}, UsageError, "unknown precision None"),
    ({"precision": "float16"}, UsageError, "unknown precision 'float16'"),
    ({"precision": ["float32"]}, UsageError, "unknown precision ['float32']"),
    ({"image": np.array([[1, None]], dtype=object)}, UsageError, "got dtype object"),
    ({"image": np.ones((3, 3), dtype=complex)}, UsageError, "got dtype complex128"),
    ({"image": np.array([["a", "b"]])}, UsageError, "got dtype <U1"),
    ({"image": [[1, 2], [3]]}, UsageError, "rectangular (H, W) or (H, W, C) array"),
    ({"image": np.ones(5)}, UsageError, "got shape (5,)"),
    ({"image": np.ones((0, 5))}, UsageError, "the image is empty (shape (0, 5))"),
    ({"image": None}, UsageError, "got shape ()"),
    ({"image": np.array([[1.0, math.inf]])}, UsageError, "the image holds infinite values"),
    ({"image": np.array([[1.0, -math.inf]])}, UsageError, "the image holds infinite values"),
    (
        {"kernel": [[1e306, 1e306]]},
        UsageError,
        "sum|K| x max|I| = 2e+306 x 255 would overflow float64",
    ),
    (
        {"kernel": [[1e300]], "padding": "constant", "cval": 1e10},
        UsageError,
        "sum|K| x max|I| = 1e+300 x 1e+10 would overflow float64",
    ),
    (
        {"image": np.full((3, 3), 1e30), "kernel": [[1e10]], "precision": "float32"},
        UsageError,
        "sum|K| x max|I| = 1e+10 x 1e+30 would overflow float32",
    ),
    (
        {"image": np.full((3, 3), 1e306), "kernel": [[1.0]], "backend": "fft"},
        UsageError,
        "could overflow float64 in the sums of a Fourier transform",
    ),
    (
        {"image": np.full((3, 3), 1e304), "kernel": np.ones((8, 8))},
        UsageError,
        "in the sums of a Fourier transform",
    ),
]


# convolve_to_image validates as convolve does, and then what to_image refuses.
BAD_CONVOLVE_TO_IMAGE_ARGUMENTS = [
    case for case in BAD_CONVOLVE_ARGUMENTS if "progress" not in case[0]
] + [
    ({"rescale": None}, UsageError, "unknown rescale policy None"),
    ({"rescale": "stretch"}, UsageError, "unknown rescale policy 'stretch'"),
    ({"activation": "tanh"}, UsageError, "unknown activation 'tanh'"),
    ({"bias": math.nan}, UsageError, "bias nan is not a finite number"),
]


@pytest.mark.parametrize(("arguments", "error", "what"), BAD_CONVOLVE_ARGUMENTS)
def test_bad_convolve_arguments(arguments, error, what):
    arguments = {"image": IMAGE, "kernel": get_kernel("sharpen"), **arguments}
    refused(lambda: convolve(**arguments), error, what)


@pytest.mark.parametrize(("arguments", "error", "what"), BAD_CONVOLVE_TO_IMAGE_ARGUMENTS)
def test_bad_convolve_to_image_arguments(arguments, error, what):
    arguments = {"image": IMAGE, "kernel": get_kernel("sharpen"), **arguments}
    refused(lambda: convolve_to_image(**arguments), error, what)


def test_offset_that_overflows_the_response():
    kernel = Kernel("lifted", [[1.0]], offset=FLOAT_MAX)
    refused(
        lambda: convolve(np.full((2, 2), FLOAT_MAX), kernel, backend="naive"),
        UsageError,
        "kernel 'lifted'",
        "would overflow float64",
    )


@pytest.mark.parametrize("backend", ["naive", "numpy", "filter2d"])
def test_largest_finite_values_pass_through_exactly(backend):
    image = np.array([[FLOAT_MAX, -FLOAT_MAX], [0.0, 1.0]])
    np.testing.assert_array_equal(convolve(image, get_kernel("identity"), backend=backend), image)


@pytest.mark.parametrize("backend", ["naive", "numpy", "filter2d", "fft"])
def test_nan_pixels_give_nan_without_a_warning(backend):
    response = convolve(np.full((3, 3), math.nan), [[0, 1, 0]], backend=backend)
    assert np.isnan(response).all()


def test_kernel_given_as_a_name_is_looked_up():
    np.testing.assert_array_equal(
        convolve(IMAGE, "sharpen", backend="naive"),
        convolve(IMAGE, get_kernel("sharpen"), backend="naive"),
    )


def test_kernel_given_as_an_inline_string_is_parsed():
    np.testing.assert_array_equal(
        convolve(IMAGE, "0,1,0", padding="valid", backend="naive"), IMAGE[:, 1:-1]
    )


# --- to_image, make_padding ------------------------------------------------------------------

RESPONSE = np.array([[-3.0, 0.5, 300.0]])

BAD_TO_IMAGE = [
    ({"rescale": "stretch"}, "unknown rescale policy 'stretch'"),
    ({"rescale": None}, "unknown rescale policy None"),
    ({"rescale": 3}, "unknown rescale policy 3"),
    ({"activation": "tanh"}, "unknown activation 'tanh'"),
    ({"activation": 1}, "unknown activation 1"),
    ({"bias": math.nan}, "bias nan is not a finite number"),
    ({"bias": math.inf}, "bias inf is not a finite number"),
    ({"bias": -math.inf, "rescale": "none"}, "bias -inf is not a finite number"),
    ({"bias": "1"}, "bias '1' is not a finite number"),
    ({"bias": FLOAT_MAX, "response": np.array([[FLOAT_MAX]])}, "bias 1.79769e+308 added"),
    ({"response": np.array([[math.nan, 1.0]])}, "the response holds NaN values"),
    ({"response": np.array([[math.nan]]), "rescale": "minmax"}, "holds NaN values"),
    ({"response": np.array([[math.nan]]), "rescale": "abs"}, "holds NaN values"),
    ({"response": np.array([[math.inf, 0.0]]), "rescale": "minmax"}, "infinite values"),
    ({"response": np.array([[1j]])}, "got dtype complex128"),
    ({"response": np.array([["a"]])}, "got dtype <U1"),
    ({"response": [[1.0], []]}, "rectangular array of numbers"),
    ({"like": "not a dtype"}, "like='not a dtype'"),
]


@pytest.mark.parametrize(("arguments", "what"), BAD_TO_IMAGE)
def test_bad_to_image_arguments(arguments, what):
    arguments = {"response": RESPONSE, **arguments}
    refused(lambda: to_image(**arguments), UsageError, what)


def test_minmax_over_the_whole_float64_range_is_exact():
    response = np.array([[-FLOAT_MAX, 0.0, FLOAT_MAX]])
    np.testing.assert_array_equal(to_image(response, rescale="minmax"), [[0, 128, 255]])


def test_integer_responses_are_taken():
    np.testing.assert_array_equal(to_image(np.array([[-1, 7, 300]])), [[0, 7, 255]])


@pytest.mark.parametrize(
    ("mode", "cval", "what"),
    [
        ("bounce", 0.0, "unknown padding mode 'bounce'"),
        (None, 0.0, "unknown padding mode None"),
        (b"constant", 0.0, "unknown padding mode b'constant'"),
        ("constant", math.nan, "cval nan"),
        ("constant", -math.inf, "cval -inf"),
        ("constant", "x", "cval 'x'"),
        ("constant", 10**400, "cval 1000"),
        ("constant", [1.0], "cval [1.0]"),
        (Padding("wrap", math.inf), 0.0, "cval inf"),
    ],
)
def test_bad_padding(mode, cval, what):
    refused(lambda: make_padding(mode, cval), UsageError, what)


# --- where kernels came from -----------------------------------------------------------------


def test_every_derived_kernel_remembers_its_file(tmp_path):
    path = write(tmp_path, "k.txt", "1 2\n3 4\n")
    kernel = load_kernel(path)
    derived = [
        kernel.flipped(),
        kernel.normalized(),
        kernel.scaled(2),
        kernel.renamed("x"),
        kernel.anchored((0, 0)),
        *adjust_kernels([kernel], normalize=True, scale=3, anchor=(1, 1)),
    ]
    assert {k.source for k in [kernel, *derived]} == {path}
    assert Stack("s", (kernel, "relu", get_kernel("sharpen"), kernel)).sources == (path,)


@pytest.mark.parametrize("step", ["sharpen", None, 3])
def test_a_stack_built_by_hand_with_a_bad_step(step):
    from convkit.stack import run_stack

    stack = Stack("s", (get_kernel("identity"), step))
    refused(
        lambda: run_stack(IMAGE, stack, Padding(), "naive"),
        KernelError,
        f"stack 's': step {step!r} is neither a kernel nor relu",
    )


def test_stack_amplification_overflows_quietly_to_inf():
    big = Kernel("big", [[1e200]])
    assert Stack("s", (big, big)).abs_sum == math.inf
