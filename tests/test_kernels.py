import re

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


# --- parametric kernels ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "sigma"), [(1, ""), (3, ""), (5, ""), (7, ""), (9, ""), (5, "1.4"), (11, "2")]
)
def test_gaussian_is_the_outer_product_of_opencvs(size, sigma):
    import cv2

    name = f"gaussian:{size}" + (f":{sigma}" if sigma else "")
    column = cv2.getGaussianKernel(size, float(sigma or 0), cv2.CV_64F)
    np.testing.assert_array_equal(get_kernel(name).weights, column @ column.T)
    assert get_kernel(name).total == pytest.approx(1.0)


def test_gaussian_default_sigma_follows_opencv_beyond_its_fixed_tables():
    import cv2

    from convkit.kernels import opencv_sigma

    # Up to 9 taps OpenCV 5 uses fixed binomial-like tables; from 11 on it computes
    # sigma = 0.3 * ((n - 1) / 2 - 1) + 0.8.
    for n in (11, 13, 21):
        explicit = cv2.getGaussianKernel(n, opencv_sigma(n), cv2.CV_64F)
        np.testing.assert_allclose(
            get_kernel(f"gaussian:{n}").weights, explicit @ explicit.T, rtol=1e-12
        )


@pytest.mark.parametrize("name", ["log:3", "log:5", "log:9:1.5", "log:15:2.5"])
def test_log_sums_to_zero_and_is_negative_at_the_centre(name):
    kernel = get_kernel(name)
    assert abs(kernel.total) < 1e-12
    centre = kernel.weights[kernel.shape[0] // 2, kernel.shape[1] // 2]
    assert centre == kernel.weights.min() < 0
    np.testing.assert_allclose(kernel.weights, kernel.weights.T)  # rotationally symmetric


def test_log_responds_like_the_laplacian_of_a_blurred_image():
    from scipy import ndimage as ndi

    image = np.zeros((41, 41))
    image[20, 20] = 1.0
    ours = ndi.correlate(image, get_kernel("log:21:3").weights)
    theirs = ndi.gaussian_laplace(image, 3)
    # Same shape of response up to scale: compare normalised profiles through the centre.
    a, b = ours[20, 10:31], theirs[20, 10:31]
    np.testing.assert_allclose(a / a.min(), b / b.min(), atol=0.05)


def test_box_is_the_mean():
    np.testing.assert_allclose(get_kernel("box:4").weights, np.full((4, 4), 1 / 16))


@pytest.mark.parametrize(
    ("name", "row_or_column"),
    [
        ("motion:5", "row"),
        ("motion:5:0", "row"),
        ("motion:7:90", "column"),
        ("motion:7:-90", "column"),
        ("motion:7:180", "row"),
    ],
)
def test_motion_at_0_and_90_degrees_is_a_line_of_equal_weights(name, row_or_column):
    kernel = get_kernel(name)
    n = kernel.shape[0]
    expected = np.zeros((n, n))
    if row_or_column == "row":
        expected[n // 2, :] = 1 / n
    else:
        expected[:, n // 2] = 1 / n
    np.testing.assert_allclose(kernel.weights, expected, atol=1e-15)


@pytest.mark.parametrize("angle", [0, 15, 30, 45, 60, 90, 135, 200, -33])
def test_motion_sums_to_one_at_any_angle(angle):
    assert get_kernel(f"motion:9:{angle}").total == pytest.approx(1.0)


def test_motion_angle_turns_counter_clockwise():
    weights = get_kernel("motion:5:45").weights
    # Counter-clockwise from the horizontal: up and to the right (rows grow downwards).
    assert weights[0, 4] > 0 and weights[4, 0] > 0
    assert weights[0, 0] == 0 and weights[4, 4] == 0


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("box:0", "box: the size N must be a whole number >= 1, got '0'"),
        ("box:x", "must be a whole number"),
        ("gaussian:4", "gaussian: the size N must be an odd whole number >= 1, got '4'"),
        ("gaussian:5:0", "SIGMA must be a number from 0.001 to 10000, got '0'"),
        ("log:6", "odd whole number"),
        ("motion:5:abc", "motion: ANGLE must be a number, got 'abc'"),
        ("box:3:2", "too many parameters"),
        ("gaussian", "gaussian is parametric: write gaussian:N[:SIGMA]"),
        ("gausian:5", "did you mean gaussian:5?"),
        ("box:100000", "larger than 1001"),
    ],
)
def test_bad_parameters_say_what_is_allowed(name, message):
    with pytest.raises(KernelError, match=re.escape(message)):
        get_kernel(name)
