"""Kernels: the `Kernel` type, the built-in bank, and lookup by name.

Every kernel here is *correlated* with the image (as cv2.filter2D does); ``flip`` in
`convkit.convolve` turns that into true convolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convkit.errors import KernelError


@dataclass(frozen=True, eq=False)
class Kernel:
    """A named 2-D array of weights with an anchor.

    Parameters
    ----------
    name : str
        The name used in output file names and tables.
    weights : ndarray
        A 2-D float64 array, stored read-only.
    anchor : (int, int), optional
        The (row, column) of the weight that sits on the output pixel. Defaults to
        OpenCV's ``(kH // 2, kW // 2)``, also for even and rectangular kernels.
    description : str
        One line for ``convkit kernels``.
    offset : float
        Added to the response after filtering (libvips ``.mat`` files carry one).
    """

    name: str
    weights: np.ndarray
    anchor: tuple[int, int] | None = None
    description: str = ""
    offset: float = 0.0

    def __post_init__(self) -> None:
        weights = np.array(self.weights, dtype=np.float64)
        if weights.ndim != 2 or weights.size == 0:
            raise KernelError(
                f"kernel {self.name!r} must be a non-empty 2-D matrix, got shape {weights.shape}"
            )
        if not np.isfinite(weights).all():
            raise KernelError(f"kernel {self.name!r} has NaN or infinite weights")
        weights.setflags(write=False)
        object.__setattr__(self, "weights", weights)
        kh, kw = weights.shape
        anchor = (kh // 2, kw // 2) if self.anchor is None else tuple(int(a) for a in self.anchor)
        if not (0 <= anchor[0] < kh and 0 <= anchor[1] < kw):
            raise KernelError(
                f"kernel {self.name!r}: anchor {anchor} lies outside its {kh}x{kw} weights"
            )
        object.__setattr__(self, "anchor", anchor)

    @property
    def shape(self) -> tuple[int, int]:
        return self.weights.shape

    @property
    def total(self) -> float:
        """The sum of the weights."""
        return float(self.weights.sum())

    def flipped(self) -> Kernel:
        """The kernel rotated by 180 degrees, anchor included: correlating with it convolves."""
        kh, kw = self.shape
        ay, ax = self.anchor
        return self._replace(weights=self.weights[::-1, ::-1], anchor=(kh - 1 - ay, kw - 1 - ax))

    def normalized(self) -> Kernel:
        """The kernel divided by its sum; unchanged when the sum is 0 (edge detectors)."""
        total = self.weights.sum()
        if total == 0:
            return self
        return self._replace(weights=self.weights / total)

    def scaled(self, factor: float) -> Kernel:
        """The kernel multiplied by ``factor``."""
        return self._replace(weights=self.weights * factor)

    def renamed(self, name: str) -> Kernel:
        return self._replace(name=name)

    def _replace(self, **changes) -> Kernel:
        values = {
            "name": self.name,
            "weights": self.weights,
            "anchor": self.anchor,
            "description": self.description,
            "offset": self.offset,
        }
        values.update(changes)
        return Kernel(**values)


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


def kernel_names() -> list[str]:
    """The names of the built-in bank, in the order they are listed."""
    return list(BANK)


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
    key = name.strip().lower().replace("-", "_")
    if key in BANK:
        return BANK[key]
    raise KernelError(unknown_kernel_message(name))


def expand_kernel_names(name: str) -> list[str]:
    """``all`` stands for the tutorial's seven kernels; any other name for itself."""
    return list(TUTORIAL_BANK) if name.strip().lower() == "all" else [name]


def unknown_kernel_message(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name.lower(), list(BANK) + ["all"], n=3, cutoff=0.5)
    hint = f" did you mean {' or '.join(close)}?" if close else ""
    return f"unknown kernel {name!r}:{hint} (`convkit kernels` lists all {len(BANK)})"
