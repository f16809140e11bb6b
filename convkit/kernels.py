"""Kernels: the `Kernel` type, the built-in bank, and lookup by name.

Every kernel here is *correlated* with the image (as cv2.filter2D does); ``flip`` in
`convkit.convolve` turns that into true convolution.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convkit.errors import KernelError


@dataclass(frozen=True, eq=False)
class Kernel:
    """A named 2-D array of weights with an anchor.

    Parameters
    ----------
    name : str
        The name used in output file names and tables.
    weights : array_like
        A 2-D matrix of real numbers, stored as a read-only float64 array. Every weight, and
        the sum of their absolute values, must be finite in float64.
    anchor : (int, int), optional
        The (row, column) of the weight that sits on the output pixel. Defaults to
        OpenCV's ``(kH // 2, kW // 2)``, also for even and rectangular kernels.
    description : str
        One line for ``convkit kernels``.
    offset : float
        Added to the response after filtering (libvips ``.mat`` files carry one).
    warnings : tuple of str
        What parsing changed (ImageMagick's ``nan`` cells read as 0), for the user to see.
    source : Path, optional
        The file the kernel was read from (None for built-in, parametric and inline kernels),
        so that a run can refuse to write over it. Every derived kernel keeps it.

    Raises
    ------
    KernelError
        For weights that are not a non-empty 2-D matrix of finite real numbers, an anchor
        that is not two whole numbers inside the matrix, or a non-finite offset.
    """

    name: str
    weights: np.ndarray
    anchor: tuple[int, int] | None = None
    description: str = ""
    offset: float = 0.0
    warnings: tuple[str, ...] = ()
    source: Path | None = None

    def __post_init__(self) -> None:
        weights = _float_weights(self.name, self.weights)
        weights.setflags(write=False)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "anchor", _checked_anchor(self.name, self.anchor, weights.shape))
        object.__setattr__(self, "offset", _checked_offset(self.name, self.offset))

    @property
    def shape(self) -> tuple[int, int]:
        return self.weights.shape

    @property
    def total(self) -> float:
        """The sum of the weights."""
        return float(self.weights.sum())

    @property
    def abs_sum(self) -> float:
        """The sum of the absolute weights: how much the kernel can amplify (always finite)."""
        return float(np.abs(self.weights).sum())

    def flipped(self) -> Kernel:
        """The kernel rotated by 180 degrees, anchor included: correlating with it convolves."""
        kh, kw = self.shape
        ay, ax = self.anchor
        return self._replace(weights=self.weights[::-1, ::-1], anchor=(kh - 1 - ay, kw - 1 - ax))

    def normalized(self) -> Kernel:
        """The kernel divided by its sum; unchanged when the sum is 0 (edge detectors).

        A sum within round-off of 0 (up to ``size * eps * sum|K|``) counts as 0: dividing by
        round-off would blow the weights up to meaningless values. Above it, no weight can
        grow beyond ``1 / (size * eps)``, so the division cannot overflow.
        """
        total = float(self.weights.sum())
        if abs(total) <= self.weights.size * np.finfo(np.float64).eps * self.abs_sum:
            return self
        return self._replace(weights=self.weights / total)

    def scaled(self, factor: float) -> Kernel:
        """The kernel multiplied by ``factor``.

        Raises
        ------
        KernelError
            If ``factor`` is not a finite number, or the scaled weights overflow float64.
        """
        factor = finite_number(factor, f"kernel {self.name!r}: scale factor")
        largest = float(np.abs(self.weights).max())
        if not math.isfinite(largest * abs(factor)) or not math.isfinite(
            self.abs_sum * abs(factor)
        ):
            raise KernelError(
                f"kernel {self.name!r} scaled by {factor!r} overflows float64 "
                f"(its largest |weight| is {largest:g})"
            )
        return self._replace(weights=self.weights * factor)

    def renamed(self, name: str) -> Kernel:
        return self._replace(name=name)

    def anchored(self, anchor: tuple[int, int]) -> Kernel:
        """The kernel with its anchor at (row, column) ``anchor``."""
        return self._replace(anchor=anchor)

    def _repr_png_(self) -> bytes:
        """The kernel's heatmap as PNG bytes: how Jupyter shows a `Kernel`.

        Drawn by `convkit.compare.kernel_picture` (weights in their cells, the anchor
        outlined, the name above), imported here so that ``import convkit`` stays cheap.
        """
        from convkit.compare import kernel_picture
        from convkit.imageio import encode_image

        return encode_image(kernel_picture(self))

    def _replace(self, **changes) -> Kernel:
        values = {
            "name": self.name,
            "weights": self.weights,
            "anchor": self.anchor,
            "description": self.description,
            "offset": self.offset,
            "warnings": self.warnings,
            "source": self.source,
        }
        values.update(changes)
        return Kernel(**values)


# Values longer than this are shortened in messages, so that an error stays one short line.
_SHOWN_CHARACTERS = 40


def quoted(value: object) -> str:
    """``repr(value)`` for a message, shortened in the middle when it is long.

    Examples
    --------
    >>> quoted("1" * 5000)
    "'111111111111111111…1111111111' (5000 characters)"
    >>> quoted(10**400)
    '100000000000000000…0000000000 (401 characters)'
    """
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= _SHOWN_CHARACTERS:
        return repr(value)
    shortened = text[:18] + "…" + text[-10:]
    shown = repr(shortened) if isinstance(value, str) else shortened
    return f"{shown} ({len(text)} characters)"


def finite_number(value: object, what: str) -> float:
    """``value`` as a finite float; a `KernelError` naming ``what`` and the value if not.

    Examples
    --------
    >>> finite_number(2, "scale")
    2.0
    """
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise KernelError(f"{what} {quoted(value)} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise KernelError(f"{what} {quoted(value)} is not a finite number") from None
    if not math.isfinite(number):
        raise KernelError(f"{what} {quoted(value)} is not a finite number")
    return number


def _float_weights(name: str, weights: object) -> np.ndarray:
    """``weights`` as a new float64 matrix; a `KernelError` that names what is wrong if not."""
    try:
        raw = np.asarray(weights)
    except (ValueError, TypeError, RecursionError):
        raise KernelError(
            f"kernel {name!r}: the weights must be a rectangular 2-D matrix of numbers "
            "(rows of equal length)"
        ) from None
    if raw.ndim != 2 or raw.size == 0:
        raise KernelError(f"kernel {name!r} must be a non-empty 2-D matrix, got shape {raw.shape}")
    if raw.dtype.kind == "O":
        return _float_weights_from_objects(name, raw)
    if raw.dtype.kind not in "iuf":
        raise KernelError(
            f"kernel {name!r}: the weights must be real numbers, got dtype {raw.dtype} "
            f"(such as {quoted(raw.flat[0].item())})"
        )
    with np.errstate(all="ignore"):  # long doubles beyond float64 become inf: checked below
        converted = raw.astype(np.float64)
    _check_finite(name, converted, raw)
    return converted


def _float_weights_from_objects(name: str, raw: np.ndarray) -> np.ndarray:
    """An object array (Python ints too large for int64, Fractions...): each a real number."""
    converted = np.empty(raw.shape, dtype=np.float64)
    for index, value in np.ndenumerate(raw):
        if isinstance(value, (bool, str, bytes, complex)) or not _is_real(value):
            raise KernelError(
                f"kernel {name!r}: weight {quoted(value)} at (row {index[0]}, col {index[1]}) "
                "is not a real number"
            )
        try:
            converted[index] = float(value)
        except OverflowError:
            converted[index] = math.inf  # reported by _check_finite, with the value
    _check_finite(name, converted, raw)
    return converted


def _is_real(value: object) -> bool:
    try:
        float(value)
    except OverflowError:
        return True
    except (TypeError, ValueError):
        return False
    return True


def _check_finite(name: str, weights: np.ndarray, raw: np.ndarray) -> None:
    finite = np.isfinite(weights)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        value = raw[row, col]
        value = value.item() if isinstance(value, np.generic) else value
        raise KernelError(
            f"kernel {name!r} has NaN or infinite weights: {quoted(value)} at "
            f"(row {row}, col {col}) is not finite in float64"
        )
    with np.errstate(over="ignore"):  # an overflowing sum is the error reported here
        abs_sum = float(np.abs(weights).sum())
    if not math.isfinite(abs_sum):
        largest = float(np.abs(weights).max())
        raise KernelError(
            f"kernel {name!r}: the sum of its |weights| overflows float64 "
            f"(largest |weight| {largest:g})"
        )


def _checked_anchor(name: str, anchor: object, shape: tuple[int, int]) -> tuple[int, int]:
    """The anchor as two ints inside the matrix; OpenCV's centre when None."""
    kh, kw = shape
    if anchor is None:
        return kh // 2, kw // 2
    try:
        row, column = anchor
    except (TypeError, ValueError):
        raise KernelError(
            f"kernel {name!r}: anchor {quoted(anchor)} must be two whole numbers (row, column)"
        ) from None
    whole = (_whole_number(row), _whole_number(column))
    if None in whole:
        raise KernelError(
            f"kernel {name!r}: anchor {quoted(anchor)} must be two whole numbers (row, column)"
        )
    if not (0 <= whole[0] < kh and 0 <= whole[1] < kw):
        raise KernelError(f"kernel {name!r}: anchor {whole} lies outside its {kh}x{kw} weights")
    return whole


def _whole_number(value: object) -> int | None:
    """``value`` as an int if it is one (2, 2.0, numpy integers); None for 1.5, '1', nan."""
    try:
        return operator.index(value)
    except TypeError:
        pass
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and value == int(value):
        return int(value)
    return None


def _checked_offset(name: str, offset: object) -> float:
    return finite_number(offset, f"kernel {name!r}: offset")


def _box(size: int) -> np.ndarray:
    return np.full((size, size), 1.0 / (size * size))


# 1-D parts of the separable edge detectors: smoothing across, difference along.
_DIFFERENCE = np.array([-1.0, 0.0, 1.0])
_SOBEL_SMOOTH = np.array([1.0, 2.0, 1.0])
_PREWITT_SMOOTH = np.array([1.0, 1.0, 1.0])
_SCHARR_SMOOTH = np.array([3.0, 10.0, 3.0])
_LINE = np.array([-1.0, 2.0, -1.0])

# The tutorial's line detectors respond to a bright line one pixel wide.
_VERTICAL_LINE = np.outer(np.ones(3), _LINE)
_HORIZONTAL_LINE = _VERTICAL_LINE.T

_BANK_ENTRIES: tuple[tuple[str, np.ndarray, str], ...] = (
    ("small_blur", _box(7), "7x7 box blur: the mean of a 7x7 neighbourhood"),
    ("large_blur", _box(21), "21x21 box blur: the mean of a 21x21 neighbourhood"),
    ("sharpen", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]], "sharpen: identity + 4-neighbour Laplacian"),
    (
        "laplacian",
        [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
        "4-neighbour Laplacian: edges in every direction",
    ),
    ("sobel_x", np.outer(_SOBEL_SMOOTH, _DIFFERENCE), "Sobel x: responds to vertical edges (d/dx)"),
    (
        "sobel_y",
        np.outer(_DIFFERENCE, _SOBEL_SMOOTH),
        "Sobel y: responds to horizontal edges (d/dy)",
    ),
    ("emboss", [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], "emboss: relief lit from the top left"),
    ("identity", [[0, 0, 0], [0, 1, 0], [0, 0, 0]], "identity: returns the image unchanged"),
    ("horizontal_edge", [[2, 2], [-2, -2]], "2x2 horizontal edge: bright above, dark below"),
    ("vertical_edge", [[2, -2], [2, -2]], "2x2 vertical edge: bright left, dark right"),
    ("vertical_line", _VERTICAL_LINE, "3x3 vertical line detector"),
    ("horizontal_line", _HORIZONTAL_LINE, "3x3 horizontal line detector"),
    ("cross", _VERTICAL_LINE + _HORIZONTAL_LINE, "3x3 cross detector: vertical + horizontal line"),
    (
        "prewitt_x",
        np.outer(_PREWITT_SMOOTH, _DIFFERENCE),
        "Prewitt x: vertical edges, flat smoothing",
    ),
    (
        "prewitt_y",
        np.outer(_DIFFERENCE, _PREWITT_SMOOTH),
        "Prewitt y: horizontal edges, flat smoothing",
    ),
    (
        "scharr_x",
        np.outer(_SCHARR_SMOOTH, _DIFFERENCE),
        "Scharr x: vertical edges, rotation-accurate",
    ),
    (
        "scharr_y",
        np.outer(_DIFFERENCE, _SCHARR_SMOOTH),
        "Scharr y: horizontal edges, rotation-accurate",
    ),
    ("laplacian8", [[1, 1, 1], [1, -8, 1], [1, 1, 1]], "8-neighbour Laplacian: diagonals included"),
)

BANK: dict[str, Kernel] = {
    name: Kernel(name, weights, description=text) for name, weights, text in _BANK_ENTRIES
}

# `all` is the tutorial's bank of seven.
TUTORIAL_BANK: tuple[str, ...] = (
    "small_blur", "large_blur", "sharpen", "laplacian", "sobel_x", "sobel_y", "emboss",
)  # fmt: skip


def adjust_kernels(
    kernels: list[Kernel],
    normalize: bool = False,
    scale: float | None = None,
    anchor: tuple[int, int] | None = None,
) -> list[Kernel]:
    """``--normalize`` (divide by the sum), then ``--scale``, then ``--anchor``, for each.

    Raises
    ------
    KernelError
        For a ``scale`` that is not a finite number (0 is allowed), or one that makes a
        kernel's weights overflow float64; the message names ``--scale`` and its value.
    """
    if normalize:
        kernels = [k.normalized() for k in kernels]
    if scale is not None:
        factor = finite_number(scale, "--scale")
        kernels = [_scaled_by_option(k, factor) for k in kernels]
    if anchor is not None:
        kernels = [k.anchored(anchor) for k in kernels]
    return kernels


def _scaled_by_option(kernel: Kernel, factor: float) -> Kernel:
    try:
        return kernel.scaled(factor)
    except KernelError:
        largest = float(np.abs(kernel.weights).max())
        raise KernelError(
            f"--scale {factor!r} makes kernel {kernel.name!r} overflow float64 "
            f"(its largest |weight| is {largest:g})"
        ) from None


def safe_name(name: str) -> str:
    """A kernel or stack name made safe for a file name: outside ``[A-Za-z0-9_.-]`` -> ``-``.

    Examples
    --------
    >>> safe_name("gaussian:5:1.4")
    'gaussian-5-1.4'
    """
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)


def get_kernel(name: str) -> Kernel:
    """Return the built-in kernel called ``name``.

    Parameters
    ----------
    name : str
        A bank name such as ``"sobel_x"`` (case-insensitive; ``-`` may stand for ``_``).

    Raises
    ------
    KernelError
        For an unknown name; the message suggests the closest names.

    Examples
    --------
    >>> get_kernel("sobel_x").weights
    array([[-1.,  0.,  1.],
           [-2.,  0.,  2.],
           [-1.,  0.,  1.]])
    """
    if not isinstance(name, str):
        raise KernelError(f"a kernel name must be a string, got {quoted(name)}")
    key = name.strip().lower().replace("-", "_")
    if key in BANK:
        return BANK[key]
    family, _, parameters = key.partition(":")
    if family in PARAMETRIC and parameters:
        values = name.strip().partition(":")[2].split(":")
        return PARAMETRIC[family](name.strip(), *values)
    if family in PARAMETRIC:
        raise KernelError(f"{family} is parametric: write {PARAMETRIC_USAGE[family]}")
    raise KernelError(unknown_kernel_message(name))


# --- parametric kernels: box:N, gaussian:N[:SIGMA], log:N[:SIGMA], motion:N[:ANGLE] ---------


def _size(family: str, text: str, odd: bool) -> int:
    digits = text.strip().lstrip("+")
    if digits.isdecimal() and len(digits) > len(str(MAX_PARAMETRIC_SIZE)):
        raise KernelError(f"{family}: size {quoted(text)} is larger than {MAX_PARAMETRIC_SIZE}")
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1 or (odd and size % 2 == 0):
        need = "an odd whole number" if odd else "a whole number"
        raise KernelError(
            f"{family}: the size N must be {need} >= 1, got {quoted(text)} "
            f"(write {PARAMETRIC_USAGE[family]})"
        )
    if size > MAX_PARAMETRIC_SIZE:
        raise KernelError(f"{family}: size {size} is larger than {MAX_PARAMETRIC_SIZE}")
    return size


def _number(family: str, what: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise KernelError(
            f"{family}: {what} must be a number, got {quoted(text)}, which is not a finite "
            f"one (write {PARAMETRIC_USAGE[family]})"
        )
    return value


def _sigma(family: str, text: str) -> float:
    """SIGMA within `SIGMA_RANGE`: outside it the weights underflow or overflow float64 (the
    Laplacian of Gaussian divides by sigma**4) and change nothing a user could see anyway."""
    low, high = SIGMA_RANGE
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        raise KernelError(
            f"{family}: SIGMA must be a number from {low:g} to {high:g}, got {quoted(text)} "
            f"(write {PARAMETRIC_USAGE[family]})"
        )
    return value


def _too_many(family: str, extra: tuple[str, ...]) -> None:
    if extra:
        raise KernelError(f"{family}: too many parameters (write {PARAMETRIC_USAGE[family]})")


def opencv_sigma(size: int) -> float:
    """The sigma OpenCV picks for a Gaussian of ``size`` taps when none is given."""
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def box_kernel(name: str, size: str, *extra: str) -> Kernel:
    """``box:N``: the N x N mean."""
    _too_many("box", extra)
    n = _size("box", size, odd=False)
    return Kernel(name, _box(n), description=f"{n}x{n} box blur (mean)")


def gaussian_kernel(name: str, size: str, sigma: str = "", *extra: str) -> Kernel:
    """``gaussian:N[:SIGMA]``: the outer product of cv2.getGaussianKernel(N, SIGMA).

    Without SIGMA, OpenCV's own choice: its fixed binomial taps up to N = 7, else
    `opencv_sigma`.
    """
    import cv2

    _too_many("gaussian", extra)
    n = _size("gaussian", size, odd=True)
    s = _sigma("gaussian", sigma) if sigma else 0.0
    column = cv2.getGaussianKernel(n, s, cv2.CV_64F)
    shown = f"sigma {s:g}" if sigma else "OpenCV's default sigma"
    return Kernel(name, column @ column.T, description=f"{n}x{n} Gaussian, {shown}")


def log_kernel(name: str, size: str, sigma: str = "", *extra: str) -> Kernel:
    """``log:N[:SIGMA]``: Laplacian of Gaussian, shifted to sum exactly to zero.

    ``(r^2 - 2 s^2) / s^4 * exp(-r^2 / (2 s^2))``: negative at the centre, as the Laplacian
    kernel is. SIGMA defaults as for the Gaussian (`opencv_sigma`).
    """
    _too_many("log", extra)
    n = _size("log", size, odd=True)
    s = _sigma("log", sigma) if sigma else opencv_sigma(n)
    offsets = np.arange(n) - n // 2
    r2 = offsets[:, None] ** 2 + offsets[None, :] ** 2
    with np.errstate(under="ignore"):  # far taps of a narrow LoG are 0, as they should be
        weights = (r2 - 2 * s * s) / s**4 * np.exp(-r2 / (2 * s * s))
    weights -= weights.mean()  # a flat image must give exactly nothing
    return Kernel(name, weights, description=f"{n}x{n} Laplacian of Gaussian, sigma {s:g}")


def motion_kernel(name: str, size: str, angle: str = "0", *extra: str) -> Kernel:
    """``motion:N[:ANGLE]``: a line N pixels long through the centre, normalised to sum 1.

    ANGLE is in degrees counter-clockwise from the horizontal (0 horizontal, 90 vertical).
    Each pixel weighs ``1 - distance`` to the line (anti-aliased, one pixel wide), within
    the line's length.
    """
    _too_many("motion", extra)
    n = _size("motion", size, odd=False)
    degrees = _number("motion", "ANGLE", angle)
    # fmod is exact: a huge angle keeps its true direction instead of losing it to round-off.
    theta = np.deg2rad(math.fmod(degrees, 360.0))
    # Image rows grow downwards, so counter-clockwise means y = -sin.
    dx, dy = np.cos(theta), -np.sin(theta)
    centre = (n - 1) / 2
    y, x = np.mgrid[0:n, 0:n] - centre
    along = x * dx + y * dy
    across = np.abs(-x * dy + y * dx)
    weights = np.clip(1 - across, 0, 1) * np.clip(n / 2 - np.abs(along) + 0.5, 0, 1)
    weights[weights < 1e-9] = 0.0  # round-off of cos/sin, not part of the line
    return Kernel(
        name, weights / weights.sum(), description=f"motion blur, {n} px at {degrees:g} degrees"
    )


MAX_PARAMETRIC_SIZE = 1001
# SIGMA of gaussian: and log:, in pixels. Below 0.001 every kernel is the identity (or its
# Laplacian), above 10000 (ten times the largest kernel) a flat box; beyond these bounds the
# arithmetic of log:N:SIGMA underflows or overflows float64.
SIGMA_RANGE = (1e-3, 1e4)
PARAMETRIC = {
    "box": box_kernel,
    "gaussian": gaussian_kernel,
    "log": log_kernel,
    "motion": motion_kernel,
}
PARAMETRIC_USAGE = {
    "box": "box:N",
    "gaussian": "gaussian:N[:SIGMA], N odd",
    "log": "log:N[:SIGMA], N odd",
    "motion": "motion:N[:ANGLE], ANGLE in degrees from the horizontal",
}


# The shape of a kernel name: a bank name or ``all`` (a letter or ``_``, then letters, digits,
# ``_`` and ``-``), optionally followed by ``:``-separated parameters (``gaussian:5:1.4``,
# ``motion:9:-30``). Nothing that starts with a digit, a sign or a dot: those are numbers.
_KERNEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(?::[^\s,;:]*)*")
# Words that float() reads as numbers, so that an inline matrix may hold them.
_NUMBER_WORDS = frozenset({"nan", "inf", "infinity"})


def is_kernel_name(text: str) -> bool:
    """True for text shaped like a kernel name: a bank name, ``all`` or a parametric name.

    Only the shape is checked, not whether such a kernel exists: ``sobelx`` is a kernel
    name (an unknown one), ``1.5``, ``nan`` and ``edges.txt`` are not.

    Examples
    --------
    >>> [is_kernel_name(t) for t in ("sobel_x", "gaussian:5:1.4", "sobelx", "1", "nan")]
    [True, True, True, False, False]
    """
    text = text.strip()
    return bool(_KERNEL_NAME.fullmatch(text)) and text.lower() not in _NUMBER_WORDS


def split_kernel_list(value: str) -> list[str] | None:
    """The items of ``value`` if it is a comma-separated list of kernel names, else None.

    ``"sobel_x,sobel_y"`` and ``"all, gaussian:5:1.4"`` are lists; ``"1,2,1"`` (an inline
    matrix), ``"sobel_x"`` (one name, no comma) and ``"sobel_x,1"`` (not every item is a
    name) are not. Whether each name exists is not checked here.

    Examples
    --------
    >>> split_kernel_list("sobel_x, gaussian:5:1.4")
    ['sobel_x', 'gaussian:5:1.4']
    >>> split_kernel_list("1,2,1") is None
    True
    """
    if "," not in value:
        return None
    items = [item.strip() for item in value.split(",")]
    return items if all(is_kernel_name(item) for item in items) else None


def expand_kernel_names(value: str) -> list[str]:
    """A ``--kernel`` value as the names it stands for.

    A comma-separated list of kernel names (`split_kernel_list`) is split at its commas, and
    ``all``, alone or in a list, stands for the tutorial's seven kernels. Anything else (one
    name, an inline matrix, a file) stands for itself.

    Examples
    --------
    >>> expand_kernel_names("sobel_x,sobel_y")
    ['sobel_x', 'sobel_y']
    >>> expand_kernel_names("0,-1,0; -1,5,-1; 0,-1,0")
    ['0,-1,0; -1,5,-1; 0,-1,0']
    """
    names = split_kernel_list(value) or [value]
    return [expanded for name in names for expanded in _expand_all(name)]


def _expand_all(name: str) -> list[str]:
    """``all`` stands for the tutorial's seven kernels; any other name for itself."""
    return list(TUTORIAL_BANK) if name.strip().lower() == "all" else [name]


def unknown_kernel_message(name: str) -> str:
    import difflib

    family, colon, parameters = name.lower().partition(":")
    if colon:  # a misspelt parametric family: suggest it with the same parameters
        families = difflib.get_close_matches(family, list(PARAMETRIC), n=2, cutoff=0.5)
        close = [f"{f}:{parameters}" for f in families]
    else:
        candidates = list(BANK) + ["all"]
        close = difflib.get_close_matches(name.lower(), candidates, n=3, cutoff=0.5)
    hint = f" did you mean {' or '.join(close)}?" if close else ""
    return f"unknown kernel {name!r}:{hint} (`convkit kernels` lists all {len(BANK)})"
