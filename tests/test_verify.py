"""`convkit verify`: it passes on the real backends and fails on a broken one."""

import numpy as np
import pytest
from click.testing import CliRunner

from convkit.backends import get_backend, register_backend, unregister_backend
from convkit.cli import main
from convkit.errors import UsageError
from convkit.imageio import encode_image
from convkit.kernels import get_kernel
from convkit.verify import run_verify, synthetic_image, verify_kernels


@pytest.fixture
def broken_backend():
    """filter2d, but with the kernel's anchor ignored: right on odd kernels, wrong on even."""
    filter2d = get_backend("filter2d")

    def off_centre(image, weights, anchor, padding, progress=None):
        kh, kw = weights.shape
        return filter2d(image, weights, ((kh - 1) // 2, (kw - 1) // 2), padding, progress)

    register_backend("off_centre", off_centre, "the tutorial's (kW - 1) // 2 padding")
    yield "off_centre"
    unregister_backend("off_centre")


@pytest.fixture
def small_image(tmp_path):
    path = tmp_path / "card.png"
    path.write_bytes(encode_image(synthetic_image(48)))
    return path


@pytest.mark.slow
def test_the_real_backends_agree_everywhere():
    report = run_verify(synthetic_image(40), backends=["naive", "filter2d"])
    assert report.failures == []
    kernels = verify_kernels()
    # every kernel x 6 paddings x 2 flips (all fit the 40x40 card under valid)
    assert len(report.cases) == len(kernels) * 6 * 2
    shapes = {k.shape for k in kernels}
    assert {(3, 3), (2, 2), (4, 4), (3, 5), (1, 7), (6, 1), (21, 21)} <= shapes


def test_a_broken_backend_is_caught_on_even_kernels_only(broken_backend):
    report = run_verify(synthetic_image(40), backends=["filter2d", broken_backend])
    failed = {case.kernel_shape for case in report.failures}
    assert failed and all(kh % 2 == 0 or kw % 2 == 0 for kh, kw in failed)
    assert {case.padding for case in report.failures} >= {"replicate", "constant", "wrap"}
    assert all(case.worst_pair == ("filter2d", broken_backend) for case in report.failures)


@pytest.mark.slow
def test_verify_command_exits_1_and_names_the_disagreement(broken_backend, small_image):
    result = CliRunner().invoke(
        main, ["verify", "--image", str(small_image), "-b", "naive", "-b", broken_backend]
    )
    assert result.exit_code == 1
    assert "cases DISAGREE" in result.output
    assert (
        "horizontal_edge (2x2), padding replicate: naive and off_centre differ by" in result.output
    )


@pytest.mark.slow
def test_verify_command_passes_on_the_real_backends(small_image):
    result = CliRunner().invoke(main, ["verify", "--image", str(small_image)])
    assert result.exit_code == 0, result.output
    assert "all agree" in result.output
    for column in ("replicate", "constant", "reflect", "reflect101", "wrap", "valid"):
        assert column in result.output


def test_verify_tolerance_zero_is_strict_but_still_passes_exact_cases():
    report = run_verify(synthetic_image(16), backends=["naive", "filter2d"], factor=0.0,
                        kernels=[get_kernel("sobel_x"), get_kernel("horizontal_edge")])  # fmt: skip
    assert report.failures == []  # integer kernels on 8-bit images: exactly equal


def test_verify_needs_two_backends():
    with pytest.raises(UsageError, match="name at least two"):
        run_verify(synthetic_image(16), backends=["filter2d"])


def test_synthetic_card_is_deterministic_and_has_edges():
    card = synthetic_image(64)
    np.testing.assert_array_equal(card, synthetic_image(64))
    assert card.dtype == np.uint8 and card.min() < 30 and card.max() == 255
