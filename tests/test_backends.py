"""The backend registry: what each backend can do is a trait of its entry, and a backend
registered at run time is run, listed and checked like the built-in ones."""

import sys

import numpy as np
import pytest
from click.testing import CliRunner

from convkit import convolve, get_kernel
from convkit.backends import (
    KNOWN_BACKENDS,
    Cost,
    available_backends,
    is_installed,
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


def test_is_installed_does_not_trip_over_a_module_half_imported(monkeypatch):
    """A module in sys.modules without a __spec__ (as while another thread imports it, or
    cv2's loader swaps itself for the native module) makes find_spec raise ValueError."""
    import types

    half = types.ModuleType("convkit_half_imported")
    half.__spec__ = None
    monkeypatch.setitem(sys.modules, "convkit_half_imported", half)
    assert is_installed("convkit_half_imported")
    monkeypatch.setitem(sys.modules, "convkit_blocked", None)  # an import blocked on purpose
    assert not is_installed("convkit_blocked")
    assert not is_installed("convkit_no_such_module")
    assert is_installed("numpy")


def test_memory_models_are_registry_traits(toy):
    """resources asks the registry which memory model a backend has, never its name."""
    from convkit.resources import backend_peak_bytes

    shape, kernel = (300, 400, 3), (9, 9)
    register_backend("fft_like", einsum_correlate, multichannel=True, memory="fft")
    register_backend("shift_like", einsum_correlate, multichannel=True)
    try:
        for name, twin in (("fft_like", "fft"), ("shift_like", "numpy")):
            assert backend_peak_bytes(name, shape, kernel, False) == backend_peak_bytes(
                twin, shape, kernel, False
            )
        register_backend("odd", einsum_correlate, multichannel=True, memory="gpu")
        with pytest.raises(ValueError, match="no memory model gpu"):
            backend_peak_bytes("odd", shape, kernel, False)
    finally:
        for name in ("fft_like", "shift_like", "odd"):
            unregister_backend(name)


def test_a_backend_that_may_run_a_transform_counts_it_only_beyond_direct_sums():
    from convkit.resources import backend_peak_bytes

    shape = (2000, 3000)
    for kernel in ((7, 7), (9, 9), (51, 51)):
        auto = backend_peak_bytes("auto", shape, kernel, False)
        opencv = backend_peak_bytes("filter2d", shape, kernel, False)
        fft = backend_peak_bytes("fft", shape, kernel, False)
        assert auto == (opencv if kernel == (7, 7) else max(opencv, fft))


def test_only_backends_that_calibrate_are_measured():
    from convkit.backends import measure_strategies

    assert [name for name, b in KNOWN_BACKENDS.items() if b.calibrates] == ["auto"]
    with pytest.raises(ValueError, match="no strategies to calibrate"):
        measure_strategies("filter2d", (16,), ((3, 3),), 1)


def test_only_the_engine_and_the_backends_import_a_backend_module():
    """DESIGN §1: the others reach backends through the registry (`convkit.backends`), so
    that a backend is one module and one registry entry; calibration included."""
    import ast
    from pathlib import Path

    import convkit

    package = Path(convkit.__file__).parent
    backend_modules = {f"convkit.backends.{p.stem}" for p in (package / "backends").glob("*.py")}
    offenders = []
    for path in package.rglob("*.py"):
        if path.parent.name == "backends" or path.name == "engine.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                names = {a.name for a in node.names}
            else:
                continue
            if names & (backend_modules - {"convkit.backends.__init__"}):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize("mode", ["wrap", "reflect101", "constant", "valid"])
@pytest.mark.parametrize(
    "kernel_shape, anchor", [((7, 5), (3, 2)), ((8, 8), (0, 7)), ((9, 9), (4, 4))]
)
def test_fft_transforms_at_the_padded_length_and_equals_scipy(mode, kernel_shape, anchor):
    """The circular convolution at the padded image's length wraps only onto what the crop
    drops: kernels as large as the image, anchors at their corners, still equal scipy."""
    from scipy import ndimage
    from scipy.fft import next_fast_len

    from convkit.backends import get_backend
    from convkit.backends.fft import transform_shape
    from convkit.padding import make_padding

    rng = np.random.default_rng(7)
    image = rng.random((9, 11))
    weights = rng.random(kernel_shape) - 0.5
    padding = make_padding(mode)
    padded = pad_image(image, kernel_shape, anchor, padding)
    assert transform_shape(padded.shape) == tuple(next_fast_len(n, real=True) for n in padded.shape)
    assert transform_shape(padded.shape)[0] < next_fast_len(padded.shape[0] + 6, real=True)
    result = get_backend("fft")(image, weights, anchor, padding)
    # scipy's origin is the anchor's offset from the kernel's centre (its centre is n // 2).
    origin = tuple(a - n // 2 for a, n in zip(anchor, kernel_shape, strict=True))
    scipy_mode = {"wrap": "grid-wrap", "reflect101": "mirror", "constant": "constant"}
    if mode == "valid":
        full = ndimage.correlate(image, weights, mode="constant", origin=origin)
        expected = full[anchor[0] : anchor[0] + 9 - kernel_shape[0] + 1,
                        anchor[1] : anchor[1] + 11 - kernel_shape[1] + 1]  # fmt: skip
    else:
        expected = ndimage.correlate(image, weights, mode=scipy_mode[mode], origin=origin)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12)


def test_fft_runs_on_as_many_threads_as_opencv(monkeypatch):
    """A batch's workers give OpenCV one thread, as the workers share the cores: the FFT
    follows, where it used to start a thread per core in every worker."""
    import cv2
    from scipy import fft

    from convkit.backends import get_backend
    from convkit.padding import make_padding

    seen = []
    real_rfft2 = fft.rfft2

    def recording_rfft2(*args, workers=None, **kwargs):
        seen.append(workers)
        return real_rfft2(*args, workers=workers, **kwargs)

    monkeypatch.setattr(fft, "rfft2", recording_rfft2)
    threads = cv2.getNumThreads()
    try:
        for count in (1, 2):
            cv2.setNumThreads(count)
            seen.clear()
            get_backend("fft")(np.ones((8, 8)), np.ones((3, 3)), (1, 1), make_padding("wrap"))
            assert seen == [cv2.getNumThreads()] * 2
            assert seen[0] == count
    finally:
        cv2.setNumThreads(threads)
