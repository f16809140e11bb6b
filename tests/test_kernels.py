import numpy as np
import pytest

from convkit import Kernel, get_kernel
from convkit.errors import KernelError
from convkit.kernels import BANK, TUTORIAL_BANK, expand_kernel_names


@pytest.mark.parametrize(
    ("name", "weights"),
    [
        ("sharpen", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
        ("laplacian", [[0, 1, 0], [1, -4, 1], [0, 1, 0]]),
        ("sobel_x", [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]),
        ("sobel_y", [[-1, -2, -1], [0, 0, 0], [1, 2, 1]]),
        ("emboss", [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]),
        ("identity", [[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
        ("horizontal_edge", [[2, 2], [-2, -2]]),
        ("vertical_edge", [[2, -2], [2, -2]]),
        ("vertical_line", [[-1, 2, -1], [-1, 2, -1], [-1, 2, -1]]),
        ("horizontal_line", [[-1, -1, -1], [2, 2, 2], [-1, -1, -1]]),
        ("cross", [[-2, 1, -2], [1, 4, 1], [-2, 1, -2]]),
        ("prewitt_x", [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]),
        ("prewitt_y", [[-1, -1, -1], [0, 0, 0], [1, 1, 1]]),
        ("scharr_x", [[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]]),
        ("scharr_y", [[-3, -10, -3], [0, 0, 0], [3, 10, 3]]),
        ("laplacian8", [[1, 1, 1], [1, -8, 1], [1, 1, 1]]),
    ],
)
def test_bank_weights(name, weights):
    np.testing.assert_array_equal(get_kernel(name).weights, weights)


@pytest.mark.parametrize(("name", "size"), [("small_blur", 7), ("large_blur", 21)])
def test_box_blurs_are_means(name, size):
    kernel = get_kernel(name)
    assert kernel.shape == (size, size)
    np.testing.assert_allclose(kernel.weights, 1 / size**2)


def test_bank_sobel_correlates_as_scikit_images_convolves():
    # skimage convolves with HSOBEL_WEIGHTS (scaled by 1/4); convkit correlates by default.
    from skimage.filters import edges

    np.testing.assert_array_equal(
        get_kernel("sobel_y").weights, edges.HSOBEL_WEIGHTS[::-1, ::-1] * 4
    )


def test_all_is_the_tutorials_seven():
    assert expand_kernel_names("all") == list(TUTORIAL_BANK)
    assert len(TUTORIAL_BANK) == 7 and set(TUTORIAL_BANK) <= set(BANK)


def test_names_are_forgiving_about_case_and_dashes():
    assert get_kernel("Sobel-X") is BANK["sobel_x"]


def test_unknown_name_suggests_close_ones():
    with pytest.raises(KernelError, match=r"unknown kernel 'sobelx': did you mean sobel_x"):
        get_kernel("sobelx")


def test_default_anchor_is_opencvs():
    assert Kernel("k", np.ones((2, 2))).anchor == (1, 1)
    assert Kernel("k", np.ones((3, 5))).anchor == (1, 2)
    assert Kernel("k", np.ones((1, 7))).anchor == (0, 3)
    assert Kernel("k", np.ones((4, 6))).anchor == (2, 3)


def test_flipped_rotates_weights_and_anchor():
    kernel = Kernel("k", [[1, 2, 3], [4, 5, 6]], anchor=(0, 0))
    flipped = kernel.flipped()
    np.testing.assert_array_equal(flipped.weights, [[6, 5, 4], [3, 2, 1]])
    assert flipped.anchor == (1, 2)


def test_normalize_and_scale():
    kernel = Kernel("k", [[1, 2], [3, 4]])
    np.testing.assert_allclose(kernel.normalized().weights, [[0.1, 0.2], [0.3, 0.4]])
    np.testing.assert_array_equal(kernel.scaled(2).weights, [[2, 4], [6, 8]])
    zero_sum = get_kernel("sobel_x")
    np.testing.assert_array_equal(zero_sum.normalized().weights, zero_sum.weights)


def test_weights_are_read_only():
    with pytest.raises(ValueError):
        get_kernel("sharpen").weights[0, 0] = 7


@pytest.mark.parametrize(
    ("weights", "message"),
    [([[np.nan]], "NaN"), ([1, 2, 3], "2-D"), (np.zeros((0, 3)), "2-D")],
)
def test_bad_weights_are_refused(weights, message):
    with pytest.raises(KernelError, match=message):
        Kernel("bad", weights)


def test_anchor_outside_the_kernel_is_refused():
    with pytest.raises(KernelError, match="outside"):
        Kernel("bad", np.ones((3, 3)), anchor=(3, 0))
