"""Batches: expand inputs into images, run them in worker processes, collect a report.

A batch never stops at a bad file: each image's outcome is recorded, the rest go on, and the
report's `return_code` says how it went (DESIGN §6-7). Results come back in input order
whatever the number of workers.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from convkit.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_ERROR, ConvkitError, UsageError
from convkit.imageio import STDIN_NAME, ImageSource, check_input_file, temporary_prefix
from convkit.kernels import Kernel
from convkit.pipeline import (
    ApplySettings,
    BackendRow,
    ImageReport,
    OutputPair,
    apply_image,
    plan_outputs,
)
from convkit.resources import keep_freed_buffers
from convkit.tiled import is_zarr

# What OpenCV's imdecode reads (the common builds); matched case-insensitively.
IMAGE_SUFFIXES = frozenset(
    {
        ".png", ".jpg", ".jpeg", ".jpe", ".jp2", ".tif", ".tiff", ".bmp", ".dib", ".webp",
        ".pgm", ".ppm", ".pbm", ".pnm", ".pxm", ".pam", ".sr", ".ras", ".hdr", ".pic",
    }
)  # fmt: skip
STDIN = "-"
MAX_CHUNK = 8

DoneFn = Callable[[int, int], None]


class Inputs:
    """The images a run will read, and the other files found in folders and skipped."""

    def __init__(self) -> None:
        self.images: list[ImageSource] = []
        self.skipped: list[Path] = []
        self.up_to_date = 0  # images left out by --skip-existing


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def expand_inputs(
    values: Sequence[str], recursive: bool = False, read_stdin: Callable[[], bytes] | None = None
) -> Inputs:
    """Turn ``--image`` values into images: files, folders, quoted globs, or ``-`` for stdin.

    A folder gives its image files, sorted (``recursive`` descends, and each image's outputs
    go to the same relative folder under ``--out``); other files are skipped and counted. A
    file named directly is read whatever its suffix. The same file named twice is read once.

    Raises
    ------
    UsageError
        For a path that does not exist, a glob that matches nothing, a folder without
        images, or ``-`` given twice.
    """
    inputs = Inputs()
    for value in values:
        if not value.strip():  # "" would be the current folder: an unset variable, likely
            raise UsageError(f"an empty image path ({value!r}): is a shell variable unset?")
        if value == STDIN:
            _add_stdin(inputs, read_stdin)
        elif is_zarr(value):  # a Zarr store is one image, though it is a folder
            inputs.images.append(ImageSource.from_path(value))
        elif Path(value).is_dir():
            _add_folder(inputs, Path(value), recursive)
        elif os.path.lexists(value):  # a file, or something to refuse by name: a FIFO...
            inputs.images.append(ImageSource.from_path(check_input_file(value)))
        elif glob.has_magic(value):
            _add_glob(inputs, value, recursive)
        else:
            raise UsageError(f"image not found: {value}")
    inputs.images = _without_repeats(inputs.images)
    return inputs


def _add_stdin(inputs: Inputs, read_stdin: Callable[[], bytes] | None) -> None:
    if any(image.data is not None for image in inputs.images):
        raise UsageError("--image - (standard input) can be given only once")
    if read_stdin is None:
        raise UsageError("--image -: standard input is not available here")
    inputs.images.append(ImageSource(STDIN_NAME, data=read_stdin()))


def _add_folder(inputs: Inputs, folder: Path, recursive: bool) -> None:
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    images = [p for p in files if is_image_file(p)]
    if not images:
        raise UsageError(
            f"no images in folder {folder} ({len(files)} other files)"
            + ("" if recursive else "; --recursive looks in its subfolders")
        )
    inputs.skipped += [p for p in files if not is_image_file(p)]
    inputs.images += [ImageSource.from_path(p, p.parent.relative_to(folder)) for p in images]


def _add_glob(inputs: Inputs, pattern: str, recursive: bool) -> None:
    matches = sorted(Path(p) for p in glob.glob(pattern, recursive=recursive))
    files = [p for p in matches if p.is_file()]
    if not files:
        raise UsageError(f"no files match {pattern!r}")
    inputs.skipped += [p for p in files if not is_image_file(p)]
    inputs.images += [ImageSource.from_path(p) for p in files if is_image_file(p)]


def _without_repeats(images: list[ImageSource]) -> list[ImageSource]:
    seen: set[Path] = set()
    unique = []
    for image in images:
        key = image.path.resolve() if image.path is not None else None
        if key is None or key not in seen:
            unique.append(image)
            seen.add(key)
    return unique


def drop_up_to_date(
    inputs: Inputs, outputs: Sequence[Sequence[OutputPair]]
) -> list[Sequence[OutputPair]]:
    """``--skip-existing``: leave out each image whose planned outputs all exist and are at
    least as new as it (an interrupted batch resumed); they are counted in ``up_to_date``.

    Returns the planned outputs of the images kept, in order.
    """
    kept_images, kept_outputs = [], []
    for image, pairs in zip(inputs.images, outputs, strict=True):
        if is_up_to_date(image, pairs):
            inputs.up_to_date += 1
        else:
            kept_images.append(image)
            kept_outputs.append(pairs)
    inputs.images = kept_images
    return kept_outputs


def is_up_to_date(image: ImageSource, pairs: Sequence[OutputPair]) -> bool:
    """True when the image is a file and every output planned for it exists, no older."""
    paths = [p for pair in pairs for p in pair if p is not None]
    if image.path is None or not paths:
        return False
    try:
        source = image.path.stat().st_mtime_ns
        return all(p.stat().st_mtime_ns >= source for p in paths)
    except OSError:
        return False


class Task(NamedTuple):
    """One image of a batch and the outputs planned for it."""

    image: ImageSource
    outputs: tuple[OutputPair, ...]

    @property
    def name(self) -> str:
        return self.image.name


class Failure(NamedTuple):
    """An image that could not be processed, and the one-line reason."""

    image: str
    reason: str


class BatchReport:
    """What a batch did: reports of the images written, failures, counts and wall time."""

    def __init__(self, total: int, skipped: int = 0, up_to_date: int = 0) -> None:
        self.total = total
        self.skipped = skipped
        self.up_to_date = up_to_date
        self.reports: list[ImageReport] = []
        self.failures: list[Failure] = []
        self.seconds = 0.0
        self.interrupted = False
        self.interrupt_code = EXIT_INTERRUPTED  # 128 + the signal that stopped the batch

    @property
    def written(self) -> int:
        return len(self.reports)

    @property
    def rows(self) -> list[BackendRow]:
        return [row for report in self.reports for row in report.rows]

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    @property
    def return_code(self) -> int:
        if self.interrupted:
            return self.interrupt_code
        return EXIT_RUN_ERROR if self.failures else EXIT_OK


def run_batch(
    images: Sequence[ImageSource],
    kernels: Sequence[Kernel],
    settings: ApplySettings,
    jobs: int = 1,
    on_done: DoneFn | None = None,
    skipped: int = 0,
    outputs: Sequence[Sequence[OutputPair]] | None = None,
    up_to_date: int = 0,
    scheduler: str | None = None,
) -> BatchReport:
    """Run every image through `apply_image`, in ``jobs`` worker processes (`convkit.pool`).

    ``outputs`` are the pairs `plan_outputs` planned per image (planned here when not given).
    With ``scheduler`` (``tcp://HOST:PORT``, ``local`` or ``local:N``) the images run as tasks
    on a dask cluster instead (`convkit.cluster`), with the same outcomes.
    ``on_done(done, total)`` is called in this process as each image finishes. A worker that
    dies (the out-of-memory killer) fails only the image it held, and its temporary file is
    removed; Ctrl-C, SIGTERM or SIGHUP stop the workers (an interrupted write removes its
    temporary file), and the report says how far the batch got.
    """
    from convkit.pool import Lost, run_pool  # a single image never loads the pool

    if outputs is None:
        outputs = plan_outputs(images, kernels, settings)[1]
    tasks = [Task(image, tuple(pairs)) for image, pairs in zip(images, outputs, strict=True)]
    count = len(tasks) + up_to_date  # the batch's size, as the user sees it
    report = BatchReport(total=count, skipped=skipped, up_to_date=up_to_date)
    outcomes: dict[int, ImageReport | Failure] = {}

    def on_result(index: int, outcome) -> None:
        if isinstance(outcome, Lost):
            remove_temporary_files(tasks[index])
            outcome = Failure(tasks[index].name, outcome.reason)
        outcomes[index] = outcome
        if on_done is not None:
            on_done(len(outcomes), len(tasks))

    started = time.perf_counter()
    try:
        if scheduler is not None:
            from convkit.cluster import run_on_cluster

            run_on_cluster(tasks, kernels, settings, scheduler, on_result, image_count=count)
        elif jobs <= 1 or len(tasks) <= 1:
            for index, task in enumerate(tasks):
                on_result(index, process_image(task, kernels, settings, count))
        else:
            if settings.max_memory is not None:  # the limit is the run's, shared by the workers
                settings = settings._replace(max_memory=settings.max_memory // min(jobs, count))
            worker = functools.partial(
                _init_worker, tuple(kernels), settings, count, list(warnings.filters)
            )
            run_pool(
                tasks, process_task, min(jobs, len(tasks)), on_result,
                chunk=chunk_size(len(tasks), jobs), initializer=worker,
                preload=["convkit.pipeline", "convkit.backends.filter2d"],
            )  # fmt: skip
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP as `Interrupted`
        report.interrupted = True
        report.interrupt_code = getattr(exc, "exit_code", EXIT_INTERRUPTED)
        for index, task in enumerate(tasks):  # a worker killed after its grace left these
            if index not in outcomes:
                remove_temporary_files(task)
    report.seconds = time.perf_counter() - started
    for index in sorted(outcomes):
        outcome = outcomes[index]
        if isinstance(outcome, Failure):
            report.failures.append(outcome)
        else:
            report.reports.append(outcome)
    return report


def remove_temporary_files(task: Task) -> None:
    """Remove what a worker that died left of its outputs: `write_atomic`'s temporary files
    (``.NAME.XXXXXXXX.tmp`` beside each planned output)."""
    for output in (p for pair in task.outputs for p in pair if p is not None):
        prefix = glob.escape(temporary_prefix(output.name))
        for leftover in output.parent.glob(f"{prefix}{'[0-9a-f]' * 8}.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()


def chunk_size(image_count: int, jobs: int) -> int:
    """How many images go to a worker at a time: enough to make the round trip between the
    processes cheap (≈ 0.7 ms each), few enough that the workers finish together and the progress
    bar moves (at least 8 chunks per worker)."""
    return max(1, min(MAX_CHUNK, image_count // (8 * jobs)))


# What each worker process runs its images with, set once by `_init_worker`.
_worker_job: tuple[tuple[Kernel, ...], ApplySettings, int] | None = None


def _init_worker(
    kernels: tuple[Kernel, ...], settings: ApplySettings, image_count: int, filters: list
) -> None:
    """In each worker: one OpenCV thread (the workers use the cores), freed image buffers
    kept for the next image (`convkit.resources.keep_freed_buffers`), the batch's kernels
    and settings, sent once rather than with every image, and the parent's warning filters
    (a worker from a fresh forkserver would not have them)."""
    global _worker_job
    warnings.filters[:] = filters
    keep_freed_buffers()
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    _worker_job = (kernels, settings, image_count)


def process_task(task: Task) -> ImageReport | Failure:
    """`process_image` in a worker, with the batch's kernels and settings."""
    kernels, settings, image_count = _worker_job
    return process_image(task, kernels, settings, image_count)


def process_image(
    task: Task, kernels: Sequence[Kernel], settings: ApplySettings, image_count: int
) -> ImageReport | Failure:
    """One image's report, or its failure.

    Ctrl-C (and SIGTERM, SIGHUP) is not caught here: it stops the batch.
    """
    image = task.image
    try:
        return apply_image(image, kernels, settings, image_count=image_count, outputs=task.outputs)
    except ConvkitError as exc:
        return Failure(image.name, str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
        return Failure(image.name, f"internal error: {type(exc).__name__}: {exc}")
