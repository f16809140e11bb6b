"""auto: every strategy it may pick agrees with the naive loop; low-rank terms are exact or
refused; the calibration file is this machine's or ignored; the built-in model's choices."""

import json
import math
import warnings

import numpy as np
import pytest

from convkit import convolve, get_kernel
from convkit.backends import auto, get_backend, lowrank
from convkit.backends.auto import Plan, cost_kind, plan, run_plan
from convkit.backends.lowrank import asymmetric_passes, is_symmetric, separable_terms
from convkit.calibration import (
    BUILT_IN,
    BUILT_IN_ONE_THREAD,
    CACHE_DIR_ENV,
    FEATURES,
    MAX_FILE_BYTES,
    PRIOR_WEIGHT,
    CostModel,
    Geometry,
    Sample,
    built_in_model,
    calibrate,
    calibrated_thread_counts,
    calibration_path,
    cost_model,
    fit_model,
    machine_fingerprint,
    machine_key,
    opencv_running,
    opencv_threads,
    read_calibration,
    write_calibration,
)
from convkit.padding import make_padding
from convkit.timing import agreement_tolerance

# DESIGN §2: float64 agrees within 1e-9 * sum|K| * max|I|; float32 keeps about 7 digits.
FLOAT64_AGREEMENT = 1e-9
FLOAT32_AGREEMENT = 1e-5
PADDINGS = ["replicate", "constant", "reflect", "reflect101", "wrap", "valid"]


def gaussian(taps: int, sigma: float) -> np.ndarray:
    offsets = np.arange(taps) - (taps - 1) / 2
    weights = np.exp(-(offsets**2) / (2 * sigma * sigma))
    return weights / weights.sum()


def difference_of_gaussians(rows: int, columns: int) -> np.ndarray:
    narrow = np.outer(gaussian(rows, rows / 6 + 0.5), gaussian(columns, columns / 6 + 0.5))
    wide = np.outer(gaussian(rows, rows / 4 + 0.5), gaussian(columns, columns / 4 + 0.5))
    return narrow - wide


KERNELS = {
    "gaussian-5x8": np.outer(gaussian(5, 1.2), gaussian(8, 2.0)),
    "dog-7x5": difference_of_gaussians(7, 5),
    "log-9x9": get_kernel("log:9").weights,
    "random-8x9": np.random.default_rng(1).random((8, 9)) - 0.5,
    "row-1x11": gaussian(11, 2.0)[np.newaxis, :],
}


# The kinds of work of the cost model that each strategy may do.
KINDS = {"filter2d": ("direct", "opencv_dft"), "separable": ("separable",), "fft": ("fft",)}


class Forced:
    """A cost model under which one strategy is free and the others dear."""

    def __init__(self, strategy: str):
        self.strategy = strategy

    def predict_ms(self, kind: str, geometry: Geometry, *passes: int) -> float:
        return 0.0 if kind in KINDS[self.strategy] else 1.0


@pytest.fixture
def force(monkeypatch):
    """force(strategy): auto picks ``strategy`` wherever it is allowed to."""

    def forcing(strategy: str) -> None:
        monkeypatch.setattr(auto, "cost_model", lambda: Forced(strategy))

    return forcing


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An empty cache folder for this test, and a cost model read afresh from it."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    cost_model.cache_clear()
    yield tmp_path
    cost_model.cache_clear()


# --- agreement with the naive loop ---------------------------------------------------------


@pytest.mark.parametrize("strategy", ["filter2d", "separable", "fft"])
@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_every_strategy_agrees_with_naive(force, strategy, name, padding, precision):
    rng = np.random.default_rng(7)
    image = rng.random((23, 29)) * 255
    weights = KERNELS[name]
    force(strategy)
    options = {"padding": padding, "cval": 17.0, "precision": precision}
    for flip, anchor in [(False, None), (True, None), (False, (0, weights.shape[1] - 1))]:
        result = convolve(image, weights, backend="auto", flip=flip, anchor=anchor, **options)
        expected = convolve(image, weights, backend="naive", flip=flip, anchor=anchor, **options)
        factor = FLOAT64_AGREEMENT if precision == "float64" else FLOAT32_AGREEMENT
        tolerance = agreement_tolerance(weights, image, factor)
        assert result.dtype == np.dtype(precision)
        np.testing.assert_allclose(result, expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("strategy", ["filter2d", "separable", "fft"])
def test_colour_images_are_filtered_in_one_call_by_every_strategy(force, strategy):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(19, 21, 3)).astype(np.uint8)
    weights = KERNELS["dog-7x5"]
    force(strategy)
    result = convolve(image, weights, backend="auto", padding="reflect")
    for c in range(3):
        expected = convolve(image[..., c], weights, backend="naive", padding="reflect")
        tolerance = agreement_tolerance(weights, image, FLOAT64_AGREEMENT)
        np.testing.assert_allclose(result[..., c], expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("strategy", ["separable", "fft"])
def test_integer_kernels_on_integer_images_stay_exact_whatever_is_cheapest(force, dtype, strategy):
    """The engine's exact float32 path, and float64 integer sums: direct sums only."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, np.iinfo(dtype).max, size=(17, 20), dtype=dtype)
    force(strategy)
    for name in ("laplacian", "sobel_x", "laplacian8", "sharpen"):
        weights = get_kernel(name).weights
        result = convolve(image, weights, backend="auto", padding="wrap")
        expected = convolve(image, weights, backend="naive", padding="wrap")
        np.testing.assert_array_equal(result, expected)


def test_small_kernels_never_go_through_a_transform(force):
    """check_range gives kernels of direct-sum size no headroom for Fourier sums."""
    force("fft")
    padding = make_padding("replicate")
    image = np.zeros((300, 300))
    small = np.random.default_rng(0).random((7, 7))
    assert plan(image, small, (3, 3), padding).strategy != "fft"
    large = np.random.default_rng(0).random((8, 8))
    assert plan(image, large, (4, 4), padding).strategy == "fft"


def test_float32_integer_kernels_keep_filter2d(force):
    force("separable")
    image = np.zeros((64, 64), dtype=np.float32)
    box = np.ones((5, 5))
    assert plan(image, box, (2, 2), make_padding("replicate")) == Plan("filter2d")


@pytest.mark.parametrize("padding", PADDINGS)
def test_a_kernel_of_zeros_filters_to_zeros_without_filtering(padding):
    image = np.random.default_rng(0).random((9, 11, 3)).astype(np.float32)
    zeros = np.zeros((2, 5))
    assert plan(image, zeros, (1, 2), make_padding(padding, 5.0)) == Plan("zeros")
    result = convolve(image, zeros, backend="auto", padding=padding, cval=5.0,
                      precision="float32")  # fmt: skip
    expected = convolve(image, zeros, backend="naive", padding=padding, cval=5.0,
                        precision="float32")  # fmt: skip
    assert result.dtype == np.float32 and result.shape == expected.shape
    np.testing.assert_array_equal(result, expected)


def test_run_plan_runs_what_it_is_given():
    rng = np.random.default_rng(2)
    image = rng.random((20, 24))
    weights = KERNELS["log-9x9"]
    padding = make_padding("constant", 3.0)
    expected = get_backend("naive")(image, weights, (4, 4), padding)
    tolerance = agreement_tolerance(weights, image, FLOAT64_AGREEMENT)
    for chosen in (Plan("filter2d"), Plan("separable", separable_terms(weights)), Plan("fft")):
        result = run_plan(chosen, image, weights, (4, 4), padding)
        np.testing.assert_allclose(result, expected, rtol=0, atol=tolerance)


# --- low-rank terms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "rank"),
    [
        pytest.param(get_kernel("laplacian").weights, 2, id="laplacian"),
        pytest.param(get_kernel("laplacian8").weights, 2, id="laplacian8"),
        pytest.param(get_kernel("log:15").weights, 3, id="log-15"),
        pytest.param(get_kernel("log:51:6").weights, 3, id="log-51"),
        pytest.param(difference_of_gaussians(31, 31), 2, id="dog-31"),
        pytest.param(difference_of_gaussians(5, 41), 2, id="dog-5x41"),
        pytest.param(get_kernel("gaussian:51").weights, 1, id="gaussian-51"),
        pytest.param(get_kernel("box:4").weights, 1, id="box-4"),
    ],
)
def test_low_rank_kernels_are_sums_of_their_terms(weights, rank):
    terms = separable_terms(weights)
    assert terms is not None and len(terms) == rank
    rebuilt = sum(np.outer(column, row) for column, row in terms)
    assert np.abs(weights - rebuilt).sum() <= 1e-10 * np.abs(weights).sum()


def test_rank_one_terms_are_the_exact_factors():
    ((column, row),) = separable_terms(get_kernel("sobel_x").weights)
    np.testing.assert_array_equal(np.outer(column, row), get_kernel("sobel_x").weights)


def test_terms_of_even_and_odd_kernels_are_exactly_symmetric_for_opencv():
    """OpenCV's symmetric column filter needs mirror-equal (or mirror-opposite) weights."""
    derivative = np.gradient(difference_of_gaussians(21, 15), axis=0)  # odd top to bottom
    for weights in (get_kernel("log:51:6").weights, difference_of_gaussians(31, 9), derivative):
        terms = separable_terms(weights)
        assert terms is not None and len(terms) > 1
        assert all(is_symmetric(column) and is_symmetric(row) for column, row in terms)
        assert asymmetric_passes(terms) == 0
    rng = np.random.default_rng(0)
    assert asymmetric_passes(separable_terms(np.outer(rng.random(5), rng.random(7)))) == 1


def test_kernels_without_mirror_symmetry_are_refused_beyond_rank_one():
    """Their SVD terms would go through OpenCV's slow generic filters."""
    rng = np.random.default_rng(0)
    assert separable_terms(rng.random((3, 9))) is None
    lopsided = difference_of_gaussians(9, 9)
    lopsided[0, 0] += 0.5
    assert separable_terms(lopsided) is None


def test_kernels_of_higher_rank_are_refused():
    rng = np.random.default_rng(4)
    rank_four = sum(np.outer(rng.random(9), rng.random(9)) for _ in range(4))
    assert separable_terms(rank_four) is None
    assert separable_terms(rng.random((15, 15))) is None
    assert separable_terms(get_kernel("log:15").weights, max_terms=2) is None


def test_terms_that_miss_the_kernel_by_more_than_the_tolerance_are_refused():
    rng = np.random.default_rng(6)
    dog = difference_of_gaussians(11, 11)
    noise = rng.random(dog.shape)
    assert len(separable_terms(dog + 1e-15 * noise)) == 2
    assert separable_terms(dog + 1e-6 * noise) is None


def test_terms_much_larger_than_the_kernel_are_refused(monkeypatch):
    log = get_kernel("log:9").weights
    monkeypatch.setattr(lowrank, "MAX_AMPLIFICATION", 1.0)
    lowrank._cached_terms.cache_clear()
    assert separable_terms(log) is None
    lowrank._cached_terms.cache_clear()


def test_one_row_zero_and_one_tap_kernels_have_no_terms():
    assert separable_terms(np.ones((1, 7))) is None
    assert separable_terms(np.ones((7, 1))) is None
    assert separable_terms(np.zeros((3, 3))) is None


# --- the calibration file ------------------------------------------------------------------


def a_model(scale: float = 1.0) -> CostModel:
    weights = {kind: tuple(scale * (i + 1) for i in range(len(names)))
               for kind, names in FEATURES.items()}  # fmt: skip
    coefficients = {"float64": weights, "float32": weights}
    residuals = {"float64": {"direct": ((3, 3, 0.5), (5, 7, -0.25))}, "float32": {}}
    return CostModel(
        ((512 * 512, coefficients), (2048 * 2048, coefficients)),
        residuals=((512 * 512, residuals), (2048 * 2048, {"float64": {}, "float32": {}})),
    )


def test_the_calibration_file_round_trips(cache_dir):
    path = write_calibration(a_model(2.0))
    assert path.parent == cache_dir
    assert path == calibration_path()
    stored = read_calibration(path)
    assert stored is not None and stored.source == str(path)
    assert stored.bands == a_model(2.0).bands
    assert stored.residuals == a_model(2.0).residuals
    assert cost_model().bands == a_model(2.0).bands


def test_without_a_calibration_the_built_in_model_is_used(cache_dir):
    assert cost_model() is built_in_here()
    assert cost_model().source.startswith("built-in")


def test_one_thread_has_its_own_built_in_model_and_calibration_entry(cache_dir):
    """A batch's workers run OpenCV on one thread, where separable passes lose their second
    core and filter2D's DFT loses nothing: they predict with weights measured so, and a
    calibration of all cores is not theirs."""
    import cv2

    before = cv2.getNumThreads()
    with opencv_running(2):
        write_calibration(a_model(2.0))
        assert cost_model().bands == a_model(2.0).bands
    with opencv_running(1):
        assert cost_model() is BUILT_IN_ONE_THREAD
        assert machine_fingerprint()["opencv_threads"] == "1"
    assert cv2.getNumThreads() == before
    assert built_in_model(1) is BUILT_IN_ONE_THREAD and built_in_model(2) is BUILT_IN
    assert BUILT_IN_ONE_THREAD.bands != BUILT_IN.bands


def test_the_cache_folder_follows_xdg_without_convkits_own_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert calibration_path().parent == tmp_path / "convkit"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert calibration_path().parent == tmp_path / ".cache" / "convkit"


def first_weight_set_to(value):
    def change(document, entry):
        entry["bands"][0]["float64"]["fft"][0] = value

    return change


def residual_set_to(point):
    def change(document, entry):
        entry["bands"][0]["residuals"]["float64"]["direct"] = [point]

    return change


def corrupt_documents(path):
    """(name, bytes) of calibration files that must be ignored."""
    key = machine_key(machine_fingerprint())

    def edited(change):
        document = json.loads(path.read_text())
        change(document, document["machines"][key])
        return json.dumps(document).encode()

    def foreign(document, entry):
        entry["fingerprint"] = dict(entry["fingerprint"], processor="Another CPU")

    def moved(document, entry):
        document["machines"] = {"0123456789abcdef": entry}

    return {
        "garbage": b"\x00\xff not json",
        "truncated": path.read_bytes()[:100],
        "oversized": b" " * (MAX_FILE_BYTES + 1) + path.read_bytes(),
        "foreign machine": edited(foreign),
        "another machine's entry only": edited(moved),
        "other format": edited(lambda d, e: d.update(format=99)),
        "negative weight": edited(first_weight_set_to(-1.0)),
        "NaN weight": edited(first_weight_set_to(math.nan)),
        "string weight": edited(first_weight_set_to("1")),
        "boolean weight": edited(first_weight_set_to(True)),
        "missing weights": edited(lambda d, e: e["bands"][0]["float32"].update(direct=[1.0])),
        "residual beyond 100x": edited(residual_set_to([3, 3, 5.0])),
        "residual of a zero-sized kernel": edited(residual_set_to([0, 3, 0.1])),
        "residual not a triple": edited(residual_set_to([3, 3])),
        "residuals of an unknown variant": edited(
            lambda d, e: e["bands"][0]["residuals"]["float64"].update(gpu=[[3, 3, 0.1]])
        ),
        "unsorted bands": edited(lambda d, e: e["bands"].reverse()),
        "no bands": edited(lambda d, e: e.update(bands=[])),
        "machines not a mapping": edited(lambda d, e: d.update(machines=[e])),
        "list": b"[1, 2, 3]",
        "deep nesting": b"[" * 10_000 + b"]" * 10_000,
    }


def test_a_corrupt_oversized_or_foreign_file_is_ignored_silently(cache_dir):
    path = write_calibration(a_model())
    documents = corrupt_documents(path)
    for name, raw in documents.items():
        path.write_bytes(raw)
        cost_model.cache_clear()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert read_calibration(path) is None, name
            assert cost_model() is built_in_here(), name


def test_an_unreadable_cache_is_ignored(cache_dir):
    calibration_path().mkdir(parents=True)  # a folder where the file should be
    assert read_calibration(calibration_path()) is None
    assert cost_model() is built_in_here()


def test_the_calibration_is_read_once_per_process(cache_dir, tmp_path_factory):
    elsewhere = write_calibration(a_model(), tmp_path_factory.mktemp("other") / "c.json")
    assert cost_model() is built_in_here()
    calibration_path().write_bytes(elsewhere.read_bytes())
    assert cost_model() is built_in_here()  # not read again...
    cost_model.cache_clear()
    assert cost_model().bands == a_model().bands  # ...until asked to


def test_other_machines_entries_are_kept_beside_this_ones(cache_dir):
    path = write_calibration(a_model())
    document = json.loads(path.read_text())
    document["machines"]["0123456789abcdef"] = {"created": "2000-01-01T00:00:00"}
    path.write_text(json.dumps(document))
    write_calibration(a_model(3.0))
    machines = json.loads(path.read_text())["machines"]
    assert set(machines) == {"0123456789abcdef", machine_key(machine_fingerprint())}
    assert read_calibration(path).bands == a_model(3.0).bands


def test_the_fingerprint_names_the_processor_and_the_libraries():
    fingerprint = machine_fingerprint()
    assert {"processor", "cores", "opencv", "numpy", "scipy"} <= set(fingerprint)
    assert all(isinstance(value, str) and value for value in fingerprint.values())


def built_in_here():
    """The built-in model for the threads OpenCV runs in this process."""
    return built_in_model(opencv_threads())


def test_calibrate_measures_fits_and_stores_a_model_auto_then_uses(cache_dir):
    calls = []
    done = calibrate(sizes=(48,), kernels=((3, 3), (9, 9)), repeat=1,
                     progress=lambda *done: calls.append(done))  # fmt: skip
    counts = calibrated_thread_counts()
    assert done.threads == counts and counts[-1] == 1
    # 2 precisions x 1 size x 2 kernels, for each thread count
    assert calls[-1] == (4 * len(counts), 4 * len(counts))
    assert done.path == calibration_path() and done.path.exists()
    assert {s.kind for s in done.samples} == {"direct", "opencv_dft", "separable", "fft"}
    assert cost_model().source == str(done.path)
    with opencv_running(1):  # as in a batch's workers: their own entry
        assert opencv_threads() == 1
        assert read_calibration(done.path) is not None
        assert cost_model().source == str(done.path)
    assert len(json.loads(done.path.read_text())["machines"]) == len(counts)
    image = np.random.default_rng(0).random((48, 48))
    expected = convolve(image, KERNELS["log-9x9"], backend="naive")
    result = convolve(image, KERNELS["log-9x9"], backend="auto")
    tolerance = agreement_tolerance(KERNELS["log-9x9"], image, FLOAT64_AGREEMENT)
    np.testing.assert_allclose(result, expected, rtol=0, atol=tolerance)


# --- the built-in model --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "precision", "weights", "expected"),
    [
        pytest.param(2048, "float64", get_kernel("gaussian:21").weights, "separable", id="g21"),
        pytest.param(1024, "float64", get_kernel("gaussian:31").weights, "separable", id="g31"),
        pytest.param(2048, "float32", difference_of_gaussians(21, 21), "separable", id="dog21"),
        pytest.param(2048, "float32", get_kernel("log:15").weights, "separable", id="log15"),
        pytest.param(2048, "float64", get_kernel("sharpen").weights, "filter2d", id="sharpen"),
        pytest.param(2048, "float64", get_kernel("motion:21:30").weights, "filter2d", id="mo21"),
    ],
)
def test_the_built_in_model_picks_sensibly(size, precision, weights, expected):
    image = np.zeros((size, size), dtype=precision)
    anchor = (weights.shape[0] // 2, weights.shape[1] // 2)
    chosen = plan(image, weights, anchor, make_padding("replicate"), BUILT_IN)
    assert chosen.strategy == expected


@pytest.mark.parametrize("side", [151, 301])
def test_large_non_separable_kernels_go_through_a_fourier_transform(side):
    """On the AMD EPYC the built-in model was measured on, filter2D's own DFT beats scipy's
    FFT by 1.5-7x even at 301x301 on 2048^2, so that is the transform it picks; a machine
    whose calibration says scipy's FFT is cheaper gets the fft backend."""
    image = np.zeros((2048, 2048))
    weights = np.random.default_rng(0).random((side, side))
    anchor = (side // 2, side // 2)
    replicate = make_padding("replicate")
    chosen = plan(image, weights, anchor, replicate, BUILT_IN)
    geometry = Geometry(2048, 2048, 1, (side, side), "float64")
    assert chosen.strategy == "filter2d" and cost_kind("filter2d", geometry) == "opencv_dft"
    assert plan(image, weights, anchor, replicate, a_model_with_cheap_fft()).strategy == "fft"


def a_model_with_cheap_fft() -> CostModel:
    coefficients = {
        precision: {kind: weights if kind != "fft" else tuple(w / 100 for w in weights)
                    for kind, weights in kinds.items()}
        for precision, kinds in BUILT_IN.bands[-1][1].items()
    }  # fmt: skip
    return CostModel(((2048 * 2048, coefficients),))


def test_a_measured_kernel_corrects_the_linear_model_near_it_only():
    """Residuals pull a prediction to the measurement at a measured kernel (all but the
    prior's share), less so around it, and leave far kernels to the linear model."""
    measured = {"float64": {"separable:1:0": ((51, 51, math.log(2.0)),)}}
    plain = a_model()
    corrected = CostModel(plain.bands, residuals=((512 * 512, measured),))

    def ratio(kernel, passes=1, asymmetric=0, pixels=512):
        geometry = Geometry(pixels, pixels, 1, kernel, "float64")
        return corrected.predict_ms("separable", geometry, passes, asymmetric) / (
            plain.predict_ms("separable", geometry, passes, asymmetric)
        )

    at_point = ratio((51, 51))
    assert at_point == pytest.approx(2.0 ** (1 / (1 + PRIOR_WEIGHT)))
    assert 1.0 < ratio((61, 61)) < at_point
    assert ratio((5, 5)) == pytest.approx(1.0, abs=1e-6)
    # Passes of two or three terms not measured: those of one stand in; not so asymmetric ones.
    assert ratio((51, 51), passes=3) == pytest.approx(at_point)
    assert ratio((51, 51), asymmetric=1) == pytest.approx(1.0)
    assert ratio((51, 51), pixels=2048) == pytest.approx(1.0)  # another image size
    geometry = Geometry(512, 512, 1, (51, 51), "float64")
    assert corrected.predict_ms("fft", geometry) == plain.predict_ms("fft", geometry)


def test_fitted_models_reproduce_their_measurements():
    """fit_model's residuals make up what the linear weights miss on the measured kernels."""
    rng = np.random.default_rng(0)
    samples = []
    for kernel in ((3, 3), (9, 9), (21, 21), (51, 51), (5, 51)):
        for precision in ("float64", "float32"):
            geometry = Geometry(256, 256, 1, kernel, precision)
            for kind, passes, asymmetric in (("direct", 0, 0), ("separable", 1, 0),
                                             ("separable", 2, 0), ("fft", 0, 0)):  # fmt: skip
                ms = float(rng.uniform(1, 20))
                samples.append(Sample(geometry, kind, passes, asymmetric, ms))
    model = fit_model(samples)
    for s in samples:
        predicted = model.predict_ms(s.kind, s.geometry, s.passes, s.asymmetric)
        assert predicted == pytest.approx(s.milliseconds, rel=0.25)


def test_the_built_in_model_predicts_positive_times_everywhere():
    for precision in ("float64", "float32"):
        for size in (64, 512, 3000, 8192):
            for kernel in ((2, 2), (3, 31), (101, 101), (1, 201)):
                geometry = Geometry(size, size, 3, kernel, precision)
                for strategy, passes in (("filter2d", 0), ("separable", 2), ("fft", 0)):
                    kind = cost_kind(strategy, geometry)
                    assert BUILT_IN.predict_ms(kind, geometry, passes) > 0


def test_an_interrupted_calibration_leaves_opencvs_threads_as_they_were(cache_dir, monkeypatch):
    """Ctrl-C during the one-thread pass: OpenCV runs on its threads again, and the pass that
    finished is stored and used."""
    import cv2

    from convkit import backends

    real = backends.measure_strategies

    def interrupted_on_one_thread(*args, **kwargs):
        if cv2.getNumThreads() == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(backends, "measure_strategies", interrupted_on_one_thread)
    before = cv2.getNumThreads()
    with opencv_running(2), pytest.raises(KeyboardInterrupt):
        calibrate(sizes=(32,), kernels=((3, 3),), repeat=1)
    assert cv2.getNumThreads() == before
    with opencv_running(2):
        assert cost_model().source == str(calibration_path())
    with opencv_running(1):
        assert cost_model() is BUILT_IN_ONE_THREAD
