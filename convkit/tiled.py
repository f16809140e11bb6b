"""Images larger than memory on the command line: a TIFF or Zarr image filtered in tiles.

A tiled run reads a TIFF (tiled or striped, BigTIFF) or a Zarr array a band of rows at a
time and writes ``<stem>_<kernel>.tif``, a tiled (Big)TIFF of the input's type and
channels, progressively:

- The output is cut into *bands* of whole 256-pixel tile rows. For each band, the input
  rows under it and the kernel's halo are read (tifffile decodes only the tiles or strips
  they fall in) and padded by the padding mode's own numpy rule through index maps
  (`window_indices`), so ``wrap`` and ``reflect101`` take their rows from the image's far
  side exactly as the in-memory run does. The band's window is filtered ``valid`` in
  *chunks* of columns, each with its halo (the chunks `convkit.tiles`' ``map_overlap``
  cuts), with the chosen backend, turned into pixels with the engine's own
  post-processing, and laid out as the output's tiles (`filter_band`). Bands are filtered
  a few at a time on threads (OpenCV and numpy let go of the GIL), or as tasks on a dask
  cluster (`convkit.cluster`), while this thread writes the finished ones in order: a few
  bands of pixels and a chunk of floats per thread are in memory: `plan_tiles` sizes
  bands and chunks from ``--max-memory``. Band-sized arrays are reused (`Buffers`).
- ``minmax`` stretches the whole response's min..max: a first pass finds them (the image is
  filtered twice) and every chunk is stretched with those bounds, exactly as the whole
  response would be.
- The file is written to a temporary beside the output (the name `convkit.imageio`'s
  `write_atomic` uses, so a batch's sweeper finds it) and renamed into place at the end;
  Ctrl-C removes it.
- The comparison PNG shows block-mean overviews of the input and the output, made band by
  band, and a 1:1 crop where the output has the most detail; every backend the run names
  (the readable reference included) filters that crop, with its halo, in memory, and is
  compared there; the tiled backend's panel is what the written file holds there.

On this machine a band is a task of a thread pool, not of a dask graph: dask's graph per
band cost 6 ms a band and 0.8 ms a chunk, and importing dask.array and distributed 0.5 s,
a fifth of libvips's whole time on a 20000^2 image (`benchmarks/scale.py`). Lazy dask
arrays are `convkit.tiles`' business.

tifffile and zarr are imported only inside the functions that need them.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from convkit.errors import ImageReadError, UsageError
from convkit.kernels import Kernel
from convkit.metadata import ImageInfo, dpi_for, icc_profile_for
from convkit.padding import Padding
from convkit.resources import backend_peak_bytes, format_size

if TYPE_CHECKING:
    from convkit.image_headers import ImageHeader
    from convkit.pipeline import ApplySettings, ImageReport, OutputPair
    from convkit.stack import Stack

TILE = 256  # the output TIFF's tiles, and the unit of bands and chunks
OVERVIEW_SIDE = 1024  # the overview's long side is at most this (block means of 2**n pixels)
CROP_SIDE = 256  # the 1:1 crop every backend filters
CACHED_BANDS = 3  # bands of input kept: a halo reaches into the bands above and below
BAND_ROWS = (4096, 2048, 1024, 512, 256)
CHUNK_COLUMNS = (8192, 4096, 2048, 1024, 512, 256)
MAX_THREADS = 8
# What a band and a chunk of it cost beyond their pixels, in ms on this 2-core machine (a
# band's task, its reads and its tiles; a chunk's call into the engine): plan_tiles keeps it low.
BAND_COST = 2.0
TASK_COST = 0.2
# Arrays from this size on are handed back to the system when freed (`limit_heap_retention`).
HEAP_RETENTION_BYTES = 16 << 20  # above the engine's strips of floats (8 MiB)
TIFF_SIGNATURES = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
BIGTIFF_FROM_BYTES = 2**32 - 2**28  # a classic TIFF's offsets end at 4 GiB: keep room for tags
TIFF_SUFFIXES = (".tif", ".tiff")
FORMATS_READ_IN_TILES = "TIFF (tiled or striped, BigTIFF) and Zarr"
VALID = Padding("valid")

ProgressFn = Callable[[str, int, int], None]
Region = tuple[int, int, int, int]  # y, x, height, width


# --- what can be read in tiles ------------------------------------------------------------


def is_zarr(path: str | Path) -> bool:
    """Whether ``path`` is a Zarr directory store (version 2 or 3)."""
    path = Path(path)
    return path.is_dir() and ((path / ".zarray").is_file() or (path / "zarr.json").is_file())


def can_tile(path: str | Path | None) -> bool:
    """Whether ``path`` is an image convkit can read in tiles: a TIFF or BigTIFF file
    (tiled or striped), or a Zarr directory store. Reads at most 4 bytes."""
    if path is None:
        return False
    path = Path(path)
    if is_zarr(path):
        return True
    try:
        with open(path, "rb") as stream:
            return path.is_file() and stream.read(4) in TIFF_SIGNATURES
    except OSError:
        return False


class TiledImage(NamedTuple):
    """An image read lazily: where it is and what its header says.

    ``shape`` is as stored, (H, W) or (H, W, C), channels in file order (RGB(A));
    ``planar`` is True for a TIFF that stores each channel as its own plane.
    """

    path: Path
    format: str  # "TIFF", "BigTIFF" or "Zarr"
    shape: tuple[int, ...]
    dtype: np.dtype
    orientation: int = 1
    planar: bool = False
    info: ImageInfo = ImageInfo()

    @property
    def channels(self) -> int:
        return self.shape[2] if len(self.shape) == 3 else 1

    def header(self) -> ImageHeader:
        """The image's `convkit.image_headers.ImageHeader`, as `probe_image` gives one."""
        from convkit.image_headers import ImageHeader

        bits = 8 * self.dtype.itemsize
        height, width = self.shape[:2]
        return ImageHeader(self.format, width, height, self.channels, "unsigned", bits)


def open_tiled(path: str | Path) -> TiledImage:
    """What a TIFF file or Zarr store holds, from its header alone (no pixels are read).

    Raises
    ------
    UsageError
        If the path does not exist.
    ImageReadError
        If it is neither, or holds what convkit does not filter: samples other than 8- or
        16-bit unsigned, more than 4 channels, or a compression tifffile cannot decode here.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"image not found: {path}")
    image = _open_zarr(path) if is_zarr(path) else _open_tiff(path)
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(
            f"cannot filter {path}: {image.dtype} samples (convkit reads 8- and 16-bit "
            "unsigned images)"
        )
    if len(image.shape) not in (2, 3) or image.channels > 4 or 0 in image.shape:
        raise ImageReadError(
            f"cannot filter {path}: its shape is {image.shape} (convkit reads grey, "
            "grey+alpha, colour and colour+alpha images)"
        )
    return image


def _open_tiff(path: Path) -> TiledImage:
    import tifffile
    from tifffile.tifffile import TIFF

    try:
        with tifffile.TiffFile(path) as tiff:
            page = tiff.pages.first
            compression, predictor = page.compression, page.predictor
            shape = tuple(int(n) for n in page.shape)
            planar = page.planarconfig == 2 and len(shape) == 3
            if planar:  # stored (C, H, W)
                shape = (shape[1], shape[2], shape[0])
            orientation = int(_tag(page, 274, 1) or 1)
            info = ImageInfo(_tag(page, 34675, None), _tiff_dpi(page), orientation)
            dtype = np.dtype(page.dtype if page.dtype is not None else object)
            kind = "BigTIFF" if tiff.is_bigtiff else "TIFF"
            stored = int(np.sum(page.databytecounts, dtype=np.int64))
    except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError) as exc:
        raise ImageReadError(f"cannot read {path} as a TIFF: {exc}") from None
    try:
        TIFF.DECOMPRESSORS[compression]
        TIFF.UNPREDICTORS[predictor]
    except KeyError as exc:
        raise ImageReadError(f"cannot decode {path} in tiles: {exc.args[0]}") from None
    _check_stored_bytes(path, shape, dtype, compression, stored)
    return TiledImage(path, kind, shape, dtype.newbyteorder("="), orientation, planar, info)


# Deflate packs at most about 1032 bytes into one; no TIFF codec packs much tighter
# (a run of zeros in PackBits: 64). Used to tell a bomb from an image.
LARGEST_PACKING = 1032


def _check_stored_bytes(path: Path, shape, dtype: np.dtype, compression, stored: int) -> None:
    """Refuse a TIFF whose tiles or strips hold too few bytes for the pixels it claims: a
    header that claims a gigapixel over a few bytes would have a tiled run write gigabytes
    of zeros (a bomb for the disk, where --max-pixels guards memory)."""
    samples = int(np.prod(shape)) * dtype.itemsize
    least = samples if int(compression) == 1 else samples // LARGEST_PACKING
    if stored < least:
        raise ImageReadError(
            f"cannot filter {path}: its tiles or strips hold {stored:,} bytes, too few for "
            f"{shape[1]}x{shape[0]} pixels (a truncated or sparse file)"
        )


def _tag(page, code: int, default):
    tag = page.tags.get(code)
    return default if tag is None else tag.value


def _tiff_dpi(page) -> tuple[float, float] | None:
    """(x, y) dots per inch from XResolution, YResolution and ResolutionUnit."""
    try:
        x, y = (_tag(page, code, None) for code in (282, 283))
        unit = int(_tag(page, 296, 2))
        if x is None or y is None or unit not in (2, 3):
            return None
        per_inch = 2.54 if unit == 3 else 1.0
        return (x[0] / x[1] * per_inch, y[0] / y[1] * per_inch)
    except (TypeError, ValueError, ZeroDivisionError, IndexError):
        return None


def _open_zarr(path: Path) -> TiledImage:
    import zarr

    try:
        array = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises many kinds for a broken store
        raise ImageReadError(f"cannot read {path} as a Zarr store: {exc}") from None
    if not hasattr(array, "dtype"):
        raise ImageReadError(
            f"cannot filter {path}: it is a Zarr group; give the path of one of its arrays "
            "(H x W or H x W x C)"
        )
    shape = tuple(int(n) for n in array.shape)
    if len(shape) == 3 and shape[2] == 1:
        shape = shape[:2]
    return TiledImage(path, "Zarr", shape, np.dtype(array.dtype).newbyteorder("="))


# --- reading ------------------------------------------------------------------------------


class TiledReader:
    """Pixels of a `TiledImage` by row and column index, read a band of rows at a time.

    The last ``cached`` bands are kept (`CACHED_BANDS` by default), so that the halos of
    bands filtered in order decode each band once; an evicted band's memory is decoded into
    again (a fresh array costs its page faults: a second or more over a gigapixel). A
    TIFF's tiles or strips are read and decoded by tifffile directly (about 3x faster than
    through its Zarr view); a planar TIFF and a Zarr store through zarr. Indices are of
    the upright image (the file's orientation 2, 3 or 4 flips it); -1 marks a pixel
    outside the image, given as 0. Thread-safe.

    Use as a context manager, or call `close`.
    """

    def __init__(
        self, image: TiledImage, band_rows: int, upright: bool = True, cached: int = CACHED_BANDS
    ) -> None:
        self.image = image
        self.band_rows = band_rows
        self.cached = cached
        self.reads = 0  # bands decoded, for tests and benchmarks
        self._flips = _flips(image.orientation) if upright else (False, False)
        self._bands: OrderedDict[int, np.ndarray] = OrderedDict()
        self._buffers: dict[int, np.ndarray] = {}  # each cached band's whole buffer
        self._spare: np.ndarray | None = None  # an evicted band's buffer, decoded into next
        self._lock = threading.RLock()
        self._tiff = self._array = None
        self._run: np.ndarray | None = None  # a run of uncompressed segments, read at once
        self._closed = False

    def __enter__(self) -> TiledReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._tiff is not None:
                self._tiff.close()
                self._tiff = None

    def take(
        self, rows: np.ndarray, columns: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """``image[rows][:, columns]`` in the stored channels; 0 where an index is -1.

        Runs of consecutive indices are copied as slices, straight into the result (a
        window's rows and columns are one long run, plus a few padding indices at each end),
        or into ``out`` (of that shape and the image's type) where given.
        """
        height, width = self.image.shape[:2]
        stored_rows = _stored(rows, height, self._flips[0])
        stored_columns = _stored(columns, width, self._flips[1])
        shape = (len(rows), len(columns)) + self.image.shape[2:]
        if out is None:
            out = np.empty(shape, self.image.dtype)
        column_runs = [
            (start, stop, _run_slice(stored_columns, start, stop))
            for start, stop in _runs(stored_columns, columns >= 0, width + 1)
            if columns[start] >= 0
        ]
        with self._lock:  # a band's memory is decoded into again once it is evicted
            for start, stop in _runs(stored_rows, rows >= 0, self.band_rows):
                if rows[start] < 0:
                    continue
                band = int(stored_rows[start]) // self.band_rows
                taken_rows = _run_slice(stored_rows - band * self.band_rows, start, stop)
                pixels = self._band(band)[taken_rows]
                for left, right, taken in column_runs:
                    out[start:stop, left:right] = pixels[:, taken]
        out[rows < 0] = 0
        out[:, columns < 0] = 0
        return out

    def _band(self, band: int) -> np.ndarray:
        with self._lock:
            if band in self._bands:
                self._bands.move_to_end(band)
                return self._bands[band]
            top = band * self.band_rows
            pixels, buffer = self._read(top, min(self.image.shape[0], top + self.band_rows))
            self._bands[band], self._buffers[band] = pixels, buffer
            self.reads += 1
            while len(self._bands) > self.cached:
                evicted, _ = self._bands.popitem(last=False)
                self._spare = self._buffers.pop(evicted)
            return pixels

    def _read(self, top: int, bottom: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows top..bottom-1, and the buffer they lie in."""
        try:
            if self.image.format != "Zarr" and not self.image.planar:
                return self._read_segments(top, bottom)
            pixels = self._read_array(top, bottom)
            return pixels, pixels
        except (ValueError, KeyError, OSError, RuntimeError, IndexError) as exc:
            raise ImageReadError(
                f"cannot decode rows {top}..{bottom - 1} of {self.image.path}: {exc}"
            ) from None

    def _read_segments(self, top: int, bottom: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows top..bottom-1 of a contiguous TIFF page, from its tiles or strips, and
        the buffer of whole tile rows they lie in (an evicted band's, where it fits)."""
        import tifffile

        if self._tiff is None:
            if self._closed:  # a band thread still running after the run stopped
                raise OSError("the reader is closed")
            self._tiff = tifffile.TiffFile(self.image.path)
        page = self._tiff.pages.first
        height, width = self.image.shape[:2]
        if page.is_tiled:
            rows, columns = page.tilelength, page.tilewidth
        else:
            rows, columns = min(page.rowsperstrip or height, height), width
        across = -(-width // columns)
        first, last = top // rows, (bottom - 1) // rows
        indices = [y * across + x for y in range(first, last + 1) for x in range(across)]
        shape = ((last - first + 1) * rows, width) + self.image.shape[2:]
        band, self._spare = self._spare, None
        if band is None or band.shape != shape or band.dtype != self.image.dtype:
            band = np.empty(shape, self.image.dtype)
        offsets = [page.dataoffsets[i] for i in indices]
        counts = [page.databytecounts[i] for i in indices]
        if _uncompressed(page) and _one_run(offsets, counts, rows * columns * page.samplesperpixel
                                            * np.dtype(page.dtype).itemsize):  # fmt: skip
            self._read_run(page, offsets[0], band, (rows, columns), across, height - first * rows)
            start = top - first * rows
            return band[start : start + bottom - top], band
        decode = self._raw if _uncompressed(page) else self._decoded
        for data, index in self._tiff.filehandle.read_segments(offsets, counts, indices):
            y, x = (index // across) * rows - first * rows, (index % across) * columns
            if not data:  # a sparse file's empty tile: zeros
                band[y : y + rows, x : x + columns] = 0
                continue
            part = decode(page, data, index, columns)[: height - y - first * rows, : width - x]
            part = part[..., 0] if band.ndim == 2 else part
            band[y : y + part.shape[0], x : x + part.shape[1]] = part
        start = top - first * rows
        return band[start : start + bottom - top], band

    def _read_run(self, page, offset: int, band: np.ndarray, segment, across: int, rows_left):
        """Whole rows of uncompressed tiles or strips that lie one after the other in the
        file, read in one go (strips straight into ``band``) rather than segment by
        segment."""
        rows, columns = segment
        stored = np.dtype(page.dtype).newbyteorder(self._tiff.byteorder)
        samples = page.samplesperpixel
        count = band.shape[0] // rows * across
        handle = self._tiff.filehandle
        if across == 1 and columns == band.shape[1] and rows * count <= rows_left:
            handle.seek(offset)
            handle.read_array(stored, band.size, out=band.reshape(-1))
            return
        shape = (count, rows, columns, samples)
        if self._run is None or self._run.shape != shape or self._run.dtype != band.dtype:
            self._run = np.empty(shape, band.dtype)
        handle.seek(offset)
        handle.read_array(stored, self._run.size, out=self._run.reshape(-1))
        laid = self._run.reshape(count // across, across, rows, columns, samples).swapaxes(1, 2)
        laid = laid.reshape(count // across * rows, across * columns, samples)
        width = band.shape[1]
        band[: min(band.shape[0], rows_left)] = (
            laid[: min(band.shape[0], rows_left), :width, 0]
            if band.ndim == 2
            else laid[: min(band.shape[0], rows_left), :width]
        )

    def _raw(self, page, data: bytes, index: int, columns: int) -> np.ndarray:
        """An uncompressed segment as it lies in the file: no decoder needed."""
        samples = self.image.channels
        dtype = np.dtype(page.dtype).newbyteorder(self._tiff.byteorder)
        count = len(data) // (columns * samples * dtype.itemsize)
        pixels = np.frombuffer(data, dtype, count * columns * samples)
        return pixels.reshape(count, columns, samples)

    def _decoded(self, page, data: bytes, index: int, columns: int) -> np.ndarray:
        segment = page.decode(data, index, jpegtables=page.jpegtables)[0]
        return segment.reshape(segment.shape[-3:])

    def _read_array(self, top: int, bottom: int) -> np.ndarray:
        import zarr

        if self._array is None:
            if self.image.format == "Zarr":
                self._array = zarr.open(str(self.image.path), mode="r")
            else:
                import tifffile

                store = tifffile.imread(self.image.path, aszarr=True, key=0)
                self._array = zarr.open(store, mode="r")
        if self.image.planar:
            pixels = np.moveaxis(np.asarray(self._array[:, top:bottom]), 0, -1)
        else:
            pixels = np.asarray(self._array[top:bottom])
        if pixels.ndim == 3 and len(self.image.shape) == 2:
            pixels = pixels[..., 0]
        return np.ascontiguousarray(pixels, dtype=self.image.dtype)


def _runs(indices: np.ndarray, inside: np.ndarray, band_rows: int) -> list[tuple[int, int]]:
    """(start, stop) positions of the runs of ``indices`` that step by +1 (or by -1)
    within one band of ``band_rows``, or lie all outside the image.

    Examples
    --------
    >>> _runs(np.array([2, 1, 0, 1, 2, 3, 3]), np.ones(7, bool), 10)
    [(0, 3), (3, 6), (6, 7)]
    """
    if len(indices) < 2:
        return [(0, len(indices))] if len(indices) else []
    steps = np.diff(indices)
    same_band = indices[1:] // band_rows == indices[:-1] // band_rows
    unit = (np.abs(steps) == 1) & inside[1:] & inside[:-1] & same_band
    breaks = ~(unit | (~inside[1:] & ~inside[:-1]))
    breaks[1:] |= unit[1:] & unit[:-1] & (steps[1:] != steps[:-1])  # a run turns round
    edges = [0, *(np.flatnonzero(breaks) + 1).tolist(), len(indices)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _run_slice(indices: np.ndarray, start: int, stop: int) -> slice:
    """The slice that picks ``indices[start:stop]``, a run stepping by +1 or by -1."""
    first, count = int(indices[start]), stop - start
    if count == 1 or indices[start + 1] > indices[start]:
        return slice(first, first + count)
    return slice(first, first - count if first >= count else None, -1)


def _one_run(offsets: list[int], counts: list[int], size: int) -> bool:
    """Whether segments of ``size`` bytes each lie one after the other in the file."""
    if any(count != size for count in counts):
        return False
    return all(b - a == size for a, b in zip(offsets, offsets[1:], strict=False))


def _uncompressed(page) -> bool:
    """Whether a page's segments are its samples as they are (in the file's byte order)."""
    plain = page.compression == 1 and page.predictor == 1 and page.fillorder == 1
    return plain and page.bitspersample == 8 * np.dtype(page.dtype).itemsize


def _flips(orientation: int) -> tuple[bool, bool]:
    """(rows flipped, columns flipped) to turn a stored image upright; a quarter turn
    (orientations 5..8) is refused before a reader is made."""
    return {2: (False, True), 3: (True, True), 4: (True, False)}.get(orientation, (False, False))


def _stored(indices: np.ndarray, extent: int, flipped: bool) -> np.ndarray:
    indices = np.clip(indices, 0, None)
    return extent - 1 - indices if flipped else indices


# --- how much at a time -------------------------------------------------------------------


class TilePlan(NamedTuple):
    """How a tiled run cuts the image: bands of rows, chunks of columns, threads."""

    band_rows: int
    chunk_columns: int
    threads: int
    overview_step: int  # overview pixels are means of step x step image pixels
    peak_bytes: int  # the estimate the plan was sized by


def overview_step(height: int, width: int, side: int = OVERVIEW_SIDE) -> int:
    """The smallest power of two that brings the longer side within ``side``."""
    step = 1
    while max(height, width) > side * step:
        step *= 2
    return step


def tiled_peak_bytes(
    shape: tuple[int, ...],
    image_item: int,
    out_item: int,
    kernel_shape: tuple[int, int],
    backend: str,
    band_rows: int,
    chunk_columns: int,
    threads: int,
    stored_channels: int | None = None,
    item: int = 8,
    strip_rows: int | None = None,
) -> int:
    """The memory of a tiled run, beyond the interpreter's own, in bytes.

    ``shape`` is the filtered image's (alpha set aside, grey under ``--gray``);
    ``stored_channels`` the file's. Counted: the reader's bands of input (`CACHED_BANDS`
    plus one for each thread beyond the first, an evicted one being read into again, and
    a run of segments read at once); for each of the ``threads`` bands being filtered, the
    padded window (and its grey copy), the output band laid out as tiles and once more as
    a band (for the overviews), and a chunk with its halo, what the backend allocates
    (`convkit.resources.backend_peak_bytes`) and a float response with its clipped copy,
    for the whole chunk or, where the engine streams it (``strip_rows``, as
    `convkit.engine.strip_rows` gives), for a strip of it (none at all for 0: OpenCV's
    saturating filter writes the pixels); and the tiles of the band being written.
    """
    height, width = shape[:2]
    channels = shape[2] if len(shape) == 3 else 1
    stored = stored_channels or channels
    kh, kw = kernel_shape
    rows, columns = min(band_rows, height), min(chunk_columns, width)
    padded = (rows + kh - 1) * (width + kw - 1)
    cached = (CACHED_BANDS + threads + 1) * rows * width * stored * image_item
    band_in = padded * (stored + channels) * image_item  # read, then split or made grey
    written = channels + (stored > channels)  # alpha carried through
    tiles = -(-rows // TILE) * TILE * -(-width // TILE) * TILE * written * out_item
    band_out = rows * width * channels * out_item  # for the overviews
    haloed = (rows + kh - 1, columns + kw - 1, channels)
    per_thread = haloed[0] * haloed[1] * channels * image_item  # the chunk with its halo
    per_thread += rows * columns * channels * out_item  # the chunk's pixels
    if strip_rows != 0:  # a float response, of a strip or of the whole chunk
        filtered = haloed if strip_rows is None else (min(strip_rows, rows) + kh - 1, *haloed[1:])
        per_thread += backend_peak_bytes(backend, filtered, kernel_shape, True, item)
        per_thread += filtered[0] * filtered[1] * channels * 16  # the response, clipped
    return cached + threads * (band_in + tiles + band_out + per_thread) + tiles


def plan_tiles(
    shape: tuple[int, ...],
    image_item: int,
    out_item: int,
    kernels: Sequence[Kernel],
    backend: str,
    max_memory: int | None,
    stored_channels: int | None = None,
    settings: ApplySettings | None = None,
    name: str = "the image",
    threads: int | None = None,
) -> TilePlan:
    """The bands and chunks, on as many threads as cores (or ``threads``: a cluster's), that
    fit ``max_memory`` and cost the least: about `BAND_COST` for each band and `TASK_COST`
    for each chunk of it.

    Bands are whole 256-pixel tile rows; fewer threads are used only where one chunk per
    core does not fit. ``settings`` (the rescale policy, bias, activation, precision and
    padding) tell how each chunk is filtered (`tiled_peak_bytes`).

    Raises
    ------
    UsageError
        If even bands of one tile row in chunks of one tile on one thread do not fit,
        naming ``--max-memory``.
    """
    from convkit.pipeline import ApplySettings

    settings = settings or ApplySettings()
    height, width = shape[:2]
    step = overview_step(height, width)
    unit = max(TILE, step)  # whole blocks of the overview in every band
    reach = max(max(k.shape) for k in kernels)
    cores = max(1, threads or min(MAX_THREADS, os.cpu_count() or 1))
    bands = _sizes(BAND_ROWS, unit, height, reach)
    chunks = _sizes(CHUNK_COLUMNS, TILE, width, reach)
    limit = math.inf if max_memory is None else max_memory
    item = 4 if settings.precision == "float32" else 8
    dtype = np.dtype(np.uint16 if image_item == 2 else np.uint8)

    def peak(rows: int, columns: int, threads: int) -> int:
        return max(
            tiled_peak_bytes(shape, image_item, out_item, k.shape, backend, rows, columns,
                             threads, stored_channels, item,
                             _floats_per_strip(shape, dtype, k, backend, settings, columns))
            for k in kernels
        )  # fmt: skip

    def cost(rows: int, columns: int) -> float:
        return -(-height // rows) * (BAND_COST + TASK_COST * -(-width // columns))

    for threads in range(cores, 0, -1):
        fits = [(r, c) for r in bands for c in chunks if peak(r, c, threads) <= limit]
        if fits:
            rows, columns = min(fits, key=lambda rc: (cost(*rc), -rc[1]))
            return TilePlan(rows, columns, threads, step, peak(rows, columns, threads))
    least = peak(bands[-1], chunks[-1], 1)
    raise UsageError(
        f"{name} needs about {format_size(least)} even in tiles ({width}x{height}, bands of "
        f"{bands[-1]} rows), more than --max-memory {format_size(limit)}: raise --max-memory"
    )


def limit_heap_retention(threshold: int = HEAP_RETENTION_BYTES) -> bool:
    """Have glibc's malloc return arrays of ``threshold`` bytes or more to the system when
    they are freed (``mallopt(M_MMAP_THRESHOLD)``), rather than keep them in its heap, and
    keep up to twice that free at the top of a heap (``M_TRIM_THRESHOLD``).

    A tiled run frees arrays on several threads; by default glibc raises its threshold to
    the largest array freed and then serves such arrays from heaps it keeps, so the peak
    RSS of a 20000^2 run under 128M grew by 125-130 MB, against 80 MB of live arrays. Its
    band-sized arrays are reused (`Buffers`), never freed, and what the filter allocates
    for a chunk (at most a strip of floats, `convkit.engine.STRIP_BYTES`) stays below the
    threshold, in the heap, where it is reused without a page fault (a fresh mapping
    faults each 4 KiB page in again: a 1 MiB threshold cost a 20000^2 sharpen run 2.7 s
    of system time, 4 MiB a large_blur run 1.3 s). Process-wide, so the library never calls it: the
    command line does, before a tiled run.

    Returns
    -------
    bool
        Whether it took effect (False where the C library has no ``mallopt``).
    """
    from convkit.resources import set_heap_thresholds

    return set_heap_thresholds(threshold, 2 * threshold)


def _floats_per_strip(
    shape, dtype: np.dtype, kernel: Kernel, backend: str, settings: ApplySettings, columns: int
) -> int | None:
    """The rows of float response the engine holds at once for one chunk: 0 where its
    one-pass saturating filter writes the pixels, a strip's (`convkit.engine.strip_rows`),
    or None for the whole chunk (``minmax`` and ``none`` keep the response)."""
    from convkit.backends import KNOWN_BACKENDS
    from convkit.engine import strip_rows, working_dtype

    if settings.rescale == "minmax":
        return None
    plain = settings.rescale == "clip" and not settings.bias and settings.activation is None
    exact = working_dtype(dtype, kernel.weights, settings.padding.cval, kernel.offset)
    # as `convkit.engine.convolve_to_image` decides
    float64 = settings.precision == "float64"
    if KNOWN_BACKENDS[backend].saturating and plain and float64 and exact == np.float32:
        return 0
    chunk = (shape[0] + kernel.shape[0] - 1, min(columns, shape[1]) + kernel.shape[1] - 1)
    like = np.broadcast_to(np.zeros((), dtype), chunk + tuple(shape[2:]))
    return strip_rows(like, kernel, VALID, backend, settings.rescale)


def _sizes(candidates: tuple[int, ...], unit: int, extent: int, least: int) -> list[int]:
    """Band or chunk sizes to try, largest first: multiples of ``unit``, at least
    ``least``, none beyond the image's ``extent`` rounded up to ``unit``."""
    whole = -(-extent // unit) * unit
    least = -(-max(least, 1) // unit) * unit
    return sorted({max(least, min(whole, -(-n // unit) * unit)) for n in candidates})[::-1]


# --- the decision: in memory, in tiles, or refused ----------------------------------------


def tiles_needed(
    path: str | Path,
    kernels: Sequence[Kernel | Stack],
    settings: ApplySettings,
    image_count: int = 1,
) -> bool:
    """Whether the image at ``path`` runs in tiles (`apply_tiled`) rather than in memory,
    from its header alone; for planning its outputs (``.tif``, `tiled_suffix`) and before
    reading it.

    In tiles: a Zarr store, and a TIFF whose in-memory run would exceed ``--max-memory``
    or whose pixels exceed ``--max-pixels`` (`needs_tiles`; a tiled run never holds the
    image, and a TIFF whose stored bytes are too few for its pixels is refused).

    Raises
    ------
    UsageError
        For an image of another format whose in-memory run would exceed ``--max-memory``
        (one beyond ``--max-pixels`` is refused by the reader, as before), or a tiled run of
        what it cannot write (`check_tileable`).
    """
    from convkit.imageio import probe_image

    if is_zarr(path):  # read in tiles only, whatever its size
        check_tileable(path, str(path), settings)
        return True
    tileable = can_tile(path)
    try:
        image = open_tiled(path) if tileable else None
        header = image.header() if tileable else probe_image(path, max_pixels=None)
    except ImageReadError:  # the in-memory reader says what is wrong, as for any image
        return False
    if not tileable:
        if not _over_memory(header, kernels, settings, image_count):
            return False
    elif not needs_tiles(header, kernels, settings, image_count):
        return False
    check_tileable(path, str(path), settings)
    _check_orientation(image, settings)
    return True


def needs_tiles(
    header: ImageHeader,
    kernels: Sequence[Kernel | Stack],
    settings: ApplySettings,
    image_count: int = 1,
) -> bool:
    """Whether this image is beyond an in-memory run: its estimated peak
    (`convkit.resources.run_peak_bytes`, as `convkit.pipeline.check_resources` estimates
    it) exceeds ``settings.max_memory``, or its pixels exceed ``settings.max_pixels`` (the
    bound of what is decoded whole; a tiled run never holds the whole image).

    ``header`` is what `convkit.imageio.probe_image` (or `TiledImage.header`) reads; an
    unknown channel count counts as colour, unknown bits as 8.
    """
    if settings.max_pixels is not None and header.pixels > settings.max_pixels:
        return True
    return _over_memory(header, kernels, settings, image_count)


def _over_memory(header, kernels, settings, image_count: int) -> bool:
    """Whether a backend's estimated peak in memory exceeds ``settings.max_memory``."""
    from convkit.pipeline import choose_backends, reference_crop_side, streamed_rows
    from convkit.resources import run_peak_bytes

    if settings.max_memory is None:
        return False
    shape = _colour_shape(header, settings.gray)
    image_item = 2 if (header.bits or 8) > 8 else 1
    dtype = np.uint16 if image_item == 2 else np.uint8
    crop = reference_crop_side(settings.backends, shape, kernels, image_count)
    backends, _ = choose_backends(
        settings.backends, shape, kernels, settings.repeat, image_count, crop
    )
    item = 4 if settings.precision == "float32" else 8
    valid = settings.padding.mode == "valid"
    like = np.broadcast_to(np.zeros((), dtype), shape)  # the image's shape, no memory
    for kernel in kernels:
        rows = streamed_rows(like, kernel, backends, settings)
        for layer in _layers(kernel):
            peaks = run_peak_bytes(
                backends, shape, image_item, layer.shape, valid, item, rows, encoded=True
            )
            if max(peaks.values()) > settings.max_memory:
                return True
    return False


def _colour_shape(header: ImageHeader, gray: bool) -> tuple[int, ...]:
    """(H, W) or (H, W, C) of the channels that are filtered: alpha set aside."""
    channels = 3 if header.channels is None else header.channels
    colour = 1 if gray or channels <= 2 else 3
    return (header.height, header.width) + ((colour,) if colour > 1 else ())


def _layers(kernel: Kernel | Stack) -> list[Kernel]:
    return kernel.kernels if hasattr(kernel, "kernels") else [kernel]


def check_tileable(path: str | Path | None, name: str, settings: ApplySettings) -> None:
    """Refuse an image that must run in tiles but cannot, naming ``--max-memory``.

    Raises
    ------
    UsageError
        If ``path`` is not a TIFF or Zarr image (standard input included), or the run
        asks for what a tiled run does not write (standard output, a format but tif).
    """
    if not can_tile(path):
        raise UsageError(
            f"{name} is too large to filter in memory (--max-memory, --max-pixels), and "
            f"only {FORMATS_READ_IN_TILES} images are read in tiles: convert it (vips "
            "tiffsave --tile, gdal_translate -co TILED=YES) or raise --max-memory"
        )
    if settings.out_dir is None:
        raise UsageError(f"{name} is filtered in tiles: give an --out folder, not -")
    if settings.format not in (None, "tif"):
        raise UsageError(
            f"{name} is filtered in tiles and written as a tiled TIFF: drop --format "
            f"{settings.format} (or give --format tif)"
        )


def tiled_suffix() -> str:
    """The suffix of a tiled run's filtered images, whatever ``--format`` says."""
    return ".tif"


# --- the run ------------------------------------------------------------------------------


def apply_tiled(
    source_path: str | Path,
    kernels: Sequence[Kernel | Stack],
    settings: ApplySettings,
    outputs: Sequence[OutputPair],
    progress: ProgressFn | None = None,
    image_count: int = 1,
    bands: BandRunner | None = None,
) -> ImageReport:
    """Filter a TIFF or Zarr image in tiles with every kernel and write the outputs.

    Parameters
    ----------
    source_path
        A TIFF/BigTIFF file or a Zarr directory store (`can_tile`).
    kernels
        Kernels (a ``--stack`` is refused: it runs in memory only).
    settings
        As for `convkit.pipeline.apply_image`; ``max_memory`` sizes bands and chunks
        (`plan_tiles`); ``repeat`` applies to the backends timed on the crop.
    outputs
        Per kernel, the (filtered image, comparison PNG) paths planned for the run; the
        filtered image's suffix must be ``.tif`` (`tiled_suffix`).
    progress
        ``progress(label, done, total)``, counting the output's 256x256 tiles.
    image_count
        The size of the batch this image belongs to (a batch runs ``auto`` alone).
    bands
        What filters the bands: by default this machine's threads (`LocalBands`); a
        cluster's workers with `convkit.cluster.ClusterBands`. Its ``threads`` bands at a
        time are filtered; this thread writes them.

    Returns
    -------
    ImageReport
        One row per kernel and backend: the tiled backend's time is the whole pass (read,
        filter, write; runs 1); the others ran on the crop, their times extrapolated to the
        whole image (``crop`` names the region). max |diff| is measured on the crop.

    Raises
    ------
    UsageError
        For a stack, an output that is not ``.tif``, a ``--format`` other than tif, a
        kernel larger than the image under ``valid``, a file stored turned a quarter, or
        bands that do not fit ``max_memory``.
    ImageReadError, ImageWriteError
        If the image cannot be decoded or an output cannot be written.
    KeyboardInterrupt
        Re-raised after removing the output being written.
    """
    from convkit.backends import get_backend
    from convkit.pipeline import ImageReport, KernelResult, choose_backends

    name = str(source_path)
    check_tileable(source_path, name, settings)
    image = open_tiled(source_path)
    kernels = _checked_kernels(kernels, name, outputs)
    shape = _colour_shape(image.header(), settings.gray)
    _check_orientation(image, settings)
    for kernel in kernels:
        _check_fits(shape, kernel, settings)
    crop = CROP_SIDE if image_count == 1 else None
    backends, note = choose_backends(
        settings.backends, shape, kernels, settings.repeat, image_count, crop
    )
    tiled = _tiled_backend(backends)
    for backend in backends:
        get_backend(backend)  # import its library now, not in a thread
    out_item = 4 if settings.rescale == "none" else image.dtype.itemsize
    plan = plan_tiles(shape, image.dtype.itemsize, out_item, kernels, tiled, settings.max_memory,
                      image.channels, settings, name, bands.threads if bands else None)  # fmt: skip
    notes = [note] if note else []
    notes.append(_plan_note(image, plan, settings))
    if settings.rescale == "minmax":
        notes.append("rescale minmax in tiles: a first pass finds the response's min and max")
    report = ImageReport(name, shape, backends, notes=notes)
    report.alpha = not settings.gray and image.channels in (2, 4)
    buffers = Buffers()
    runner = bands or LocalBands(plan.threads)
    cached = CACHED_BANDS + plan.threads - 1  # the halos of the bands being filtered
    reader = TiledReader(image, plan.band_rows, settings.auto_orient, cached)
    try:
        run_kernels = _run_kernels(reader, kernels, outputs, backends, tiled, plan, settings,
                                   progress, runner, buffers)  # fmt: skip
    finally:
        if bands is None:
            runner.close()
        reader.close()
    for kernel, (output, compare), run in zip(kernels, outputs, run_kernels, strict=True):
        report.results.append(
            KernelResult(kernel, run.rows, run.reference, run.tolerance, output, compare)
        )
    return report


def _run_kernels(reader, kernels, outputs, backends, tiled, plan, settings, progress, runner,
                 buffers) -> list[_KernelRun]:  # fmt: skip
    """Every kernel's pass and comparison picture, in turn."""
    runs = []
    image = reader.image
    for kernel, (output, compare) in zip(kernels, outputs, strict=True):
        run = _run_kernel(reader, kernel, backends, tiled, plan, settings, output, progress,
                          compare, runner, buffers)  # fmt: skip
        if compare is not None:
            _write_comparison(compare, run, kernel, settings, image)
        runs.append(run)
    return runs


def _checked_kernels(kernels, name: str, outputs) -> list[Kernel]:
    for kernel in kernels:
        if not isinstance(kernel, Kernel):
            raise UsageError(
                f"{name} needs tiles, and --stack {kernel.name} runs in memory only: "
                "filter with its kernels one by one, or raise --max-memory"
            )
    for output, _ in outputs:
        if output is not None and Path(output).suffix.lower() not in TIFF_SUFFIXES:
            raise UsageError(f"{name} is filtered in tiles: its output {output} must be a .tif")
    return list(kernels)


def _check_orientation(image: TiledImage, settings: ApplySettings) -> None:
    if settings.auto_orient and image.orientation in (5, 6, 7, 8):
        raise UsageError(
            f"{image.path} is stored turned a quarter (orientation {image.orientation}): "
            "convkit filters such an image in tiles only as stored (--no-auto-orient)"
        )


def _check_fits(shape: tuple[int, ...], kernel: Kernel, settings: ApplySettings) -> None:
    from convkit.engine import check_fits

    check_fits(shape, kernel, settings.padding)


def _tiled_backend(backends: Sequence[str]) -> str:
    """The backend that filters the whole image: the first one named that is not the
    readable reference (the reference only where it alone was asked for)."""
    from convkit.backends import KNOWN_BACKENDS

    fast = [b for b in backends if not KNOWN_BACKENDS[b].reference]
    return fast[0] if fast else backends[0]


def _plan_note(image: TiledImage, plan: TilePlan, settings: ApplySettings) -> str:
    limit = "no limit" if settings.max_memory is None else format_size(settings.max_memory)
    return (
        f"{image.path.name} filtered in tiles: bands of {plan.band_rows} rows in chunks of "
        f"{plan.chunk_columns} columns on {plan.threads} thread{'s' * (plan.threads > 1)} "
        f"(about {format_size(plan.peak_bytes)}, --max-memory {limit})"
    )


class _Crop(NamedTuple):
    region: Region  # in the output
    original: np.ndarray  # the input under the crop, file order
    responses: dict[str, np.ndarray]  # every backend's response on the crop
    images: dict[str, np.ndarray]  # as written (the tiled backend: read back from the file)
    timings: dict

    @property
    def geometry(self) -> str:
        y, x, height, width = self.region
        return f"{width}x{height}+{x}+{y}"


class _KernelRun(NamedTuple):
    rows: tuple
    reference: str
    tolerance: float
    overviews: _Overviews
    crop: _Crop
    step: int


class _Pass(NamedTuple):
    """What each band of one kernel's pass needs."""

    reader: TiledReader
    kernel: Kernel  # flipped for true convolution: what is correlated
    settings: ApplySettings
    backend: str
    plan: TilePlan
    shape: tuple[int, int]  # of the output
    runner: BandRunner | None  # runs the bands (`LocalBands`, or a dask cluster's)
    buffers: Buffers | None
    overviews: bool = True  # make the overviews (for the comparison picture and the crop)
    bounds: np.ndarray | None = None  # the whole response's min and max, for minmax


def _run_kernel(reader, kernel, backends, tiled, plan, settings, output, progress, compare,
                runner, buffers):  # fmt: skip
    """One kernel: the tiled pass (two for minmax), then every backend on the crop.

    Without a comparison picture and with one backend, no overviews are made: the crop,
    where that backend alone is timed, is the image's centre.
    """
    flipped = kernel.flipped() if settings.flip else kernel
    height, width = reader.image.shape[:2]
    shape = _output_shape((height, width), flipped, settings.padding)
    overviews = compare is not None or len(backends) > 1
    work = _Pass(reader, flipped, settings, tiled, plan, shape, runner, buffers, overviews)
    started = time.perf_counter()
    if settings.rescale == "minmax":
        label = f"{kernel.name}: min and max (pass 1 of 2)"
        work = work._replace(bounds=_bounds(work, progress, label))
    label = f"{kernel.name} on {tiled} (tiles)"
    overviews = _write_tiff(output, work, progress, label)
    seconds = time.perf_counter() - started
    if overviews is None:
        region = _densest_region(np.zeros((1, 1), np.float32), max(shape), shape)
    else:
        region = _densest_region(overviews.density, plan.overview_step, shape)
    crop = _crop_on_every_backend(work, region, backends, output, progress, kernel.name)
    rows, reference, tolerance = _rows(work, kernel, backends, crop, seconds, output)
    return _KernelRun(rows, reference, tolerance, overviews, crop, plan.overview_step)


def _output_shape(shape: tuple[int, int], kernel: Kernel, padding: Padding) -> tuple[int, int]:
    if padding.mode != "valid":
        return shape
    return shape[0] - kernel.shape[0] + 1, shape[1] - kernel.shape[1] + 1


def window_indices(start: int, stop: int, extent: int, mode: str | None) -> np.ndarray:
    """Indices into an axis of ``extent`` pixels for the padded positions
    ``start..stop-1``, by the padding mode's numpy rule (``numpy.pad``'s own, so equal to
    the in-memory padding); -1 outside the image under ``constant``; None (``valid``)
    when the positions lie inside.

    Examples
    --------
    >>> window_indices(-2, 3, 4, "wrap").tolist()
    [2, 3, 0, 1, 2]
    >>> window_indices(2, 7, 4, "constant").tolist()
    [2, 3, -1, -1, -1]
    """
    before, after = max(0, -start), max(0, stop - extent)
    positions = np.arange(extent)
    if not (before or after):
        return positions[start:stop]
    if mode == "constant":
        padded = np.pad(positions, (before, after), constant_values=-1)
    elif mode is None:
        raise ValueError(f"positions {start}..{stop - 1} are outside 0..{extent - 1}")
    else:
        padded = np.pad(positions, (before, after), mode=mode)
    return padded[start + before : stop + before]


def read_window(
    reader: TiledReader,
    kernel: Kernel,
    region: Region,
    settings: ApplySettings,
    buffers: Buffers | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The padded input under ``region`` of the output, with the kernel's halo: what the
    ``valid`` correlation turns into the output there, exactly as the whole image's
    padding gives it; grey if asked; and the alpha under the region (or None).

    The pixels are read into an array of ``buffers`` where given (the caller gives it
    back, `Buffers.give`, once done with the window and the alpha).

    Returns
    -------
    window : ndarray
        (height + kH - 1, width + kW - 1[, C]) in the image's type, or float64 where a
        ``constant`` border value does not fit that type.
    alpha : ndarray or None
    """
    y, x, height, width = region
    (kh, kw), (ay, ax) = kernel.shape, kernel.anchor
    padding = settings.padding
    mode = padding.spec.numpy_mode
    shift = (0, 0) if padding.mode == "valid" else (ay, ax)
    extent = reader.image.shape[:2]
    rows = window_indices(y - shift[0], y + height + kh - 1 - shift[0], extent[0], mode)
    columns = window_indices(x - shift[1], x + width + kw - 1 - shift[1], extent[1], mode)
    shape = (len(rows), len(columns)) + reader.image.shape[2:]
    out = None if buffers is None else buffers.take(shape, reader.image.dtype)
    stored = reader.take(rows, columns, out)
    colour, alpha = _split(stored, settings.gray)
    if alpha is not None:
        alpha = alpha[ay : ay + height, ax : ax + width]
    outside = (rows < 0, columns < 0)
    if outside[0].any() or outside[1].any():
        colour = _bordered(colour, outside, padding.cval)
    return colour, alpha


def _split(stored: np.ndarray, gray: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The channels to filter (grey under ``gray``, OpenCV's weights on RGB(A)) and the
    alpha carried through, as the in-memory run splits them."""
    if stored.ndim == 2:
        return stored, None
    channels = stored.shape[2]
    if gray:
        if channels == 2:
            return stored[..., 0], None
        import cv2

        code = cv2.COLOR_RGB2GRAY if channels == 3 else cv2.COLOR_RGBA2GRAY
        return cv2.cvtColor(stored, code), None
    if channels == 2:
        return stored[..., 0], stored[..., 1]
    if channels == 4:
        return stored[..., :3], stored[..., 3]
    return stored, None


def _bordered(colour: np.ndarray, outside, cval: float) -> np.ndarray:
    """``cval`` where a row or column is outside the image (``constant``), in the image's
    type where it holds ``cval`` exactly, else in float64."""
    info = np.iinfo(colour.dtype)
    if not (cval == round(cval) and info.min <= cval <= info.max):
        colour = colour.astype(np.float64)
    colour[outside[0]] = cval
    colour[:, outside[1]] = cval
    return colour


def _band_regions(shape: tuple[int, int], rows: int) -> list[Region]:
    return [(top, 0, min(rows, shape[0] - top), shape[1]) for top in range(0, shape[0], rows)]


# --- filtering bands ----------------------------------------------------------------------


class Buffers:
    """Band-sized arrays handed out, given back and handed out again (thread-safe).

    A fresh array costs a page fault per 4 KiB page the first time it is written (memory
    this size is mapped afresh by the C library, `limit_heap_retention`): a second and more
    of system time over a gigapixel. A tiled run's bands all have the same few shapes, so
    it reuses a few arrays instead. At most ``keep`` arrays are kept.
    """

    def __init__(self, keep: int = 16) -> None:
        self.keep = keep
        self._free: list[np.ndarray] = []  # flat bytes
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised array of ``shape`` and ``dtype``."""
        dtype = np.dtype(dtype)
        size = int(np.prod(shape)) * dtype.itemsize
        with self._lock:
            fits = [i for i, b in enumerate(self._free) if size <= b.size <= 2 * size + 4096]
            if fits:
                best = min(fits, key=lambda i: self._free[i].size)
                memory = self._free.pop(best)
                return memory[:size].view(dtype).reshape(shape)
        return np.empty(size, np.uint8).view(dtype).reshape(shape)

    def give(self, *arrays: np.ndarray | None) -> None:
        """Arrays of `take` (or views of them) to hand out again."""
        with self._lock:
            for array in arrays:
                while isinstance(array, np.ndarray) and isinstance(array.base, np.ndarray):
                    array = array.base
                if array is None or array.dtype != np.uint8 or array.ndim != 1:
                    continue
                if any(b is array for b in self._free):
                    continue
                self._free.append(array)
                del self._free[: -self.keep]


class _Band(NamedTuple):
    """One band, filtered: its rows of tiles in order, each (across, height, TILE[, C])."""

    rows: list[np.ndarray]
    tiles: np.ndarray  # the array the rows lie in, given back once written
    overviews: _Overviews | None


def chunk_edges(width: int, kernel_width: int, columns: int) -> list[tuple[int, int]]:
    """(start, stop) of each chunk of a padded band ``width`` columns wide: chunks of
    ``columns`` (merged where one is narrower than the kernel), each with the kW - 1
    columns that follow it, the last without them: the chunks `convkit.tiles` cuts, so
    that every chunk is filtered as it was there.

    Examples
    --------
    >>> chunk_edges(10, 3, 4)
    [(0, 6), (4, 10)]
    """
    from convkit.tiles import merged_chunks

    sizes = [columns] * (width // columns) + ([width % columns] if width % columns else [])
    sizes = merged_chunks(tuple(sizes), kernel_width)
    edges, start = [], 0
    for i, size in enumerate(sizes):
        halo = kernel_width - 1 if i < len(sizes) - 1 else 0
        edges.append((start, start + size + halo))
        start += size
    return edges


def _filter_chunk(work: _Pass, block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A chunk of a band's padded window filtered ``valid`` and turned into pixels as the
    in-memory run turns its response (with the whole response's bounds under minmax)."""
    from convkit.engine import convolve, convolve_to_image

    s = work.settings
    if work.bounds is not None:
        response = convolve(block, work.kernel, padding=VALID, backend=work.backend,
                            precision=s.precision)  # fmt: skip
        return _render_block(response, s, work.bounds, dtype)
    pixels = convolve_to_image(block, work.kernel, padding=VALID, backend=work.backend,
                               precision=s.precision, rescale=s.rescale, bias=s.bias,
                               activation=s.activation)  # fmt: skip
    return pixels.astype(np.float32) if s.rescale == "none" else pixels


def filter_band(work: _Pass, position: int) -> _Band:
    """Band ``position`` of the pass: its window read (with the halo), filtered chunk by
    chunk, laid out as the output's tiles with its alpha; its overviews if asked for."""
    buffers = work.buffers
    region = _band_regions(work.shape, work.plan.band_rows)[position]
    _, _, rows, width = region
    colour, alpha = read_window(work.reader, work.kernel, region, work.settings, buffers)
    dtype = _output_dtype(work)
    channels = _filtered_channels(work.reader.image, work.settings)
    alpha_channel = channels if alpha is not None else None
    total = channels + (alpha is not None)
    across = -(-width // TILE)
    tiles = buffers.take((-(-rows // TILE), across, TILE, TILE) + ((total,) if total > 1 else ()),
                         dtype)  # fmt: skip
    band = None
    if work.overviews:  # the pixels as a band too, for the overviews
        band = buffers.take((rows, width) + ((channels,) if channels > 1 else ()), dtype)
    place = 0
    for start, stop in chunk_edges(colour.shape[1], work.kernel.shape[1], work.plan.chunk_columns):
        pixels = _filter_chunk(work, colour[:, start:stop], dtype)
        if band is not None:
            band[:, place : place + pixels.shape[1]] = pixels
        else:
            _into_tiles(tiles, pixels, place, 0 if alpha_channel is not None else None)
        place += pixels.shape[1]
    if band is not None:
        _into_tiles(tiles, band, 0, 0 if alpha_channel is not None else None)
    if alpha is not None:
        _into_tiles(tiles, alpha, 0, alpha_channel)
    if width % TILE:  # the last tile of each row: zeros beyond the image, as tifffile pads
        tiles[:, -1, :, width % TILE :] = 0
    overviews = None
    if band is not None:
        colour_out = band[..., np.newaxis] if alpha is not None and band.ndim == 2 else band
        overviews = _band_overviews(work, position, colour, colour_out)
    buffers.give(colour, alpha, band)
    tile_rows = [tiles[r, :, : min(TILE, rows - r * TILE)] for r in range(tiles.shape[0])]
    return _Band(tile_rows, tiles, overviews)


def _output_dtype(work: _Pass) -> np.dtype:
    if work.settings.rescale == "none":  # written as float32, as encode_float_tiff writes it
        return np.dtype(np.float32)
    return work.reader.image.dtype


def _into_tiles(tiles: np.ndarray, block: np.ndarray, left: int, channel: int | None) -> None:
    """Copy ``block`` (the band's rows, columns from ``left``, a multiple of `TILE`) into
    ``tiles`` (rows of tiles, tiles across, TILE, TILE[, C]): into its channels from
    ``channel`` on, or all of them for None."""
    rows, columns = block.shape[:2]
    first, whole, rest = left // TILE, columns // TILE, columns % TILE
    extra = block.shape[2:]
    for r in range(-(-rows // TILE)):
        part = block[r * TILE : (r + 1) * TILE]
        height = part.shape[0]
        target = tiles[r]
        if channel is not None:
            target = target[..., channel : channel + (extra[0] if extra else 1)]
            if not extra:
                target = target[..., 0]
        if whole:
            split = part[:, : whole * TILE].reshape(height, whole, TILE, *extra)
            target[first : first + whole, :height] = split.swapaxes(0, 1)
        if rest:
            target[first + whole, :height, :rest] = part[:, whole * TILE :]


def _band_overviews(work: _Pass, position: int, window: np.ndarray, colour: np.ndarray):
    """The overviews of one band: of the input under it (under ``valid`` the last band
    takes the input's last rows) and of its pixels, and its detail density."""
    regions = _band_regions(work.shape, work.plan.band_rows)
    _, _, rows, columns = regions[position]
    ay, ax = work.kernel.anchor
    if work.settings.padding.mode != "valid":
        original = window[ay : ay + rows, ax : ax + columns]
    else:
        original = window if position == len(regions) - 1 else window[:rows]
    step = work.plan.overview_step
    density = detail_density(colour, step)
    return _Overviews(overview(original, step), overview(colour, step), density)


def band_bounds(work: _Pass, position: int) -> tuple[float, float]:
    """The response's min and max over band ``position``: the first pass of ``minmax``."""
    from convkit.engine import convolve

    region = _band_regions(work.shape, work.plan.band_rows)[position]
    colour, alpha = read_window(work.reader, work.kernel, region, work.settings, work.buffers)
    low, high = math.inf, -math.inf
    for start, stop in chunk_edges(colour.shape[1], work.kernel.shape[1], work.plan.chunk_columns):
        response = convolve(colour[:, start:stop], work.kernel, padding=VALID,
                            backend=work.backend, precision=work.settings.precision)  # fmt: skip
        low, high = min(low, float(response.min())), max(high, float(response.max()))
    work.buffers.give(colour, alpha)
    return low, high


class BandRunner(Protocol):
    """What filters a tiled run's bands: ``submit(function, work, position)`` returns a
    future of ``function(work, position)`` (`filter_band` or `band_bounds`), whose
    ``result()`` waits for it and whose ``cancel()`` drops it; ``threads`` bands at a time."""

    threads: int

    def submit(self, function: Callable, work: _Pass, position: int): ...


class LocalBands:
    """Bands run on this machine's threads (OpenCV and numpy let go of the GIL)."""

    def __init__(self, threads: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="convkit-band")

    def submit(self, function: Callable, work: _Pass, position: int):
        return self._pool.submit(function, work, position)

    def close(self) -> None:
        # a band being filtered cannot be stopped: it ends on its own, its result unused
        self._pool.shutdown(wait=False, cancel_futures=True)


def _in_order(work: _Pass, function, count: int) -> Iterator:
    """``function(work, position)`` for every band, results in order, `TilePlan.threads`
    bands ahead of the one handed out; the bands not run are cancelled if the caller stops."""
    from collections import deque

    pending: deque = deque()
    try:
        for position in range(count):
            pending.append(work.runner.submit(function, work, position))
            if len(pending) > work.plan.threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def _bounds(work: _Pass, progress, label: str) -> np.ndarray:
    """The whole response's min and max, band by band: the first pass of ``minmax``."""
    low, high = math.inf, -math.inf
    total = _tile_count(work.shape)
    regions = _band_regions(work.shape, work.plan.band_rows)
    for region, (band_low, band_high) in zip(
        regions, _in_order(work, band_bounds, len(regions)), strict=True
    ):
        low, high = min(low, band_low), max(high, band_high)
        if progress is not None:
            bottom = region[0] + region[2]
            progress(label, min(total, -(-bottom // TILE) * -(-work.shape[1] // TILE)), total)
    return np.array([low, high])


def _render_block(block: np.ndarray, settings, bounds, dtype) -> np.ndarray:
    """A response as pixels: `to_image`, and under ``minmax`` with the whole response's
    ``bounds`` (appended to the values, so that they stretch exactly as the whole
    response would be stretched)."""
    from convkit.postprocess import to_image

    like = np.uint16 if dtype == np.uint16 else np.uint8
    if bounds is None:
        pixels = to_image(block, like, settings.rescale, settings.bias, settings.activation)
        return pixels.astype(dtype, copy=False)
    values = np.concatenate([block.reshape(-1), bounds])
    stretched = to_image(values, like, "minmax", settings.bias, settings.activation)
    return stretched[:-2].reshape(block.shape)


def _tile_count(shape: tuple[int, ...]) -> int:
    return -(-shape[0] // TILE) * -(-shape[1] // TILE)


# --- overviews ----------------------------------------------------------------------------


class _Overviews(NamedTuple):
    original: np.ndarray  # block means of the input (file order, alpha set aside)
    output: np.ndarray  # block means of the output (alpha set aside)
    density: np.ndarray  # `detail_density` of the output


def overview(band: np.ndarray, step: int) -> np.ndarray:
    """The band's block means of ``step`` x ``step`` pixels, from every `_sampled_rows`-th
    row of each block (a picture of at most `OVERVIEW_SIDE` pixels a side shows no
    difference, and it costs an eighth)."""
    every = _sampled_rows(step)
    return block_mean(band[::every], (step // every, step))


def _sampled_rows(step: int) -> int:
    return max(1, step // 8)


def detail_density(band: np.ndarray, step: int) -> np.ndarray:
    """How much detail an output band has, as block means of ``step`` x ``step`` pixels,
    float32: |pixel - its right neighbour| + |pixel - the one below|, summed over channels
    (a cheaper cousin of the |pixel - 3x3 mean| that `detail_region` scores), from every
    `_sampled_rows`-th row. Integer bands are scored in their own type."""
    import cv2

    every = _sampled_rows(step)
    values = np.asarray(band)
    if values.dtype.kind == "f":
        values = np.nan_to_num(values.astype(np.float32), posinf=0.0, neginf=0.0)
    rows = np.arange(0, values.shape[0], every)
    sampled = np.ascontiguousarray(values[rows])
    below = np.ascontiguousarray(values[np.minimum(rows + 1, values.shape[0] - 1)])
    detail = cv2.absdiff(sampled, below)
    right = cv2.absdiff(sampled[:, 1:], sampled[:, :-1])
    detail[:, :-1] = cv2.add(detail[:, :-1], right)  # saturating, as 8-bit detail may be
    density = block_mean(detail, (max(1, step // every), step))
    return density.sum(axis=2) if density.ndim == 3 else density


def block_mean(array: np.ndarray, step: int | tuple[int, int]) -> np.ndarray:
    """Means of blocks of ``step`` rows by ``step`` columns (or of (rows, columns) for a
    pair), the last row and column of blocks partial, as float32.

    Examples
    --------
    >>> block_mean(np.arange(20.0).reshape(4, 5), 2)
    array([[ 3. ,  5. ,  6.5],
           [13. , 15. , 16.5]], dtype=float32)
    >>> block_mean(np.arange(20.0).reshape(4, 5), (1, 5))
    array([[ 2.],
           [ 7.],
           [12.],
           [17.]], dtype=float32)
    """
    down, across = (step, step) if isinstance(step, int) else step
    values = np.asarray(array)
    if down == across == 1:
        return values.astype(np.float32)
    # float32 sums of 8-bit values are exact up to 2**24 / 255 of them; others use float64
    total = np.float32 if values.dtype == np.uint8 and down * across <= 2**16 else np.float64
    height, width = values.shape[:2]
    rows, columns = height // down, width // across
    out = np.empty((-(-height // down), -(-width // across)) + values.shape[2:], np.float32)
    if rows and columns:
        whole = values[: rows * down, : columns * across]
        sums = whole.reshape(rows, down, *whole.shape[1:]).sum(axis=1, dtype=total)
        sums = sums.reshape(rows, columns, across, *sums.shape[2:]).sum(axis=2)
        out[:rows, :columns] = sums / (down * across)
    for y in range(rows, out.shape[0]):  # the partial last row of blocks
        out[y] = _means_along(values[y * down :].mean(axis=0, dtype=np.float64), across)
    for x in range(columns, out.shape[1]):  # the partial last column of blocks
        out[:, x] = _means_along(values[:, x * across :].mean(axis=1, dtype=np.float64), down)
    return out


def _means_along(line: np.ndarray, step: int) -> np.ndarray:
    starts = np.arange(0, line.shape[0], step)
    sums = np.add.reduceat(line, starts, axis=0)
    counts = np.diff(np.append(starts, line.shape[0])).reshape((-1,) + (1,) * (line.ndim - 1))
    return sums / counts


def _densest_region(
    density: np.ndarray, step: int, shape: tuple[int, int], side: int = CROP_SIDE
) -> Region:
    """The ``side`` x ``side`` region of the output with the most detail: the window of
    blocks of the density map (block means of ``step`` pixels) with the largest sum; the
    centre where there is no detail."""
    height, width = shape
    window = (min(side, height), min(side, width))
    b0 = min(max(1, window[0] // step), density.shape[0])
    b1 = min(max(1, window[1] // step), density.shape[1])
    sums = np.pad(np.cumsum(np.cumsum(density, axis=0, dtype=np.float64), axis=1),
                  ((1, 0), (1, 0)))  # fmt: skip
    windows = sums[b0:, b1:] - sums[:-b0, b1:] - sums[b0:, :-b1] + sums[:-b0, :-b1]
    if not windows.max() > 0:
        return (height - window[0]) // 2, (width - window[1]) // 2, window[0], window[1]
    top, left = np.unravel_index(int(np.argmax(windows)), windows.shape)
    centre = ((top + b0 / 2) * step, (left + b1 / 2) * step)
    y = int(np.clip(round(centre[0] - window[0] / 2), 0, height - window[0]))
    x = int(np.clip(round(centre[1] - window[1] / 2), 0, width - window[1]))
    return y, x, window[0], window[1]


# --- writing ------------------------------------------------------------------------------


def _write_tiff(output, work: _Pass, progress, label: str) -> _Overviews | None:
    """Filter the bands, `TilePlan.threads` at a time, and write their tiles in order,
    atomically; the overviews along the way (where the pass makes them)."""
    pieces: list[_Overviews] = []
    total, counter = _tile_count(work.shape), [0]
    alpha = not work.settings.gray and work.reader.image.channels in (2, 4)
    count = len(_band_regions(work.shape, work.plan.band_rows))

    def tiles() -> Iterator[np.ndarray]:
        for band in _in_order(work, filter_band, count):
            if band.overviews is not None:
                pieces.append(band.overviews)
            for row in band.rows:
                for tile in row:
                    yield tile
                    counter[0] += 1
                    if progress is not None:
                        progress(label, counter[0], total)
            work.buffers.give(band.tiles)  # tifffile has written them: it writes as it goes

    channels = _filtered_channels(work.reader.image, work.settings) + alpha
    shape = work.shape + ((channels,) if channels > 1 else ())
    _write_atomic_tiff(output, shape, _output_dtype(work), tiles(), work.reader.image,
                       work.settings)  # fmt: skip
    if not pieces:
        return None
    return _Overviews(*(np.concatenate(layer) for layer in zip(*pieces, strict=True)))


def _filtered_channels(image: TiledImage, settings) -> int:
    shape = _colour_shape(image.header(), settings.gray)
    return shape[2] if len(shape) == 3 else 1


def _write_atomic_tiff(output, shape, dtype, tiles, image: TiledImage, settings) -> Path | None:
    """Write ``tiles`` (in order) as a tiled TIFF to a temporary file beside ``output``,
    renamed into place; the temporary is removed if anything goes wrong (Ctrl-C too)."""
    if output is None:  # no output planned: the pass is run for the overviews alone
        for _ in tiles:
            pass
        return None
    import tifffile

    from convkit.imageio import atomic_output

    output = Path(output)
    with (
        atomic_output(output) as stream,
        tifffile.TiffWriter(stream, bigtiff=_needs_bigtiff(shape, dtype, image)) as writer,
    ):
        writer.write(tiles, shape=shape, dtype=dtype, tile=(TILE, TILE), metadata=None,
                     **_tiff_options(shape, image))  # fmt: skip
    return output


def _needs_bigtiff(shape: tuple[int, ...], dtype: np.dtype, image: TiledImage) -> bool:
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return image.format == "BigTIFF" or size > BIGTIFF_FROM_BYTES


def _tiff_options(shape: tuple[int, ...], image: TiledImage) -> dict:
    """Photometric, alpha, and the input's ICC profile and resolution."""
    channels = shape[2] if len(shape) == 3 else 1
    colour = 3 if channels >= 3 else 1
    options: dict = {"photometric": "rgb" if colour == 3 else "minisblack"}
    if channels in (2, 4):
        options["extrasamples"] = ("unassalpha",)
    profile = icc_profile_for(image.info, colour)
    if profile is not None:
        options["iccprofile"] = profile
    dpi = dpi_for(image.info)
    if dpi is not None:
        options.update(resolution=dpi, resolutionunit=2)  # inch
    return options


# --- the crop, every backend on it --------------------------------------------------------


def _crop_on_every_backend(work: _Pass, region: Region, backends, output, progress, name):
    """Every backend on the crop in memory, timed (the reference's progress shown); the
    tiled backend's pixels there read back from the written file."""
    from convkit.engine import convolve
    from convkit.timing import Timing, run_timed

    window, alpha = read_window(work.reader, work.kernel, region, work.settings)
    responses: dict[str, np.ndarray] = {}
    images: dict[str, np.ndarray] = {}
    timings: dict[str, Timing] = {}
    dtype = np.dtype(np.float32) if work.settings.rescale == "none" else window.dtype
    for backend in backends:
        report = _crop_progress(progress, f"{name} on {backend} (crop)")

        def run(backend: str = backend, report=report) -> np.ndarray:
            return convolve(window, work.kernel, padding="valid", backend=backend,
                            progress=report, precision=work.settings.precision)  # fmt: skip

        responses[backend], timings[backend] = run_timed(backend, run, work.settings.repeat)
        images[backend] = _render_block(responses[backend], work.settings, work.bounds, dtype)
    if output is not None:
        images[work.backend] = _read_back(output, region, alpha is not None)
    _, _, height, width = region
    ay, ax = work.kernel.anchor
    original = window[ay : ay + height, ax : ax + width]
    return _Crop(region, original, responses, images, timings)


def _read_back(output: Path, region: Region, alpha: bool) -> np.ndarray:
    """The written output's pixels on ``region`` (alpha set aside)."""
    y, x, height, width = region
    with TiledReader(_open_tiff(Path(output)), TILE, upright=False) as reader:
        pixels = reader.take(np.arange(y, y + height), np.arange(x, x + width))
    return pixels[..., :-1] if alpha else pixels


def _crop_progress(progress, label: str):
    if progress is None:
        return None

    def report(done: int, total: int) -> None:
        progress(label, done, total)

    return report


def _rows(work: _Pass, kernel: Kernel, backends, crop: _Crop, seconds: float, output):
    """The table's rows, the reference, and the agreement tolerance on the crop."""
    from convkit.backends import reference_among
    from convkit.pipeline import BackendRow
    from convkit.timing import Timing, agreement_factor, agreement_tolerance, max_abs_diff

    reference = reference_among(backends) or backends[0]
    _, _, height, width = crop.region
    scale = work.shape[0] * work.shape[1] / (height * width)
    rows = []
    for backend in backends:
        if backend == work.backend:
            timing, where = Timing(backend, (seconds,)), None
        else:
            timing = Timing(backend, tuple(t * scale for t in crop.timings[backend].seconds))
            where = crop.geometry
        diff = 0.0
        if backend != reference:
            diff = max_abs_diff(crop.responses[backend], crop.responses[reference])
        rows.append(
            BackendRow(
                image=str(work.reader.image.path),
                kernel=kernel.name,
                kernel_shape=kernel.shape,
                backend=backend,
                padding=work.settings.padding.mode,
                flip=work.settings.flip,
                runs=timing.runs,
                median_ms=timing.median_ms,
                min_ms=timing.min_ms,
                max_abs_diff=diff,
                output=str(output) if backend == work.backend and output else None,
                crop=where,
            )  # fmt: skip
        )
    factor = agreement_factor(backends, work.settings.precision)
    tolerance = agreement_tolerance(kernel.abs_sum, crop.original, factor)
    return tuple(rows), reference, tolerance


# --- the comparison picture ---------------------------------------------------------------


def _write_comparison(path, run: _KernelRun, kernel: Kernel, settings, image: TiledImage):
    from convkit.imageio import encode_image, write_atomic

    picture = comparison_picture(run, kernel, settings, image)
    write_atomic(path, encode_image(picture, info=image.info))


def comparison_picture(run: _KernelRun, kernel: Kernel, settings, image: TiledImage):
    """The comparison of a tiled run: the title; the input's and the output's overviews,
    the crop outlined, and the kernel's heatmap; below, the crop at 1:1: the input, each
    backend (the tiled one as written), and |diff| against the reference."""
    from convkit.compare import GAP, TITLE_SCALE, difference_panel, kernel_picture, label_bar
    from convkit.compare import labelled as framed

    crop, step = run.crop, run.step
    y, x, height, width = crop.region
    kind = np.dtype(np.float32) if settings.rescale == "none" else image.dtype
    shown_in, scale = _overview_panel(run.overviews.original, step, crop.region, image.dtype)
    shown_out, _ = _overview_panel(run.overviews.output, step, crop.region, kind)
    tiled = next(row for row in run.rows if row.crop is None)
    full = f"{image.shape[1]}x{image.shape[0]}"
    top = [
        framed(shown_in, f"original {full}, shown at {scale:.2%}"),
        kernel_picture(kernel, int(np.clip(shown_in.shape[0], 160, 360))),
        framed(shown_out, f"{tiled.backend}, in tiles  {tiled.median_ms / 1000:.1f} s"),
    ]
    bottom = [framed(_display(crop.original, image.dtype), f"1:1 at y {y}, x {x}")]
    for row in run.rows:
        label = (
            f"{row.backend}  {row.median_ms:.0f} ms*" if row.crop else f"{row.backend}, as written"
        )
        bottom.append(framed(_display(crop.images[row.backend]), label))
    if len(crop.responses) > 1:
        diff, label = difference_panel(crop.responses, run.reference)
        bottom.append(framed(_display(diff), f"{label}\non the crop"))
    body = _column([_row(top, GAP), _row(bottom, GAP)], GAP)
    operation = "convolution (flipped)" if settings.flip else "correlation"
    extrapolated = " (* timed on it, extrapolated)" if any(r.crop for r in run.rows) else ""
    title = (
        f"{kernel.name} ({kernel.shape[0]}x{kernel.shape[1]})  |  padding "
        f"{settings.padding.mode}  |  {operation}  |  rescale {settings.rescale}\n"
        f"filtered in tiles; below, a {width}x{height} crop at 1:1, every backend on it"
        f"{extrapolated}"
    )
    picture = np.vstack([label_bar(title, body.shape[1], scale=TITLE_SCALE), body])
    return np.pad(picture, ((GAP, GAP), (GAP, GAP), (0, 0)), constant_values=255)


def _overview_panel(overview: np.ndarray, step: int, region: Region, kind: np.dtype):
    """The overview as a panel (at most the panel size), the crop outlined; and the
    panel's scale against the image."""
    import cv2

    from convkit.compare import OUTLINE, panel_geometry, resize_panel

    scale = panel_geometry(*overview.shape[:2]).scale
    picture = np.ascontiguousarray(resize_panel(_display(overview, kind), scale))
    top, left, bottom, right = (
        int(region[0] * scale / step), int(region[1] * scale / step),
        int((region[0] + region[2]) * scale / step) - 1,
        int((region[1] + region[3]) * scale / step) - 1,
    )  # fmt: skip
    bottom, right = max(bottom, top), max(right, left)
    cv2.rectangle(picture, (left - 1, top - 1), (right + 1, bottom + 1), (0, 0, 0))
    cv2.rectangle(picture, (left, top), (right, bottom), OUTLINE)
    return picture, scale / step


def _display(image: np.ndarray, kind: np.dtype | None = None) -> np.ndarray:
    """8-bit BGR for the picture, from pixels (or block means of pixels) of type ``kind``
    (by default the array's own) in file order (RGB); float outputs stretched."""
    from convkit.compare import to_display

    image = np.asarray(image)
    kind = np.dtype(kind or image.dtype)
    if kind.kind == "f":
        image = _stretch_for_display(image)
    elif image.dtype != kind:
        image = np.rint(image).astype(kind)
    return to_display(_bgr(image))


def _stretch_for_display(image: np.ndarray) -> np.ndarray:
    low, high = float(np.nanmin(image)), float(np.nanmax(image))
    if high <= low:
        return np.full(image.shape, 128, dtype=np.uint8)
    return np.rint((image - low) * (255.0 / (high - low))).astype(np.uint8)


def _bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 3:
        return image[..., ::-1]
    if image.ndim == 3 and image.shape[2] == 4:
        return image[..., [2, 1, 0, 3]]
    return image


def _row(pictures: list[np.ndarray], gap: int) -> np.ndarray:
    return _joined(pictures, gap, axis=1)


def _column(pictures: list[np.ndarray], gap: int) -> np.ndarray:
    return _joined(pictures, gap, axis=0)


def _joined(pictures: list[np.ndarray], gap: int, axis: int) -> np.ndarray:
    """Pictures side by side (axis 1, top-aligned) or one under another (axis 0,
    left-aligned), ``gap`` px of white between them."""
    across = 1 - axis
    extent = max(p.shape[across] for p in pictures)
    parts = []
    for i, picture in enumerate(pictures):
        if i:
            shape = [0, 0, 3]
            shape[axis], shape[across] = gap, extent
            parts.append(np.full(shape, 255, dtype=np.uint8))
        widths = [(0, 0), (0, 0), (0, 0)]
        widths[across] = (0, extent - picture.shape[across])
        parts.append(np.pad(picture, widths, constant_values=255))
    return np.concatenate(parts, axis=axis)
