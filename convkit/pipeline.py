"""One image through every kernel and backend: filter, time, compare, post-process, write.

This is the work of ``convkit apply`` for a single image, as a library call that returns an
`ImageReport` and never prints. A batch runs it once per image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from convkit.backends import KNOWN_BACKENDS, check_backend_name, get_backend
from convkit.engine import check_fits, convolve_exact, working_dtype
from convkit.imageio import (
    DEFAULT_MAX_PIXELS,
    ImageSource,
    encode_image,
    encode_npy,
    ensure_folder,
    write_atomic,
)
from convkit.kernels import Kernel, safe_name
from convkit.padding import Padding, output_shape, pad_image
from convkit.plan import OutputPlan, image_stems
from convkit.postprocess import output_dtype, to_image
from convkit.resources import check_memory, naive_seconds
from convkit.stack import Stack, run_stack
from convkit.timing import (
    Timing,
    agreement_factor,
    agreement_tolerance,
    max_abs_diff,
    run_timed,
)

NAIVE_BUDGET_SECONDS = 10.0
DEFAULT_BACKENDS = ("naive", "filter2d")
BATCH_BACKEND = "auto"

# progress(label, done, total)
ProgressFn = Callable[[str, int, int], None]


class ApplySettings(NamedTuple):
    """Everything ``apply`` needs besides the image and the kernels."""

    padding: Padding = Padding()
    backends: tuple[str, ...] | None = None  # None: the defaults, naive left out when slow
    flip: bool = False
    gray: bool = False
    rescale: str = "clip"
    bias: float = 0.0
    activation: str | None = None
    repeat: int = 1
    out_dir: Path | None = Path("convkit-out")  # None: the filtered image goes to stdout
    compare: bool = True
    precision: str = "float64"
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    max_memory: int | None = None  # bytes; None: no limit


class BackendRow(NamedTuple):
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
        row = self._asdict()
        row["kernel_shape"] = list(self.kernel_shape)
        return row


class KernelResult(NamedTuple):
    """What one kernel produced on one image."""

    kernel: Kernel
    rows: tuple[BackendRow, ...]
    reference: str
    tolerance: float
    output: Path | None
    compare: Path | None

    @property
    def agrees(self) -> bool:
        return all(row.max_abs_diff <= self.tolerance for row in self.rows)


class ImageReport:
    """The outcome of `apply_image`, filled in kernel by kernel."""

    def __init__(
        self,
        image: str,
        shape: tuple[int, ...],
        backends: tuple[str, ...],
        notes: list[str] | None = None,
    ) -> None:
        self.image = image
        self.shape = shape
        self.backends = backends
        self.results: list[KernelResult] = []
        self.notes: list[str] = notes or []
        self.stdout_bytes: bytes | None = None  # the encoded image, when it goes to stdout

    @property
    def rows(self) -> list[BackendRow]:
        return [row for result in self.results for row in result.rows]


# One (filtered image, comparison PNG) pair per kernel; None where that output is not written.
OutputPair = tuple[Path | None, Path | None]


def kernel_sources(kernels: Sequence[Kernel | Stack]) -> list[Path]:
    """The files the kernels were read from (kernel files, ``@file``), stacks' steps included."""
    paths: list[Path] = []
    for kernel in kernels:
        if isinstance(kernel, Stack):
            paths += [k.source for k in kernel.kernels if getattr(k, "source", None)]
        elif getattr(kernel, "source", None) is not None:
            paths.append(kernel.source)
    return paths


def plan_outputs(
    images: Sequence[ImageSource],
    kernels: Sequence[Kernel | Stack],
    settings: ApplySettings,
    reads: Sequence[Path] = (),
) -> tuple[OutputPlan, list[list[OutputPair]]]:
    """Every output of a run, named by `convkit.plan`'s rule and checked against its inputs
    (the images, the kernels' files and ``reads``) before anything is written.

    Returns the plan, to claim further outputs on (a report), and per image one
    (filtered image, comparison PNG) pair per kernel.

    Raises
    ------
    UsageError
        If an output would replace an input, or is a folder.
    """
    inputs = [i.path for i in images if i.path is not None] + kernel_sources(kernels)
    plan = OutputPlan([*inputs, *reads])
    if settings.out_dir is None:  # the one filtered image goes to standard output
        return plan, [[(None, None)] * len(kernels) for _ in images]
    folders = [settings.out_dir / image.subfolder for image in images]
    names = [(i.stem, i.path.name if i.path else i.stem) for i in images]
    stems = image_stems([(f, *n) for f, n in zip(folders, names, strict=True)])
    suffix = ".npy" if settings.rescale == "none" else ".png"
    suffixes = [suffix, "_compare.png"] if settings.compare else [suffix]
    pairs = []
    for folder, stem in zip(folders, stems, strict=True):
        named = [plan.claim_name(folder, f"{stem}_{safe_name(k.name)}", suffixes) for k in kernels]
        pairs.append([(paths[0], paths[1] if settings.compare else None) for paths in named])
    return plan, pairs


def choose_backends(
    requested: Sequence[str] | None,
    image_shape: tuple[int, ...],
    kernels: Sequence[Kernel | Stack],
    repeat: int,
    image_count: int = 1,
) -> tuple[tuple[str, ...], str | None]:
    """The backends to run, and a note when the naive loop was left out of the defaults.

    Backends the user named are always run. By default a single image runs the naive loop
    beside filter2d unless its estimated time (pixels x kernel taps, `naive_seconds`)
    exceeds `NAIVE_BUDGET_SECONDS`; a batch of several images runs `auto` alone (the naive
    loop would cost seconds per image).
    """
    if requested:
        names = tuple(dict.fromkeys(check_backend_name(b) for b in requested))
        return names, None
    fast = tuple(b for b in DEFAULT_BACKENDS if b != "naive")
    force = "add --backend naive --backend filter2d to run it anyway"
    if image_count > 1:  # DESIGN §4: batches run `auto`, the fastest for each kernel
        note = f"batch of {image_count} images: backend auto, naive left out ({force})"
        return (BATCH_BACKEND,), note
    samples = int(np.prod(image_shape))
    layers = [k for kernel in kernels for k in _kernels_of(kernel)]
    estimate = repeat * sum(naive_seconds(samples, k.shape) for k in layers)
    if estimate <= NAIVE_BUDGET_SECONDS:
        return DEFAULT_BACKENDS, None
    megapixels = image_shape[0] * image_shape[1] / 1e6
    return fast, (
        f"naive backend left out: about {_duration(estimate)} for {len(layers)} "
        f"kernel{'s' * (len(layers) > 1)} on this {megapixels:.2g}-megapixel image ({force})"
    )


def _kernels_of(kernel: Kernel | Stack) -> list[Kernel]:
    return kernel.kernels if isinstance(kernel, Stack) else [kernel]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.0f} hours"


def check_resources(
    color: np.ndarray,
    image_item: int,
    kernels: Sequence[Kernel | Stack],
    backends: tuple[str, ...],
    settings: ApplySettings,
) -> None:
    """Refuse, before any work, a kernel whose estimated peak memory on some backend exceeds
    ``settings.max_memory`` (`convkit.resources`), streamed or whole as it will run."""
    item = 4 if settings.precision == "float32" else 8
    valid = settings.padding.mode == "valid"
    for kernel in kernels:
        strip_rows = None
        if can_stream(color, kernel, backends, settings):
            strip_rows = strip_height(color.shape)
        for layer in _kernels_of(kernel):
            check_memory(
                backends, color.shape, image_item, layer.name, layer.shape, valid,
                settings.max_memory, item, strip_rows,
            )  # fmt: skip


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


def crop_alpha(
    alpha: np.ndarray | None, kernel: Kernel | Stack, padding: Padding, flip: bool = False
) -> np.ndarray | None:
    """Under ``valid`` the output pixel (y, x) sits over input pixel (y + ay, x + ax)."""
    if alpha is None or padding.mode != "valid":
        return alpha
    (kh, kw), (ay, ax) = kernel.shape, kernel.anchor
    if flip:
        ay, ax = kh - 1 - ay, kw - 1 - ax
    return alpha[ay : ay + alpha.shape[0] - kh + 1, ax : ax + alpha.shape[1] - kw + 1]


def prepare_image(
    image: np.ndarray, settings: ApplySettings
) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert to grey if asked, and set the alpha channel aside."""
    if settings.gray:
        return to_gray(image), None
    return split_alpha(image)


def apply_image(
    source: ImageSource | str | Path,
    kernels: Sequence[Kernel | Stack],
    settings: ApplySettings,
    progress: ProgressFn | None = None,
    image_count: int = 1,
    outputs: Sequence[OutputPair] | None = None,
) -> ImageReport:
    """Filter one image with every kernel on every backend and write the outputs.

    The outputs of every kernel are planned (`plan_outputs`), and checked against the inputs,
    before anything is written; a batch passes the pairs it planned for the whole run as
    ``outputs``. The filtered image comes from the fastest backend that ran; the reference
    for max |diff| is ``naive`` where it ran, else the first backend. With
    ``settings.out_dir=None`` the filtered image is returned encoded in ``stdout_bytes``.
    ``image_count`` is the size of the batch this image belongs to (for the naive estimate).

    Raises
    ------
    UsageError
        If an output would replace an input, a kernel does not fit under ``valid``, or a
        backend's estimated memory exceeds ``settings.max_memory``.
    ConvkitError
        If the image cannot be read or an output cannot be written.
    """
    if not isinstance(source, ImageSource):
        source = ImageSource.from_path(source)
    if outputs is None:
        outputs = plan_outputs([source], kernels, settings)[1][0]
    image = source.read(settings.max_pixels)
    color, alpha = prepare_image(image, settings)
    for kernel in kernels:
        check_fits(color.shape, kernel, settings.padding)  # a stack by its receptive field
    backends, note = choose_backends(
        settings.backends, color.shape, kernels, settings.repeat, image_count
    )
    check_resources(color, image.dtype.itemsize, kernels, backends, settings)
    if settings.out_dir is not None:
        ensure_folder(settings.out_dir / source.subfolder)
    for backend in backends:
        get_backend(backend)  # import its library now, outside the timed runs
    report = ImageReport(source.name, color.shape, backends, notes=[note] if note else [])
    for kernel, (output, compare) in zip(kernels, outputs, strict=True):
        alpha_k = crop_alpha(alpha, kernel, settings.padding, settings.flip)
        if can_stream(color, kernel, backends, settings):
            image_out, timing = run_timed(
                backends[0], lambda k=kernel: stream(color, k, backends[0], settings),
                settings.repeat,
            )  # fmt: skip
            responses, timings, layers = {}, {backends[0]: timing}, {}
            image_out = attach_alpha(image_out, alpha_k)
        else:
            responses, timings, layers = _run_backends(color, kernel, backends, settings, progress)
        reference = "naive" if "naive" in backends else backends[0]
        fastest = min(backends, key=lambda b: timings[b].median_ms)
        if responses:
            image_out = _render(responses[fastest], color, alpha_k, settings)
        encoded = _encode(image_out, settings)
        if output is None:
            report.stdout_bytes = encoded
        else:
            write_atomic(output, encoded)
        if compare is not None:
            write_atomic(
                compare,
                _comparison(
                    color,
                    alpha_k,
                    kernel,
                    responses,
                    timings,
                    reference,
                    settings,
                    layers[reference],
                ),  # fmt: skip
            )
        rows = tuple(
            BackendRow(
                image=source.name,
                kernel=kernel.name,
                kernel_shape=kernel.shape,
                backend=b,
                padding=settings.padding.mode,
                flip=settings.flip,
                runs=timings[b].runs,
                median_ms=timings[b].median_ms,
                min_ms=timings[b].min_ms,
                max_abs_diff=0.0
                if b == reference or not responses
                else max_abs_diff(responses[b], responses[reference]),
                output=str(output) if b == fastest and output is not None else None,
            )
            for b in backends
        )
        direct = all(KNOWN_BACKENDS[b].direct for b in backends)
        factor = agreement_factor(direct, settings.precision)
        tolerance = agreement_tolerance(_abs_sum(kernel), color, factor)
        report.results.append(KernelResult(kernel, rows, reference, tolerance, output, compare))
    return report


# Rows of float response held at once when streaming: about this many bytes.
STRIP_BYTES = 8 * 2**20


def can_stream(
    color: np.ndarray, kernel: Kernel | Stack, backends: tuple[str, ...], settings: ApplySettings
) -> bool:
    """Whether the image can be filtered in strips of rows, never holding a whole float copy.

    That is when nothing needs the whole response: one fast backend, no comparison, a
    per-pixel rescale policy, one kernel, and a border constant the image's type can hold.
    """
    if len(backends) != 1 or backends[0] == "naive" or settings.compare:
        return False
    if not isinstance(kernel, Kernel) or settings.rescale not in ("clip", "abs"):
        return False
    if settings.padding.mode == "constant" and color.dtype.kind in "ui":
        info = np.iinfo(color.dtype)
        cval = settings.padding.cval
        return cval == round(cval) and info.min <= cval <= info.max
    return True


def strip_height(shape: tuple[int, ...], strip_bytes: int = STRIP_BYTES) -> int:
    """Rows of output per strip: about ``strip_bytes`` of float64 response."""
    channels = shape[2] if len(shape) == 3 else 1
    return max(1, strip_bytes // (shape[1] * channels * 8))


def saturates_exactly(
    color: np.ndarray, kernel: Kernel, backend: str, settings: ApplySettings
) -> bool:
    """Whether OpenCV can write the clipped image in one pass, bit for bit what the float
    path gives: integer sums that float32 holds exactly, clipped, nothing in between."""
    plain = settings.rescale == "clip" and not settings.bias and settings.activation is None
    small = color.ndim == 2 or color.shape[2] <= 4
    exact = working_dtype(color.dtype, kernel.weights, settings.padding.cval, kernel.offset)
    return (
        backend in ("filter2d", "auto")
        and plain
        and small
        and settings.precision == "float64"
        and exact == np.float32
    )


def stream(
    color: np.ndarray,
    kernel: Kernel,
    backend: str,
    settings: ApplySettings,
    strip_bytes: int = STRIP_BYTES,
) -> np.ndarray:
    """Filter and post-process in strips of rows: the output image, without a whole float copy.

    The image is padded once (in its own type), then each strip of output rows is the
    ``valid`` correlation of its rows plus a halo of kH - 1, turned into pixels at once.
    Peak memory: about the image, its padded copy, the output and one strip of floats.
    """
    if settings.flip:
        kernel = kernel.flipped()
    if saturates_exactly(color, kernel, backend, settings):
        from convkit.backends.filter2d import correlate_saturated

        return correlate_saturated(color, kernel.weights, kernel.anchor, settings.padding)
    padded = pad_image(color, kernel.shape, kernel.anchor, settings.padding)
    height, width = output_shape(color.shape, kernel.shape, settings.padding.mode)
    out = np.empty((height, width) + color.shape[2:], dtype=output_dtype(color))
    rows = strip_height((height, width) + color.shape[2:], strip_bytes)
    halo = kernel.shape[0] - 1
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        response = convolve_exact(padded[top : bottom + halo], kernel, "valid", backend=backend,
                                  precision=settings.precision)  # fmt: skip
        out[top:bottom] = to_image(response, color, settings.rescale, settings.bias,
                                   settings.activation)  # fmt: skip
    return out


def _run_backends(
    color: np.ndarray,
    kernel: Kernel | Stack,
    backends: tuple[str, ...],
    settings: ApplySettings,
    progress: ProgressFn | None,
) -> tuple[dict[str, np.ndarray], dict[str, Timing], dict[str, list[np.ndarray]]]:
    """Each backend's final response and timings; for a stack, every step's response too."""
    responses: dict[str, np.ndarray] = {}
    timings: dict[str, Timing] = {}
    layers: dict[str, list[np.ndarray]] = {}
    for backend in backends:
        report = None
        if progress is not None:

            def report(done: int, total: int, label: str = f"{kernel.name} on {backend}") -> None:
                progress(label, done, total)

        def work(backend: str = backend, report=report) -> list[np.ndarray]:
            if isinstance(kernel, Stack):
                return run_stack(
                    color, kernel, settings.padding, backend, settings.flip, report,
                    settings.precision,
                )  # fmt: skip
            return [
                convolve_exact(color, kernel, settings.padding, backend=backend,
                               flip=settings.flip, progress=report,
                               precision=settings.precision)
            ]  # fmt: skip

        layers[backend], timings[backend] = run_timed(backend, work, settings.repeat)
        responses[backend] = layers[backend][-1]
    return responses, timings, layers


def _abs_sum(kernel: Kernel | Stack) -> float:
    return kernel.abs_sum if isinstance(kernel, Stack) else float(np.abs(kernel.weights).sum())


def _encode(image: np.ndarray, settings: ApplySettings) -> bytes:
    return encode_npy(image) if settings.rescale == "none" else encode_image(image)


def _comparison(
    color: np.ndarray,
    alpha: np.ndarray | None,
    kernel: Kernel,
    responses: dict[str, np.ndarray],
    timings: dict[str, Timing],
    reference: str,
    settings: ApplySettings,
    layers: list[np.ndarray],
) -> bytes:
    """The comparison PNG, encoded; float outputs are shown stretched min..max. A stack's
    intermediate feature maps come first, each labelled with its step."""
    from convkit.compare import comparison_png

    shown = settings if settings.rescale != "none" else settings._replace(rescale="minmax")
    panels = []
    if isinstance(kernel, Stack):
        for i, (step, layer) in enumerate(zip(kernel.steps[:-1], layers[:-1], strict=True)):
            label = f"{i + 1}. {step if isinstance(step, str) else step.name}"
            panels.append((label, _render(layer, color, None, shown)))
    panels += [
        (f"{b}  {timings[b].median_ms:.1f} ms", _render(responses[b], color, alpha, shown))
        for b in responses
    ]
    drawn = kernel if isinstance(kernel, Kernel) else None  # a stack's steps label its panels
    picture = comparison_png(
        color, panels, responses, reference, _title(kernel, settings), kernel=drawn
    )
    return encode_image(picture)


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


def _title(kernel: Kernel | Stack, settings: ApplySettings) -> str:
    kh, kw = kernel.shape
    operation = "convolution (flipped)" if settings.flip else "correlation"
    return (
        f"{kernel.name} ({kh}x{kw})  |  padding {settings.padding.mode}  |  {operation}"
        f"  |  rescale {settings.rescale}"
    )
