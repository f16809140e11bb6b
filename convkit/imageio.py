"""Read and write images with clear errors; atomic writes; never overwrite an input.

In memory, colour images are in OpenCV's channel order (BGR, BGRA); float responses saved as
``.npy`` are written in RGB(A) order, as scikit-image and matplotlib expect.

Reading is guarded in three steps, each before anything large is allocated:

1. only regular files are opened (`check_input_file`): a FIFO would block, ``/dev/zero``
   never ends;
2. the header alone gives the image's size, channels and sample type (`read_header`, with a
   byte budget), checked against ``max_pixels`` and against what convkit can filter;
3. only then are the encoded bytes read -- at most the file's size, or from a stream a bound
   derived from ``max_pixels`` (`max_encoded_bytes`) -- and decoded by OpenCV, its messages
   silenced and its log level restored afterwards.

What the file says besides its pixels (`ImageInfo`: EXIF orientation, ICC profile, DPI,
frames) is read from the same bytes by `convkit.metadata`, which never fails a read. Images
are turned upright as OpenCV's ``cv2.imread`` turns them, unless ``auto_orient=False``.
Grey+alpha images stay two channels (OpenCV reads them as BGRA, or without their alpha).

Writing: `encode_image` writes PNG (OpenCV, or `convkit.png` for large and grey+alpha
images), JPEG and WebP (Pillow) and TIFF (written here: Deflate strips), each with the
input's ICC profile and resolution and never an orientation tag; `check_output_format`
refuses, before any work, what a format cannot hold.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import numbers
import os
import stat
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from convkit.errors import ImageReadError, ImageWriteError, UsageError
from convkit.image_headers import HeaderError, ImageHeader, parse_header_bytes, read_header
from convkit.metadata import (
    TIFF_LONG,
    TIFF_SHORT,
    TIFF_UNDEFINED,
    ImageInfo,
    TiffDirectory,
    UnreadableMetadata,
    dpi_for,
    exif_with_resolution,
    icc_profile_for,
    pack_tiff_directory,
    read_image_info,
    resolution_entries,
)

# Pillow's decompression-bomb threshold.
DEFAULT_MAX_PIXELS = 178_956_970

# What an encoded image may hold beyond its pixels: metadata, thumbnails, colour profiles.
ENCODED_SLACK_BYTES = 16 << 20
# An uncompressed image of 4 channels x 16 bits; plain-text PNM spends up to 3 x "65535 ".
BINARY_BYTES_PER_PIXEL = 8
TEXT_BYTES_PER_PIXEL = 24
# Standard input is read in pieces of this size.
STDIN_CHUNK_BYTES = 1 << 20
STDIN_NAME = "standard input"

CHANNELS_CONVKIT_READS = "convkit reads grey, grey+alpha, colour, colour+alpha"
SAMPLES_CONVKIT_READS = "convkit reads 8- and 16-bit unsigned images"


class ImageSource(NamedTuple):
    """One input image: a file, or bytes read from standard input.

    ``subfolder`` is where its outputs go under ``--out`` (a folder walked with
    ``--recursive`` mirrors its layout there).
    """

    name: str
    path: Path | None = None
    data: bytes | None = None
    subfolder: Path = Path()

    @classmethod
    def from_path(cls, path: str | Path, subfolder: Path = Path()) -> ImageSource:
        return cls(str(path), Path(path), None, subfolder)

    @property
    def stem(self) -> str:
        return self.path.stem if self.path is not None else "stdin"

    def read(
        self, max_pixels: int | None = DEFAULT_MAX_PIXELS, auto_orient: bool = True
    ) -> np.ndarray:
        """The image's pixels, as `read_with_info` gives them."""
        return self.read_with_info(max_pixels, auto_orient)[0]

    def read_with_info(
        self, max_pixels: int | None = DEFAULT_MAX_PIXELS, auto_orient: bool = True
    ) -> tuple[np.ndarray, ImageInfo]:
        """The image's pixels, and what its file says besides them.

        Parameters
        ----------
        max_pixels
            The most pixels (width x height) accepted, checked from the header; None for
            no limit.
        auto_orient
            Turn the pixels upright as the file's EXIF orientation says (as viewers and
            ``cv2.imread`` do); False keeps the stored order.

        Returns
        -------
        image : ndarray
            uint8 or uint16: (H, W) grey, (H, W, 2) grey+alpha, (H, W, 3) BGR or
            (H, W, 4) BGRA; the first frame or page of a multi-frame file.
        info : ImageInfo
            ICC profile, DPI, the orientation the file had, and its number of frames.

        Raises
        ------
        UsageError, ImageReadError
            As `read_image` does.
        """
        if self.data is not None:
            return decode_image_with_info(self.data, self.name, max_pixels, auto_orient)
        return read_image_with_info(self.path, max_pixels, auto_orient)


# --- step 1: only regular files ---------------------------------------------------------------


def check_input_file(path: str | Path) -> Path:
    """Make sure ``path`` is a regular file (or a link to one), looking only at its metadata.

    Nothing is opened: opening a FIFO blocks until a writer comes, and a device such as
    ``/dev/zero`` never ends.

    Parameters
    ----------
    path
        The image path as the user gave it.

    Returns
    -------
    Path
        ``path`` as a `Path`.

    Raises
    ------
    UsageError
        If the path does not exist, or is a folder, a FIFO, a device or a socket.
    ImageReadError
        If its metadata cannot be read (no permission to search a folder on the way).
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise UsageError(f"image not found: {path}{_broken_link_note(path)}") from None
    except PermissionError as exc:
        raise ImageReadError(f"cannot read {path}: {exc.strerror}") from None
    except (OSError, ValueError) as exc:  # a link loop, a name too long, a NUL byte
        raise UsageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISDIR(mode):
        raise UsageError(f"{path} is a folder: give an image file")
    if not stat.S_ISREG(mode):
        link = "a symbolic link to " if os.path.islink(path) else ""
        raise UsageError(f"{path} is {link}{_file_kind(mode)}, not a regular file")
    return path


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a file")


def _broken_link_note(path: Path) -> str:
    return " (a broken symbolic link)" if os.path.islink(path) else ""


@contextlib.contextmanager
def _open_regular_file(path: Path) -> Iterator[BinaryIO]:
    """Open ``path`` for reading without blocking, and make sure it is still a regular file.

    `check_input_file` looked before; this closes the gap in which the file could have been
    replaced by a FIFO (``O_NONBLOCK`` keeps the open from blocking; ``fstat`` tells).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(path, flags)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise UsageError(f"{path} is {_file_kind(mode)}, not a regular file")
        stream = os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
    with stream:
        yield stream


# --- reading: files, standard input, bytes ----------------------------------------------------


def read_image(
    path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS, auto_orient: bool = True
) -> np.ndarray:
    """Read an image as OpenCV does with IMREAD_UNCHANGED -- depth, alpha and all -- turned
    upright as its EXIF orientation says; `read_image_with_info` tells what else the file
    holds."""
    return read_image_with_info(path, max_pixels, auto_orient)[0]


def read_image_with_info(
    path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS, auto_orient: bool = True
) -> tuple[np.ndarray, ImageInfo]:
    """Read an image, depth, alpha and all, and what its file says besides its pixels.

    The header is read and checked first; the rest of the file only when the image is within
    ``max_pixels`` and has channels and samples convkit can filter.

    Parameters
    ----------
    path
        A regular file.
    max_pixels
        The most pixels (width x height) accepted; None for no limit.
    auto_orient
        Turn the pixels upright as the file's EXIF orientation (2..8) says, exactly as
        ``cv2.imread`` does by default; False keeps the stored order.

    Returns
    -------
    image : ndarray
        uint8 or uint16, (H, W) for grey, (H, W, 2) grey+alpha, (H, W, 3) BGR or
        (H, W, 4) BGRA; the first frame or page of a multi-frame file.
    info : ImageInfo
        Its ICC profile, DPI, the orientation it had and its number of frames; a corrupt
        EXIF block or profile reads as absent.

    Raises
    ------
    UsageError
        If the path does not exist or is not a regular file, or the image has more than
        ``max_pixels`` pixels (or more bytes than such an image can take).
    ImageReadError
        If the file cannot be read or decoded (empty, truncated, not an image), or holds
        channels or a sample type that convkit does not filter.
    """
    path = check_input_file(path)
    source = str(path)
    try:
        with _open_regular_file(path) as stream:
            header, size = _checked_file_header(stream, source, max_pixels)
            stream.seek(0)
            data = _read_whole_file(stream, size, source)
    except OSError as exc:
        raise ImageReadError(f"cannot read {source}: {exc.strerror or exc}") from None
    return _decode(data, source, header, max_pixels, auto_orient)


def probe_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Check an image file as `read_image` does, reading only its header.

    For checking every input of a run before the work starts.

    Returns
    -------
    ImageHeader
        Its format, size, and channels and sample type where the header says.

    Raises
    ------
    UsageError, ImageReadError
        As `read_image` would, except for faults found only by decoding.
    """
    path = check_input_file(path)
    try:
        with _open_regular_file(path) as stream:
            return _checked_file_header(stream, str(path), max_pixels)[0]
    except OSError as exc:
        raise ImageReadError(f"cannot read {path}: {exc.strerror or exc}") from None


def _checked_file_header(
    stream: BinaryIO, source: str, max_pixels: int | None
) -> tuple[ImageHeader, int]:
    size = os.fstat(stream.fileno()).st_size
    if size == 0:
        raise ImageReadError(f"cannot decode {source}: the file is empty")
    header = read_header(stream, source)
    check_image_header(header, source, max_pixels)
    # A file's size is known before it is read: only --max-pixels bounds it (metadata may
    # make a small image's file large). A stream is bounded by its header's own size.
    bound = max_encoded_bytes(max_pixels, text_samples=header.text_samples)
    if bound is not None and size > bound:
        raise UsageError(
            f"{source} is {size:,} bytes, more than an image within --max-pixels "
            f"{max_pixels:,} can take ({bound:,} bytes): raise --max-pixels if you trust it"
        )
    return header, size


def _read_whole_file(stream: BinaryIO, size: int, source: str) -> bytes:
    """The file's bytes: one more than its size is asked for, to notice a file that grows."""
    data = stream.read(size + 1)
    if len(data) != size:
        raise ImageReadError(f"cannot read {source}: its size changed while it was being read")
    return data


def read_stdin_image_bytes(
    stream: BinaryIO, name: str = STDIN_NAME, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> bytes:
    """Read one encoded image from a binary stream (standard input), bounded by its header.

    The header is read first (64 KiB, more only while a header needs it) and checked as
    `read_image` checks a file's; the rest is read up to `max_encoded_bytes`, so that an
    endless stream (``cat /dev/zero |``) stops with an error instead of filling memory.

    Parameters
    ----------
    stream
        A binary stream, such as ``sys.stdin.buffer``; it need not be seekable.
    name
        How errors name the stream.
    max_pixels
        The most pixels accepted; None for no limit (the stream is then read to its end).

    Returns
    -------
    bytes
        The encoded image, for `decode_image` (or ``ImageSource(name, data=...)``).

    Raises
    ------
    UsageError
        If the image has more than ``max_pixels`` pixels, or the stream holds more bytes
        than an image of ``max_pixels`` pixels can take.
    ImageReadError
        If the stream is empty, is not an image, or breaks off inside the header.
    """
    search_limit = max_encoded_bytes(max_pixels, text_samples=True)
    head = _read_up_to(stream, 64 << 10)
    if not head:
        raise ImageReadError(f"cannot decode {name}: it is empty")
    while True:
        try:
            header = parse_header_bytes(head)
            break
        except HeaderError as exc:
            room = len(head) if search_limit is None else search_limit + 1 - len(head)
            more = _read_up_to(stream, min(len(head), room)) if exc.out_of_data else b""
            if not more:
                raise exc.as_read_error(name) from None
            head += more  # twice as much to look at, until the header is complete
            if search_limit is not None and len(head) > search_limit:
                raise _stream_too_long(name, search_limit, max_pixels) from None
    check_image_header(header, name, max_pixels)
    bound = max_encoded_bytes(max_pixels, header)
    return _read_rest_of_stream(stream, head, bound, name, header)


def _read_rest_of_stream(
    stream: BinaryIO, head: bytes, bound: int | None, name: str, header: ImageHeader
) -> bytes:
    buffer = io.BytesIO()
    buffer.write(head)
    total = len(head)
    while bound is None or total <= bound:
        wanted = STDIN_CHUNK_BYTES if bound is None else min(STDIN_CHUNK_BYTES, bound + 1 - total)
        chunk = _read_up_to(stream, wanted)
        if not chunk:
            return buffer.getvalue()  # no copy: the buffer hands over its bytes
        buffer.write(chunk)
        total += len(chunk)
    raise UsageError(
        f"{name} holds more than {bound:,} bytes, more than the {header.width}x{header.height} "
        f"{header.format} image its header describes can take"
    )


def _stream_too_long(name: str, bound: int, max_pixels: int | None) -> UsageError:
    return UsageError(
        f"{name} holds more than {bound:,} bytes, more than an image within --max-pixels "
        f"{max_pixels:,} can take: raise --max-pixels if you trust it"
    )


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes: fewer only at the end of the stream (pipes deliver in pieces)."""
    pieces = []
    remaining = size
    while remaining > 0:
        piece = stream.read(remaining)
        if not piece:  # b"" at the end; None from a non-blocking stream with nothing ready
            break
        pieces.append(piece)
        remaining -= len(piece)
    return b"".join(pieces)


def max_encoded_bytes(
    max_pixels: int | None, header: ImageHeader | None = None, *, text_samples: bool = False
) -> int | None:
    """The most bytes an encoded image of at most ``max_pixels`` pixels can reasonably take.

    An uncompressed image of 4 channels x 16 bits (8 bytes a pixel; 24 for plain-text PNM,
    whose samples are written out in decimal), plus `ENCODED_SLACK_BYTES` for metadata. With
    a ``header``, its own pixel count bounds it where that is smaller. None when there is no
    bound at all.
    """
    if header is not None:  # the image's own size bounds it better than the limit
        max_pixels = header.pixels if max_pixels is None else min(max_pixels, header.pixels)
    if max_pixels is None:
        return None
    text = text_samples or (header is not None and header.text_samples)
    per_pixel = TEXT_BYTES_PER_PIXEL if text else BINARY_BYTES_PER_PIXEL
    return max_pixels * per_pixel + ENCODED_SLACK_BYTES


def decode_image(
    data: bytes,
    source: str,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    auto_orient: bool = True,
) -> np.ndarray:
    """Decode encoded image bytes as `decode_image_with_info` does; the pixels only."""
    return decode_image_with_info(data, source, max_pixels, auto_orient)[0]


def decode_image_with_info(
    data: bytes,
    source: str,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    auto_orient: bool = True,
) -> tuple[np.ndarray, ImageInfo]:
    """Decode encoded image bytes, checking their header first; ``source`` names them in errors.

    Returns the pixels and `ImageInfo`, as `read_image_with_info` does.

    Raises
    ------
    UsageError
        If the image has more than ``max_pixels`` pixels.
    ImageReadError
        If the bytes are empty, not an image, truncated, or hold channels or samples that
        convkit does not filter.
    """
    if not data:
        raise ImageReadError(f"cannot decode {source}: the file is empty")
    header = read_header(io.BytesIO(data), source)
    check_image_header(header, source, max_pixels)
    return _decode(data, source, header, max_pixels, auto_orient)


# --- step 2: the header (read by `convkit.image_headers`) ---------------------------------


def check_image_header(header: ImageHeader, source: str, max_pixels: int | None) -> None:
    """Refuse, from its header alone, an image that convkit cannot or may not filter.

    Raises
    ------
    ImageReadError
        If it has more than 4 channels, or samples other than 8- or 16-bit unsigned ones.
    UsageError
        If it has more than ``max_pixels`` pixels.
    """
    if header.channels is not None and header.channels > 4:
        raise ImageReadError(
            f"cannot filter {source}: it has {header.channels} channels ({CHANNELS_CONVKIT_READS})"
        )
    samples = _unsupported_samples(header.sample_kind, header.bits)
    if samples is not None:
        raise ImageReadError(f"cannot filter {source}: {samples} samples ({SAMPLES_CONVKIT_READS})")
    _check_pixels((header.width, header.height), source, max_pixels)


def _unsupported_samples(kind: str | None, bits: int | None) -> str | None:
    """A name such as "32-bit float" for samples convkit cannot filter; None for fine ones."""
    if kind is None:
        return None
    size = f"{bits}-bit " if bits else ""
    if kind == "float":
        return f"{size}float"
    if kind == "complex":
        return f"{size}complex"
    if kind == "signed":
        return f"{size}signed integer"
    if bits is not None and bits > 16:
        return f"{size}unsigned integer"
    return None


def _check_pixels(size: tuple[int, int], source: str, max_pixels: int | None) -> None:
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise UsageError(
            f"{source} is {width}x{height} = {width * height:,} pixels, more than "
            f"--max-pixels {max_pixels:,}: raise --max-pixels if you trust it"
        )


# --- step 3: decoding -------------------------------------------------------------------------


def _decode(
    data: bytes, source: str, header: ImageHeader, max_pixels: int | None, auto_orient: bool
) -> tuple[np.ndarray, ImageInfo]:
    info = read_image_info(data, header.format)
    if header.channels == 2 and header.format in ("TIFF", "BigTIFF"):
        image = _decode_grey_alpha_tiff(data, source)
    elif header.format in ("TIFF", "BigTIFF"):
        image = _decode_with_opencv(_tiff_relabelled(data, header), source, header, max_pixels)
    else:
        image = _decode_with_opencv(data, source, header, max_pixels)
    if auto_orient and info.orientation != 1:
        image = upright(image, info.orientation)
    return image, info


def _decode_with_opencv(
    data: bytes, source: str, header: ImageHeader, max_pixels: int | None
) -> np.ndarray:
    image = _imdecode(data)
    if image is None:
        raise ImageReadError(f"cannot decode {source}: {_why_undecodable(data, header)}")
    _check_pixels(image.shape[1::-1], source, max_pixels)
    if image.ndim == 3 and image.shape[2] not in (2, 3, 4):
        raise ImageReadError(
            f"cannot filter {source}: it has {image.shape[2]} channels ({CHANNELS_CONVKIT_READS})"
        )
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(
            f"cannot filter {source}: {_dtype_name(image.dtype)} samples ({SAMPLES_CONVKIT_READS})"
        )
    if header.channels == 2 and image.ndim == 3 and image.shape[2] == 4:
        image = image[..., [0, 3]]  # OpenCV spreads grey+alpha over B, G, R (equal) and A
    return image


# EXIF orientation -> (transpose first?, then cv2.flip's code or None): OpenCV's own turns.
_UPRIGHT_TURNS = {
    2: (False, 1),
    3: (False, -1),
    4: (False, 0),
    5: (True, None),
    6: (True, 1),
    7: (True, -1),
    8: (True, 0),
}


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels as a viewer shows an image of EXIF ``orientation`` (1..8): the same turns
    and flips as ``cv2.imread`` makes (without IMREAD_IGNORE_ORIENTATION).

    Parameters
    ----------
    image
        (H, W) or (H, W, C), as stored.
    orientation
        The EXIF orientation; 1 (or anything outside 2..8) returns ``image`` as it is.

    Returns
    -------
    ndarray
        A new array, (W, H[, C]) for orientations 5..8.
    """
    if orientation not in _UPRIGHT_TURNS:
        return image
    import cv2

    transpose, flip = _UPRIGHT_TURNS[orientation]
    if transpose:
        image = cv2.transpose(image)
    if flip is not None:
        image = cv2.flip(image, flip)
    return image


def _tiff_relabelled(data: bytes, header: ImageHeader) -> bytes:
    """A TIFF relabelled (in a copy) so that OpenCV hands over its samples as stored.

    OpenCV turns a TIFF upright itself, even with IMREAD_UNCHANGED (and unlike the other
    formats): its orientation is relabelled 1, so that `upright` turns every format alike
    and ``auto_orient=False`` keeps the stored order. And it reads 8-bit RGBA through
    libtiff's RGBA interface, which multiplies the colour by an unassociated alpha (200 at
    alpha 128 comes back as 100): such an alpha is relabelled associated, which that
    interface hands over unchanged.
    """
    try:
        directory = TiffDirectory.first(data)
        relabels = []
        if _single_short(directory, 274) not in (None, 1):
            relabels.append((274, 1))
        if header.channels == 4 and header.bits == 8 and _single_short(directory, 338) == 2:
            relabels.append((338, 1))
    except (UnreadableMetadata, struct.error):
        return data
    if not relabels:
        return data
    relabelled = bytearray(data)
    for tag, value in relabels:
        field_at = directory.entries[tag][2]
        relabelled[field_at : field_at + 2] = struct.pack(directory.order + "H", value)
    return bytes(relabelled)


def _single_short(directory: TiffDirectory, tag: int) -> int | None:
    """The tag's value if it is one SHORT (held in the entry itself), else None."""
    kind, count, _ = directory.entries.get(tag, (0, 0, 0))
    return int(directory.number(tag)) if (kind, count) == (TIFF_SHORT, 1) else None


# TIFF compression codes for Deflate (the registered one and the old one)
TIFF_DEFLATE = 8
TIFF_OLD_DEFLATE = 32946
GREY_ALPHA_TIFFS_CONVKIT_READS = "convkit reads grey+alpha TIFFs in strips, uncompressed or Deflate"


def _decode_grey_alpha_tiff(data: bytes, source: str) -> np.ndarray:
    """A TIFF of grey and one extra sample (taken as alpha, which convkit carries through).

    OpenCV drops such an alpha (8-bit) or misreads the image (16-bit), so it is decoded
    here: chunky strips, uncompressed or Deflate, with or without horizontal differencing --
    what convkit writes and Pillow and most tools do.
    """
    try:
        layout = _GreyAlphaTiff.of(TiffDirectory.first(data))
    except (UnreadableMetadata, struct.error, ValueError) as exc:
        raise ImageReadError(f"cannot decode {source}: corrupt TIFF directory ({exc})") from None
    if layout.unsupported:
        raise ImageReadError(
            f"cannot decode {source}: a grey+alpha TIFF with {layout.unsupported} "
            f"({GREY_ALPHA_TIFFS_CONVKIT_READS})"
        )
    image = np.empty((layout.height, layout.width, 2), layout.dtype.newbyteorder("="))
    row_bytes = layout.width * 2 * layout.dtype.itemsize
    view = memoryview(data)
    for index, top in enumerate(range(0, layout.height, layout.rows_per_strip)):
        rows = min(layout.rows_per_strip, layout.height - top)
        start, count = layout.offsets[index], layout.counts[index]
        stored = view[start : start + count]
        wanted = rows * row_bytes
        samples = stored if layout.compression == 1 else _inflated(stored, wanted)
        if len(stored) < count or len(samples) < wanted:
            raise ImageReadError(f"cannot decode {source}: truncated or corrupt TIFF strip {index}")
        strip = np.frombuffer(samples, layout.dtype, rows * layout.width * 2)
        strip = strip.reshape(rows, layout.width, 2)
        if layout.predictor == 2:  # each sample stored as the difference from its left one
            strip = np.cumsum(strip, axis=1, dtype=image.dtype)  # wraps, as the encoder did
        image[top : top + rows] = strip
    if layout.photometric == 0:  # white is zero
        np.subtract(np.iinfo(image.dtype).max, image[..., 0], out=image[..., 0])
    return image


def _inflated(stored: memoryview, size: int) -> bytes:
    """At most ``size`` bytes inflated from a Deflate strip; fewer if it is cut or corrupt."""
    try:
        return zlib.decompressobj().decompress(stored, size)
    except zlib.error:
        return b""


class _GreyAlphaTiff(NamedTuple):
    width: int
    height: int
    dtype: np.dtype
    compression: int
    predictor: int
    photometric: int
    rows_per_strip: int
    offsets: list[int]
    counts: list[int]
    unsupported: str | None

    @classmethod
    def of(cls, directory: TiffDirectory) -> _GreyAlphaTiff:
        width, height = int(directory.number(256)), int(directory.number(257))
        bits = {int(value) for value in directory.numbers(258)}
        compression = int(directory.number(259, 1))
        predictor = int(directory.number(317, 1))
        rows_per_strip = int(min(max(directory.number(278, height), 1), height))
        strips = -(-height // rows_per_strip)
        offsets, counts = [], []
        if directory.has(273) and directory.has(279):
            offsets = [int(value) for value in directory.numbers(273)]
            counts = [int(value) for value in directory.numbers(279)]
        unsupported = next(
            (
                what
                for fault, what in (
                    (bits not in ({8}, {16}), f"{'/'.join(map(str, sorted(bits)))}-bit samples"),
                    (directory.has(322), "tiles"),
                    (directory.number(284, 1) != 1, "its samples in separate planes"),
                    (
                        compression not in (1, TIFF_DEFLATE, TIFF_OLD_DEFLATE),
                        f"compression {compression}",
                    ),
                    (predictor not in (1, 2), f"predictor {predictor}"),
                    (min(len(offsets), len(counts)) < strips, "missing strips"),
                )
                if fault
            ),
            None,
        )
        dtype = np.dtype(np.uint8) if bits == {8} else np.dtype(directory.order + "u2")
        photometric = int(directory.number(262, 1))
        return cls(
            width, height, dtype, compression, predictor, photometric, rows_per_strip,
            offsets, counts, unsupported,
        )  # fmt: skip


def _imdecode(data: bytes) -> np.ndarray | None:
    """cv2.imdecode, None where OpenCV cannot decode the data.

    What libpng and libjpeg print about a corrupt file goes to file descriptor 2, which the
    command line silences for its whole run (`convkit.cli.silence_native_messages`); the
    library leaves a host program's descriptors and OpenCV log level alone.
    """
    import cv2

    try:
        return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None


def _why_undecodable(data: bytes, header: ImageHeader) -> str:
    """Why OpenCV could not decode data whose header was fine, as far as can be told."""
    if header.data_end is not None and len(data) < header.data_end:
        return (
            f"truncated {header.format} file ({len(data):,} bytes, where its header "
            f"needs {header.data_end:,})"
        )
    if header.format == "PNG" and data.rfind(b"IEND") < 0:
        return "truncated PNG file (it ends before its IEND chunk)"
    if header.format == "JPEG" and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
        return "truncated JPEG file (it ends before its end-of-image marker)"
    return f"a {header.format} file that OpenCV cannot decode (corrupt, or a kind it does not read)"


def _dtype_name(dtype: np.dtype) -> str:
    kinds = {"f": "float", "c": "complex", "i": "signed integer", "u": "unsigned integer"}
    if dtype.kind in kinds:
        return f"{dtype.itemsize * 8}-bit {kinds[dtype.kind]}"
    return str(dtype)


# --- writing ----------------------------------------------------------------------------------

# From this size up, a PNG is deflated on all of OpenCV's threads by `convkit.png`; below it,
# and where OpenCV has one thread (batch workers), cv2.imencode's single thread is faster.
PARALLEL_PNG_BYTES = 4 << 20

OUTPUT_FORMATS = ("png", "jpg", "tif", "webp")
OUTPUT_SUFFIXES = {"png": ".png", "jpg": ".jpg", "tif": ".tif", "webp": ".webp"}
_FORMATS_BY_SUFFIX = {
    ".png": "png",
    ".jpg": "jpg",
    ".jpeg": "jpg",
    ".tif": "tif",
    ".tiff": "tif",
    ".webp": "webp",
}
EIGHT_BIT_FORMATS = frozenset({"jpg", "webp"})
QUALITY_FORMATS = frozenset({"jpg", "webp"})
DEFAULT_JPEG_QUALITY = 95  # OpenCV's default, and mogrify's for photos without a quality
# The largest width and height each format holds.
MAX_SIDES = {"png": 0x7FFF_FFFF, "jpg": 65_500, "tif": 0xFFFF_FFFF, "webp": 16_383}
# A TIFF's strips: this many bytes of samples each, deflated on OpenCV's threads. Level 4,
# filtered: on a 12 MP photo as small as OpenCV's LZW TIFF, in about the same time (level 6
# takes four times as long for 8% less).
TIFF_STRIP_BYTES = 256 << 10
TIFF_DEFLATE_LEVEL = 4
DEFAULT_WEBP_QUALITY = 90
TIFF_LIMIT_BYTES = 0xFFFF_FFFF  # classic TIFF offsets are 32-bit


def check_output_format(
    format: str,
    dtype: np.dtype | type,
    quality: int | None,
    *,
    shape: tuple[int, ...] | None = None,
    source: str | None = None,
) -> None:
    """Refuse, before any work, an output that ``--format`` and ``--quality`` cannot give.

    Parameters
    ----------
    format
        One of `OUTPUT_FORMATS`.
    dtype
        The output's sample type: the input's (uint8, uint16) for filtered images; a float
        type for ``--rescale none``, which only ``tif`` takes (as 32-bit float; ``.npy``
        needs no check).
    quality
        ``--quality``: None, or 1..100 for ``jpg`` and ``webp``.
    shape
        The output's shape, if known: checked against the format's largest size.
    source
        The input's name, for the message (default "the image").

    Raises
    ------
    UsageError
        For an unknown format; 16-bit samples into ``jpg`` or ``webp``; float samples into
        anything but ``tif``; a quality outside 1..100, or given for ``png`` or ``tif``; an
        image wider or taller than the format holds.
    """
    name = source or "the image"
    if format not in OUTPUT_FORMATS:
        raise UsageError(f"unknown --format {format!r}: choose png, jpg, tif or webp")
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and format != "tif":
        raise UsageError(
            f"--format {format} holds whole-number samples, not the float response of "
            "--rescale none: use --format tif (32-bit float) or no --format (.npy)"
        )
    if dtype == np.uint16 and format in EIGHT_BIT_FORMATS:
        raise UsageError(
            f"{name} is 16-bit; {format} holds 8-bit samples: use --format png or tif, "
            "or convert it to 8-bit first"
        )
    if dtype.kind != "f" and dtype not in (np.uint8, np.uint16):
        raise UsageError(f"{name} has {_dtype_name(dtype)} samples; convkit writes 8 and 16 bits")
    _check_quality(format, quality)
    if shape is not None and max(shape[:2]) > MAX_SIDES[format]:
        raise UsageError(
            f"{name} is {shape[1]}x{shape[0]}; {format} holds at most "
            f"{MAX_SIDES[format]:,} pixels a side: use --format png or tif"
        )


def _check_quality(format: str, quality: int | None) -> None:
    if quality is None:
        return
    if format not in QUALITY_FORMATS:
        raise UsageError(f"--quality applies to jpg and webp, not to {format}")
    if isinstance(quality, bool) or not isinstance(quality, numbers.Integral):
        raise UsageError(f"--quality must be a whole number from 1 to 100, not {quality!r}")
    if not 1 <= quality <= 100:
        raise UsageError(f"--quality {quality} is outside 1..100")


def encode_image(
    image: np.ndarray,
    suffix: str = ".png",
    *,
    info: ImageInfo | None = None,
    quality: int | None = None,
) -> bytes:
    """Encode an image in the format of ``suffix``, with the input's profile and resolution.

    Parameters
    ----------
    image
        uint8 or uint16: (H, W) grey, (H, W, 2) grey+alpha, (H, W, 3) BGR or (H, W, 4)
        BGRA (OpenCV's order, as `read_image` gives).
    suffix
        ``.png``, ``.jpg``/``.jpeg``, ``.tif``/``.tiff`` or ``.webp``. Any other suffix
        that OpenCV writes (``.bmp``, ``.ppm``, ...) is written by OpenCV, without metadata.
    info
        The input's `ImageInfo`: its ICC profile is embedded where it fits the output's
        colour model (an RGB profile into colour outputs, a grey one into grey outputs;
        none into the grey output of a colour photo), its DPI always. An orientation is
        never written: outputs are upright.
    quality
        1..100, for ``.jpg`` (default `DEFAULT_JPEG_QUALITY`, 95) and ``.webp`` (default
        `DEFAULT_WEBP_QUALITY`, 90; 100 is lossless WebP: exact pixels).

    Returns
    -------
    bytes
        The encoded file. Grey+alpha stays grey+alpha in PNG (LA) and TIFF (an extra
        alpha sample). JPEG holds no alpha: it is dropped (grey+alpha gives grey, BGRA
        colour), as OpenCV and ImageMagick do. WebP holds no grey: grey is written as
        RGB, grey+alpha as RGBA. TIFF is Deflate-compressed, with horizontal differencing.

    Raises
    ------
    UsageError
        As `check_output_format` does (16-bit into ``.jpg``/``.webp``, a bad quality).
    ImageWriteError
        If the array is no image of the kinds above, or the encoder fails.
    """
    format = _FORMATS_BY_SUFFIX.get(suffix.lower())
    if format is None:
        if quality is not None:
            raise UsageError(f"--quality applies to jpg and webp, not to {suffix}")
        return _encode_with_opencv(image, suffix)
    image = _checked_image(image, format)
    check_output_format(format, image.dtype, quality, shape=image.shape)
    return _ENCODERS[format](image, info, quality)


def _checked_image(image: np.ndarray, format: str) -> np.ndarray:
    """``image`` as (H, W) or (H, W, 2..4) uint8/uint16, or an `ImageWriteError`."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    channels_fine = image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (2, 3, 4))
    if not channels_fine or image.dtype not in (np.uint8, np.uint16) or image.size == 0:
        raise ImageWriteError(
            f"cannot encode a {image.dtype} array of shape {image.shape} as {format}: "
            "convkit writes uint8/uint16 grey, grey+alpha, BGR and BGRA images"
        )
    return image


def _colour_channels(image: np.ndarray) -> int:
    """1 for grey (with or without alpha), 3 for colour."""
    return 1 if image.ndim == 2 or image.shape[2] == 2 else 3


def _encode_with_opencv(image: np.ndarray, suffix: str) -> bytes:
    import cv2

    try:
        ok, encoded = cv2.imencode(suffix, image)
    except cv2.error:
        ok = False
    if not ok:
        raise ImageWriteError(f"OpenCV cannot encode a {image.dtype} image as {suffix}")
    return encoded.tobytes()


def _encode_png(image: np.ndarray, info: ImageInfo | None, quality: int | None) -> bytes:
    import cv2

    from convkit import png

    chunks = []
    profile = icc_profile_for(info, _colour_channels(image))
    if profile is not None:
        chunks.append(png.icc_chunk(profile))
    dpi = dpi_for(info)
    if dpi is not None:
        chunks.append(png.resolution_chunk(dpi))
    threads = cv2.getNumThreads() if image.nbytes >= PARALLEL_PNG_BYTES else 1
    if threads > 1 or image.ndim == 3 and image.shape[2] == 2:  # OpenCV writes no grey+alpha
        return png.encode_png(image, threads, chunks)
    return png.insert_chunks(_encode_with_opencv(image, ".png"), chunks)


def _encode_jpeg(image: np.ndarray, info: ImageInfo | None, quality: int | None) -> bytes:
    if image.ndim == 3 and image.shape[2] in (2, 4):  # JPEG holds no alpha
        image = image[..., 0] if image.shape[2] == 2 else image[..., :3]
    options: dict[str, object] = {"quality": quality or DEFAULT_JPEG_QUALITY}
    profile = icc_profile_for(info, _colour_channels(image))
    if profile is not None:
        options["icc_profile"] = profile
    dpi = dpi_for(info)
    if dpi is not None and all(0.5 <= value < 65_535.5 for value in dpi):  # JFIF: 16 bits
        options["dpi"] = dpi
    return _saved_by_pillow(_in_file_order(image), "JPEG", options)


def _encode_webp(image: np.ndarray, info: ImageInfo | None, quality: int | None) -> bytes:
    if image.ndim == 2:  # WebP holds no grey
        image = np.repeat(image[..., np.newaxis], 3, axis=2)
    elif image.shape[2] == 2:
        image = image[..., [0, 0, 0, 1]]
    if quality == 100:  # lossless, at the fastest effort; exact: colour under alpha 0 kept
        options: dict[str, object] = {"lossless": True, "exact": True, "quality": 0, "method": 0}
    else:
        options = {"quality": quality or DEFAULT_WEBP_QUALITY}
    profile = icc_profile_for(info, 3)
    if profile is not None:
        options["icc_profile"] = profile
    dpi = dpi_for(info)
    if dpi is not None:  # WebP keeps a resolution only in EXIF
        options["exif"] = exif_with_resolution(dpi)
    return _saved_by_pillow(_in_file_order(image), "WEBP", options)


def _saved_by_pillow(image: np.ndarray, format: str, options: dict[str, object]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    try:
        Image.fromarray(image).save(buffer, format, **options)
    except (OSError, ValueError) as exc:
        raise ImageWriteError(f"cannot encode the image as {format}: {exc}") from None
    return buffer.getvalue()


def _in_file_order(image: np.ndarray) -> np.ndarray:
    """Colour in RGB(A) order, contiguous, as image files and Pillow hold it; grey as it is."""
    if image.ndim == 3 and image.shape[2] in (3, 4):
        import cv2

        code = cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
        return cv2.cvtColor(np.ascontiguousarray(image), code)
    return np.ascontiguousarray(image)


def _encode_tiff(image: np.ndarray, info: ImageInfo | None, quality: int | None) -> bytes:
    return _tiff_file(_in_file_order(image), info, differences=True)


def encode_float_tiff(response: np.ndarray, info: ImageInfo | None = None) -> bytes:
    """A float response (``--rescale none --format tif``) as a 32-bit float TIFF.

    Colour is written in RGB(A) order, as `encode_npy` writes it; an alpha (the last of 2 or
    4 channels) is an extra sample holding the values it has in ``response``. Pillow opens
    grey ones (mode "F"); OpenCV, tifffile, ImageMagick and GIMP open them all.

    Parameters
    ----------
    response
        Real numbers, (H, W) or (H, W, C) with C in 1..4, BGR(A) order; rounded to
        float32 (non-finite values are kept).
    info
        The input's `ImageInfo`: its DPI and, where it fits the colour model, its ICC
        profile are embedded (the values are the input's channels, filtered).

    Returns
    -------
    bytes
        The TIFF file, Deflate-compressed.

    Raises
    ------
    ImageWriteError
        If ``response`` is no such array, or the file would pass 4 GiB.
    """
    response = np.asarray(response)
    if response.ndim == 3 and response.shape[2] == 1:
        response = response[..., 0]
    channels_fine = response.ndim == 2 or (response.ndim == 3 and response.shape[2] in (2, 3, 4))
    if not channels_fine or response.dtype.kind not in "uif" or response.size == 0:
        raise ImageWriteError(
            f"cannot encode a {response.dtype} array of shape {response.shape} as a float TIFF"
        )
    return _tiff_file(_in_file_order(response.astype(np.float32)), info, differences=False)


def _tiff_file(samples: np.ndarray, info: ImageInfo | None, *, differences: bool) -> bytes:
    """A little-endian TIFF of one image: grey, grey+alpha, RGB or RGBA ``samples`` in file
    order (uint8, uint16 or float32), in Deflate strips; integer samples stored as
    differences from their left neighbours (predictor 2), which deflate better."""
    height, width = samples.shape[:2]
    channels = 1 if samples.ndim == 2 else samples.shape[2]
    samples = samples.astype(samples.dtype.newbyteorder("<"), copy=False)
    if differences:
        samples = _horizontal_differences(samples)
    rows_per_strip = max(1, TIFF_STRIP_BYTES // (width * channels * samples.dtype.itemsize))
    strips = _deflated_strips(samples, rows_per_strip)
    data_size = sum(len(strip) for strip in strips)
    directory_at = 8 + data_size + (data_size & 1)
    profile = icc_profile_for(info, 1 if channels <= 2 else 3)
    if directory_at + (1 << 20) + len(profile or b"") > TIFF_LIMIT_BYTES:
        raise ImageWriteError(
            f"a {width}x{height} image takes more than the 4 GiB a TIFF file holds: "
            "use --format png"
        )
    offsets = list(itertools.accumulate((len(strip) for strip in strips[:-1]), initial=8))
    bits = 8 * samples.dtype.itemsize
    entries = [
        (256, TIFF_LONG, [width]),
        (257, TIFF_LONG, [height]),
        (258, TIFF_SHORT, [bits] * channels),
        (259, TIFF_SHORT, [TIFF_DEFLATE]),
        (262, TIFF_SHORT, [1 if channels <= 2 else 2]),  # min-is-black grey, or RGB
        (273, TIFF_LONG, offsets),
        (277, TIFF_SHORT, [channels]),
        (278, TIFF_LONG, [rows_per_strip]),
        (279, TIFF_LONG, [len(strip) for strip in strips]),
        (284, TIFF_SHORT, [1]),  # samples interleaved
        (317, TIFF_SHORT, [2 if differences else 1]),
        (339, TIFF_SHORT, [3 if samples.dtype.kind == "f" else 1] * channels),
    ]
    if channels in (2, 4):
        entries.append((338, TIFF_SHORT, [2]))  # the extra sample is unassociated alpha
    if profile is not None:
        entries.append((34675, TIFF_UNDEFINED, profile))
    dpi = dpi_for(info)
    if dpi is not None:
        entries += resolution_entries(dpi)
    header = b"II*\0" + struct.pack("<I", directory_at)
    padding = b"\0" * (data_size & 1)
    return b"".join([header, *strips, padding, pack_tiff_directory(entries, directory_at)])


def _horizontal_differences(samples: np.ndarray) -> np.ndarray:
    """Each sample less the same channel's sample to its left, wrapping as unsigned numbers
    do; the first column as it is."""
    differences = samples.copy()
    np.subtract(samples[:, 1:], samples[:, :-1], out=differences[:, 1:])
    return differences


def _deflated_strips(samples: np.ndarray, rows_per_strip: int) -> list[bytes]:
    """Each strip of ``rows_per_strip`` rows as one zlib stream, on OpenCV's threads (zlib
    lets go of the GIL while it works)."""
    import cv2

    tops = range(0, samples.shape[0], rows_per_strip)

    def deflate(top: int) -> bytes:
        compressor = zlib.compressobj(TIFF_DEFLATE_LEVEL, zlib.DEFLATED, 15, 8, zlib.Z_FILTERED)
        return compressor.compress(samples[top : top + rows_per_strip]) + compressor.flush()

    threads = min(cv2.getNumThreads(), len(tops))
    if threads <= 1:
        return [deflate(top) for top in tops]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(deflate, tops))


_ENCODERS = {"png": _encode_png, "jpg": _encode_jpeg, "tif": _encode_tiff, "webp": _encode_webp}


def encode_npy(response: np.ndarray) -> bytes:
    """A float response as ``.npy`` bytes, colour reordered from BGR(A) to RGB(A)."""
    if response.ndim == 3 and response.shape[2] in (3, 4):
        order = [2, 1, 0, 3][: response.shape[2]]
        response = response[..., order]
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(response, dtype=np.float64), allow_pickle=False)
    return buffer.getvalue()


def ensure_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and its parents) if needed; an `ImageWriteError` if that fails."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageWriteError(
            f"cannot create output folder {folder}: {exc.strerror or exc}"
        ) from None
    return folder


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a new temporary file beside ``path``, then rename it into place
    (`atomic_output`).

    An interrupted run leaves either the old file or the new one, never a truncated one.
    """
    with atomic_output(path) as stream:
        stream.write(data)
    return Path(path)


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[BinaryIO]:
    """A binary stream onto a new temporary file beside ``path``, renamed into place when
    the block ends; removed instead if it raises (Ctrl-C, SIGTERM and SIGHUP included).

    The temporary file (`temporary_prefix` + 8 hex digits + ``.tmp``) is created
    exclusively (never an existing file) with the usual mode (0666 less the umask).

    Raises
    ------
    ImageWriteError
        If the folder, the temporary file or the rename fails.
    """
    path = Path(path)
    folder = ensure_folder(path.parent)
    try:
        temporary = folder / f"{temporary_prefix(path.name)}{os.urandom(4).hex()}.tmp"
        stream = open(temporary, "xb")  # noqa: SIM115 - closed below, before the rename
    except OSError as exc:
        raise ImageWriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with stream:  # a named file: writers such as tifffile want its name
            yield stream
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise ImageWriteError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


# A file name may hold 255 bytes on the common file systems; a temporary name adds 14.
_MAX_NAME_BYTES = 255
_TEMPORARY_EXTRA = len(".") + len(".") + 8 + len(".tmp")


def temporary_prefix(name: str) -> str:
    """``.NAME.``: how `write_atomic`'s temporary files for ``name`` begin (then 8 hex
    digits and ``.tmp``). A name too long to carry 14 more bytes is cut, so that every name
    that can be written can be written atomically."""
    room = _MAX_NAME_BYTES - _TEMPORARY_EXTRA
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) > room:
        name = encoded[:room].decode("utf-8", "ignore")
    return f".{name}."


def refuse_overwriting_inputs(outputs: Iterable[Path], inputs: Iterable[Path]) -> None:
    """A `UsageError` naming both paths if any output would replace an input."""
    resolved_inputs = {Path(p).resolve(): Path(p) for p in inputs}
    for output in outputs:
        source = resolved_inputs.get(Path(output).resolve())
        if source is not None:
            raise UsageError(
                f"refusing to overwrite the input {source} with the output {output}: "
                "choose another --out folder"
            )
