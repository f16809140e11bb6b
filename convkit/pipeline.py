"""One image through every kernel and backend: filter, time, compare, post-process, write.

This is the work of ``convkit apply`` for a single image, as a library call that returns an
`ImageReport` and never prints. A batch runs it once per image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from convkit.backends import (
    KNOWN_BACKENDS,
    check_backend_name,
    get_backend,
    reference_among,
    reference_backend,
)
from convkit.engine import (
    DEFAULT_BACKEND,
    check_fits,
    convolve,
    convolve_to_image,
    crop_alpha,
    strip_rows,
)
from convkit.errors import UsageError
from convkit.imageio import (
    DEFAULT_MAX_PIXELS,
    OUTPUT_SUFFIXES,
    ImageInfo,
    ImageSource,
    check_output_format,
    encode_float_tiff,
    encode_image,
    encode_npy,
    ensure_folder,
    write_atomic,
)
from convkit.kernels import Kernel, safe_name
from convkit.padding import Padding
from convkit.plan import OutputPlan, image_stems
from convkit.postprocess import attach_alpha, split_alpha, to_image
from convkit.resources import check_kernel_memory, check_memory
from convkit.stack import Stack, run_stack
from convkit.timing import (
    Timing,
    agreement_factor,
    agreement_tolerance,
    max_abs_diff,
    run_timed,
)

# By default the reference runs beside the fast backend unless its estimate exceeds this.
REFERENCE_BUDGET_SECONDS = 10.0
# DESIGN §4: batches run `auto`, the fastest for each kernel.
BATCH_BACKEND = "auto"

# progress(label, done, total)
ProgressFn = Callable[[str, int, int], None]


class ApplySettings(NamedTuple):
    """Everything ``apply`` needs besides the image and the kernels."""

    padding: Padding = Padding()
    backends: tuple[str, ...] | None = None  # None: the defaults, the reference left out when slow
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
    format: str | None = None  # png, jpg, tif or webp; None: png (.npy under rescale none)
    quality: int | None = None  # for jpg and webp
    auto_orient: bool = True  # turn photos upright by their EXIF orientation


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
    # Where the backend ran on a crop only (the default reference): "WxH+X+Y", as
    # ImageMagick writes a geometry; its times are then extrapolated to the whole image.
    crop: str | None = None

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
        self.alpha = False  # whether the input had an alpha channel (carried through)

    @property
    def readable_reference(self) -> str | None:
        """The registry's readable reference backend, where it ran: the speed-up column's base."""
        return reference_among(self.backends)

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


def output_suffix(settings: ApplySettings) -> str:
    """The filtered image's suffix: the ``--format``'s, or ``.npy`` for a float response
    without one."""
    if settings.format is None:
        return ".npy" if settings.rescale == "none" else ".png"
    return OUTPUT_SUFFIXES[settings.format]


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
    from convkit.tiled import tiled_suffix, tiles_needed

    inputs = [i.path for i in images if i.path is not None] + kernel_sources(kernels)
    plan = OutputPlan([*inputs, *reads])
    for layer in (k for kernel in kernels for k in _kernels_of(kernel)):
        check_kernel_memory(
            settings.backends or (DEFAULT_BACKEND,), layer.name, layer.shape,
            settings.padding.mode == "valid", settings.max_memory,
        )  # fmt: skip
    # From the headers: which images run in tiles (TIFF or Zarr beyond --max-memory), and
    # a usage error now for any other image beyond it.
    plan.tiled = [
        i.path is not None and tiles_needed(i.path, kernels, settings, len(images)) for i in images
    ]
    if settings.out_dir is None:  # the one filtered image goes to standard output
        if any(plan.tiled):
            raise UsageError("--out - takes an image filtered in memory, not one in tiles")
        return plan, [[(None, None)] * len(kernels) for _ in images]
    folders = [settings.out_dir / image.subfolder for image in images]
    names = [(i.stem, i.path.name if i.path else i.stem) for i in images]
    stems = image_stems([(f, *n) for f, n in zip(folders, names, strict=True)])
    pairs = []
    for folder, stem, tiled in zip(folders, stems, plan.tiled, strict=True):
        suffix = tiled_suffix() if tiled else output_suffix(settings)
        suffixes = [suffix, "_compare.png"] if settings.compare else [suffix]
        named = [plan.claim_name(folder, f"{stem}_{safe_name(k.name)}", suffixes) for k in kernels]
        pairs.append([(paths[0], paths[1] if settings.compare else None) for paths in named])
    return plan, pairs


def default_backends() -> tuple[str, str]:
    """What ``apply`` runs on a single image by default: the registry's readable reference
    and the engine's default backend."""
    return reference_backend(), DEFAULT_BACKEND


def choose_backends(
    requested: Sequence[str] | None,
    image_shape: tuple[int, ...],
    kernels: Sequence[Kernel | Stack],
    repeat: int,
    image_count: int = 1,
    crop_side: int | None = None,
) -> tuple[tuple[str, ...], str | None]:
    """The backends to run, and a note when the reference was left out of the defaults.

    Backends the user named are always run. By default a single image runs the reference
    beside the default backend (`default_backends`) — on a crop of ``crop_side`` pixels
    square when that is given (`reference_crop_side`) — unless its estimated time (its
    registry cost: pixels x kernel taps) exceeds `REFERENCE_BUDGET_SECONDS`; a batch of
    several images runs `BATCH_BACKEND` alone (the reference would cost seconds per image).
    """
    if requested:
        names = tuple(dict.fromkeys(check_backend_name(b) for b in requested))
        return names, None
    reference, fast = default_backends()
    force = f"add --backend {reference} --backend {fast} to run it anyway"
    if image_count > 1:
        note = f"batch of {image_count} images: backend {BATCH_BACKEND}, {reference} left out"
        return (BATCH_BACKEND,), f"{note} ({force})"
    if crop_side is not None:
        crop = (min(crop_side, image_shape[0]), min(crop_side, image_shape[1]))
        image_shape = crop + tuple(image_shape[2:])
    samples = int(np.prod(image_shape))
    layers = [k for kernel in kernels for k in _kernels_of(kernel)]
    cost = KNOWN_BACKENDS[reference].cost
    estimate = 0.0 if cost is None else repeat * sum(cost.seconds(samples, k.shape) for k in layers)
    if estimate <= REFERENCE_BUDGET_SECONDS:
        return (reference, fast), None
    if crop_side is not None:
        where = f"a {image_shape[1]}x{image_shape[0]} crop"
    else:
        where = f"this {image_shape[0] * image_shape[1] / 1e6:.2g}-megapixel image"
    return (fast,), (
        f"{reference} backend left out: about {_duration(estimate)} for {len(layers)} "
        f"kernel{'s' * (len(layers) > 1)} on {where} ({force})"
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
        rows = streamed_rows(color, kernel, backends, settings)
        for layer in _kernels_of(kernel):
            check_memory(
                backends, color.shape, image_item, layer.name, layer.shape, valid,
                settings.max_memory, item, rows,
            )  # fmt: skip


def streamed_rows(
    color: np.ndarray, kernel: Kernel | Stack, backends: tuple[str, ...], settings: ApplySettings
) -> int | None:
    """The rows per strip with which a kernel's output image is streamed
    (`convkit.engine.convolve_to_image`), or None where the whole response is kept.

    Streaming needs nothing to want the whole response (one backend, no comparison picture,
    one kernel rather than a stack) and the engine to stream the case (`strip_rows`).
    """
    if len(backends) != 1 or settings.compare or not isinstance(kernel, Kernel):
        return None
    return strip_rows(color, kernel, settings.padding, backends[0], settings.rescale)


def to_gray(image: np.ndarray) -> np.ndarray:
    """Grey with OpenCV's own weights, as the tutorial does; grey images stay as they are."""
    if image.ndim == 2:
        return image
    import cv2

    code = {3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}.get(image.shape[2])
    if code is None:
        return image[..., 0]
    return cv2.cvtColor(image, code)


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
    for max |diff| is the registry's readable reference where it ran, else the first
    backend. With ``settings.out_dir=None`` the filtered image is returned encoded in
    ``stdout_bytes``. ``image_count`` is the size of the batch this image belongs to (for
    the reference's estimate).

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
    if source.path is not None:
        from convkit.tiled import apply_tiled, tiles_needed

        if tiles_needed(source.path, kernels, settings, image_count):  # from the header
            return apply_tiled(source.path, kernels, settings, outputs, progress, image_count)
    image, info = source.read_with_info(settings.max_pixels, auto_orient=settings.auto_orient)
    _check_format(image, source.name, settings)
    color, alpha = prepare_image(image, settings)
    for kernel in kernels:
        check_fits(color.shape, kernel, settings.padding)  # a stack by its receptive field
    crop_side = reference_crop_side(settings.backends, color.shape, kernels, image_count)
    backends, note = choose_backends(
        settings.backends, color.shape, kernels, settings.repeat, image_count, crop_side
    )
    check_resources(color, image.dtype.itemsize, kernels, backends, settings)
    if settings.out_dir is not None:
        ensure_folder(settings.out_dir / source.subfolder)
    for backend in backends:
        get_backend(backend)  # import its library now, outside the timed runs
    notes = [note] if note else []
    if info.frames > 1:
        notes.append(f"{source.name} holds {info.frames} frames: only the first was filtered")
    report = ImageReport(source.name, color.shape, backends, notes=notes)
    report.alpha = alpha is not None
    for kernel, (output, compare) in zip(kernels, outputs, strict=True):
        result = _apply_kernel(
            source.name, color, alpha, kernel, backends, settings, progress, crop_side
        )
        encoded = _encode(result.image, settings, info)
        if output is None:
            report.stdout_bytes = encoded
        else:
            write_atomic(output, encoded)
        if compare is not None:
            picture = _comparison(color, alpha, kernel, result, settings)
            write_atomic(compare, encode_image(picture, info=info))
        rows = tuple(
            row._replace(output=str(output)) if row.backend == result.fastest and output else row
            for row in result.rows
        )
        factor = agreement_factor(backends, settings.precision)
        tolerance = agreement_tolerance(_abs_sum(kernel), color, factor)
        report.results.append(
            KernelResult(kernel, rows, result.reference, tolerance, output, compare)
        )
    return report


# By default the reference runs on a crop this large of an image larger than it.
REFERENCE_CROP_SIDE = 256


def reference_crop_side(
    requested: Sequence[str] | None,
    image_shape: tuple[int, ...],
    kernels: Sequence[Kernel | Stack],
    image_count: int = 1,
) -> int | None:
    """The side of the crop the default reference runs on, or None where it runs on
    the whole image (or not at all): the user named backends, a batch, an image no larger
    than the crop, or a stack (whose inner layers need the whole image's borders)."""
    if requested or image_count > 1 or any(isinstance(k, Stack) for k in kernels):
        return None
    height, width = image_shape[:2]
    return REFERENCE_CROP_SIDE if max(height, width) > REFERENCE_CROP_SIDE else None


class KernelRun(NamedTuple):
    """One kernel through every backend: the image to write and what the table shows."""

    image: np.ndarray  # the output image (alpha attached), or the float response for `none`
    rows: tuple[BackendRow, ...]
    reference: str
    fastest: str
    responses: dict[str, np.ndarray]  # whole-image responses ({} when streamed)
    layers: list[np.ndarray]  # a stack's step responses, on the reference backend
    timings: dict[str, Timing]
    crop: ReferenceCrop | None = None


class ReferenceCrop(NamedTuple):
    """The reference backend's response on one region of the image."""

    backend: str
    region: tuple[int, int, int, int]  # y, x, height, width
    response: np.ndarray

    @property
    def geometry(self) -> str:
        y, x, height, width = self.region
        return f"{width}x{height}+{x}+{y}"

    def of(self, response: np.ndarray) -> np.ndarray:
        """The same region of a whole-image response."""
        y, x, height, width = self.region
        return response[y : y + height, x : x + width]


def _apply_kernel(
    name: str,
    color: np.ndarray,
    alpha: np.ndarray | None,
    kernel: Kernel | Stack,
    backends: tuple[str, ...],
    settings: ApplySettings,
    progress: ProgressFn | None,
    crop_side: int | None,
) -> KernelRun:
    """Run one kernel on every backend (the reference on a crop when ``crop_side`` is set)."""
    alpha = crop_alpha(alpha, kernel, settings.padding, settings.flip)
    readable = reference_among(backends)
    on_crop = readable if crop_side else None
    if streamed_rows(color, kernel, backends, settings) is not None:
        image, timing = run_timed(
            backends[0], lambda: _stream(color, kernel, backends[0], settings), settings.repeat
        )
        responses, timings, layers = {}, {backends[0]: timing}, {backends[0]: []}
        image = attach_alpha(image, alpha)
    else:
        whole = [b for b in backends if b != on_crop]
        responses, timings, layers = _run_backends(color, kernel, whole, settings, progress)
    fastest = min(responses or timings, key=lambda b: timings[b].median_ms)
    crop = None
    if on_crop is not None:
        crop, timings[on_crop] = _reference_on_crop(
            color, kernel, on_crop, responses[fastest], crop_side, settings, progress
        )
        layers[on_crop] = [crop.response]
    if responses:
        image = _render(responses[fastest], color, alpha, settings)
    reference = readable or backends[0]

    def difference(backend: str) -> float:
        if backend == reference or not responses:
            return 0.0
        if crop is not None:
            return max_abs_diff(crop.of(responses[backend]), crop.response)
        return max_abs_diff(responses[backend], responses[reference])

    rows = tuple(
        BackendRow(
            image=name,
            kernel=kernel.name,
            kernel_shape=kernel.shape,
            backend=b,
            padding=settings.padding.mode,
            flip=settings.flip,
            runs=timings[b].runs,
            median_ms=timings[b].median_ms,
            min_ms=timings[b].min_ms,
            max_abs_diff=difference(b),
            output=None,
            crop=crop.geometry if crop is not None and b == on_crop else None,
        )  # fmt: skip
        for b in backends
    )
    return KernelRun(image, rows, reference, fastest, responses, layers[reference], timings, crop)


def _stream(color: np.ndarray, kernel: Kernel, backend: str, settings: ApplySettings) -> np.ndarray:
    """The output image straight from the engine, in strips (`streamed_rows`)."""
    return convolve_to_image(
        color, kernel, padding=settings.padding, backend=backend, flip=settings.flip,
        precision=settings.precision, rescale=settings.rescale, bias=settings.bias,
        activation=settings.activation,
    )  # fmt: skip


def _reference_on_crop(
    color: np.ndarray,
    kernel: Kernel,
    backend: str,
    response: np.ndarray,
    side: int,
    settings: ApplySettings,
    progress: ProgressFn | None,
) -> tuple[ReferenceCrop, Timing]:
    """The reference ``backend`` on the region of ``response`` that `detail_region` picks,
    with its time extrapolated to the whole image (by pixel count)."""
    from convkit.compare import detail_region

    region = detail_region(response, side)
    report = None
    if progress is not None:

        def report(done: int, total: int) -> None:
            progress(f"{kernel.name} on {backend} (crop)", done, total)

    def work() -> np.ndarray:
        return convolve(
            color, kernel, padding=settings.padding, backend=backend, flip=settings.flip,
            progress=report, precision=settings.precision, region=region, cast=False,
        )  # fmt: skip

    cropped, timing = run_timed(backend, work, settings.repeat)
    y, x, height, width = region
    scale = response.shape[0] * response.shape[1] / (height * width)
    extrapolated = Timing(backend, tuple(t * scale for t in timing.seconds))
    return ReferenceCrop(backend, region, cropped), extrapolated


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
                convolve(color, kernel, padding=settings.padding, backend=backend,
                         flip=settings.flip, progress=report, precision=settings.precision,
                         cast=False)
            ]  # fmt: skip

        layers[backend], timings[backend] = run_timed(backend, work, settings.repeat)
        responses[backend] = layers[backend][-1]
    return responses, timings, layers


def _abs_sum(kernel: Kernel | Stack) -> float:
    return kernel.abs_sum if isinstance(kernel, Stack) else float(np.abs(kernel.weights).sum())


def _check_format(image: np.ndarray, name: str, settings: ApplySettings) -> None:
    """Refuse, before any work, what ``--format`` cannot hold (16-bit into jpg...)."""
    if settings.format is None:
        return
    dtype = np.float64 if settings.rescale == "none" else image.dtype
    check_output_format(settings.format, dtype, settings.quality, shape=image.shape, source=name)


def _encode(image: np.ndarray, settings: ApplySettings, info: ImageInfo) -> bytes:
    """The filtered image (or float response) as the bytes of its output file."""
    if settings.rescale == "none":
        return encode_npy(image) if settings.format is None else encode_float_tiff(image, info)
    suffix = output_suffix(settings)
    return encode_image(image, suffix, info=info, quality=settings.quality)


def _comparison(
    color: np.ndarray,
    alpha: np.ndarray | None,
    kernel: Kernel | Stack,
    result: KernelRun,
    settings: ApplySettings,
) -> np.ndarray:
    """The comparison picture; float outputs are shown stretched min..max. A stack's
    intermediate feature maps come first, each labelled with its step."""
    from convkit.compare import comparison_png

    alpha = crop_alpha(alpha, kernel, settings.padding, settings.flip)
    shown = settings if settings.rescale != "none" else settings._replace(rescale="minmax")
    panels = []
    if isinstance(kernel, Stack):
        steps = zip(kernel.steps[:-1], result.layers[:-1], strict=True)
        for i, (step, layer) in enumerate(steps):
            label = f"{i + 1}. {step if isinstance(step, str) else step.name}"
            panels.append((label, _render(layer, color, None, shown)))
    timings = result.timings
    responses = dict(result.responses)
    crop = result.crop
    if crop is not None:  # the reference ran on this region alone: a panel of it
        y, x, height, width = crop.region
        cropped_alpha = None if alpha is None else alpha[y : y + height, x : x + width]
        label = f"{crop.backend}, {width}x{height} crop  {timings[crop.backend].median_ms:.0f} ms*"
        panels.append((label, _render(crop.response, color, cropped_alpha, shown)))
        responses = {crop.backend: crop.response, **responses}
    for b, response in result.responses.items():
        # The fastest backend's panel is the image just written: no need to render it twice.
        same = b == result.fastest and shown is settings
        picture = result.image if same else _render(response, color, alpha, shown)
        panels.append((f"{b}  {timings[b].median_ms:.1f} ms", picture))
    reference = result.reference if result.reference in responses else result.fastest
    drawn = kernel if isinstance(kernel, Kernel) else None  # a stack's steps label its panels
    return comparison_png(
        color, panels, responses, reference, _title(kernel, settings), kernel=drawn,
        detail=crop.region if crop is not None else None, rescale=shown.rescale,
    )  # fmt: skip


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
