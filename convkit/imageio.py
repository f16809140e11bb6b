"""Read and write images with clear errors; atomic writes; never overwrite an input.

In memory, colour images are in OpenCV's channel order (BGR, BGRA); float responses saved as
``.npy`` are written in RGB(A) order, as scikit-image and matplotlib expect.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from convkit.errors import ImageReadError, ImageWriteError, UsageError

# Pillow's decompression-bomb threshold.
DEFAULT_MAX_PIXELS = 178_956_970


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


def read_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image as OpenCV does with IMREAD_UNCHANGED: depth, alpha and all.

    Returns
    -------
    ndarray
        uint8 or uint16, (H, W) for grey, (H, W, 3) BGR or (H, W, 4) BGRA.

    Raises
    ------
    UsageError
        If the path does not exist or is a folder.
    ImageReadError
        If the file cannot be read or decoded, holds an unsupported sample type, or has more
        than ``max_pixels`` pixels.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"image not found: {path}")
    if path.is_dir():
        raise UsageError(f"{path} is a folder: give an image file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"cannot read {path}: {exc.strerror or exc}") from None
    return decode_image(data, str(path), max_pixels)


def decode_image(
    data: bytes, source: str, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode encoded image bytes; ``source`` names them in errors."""
    if not data:
        raise ImageReadError(f"cannot decode {source}: the file is empty")
    size = _peek_size(data)
    if size is not None:
        _check_pixels(size, source, max_pixels)
    import cv2

    with _quiet_stderr():
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(f"cannot decode {source}: not an image, or truncated")
    _check_pixels(image.shape[1::-1], source, max_pixels)
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(
            f"cannot filter {source}: {image.dtype} samples (convkit reads 8- and 16-bit images)"
        )
    return image


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _peek_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header alone: PNG's IHDR, or whatever Pillow recognises."""
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    try:
        from PIL import Image
    except ImportError:
        return None
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(io.BytesIO(data)) as header:
            return header.size
    except Exception:  # noqa: BLE001 - any failure here just means "let OpenCV decide"
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _check_pixels(size: tuple[int, int], source: str, max_pixels: int | None) -> None:
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageReadError(
            f"{source} is {width}x{height} = {width * height:,} pixels, more than "
            f"--max-pixels {max_pixels:,}: raise --max-pixels if you trust it"
        )


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence what libpng and libjpeg print straight to file descriptor 2 while decoding."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


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
