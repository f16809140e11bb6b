"""Dask arrays filtered tile by tile equal the in-memory result, across every chunk border."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convkit.engine import convolve
from convkit.kernels import Kernel
from convkit.padding import make_padding

da = pytest.importorskip("dask.array", reason="the [scale] extra brings dask")

from convkit.tiles import convolve_lazy, is_dask_array, merged_chunks  # noqa: E402

MODES = ["replicate", "constant", "reflect", "reflect101", "wrap", "valid"]


@settings(max_examples=200, deadline=None)
@given(
    height=st.integers(1, 23),
    width=st.integers(1, 23),
    colour=st.booleans(),
    kernel_shape=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    anchor_seed=st.tuples(st.integers(0, 6), st.integers(0, 6)),
    chunks=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    mode=st.sampled_from(MODES),
    seed=st.integers(0, 2**16),
)
@pytest.mark.slow
def test_tiles_equal_the_whole_image(
    height, width, colour, kernel_shape, anchor_seed, chunks, mode, seed
):
    """Every padding mode, odd, even and rectangular kernels, any anchor, chunks smaller
    than the kernel: the lazy result is the in-memory one (integer data: exactly)."""
    kh, kw = kernel_shape
    if mode == "valid" and (kh > height or kw > width):
        return
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3) if colour else (height, width), np.uint8)
    weights = rng.integers(-3, 4, kernel_shape).astype(float)
    kernel = Kernel("k", weights, anchor=(anchor_seed[0] % kh, anchor_seed[1] % kw))
    padding = make_padding(mode, 7.0)
    expected = convolve(image, kernel, padding=padding, backend="naive")
    lazy = convolve_lazy(da.from_array(image, chunks=chunks + image.shape[2:]), kernel, padding)
    assert (lazy.shape, lazy.dtype) == (expected.shape, expected.dtype)
    np.testing.assert_array_equal(lazy.compute(), expected)


@pytest.mark.parametrize("mode", MODES)
def test_float_data_agrees_within_the_backends_tolerance(mode):
    rng = np.random.default_rng(3)
    image = rng.normal(size=(40, 31))
    kernel = Kernel("k", rng.normal(size=(6, 5)), anchor=(1, 3))
    padding = make_padding(mode, -2.5)
    expected = convolve(image, kernel, padding=padding, backend="naive")
    lazy = convolve_lazy(da.from_array(image, chunks=(7, 9)), kernel, padding, "filter2d")
    tolerance = 1e-9 * np.abs(kernel.weights).sum() * np.abs(image).max()
    np.testing.assert_allclose(lazy.compute(), expected, rtol=0, atol=tolerance)


def test_float32_precision_gives_float32_tiles():
    image = np.arange(64 * 48, dtype=np.uint16).reshape(64, 48)
    kernel = Kernel("k", np.full((3, 3), 1 / 9))
    lazy = convolve_lazy(da.from_array(image, chunks=16), kernel, make_padding("wrap"),
                         precision="float32")  # fmt: skip
    assert lazy.dtype == np.float32
    expected = convolve(image, kernel, padding="wrap", precision="float32")
    np.testing.assert_allclose(lazy.compute(), expected, rtol=1e-6)


def test_the_result_stays_lazy_until_computed():
    calls = []

    def counted(block):
        calls.append(block.shape)
        return block

    image = da.from_array(np.ones((100, 100)), chunks=25).map_blocks(counted)
    lazy = convolve_lazy(image, Kernel("k", np.ones((3, 3))), make_padding("reflect101"))
    real = [shape for shape in calls if shape == (25, 25)]  # dask probes with tiny metas
    assert real == [] and is_dask_array(lazy)
    assert float(lazy.sum().compute()) == 9 * 100 * 100
    assert len([shape for shape in calls if shape == (25, 25)]) == 16


def test_a_kernel_larger_than_the_image_repeats_the_padding_as_numpy_does():
    image = np.arange(6, dtype=float).reshape(2, 3)
    kernel = Kernel("k", np.ones((5, 7)))
    for mode in ("wrap", "reflect", "reflect101", "replicate"):
        expected = convolve(image, kernel, padding=mode, backend="naive")
        lazy = convolve_lazy(da.from_array(image, chunks=1), kernel, make_padding(mode))
        np.testing.assert_array_equal(lazy.compute(), expected)


@pytest.mark.parametrize(
    ("sizes", "least", "expected"),
    [((5, 5, 5, 2), 3, (5, 5, 7)), ((1, 16, 1, 1), 3, (19,)),
     ((2, 1, 16), 3, (3, 16)), ((4,), 9, (4,)), ((3, 3), 0, (3, 3))],
)  # fmt: skip
def test_small_chunks_are_merged_with_their_neighbours(sizes, least, expected):
    merged = merged_chunks(sizes, least)
    assert sum(merged) == sum(sizes)
    assert merged == expected


@pytest.mark.parametrize("channels", [(), (3,), (4,), (2,)])
@pytest.mark.parametrize("rescale", ["clip", "abs", "minmax", "none"])
def test_the_library_takes_dask_arrays_and_to_image_their_lazy_response(channels, rescale):
    """DESIGN §8: `convolve` of a dask array is lazy, as `to_image` of its response; both
    equal the in-memory calls exactly, the alpha channel carried through unfiltered."""
    from convkit import convolve as public_convolve
    from convkit import get_kernel, to_image

    image = np.random.default_rng(1).integers(0, 256, (30, 41, *channels), dtype=np.uint8)
    kernel = get_kernel("sharpen")
    for mode in ("wrap", "reflect101", "valid"):
        expected = to_image(public_convolve(image, kernel, padding=mode, flip=True),
                            like=image, rescale=rescale, bias=1.5)  # fmt: skip
        lazy = public_convolve(da.from_array(image, chunks=(7, 9, *channels)), kernel,
                               padding=mode, flip=True)  # fmt: skip
        assert is_dask_array(lazy)
        pixels = to_image(lazy, like=image, rescale=rescale, bias=1.5)
        assert is_dask_array(pixels)
        np.testing.assert_array_equal(pixels.compute(), expected)


def test_a_bad_dask_argument_is_a_usage_error():
    from convkit import convolve as public_convolve
    from convkit.errors import ConvkitError

    with pytest.raises(ConvkitError, match="unknown padding"):
        public_convolve(da.zeros((8, 8), chunks=4), [[1]], padding="bogus")
    with pytest.raises(ConvkitError, match="larger than the image"):
        public_convolve(da.zeros((2, 2), chunks=1), np.ones((3, 3)), padding="valid")
