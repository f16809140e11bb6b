"""--stack: kernels and relu in order, each on the previous float response."""

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
from click.testing import CliRunner

from convkit.cli import main
from convkit.errors import KernelError
from convkit.imageio import encode_image
from convkit.kernels import get_kernel
from convkit.padding import Padding
from convkit.stack import parse_stack, run_stack
from tests.conftest import SAMPLES, assert_exact

SOBEL_X = get_kernel("sobel_x").weights
SOBEL_Y = get_kernel("sobel_y").weights


@pytest.fixture
def image():
    return cv2.imread(str(SAMPLES / "camera.png"), cv2.IMREAD_GRAYSCALE)[200:240, 200:250]


def test_each_step_feeds_the_next(image, backend):
    stack = parse_stack("sobel_x,relu,sobel_y", get_kernel)
    first, second, third = run_stack(image, stack, Padding("reflect"), backend)
    expected_first = ndi.correlate(image.astype(float), SOBEL_X, mode="reflect")
    assert_exact(backend, first, expected_first)
    assert_exact(backend, second, np.maximum(expected_first, 0))
    np.testing.assert_allclose(third, ndi.correlate(second, SOBEL_Y, mode="reflect"), atol=1e-9)


def test_valid_shrinks_at_every_step(image):
    stack = parse_stack("sobel_x,relu,small_blur", get_kernel)
    assert stack.shape == (9, 9)  # receptive field: 3 + 7 - 1
    final = run_stack(image, stack, Padding("valid"), "filter2d")[-1]
    assert final.shape == (image.shape[0] - 8, image.shape[1] - 8)


@pytest.mark.parametrize(
    ("text", "message"), [("relu", "has no kernel"), ("sobel_x,,relu", "separated by commas")]
)
def test_bad_stacks(text, message):
    with pytest.raises(KernelError, match=message):
        parse_stack(text, get_kernel)


def test_stack_command_writes_the_named_output_and_every_feature_map(image, tmp_path):
    path = tmp_path / "cam.png"
    path.write_bytes(encode_image(image))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["apply", "-i", str(path), "--stack", "sobel_x,relu,sobel_y",
                                       "--rescale", "none", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    response = np.load(out / "cam_sobel_x-relu-sobel_y.npy")
    first = np.maximum(ndi.correlate(image.astype(float), SOBEL_X, mode="nearest"), 0)
    np.testing.assert_allclose(response, ndi.correlate(first, SOBEL_Y, mode="nearest"), atol=1e-9)
    compare = cv2.imread(str(out / "cam_sobel_x-relu-sobel_y_compare.png"))
    # original | 1. sobel_x | 2. relu | naive | filter2d | |diff|: six panels
    assert compare.shape[1] > 6 * 160
    assert "sobel_x,relu,sobel_y" in result.output


def test_unknown_kernel_in_a_stack(image, tmp_path):
    path = tmp_path / "cam.png"
    path.write_bytes(encode_image(image))
    result = CliRunner().invoke(main, ["apply", "-i", str(path), "--stack", "sobel_x,relu,sobelz"])
    assert result.exit_code == 2
    assert "unknown kernel 'sobelz': did you mean sobel_y or sobel_x?" in result.output


def test_sources_are_the_files_of_its_kernels_each_once(tmp_path):
    from convkit.kernel_files import resolve_kernel

    first = tmp_path / "first.txt"
    first.write_text("1 -1\n")
    second = tmp_path / "second.json"
    second.write_text("[[1], [-1]]")
    stack = parse_stack(f"{first},relu,sharpen,@{second},{first}", lambda v: resolve_kernel(v, "s"))
    assert stack.sources == (first, second)
    assert parse_stack("sobel_x,relu", get_kernel).sources == ()
