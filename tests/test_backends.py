"""The backend registry: what each backend can do is a trait of its entry, and a backend
registered at run time is run, listed and checked like the built-in ones."""

import numpy as np
import pytest
from click.testing import CliRunner

from convkit import convolve, get_kernel
from convkit.backends import (
    KNOWN_BACKENDS,
    Cost,
    available_backends,
    reference_among,
    reference_backend,
    register_backend,
    unregister_backend,
)
from convkit.cli import main
from convkit.imageio import encode_image, read_image
from convkit.padding import pad_image
from convkit.timing import agreement_factor
from convkit.verify import synthetic_image


def einsum_correlate(image, weights, anchor, padding):
    """Correlation as one einsum over every window of the padded image: a whole backend."""
    padded = pad_image(image, weights.shape, anchor, padding)
    windows = np.lib.stride_tricks.sliding_window_view(padded, weights.shape)
    return np.einsum("yxij,ij->yx", windows, weights)


@pytest.fixture
def toy():
    register_backend("toy", einsum_correlate, "one einsum over the windows")
    try:
        yield "toy"
    finally:
        unregister_backend("toy")
    assert "toy" not in KNOWN_BACKENDS


@pytest.fixture
def card(tmp_path):
    path = tmp_path / "card.png"
    path.write_bytes(encode_image(synthetic_image(48)))
    return path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_exactly_one_built_in_reference():
    assert [name for name, b in KNOWN_BACKENDS.items() if b.reference] == [reference_backend()]
    reference = KNOWN_BACKENDS[reference_backend()]
    assert reference.cost is not None and reference.progress and not reference.streams


def test_reference_among_picks_the_reference_wherever_it_is_named():
    reference = reference_backend()
    assert reference_among(["filter2d", reference]) == reference
    assert reference_among(["filter2d", "numpy"]) is None


def test_agreement_is_the_loosest_registry_tolerance():
    assert agreement_factor(["naive", "filter2d"]) == KNOWN_BACKENDS["filter2d"].tolerance
    assert agreement_factor(["naive", "fft"]) == KNOWN_BACKENDS["fft"].tolerance
    assert agreement_factor(["naive", "filter2d"], "float32") == 1e-5


def test_a_registered_backend_takes_its_traits(toy):
    register_backend("slow_toy", einsum_correlate, cost=(1e-6, 1e-9), tolerance=1e-7)
    try:
        entry = KNOWN_BACKENDS["slow_toy"]
        assert entry.cost == Cost(1e-6, 1e-9) and entry.tolerance == 1e-7
        assert not entry.progress and not entry.multichannel and entry.streams
        assert "slow_toy" in available_backends()
    finally:
        unregister_backend("slow_toy")


def test_a_registered_backend_is_called_without_progress_unless_it_says_so(toy):
    calls = []
    image = np.arange(12.0).reshape(3, 4)
    response = convolve(image, get_kernel("sharpen"), backend=toy, progress=calls.append)
    np.testing.assert_array_equal(response, convolve(image, get_kernel("sharpen")))
    assert calls == []


def test_a_toy_backend_is_listed_in_apply_help(toy):
    result = run("apply", "--help")
    assert result.exit_code == 0
    assert "auto or toy." in " ".join(result.output.split())


def test_a_toy_backend_filters_in_apply(toy, card, tmp_path):
    for backend in (toy, "filter2d"):
        result = run("apply", card, "-k", "sharpen", "-b", backend, "-o", tmp_path / backend)
        assert result.exit_code == 0, result.output
        assert f" sharpen {backend} 1 " in " ".join(result.output.split())
    ours = read_image(tmp_path / toy / "card_sharpen.png")
    theirs = read_image(tmp_path / "filter2d" / "card_sharpen.png")
    np.testing.assert_array_equal(ours, theirs)


def test_a_toy_backend_agrees_in_verify(toy, card):
    result = run("verify", "--image", card, "-b", toy, "-b", "filter2d")
    assert result.exit_code == 0, result.output
    assert "backends toy, filter2d" in result.output and "all agree" in result.output


def test_a_toy_backend_is_timed_in_bench(toy):
    result = run("bench", "--sizes", "32", "--kernels", "sharpen", "--backends", toy,
                 "--repeat", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "toy" in result.output
