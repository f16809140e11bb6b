"""Image headers read without decoding: size, channels and sample type from the first bytes.

`read_header` reads only a header's bytes (at most `HEADER_BYTES_LIMIT`) from a seekable
stream, for every format that OpenCV decodes here: PNG, JPEG, TIFF and BigTIFF, BMP, GIF,
WebP, Sun raster, the PNM family, PAM, PFM, Radiance HDR, JPEG 2000 (JP2 and codestreams)
and AVIF. `convkit.imageio` checks what it says against ``--max-pixels`` before the rest of
a file is read.

Pillow reads headers too, but not within a bound for every format (its WebP and AVIF
openers read the whole file, its JPEG opener crawls junk byte by byte), and it does not say
which channels and sample types a TIFF holds, which the error messages need.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator
from typing import BinaryIO, NamedTuple

from convkit.errors import ImageReadError

# No header parser may read more than this (ICC profiles, EXIF and the like come first in
# some formats); a header that goes on longer is refused as corrupt.
HEADER_BYTES_LIMIT = 16 << 20
# Text headers (PNM, PAM, PFM, Radiance HDR) must end within this many bytes.
TEXT_HEADER_LIMIT = 64 << 10


class ImageHeader(NamedTuple):
    """What an image's header says, read without decoding it.

    ``channels``, ``sample_kind`` (``"unsigned"``, ``"signed"``, ``"float"`` or
    ``"complex"``) and ``bits`` (per sample) are None where the header does not say or
    OpenCV converts anyway. ``data_end`` is the least number of bytes a complete file needs,
    where the header tells (uncompressed formats, TIFF strips, WebP's RIFF size).
    """

    format: str
    width: int
    height: int
    channels: int | None = None
    sample_kind: str | None = None
    bits: int | None = None
    data_end: int | None = None
    text_samples: bool = False

    @property
    def pixels(self) -> int:
        return self.width * self.height


def parse_header_bytes(data: bytes) -> ImageHeader:
    """The header at the start of ``data`` (a prefix of an image, perhaps incomplete).

    Raises
    ------
    HeaderError
        With ``out_of_data`` set when ``data`` ends inside the header: read more, try again.
    """
    return _parse_header(_HeaderReader(io.BytesIO(data)))


def read_header(stream: BinaryIO, source: str) -> ImageHeader:
    """Read an image's header from a seekable binary stream, without decoding the image.

    Only the header's bytes are read (at most `HEADER_BYTES_LIMIT`): fixed-size headers
    (PNG's IHDR, BMP, GIF, Sun raster, WebP, JPEG 2000 codestreams), text headers (PNM, PAM,
    PFM, Radiance HDR: up to `TEXT_HEADER_LIMIT`), JPEG's markers up to its frame header,
    TIFF's first directory, and the boxes of JP2 and AVIF files. These are every format
    that OpenCV decodes here (its decoders pick the format from the same signatures).

    Data whose start matches no signature is refused, rather than handed to OpenCV to try:
    OpenCV's decoders choose by the same signatures, so it would fail too -- and if a
    decoder did accept it, its size could not be checked before the pixels are allocated,
    which is the promise that ``--max-pixels`` makes.

    Parameters
    ----------
    stream
        Positioned anywhere; the header is read from the stream's start.
    source
        How errors name the stream.

    Returns
    -------
    ImageHeader
        The format, size, and channels and sample type where the header says.

    Raises
    ------
    ImageReadError
        If no image format starts like this, or the header is truncated or corrupt.
    """
    stream.seek(0)
    try:
        return _parse_header(_HeaderReader(stream))
    except HeaderError as exc:
        raise exc.as_read_error(source) from None


class _OutOfData(Exception):
    """The header goes on past the bytes available."""


class _CorruptHeader(Exception):
    """The header's values make no sense; the message says which."""


class HeaderError(Exception):
    """Why no header could be read: what `read_header` turns into an `ImageReadError`
    (`as_read_error`); ``out_of_data`` says the bytes ended inside the header."""

    def __init__(self, format_name: str | None, detail: str = "", out_of_data: bool = False):
        super().__init__(detail)
        self.format_name = format_name
        self.detail = detail
        self.out_of_data = out_of_data

    def as_read_error(self, source: str) -> ImageReadError:
        if self.format_name is None:
            return ImageReadError(f"cannot decode {source}: not an image, or truncated")
        if self.out_of_data:
            return ImageReadError(
                f"cannot decode {source}: truncated {self.format_name} file "
                "(it ends inside the header)"
            )
        return ImageReadError(
            f"cannot decode {source}: corrupt {self.format_name} header ({self.detail})"
        )


class _HeaderReader:
    """A binary stream handed to a header parser: reads are counted against a budget.

    ``came_up_short`` notes a read that got fewer bytes than it asked for: on a partial
    prefix of standard input that means "read more and try again", not "truncated".
    """

    def __init__(self, stream: BinaryIO, budget: int = HEADER_BYTES_LIMIT):
        self._stream = stream
        self._budget = budget
        self._delivered = 0
        self.came_up_short = False

    def read(self, size: int) -> bytes:
        if self._delivered + size > self._budget:
            raise _CorruptHeader(f"it runs past {self._budget:,} bytes")
        data = self._stream.read(size)
        self._delivered += len(data)
        if len(data) < size:
            self.came_up_short = True
        return data

    def exactly(self, size: int) -> bytes:
        data = self.read(size)
        if len(data) < size:
            raise _OutOfData
        return data

    def seek(self, offset: int) -> None:
        self._stream.seek(offset)

    def tell(self) -> int:
        return self._stream.tell()


def _parse_header(reader: _HeaderReader) -> ImageHeader:
    prefix = reader.read(32)
    format_name = _sniff(prefix)
    if format_name is None:
        raise HeaderError(None)
    reader.seek(0)
    try:
        header = _HEADER_PARSERS[format_name](reader)
    except _OutOfData:
        raise HeaderError(format_name, out_of_data=True) from None
    except _CorruptHeader as exc:
        raise HeaderError(format_name, str(exc)) from None
    except (struct.error, ValueError, OverflowError) as exc:
        raise HeaderError(format_name, str(exc).splitlines()[0]) from None
    if header.width <= 0 or header.height <= 0:
        raise HeaderError(format_name, f"size {header.width}x{header.height}")
    if header.channels == 0:
        raise HeaderError(format_name, "0 channels")
    return header


_SIGNATURES: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("PNG", lambda p: p.startswith(b"\x89PNG\r\n\x1a\n")),
    ("JPEG", lambda p: p.startswith(b"\xff\xd8\xff")),
    ("JPEG 2000", lambda p: p.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n")),
    ("JPEG 2000 codestream", lambda p: p.startswith(b"\xff\x4f\xff\x51")),
    ("TIFF", lambda p: p[:4] in (b"II*\x00", b"MM\x00*")),
    ("BigTIFF", lambda p: p[:4] in (b"II+\x00", b"MM\x00+")),
    ("BMP", lambda p: p.startswith(b"BM")),
    ("WebP", lambda p: p[:4] == b"RIFF" and p[8:12] == b"WEBP"),
    ("GIF", lambda p: p[:6] in (b"GIF87a", b"GIF89a")),
    ("AVIF", lambda p: p[4:8] == b"ftyp" and (b"avif" in p[8:32] or b"avis" in p[8:32])),
    ("PNM", lambda p: len(p) > 2 and p[:1] == b"P" and p[1] in b"123456" and p[2:3].isspace()),
    ("PAM", lambda p: p[:2] == b"P7" and p[2:3].isspace()),
    ("PFM", lambda p: p[:2] in (b"PF", b"Pf") and p[2:3].isspace()),
    ("Sun raster", lambda p: p.startswith(b"\x59\xa6\x6a\x95")),
    ("Radiance HDR", lambda p: p.startswith((b"#?RADIANCE", b"#?RGBE"))),
)


def _sniff(prefix: bytes) -> str | None:
    return next((name for name, matches in _SIGNATURES if matches(prefix)), None)


def _png_header(reader: _HeaderReader) -> ImageHeader:
    head = reader.exactly(26)
    if head[12:16] != b"IHDR":
        raise _CorruptHeader("its first chunk is not IHDR")
    width, height, bits, colour = struct.unpack(">IIBB", head[16:26])
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour)
    if channels is None or bits not in (1, 2, 4, 8, 16):
        raise _CorruptHeader(f"colour type {colour}, bit depth {bits}")
    return ImageHeader("PNG", width, height, channels, "unsigned", bits)


_JPEG_FRAME_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7} | set(range(0xC9, 0xD0)))
_JPEG_MARKERS_WITHOUT_LENGTH = frozenset({0x01, 0xD8} | set(range(0xD0, 0xD8)))
_JPEG_MAX_SEGMENTS = 10_000
_JPEG_MAX_JUNK = 64 << 10


def _jpeg_header(reader: _HeaderReader) -> ImageHeader:
    """The frame header (SOF), skipping the segments before it without reading them."""
    reader.seek(2)
    for _ in range(_JPEG_MAX_SEGMENTS):
        marker = _next_jpeg_marker(reader)
        if marker in _JPEG_MARKERS_WITHOUT_LENGTH:
            continue
        if marker in (0xD9, 0xDA):
            raise _CorruptHeader("no frame header before the image data")
        (length,) = struct.unpack(">H", reader.exactly(2))
        if length < 2:
            raise _CorruptHeader(f"a segment of length {length}")
        if marker in _JPEG_FRAME_MARKERS:
            _, height, width = struct.unpack(">BHH", reader.exactly(5))
            return ImageHeader("JPEG", width, height)
        reader.seek(reader.tell() + length - 2)
    raise _CorruptHeader(f"no frame header in its first {_JPEG_MAX_SEGMENTS:,} segments")


def _next_jpeg_marker(reader: _HeaderReader) -> int:
    """The next marker's code; stray bytes before it are skipped, as libjpeg does."""
    for _ in range(_JPEG_MAX_JUNK):
        if reader.exactly(1) != b"\xff":
            continue
        code = reader.exactly(1)[0]
        while code == 0xFF:  # fill bytes
            code = reader.exactly(1)[0]
        if code != 0x00:  # 0xFF00 is an escaped data byte, not a marker
            return code
    raise _CorruptHeader("no marker where one should be")


def _tiff_header(reader: _HeaderReader) -> ImageHeader:
    return _TiffDirectory(reader).header()


class _TiffDirectory:
    """The first image file directory (IFD) of a TIFF or BigTIFF file: the tags we need."""

    ENTRY_TYPES = {
        1: "B",
        3: "H",
        4: "I",
        6: "b",
        8: "h",
        9: "i",
        13: "I",
        16: "Q",
        17: "q",
        18: "Q",
    }
    WANTED = frozenset({256, 257, 258, 273, 277, 279, 324, 325, 339})
    MAX_STRIPS_READ = 4096

    def __init__(self, reader: _HeaderReader):
        self.reader = reader
        head = reader.exactly(8)
        self.order = "<" if head[:2] == b"II" else ">"
        self.big = head[2:4] in (b"+\x00", b"\x00+")
        # Classic TIFF: 4-byte offsets and counts, 12-byte entries; BigTIFF: 8 and 20.
        self.offset_code = "Q" if self.big else "I"
        if self.big:
            (directory_at,) = struct.unpack(self.order + "Q", reader.exactly(8))
        else:
            (directory_at,) = struct.unpack(self.order + "I", head[4:8])
        self.entries = self._read_entries(directory_at)

    def _read_entries(self, directory_at: int) -> dict[int, tuple[int, int, bytes]]:
        """The wanted tags: tag -> (type, number of values, the value-or-offset field)."""
        self.reader.seek(directory_at)
        count_code, entry_size = ("Q", 20) if self.big else ("H", 12)
        count_bytes = self.reader.exactly(struct.calcsize(count_code))
        (count,) = struct.unpack(self.order + count_code, count_bytes)
        if not 0 < count <= 0xFFFF:
            raise _CorruptHeader(f"a directory of {count:,} entries")
        table = self.reader.exactly(count * entry_size)
        layout = self.order + "HH" + self.offset_code
        field_at = struct.calcsize(layout)
        entries = {}
        for start in range(0, len(table), entry_size):
            entry = table[start : start + entry_size]
            tag, kind, number = struct.unpack(layout, entry[:field_at])
            if tag in self.WANTED:
                entries[tag] = (kind, number, entry[field_at:])
        return entries

    def values(self, tag: int, default: int | None = None, limit: int = 16) -> list[int]:
        """The tag's first ``limit`` values."""
        if tag not in self.entries:
            if default is None:
                raise _CorruptHeader(f"no tag {tag}")
            return [default]
        kind, number, field = self.entries[tag]
        code = self.ENTRY_TYPES.get(kind)
        if code is None or number == 0:
            raise _CorruptHeader(f"tag {tag} has type {kind} and {number} values")
        count = min(number, limit)
        item = struct.calcsize(code)
        if number * item <= len(field):
            raw = field[: count * item]
        else:
            (where,) = struct.unpack(self.order + self.offset_code, field)
            self.reader.seek(where)
            raw = self.reader.exactly(count * item)
        return list(struct.unpack(self.order + code * count, raw))

    def data_end(self) -> int | None:
        """Where the last strip (or tile) ends, when there are not too many to read."""
        for offsets, counts in ((273, 279), (324, 325)):
            if offsets in self.entries and counts in self.entries:
                if max(self.entries[offsets][1], self.entries[counts][1]) > self.MAX_STRIPS_READ:
                    return None
                starts = self.values(offsets, limit=self.MAX_STRIPS_READ)
                sizes = self.values(counts, limit=self.MAX_STRIPS_READ)
                return max(start + size for start, size in zip(starts, sizes, strict=False))
        return None

    def header(self) -> ImageHeader:
        (width,), (height,) = self.values(256), self.values(257)
        (channels,) = self.values(277, default=1, limit=1)
        bits = max(self.values(258, default=1))
        kind = _tiff_sample_kind(set(self.values(339, default=1)))
        name = "BigTIFF" if self.big else "TIFF"
        return ImageHeader(name, width, height, channels, kind, bits, self.data_end())


def _tiff_sample_kind(sample_formats: set[int]) -> str:
    """SampleFormat 1 unsigned, 2 signed, 3 float, 4 undefined, 5 and 6 complex."""
    for kind, codes in (("complex", {5, 6}), ("float", {3}), ("signed", {2})):
        if sample_formats & codes:
            return kind
    return "unsigned"


def _bmp_header(reader: _HeaderReader) -> ImageHeader:
    head = reader.exactly(18)
    (pixels_at, info_size) = struct.unpack("<II", head[10:18])
    if info_size == 12:  # OS/2 1.x: unsigned 16-bit sizes
        width, height, _, bits = struct.unpack("<HHHH", reader.exactly(8))
        compression = 0
    elif info_size >= 16:
        info = reader.exactly(16 if info_size == 16 else 20)
        width, height, _, bits = struct.unpack("<iiHH", info[:12])
        compression = struct.unpack("<I", info[12:16])[0] if info_size > 16 else 0
    else:
        raise _CorruptHeader(f"an info header of {info_size} bytes")
    if width <= 0 or height == 0:
        raise _CorruptHeader(f"size {width}x{height}")
    height = abs(height)  # negative: rows stored top-down
    data_end = None
    if compression in (0, 3, 6):  # uncompressed (bit fields or not)
        data_end = pixels_at + (width * bits + 31) // 32 * 4 * height
    return ImageHeader("BMP", width, height, data_end=data_end)


def _webp_header(reader: _HeaderReader) -> ImageHeader:
    head = reader.exactly(20)
    riff_size = struct.unpack("<I", head[4:8])[0]
    chunk = head[12:16]
    if chunk == b"VP8 ":
        frame = reader.exactly(10)
        if frame[3:6] != b"\x9d\x01\x2a":
            raise _CorruptHeader("no VP8 start code")
        width, height = (v & 0x3FFF for v in struct.unpack("<HH", frame[6:10]))
    elif chunk == b"VP8L":
        frame = reader.exactly(5)
        if frame[0] != 0x2F:
            raise _CorruptHeader("no VP8L signature")
        packed = struct.unpack("<I", frame[1:5])[0]
        width, height = (packed & 0x3FFF) + 1, ((packed >> 14) & 0x3FFF) + 1
    elif chunk == b"VP8X":
        canvas = reader.exactly(10)
        width = int.from_bytes(canvas[4:7], "little") + 1
        height = int.from_bytes(canvas[7:10], "little") + 1
    else:
        raise _CorruptHeader(f"a first chunk {chunk!r}")
    return ImageHeader("WebP", width, height, data_end=riff_size + 8)


def _gif_header(reader: _HeaderReader) -> ImageHeader:
    width, height = struct.unpack("<HH", reader.exactly(10)[6:10])
    return ImageHeader("GIF", width, height)


def _sun_raster_header(reader: _HeaderReader) -> ImageHeader:
    values = struct.unpack(">8I", reader.exactly(32))
    width, height, bits, _, encoding, _, palette_bytes = values[1:]
    data_end = None
    if encoding != 2:  # not run-length encoded: rows padded to 16 bits
        data_end = 32 + palette_bytes + (width * bits + 15) // 16 * 2 * height
    return ImageHeader("Sun raster", width, height, data_end=data_end)


def _read_text_header(reader: _HeaderReader) -> bytes:
    return reader.read(TEXT_HEADER_LIMIT)


def _text_header_incomplete(text: bytes) -> Exception:
    if len(text) < TEXT_HEADER_LIMIT:
        return _OutOfData()
    return _CorruptHeader(f"no end of the header in its first {TEXT_HEADER_LIMIT:,} bytes")


def _pnm_tokens(text: bytes, start: int, count: int) -> tuple[list[bytes], int]:
    """``count`` whitespace-separated tokens from ``start`` ('#' comments skipped), and where
    the data starts: one whitespace character after the last token."""
    tokens = []
    at = start
    while len(tokens) < count:
        while at < len(text) and text[at : at + 1].isspace():
            at += 1
        if at < len(text) and text[at : at + 1] == b"#":
            end_of_line = text.find(b"\n", at)
            if end_of_line < 0:
                raise _text_header_incomplete(text)
            at = end_of_line + 1
            continue
        end = at
        while end < len(text) and not text[end : end + 1].isspace() and text[end] != ord("#"):
            end += 1
        if end >= len(text):  # the token may go on in bytes not read yet
            raise _text_header_incomplete(text)
        tokens.append(text[at:end])
        at = end
    return tokens, at + 1


def _whole_number(token: bytes, what: str) -> int:
    if not token.isdigit():
        raise _CorruptHeader(f"{what} {token[:20]!r} is not a whole number")
    if len(token) > 40:  # no image is this large; and int() refuses beyond 4300 digits
        raise _CorruptHeader(f"{what} has {len(token):,} digits")
    return int(token)


def _pnm_header(reader: _HeaderReader) -> ImageHeader:
    text = _read_text_header(reader)
    kind = text[1:2]
    bitmap = kind in b"14"
    tokens, data_at = _pnm_tokens(text, 2, 2 if bitmap else 3)
    width = _whole_number(tokens[0], "width")
    height = _whole_number(tokens[1], "height")
    maxval = 1 if bitmap else _whole_number(tokens[2], "maximum value")
    if not 0 < maxval <= 0xFFFF:
        raise _CorruptHeader(f"maximum value {maxval}")
    channels = 3 if kind in b"36" else 1
    sample_bytes = 1 if maxval <= 0xFF else 2
    bits = 1 if bitmap else 8 * sample_bytes
    data_end = None
    if kind == b"4":
        data_end = data_at + (width + 7) // 8 * height
    elif kind in b"56":
        data_end = data_at + width * height * channels * sample_bytes
    return ImageHeader(
        "PNM", width, height, channels, "unsigned", bits, data_end, text_samples=kind in b"123"
    )


def _pam_header(reader: _HeaderReader) -> ImageHeader:
    text = _read_text_header(reader)
    fields: dict[bytes, bytes] = {}
    at = 3
    while True:
        end_of_line = text.find(b"\n", at)
        if end_of_line < 0:
            raise _text_header_incomplete(text)
        line = text[at:end_of_line].strip()
        at = end_of_line + 1
        if line == b"ENDHDR":
            break
        if line and not line.startswith(b"#"):
            key, _, value = line.partition(b" ")
            fields[key.upper()] = value.strip()
    try:
        width, height, depth, maxval = (
            _whole_number(fields[key], key.decode().lower())
            for key in (b"WIDTH", b"HEIGHT", b"DEPTH", b"MAXVAL")
        )
    except KeyError as exc:
        raise _CorruptHeader(f"no {exc.args[0].decode()} line") from None
    if not 0 < maxval <= 0xFFFF:
        raise _CorruptHeader(f"maximum value {maxval}")
    sample_bytes = 1 if maxval <= 0xFF else 2
    data_end = at + width * height * depth * sample_bytes
    return ImageHeader("PAM", width, height, depth, "unsigned", 8 * sample_bytes, data_end)


def _pfm_header(reader: _HeaderReader) -> ImageHeader:
    text = _read_text_header(reader)
    tokens, data_at = _pnm_tokens(text, 2, 3)
    width = _whole_number(tokens[0], "width")
    height = _whole_number(tokens[1], "height")
    float(tokens[2])  # the scale and byte order: a ValueError if it is no number
    channels = 3 if text[1:2] == b"F" else 1
    data_end = data_at + width * height * channels * 4
    return ImageHeader("PFM", width, height, channels, "float", 32, data_end)


def _radiance_header(reader: _HeaderReader) -> ImageHeader:
    """Variable lines, an empty line, then the resolution: ``-Y height +X width``."""
    text = _read_text_header(reader)
    end_of_variables = text.find(b"\n\n")
    end_of_resolution = text.find(b"\n", end_of_variables + 2)
    if end_of_variables < 0 or end_of_resolution < 0:
        raise _text_header_incomplete(text)
    words = text[end_of_variables + 2 : end_of_resolution].split()
    if len(words) != 4 or {words[0][1:], words[2][1:]} != {b"X", b"Y"}:
        raise _CorruptHeader(f"resolution line {b' '.join(words)[:40]!r}")
    sizes = {words[0][1:]: words[1], words[2][1:]: words[3]}
    width = _whole_number(sizes[b"X"], "width")
    height = _whole_number(sizes[b"Y"], "height")
    return ImageHeader("Radiance HDR", width, height, 3, "float", 32)


_MAX_BOXES = 1024


def _boxes(
    reader: _HeaderReader, start: int, end: int | None
) -> Iterator[tuple[bytes, int, int | None]]:
    """The ISO base media (JP2, AVIF) boxes between ``start`` and ``end`` (None: the end of
    the data): (type, where its content starts, where it ends -- None for "at the end")."""
    at = start
    for _ in range(_MAX_BOXES):
        if end is not None and at >= end:
            return
        reader.seek(at)
        head = reader.read(8)
        if not head and end is None:
            return
        if len(head) < 8:
            raise _OutOfData
        size, kind = struct.unpack(">I4s", head)
        content = at + 8
        if size == 1:
            (size,) = struct.unpack(">Q", reader.exactly(8))
            content += 8
        box_end = end if size == 0 else at + size
        if box_end is not None and box_end < content:
            raise _CorruptHeader(f"a {kind!r} box of {size} bytes")
        yield kind, content, box_end
        if box_end is None or box_end == end:
            return
        at = box_end
    raise _CorruptHeader(f"more than {_MAX_BOXES} boxes")


def _find_box(
    reader: _HeaderReader, kind: bytes, start: int, end: int | None
) -> tuple[int, int | None]:
    for found, content, box_end in _boxes(reader, start, end):
        if found == kind:
            return content, box_end
    if end is None:  # the data ended first: perhaps more of it would hold the box
        raise _OutOfData
    raise _CorruptHeader(f"no {kind.decode()} box")


def _jp2_header(reader: _HeaderReader) -> ImageHeader:
    content, end = _find_box(reader, b"jp2h", 0, None)
    content, _ = _find_box(reader, b"ihdr", content, end)
    reader.seek(content)
    height, width, components = struct.unpack(">IIH", reader.exactly(10))
    return ImageHeader("JPEG 2000", width, height, components)


def _j2k_header(reader: _HeaderReader) -> ImageHeader:
    """A raw codestream: the SIZ segment right after the start marker."""
    siz = reader.exactly(42)
    right, bottom, left, top = struct.unpack(">IIII", siz[8:24])
    (components,) = struct.unpack(">H", siz[40:42])
    return ImageHeader("JPEG 2000", right - left, bottom - top, components)


def _avif_header(reader: _HeaderReader) -> ImageHeader:
    """The largest image spatial extent ('ispe') among the item properties: the primary
    image's or larger, so that the pixel check is never too lenient."""
    content, end = _find_box(reader, b"meta", 0, None)
    content, end = _find_box(reader, b"iprp", content + 4, end)  # meta is a full box
    content, end = _find_box(reader, b"ipco", content, end)
    sizes = []
    for kind, start, _ in _boxes(reader, content, end):
        if kind == b"ispe":
            reader.seek(start + 4)
            sizes.append(struct.unpack(">II", reader.exactly(8)))
    if not sizes:
        raise _CorruptHeader("no image size (ispe) property")
    width, height = max(sizes, key=lambda size: size[0] * size[1])
    return ImageHeader("AVIF", width, height)


_HEADER_PARSERS: dict[str, Callable[[_HeaderReader], ImageHeader]] = {
    "PNG": _png_header,
    "JPEG": _jpeg_header,
    "JPEG 2000": _jp2_header,
    "JPEG 2000 codestream": _j2k_header,
    "TIFF": _tiff_header,
    "BigTIFF": _tiff_header,
    "BMP": _bmp_header,
    "WebP": _webp_header,
    "GIF": _gif_header,
    "AVIF": _avif_header,
    "PNM": _pnm_header,
    "PAM": _pam_header,
    "PFM": _pfm_header,
    "Sun raster": _sun_raster_header,
    "Radiance HDR": _radiance_header,
}
