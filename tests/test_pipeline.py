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
    whole = to_image(convolve(image, kernel, mode, 3.0, backend="naive", flip=flip), image, rescale)
    if backend == "fft":  # FFT round-off may move a value across a rounding boundary
        assert np.abs(streamed.astype(int) - whole.astype(int)).max() <= 1
    else:
        np.testing.assert_array_equal(streamed, whole)


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
