"""Hostile and unlucky image inputs (issue 9): each is refused with one line that names it,
or read correctly -- nothing hangs, nothing is printed, no input byte changes, and nothing is
allocated for pixels that the header says are too many."""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pytest

from convkit import imageio
from convkit.cli import native_messages_silenced
from convkit.errors import ImageReadError, UsageError
from convkit.imageio import (
    DEFAULT_MAX_PIXELS,
    ImageSource,
    check_input_file,
    decode_image,
    encode_image,
    probe_image,
    read_image,
    read_stdin_image_bytes,
)
from tests.conftest import SAMPLES

# Any Python warning (Pillow's "Corrupt EXIF data" included) fails these tests.
pytestmark = pytest.mark.filterwarnings("error")

TIMEOUT_SECONDS = 30
CHANNELS_MESSAGE = "(convkit reads grey, grey+alpha, colour, colour+alpha)"


# --- building hostile files -------------------------------------------------------------------


def tiff_bytes(
    pixels: np.ndarray, *, bigtiff: bool = False, directory_last: bool = False, **tags: int
) -> bytes:
    """A minimal uncompressed one-strip (Big)TIFF, written by hand: no tifffile needed.

    ``directory_last`` puts the directory after the pixels, as libtiff does by default.
    """
    array = pixels if pixels.ndim == 3 else pixels[..., None]
    height, width, channels = array.shape
    sample_format = {"u": 1, "i": 2, "f": 3}[array.dtype.kind]
    photometric = 2 if channels >= 3 else 1
    extra = channels - (3 if photometric == 2 else 1)
    data = array.astype(array.dtype.newbyteorder("<")).tobytes()
    offset_code, entry_code, header_size = ("Q", "<HHQ", 16) if bigtiff else ("I", "<HHI", 8)
    field_size = struct.calcsize(offset_code)
    entries = {
        256: (4, [width]),
        257: (4, [height]),
        258: (3, [array.dtype.itemsize * 8] * channels),
        259: (3, [1]),
        262: (3, [photometric]),
        273: (4, [0]),  # filled in below
        277: (3, [channels]),
        278: (4, [height]),
        279: (4, [len(data)]),
        284: (3, [1]),
        339: (3, [sample_format] * channels),
    }
    if extra > 0:
        entries[338] = (3, [0] * extra)
    entries.update({tag: (4, [value]) for tag, value in _tag_numbers(tags).items()})
    count_size = 8 if bigtiff else 2
    directory_size = count_size + len(entries) * (4 + 2 * field_size) + field_size
    directory_at = header_size + (len(data) if directory_last else 0)
    blobs_at = directory_at + directory_size
    blobs = b""
    fields = {}
    for tag, (kind, values) in sorted(entries.items()):
        raw = struct.pack("<" + {3: "H", 4: "I"}[kind] * len(values), *values)
        if len(raw) <= field_size:
            fields[tag] = raw.ljust(field_size, b"\0")
        else:
            fields[tag] = struct.pack("<" + offset_code, blobs_at + len(blobs))
            blobs += raw
    pixels_at = header_size if directory_last else blobs_at + len(blobs)
    fields[273] = struct.pack("<I", pixels_at).ljust(field_size, b"\0")
    directory = struct.pack("<" + ("Q" if bigtiff else "H"), len(entries))
    for tag, (kind, values) in sorted(entries.items()):
        directory += struct.pack(entry_code, tag, kind, len(values)) + fields[tag]
    directory += bytes(field_size)
    if bigtiff:
        head = b"II+\x00" + struct.pack("<HHQ", 8, 0, directory_at)
    else:
        head = b"II*\x00" + struct.pack("<I", directory_at)
    if directory_last:
        return head + data + directory + blobs
    return head + directory + blobs + data


def _tag_numbers(tags: dict[str, int]) -> dict[int, int]:
    names = {"width": 256, "height": 257}
    return {names[name]: value for name, value in tags.items()}


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_claiming(width: int, height: int, colour: int = 0, bits: int = 8) -> bytes:
    """A PNG signature and an IHDR chunk claiming any size, then an empty image and IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )


def bmp_header(width: int, height: int, bits: int = 24) -> bytes:
    pixel_bytes = (abs(width) * bits + 31) // 32 * 4 * abs(height) & 0xFFFFFFFF
    file_size = 54 + pixel_bytes & 0xFFFFFFFF  # sizes past 4 GiB wrap, as in the wild
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, 0, pixel_bytes, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", file_size, 0, 0, 54) + info


def bmp_top_down(image: np.ndarray) -> bytes:
    """A 24-bit BMP whose rows are stored top-down (a negative height)."""
    height, width, _ = image.shape
    row = (width * 24 + 31) // 32 * 4
    rows = b"".join(image[y].tobytes().ljust(row, b"\0") for y in range(height))
    return bmp_header(width, -height) + rows


def pam_header(width: int | str, height: int, depth: int, maxval: int = 255) -> bytes:
    return f"P7\nWIDTH {width}\nHEIGHT {height}\nDEPTH {depth}\nMAXVAL {maxval}\nENDHDR\n".encode()


def jpeg_frame(width: int, height: int) -> bytes:
    """A JPEG's start and frame header only (no tables, no scan)."""
    sof = struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof


def webp_canvas(width: int, height: int) -> bytes:
    canvas = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little")
    canvas += (height - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(canvas)) + canvas
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def sun_raster_header(width: int, height: int, depth: int = 8) -> bytes:
    length = (width * depth + 15) // 16 * 2 * height
    return struct.pack(">8I", 0x59A66A95, width, height, depth, length & 0xFFFFFFFF, 1, 0, 0)


def j2k_codestream_header(width: int, height: int) -> bytes:
    siz = struct.pack(">HIIIIIIIIH", 0, width, height, 0, 0, width, height, 0, 0, 1)
    siz += b"\x07\x01\x01"
    return b"\xff\x4f\xff\x51" + struct.pack(">H", len(siz) + 2) + siz


def jpeg_with_corrupt_exif() -> bytes:
    """A JPEG whose EXIF block makes Pillow warn "Corrupt EXIF data"; OpenCV reads it."""
    photo = encode_image(np.full((8, 8, 3), 100, dtype=np.uint8), ".jpg")
    payload = b"Exif\x00\x00" + b"MM\x00*\x00\x00\x00\x08\xff\xff"
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return photo[:2] + app1 + photo[2:]


def photo_bytes(suffix: str) -> bytes:
    return encode_image(cv2.imread(str(SAMPLES / "chelsea.png")), suffix)


def jpeg_cut_after_header() -> bytes:
    data = photo_bytes(".jpg")
    scan = data.index(b"\xff\xda")
    (length,) = struct.unpack(">H", data[scan + 2 : scan + 4])
    return data[: scan + 2 + length + 16]


def bytes_of_size(count: int, seed: int = 9) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, count, dtype=np.uint8).tobytes()


def sparse_file(path: Path, header: bytes, size: int) -> Path:
    """``header``, then zeros up to ``size`` bytes that take no disk space."""
    with open(path, "wb") as stream:
        stream.write(header)
        stream.truncate(size)
    return path


def _first_block_device() -> Path | None:
    for entry in sorted(Path("/dev").iterdir()):
        try:
            if stat.S_ISBLK(entry.stat().st_mode):
                return entry
        except OSError:
            continue
    return None


# --- the corpus of refusals -------------------------------------------------------------------


class Refusal(NamedTuple):
    """A hostile input: how to make it, the limit, and what its refusal must say."""

    make: Callable[[Path], Path]
    error: type[Exception]
    says: str
    max_pixels: int | None = DEFAULT_MAX_PIXELS


def file_with(name: str, content: bytes | Callable[[], bytes]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(content() if callable(content) else content)
        return path

    return make


def existing(path: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        if not os.path.exists(path):
            pytest.skip(f"{path} does not exist here")
        return Path(path)

    return make


def make_fifo(folder: Path) -> Path:
    os.mkfifo(folder / "pipe.png")
    return folder / "pipe.png"


def make_socket(folder: Path) -> Path:
    server = socket.socket(socket.AF_UNIX)
    previous = os.getcwd()
    os.chdir(folder)  # a relative name: socket paths are limited to ~107 bytes
    try:
        server.bind("sock.png")
    finally:
        os.chdir(previous)
        server.close()
    return folder / "sock.png"


def make_block_device(folder: Path) -> Path:
    device = _first_block_device()
    if device is None:
        pytest.skip("no block device here")
    return device


def symlink_to(target: str, name: str = "link.png") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / name).symlink_to(target)
        return folder / name

    return make


def make_folder(folder: Path) -> Path:
    (folder / "photos.png").mkdir()
    return folder / "photos.png"


def nothing(folder: Path) -> Path:
    return folder / "nope.png"


def over_the_byte_bound(folder: Path) -> Path:
    small = encode_image(np.zeros((10, 10), dtype=np.uint8))
    return sparse_file(folder / "padded.png", small, len(small) + (17 << 20))


def tiff(array: np.ndarray, **options) -> Callable[[], bytes]:
    return lambda: tiff_bytes(array, **options)


def zeros(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


def tiff_with_directory_beyond_the_end() -> bytes:
    data = bytearray(tiff_bytes(zeros((2, 2), "uint8")))
    data[4:8] = struct.pack("<I", 1 << 30)
    return bytes(data)


def tiff_with_an_empty_directory() -> bytes:
    return b"II*\x00" + struct.pack("<I", 8) + b"\x00\x00" + bytes(4)


def truncated(content: Callable[[], bytes], keep: float | int) -> Callable[[], bytes]:
    def make() -> bytes:
        data = content()
        return data[: int(len(data) * keep) if isinstance(keep, float) else keep]

    return make


def endless_pam_header() -> bytes:
    return b"P7\n" + b"# a comment that never ends the header\n" * 2000


FILE_REFUSALS: dict[str, Refusal] = {
    # not regular files: refused from their metadata, never opened
    "missing": Refusal(nothing, UsageError, "image not found"),
    "folder": Refusal(make_folder, UsageError, "is a folder"),
    "broken-symlink": Refusal(symlink_to("/nonexistent/x.png"), UsageError, "broken symbolic"),
    "fifo": Refusal(make_fifo, UsageError, "is a FIFO, not a regular file"),
    "socket": Refusal(make_socket, UsageError, "is a socket, not a regular file"),
    "dev-zero": Refusal(existing("/dev/zero"), UsageError, "is a character device, not a"),
    "dev-null": Refusal(existing("/dev/null"), UsageError, "is a character device, not a"),
    "dev-urandom": Refusal(existing("/dev/urandom"), UsageError, "is a character device"),
    "dev-tty": Refusal(existing("/dev/tty"), UsageError, "is a character device"),
    "symlink-to-dev-zero": Refusal(
        symlink_to("/dev/zero"), UsageError, "is a symbolic link to a character device"
    ),
    "block-device": Refusal(make_block_device, UsageError, "is a block device"),
}

CONTENT_REFUSALS: dict[str, Refusal] = {
    # nothing there, or not an image
    "empty": Refusal(file_with("zero.png", b""), ImageReadError, "empty"),
    "random-bytes.png": Refusal(
        file_with("random.png", bytes_of_size(3000)), ImageReadError, "not an image, or truncated"
    ),
    "text.jpg": Refusal(
        file_with("text.jpg", b"just some text\n"), ImageReadError, "not an image, or truncated"
    ),
    "one-byte": Refusal(file_with("one.png", b"\x89"), ImageReadError, "not an image"),
    # sizes beyond --max-pixels, refused from the header
    "png-ihdr-100000x100000": Refusal(
        file_with("huge.png", png_claiming(100_000, 100_000)),
        UsageError,
        "100000x100000 = 10,000,000,000 pixels, more than --max-pixels 178,956,970: raise",
    ),
    "png-one-pixel-over": Refusal(
        file_with("4x4.png", lambda: encode_image(zeros((4, 4), "uint8"))),
        UsageError,
        "4x4 = 16 pixels, more than --max-pixels 15",
        15,
    ),
    "jpeg-65535x65535": Refusal(
        file_with("huge.jpg", jpeg_frame(65535, 65535)), UsageError, "65535x65535"
    ),
    "bmp-height-int-min": Refusal(
        file_with("tall.bmp", bmp_header(16, -(2**31))), UsageError, "16x2147483648"
    ),
    "gif-65535x65535": Refusal(
        file_with("huge.gif", b"GIF89a" + struct.pack("<HH", 65535, 65535) + bytes(8)),
        UsageError,
        "65535x65535",
    ),
    "webp-canvas-16384x16384": Refusal(
        file_with("huge.webp", webp_canvas(16384, 16384)), UsageError, "16384x16384", 1_000_000
    ),
    "j2k-100000x100000": Refusal(
        file_with("huge.j2k", j2k_codestream_header(100_000, 100_000)), UsageError, "100000x"
    ),
    "sun-raster-huge": Refusal(
        file_with("huge.ras", sun_raster_header(60_000, 60_000)), UsageError, "60000x60000"
    ),
    "pam-20-digit-width": Refusal(
        file_with("wide.pam", pam_header("9" * 20, 2, 1)), UsageError, "99999999999999999999x2"
    ),
    "file-beyond-the-byte-bound": Refusal(over_the_byte_bound, UsageError, "bytes, more than", 100),
    # truncated
    "png-cut-in-half": Refusal(
        file_with("cut.png", truncated(lambda: photo_bytes(".png"), 0.5)),
        ImageReadError,
        "truncated PNG file",
    ),
    "png-cut-inside-ihdr": Refusal(
        file_with("cut.png", truncated(lambda: photo_bytes(".png"), 20)),
        ImageReadError,
        "truncated PNG file (it ends inside the header)",
    ),
    "jpeg-cut-after-header": Refusal(
        file_with("cut.jpg", jpeg_cut_after_header), ImageReadError, "truncated JPEG file"
    ),
    "bmp-cut": Refusal(
        file_with("cut.bmp", truncated(lambda: photo_bytes(".bmp"), 0.9)),
        ImageReadError,
        "truncated BMP file",
    ),
    "tiff-cut": Refusal(
        file_with("cut.tif", truncated(tiff(zeros((64, 64, 3), "uint8")), 0.5)),
        ImageReadError,
        "truncated TIFF file",
    ),
    "tiff-directory-beyond-the-end": Refusal(
        file_with("far.tif", tiff_with_directory_beyond_the_end),
        ImageReadError,
        "truncated TIFF file (it ends inside the header)",
    ),
    "pam-cut": Refusal(
        file_with("cut.pam", truncated(lambda: photo_bytes(".pam"), 0.7)),
        ImageReadError,
        "truncated PAM file",
    ),
    "webp-cut": Refusal(
        file_with("cut.webp", truncated(lambda: photo_bytes(".webp"), 0.5)),
        ImageReadError,
        "truncated WebP file",
    ),
    "avif-cut-in-header": Refusal(
        file_with("cut.avif", truncated(lambda: photo_bytes(".avif"), 40)),
        ImageReadError,
        "truncated AVIF file",
    ),
    # corrupt headers
    "png-zero-width": Refusal(
        file_with("flat.png", png_claiming(0, 5)), ImageReadError, "corrupt PNG header (size 0x5)"
    ),
    "png-colour-type-5": Refusal(
        file_with("odd.png", png_claiming(3, 3, colour=5)), ImageReadError, "colour type 5"
    ),
    "jpeg-without-frame": Refusal(
        file_with("empty.jpg", b"\xff\xd8\xff\xd9"), ImageReadError, "no frame header"
    ),
    "bmp-negative-width": Refusal(
        file_with("neg.bmp", bmp_header(-4, 4) + bytes(64)), ImageReadError, "corrupt BMP"
    ),
    "tiff-empty-directory": Refusal(
        file_with("empty.tif", tiff_with_an_empty_directory),
        ImageReadError,
        "corrupt TIFF header (a directory of 0 entries)",
    ),
    "pgm-negative-size": Refusal(
        file_with("neg.pgm", b"P5\n-3 4\n255\n" + bytes(12)),
        ImageReadError,
        "width b'-3' is not a whole number",
    ),
    "pgm-maxval-0": Refusal(
        file_with("zero.pgm", b"P5\n3 4\n0\n" + bytes(12)), ImageReadError, "maximum value 0"
    ),
    "pam-header-without-end": Refusal(
        file_with("endless.pam", endless_pam_header), ImageReadError, "no end of the header"
    ),
    # channels and samples that convkit does not filter
    "tiff-5-channels": Refusal(
        file_with("five.tif", tiff(zeros((2, 3, 5), "uint8"))),
        ImageReadError,
        f"has 5 channels {CHANNELS_MESSAGE}",
    ),
    "tiff-6-channels-16-bit": Refusal(
        file_with("six.tif", tiff(zeros((2, 3, 6), "uint16"))),
        ImageReadError,
        "has 6 channels",
    ),
    "bigtiff-5-channels": Refusal(
        file_with("five.tif", tiff(zeros((2, 3, 5), "uint8"), bigtiff=True)),
        ImageReadError,
        "has 5 channels",
    ),
    "pam-6-channels": Refusal(
        file_with("six.pam", pam_header(2, 2, 6) + bytes(24)), ImageReadError, "has 6 channels"
    ),
    "tiff-float32": Refusal(
        file_with("f32.tif", tiff(zeros((2, 3), "float32"))),
        ImageReadError,
        "32-bit float samples (convkit reads 8- and 16-bit unsigned images)",
    ),
    "tiff-float64": Refusal(
        file_with("f64.tif", tiff(zeros((2, 3, 3), "float64"))), ImageReadError, "64-bit float"
    ),
    "tiff-float16": Refusal(
        file_with("f16.tif", tiff(zeros((2, 3), "float16"))), ImageReadError, "16-bit float"
    ),
    "tiff-int16": Refusal(
        file_with("i16.tif", tiff(zeros((2, 3), "int16"))),
        ImageReadError,
        "16-bit signed integer samples",
    ),
    "tiff-uint32": Refusal(
        file_with("u32.tif", tiff(zeros((2, 3), "uint32"))),
        ImageReadError,
        "32-bit unsigned integer samples",
    ),
    "pfm": Refusal(
        file_with("x.pfm", b"PF\n2 2\n-1.0\n" + bytes(48)), ImageReadError, "32-bit float"
    ),
    "radiance-hdr": Refusal(
        file_with("x.hdr", lambda: photo_bytes(".hdr")), ImageReadError, "32-bit float samples"
    ),
}

REFUSALS = FILE_REFUSALS | CONTENT_REFUSALS


def _call_with_timeout(function: Callable[[], object]) -> BaseException | None:
    """Run ``function`` in a thread; fail the test if it is still running after the timeout
    (a FIFO or a device read would block or go on forever)."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            function()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(TIMEOUT_SECONDS)
    assert not thread.is_alive(), f"still running after {TIMEOUT_SECONDS} s"
    return outcome[0]


def _snapshot(path: Path) -> tuple[bytes | None, list[str]]:
    """The file's bytes (for a regular file) and its folder's listing."""
    content = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    listing = sorted(os.listdir(path.parent)) if path.parent.is_dir() else []
    return content, listing


def _assert_one_line_naming(error: BaseException, name: str, says: str) -> None:
    message = str(error)
    assert "\n" not in message and "\r" not in message, message
    assert name in message, message
    assert says in message, message


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_hostile_file_is_refused_with_one_line_and_left_alone(case, tmp_path, capfd):
    path = case.make(tmp_path)
    before = _snapshot(path)
    with native_messages_silenced():  # as the command line reads it
        error = _call_with_timeout(lambda: read_image(path, case.max_pixels))
    assert isinstance(error, case.error), repr(error)
    assert type(error) is case.error  # not a subclass that maps to another exit code
    _assert_one_line_naming(error, str(path), case.says)
    assert _snapshot(path) == before
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("case", CONTENT_REFUSALS.values(), ids=CONTENT_REFUSALS.keys())
def test_the_same_bytes_from_standard_input_are_refused_alike(case, tmp_path, capfd):
    content = case.make(tmp_path).read_bytes()

    def from_stdin() -> None:
        data = read_stdin_image_bytes(io.BytesIO(content), max_pixels=case.max_pixels)
        ImageSource("standard input", data=data).read(case.max_pixels)

    with native_messages_silenced():  # as the command line reads it
        error = _call_with_timeout(from_stdin)
    assert type(error) is case.error, repr(error)
    _assert_one_line_naming(error, "standard input", case.says.replace("the file is ", ""))
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("case", CONTENT_REFUSALS.values(), ids=CONTENT_REFUSALS.keys())
def test_probing_agrees_with_reading(case, tmp_path):
    """probe_image refuses from the header what read_image refuses before decoding."""
    path = case.make(tmp_path)
    try:
        probe_image(path, case.max_pixels)
    except (UsageError, ImageReadError) as error:
        assert type(error) is case.error
        _assert_one_line_naming(error, str(path), case.says)
    else:  # a fault found only by decoding
        assert case.error is ImageReadError and "truncated" in case.says


def test_an_unreadable_file_is_a_read_error(tmp_path):
    path = tmp_path / "secret.png"
    path.write_bytes(encode_image(zeros((2, 2), "uint8")))
    path.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(ImageReadError, match=f"cannot read {path}: Permission denied"):
            read_image(path)
        return
    # root reads anything: read it in a child whose capabilities to bypass permissions are
    # dropped from its bounding set (so the root interpreter it runs does not get them)
    script = textwrap.dedent(
        f"""
        from convkit.imageio import read_image
        try:
            read_image({str(path)!r})
        except Exception as exc:
            print(type(exc).__name__, exc, sep=": ")
        """
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", script],
            preexec_fn=_drop_permission_override,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.SubprocessError as exc:
        pytest.skip(f"cannot drop capabilities here: {exc}")
    assert result.stdout.strip() == f"ImageReadError: cannot read {path}: Permission denied"
    assert result.stderr == ""
    path.chmod(0o600)
    assert cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), -1).shape == (2, 2)


def _drop_permission_override() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for capability in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_file_replaced_by_a_fifo_after_the_check_does_not_block(tmp_path, monkeypatch):
    """The gap between check_input_file and open: the open does not block, fstat tells."""
    fifo = make_fifo(tmp_path)
    monkeypatch.setattr(imageio, "check_input_file", Path)
    error = _call_with_timeout(lambda: read_image(fifo))
    assert isinstance(error, UsageError) and "is a FIFO" in str(error)


# --- what must be read, and read right ---------------------------------------------------------

# The suffixes convkit accepts, less .hdr and .pic (Radiance: float samples, refused above).
WRITABLE_SUFFIXES = [
    ".png", ".jpg", ".jpeg", ".jpe", ".jp2", ".tif", ".tiff", ".bmp", ".dib", ".webp",
    ".pgm", ".ppm", ".pbm", ".pnm", ".pxm", ".pam", ".sr", ".ras",
]  # fmt: skip
LOSSY = {".jpg", ".jpeg", ".jpe", ".jp2", ".pbm"}


def _encodable(suffix: str, image: np.ndarray, params: list[int]) -> bytes | None:
    try:
        ok, encoded = cv2.imencode(suffix, image, params)
    except cv2.error:
        return None
    return encoded.tobytes() if ok else None


ROUND_TRIPS = [
    (suffix, kind)
    for suffix in WRITABLE_SUFFIXES
    for kind in ("grey", "colour", "colour+alpha", "grey-16-bit")
]
# What this OpenCV writes but cannot read back, or reads back otherwise (its PAM writer's
# 16-bit and 4-channel files, Sun raster's grey palette).
NOT_ROUND_TRIPPED = {(".pam", "grey-16-bit"), (".pam", "colour+alpha"), (".sr", "grey")}
NOT_ROUND_TRIPPED |= {(".ras", "grey")}


@pytest.mark.parametrize(("suffix", "kind"), ROUND_TRIPS)
def test_a_tiny_image_in_every_writable_format_round_trips(suffix, kind, tmp_path):
    size = 32 if suffix == ".jp2" else 1  # OpenJPEG's default resolutions need 32 pixels
    shapes = {"grey": (size, size), "colour": (size, size, 3), "colour+alpha": (size, size, 4)}
    if kind == "grey-16-bit":
        image = np.full((size, size), 40_000, dtype=np.uint16)
    else:
        image = np.random.default_rng(3).integers(0, 256, shapes[kind], dtype=np.uint8)
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if suffix == ".webp" else []  # lossless WebP
    encoded = _encodable(suffix, image, params)
    if encoded is None:
        pytest.skip(f"this OpenCV does not write {kind} {suffix}")
    if (suffix, kind) in NOT_ROUND_TRIPPED:
        pytest.skip(f"this OpenCV does not read back its own {kind} {suffix}")
    path = tmp_path / f"tiny{suffix}"
    path.write_bytes(encoded)
    back = read_image(path, max_pixels=size * size)
    expected = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(back, expected)  # what OpenCV itself reads
    if suffix not in LOSSY and expected.shape == image.shape and expected.dtype == image.dtype:
        np.testing.assert_array_equal(back, image)
    assert path.read_bytes() == encoded


def test_a_bmp_with_a_negative_height_is_read_upright(tmp_path):
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    path = tmp_path / "top-down.bmp"
    path.write_bytes(bmp_top_down(image))
    np.testing.assert_array_equal(read_image(path, max_pixels=6), image)


@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_a_tiff_whose_directory_comes_last(tmp_path, bigtiff, dtype):
    image = (np.arange(5 * 7 * 3) * 97 % 256).astype(dtype).reshape(5, 7, 3)
    path = tmp_path / "last.tif"
    path.write_bytes(tiff_bytes(image, bigtiff=bigtiff, directory_last=True))
    back = read_image(path)
    np.testing.assert_array_equal(back, image[..., ::-1])  # RGB on disk, BGR in memory


def test_a_jpeg_with_corrupt_exif_is_read_without_a_warning(tmp_path, capfd):
    path = tmp_path / "exif.jpg"
    path.write_bytes(jpeg_with_corrupt_exif())
    assert read_image(path).shape == (8, 8, 3)  # pytestmark turns any warning into a failure
    assert capfd.readouterr() == ("", "")


def test_the_corrupt_exif_does_make_pillow_warn():
    """The case above is hostile: Pillow, which convkit no longer calls, warns about it."""
    image_module = pytest.importorskip("PIL.Image")
    from PIL import ImageOps

    with (
        pytest.warns(UserWarning, match="Corrupt EXIF data"),
        image_module.open(io.BytesIO(jpeg_with_corrupt_exif())) as image,
    ):
        ImageOps.exif_transpose(image)


def test_exactly_max_pixels_is_allowed(tmp_path):
    path = tmp_path / "4x4.png"
    path.write_bytes(encode_image(zeros((4, 4), "uint8")))
    assert read_image(path, max_pixels=16).shape == (4, 4)
    assert read_image(path, max_pixels=None).shape == (4, 4)


@pytest.mark.parametrize("target", ["photo.png", "../outside/photo.png"])
def test_a_symlink_to_a_regular_file_is_fine(tmp_path, target):
    (tmp_path / "outside").mkdir()
    (tmp_path / "inside").mkdir()
    photo = tmp_path / "inside" / "photo.png"
    if target.startswith(".."):
        photo = tmp_path / "outside" / "photo.png"
    photo.write_bytes(encode_image(zeros((2, 2), "uint8")))
    link = tmp_path / "inside" / "link.png"
    link.symlink_to(target)
    assert check_input_file(link) == link
    assert read_image(link).shape == (2, 2)


# --- --max-pixels from the header: the memory it takes -----------------------------------------

SIDE = 16_000
SPARSE_HEADERS = {
    "pam": (pam_header(SIDE, SIDE, 3), 3),
    "pgm": (f"P5\n{SIDE} {SIDE}\n255\n".encode(), 1),
    "ppm-16-bit": (f"P6\n{SIDE} {SIDE}\n65535\n".encode(), 6),
    "bmp": (bmp_header(SIDE, SIDE), 3),
    "tiff": (None, 3),
    "bigtiff": (None, 3),
    "sun-raster": (sun_raster_header(SIDE, SIDE), 1),
    "png": (png_claiming(SIDE, SIDE, colour=2)[:33], 3),
    "jpeg": (jpeg_frame(SIDE, SIDE), 0),
    "radiance-hdr": (b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 16000 +X 16000\n", 4),
}
# Refused for its float samples before its size is looked at.
SPARSE_REFUSALS = {"radiance-hdr": (ImageReadError, "32-bit float samples")}


def _sparse_image(folder: Path, kind: str) -> Path:
    header, bytes_per_pixel = SPARSE_HEADERS[kind]
    if header is None:  # a TIFF header: build one for a tiny image, then claim the big size
        header = tiff_bytes(zeros((1, 1, 3), "uint8"), bigtiff=kind == "bigtiff")[:-3]
        header = _tiff_claiming(header, SIDE, SIDE, bigtiff=kind == "bigtiff")
    size = len(header) + SIDE * SIDE * bytes_per_pixel
    return sparse_file(folder / f"big.{kind}", header, size)


def _tiff_claiming(data: bytes, width: int, height: int, bigtiff: bool) -> bytes:
    """Rewrite ImageWidth and ImageLength of a little-endian TIFF made by `tiff_bytes`."""
    out = bytearray(data)
    entry_size, count_size, field_at = (20, 8, 12) if bigtiff else (12, 2, 8)
    directory_at = 16 if bigtiff else 8
    for index in range(2):  # tags 256 and 257 come first
        at = directory_at + count_size + index * entry_size + field_at
        out[at : at + 4] = struct.pack("<I", (width, height)[index])
    return bytes(out)


@pytest.mark.parametrize("kind", SPARSE_HEADERS)
def test_a_16000_squared_image_is_refused_from_its_header_in_little_memory(kind, tmp_path):
    path = _sparse_image(tmp_path, kind)
    error, says = SPARSE_REFUSALS.get(kind, (UsageError, "16000x16000 = 256,000,000 pixels"))
    tracemalloc.start()
    try:
        with pytest.raises(error, match=says):
            read_image(path, max_pixels=1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20, f"{peak:,} bytes at the peak"


def test_the_refusal_takes_little_memory_outside_python_too(tmp_path):
    """The whole process's peak resident memory, in a fresh interpreter (OpenCV included)."""
    path = _sparse_image(tmp_path, "pam")
    script = textwrap.dedent(
        f"""
        import resource
        import cv2, numpy
        from convkit.errors import UsageError
        from convkit.imageio import read_image
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            read_image({str(path)!r}, max_pixels=1_000_000)
        except UsageError:
            pass
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    grown_kib = int(result.stdout)
    assert grown_kib < 10 * 1024, f"peak resident memory grew by {grown_kib:,} KiB"


def test_a_large_honest_header_is_read_once_the_limit_allows_it(tmp_path):
    """The same sparse PGM decodes (all zeros) when --max-pixels is raised."""
    header = b"P5\n4000 3000\n255\n"
    path = sparse_file(tmp_path / "big.pgm", header, len(header) + 4000 * 3000)
    image = read_image(path, max_pixels=12_000_000)
    assert image.shape == (3000, 4000) and not image.any()


# --- standard input ---------------------------------------------------------------------------


class CountingStream(io.RawIOBase):
    """A stream of ``head`` and then ``filler`` bytes for ever (or up to ``total`` bytes),
    delivered at most ``piece`` bytes per read, counting what was taken."""

    def __init__(self, head: bytes, filler: int = 0, total: int | None = None, piece: int = 65536):
        self.head = head
        self.filler = filler
        self.total = total
        self.piece = piece
        self.taken = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.piece)
        if self.total is not None:
            count = min(count, self.total - self.taken)
        data = self.head[self.taken : self.taken + count]
        data += bytes([self.filler]) * (count - len(data))
        buffer[:count] = data
        self.taken += count
        return count


def test_stdin_reads_an_image_byte_for_byte():
    data = encode_image(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    assert read_stdin_image_bytes(io.BytesIO(data)) == data


def test_stdin_delivered_a_byte_at_a_time():
    data = encode_image(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    stream = CountingStream(data, total=len(data), piece=1)
    assert read_stdin_image_bytes(stream, max_pixels=16) == data


def test_stdin_endless_zeros_stop_after_the_first_piece():
    stream = CountingStream(b"")
    with pytest.raises(ImageReadError, match="cannot decode standard input: not an image"):
        read_stdin_image_bytes(stream, max_pixels=1000)
    assert stream.taken <= 64 << 10


def test_stdin_an_image_followed_by_endless_bytes_stops_at_the_bound():
    png = encode_image(zeros((10, 10), "uint8"))
    stream = CountingStream(png)
    # the header's own 10x10 pixels bound it, not --max-pixels: 100 x 8 bytes + 16 MiB
    expected = "standard input holds more than 16,778,016 bytes, more than the 10x10 PNG image"
    with pytest.raises(UsageError, match=expected):
        read_stdin_image_bytes(stream, max_pixels=1000)
    assert stream.taken <= 100 * 8 + (16 << 20) + 1


def test_stdin_a_huge_header_is_refused_before_the_rest_is_read():
    stream = CountingStream(png_claiming(100_000, 100_000), total=1 << 40)
    with pytest.raises(UsageError, match="standard input is 100000x100000"):
        read_stdin_image_bytes(stream)
    assert stream.taken <= 64 << 10


def test_stdin_a_tiff_whose_directory_comes_after_a_megabyte():
    image = (np.arange(600 * 700 * 3) % 251).astype(np.uint8).reshape(600, 700, 3)
    data = tiff_bytes(image, directory_last=True)
    assert len(data) > 1 << 20
    read = read_stdin_image_bytes(CountingStream(data, total=len(data)), max_pixels=420_000)
    assert read == data
    np.testing.assert_array_equal(decode_image(read, "standard input"), image[..., ::-1])


def test_stdin_that_is_empty_or_not_ready():
    with pytest.raises(ImageReadError, match="cannot decode standard input: it is empty"):
        read_stdin_image_bytes(io.BytesIO(b""))

    class NothingReady(io.RawIOBase):  # a non-blocking stream: read() gives None
        def readable(self) -> bool:
            return True

        def readinto(self, buffer):
            return None

    with pytest.raises(ImageReadError, match="it is empty"):
        read_stdin_image_bytes(NothingReady())


def test_stdin_names_the_stream_as_asked():
    with pytest.raises(ImageReadError, match="cannot decode <pipe>: not an image"):
        read_stdin_image_bytes(io.BytesIO(b"hello"), name="<pipe>")


# --- the library changes no process-wide state; the command line keeps C libraries quiet ----


@pytest.mark.parametrize(
    "content", [photo_bytes(".png"), photo_bytes(".png")[:5000]], ids=["good", "truncated"]
)
def test_decoding_leaves_opencv_log_level_and_standard_error_alone(content, monkeypatch):
    """A host program's OpenCV log level and file descriptor 2 are its own."""
    logging = cv2.utils.logging
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_WARNING)

    def no_redirection(*args):
        raise AssertionError(f"the library redirected a file descriptor: os.dup2{args}")

    try:
        with monkeypatch.context() as patched:  # pytest's own capture redirects after it
            patched.setattr(os, "dup2", no_redirection)
            failing = pytest.raises(ImageReadError) if len(content) == 5000 else None
            with failing or contextlib.nullcontext():
                decode_image(content, "x.png")
        assert logging.getLogLevel() == logging.LOG_LEVEL_WARNING
    finally:
        logging.setLogLevel(previous)


@pytest.mark.slow
def test_the_command_line_prints_one_line_for_a_truncated_png_and_restores_descriptor_2(
    tmp_path,
):
    """libpng and OpenCV's complaints about the file never reach the terminal; the run's own
    error does, and descriptor 2 is restored before the process ends."""
    cut = tmp_path / "cut.png"
    cut.write_bytes(photo_bytes(".png")[:5000])
    script = textwrap.dedent(f"""
        import os, sys
        from convkit import cli
        sys.argv = ["convkit", "apply", {str(cut)!r}, "-k", "sharpen", "-o", {str(tmp_path)!r}]
        before = os.fstat(2)
        real_exit = os._exit
        def check_then_exit(code):
            after = os.fstat(2)
            os.write(2, b"restored\\n" if (after.st_ino, after.st_dev) ==
                     (before.st_ino, before.st_dev) else b"not restored\\n")
            real_exit(code)
        os._exit = check_then_exit
        cli.run()
    """)
    environment = {
        k: v for k, v in os.environ.items() if k not in ("CONVKIT_DEBUG", "OPENCV_LOG_LEVEL")
    }
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, env=environment)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"Error: cannot decode {cut}: truncated PNG file (it ends before its IEND chunk)",
        "restored",
    ]
