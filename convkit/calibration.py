"""How fast this machine filters, for `auto`: a cost model, and its calibration ("wisdom").

`auto` predicts the time of each strategy it may run (see `convkit.backends.auto`) from a
small linear model per kind of work and precision: milliseconds as a weighted sum of what
the work does (pixels, taps, OpenCV's DFT tiles, scipy's transform sizes). The weights come
from `calibrate`, which has the backends time their strategies on this machine (through the
registry: a backend whose entry ``calibrates`` measures itself, so that this module imports
no backend) and stores the fitted weights, as FFTW stores its wisdom, in one small JSON file
in the user's cache folder, named after a fingerprint of the machine (processor, cores,
OpenCV, numpy and scipy versions). Without such a file, or
with one that is unreadable, too large, malformed or from another machine, the built-in
weights (measured on a 2-core AMD EPYC) are used: silently, as a missing cache is no error.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

CACHE_DIR_ENV = "CONVKIT_CACHE_DIR"
FILE_FORMAT = 1
# A machine's entry is about 30 KiB with its residuals; a larger file is not one of ours.
MAX_FILE_BYTES = 512 * 1024
# Machines whose entries one calibration file keeps (the newest).
MAX_MACHINES = 8
PRECISIONS = ("float64", "float32")
# What each kind of work is charged for; the model holds one weight per feature.
FEATURES = {
    "direct": ("pixel", "pixel_tap", "pixel_kernel_row"),
    "opencv_dft": ("pixel", "tile_transform"),
    "separable": (
        "pass_pixel", "pass_pixel_column_tap", "pass_pixel_row_tap",
        "pass_pixel_column_tap_beyond_8", "pass_pixel_column_tap_squared", "add",
        "asymmetric_pass_pixel", "asymmetric_pass_pixel_column_tap",
        "asymmetric_pass_pixel_column_tap_beyond_8",
    ),
    "fft": ("padded_pixel", "radix_2_passes", "radix_3_passes", "radix_5_passes"),
}  # fmt: skip


class Geometry(NamedTuple):
    """The sizes a strategy's cost depends on.

    ``height`` and ``width`` are those of the image that OpenCV filters: the input's, or, when
    ``padded`` is True, the output of the shared padding step (which the ``fft`` backend always
    runs, and which adds nothing under ``valid``).
    """

    height: int
    width: int
    channels: int
    kernel: tuple[int, int]
    precision: str
    padded: bool = False


Coefficients = Mapping[str, Mapping[str, Sequence[float]]]  # precision -> kind -> weights
# precision -> variant (`variant`) -> measured kernels (kH, kW, log(measured / linear model))
Residuals = Mapping[str, Mapping[str, Sequence[tuple[int, int, float]]]]
# A measured kernel corrects the predictions for kernels around it: fully at its own shape,
# by half at one whose sides differ from it by RESIDUAL_REACH^1.18 (~1.4x here), hardly at
# all beyond twice that; PRIOR_WEIGHT holds a lone far point back.
RESIDUAL_REACH = math.exp(0.3)
PRIOR_WEIGHT = 0.05
# |log(measured / linear model)| at most this: a larger residual is not a measurement of ours.
MAX_LOG_RESIDUAL = math.log(100.0)


@dataclass(frozen=True, eq=False)  # hashed by identity: `auto` caches its plans per model
class CostModel:
    """Predicted milliseconds for each strategy, from weights fitted at a few image sizes.

    ``bands`` pairs a pixel count with the weights fitted on images of that size; a
    prediction between two is interpolated in log(pixels), one outside them uses the nearest.
    ``residuals`` pairs the same pixel counts with what the linear model missed on each
    measured kernel: OpenCV's separable filter in particular is faster or slower than any
    smooth model at some widths and kernel sizes (1024 columns and 51 taps: 3x faster than
    1000 columns on one thread here), and a prediction near a measured kernel takes the
    measurement's word for it. ``source`` says where the weights come from ("built-in" or
    the calibration file).
    """

    bands: tuple[tuple[int, Coefficients], ...]
    source: str = "built-in"
    residuals: tuple[tuple[int, Residuals], ...] = ()

    def predict_ms(
        self, kind: str, geometry: Geometry, passes: int = 0, asymmetric: int = 0
    ) -> float:
        """The predicted time of one kind of work (a key of `FEATURES`); for ``separable``,
        ``passes`` terms of which ``asymmetric`` have a column factor that OpenCV cannot take
        as symmetric."""
        values = features(kind, geometry, passes, asymmetric)
        key = variant(kind, passes, asymmetric)
        residuals = dict(self.residuals)

        def band_ms(index: int) -> float:
            count, coefficients = self.bands[index]
            weights = coefficients[geometry.precision][kind]
            linear = float(sum(w * v for w, v in zip(weights, values, strict=True)))
            measured = residuals.get(count, {}).get(geometry.precision, {})
            return linear * math.exp(_correction(measured, key, geometry.kernel))

        pixels = geometry.height * geometry.width
        counts = [count for count, _ in self.bands]
        if pixels <= counts[0] or len(counts) == 1:
            return band_ms(0)
        if pixels >= counts[-1]:
            return band_ms(len(counts) - 1)
        upper = next(i for i, count in enumerate(counts) if count >= pixels)
        low_count, high_count = counts[upper - 1], counts[upper]
        share = math.log(pixels / low_count) / math.log(high_count / low_count)
        return (1 - share) * band_ms(upper - 1) + share * band_ms(upper)


def variant(kind: str, passes: int = 0, asymmetric: int = 0) -> str:
    """The name under which residuals of this work are kept: the kind, and for separable
    passes one or two of them (three are corrected like two), symmetric or not."""
    if kind != "separable":
        return kind
    return f"separable:{min(max(passes, 1), 2)}:{min(asymmetric, 1)}"


def _correction(
    measured: Mapping[str, Sequence[tuple[int, int, float]]], key: str, kernel: tuple[int, int]
) -> float:
    """log(measured / linear) near ``kernel``: the residuals of the measured kernels of this
    variant, weighted by how close each is in log(kH), log(kW), held back by `PRIOR_WEIGHT`."""
    points = measured.get(key)
    if not points and key.startswith("separable:"):
        points = measured.get("separable:1:" + key[-1])
    if not points:
        return 0.0
    kh, kw = kernel
    reach = 2 * math.log(RESIDUAL_REACH) ** 2
    total = weight_sum = 0.0
    for ph, pw, residual in points:
        weight = math.exp(-(math.log(kh / ph) ** 2 + math.log(kw / pw) ** 2) / reach)
        total += weight * residual
        weight_sum += weight
    return total / (PRIOR_WEIGHT + weight_sum)


def features(
    kind: str, geometry: Geometry, passes: int = 0, asymmetric: int = 0
) -> tuple[float, ...]:
    """The amounts of work the weights of ``kind`` multiply, in millions where they count
    pixels, in the order of `FEATURES`."""
    height, width, channels, (kh, kw) = geometry[:4]
    megapixels = height * width * channels / 1e6
    if kind == "direct":
        return (megapixels, megapixels * kh * kw, megapixels * kh)
    if kind == "separable":
        work = passes * megapixels
        # The column pass reads kH rows of OpenCV's buffer at once: beyond the cache's ways
        # (8 here), rows whose addresses alias (power-of-two widths) evict one another.
        beyond = max(kh - 8, 0)
        crowded = work * beyond
        extra_terms = max(passes - 1, 0) * megapixels
        # OpenCV's filters for symmetric kernels are the faster ones (in float32 most).
        slow = asymmetric * megapixels
        squared = work * kh * kh / 100
        return (
            work, work * kh, work * kw, crowded, squared, extra_terms, slow, slow * kh,
            slow * beyond,
        )  # fmt: skip
    if kind == "opencv_dft":
        return (megapixels, channels * _opencv_tile_work(height, width, kh, kw) / 1e6)
    if kind == "fft":
        grow = 0 if geometry.padded else 1
        padded_h, padded_w = height + grow * (kh - 1), width + grow * (kw - 1)
        # The transforms' length is the padded image's (`convkit.backends.fft`).
        rows, columns = _fast_length(padded_h), _fast_length(padded_w)
        # Two transforms per channel and one of the kernel, each a pass over all samples per
        # prime factor of each side; radix 3 and 5 passes cost more than radix 2 ones.
        samples = (2 * channels + 1) * rows * columns / 1e6
        passes = np.add(_radix_passes(rows), _radix_passes(columns))
        return (channels * padded_h * padded_w / 1e6, *(samples * float(n) for n in passes))
    raise ValueError(f"unknown kind of work {kind!r}")


def _opencv_tile_work(height: int, width: int, kh: int, kw: int) -> float:
    """Transform work of OpenCV's crossCorr (imgproc's templmatch.cpp), which filter2D's DFT
    path runs: tiles of about 4.5 kernels (at least 256 samples with the kernel), each one a
    forward and an inverse DFT of its optimal size."""
    tile_h, rows = _opencv_tile(height, kh)
    tile_w, columns = _opencv_tile(width, kw)
    tiles = math.ceil(height / tile_h) * math.ceil(width / tile_w)
    return tiles * rows * columns * math.log2(max(rows * columns, 2))


def _opencv_tile(length: int, taps: int) -> tuple[int, int]:
    """(outputs per tile, DFT length) along one axis, as crossCorr chooses them."""
    block = min(max(round(taps * 4.5), 256 - taps + 1), length)
    transform = max(_fast_length(block + taps - 1), 2)
    return max(min(transform - taps + 1, length), 1), transform


def _radix_passes(length: int) -> tuple[int, int, int]:
    """(a, b, c) of ``length`` = 2^a 3^b 5^c, as `_fast_length` returns them."""
    counts = []
    for prime in (2, 3, 5):
        count = 0
        while length % prime == 0:
            length //= prime
            count += 1
        counts.append(count)
    return counts[0], counts[1], counts[2]


def _fast_length(length: int) -> int:
    """The smallest 2^a 3^b 5^c at least ``length``: OpenCV's getOptimalDFTSize and scipy's
    next_fast_len for real transforms agree on it (without importing scipy here)."""
    import cv2

    return int(cv2.getOptimalDFTSize(length))


# --- the built-in model: weights fitted by `fit_model` to the median times of two `calibrate`
# runs on a shared 2-core AMD EPYC (OpenCV 5.0.0, numpy 2.4.6, scipy 1.17.1) with nothing
# else of ours running (load average 0.9 to 1.9), without their residuals: a calibration adds
# this machine's ------------------------------------------------------------------------------

BUILT_IN = CostModel(
    bands=(
        (262144, {
            "float64": {
                "direct": (0.4006, 0.1496, 0.05871),
                "opencv_dft": (3.471, 0.3729),
                "separable": (
                    0.9054, 0, 0.1856, 0.6012, 0.1773, 1.009, 0.005304, 0.005013, 0.05715,
                ),
                "fft": (0, 0.3794, 0.7188, 1.159),
            },
            "float32": {
                "direct": (0.1135, 0.03419, 0.02176),
                "opencv_dft": (3.536, 0.3505),
                "separable": (0.1532, 0, 0.07858, 0.0691, 0.06425, 0.1045, 0.2031, 0, 0.2562),
                "fft": (8.152, 0.1149, 0, 0.3481),
            },
        }),
        (1048576, {
            "float64": {
                "direct": (0.6668, 0.06208, 0.1672),
                "opencv_dft": (5.664, 0.2838),
                "separable": (0.9532, 0.009358, 0.1067, 0, 0.1538, 0.7874, 0, 0.007388, 0),
                "fft": (14.52, 0, 0.4833, 0.3734),
            },
            "float32": {
                "direct": (0.1597, 0.02196, 0.03658),
                "opencv_dft": (3.347, 0.3152),
                "separable": (
                    0.3362, 0.009961, 0.05118, 0.009763, 0.01568, 0.3405, 0.0726, 0.01479, 0.0482,
                ),
                "fft": (0.7993, 0.1286, 0.2331, 0.4078),
            },
        }),
        (4194304, {
            "float64": {
                "direct": (1.007, 0.04953, 0.1821),
                "opencv_dft": (5.633, 0.2662),
                "separable": (1.42, 0, 0.1017, 0.06445, 0.07379, 0.6799, 0.05751, 0, 0.002818),
                "fft": (23.64, 0, 0.1384, 0),
            },
            "float32": {
                "direct": (0.4621, 0.01726, 0.03171),
                "opencv_dft": (3.852, 0.2792),
                "separable": (
                    0.5738, 0.007042, 0.04789, 0.00185, 0.01807, 0.3528, 0, 0.002415, 0.06857,
                ),
                "fft": (0, 0.1362, 0.6626, 0),
            },
        }),
        (16777216, {
            "float64": {
                "direct": (0.6951, 0.05308, 0.1956),
                "opencv_dft": (5.332, 0.3208),
                "separable": (
                    1.085, 0, 0.1004, 0.0576, 0.08873, 0.8028, 0.003162, 0.002481, 0.005308,
                ),
                "fft": (19.59, 0, 0.6509, 0),
            },
            "float32": {
                "direct": (0.5246, 0.01561, 0.04381),
                "opencv_dft": (3.621, 0.2683),
                "separable": (
                    0.5623, 0.003506, 0.04092, 0.01239, 0.0144, 0.4633, 0, 0.01311, 0.04711,
                ),
                "fft": (8.593, 0, 0.3344, 0),
            },
        }),
    ),
)  # fmt: skip


# The same, fitted to two calibrations with OpenCV (and so the FFT) on one thread, as in a
# batch's workers (load 0.8 to 1.0).

BUILT_IN_ONE_THREAD = CostModel(
    bands=(
        (262144, {
            "float64": {
                "direct": (0.2821, 0.1148, 0.03262),
                "opencv_dft": (3.404, 0.3218),
                "separable": (0.4369, 0, 0.1723, 0.3966, 0.3914, 0.345, 0.06647, 0.00578, 0.0339),
                "fft": (0, 0.3568, 0.5159, 1.055),
            },
            "float32": {
                "direct": (0.1, 0.03447, 0.01847),
                "opencv_dft": (2.759, 0.3125),
                "separable": (0.1311, 0, 0.07649, 0.05566, 0.07854, 0.1062, 0.1821, 0, 0.231),
                "fft": (0, 0.1581, 0.3096, 0.4843),
            },
        }),
        (1048576, {
            "float64": {
                "direct": (0.6245, 0.1182, 0.07456),
                "opencv_dft": (5.034, 0.2457),
                "separable": (1.038, 0, 0.1577, 0.4546, 0.3136, 1.184, 0, 0, 0.02544),
                "fft": (0, 0.3966, 0.7958, 1.224),
            },
            "float32": {
                "direct": (0.08547, 0.03192, 0.0386),
                "opencv_dft": (3.31, 0.2721),
                "separable": (
                    0.1776, 0.006627, 0.0771, 0.1277, 0.06262, 0.1682, 0.05663, 0.02908, 0.4698,
                ),
                "fft": (7.991, 0.03497, 0.1148, 0.2256),
            },
        }),
        (4194304, {
            "float64": {
                "direct": (1.143, 0.1135, 0.0914),
                "opencv_dft": (5.672, 0.2321),
                "separable": (1.607, 0, 0.1545, 0.5097, 0.2545, 0.7287, 0.08233, 0, 0.02953),
                "fft": (31.08, 0, 0.215, 0),
            },
            "float32": {
                "direct": (0.389, 0.02898, 0.04733),
                "opencv_dft": (4.544, 0.2092),
                "separable": (0.6444, 0, 0.07251, 0.1351, 0.04775, 0.357, 0.1377, 0, 0.5361),
                "fft": (0, 0.2399, 0.6623, 0),
            },
        }),
        (16777216, {
            "float64": {
                "direct": (1.14, 0.1196, 0.0008241),
                "opencv_dft": (5.18, 0.245),
                "separable": (1.388, 0, 0.1646, 0.4518, 0.3337, 0.5175, 0.05795, 0, 0.01101),
                "fft": (24.76, 0, 1.168, 0),
            },
            "float32": {
                "direct": (0.5825, 0.02853, 0.04522),
                "opencv_dft": (6.179, 0.1568),
                "separable": (0.6945, 0, 0.07449, 0.1423, 0.04672, 0.3167, 0.1105, 0, 0.5148),
                "fft": (18.27, 0, 0.4448, 0),
            },
        }),
    ),
    source="built-in, one thread",
)  # fmt: skip


# --- the calibration file ----------------------------------------------------------------


def cache_dir() -> Path:
    """Where convkit keeps its cache: ``$CONVKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/convkit``,
    else ``~/.cache/convkit``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "convkit"


def calibration_path() -> Path:
    """The calibration file: one per cache folder, holding each machine's entry under its
    fingerprint (a home folder may be shared by several machines)."""
    return cache_dir() / "calibration.json"


def machine_fingerprint() -> dict[str, str]:
    """What the calibration of this machine depends on: processor model, cores, the OpenCV,
    numpy and scipy versions, and the threads OpenCV runs now (a batch's workers run one,
    and have an entry of their own)."""
    return {**_installed_fingerprint(), "opencv_threads": str(opencv_threads())}


@cache
def _installed_fingerprint() -> dict[str, str]:
    import cv2

    return {
        "processor": _processor_model(),
        "machine": platform.machine(),
        "cores": str(os.cpu_count()),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "scipy": _installed_version("scipy"),
    }


def opencv_threads() -> int:
    """The threads OpenCV's filters (and so the ``fft`` backend) run on in this process."""
    import cv2

    return max(cv2.getNumThreads(), 1)


def machine_key(fingerprint: Mapping[str, str]) -> str:
    """The short digest that names a machine's entry in the calibration file."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def _processor_model() -> str:
    """The processor's model name (Linux's /proc/cpuinfo), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Processor", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _installed_version(package: str) -> str:
    """The version in the name of ``package``'s dist-info folder, without importing it (scipy
    takes 20 ms) or importlib.metadata (which reads every folder on sys.path: 30 ms)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return "not installed"
    prefix = f"{package}-"
    for info in Path(spec.origin).parent.parent.glob(f"{prefix}*.dist-info"):
        return info.name[len(prefix) : -len(".dist-info")]
    return "unknown"


def cost_model() -> CostModel:
    """The model `auto` uses, for the threads OpenCV runs now: this machine's calibration if
    a valid one is stored, else the built-in one. Read once per process and thread count
    (``cost_model.cache_clear()`` reads again); without a calibration file, that costs one
    failed open."""
    return _cost_model(opencv_threads())


@cache
def _cost_model(threads: int) -> CostModel:
    return read_calibration(calibration_path()) or built_in_model(threads)


cost_model.cache_clear = _cost_model.cache_clear  # type: ignore[attr-defined]


def built_in_model(threads: int) -> CostModel:
    """The built-in weights for OpenCV running ``threads`` threads: those measured on one
    thread, or those measured on all cores (two, on the machine that measured them)."""
    return BUILT_IN_ONE_THREAD if threads == 1 else BUILT_IN


def read_calibration(path: Path) -> CostModel | None:
    """This machine's model in the calibration file at ``path``, or None if there is none, or
    the file is too large, malformed or of another format. Never raises."""
    document = _read_document(path)
    if document is None:
        return None
    fingerprint = machine_fingerprint()
    entry = document["machines"].get(machine_key(fingerprint))
    if not isinstance(entry, dict) or entry.get("fingerprint") != fingerprint:
        return None
    bands = _checked_bands(entry.get("bands"))
    if not bands:
        return None
    residuals = _checked_residuals(entry.get("bands"))
    if residuals is None:
        return None
    return CostModel(bands, source=str(path), residuals=residuals)


def _read_document(path: Path) -> dict | None:
    """The calibration file's JSON if it is ours and small: {"format", "machines"}."""
    try:
        with open(path, "rb") as stored:
            raw = stored.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            return None
        document = json.loads(raw)
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
        return None
    return document if isinstance(document.get("machines"), dict) else None


def _checked_bands(raw: object) -> tuple[tuple[int, Coefficients], ...] | None:
    """The bands of a calibration entry if every weight is there, finite and not negative,
    with at least one positive per kind; else None."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= 16:
        return None
    bands = []
    for band in raw:
        if not isinstance(band, dict) or not isinstance(band.get("pixels"), int):
            return None
        coefficients = {}
        for precision in PRECISIONS:
            kinds = band.get(precision)
            if not isinstance(kinds, dict):
                return None
            coefficients[precision] = {}
            for kind, names in FEATURES.items():
                weights = kinds.get(kind)
                if not _valid_weights(weights, len(names)):
                    return None
                coefficients[precision][kind] = tuple(float(w) for w in weights)
        bands.append((band["pixels"], coefficients))
    counts = [count for count, _ in bands]
    if counts != sorted(set(counts)) or counts[0] < 1:
        return None
    return tuple(bands)


# The variants residuals may be kept under (see `variant`).
VARIANTS = (
    "direct", "opencv_dft", "fft",
    "separable:1:0", "separable:2:0", "separable:1:1", "separable:2:1",
)  # fmt: skip
# At most this many measured kernels per band, precision and variant.
MAX_RESIDUALS = 256


def _checked_residuals(raw: list) -> tuple[tuple[int, Residuals], ...] | None:
    """The residuals of the (already checked) bands: each a known variant's list of
    [kH, kW, log ratio] with positive whole sides and a ratio within `MAX_LOG_RESIDUAL`;
    a band without them has none (files written before residuals were kept). None if any
    is malformed."""
    residuals = []
    for band in raw:
        kept = band.get("residuals", {})
        if not isinstance(kept, dict) or not set(kept) <= set(PRECISIONS):
            return None
        checked: dict[str, dict[str, tuple[tuple[int, int, float], ...]]] = {}
        for precision, variants in kept.items():
            if not isinstance(variants, dict) or not set(variants) <= set(VARIANTS):
                return None
            checked[precision] = {}
            for key, points in variants.items():
                if not isinstance(points, list) or len(points) > MAX_RESIDUALS:
                    return None
                if not all(_valid_point(point) for point in points):
                    return None
                checked[precision][key] = tuple((int(h), int(w), float(r)) for h, w, r in points)
        residuals.append((band["pixels"], checked))
    return tuple(residuals)


def _valid_point(point: object) -> bool:
    if not isinstance(point, list) or len(point) != 3:
        return False
    kh, kw, residual = point
    sides = all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in (kh, kw))
    number = isinstance(residual, (int, float)) and not isinstance(residual, bool)
    return sides and number and math.isfinite(residual) and abs(residual) <= MAX_LOG_RESIDUAL


def _valid_weights(weights: object, count: int) -> bool:
    if not isinstance(weights, list) or len(weights) != count:
        return False
    numbers = [w for w in weights if isinstance(w, (int, float)) and not isinstance(w, bool)]
    return (
        len(numbers) == count
        and all(math.isfinite(w) and w >= 0 for w in numbers)
        and any(w > 0 for w in numbers)
    )


def write_calibration(model: CostModel, path: Path | None = None) -> Path:
    """Store ``model`` as this machine's entry of the calibration file, atomically, keeping
    the entries of up to `MAX_MACHINES` - 1 other machines; return the file's path.

    Raises
    ------
    OSError
        If the cache folder cannot be created or written.
    """
    path = calibration_path() if path is None else path
    fingerprint = machine_fingerprint()
    existing = _read_document(path)
    others = existing["machines"] if existing else {}
    others = {key: entry for key, entry in others.items() if key != machine_key(fingerprint)}
    kept = sorted(others.items(), key=_created, reverse=True)[: MAX_MACHINES - 1]
    residuals = dict(model.residuals)
    entry = {
        "fingerprint": fingerprint,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "bands": [
            {
                "pixels": count,
                **{p: {k: list(w) for k, w in c[p].items()} for p in PRECISIONS},
                "residuals": {
                    p: {k: [list(point) for point in points] for k, points in variants.items()}
                    for p, variants in residuals.get(count, {}).items()
                },
            }
            for count, c in model.bands
        ],
    }
    machines = dict(kept, **{machine_key(fingerprint): entry})
    _write_atomically(path, {"format": FILE_FORMAT, "machines": machines})
    cost_model.cache_clear()
    return path


def _created(item: tuple[str, object]) -> str:
    entry = item[1]
    return str(entry.get("created", "")) if isinstance(entry, dict) else ""


def _write_atomically(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=".calibration-", suffix=".tmp", delete=False
    ) as temporary:
        try:
            json.dump(document, temporary, separators=(",", ":"))
            temporary.close()
            os.replace(temporary.name, path)
        except BaseException:
            os.unlink(temporary.name)
            raise


# --- measuring -------------------------------------------------------------------------------

CALIBRATION_SIZES = (512, 1024, 2048, 4096)
# Direct sums (in float32 up to 129 taps: 9x9, 3x31), OpenCV's DFT path, separable passes
# along either axis and FFT, square and rectangular, on both sides of each cross-over seen.
CALIBRATION_KERNELS = (
    (2, 2), (3, 3), (5, 5), (7, 7), (9, 9), (3, 15), (15, 3), (3, 31), (31, 3), (11, 11),
    (21, 21), (31, 31), (51, 51), (101, 101), (1, 51), (51, 1), (5, 51), (51, 5), (21, 101),
    (101, 21),
)  # fmt: skip


class Sample(NamedTuple):
    """One measured time: a kind of work on one geometry, its median of a few runs."""

    geometry: Geometry
    kind: str
    passes: int
    asymmetric: int
    milliseconds: float


@dataclass(frozen=True)
class Calibration:
    """What `calibrate` measured and where it stored the models: ``model`` and ``samples``
    are those of the threads OpenCV runs in the calling process; ``threads`` lists every
    thread count calibrated."""

    path: Path
    model: CostModel
    samples: tuple[Sample, ...]
    seconds: float
    threads: tuple[int, ...] = ()


def calibrate(
    sizes: Sequence[int] = CALIBRATION_SIZES,
    kernels: Sequence[tuple[int, int]] = CALIBRATION_KERNELS,
    repeat: int = 5,
    progress: Callable[[int, int], None] | None = None,
    path: Path | None = None,
    threads: Sequence[int] | None = None,
) -> Calibration:
    """Time `auto`'s strategies on this machine, fit the cost model, store it for `auto`.

    Every backend whose registry entry ``calibrates`` times its strategies on each (image
    size, kernel, precision) cell (`convkit.backends.measure_strategies`: for `auto`,
    filter2D, separable passes and the FFT, interleaved, each one's median of ``repeat``
    rounds: what a call typically takes, as a user will see it). The weights
    of each kind of work are then fitted per image size by non-negative least squares on
    relative error.

    This runs once for each thread count `auto` runs at: the threads OpenCV runs in this
    process, and one thread, as in a batch's worker processes (`calibrated_thread_counts`).
    The cross-overs differ: a 51x51 Gaussian on a 2048^2 float64 image took 47 ms as two
    separable passes on two threads here and 183 ms on one, where filter2D's DFT, which
    keeps to one thread, took 49 ms both ways. OpenCV's thread count is set for each
    measurement and restored afterwards.

    The times, and so `auto`'s picks, also hold for the load the machine had while
    measuring: OpenCV's separable passes and scipy's FFT run on every core and slow down
    2-3x when other work shares them, filter2D's DFT keeps to one. On a shared machine,
    calibrate when it is about as busy as when it filters.

    Parameters
    ----------
    sizes : sequence of int
        Sides of the square test images.
    kernels : sequence of (int, int)
        Kernel shapes to time.
    repeat : int
        Interleaved rounds per cell after the first run.
    progress : callable, optional
        ``progress(done, total)`` after each cell, counted over every thread count.
    path : Path, optional
        Where to store the models; by default this machine's `calibration_path`.
    threads : sequence of int, optional
        The OpenCV thread counts to calibrate; by default `calibrated_thread_counts`.

    Returns
    -------
    Calibration

    Raises
    ------
    OSError
        If the calibration file cannot be written.
    """
    from convkit.backends import KNOWN_BACKENDS, measure_strategies

    started = time.perf_counter()
    counts = calibrated_thread_counts() if threads is None else tuple(threads)
    own = opencv_threads()
    cells = len(PRECISIONS) * len(sizes) * len(kernels)
    calibrated: dict[int, tuple[CostModel, tuple[Sample, ...]]] = {}
    stored = path
    for round_, count in enumerate(counts):

        def counted(done: int, total: int, offset: int = round_ * cells) -> None:
            if progress is not None:
                progress(offset + done, len(counts) * cells)

        samples: list[Sample] = []
        with opencv_running(count):
            for name, backend in KNOWN_BACKENDS.items():
                if backend.calibrates and backend.is_available():
                    samples += measure_strategies(name, sizes, kernels, repeat, counted)
            model = fit_model(samples)
            stored = write_calibration(model, path)
        calibrated[count] = (model, tuple(samples))
    model, samples = calibrated.get(own, calibrated[counts[0]])
    seconds = time.perf_counter() - started
    return Calibration(stored, model, samples, seconds, counts)


def calibrated_thread_counts() -> tuple[int, ...]:
    """The OpenCV thread counts `auto` runs at: this process's, and one (a batch's workers,
    which share the cores among themselves)."""
    return tuple(dict.fromkeys((opencv_threads(), 1)))


@contextlib.contextmanager
def opencv_running(threads: int) -> Iterator[None]:
    """OpenCV (and so the ``fft`` backend) on ``threads`` threads inside the block; what it
    ran on before, after it."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def fit_model(samples: Sequence[Sample]) -> CostModel:
    """Weights per image size, precision and kind of work, fitted to ``samples``, and what
    they still miss on each measured kernel (`CostModel.residuals`); where no sample
    measured a kind, the built-in weights of the nearest size stand in."""
    linear = _fit_weights(samples)
    bands = dict(linear.bands)
    residuals = []
    for count, coefficients in linear.bands:
        kept: dict[str, dict[str, list[tuple[int, int, float]]]] = {p: {} for p in PRECISIONS}
        for s in samples:
            if s.geometry.height * s.geometry.width != count:
                continue
            weights = coefficients[s.geometry.precision][s.kind]
            values = features(s.kind, s.geometry, s.passes, s.asymmetric)
            predicted = sum(w * v for w, v in zip(weights, values, strict=True))
            if predicted <= 0 or s.milliseconds <= 0:
                continue
            residual = max(
                -MAX_LOG_RESIDUAL, min(MAX_LOG_RESIDUAL, math.log(s.milliseconds / predicted))
            )
            key = variant(s.kind, s.passes, s.asymmetric)
            kh, kw = s.geometry.kernel
            kept[s.geometry.precision].setdefault(key, []).append((kh, kw, round(residual, 4)))
        residuals.append(
            (count, {p: {k: tuple(v) for k, v in kept[p].items()} for p in PRECISIONS})
        )
    return CostModel(tuple(bands.items()), source="fitted", residuals=tuple(residuals))


def _fit_weights(samples: Sequence[Sample]) -> CostModel:
    """The linear model alone: non-negative least squares on relative error, per image size,
    precision and kind of work."""
    from scipy.optimize import nnls

    bands = []
    for count in sorted({s.geometry.height * s.geometry.width for s in samples}):
        coefficients: dict[str, dict[str, tuple[float, ...]]] = {}
        for precision in PRECISIONS:
            coefficients[precision] = {}
            for kind in FEATURES:
                rows = [
                    (features(kind, s.geometry, s.passes, s.asymmetric), s.milliseconds)
                    for s in samples
                    if s.geometry.height * s.geometry.width == count
                    and s.geometry.precision == precision
                    and s.kind == kind
                ]
                if rows:
                    # Relative error: each row divided by its own time.
                    matrix = np.array([[v / ms for v in values] for values, ms in rows])
                    weights, _ = nnls(matrix, np.ones(len(rows)))
                    coefficients[precision][kind] = tuple(float(w) for w in weights)
                else:
                    coefficients[precision][kind] = _nearest_band(BUILT_IN, count)[precision][kind]
        bands.append((count, coefficients))
    return CostModel(tuple(bands), source="fitted")


def _nearest_band(model: CostModel, pixels: int) -> Coefficients:
    return min(model.bands, key=lambda band: abs(math.log(band[0] / pixels)))[1]
