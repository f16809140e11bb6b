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
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from convkit.errors import ImageReadError, ImageWriteError, UsageError
from convkit.image_headers import HeaderError, ImageHeader, parse_header_bytes, read_header

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

    def read(self, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
        if self.data is not None:
            return decode_image(self.data, self.name, max_pixels)
        return read_image(self.path, max_pixels)


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


def read_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image as OpenCV does with IMREAD_UNCHANGED: depth, alpha and all.

    The header is read and checked first; the rest of the file only when the image is within
    ``max_pixels`` and has channels and samples convkit can filter.

    Parameters
    ----------
    path
        A regular file.
    max_pixels
        The most pixels (width x height) accepted; None for no limit.

    Returns
    -------
    ndarray
        uint8 or uint16, (H, W) for grey, (H, W, 3) BGR or (H, W, 4) BGRA.

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
    return _decode(data, source, header, max_pixels)


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
    bound = max_encoded_bytes(max_pixels, header)
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
    return _read_rest_of_stream(stream, head, bound, name, max_pixels)


def _read_rest_of_stream(
    stream: BinaryIO, head: bytes, bound: int | None, name: str, max_pixels: int | None
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
    raise _stream_too_long(name, bound, max_pixels)


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
    whose samples are written out in decimal), plus `ENCODED_SLACK_BYTES` for metadata.
    None when ``max_pixels`` is None.
    """
    if max_pixels is None:
        return None
    text = text_samples or (header is not None and header.text_samples)
    per_pixel = TEXT_BYTES_PER_PIXEL if text else BINARY_BYTES_PER_PIXEL
    return max_pixels * per_pixel + ENCODED_SLACK_BYTES


def decode_image(
    data: bytes, source: str, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode encoded image bytes, checking their header first; ``source`` names them in errors.

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
    return _decode(data, source, header, max_pixels)


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


def _decode(data: bytes, source: str, header: ImageHeader, max_pixels: int | None) -> np.ndarray:
    image = _decode_quietly(data)
    if image is None:
        raise ImageReadError(f"cannot decode {source}: {_why_undecodable(data, header)}")
    _check_pixels(image.shape[1::-1], source, max_pixels)
    if image.ndim == 3 and image.shape[2] not in (3, 4):
        raise ImageReadError(
            f"cannot filter {source}: it has {image.shape[2]} channels ({CHANNELS_CONVKIT_READS})"
        )
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(
            f"cannot filter {source}: {_dtype_name(image.dtype)} samples ({SAMPLES_CONVKIT_READS})"
        )
    return image


def _decode_quietly(data: bytes) -> np.ndarray | None:
    """cv2.imdecode with nothing printed; None where OpenCV cannot decode the data."""
    import cv2

    with _silenced_decoders():
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


class _DecoderSilence:
    """OpenCV's log level set to silent and file descriptor 2 sent to /dev/null while any
    thread decodes; both restored when the last one is done.

    libpng and libjpeg print their complaints straight to file descriptor 2, where no Python
    code can catch them. Counting the decodes under way keeps two threads from restoring
    each other's silence instead of the original state.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved_stderr: int | None = None
        self._saved_level: int | None = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._silence()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._restore()

    def _silence(self) -> None:
        import cv2

        logging = cv2.utils.logging
        self._saved_level = logging.getLogLevel()
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)
        try:
            self._saved_stderr = os.dup(2)
        except OSError:  # no file descriptor 2 at all: nothing to silence
            self._saved_stderr = None
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)

    def _restore(self) -> None:
        import cv2

        if self._saved_stderr is not None:
            os.dup2(self._saved_stderr, 2)
            os.close(self._saved_stderr)
            self._saved_stderr = None
        if self._saved_level is not None:
            cv2.utils.logging.setLogLevel(self._saved_level)
            self._saved_level = None


_silenced_decoders = _DecoderSilence()


# --- writing ----------------------------------------------------------------------------------

# From this size up, a PNG is deflated on all of OpenCV's threads by `convkit.png`; below it,
# and where OpenCV has one thread (batch workers), cv2.imencode's single thread is faster.
PARALLEL_PNG_BYTES = 4 << 20


def encode_image(image: np.ndarray, suffix: str = ".png") -> bytes:
    """Encode an image (BGR(A) or grey, uint8/uint16) in the format of ``suffix``."""
    import cv2

    if suffix == ".png" and image.nbytes >= PARALLEL_PNG_BYTES and cv2.getNumThreads() > 1:
        from convkit.png import can_encode, encode_png

        if can_encode(image):
            return encode_png(image, threads=cv2.getNumThreads())
    ok, encoded = cv2.imencode(suffix, image)
    if not ok:
        raise ImageWriteError(f"OpenCV cannot encode a {image.dtype} image as {suffix}")
    return encoded.tobytes()


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
    """Write ``data`` to a new temporary file beside ``path``, then rename it into place.

    The temporary file is created exclusively (never an existing file) with the usual mode
    (0666 less the umask).

    An interrupted run leaves either the old file or the new one, never a truncated one.
    """
    path = Path(path)
    folder = ensure_folder(path.parent)
    try:
        temporary = folder / f".{path.name}.{os.urandom(4).hex()}.tmp"
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise ImageWriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise ImageWriteError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return path


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
