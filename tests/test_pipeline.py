"""The pipeline's streaming path: strips of rows give exactly the whole-image result."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from convkit import convolve, to_image
from convkit.kernels import Kernel, get_kernel
from convkit.padding import Padding
from convkit.pipeline import ApplySettings, can_stream, stream


@settings(max_examples=120, deadline=None)
@given(
    image=arrays(st.sampled_from([np.uint8, np.uint16]),
                 st.tuples(st.integers(1, 30), st.integers(1, 12)), elements=st.integers(0, 255)),
    colour=st.booleans(),
    weights=arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 5)),
                   elements=st.sampled_from([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0, 1 / 3])),
    mode=st.sampled_from(["replicate", "constant", "reflect", "reflect101", "wrap", "valid"]),
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
    options = ApplySettings(padding=Padding(mode, 3.0), backends=(backend,), flip=flip,
                            rescale=rescale, compare=False)  # fmt: skip
    assert can_stream(image, kernel, (backend,), options)
    streamed = stream(image, kernel, backend, options, strip_bytes=2 * image.shape[1] * 3 * 8)
    response = convolve(image, kernel, mode, 3.0, backend="naive", flip=flip)
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
    ("changes", "expected"),
    [
        ({}, True),
        ({"backends": ("naive",)}, False),
        ({"backends": ("naive", "filter2d")}, False),
        ({"compare": True}, False),
        ({"rescale": "minmax"}, False),
        ({"rescale": "none"}, False),
        ({"padding": Padding("constant", 0.5)}, False),
        ({"padding": Padding("constant", 300.0)}, False),
        ({"padding": Padding("constant", 7.0)}, True),
    ],
)
def test_streaming_only_where_nothing_needs_the_whole_response(changes, expected):
    values = {"backends": ("filter2d",), "compare": False} | changes
    options = ApplySettings(**values)
    image = np.zeros((4, 4), dtype=np.uint8)
    assert can_stream(image, get_kernel("sharpen"), options.backends, options) is expected


@settings(max_examples=120, deadline=None)
@given(
    image=arrays(st.sampled_from([np.uint8, np.uint16]),
                 st.tuples(st.integers(1, 20), st.integers(1, 20), st.sampled_from([1, 3, 4])),
                 elements=st.integers(0, 255)),
    weights=arrays(np.float64, st.tuples(st.integers(1, 7), st.integers(1, 7)),
                   elements=st.integers(-9, 9).map(float)),
    mode=st.sampled_from(["replicate", "constant", "reflect", "reflect101", "wrap", "valid"]),
    cval=st.integers(0, 9),
    flip=st.booleans(),
)  # fmt: skip
def test_one_pass_integer_path_is_bit_exact(image, weights, mode, cval, flip):
    """Integer kernels on 8/16-bit images go straight to pixels through OpenCV: same bits."""
    from convkit.pipeline import saturates_exactly

    image = image[..., 0] if image.shape[2] == 1 else image
    kh, kw = weights.shape
    if mode == "valid" and (kh > image.shape[0] or kw > image.shape[1]):
        return
    kernel = Kernel("k", weights)
    options = ApplySettings(padding=Padding(mode, float(cval)), backends=("filter2d",),
                            flip=flip, compare=False)  # fmt: skip
    assert saturates_exactly(image, kernel, "filter2d", options)
    streamed = stream(image, kernel, "filter2d", options)
    whole = to_image(convolve(image, kernel, mode, cval, backend="naive", flip=flip), image)
    np.testing.assert_array_equal(streamed, whole)


@settings(max_examples=150, deadline=None)
@given(
    image=arrays(np.uint8, st.tuples(st.integers(1, 14), st.integers(1, 14)),
                 elements=st.integers(0, 255)),
    colour=st.booleans(),
    weights=arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 5)),
                   elements=st.sampled_from([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0])),
    anchor_seed=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    mode=st.sampled_from(["replicate", "constant", "reflect", "reflect101", "wrap", "valid"]),
    flip=st.booleans(),
    corner=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
)  # fmt: skip
def test_a_region_alone_equals_that_region_of_the_whole_image(
    image, colour, weights, anchor_seed, mode, flip, corner
):
    """The default naive reference runs on a crop: its values must be the whole image's."""
    from convkit.pipeline import correlate_region

    if colour:
        image = np.stack([image, image[::-1], 255 - image], axis=-1)
    kh, kw = weights.shape
    if mode == "valid" and (kh > image.shape[0] or kw > image.shape[1]):
        return
    kernel = Kernel("k", weights, anchor=(anchor_seed[0] % kh, anchor_seed[1] % kw))
    whole = convolve(image, kernel, mode, 7.0, backend="naive", flip=flip)
    height, width = whole.shape[:2]
    y, x = int(corner[0] * (height - 1)), int(corner[1] * (width - 1))
    h = 1 + int(corner[2] * (height - y - 1))
    w = 1 + int(corner[3] * (width - x - 1))
    options = ApplySettings(padding=Padding(mode, 7.0), flip=flip)
    region = correlate_region(image, kernel, (y, x, h, w), options)
    np.testing.assert_array_equal(region, whole[y : y + h, x : x + w])
