"""One image through every kernel and backend: filter, time, compare, post-process, write.

This is the work of ``convkit apply`` for a single image, as a library call that returns an
`ImageReport` and never prints. A batch runs it once per image.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convkit.backends import check_backend_name, get_backend
from convkit.engine import check_fits, convolve
from convkit.imageio import (
    DEFAULT_MAX_PIXELS,
    encode_image,
    encode_npy,
    ensure_folder,
    read_image,
    refuse_overwriting_inputs,
    write_atomic,
)
from convkit.kernels import Kernel
from convkit.padding import Padding
from convkit.postprocess import to_image
from convkit.timing import Timing, agreement_tolerance, max_abs_diff, run_timed

# The naive loop costs about 3 microseconds per pixel per channel on a 2-core machine.
NAIVE_SECONDS_PER_SAMPLE = 3e-6
NAIVE_BUDGET_SECONDS = 10.0
DEFAULT_BACKENDS = ("naive", "filter2d")

# progress(label, done, total)
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ApplySettings:
    """Everything ``apply`` needs besides the image and the kernels."""

    padding: Padding = field(default_factory=Padding)
    backends: tuple[str, ...] | None = None  # None: the defaults, naive left out when slow
    flip: bool = False
    gray: bool = False
    rescale: str = "clip"
    bias: float = 0.0
    activation: str | None = None
    repeat: int = 1
    out_dir: Path = Path("convkit-out")
    compare: bool = True
    max_pixels: int | None = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class BackendRow:
    """One (image, kernel, backend) row of the timing table and the report."""

    image: str
    kernel: str
    kernel_shape: tuple[int, int]
    backend: str
    padding: str
    flip: bool
    runs: int
    median_ms: float
    min_ms: float
    max_abs_diff: float
    output: str | None

    def as_dict(self) -> dict:
        row = dict(self.__dict__)
        row["kernel_shape"] = list(self.kernel_shape)
        return row


@dataclass(frozen=True)
class KernelResult:
    """What one kernel produced on one image."""

    kernel: Kernel
    rows: tuple[BackendRow, ...]
    reference: str
    tolerance: float
    output: Path
    compare: Path | None

    @property
    def agrees(self) -> bool:
        return all(row.max_abs_diff <= self.tolerance for row in self.rows)


@dataclass
class ImageReport:
    """The outcome of `apply_image`."""

    image: Path
    shape: tuple[int, ...]
    backends: tuple[str, ...]
    results: list[KernelResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> list[BackendRow]:
        return [row for result in self.results for row in result.rows]


def safe_name(name: str) -> str:
    """A kernel or stack name made safe for a file name: outside ``[A-Za-z0-9_.-]`` -> ``-``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)


def output_paths(
    image_path: Path, kernel: Kernel, settings: ApplySettings
) -> tuple[Path, Path | None]:
    """The filtered image's path and the comparison PNG's (None with ``compare=False``)."""
    stem = f"{image_path.stem}_{safe_name(kernel.name)}"
    suffix = ".npy" if settings.rescale == "none" else ".png"
    compare = settings.out_dir / f"{stem}_compare.png" if settings.compare else None
    return settings.out_dir / f"{stem}{suffix}", compare


def choose_backends(
    requested: Sequence[str] | None, image_shape: tuple[int, ...], kernel_count: int, repeat: int
) -> tuple[tuple[str, ...], str | None]:
    """The backends to run, and a note when the naive loop was left out of the defaults.

    Backends the user named are always run; the default pair drops ``naive`` when its
    estimated time exceeds `NAIVE_BUDGET_SECONDS`.
    """
    if requested:
        names = tuple(dict.fromkeys(check_backend_name(b) for b in requested))
        return names, None
    samples = int(np.prod(image_shape))
    estimate = samples * NAIVE_SECONDS_PER_SAMPLE * kernel_count * repeat
    if estimate <= NAIVE_BUDGET_SECONDS:
        return DEFAULT_BACKENDS, None
    megapixels = image_shape[0] * image_shape[1] / 1e6
    note = (
        f"naive backend left out: about {estimate:.0f} s on this {megapixels:.1f}-megapixel "
        "image (add --backend naive --backend filter2d to run it anyway)"
    )
    return tuple(b for b in DEFAULT_BACKENDS if b != "naive"), note


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour (or grey) channels, and the alpha channel that is carried through unfiltered."""
    if image.ndim == 3 and image.shape[2] in (2, 4):
        return image[..., :-1], image[..., -1]
    return image, None


def to_gray(image: np.ndarray) -> np.ndarray:
    """Grey with OpenCV's own weights, as the tutorial does; grey images stay as they are."""
    if image.ndim == 2:
        return image
    import cv2

    code = {3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}.get(image.shape[2])
    if code is None:
        return image[..., 0]
    return cv2.cvtColor(image, code)


def attach_alpha(image: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Put the alpha channel back as the last channel."""
    if alpha is None:
        return image
    planes = image if image.ndim == 3 else image[..., np.newaxis]
    return np.concatenate([planes, alpha.astype(image.dtype)[..., np.newaxis]], axis=-1)


def crop_alpha(alpha: np.ndarray | None, kernel: Kernel, padding: Padding) -> np.ndarray | None:
    """Under ``valid`` the output pixel (y, x) sits over input pixel (y + ay, x + ax)."""
    if alpha is None or padding.mode != "valid":
        return alpha
    (kh, kw), (ay, ax) = kernel.shape, kernel.anchor
    return alpha[ay : ay + alpha.shape[0] - kh + 1, ax : ax + alpha.shape[1] - kw + 1]


def prepare_image(
    image_path: Path, settings: ApplySettings
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read the image, convert to grey if asked, and set the alpha channel aside."""
    image = read_image(image_path, settings.max_pixels)
    if settings.gray:
        return to_gray(image), None
    return split_alpha(image)


def apply_image(
    image_path: str | Path,
    kernels: Sequence[Kernel],
    settings: ApplySettings,
    progress: ProgressFn | None = None,
) -> ImageReport:
    """Filter one image with every kernel on every backend and write the outputs.

    The outputs of every kernel are planned, and checked against the input, before anything
    is written. The filtered image comes from the fastest backend that ran; the reference
    for max |diff| is ``naive`` where it ran, else the first backend.
    """
    image_path = Path(image_path)
    planned = [output_paths(image_path, k, settings) for k in kernels]
    refuse_overwriting_inputs([p for pair in planned for p in pair if p], [image_path])
    color, alpha = prepare_image(image_path, settings)
    for kernel in kernels:
        check_fits(color.shape, kernel, settings.padding)
    ensure_folder(settings.out_dir)
    backends, note = choose_backends(settings.backends, color.shape, len(kernels), settings.repeat)
    for backend in backends:
        get_backend(backend)  # import its library now, outside the timed runs
    report = ImageReport(image_path, color.shape, backends, notes=[note] if note else [])
    for kernel, (output, compare) in zip(kernels, planned, strict=True):
        report.results.append(
            _apply_kernel(
                image_path, color, alpha, kernel, backends, settings, output, compare, progress
            )
        )
    return report


def _apply_kernel(
    image_path: Path,
    color: np.ndarray,
    alpha: np.ndarray | None,
    kernel: Kernel,
    backends: tuple[str, ...],
    settings: ApplySettings,
    output: Path,
    compare: Path | None,
    progress: ProgressFn | None,
) -> KernelResult:
    alpha = crop_alpha(alpha, kernel, settings.padding)
    responses: dict[str, np.ndarray] = {}
    timings: dict[str, Timing] = {}
    for backend in backends:
        report = None
        if progress is not None:
            label = f"{kernel.name} on {backend}"

            def report(done: int, total: int, label: str = label) -> None:
                progress(label, done, total)

        responses[backend], timings[backend] = run_timed(
            backend,
            lambda backend=backend, report=report: convolve(
                color,
                kernel,
                settings.padding,
                backend=backend,
                flip=settings.flip,
                progress=report,
            ),
            settings.repeat,
        )
    reference = "naive" if "naive" in responses else backends[0]
    fastest = min(backends, key=lambda b: timings[b].median_ms)
    image_out = _render(responses[fastest], color, alpha, settings)
    write_atomic(
        output, encode_npy(image_out) if settings.rescale == "none" else encode_image(image_out)
    )
    if compare is not None:
        from convkit.compare import comparison_png

        panel_settings = settings if settings.rescale != "none" else _display_settings(settings)
        panels = [
            (
                f"{b}  {timings[b].median_ms:.1f} ms",
                _render(responses[b], color, alpha, panel_settings),
            )
            for b in backends
        ]
        write_atomic(
            compare,
            encode_image(
                comparison_png(
                    original=color,
                    panels=panels,
                    responses=responses,
                    reference=reference,
                    title=_title(kernel, settings),
                )
            ),
        )
    rows = tuple(
        BackendRow(
            image=str(image_path),
            kernel=kernel.name,
            kernel_shape=kernel.shape,
            backend=b,
            padding=settings.padding.mode,
            flip=settings.flip,
            runs=timings[b].runs,
            median_ms=timings[b].median_ms,
            min_ms=timings[b].min_ms,
            max_abs_diff=0.0
            if b == reference
            else max_abs_diff(responses[b], responses[reference]),
            output=str(output) if b == fastest else None,
        )
        for b in backends
    )
    tolerance = agreement_tolerance(kernel.weights, color)
    return KernelResult(kernel, rows, reference, tolerance, output, compare)


def _render(
    response: np.ndarray, color: np.ndarray, alpha: np.ndarray | None, settings: ApplySettings
) -> np.ndarray:
    image = to_image(
        response,
        like=color,
        rescale=settings.rescale,
        bias=settings.bias,
        activation=settings.activation,
    )
    return attach_alpha(image, alpha)


def _display_settings(settings: ApplySettings) -> ApplySettings:
    """Float outputs are shown stretched min..max in the comparison."""
    from dataclasses import replace

    return replace(settings, rescale="minmax")


def _title(kernel: Kernel, settings: ApplySettings) -> str:
    kh, kw = kernel.shape
    operation = "convolution (flipped)" if settings.flip else "correlation"
    return (
        f"{kernel.name} ({kh}x{kw})  |  padding {settings.padding.mode}  |  {operation}"
        f"  |  rescale {settings.rescale}"
    )
