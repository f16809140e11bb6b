"""The semantics of DESIGN §2, backend by backend, against hand-worked values and scipy."""

from unittest import mock

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from convkit import UsageError, convolve, get_kernel, to_image
from convkit.backends import filter2d
from convkit.engine import convolve_to_image, strip_rows, working_dtype
from convkit.kernels import Kernel
from convkit.padding import PADDING_MODES, Padding
from convkit.timing import agreement_tolerance
from tests.conftest import AGREEMENT, BACKENDS, DIRECT_BACKENDS, PADDINGS, assert_exact

SCIPY_MODE = {name: mode.scipy_mode for name, mode in PADDING_MODES.items()}

# --- the tutorials' worked examples, exact -------------------------------------------------

FLAT = np.full((2, 2), 200, dtype=np.uint8)
HORIZONTAL_EDGE_IMAGE = np.array([[200, 200], [0, 0]], dtype=np.uint8)
VERTICAL_EDGE_IMAGE = np.array([[200, 0], [200, 0]], dtype=np.uint8)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        pytest.param(FLAT, (0, 0), id="flat"),
        pytest.param(HORIZONTAL_EDGE_IMAGE, (800, 0), id="horizontal-edge"),
        pytest.param(VERTICAL_EDGE_IMAGE, (0, 800), id="vertical-edge"),
    ],
)
def test_edge_kernels_give_the_tutorial_confidence_scores(backend, image, expected):
    scores = tuple(
        convolve(image, get_kernel(name), padding="valid", backend=backend).item()
        for name in ("horizontal_edge", "vertical_edge")
    )
    assert scores == expected


def test_two_by_two_kernel_on_three_by_three_matrix_under_valid(backend):
    matrix = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    result = convolve(matrix, [[0, 1], [1, 0]], padding="valid", backend=backend)
    np.testing.assert_array_equal(result, [[6, 8], [12, 14]])


def test_mean_of_the_tutorial_patch_rounds_to_132(backend):
    patch = np.array([[93, 139, 101], [26, 252, 196], [135, 230, 18]], dtype=np.uint8)
    mean = np.full((3, 3), 1 / 9)
    value = convolve(patch, mean, padding="valid", backend=backend).item()
    assert value == pytest.approx(1190 / 9)
    assert round(value) == 132


def test_correlation_is_the_default_and_flip_convolves(backend):
    # An asymmetric kernel tells the two apart: shifting right vs left.
    row = np.array([[0, 0, 5, 0, 0]], dtype=float)
    kernel = [[1, 0, 0]]
    assert_exact(
        backend, convolve(row, kernel, padding="constant", backend=backend), [[0, 0, 0, 5, 0]]
    )
    assert_exact(
        backend,
        convolve(row, kernel, padding="constant", backend=backend, flip=True),
        [[0, 5, 0, 0, 0]],
    )


def test_even_kernel_anchor_is_opencvs(backend):
    # kH // 2 = 1: the 2x2 kernel's bottom-right weight sits on the output pixel.
    image = np.arange(16, dtype=float).reshape(4, 4)
    kernel = np.array([[1.0, 0.0], [0.0, 0.0]])  # picks the pixel up and to the left
    result = convolve(image, kernel, padding="constant", backend=backend)
    expected = np.zeros((4, 4))
    expected[1:, 1:] = image[:-1, :-1]
    assert_exact(backend, result, expected)


@pytest.mark.parametrize("mode", PADDINGS)
def test_each_padding_mode_on_a_row_matches_its_pattern(backend, mode):
    # A 1x7 kernel picking its leftmost tap reads three pixels to the left: the padding.
    row = np.array([[1, 2, 3, 4, 5, 6, 7, 8]], dtype=float)  # abcdefgh
    pick_left = np.zeros((1, 7))
    pick_left[0, 0] = 1.0
    result = convolve(row, pick_left, padding=mode, cval=9, backend=backend)
    expected_prefix = {
        "replicate": [1, 1, 1],  # aaa|
        "constant": [9, 9, 9],  # 000| with cval 9
        "reflect": [3, 2, 1],  # cba|
        "reflect101": [4, 3, 2],  # dcb|
        "wrap": [6, 7, 8],  # fgh|
    }
    if mode == "valid":
        assert_exact(backend, result, [[1, 2]])
    else:
        assert_exact(backend, result[0, :3], expected_prefix[mode])
        assert_exact(backend, result[0, 3:], row[0, :5])


def test_colour_channels_are_filtered_one_by_one(backend, rng):
    image = rng.integers(0, 256, size=(6, 7, 3)).astype(np.uint8)
    kernel = get_kernel("sobel_x")
    result = convolve(image, kernel, backend=backend)
    assert result.shape == (6, 7, 3)
    assert result.dtype == np.float64
    for c in range(3):
        np.testing.assert_allclose(
            result[..., c],
            ndi.correlate(image[..., c].astype(float), kernel.weights, mode="nearest"),
        )


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
def test_any_real_dtype_gives_float64_without_clipping(backend, dtype):
    image = np.array([[0, 0, 0], [0, 100, 0], [0, 0, 0]], dtype=dtype)
    result = convolve(image, get_kernel("laplacian"), padding="constant", backend=backend)
    assert result.dtype == np.float64
    assert_exact(backend, result[1, 1], -400)  # negative: nothing clipped
    assert_exact(backend, result[0, 1], 100)


def test_libvips_offset_is_added_after_filtering(backend):
    kernel = Kernel("shift", [[1.0]], offset=128)
    result = convolve(np.array([[1, 2]]), kernel, backend=backend)
    np.testing.assert_array_equal(result, [[129, 130]])


# --- property tests against scipy.ndimage ---------------------------------------------------

images = arrays(
    np.float64,
    st.tuples(st.integers(1, 9), st.integers(1, 9)),
    elements=st.integers(-255, 255).map(float),
)
kernels = arrays(
    np.float64,
    st.tuples(st.integers(1, 6), st.integers(1, 6)),
    elements=st.integers(-9, 9).map(float),
)
scipy_modes = st.sampled_from(["replicate", "constant", "reflect", "reflect101", "wrap"])


def _assert_agrees(result, expected, weights, image, backend="naive"):
    tolerance = agreement_tolerance(weights, image, AGREEMENT[backend])
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.slow  # property-based: many examples; CI runs it with -m slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=images, weights=kernels, mode=scipy_modes, cval=st.integers(-5, 5), flip=st.booleans())
def test_every_backend_equals_scipy(backend_name, image, weights, mode, cval, flip):
    """Odd, even and rectangular kernels, larger than the image too, on every padding mode."""
    result = convolve(image, weights, padding=mode, cval=cval, backend=backend_name, flip=flip)
    oracle = ndi.convolve if flip else ndi.correlate
    expected = oracle(image, weights, mode=SCIPY_MODE[mode], cval=cval)
    _assert_agrees(result, expected, weights, image, backend_name)


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.slow  # property-based: many examples; CI runs it with -m slow
@settings(max_examples=100, deadline=None)
@given(image=images, weights=kernels, flip=st.booleans())
def test_valid_is_the_inner_part_of_any_padded_result(backend_name, image, weights, flip):
    kh, kw = weights.shape
    h, w = image.shape
    if kh > h or kw > w:
        with pytest.raises(UsageError, match="larger than the image"):
            convolve(image, weights, padding="valid", backend=backend_name)
        return
    result = convolve(image, weights, padding="valid", backend=backend_name, flip=flip)
    assert result.shape == (h - kh + 1, w - kw + 1)
    # Where the kernel lies wholly inside the image the padding is never read.
    ay, ax = ((kh - 1) - kh // 2, (kw - 1) - kw // 2) if flip else (kh // 2, kw // 2)
    full = convolve(image, weights, padding="constant", backend=backend_name, flip=flip)
    inner = full[ay : ay + result.shape[0], ax : ax + result.shape[1]]
    _assert_agrees(result, inner, weights, image, backend_name)


@pytest.mark.slow  # property-based: many examples; CI runs it with -m slow
@settings(max_examples=100, deadline=None)
@given(image=images, weights=kernels, mode=st.sampled_from(PADDINGS), flip=st.booleans())
def test_every_backend_agrees_with_naive(image, weights, mode, flip):
    kh, kw = weights.shape
    if mode == "valid" and (kh > image.shape[0] or kw > image.shape[1]):
        return
    a = convolve(image, weights, padding=mode, backend="naive", flip=flip)
    for backend in BACKENDS:
        b = convolve(image, weights, padding=mode, backend=backend, flip=flip)
        _assert_agrees(a, b, weights, image, backend)


def test_agreement_on_a_real_photo_large_kernel(rng):
    image = rng.integers(0, 256, size=(40, 50)).astype(np.uint8)
    weights = rng.normal(size=(13, 11))  # area 143: filter2D takes its DFT path
    for mode in PADDINGS:
        a = convolve(image, weights, padding=mode, backend="naive")
        for backend in BACKENDS:
            b = convolve(image, weights, padding=mode, backend=backend)
            _assert_agrees(a, b, weights, image, backend)


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((0, 5)), "empty"),
        (np.zeros(5), r"\(H, W\)"),
        (np.zeros((2, 2, 2, 2)), r"\(H, W\)"),
        (np.array([["a", "b"]]), "real numbers"),
        (np.zeros((2, 2), dtype=complex), "real numbers"),
    ],
)
def test_bad_images_are_refused(image, message):
    with pytest.raises(UsageError, match=message):
        convolve(image, get_kernel("identity"))


def test_unknown_padding_lists_the_modes():
    with pytest.raises(UsageError, match="replicate, constant, reflect, reflect101, wrap, valid"):
        convolve(np.ones((3, 3)), get_kernel("identity"), padding="bounce")


def test_unknown_backend_lists_the_backends():
    with pytest.raises(UsageError, match="naive, filter2d"):
        convolve(np.ones((3, 3)), get_kernel("identity"), backend="cuda")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused(bad):
    with pytest.raises(UsageError, match="NaN or infinite"):
        convolve(np.ones((3, 3)), [[1.0, bad]])


def test_kernel_larger_than_image_under_valid_names_both_sizes():
    with pytest.raises(UsageError, match=r"\(7x7\) is larger than the image \(5x6\)"):
        convolve(np.ones((5, 6)), get_kernel("small_blur"), padding="valid")


def test_progress_reports_every_row_over_all_channels():
    calls = []
    convolve(
        np.zeros((4, 3, 3)), get_kernel("identity"), backend="naive",
        progress=lambda done, total: calls.append((done, total)),
    )  # fmt: skip
    assert calls == [(i, 12) for i in range(1, 13)]


colour_images = arrays(
    np.float64,
    st.tuples(st.integers(1, 8), st.integers(1, 8), st.sampled_from([2, 3, 4, 5])),
    elements=st.integers(-255, 255).map(float),
)


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.slow  # property-based: many examples; CI runs it with -m slow
@settings(max_examples=60, deadline=None)
@given(image=colour_images, weights=kernels, mode=scipy_modes, cval=st.integers(-5, 5))
def test_multichannel_images_equal_scipy_channel_by_channel(
    backend_name, image, weights, mode, cval
):
    """Grey + alpha (2 channels) and colour + alpha (4) carry their last channel unfiltered."""
    result = convolve(image, weights, padding=mode, cval=cval, backend=backend_name)
    filtered = image.shape[2] - (image.shape[2] in (2, 4))
    for c in range(filtered):
        expected = ndi.correlate(image[..., c], weights, mode=SCIPY_MODE[mode], cval=cval)
        _assert_agrees(result[..., c], expected, weights, image, backend_name)
    np.testing.assert_array_equal(result[..., filtered:], image[..., filtered:])


@pytest.mark.parametrize(
    ("dtype", "weights", "cval", "expected"),
    [
        (np.uint8, [[0, -1, 0], [-1, 5, -1], [0, -1, 0]], 0, np.float32),
        (np.uint16, [[1, 2, 1]], 0, np.float32),  # 65535 * 4 < 2**24
        (np.uint16, np.full((7, 7), 9), 0, np.float64),  # 65535 * 441 >= 2**24
        (np.uint8, [[0.5, 0.5]], 0, np.float64),  # not integer weights
        (np.uint8, np.ones((8, 8)), 0, np.float64),  # OpenCV's DFT path is not exact
        (np.uint8, [[1, 1]], 0.5, np.float64),  # a fractional border constant
        (np.float64, [[1, 1]], 0, np.float64),
        (np.float32, [[1, 1]], 0, np.float64),
    ],
)
def test_float32_only_where_it_is_exact(dtype, weights, cval, expected):
    assert working_dtype(np.dtype(dtype), np.asarray(weights, dtype=float), cval) == expected


integer_images = arrays(
    st.sampled_from([np.uint8, np.uint16]),
    st.tuples(st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 3])),
    elements=st.integers(0, 255),
)
integer_kernels = arrays(
    np.float64,
    st.tuples(st.integers(1, 7), st.integers(1, 7)),
    elements=st.integers(-9, 9).map(float),
)


@pytest.mark.parametrize("backend_name", DIRECT_BACKENDS)
@pytest.mark.slow  # property-based: many examples; CI runs it with -m slow
@settings(max_examples=80, deadline=None)
@given(image=integer_images, weights=integer_kernels, mode=scipy_modes, cval=st.integers(0, 9))
def test_integer_images_and_kernels_give_exact_integers(backend_name, image, weights, mode, cval):
    """The oracle computes in int64: the response must equal it bit for bit."""
    image = image[..., 0] if image.shape[2] == 1 else image
    result = convolve(image, weights, padding=mode, cval=cval, backend=backend_name)
    assert result.dtype == np.float64
    planes = image[..., None] if image.ndim == 2 else image
    for c in range(planes.shape[2]):
        exact = ndi.correlate(
            planes[..., c].astype(np.int64),
            weights.astype(np.int64),
            mode=SCIPY_MODE[mode],
            cval=cval,
        )
        got = result if image.ndim == 2 else result[..., c]
        np.testing.assert_array_equal(got, exact)


# --- the anchor -----------------------------------------------------------------------------

anchored_kernels = kernels.flatmap(
    lambda w: st.tuples(
        st.just(w), st.tuples(st.integers(0, w.shape[0] - 1), st.integers(0, w.shape[1] - 1))
    )
)


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.slow  # property-based: many examples; CI runs it with -m slow
@settings(max_examples=100, deadline=None)
@given(image=images, kernel=anchored_kernels, mode=scipy_modes, flip=st.booleans())
def test_anchor_matches_scipys_origin(backend_name, image, kernel, mode, flip):
    """scipy's centre is k // 2 + origin; convkit's anchor is that centre."""
    weights, (ay, ax) = kernel
    kh, kw = weights.shape
    result = convolve(
        image, weights, padding=mode, backend=backend_name, flip=flip, anchor=(ay, ax)
    )
    if flip:  # convolution = correlation with the rotated kernel and anchor
        weights, (ay, ax) = weights[::-1, ::-1], (kh - 1 - ay, kw - 1 - ax)
    origin = (ay - kh // 2, ax - kw // 2)
    expected = ndi.correlate(image, weights, mode=SCIPY_MODE[mode], origin=origin)
    _assert_agrees(result, expected, weights, image, backend_name)


@pytest.mark.slow  # property-based: many examples; CI runs it with -m slow
@settings(max_examples=60, deadline=None)
@given(image=images, kernel=anchored_kernels, mode=st.sampled_from(PADDINGS))
def test_anchor_agrees_across_backends(image, kernel, mode):
    weights, anchor = kernel
    if mode == "valid" and (weights.shape[0] > image.shape[0] or weights.shape[1] > image.shape[1]):
        return
    a = convolve(image, weights, padding=mode, backend="naive", anchor=anchor)
    for backend in BACKENDS:
        b = convolve(image, weights, padding=mode, backend=backend, anchor=anchor)
        _assert_agrees(a, b, weights, image, backend)


def test_imagemagick_origin_moves_the_response(backend):
    from convkit import parse_kernel

    row = np.array([[0, 0, 5, 0, 0]], dtype=float)
    # "3x1+0+0": the leftmost weight sits on the output pixel, so it reads to the right.
    kernel = parse_kernel("3x1+0+0: 0 0 1")
    assert_exact(
        backend, convolve(row, kernel, padding="constant", backend=backend), [[5, 0, 0, 0, 0]]
    )


# --- separable kernels ---------------------------------------------------------------------

separable_kernels = st.tuples(
    arrays(np.float64, st.integers(2, 7), elements=st.integers(-9, 9).map(float)),
    arrays(np.float64, st.integers(2, 7), elements=st.integers(-9, 9).map(float)),
).map(lambda parts: np.outer(*parts))


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.slow  # property-based: many examples; CI runs it with -m slow
@settings(max_examples=60, deadline=None)
@given(image=images, weights=separable_kernels, mode=scipy_modes, flip=st.booleans())
def test_separable_kernels_equal_scipy(backend_name, image, weights, mode, flip):
    """filter2d takes its sepFilter2D path for these: two 1-D passes."""
    result = convolve(image, weights, padding=mode, backend=backend_name, flip=flip)
    oracle = ndi.convolve if flip else ndi.correlate
    expected = oracle(image, weights, mode=SCIPY_MODE[mode])
    _assert_agrees(result, expected, weights, image, backend_name)


def test_separable_factors_are_exact_for_box_and_sobel():
    from convkit.backends.filter2d import separable_factors

    column, row = separable_factors(get_kernel("sobel_x").weights)
    np.testing.assert_array_equal(np.outer(column, row), get_kernel("sobel_x").weights)
    column, row = separable_factors(get_kernel("small_blur").weights)
    np.testing.assert_array_equal(np.outer(column, row), get_kernel("small_blur").weights)
    assert separable_factors(get_kernel("sharpen").weights) is None
    assert separable_factors(get_kernel("motion:9:30").weights) is None


# --- precision ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_float32_precision_returns_float32_within_its_tolerance(backend_name, rng):
    image = rng.integers(0, 256, size=(30, 40, 3)).astype(np.uint8)
    weights = get_kernel("large_blur").weights
    result = convolve(image, weights, backend=backend_name, precision="float32")
    assert result.dtype == np.float32
    for c in range(3):
        expected = ndi.correlate(image[..., c].astype(float), weights, mode="nearest")
        tolerance = agreement_tolerance(weights, image, 1e-5)
        np.testing.assert_allclose(result[..., c], expected, rtol=0, atol=tolerance)


def test_unknown_precision():
    with pytest.raises(UsageError, match="unknown precision 'float16'"):
        convolve(np.ones((3, 3)), get_kernel("identity"), precision="float16")


# --- one entry point: keyword options, alpha, regions, streamed images -----------------------


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        convolve(np.ones((3, 3)), get_kernel("identity"), "wrap")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [2, 4], ids=["grey+alpha", "colour+alpha"])
def test_alpha_is_carried_through_unfiltered(backend, channels, dtype, rng):
    """DESIGN §2, as the command line does it: to_image(convolve(rgba, k), like=rgba)."""
    rgba = rng.integers(0, 256, size=(6, 7, channels)).astype(dtype)
    kernel = get_kernel("sharpen")
    out = to_image(convolve(rgba, kernel, backend=backend), like=rgba)
    assert out.shape == rgba.shape and out.dtype == dtype
    np.testing.assert_array_equal(out[..., -1], rgba[..., -1])
    colour = rgba[..., 0] if channels == 2 else rgba[..., :3]
    expected = to_image(convolve(colour, kernel, backend=backend), like=colour)
    np.testing.assert_array_equal(out[..., 0] if channels == 2 else out[..., :3], expected)


@pytest.mark.parametrize("rescale", ["clip", "abs", "minmax", "none"])
def test_alpha_is_neither_rescaled_nor_biased(rescale, rng):
    rgba = rng.integers(0, 256, size=(5, 6, 4)).astype(np.uint8)
    response = convolve(rgba, get_kernel("laplacian"))
    out = to_image(response, like=rgba, rescale=rescale, bias=40.0, activation="relu")
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    colour = to_image(response[..., :3], like=rgba[..., :3], rescale=rescale, bias=40.0,
                      activation="relu")  # fmt: skip
    np.testing.assert_array_equal(out[..., :3], colour)


@pytest.mark.parametrize("flip", [False, True])
def test_alpha_under_valid_is_the_part_under_the_output(flip):
    rgba = np.zeros((5, 6, 4))
    rgba[..., 3] = np.arange(30).reshape(5, 6)
    kernel = Kernel("k", np.ones((2, 3)), anchor=(0, 0))
    response = convolve(rgba, kernel, padding="valid", flip=flip)
    ay, ax = (1, 2) if flip else (0, 0)  # flipped, the anchor turns with the kernel
    np.testing.assert_array_equal(response[..., 3], rgba[ay : ay + 4, ax : ax + 4, 3])


@pytest.mark.slow  # property-based: many examples; CI runs it with -m slow
@settings(max_examples=150, deadline=None)
@given(
    image=arrays(np.uint8, st.tuples(st.integers(1, 14), st.integers(1, 14)),
                 elements=st.integers(0, 255)),
    channels=st.sampled_from([1, 3, 4]),
    weights=arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 5)),
                   elements=st.sampled_from([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0])),
    anchor_seed=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    mode=st.sampled_from(PADDINGS),
    flip=st.booleans(),
    corner=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
)  # fmt: skip
def test_a_region_alone_equals_that_region_of_the_whole_image(
    image, channels, weights, anchor_seed, mode, flip, corner
):
    """The default reference runs on a crop: its values must be the whole image's."""
    if channels > 1:
        image = np.stack([image, image[::-1], 255 - image, image[:, ::-1]][:channels], axis=-1)
    kh, kw = weights.shape
    if mode == "valid" and (kh > image.shape[0] or kw > image.shape[1]):
        return
    kernel = Kernel("k", weights, anchor=(anchor_seed[0] % kh, anchor_seed[1] % kw))
    options = {"padding": mode, "cval": 7.0, "backend": "naive", "flip": flip}
    whole = convolve(image, kernel, **options)
    height, width = whole.shape[:2]
    y, x = int(corner[0] * (height - 1)), int(corner[1] * (width - 1))
    h = 1 + int(corner[2] * (height - y - 1))
    w = 1 + int(corner[3] * (width - x - 1))
    region = convolve(image, kernel, region=(y, x, h, w), **options)
    np.testing.assert_array_equal(region, whole[y : y + h, x : x + w])


@pytest.mark.parametrize(
    ("region", "message"),
    [
        ((0, 0, 0, 2), "region (y=0, x=0, height=0, width=2) is not inside the 4x3 output"),
        ((2, 0, 2, 2), "is not inside the 4x3 output"),
        ((0, -1, 1, 1), "is not inside"),
        ((0, 0, 1), "region must be four whole numbers (y, x, height, width), got (0, 0, 1)"),
        ((0.5, 0, 1, 1), "region must be four whole numbers"),
        (None, None),
    ],
)
def test_regions_outside_the_output_are_refused(region, message):
    image = np.ones((3, 4))
    if message is None:
        np.testing.assert_array_equal(convolve(image, [[1]], region=region), image)
        return
    with pytest.raises(UsageError) as error:
        convolve(image, [[1]], region=region)
    assert message in str(error.value)


def test_cast_false_keeps_the_exact_float32_response():
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    kernel = get_kernel("sobel_x")
    exact = convolve(image, kernel, cast=False)
    assert exact.dtype == np.float32  # integer sums below 2**24: float32 holds them exactly
    np.testing.assert_array_equal(exact, convolve(image, kernel))
    assert convolve(image, [[0.5]], cast=False).dtype == np.float64


@pytest.mark.slow  # property-based: many examples; CI runs it with -m slow
@settings(max_examples=120, deadline=None)
@given(
    image=arrays(st.sampled_from([np.uint8, np.uint16]),
                 st.tuples(st.integers(1, 30), st.integers(1, 12)), elements=st.integers(0, 255)),
    colour=st.booleans(),
    weights=arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 5)),
                   elements=st.sampled_from([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0, 1 / 3])),
    mode=st.sampled_from(PADDINGS),
    flip=st.booleans(),
    rescale=st.sampled_from(["clip", "abs"]),
    backend=st.sampled_from(["filter2d", "numpy", "fft", "auto"]),
)  # fmt: skip
def test_strips_equal_the_whole_image(image, colour, weights, mode, flip, rescale, backend):
    if colour:
        image = np.stack([image, image[::-1], image[:, ::-1]], axis=-1)
    kh, kw = weights.shape
    if mode == "valid" and (kh > image.shape[0] or kw > image.shape[1]):
        return
    kernel = Kernel("k", weights)
    padding = Padding(mode, 3.0)
    assert strip_rows(image, kernel, padding, backend, rescale) is not None
    strip_bytes = 2 * image.shape[1] * 3 * 8  # two rows a strip
    streamed = convolve_to_image(image, kernel, padding=padding, backend=backend, flip=flip,
                                 rescale=rescale, strip_bytes=strip_bytes)  # fmt: skip
    response = convolve(image, kernel, padding=padding, backend="naive", flip=flip)
    whole = to_image(response, image, rescale)
    # Equal pixel for pixel, except where the response sits on a rounding tie (x.5) within
    # round-off: another order of summation may land on either side of it.
    values = np.abs(response) if rescale == "abs" else response
    scale = np.abs(weights).sum() * max(1, int(image.max()), 3)
    near_tie = np.abs(values - np.floor(values) - 0.5) <= 1e-6 * scale
    diff = streamed.astype(int) - whole.astype(int)
    assert np.all(diff[~near_tie] == 0)
    assert np.all(np.abs(diff) <= 1)


@pytest.mark.parametrize(
    ("backend", "rescale", "padding", "dtype", "streams"),
    [
        ("filter2d", "clip", Padding(), np.uint8, True),
        ("naive", "clip", Padding(), np.uint8, False),  # the reference does not stream
        ("filter2d", "minmax", Padding(), np.uint8, False),  # needs the whole response
        ("filter2d", "none", Padding(), np.uint8, False),
        ("filter2d", "abs", Padding("constant", 7.0), np.uint8, True),
        ("filter2d", "clip", Padding("constant", 0.5), np.uint8, False),  # padded as uint8
        ("filter2d", "clip", Padding("constant", 300.0), np.uint8, False),
        ("filter2d", "clip", Padding("constant", 300.0), np.uint16, True),
        ("filter2d", "clip", Padding("constant", 0.5), np.float64, True),
    ],
)
def test_strips_only_where_the_engine_can_stream(backend, rescale, padding, dtype, streams):
    image = np.zeros((4, 4), dtype=dtype)
    rows = strip_rows(image, get_kernel("sharpen"), padding, backend, rescale)
    assert (rows is not None) is streams


def test_a_strip_holds_about_strip_bytes_of_floats():
    image = np.zeros((100, 64, 3), dtype=np.uint8)
    rows = strip_rows(image, get_kernel("sharpen"), Padding(), "filter2d", "clip", 64 * 3 * 8 * 5)
    assert rows == 5
    assert strip_rows(image, get_kernel("sharpen"), Padding(), "filter2d", "clip", 1) == 1


@pytest.mark.slow  # property-based: many examples; CI runs it with -m slow
@settings(max_examples=120, deadline=None)
@given(
    image=arrays(st.sampled_from([np.uint8, np.uint16]),
                 st.tuples(st.integers(1, 20), st.integers(1, 20), st.sampled_from([1, 3, 4])),
                 elements=st.integers(0, 255)),
    weights=arrays(np.float64, st.tuples(st.integers(1, 7), st.integers(1, 7)),
                   elements=st.integers(-9, 9).map(float)),
    mode=st.sampled_from(PADDINGS),
    cval=st.integers(0, 9),
    flip=st.booleans(),
)  # fmt: skip
def test_one_pass_integer_path_is_bit_exact(image, weights, mode, cval, flip):
    """Integer kernels on 8/16-bit images go straight to pixels through OpenCV: same bits."""
    image = image[..., 0] if image.shape[2] == 1 else image
    kh, kw = weights.shape
    if mode == "valid" and (kh > image.shape[0] or kw > image.shape[1]):
        return
    kernel = Kernel("k", weights)
    options = {"padding": mode, "cval": cval, "flip": flip}
    with mock.patch.object(filter2d, "correlate_saturated", wraps=filter2d.correlate_saturated):
        streamed = convolve_to_image(image, kernel, backend="filter2d", **options)
        filter2d.correlate_saturated.assert_called_once()  # the one pass ran
    whole = to_image(convolve(image, kernel, backend="naive", **options), like=image)
    np.testing.assert_array_equal(streamed, whole)


@pytest.mark.parametrize("rescale", ["clip", "abs", "minmax", "none"])
def test_the_filtered_image_is_to_image_of_the_response(backend, rescale, rng):
    """Streamed, in one pass or whole: the same image, alpha carried, as to_image gives."""
    rgba = rng.integers(0, 256, size=(9, 11, 4)).astype(np.uint8)
    kernel = get_kernel("emboss")
    image = convolve_to_image(rgba, kernel, backend=backend, rescale=rescale, bias=2.0)
    expected = to_image(convolve(rgba, kernel, backend=backend), like=rgba, rescale=rescale,
                        bias=2.0)  # fmt: skip
    np.testing.assert_array_equal(image, expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, bool])
@pytest.mark.parametrize("cval", [12.5, -3.5, 70000.0, 1.0])
def test_a_region_is_padded_with_a_cval_its_image_type_cannot_hold(dtype, cval):
    """The window of a region is padded in floats where the image's own type would cut or
    wrap the constant: the region equals that part of the whole response."""
    image = (np.arange(30).reshape(5, 6) % 2).astype(dtype)
    weights = np.arange(9, dtype=float).reshape(3, 3) / 7
    whole = convolve(image, weights, padding="constant", cval=cval)
    for y, x in [(0, 0), (0, 5), (4, 2), (2, 3)]:
        region = convolve(image, weights, padding="constant", cval=cval, region=(y, x, 1, 1))
        assert region[0, 0] == pytest.approx(whole[y, x], abs=1e-12)
    # An independent oracle for one corner: the padded window written out by hand.
    window = np.full((3, 3), cval)
    window[1:, 1:] = image[:2, :2]
    assert whole[0, 0] == pytest.approx(float((window * weights).sum()), abs=1e-12)


def test_the_direct_filter_limit_is_opencv_s_dft_threshold_everywhere():
    """engine and resources restate filter2d's DFT threshold (importing it would load cv2)."""
    from convkit import engine, resources

    assert engine.DIRECT_FILTER_MAX_AREA == filter2d.DFT_MIN_TAPS - 1
    assert resources.DIRECT_MAX_TAPS == filter2d.DFT_MIN_TAPS - 1
