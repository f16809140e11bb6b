"""Batches: expand inputs into images, run them in worker processes, collect a report.

A batch never stops at a bad file: each image's outcome is recorded, the rest go on, and the
report's `return_code` says how it went (DESIGN §6-7). Results come back in input order
whatever the number of workers.
"""

from __future__ import annotations

import contextlib
import glob
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from convkit.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_ERROR, ConvkitError, UsageError
from convkit.imageio import ImageSource
from convkit.kernels import Kernel
from convkit.pipeline import (
    ApplySettings,
    BackendRow,
    ImageReport,
    OutputPair,
    apply_image,
    plan_outputs,
)

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
        if value == STDIN:
            _add_stdin(inputs, read_stdin)
        elif Path(value).is_dir():
            _add_folder(inputs, Path(value), recursive)
        elif Path(value).exists():
            inputs.images.append(ImageSource.from_path(value))
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
    inputs.images.append(ImageSource("<stdin>", data=read_stdin()))


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

    def __init__(self, total: int, skipped: int = 0) -> None:
        self.total = total
        self.skipped = skipped
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
) -> BatchReport:
    """Run every image through `apply_image`, in ``jobs`` worker processes.

    ``on_done(done, total)`` is called in this process as each image finishes. Ctrl-C stops
    the workers between writes (an interrupted write removes its temporary file), and the
    report says how far the batch got.
    """
    if outputs is None:
        outputs = plan_outputs(images, kernels, settings)[1]
    images = [Task(image, tuple(pairs)) for image, pairs in zip(images, outputs, strict=True)]
    report = BatchReport(total=len(images), skipped=skipped)
    outcomes: dict[int, ImageReport | Failure] = {}
    started = time.perf_counter()
    try:
        if jobs <= 1 or len(images) <= 1:
            _run_serial(images, kernels, settings, outcomes, on_done)
        else:
            _run_parallel(images, kernels, settings, min(jobs, len(images)), outcomes, on_done)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP as `Interrupted`
        report.interrupted = True
        report.interrupt_code = getattr(exc, "exit_code", EXIT_INTERRUPTED)
    report.seconds = time.perf_counter() - started
    for index in sorted(outcomes):
        outcome = outcomes[index]
        if outcome is None:  # turned away while the batch was being stopped
            continue
        if isinstance(outcome, Failure):
            report.failures.append(outcome)
        else:
            report.reports.append(outcome)
    return report


def _run_serial(images, kernels, settings, outcomes, on_done) -> None:
    for index, image in enumerate(images):
        outcomes[index] = process_image(image, kernels, settings, len(images))
        if on_done is not None:
            on_done(len(outcomes), len(images))


def _run_parallel(images, kernels, settings, jobs, outcomes, on_done) -> None:
    # Imported here: a single image never pays for the process-pool machinery.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, wait

    context = multiprocessing.get_context(_start_method())
    executor = ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker)
    size = chunk_size(len(images), jobs)
    futures = {}
    try:
        for start in range(0, len(images), size):
            chunk = images[start : start + size]
            future = executor.submit(process_chunk, chunk, kernels, settings, len(images))
            futures[future] = range(start, start + len(chunk))
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when="FIRST_COMPLETED")
            for future in done:
                indices = futures[future]
                outcomes.update(zip(indices, _outcomes(future, images, indices), strict=True))
                if on_done is not None:
                    on_done(len(outcomes), len(images))
    except KeyboardInterrupt:
        _stop_workers(executor, futures)
        for future, indices in futures.items():
            finished = future.done() and not future.cancelled() and future.exception() is None
            if finished and indices[0] not in outcomes:
                outcomes.update(zip(indices, future.result(), strict=True))
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def chunk_size(image_count: int, jobs: int) -> int:
    """How many images go to a worker at a time: enough to make the round trip between the
    processes cheap (≈ 0.7 ms each), few enough that the workers finish together and the progress
    bar moves (at least 8 chunks per worker)."""
    return max(1, min(MAX_CHUNK, image_count // (8 * jobs)))


def _start_method() -> str:
    """``fork`` starts workers fastest, but a child forked after OpenCV has started its
    thread pool can deadlock inside OpenCV; then the workers come from a fresh forkserver.
    The command line never touches OpenCV before a batch, so it always forks."""
    import multiprocessing

    if os.name != "posix":
        return "spawn"
    if "cv2" not in sys.modules:
        return "fork"
    multiprocessing.set_forkserver_preload(["convkit.pipeline", "convkit.backends.filter2d"])
    return "forkserver"


def _outcomes(future, images: Sequence[ImageSource], indices: range) -> list:
    from concurrent.futures.process import BrokenProcessPool

    try:
        return future.result()
    except BrokenProcessPool:
        return [
            Failure(images[i].name, "its worker process died (out of memory?)") for i in indices
        ]


def _stop_workers(executor, futures: dict) -> None:
    """Cancel what has not started, and interrupt the workers (once each) to stop the rest."""
    import signal

    for future in futures:
        future.cancel()
    for process in list(getattr(executor, "_processes", {}).values()):
        if process.is_alive():
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGINT)
    executor.shutdown(wait=True, cancel_futures=True)


_stopping = False


def _init_worker() -> None:
    """In each worker: one OpenCV thread (the workers use the cores), and a Ctrl-C that
    interrupts the current image once and then turns away any image still queued."""
    import signal

    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass

    def interrupt(signum, frame):
        global _stopping
        _stopping = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)


def process_chunk(
    images: Sequence[ImageSource],
    kernels: Sequence[Kernel],
    settings: ApplySettings,
    image_count: int,
) -> list[ImageReport | Failure | None]:
    """`process_image` over a few images in one worker task; None for each image not done
    because Ctrl-C stopped the batch (an image interrupted mid-write leaves no file)."""
    outcomes: list[ImageReport | Failure | None] = []
    for image in images:
        try:
            outcomes.append(process_image(image, kernels, settings, image_count))
        except KeyboardInterrupt:
            outcomes.append(None)
    return outcomes


def process_image(
    task: Task, kernels: Sequence[Kernel], settings: ApplySettings, image_count: int
) -> ImageReport | Failure | None:
    """One image's report, or its failure; None when the batch is being stopped.

    Ctrl-C is not caught here: it stops a serial batch, and a worker hands it back.
    """
    if _stopping:
        return None
    image = task.image
    try:
        return apply_image(image, kernels, settings, image_count=image_count, outputs=task.outputs)
    except ConvkitError as exc:
        return Failure(image.name, str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
        return Failure(image.name, f"internal error: {type(exc).__name__}: {exc}")
