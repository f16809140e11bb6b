"""What a run will cost in memory, estimated before it starts: peak bytes per backend (a slow
backend's time is its registry entry's `convkit.backends.Cost`, its memory model the entry's
``memory`` trait). The command line refuses
what exceeds ``--max-memory`` instead of letting the out-of-memory killer end the run an hour
later.

The memory model counts the arrays each backend allocates (see each backend module) and is
meant to be generous: it may refuse a run that would have fitted with some room, but a run
it admits fits. It counts the arrays of the run, not the interpreter's own 100-150 MB
(Python, numpy, OpenCV). benchmarks/memory_model.py compares it with measured peaks.
"""

from __future__ import annotations

import os
import re

from convkit.backends import KNOWN_BACKENDS
from convkit.errors import UsageError

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str) -> int:
    """Bytes from ``"256M"``, ``"2G"``, ``"1.5GiB"``, ``"512k"`` or a plain number of bytes.

    Units are binary (``M`` is 2**20 bytes), as in ``ulimit`` and ``docker --memory``.

    Examples
    --------
    >>> parse_size("256M")
    268435456
    >>> parse_size("1.5G")
    1610612736
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        raise UsageError(f"{text!r} is not a size: write a number with K, M, G or T (256M, 2G)")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not 1 <= value < 2**63:
        raise UsageError(f"{text!r} is not a size between 1 byte and 8 EiB")
    return int(value)


def format_size(size: float) -> str:
    """``1.5 GB``, ``256 MB``, ``12 KB``: binary units, for messages."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" or size >= 100 else f"{size:.3g} {unit}"
        size /= 1024
    return f"{size:.3g} TB"  # pragma: no cover


def physical_memory() -> int | None:
    """This machine's memory in bytes, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def default_max_memory() -> int:
    """Half the physical memory (4 GiB where the system does not say)."""
    total = physical_memory()
    return total // 2 if total else 4 * 2**30


def _fast_length(n: int) -> int:
    """An upper bound of scipy's ``next_fast_len(n)``: the next 5-smooth number is never
    more than 25 % above ``n`` for the sizes that matter; used for an estimate only."""
    return int(n * 1.25) + 1


def backend_peak_bytes(
    backend: str,
    image_shape: tuple[int, ...],
    kernel_shape: tuple[int, int],
    valid: bool,
    item: int = 8,
) -> int:
    """The memory one backend allocates for one call, over all channels, in bytes.

    ``item`` is the size of the float type it computes in (8 for float64, 4 for float32).
    """
    height, width = image_shape[:2]
    channels = image_shape[2] if len(image_shape) == 3 else 1
    kh, kw = kernel_shape
    grow_h, grow_w = (0, 0) if valid else (kh - 1, kw - 1)
    padded = (height + grow_h) * (width + grow_w)  # samples of one padded plane
    out = height * width
    kernel = kh * kw * 8
    entry = KNOWN_BACKENDS[backend]
    if not entry.multichannel:
        # The engine hands it one plane at a time and stacks the planes' responses at the end.
        return padded * item + 2 * out * channels * 8 + 2 * kernel
    models = entry.memory.split("+")
    unknown = set(models) - set(MEMORY_MODELS)
    if unknown:
        raise ValueError(f"backend {backend!r}: no memory model {', '.join(sorted(unknown))}")
    fft = _fft_bytes(height + grow_h, width + grow_w, channels, item) + kernel
    estimates = {
        "shifts": (padded + 2 * out) * channels * item + kernel,
        "fft": fft,
        "opencv": _opencv_bytes(padded * channels * item + 3 * kernel, fft, image_shape, kh, kw),
    }
    if len(models) > 1 and kh * kw <= DIRECT_MAX_TAPS:
        # A backend that may run either sends no kernel of direct-sum size through a
        # transform (`convkit.engine.check_range` leaves those no headroom for one).
        models = [model for model in models if model != "fft"] or models
    return max(estimates[model] for model in models)


# What encoding an output image whole holds beside it, in copies of its bytes: the PNG
# encoder's filtered rows, its compressed chunks and their join, 2.2 copies for a 12 MP
# colour image of noise (which does not compress), and the allocator's slack.
ENCODER_COPIES = 3.0
# The memory models a registry entry's ``memory`` trait names ("a+b": the larger of the two).
MEMORY_MODELS = ("shifts", "opencv", "fft")
# OpenCV's filter2D sums kernels of up to this many taps directly, and takes its DFT path
# beyond (convkit.engine.DIRECT_FILTER_MAX_AREA).
DIRECT_MAX_TAPS = 49


def _opencv_bytes(direct: int, fft: int, image_shape: tuple[int, ...], kh: int, kw: int) -> int:
    """OpenCV pads what it cannot border itself. Its DFT path (from 50 taps) works in tiles
    at least as large as the kernel: within the padded copy for a kernel small beside the
    image (benchmarks/memory_model.py), about an FFT of the whole for one as large as a good
    part of it (a 1 x 500000 row on a 50-pixel-wide image)."""
    height, width = image_shape[:2]
    if kh * kw > DIRECT_MAX_TAPS and (4 * kh > height or 4 * kw > width):
        return max(direct, fft)
    return direct


def _fft_bytes(height: int, width: int, channels: int, item: int) -> int:
    """Padded plane, its spectrum, the kernel's, their product and the inverse's full size;
    the transforms are as long as the padded plane (`convkit.backends.fft`)."""
    rows, columns = _fast_length(height), _fast_length(width)
    spectrum = rows * (columns // 2 + 1) * 2 * item  # complex
    return channels * (height * width * item + 2 * spectrum + rows * columns * item) + spectrum


def run_peak_bytes(
    backends: tuple[str, ...],
    image_shape: tuple[int, ...],
    image_item: int,
    kernel_shape: tuple[int, int],
    valid: bool,
    item: int = 8,
    strip_rows: int | None = None,
    encoded: bool = False,
) -> dict[str, int]:
    """Each backend's estimated peak for one kernel of an ``apply`` run, in bytes.

    A whole-image run holds the decoded image, its float copy, every backend's response, the
    rendered outputs and the comparison picture, plus what the backend itself allocates. A
    run streamed in strips of ``strip_rows`` rows holds the decoded image, its padded copy
    and the output, all in the image's own type, plus one strip's worth of floats, and, when
    the output is ``encoded`` whole into a file's bytes, the encoder's working copies
    (`ENCODER_COPIES`); a tiled run writes tile by tile and has none.
    """
    samples = 1
    for n in image_shape:
        samples *= n
    if strip_rows is not None:
        height, width = image_shape[:2]
        kh, kw = kernel_shape
        padded = samples // height * (height + kh - 1) * (width + kw - 1) // width
        strip = (min(strip_rows, height), *image_shape[1:])
        held = image_item * (2 * samples + padded)
        if encoded:
            held += int(ENCODER_COPIES * samples * image_item)
        return {b: held + backend_peak_bytes(b, strip, kernel_shape, valid, item) for b in backends}
    # decoded image, its float copy, each backend's response, the rendered images
    per_sample = image_item + item + item * len(backends) + image_item * (len(backends) + 1)
    held = samples * per_sample
    return {
        b: held + backend_peak_bytes(b, image_shape, kernel_shape, valid, item) for b in backends
    }


def check_memory(
    backends: tuple[str, ...],
    image_shape: tuple[int, ...],
    image_item: int,
    kernel_name: str,
    kernel_shape: tuple[int, int],
    valid: bool,
    max_memory: int | None,
    item: int = 8,
    strip_rows: int | None = None,
) -> None:
    """A `UsageError` naming the kernel, the backend and ``--max-memory`` when a backend's
    estimated peak (`run_peak_bytes`, the output encoded whole) exceeds ``max_memory``
    (None: no limit)."""
    if max_memory is None:
        return
    peaks = run_peak_bytes(
        backends, image_shape, image_item, kernel_shape, valid, item, strip_rows, encoded=True
    )
    backend, peak = max(peaks.items(), key=lambda kv: kv[1])
    if peak > max_memory:
        height, width = image_shape[:2]
        kh, kw = kernel_shape
        raise UsageError(
            f"kernel {kernel_name} ({kh}x{kw}) on backend {backend} needs about "
            f"{format_size(peak)} for this {width}x{height} image, more than --max-memory "
            f"{format_size(max_memory)}: raise --max-memory if the machine has it"
        )


# The smallest piece of an image a run can work on: a tile of this size, three channels.
SMALLEST_TILE = (64, 64, 3)


def check_kernel_memory(
    backends: tuple[str, ...],
    kernel_name: str,
    kernel_shape: tuple[int, int],
    valid: bool,
    max_memory: int | None,
) -> None:
    """A `UsageError` naming the kernel when even a 64x64 tile with it would exceed
    ``max_memory``: no tiling can help then, since every tile carries the kernel's reach.
    Checked before any image's header, so that the kernel, not the image, is named."""
    if max_memory is None:
        return
    peaks = run_peak_bytes(backends, SMALLEST_TILE, 2, kernel_shape, valid)
    backend, peak = max(peaks.items(), key=lambda kv: kv[1])
    if peak > max_memory:
        kh, kw = kernel_shape
        raise UsageError(
            f"kernel {kernel_name} ({kh}x{kw}) on backend {backend} needs about "
            f"{format_size(peak)} even for a 64x64 tile of an image, more than --max-memory "
            f"{format_size(max_memory)}: raise --max-memory if the machine has it"
        )


# --- the C library's heap: process-wide, so only the command line and its workers set it ---

# glibc's mallopt parameters, and the values its dynamic thresholds reach at their ceiling.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
WORKER_MMAP_THRESHOLD = 32 * 1024 * 1024  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit


def set_heap_thresholds(mmap_bytes: int, trim_bytes: int) -> bool:
    """Tell glibc's malloc to serve blocks below ``mmap_bytes`` from its heap (larger ones
    are mapped afresh and handed back to the system when freed) and to keep up to
    ``trim_bytes`` of free heap; whether it could be told (False off glibc).

    A fresh mapping faults each 4 KiB page in again, which a process filtering image after
    image pays in system time; memory kept in the heap is reused without a fault but counts
    in the resident size. Process-wide: the library never calls it.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc's mallopt, not musl's
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_bytes)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_bytes)
    )


def keep_freed_buffers() -> bool:
    """In a worker process (``--jobs``, a local cluster): keep freed image-sized buffers for
    the next image; whether it could be told.

    By default glibc hands a freed image-sized array back to the system until its dynamic
    threshold has grown past it, and a thread other than the main one (a dask worker's
    task thread) does so every time: the next image's arrays are faulted in afresh (a
    local cluster's workers took 3x a ``--jobs`` worker's page faults; ``--jobs`` workers
    with comparison PNGs 1.4 million faults for 400 images of 512^2). Pinned at the
    ceiling that glibc's own thresholds reach in a long-lived process (blocks up to 32 MB
    from the heap, up to 64 MB of free heap kept), the worker reuses them.
    """
    return set_heap_thresholds(WORKER_MMAP_THRESHOLD, 2 * WORKER_MMAP_THRESHOLD)
