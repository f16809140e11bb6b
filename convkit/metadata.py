"""What an image file says besides its pixels: EXIF orientation, ICC profile, resolution, frames.

`read_image_info` reads them from encoded bytes that `convkit.imageio` has already read
within its bounds, with a small parser per container: JPEG's segments up to the scan, PNG's
chunks, WebP's RIFF chunks, TIFF's first directory (and the chain of directories, to count
pages), GIF's blocks. None of them decodes pixels, inflates more than `MAX_ICC_BYTES`,
follows a loop or walks more than the bytes it is given; and none of them warns or fails:
what cannot be read (a corrupt EXIF block, a profile in pieces that do not fit) is read as
absent. Pillow is not used here: it warns about such data ("Corrupt EXIF data").

The writing side keeps what is written valid: `icc_profile_for` hands out a profile only
for outputs whose colour model it describes, `dpi_for` only finite, positive resolutions;
`pack_tiff_directory` lays out a TIFF directory for TIFF files and EXIF blocks.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from typing import NamedTuple, TypeVar

# The largest ICC profile inflated from a PNG's iCCP chunk; larger ones are ignored.
MAX_ICC_BYTES = 16 << 20
# Each walk over a container's blocks stops after this many steps (a hostile file of tiny
# blocks would otherwise keep Python busy for minutes); frames are then "at least" so many.
MAX_BLOCKS_WALKED = 1_000_000
MAX_TIFF_PAGES_COUNTED = 100_000
MAX_JPEG_SEGMENTS = 10_000
MAX_JPEG_JUNK = 64 << 10  # stray bytes skipped between JPEG segments, as libjpeg does
METRES_PER_INCH = 0.0254
CENTIMETRES_PER_INCH = 2.54

# EXIF/TIFF tags
ORIENTATION = 274
X_RESOLUTION = 282
Y_RESOLUTION = 283
RESOLUTION_UNIT = 296
ICC_PROFILE = 34675
RESOLUTION_TAGS = frozenset({X_RESOLUTION, Y_RESOLUTION, RESOLUTION_UNIT})

# TIFF field types written by `pack_tiff_directory`
TIFF_SHORT = 3
TIFF_LONG = 4
TIFF_RATIONAL = 5
TIFF_UNDEFINED = 7


class ImageInfo(NamedTuple):
    """What an input image's file says besides its pixels.

    Attributes
    ----------
    icc_profile
        The file's ICC colour profile, as stored (None: no profile).
    dpi
        (x, y) resolution in dots per inch (None: the file gives none, or only an aspect
        ratio).
    orientation
        The EXIF orientation the file had, 1..8 (1: stored upright, or no tag). Reported
        whether or not the pixels were turned upright.
    frames
        Frames or pages in the file (animated GIF, WebP and PNG, multi-page TIFF); only the
        first is read.
    """

    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None
    orientation: int = 1
    frames: int = 1


class UnreadableMetadata(ValueError):
    """Bytes that do not hold what their structure promises (offsets out of range, ...)."""


# --- reading ----------------------------------------------------------------------------------


def read_image_info(data: bytes, format_name: str) -> ImageInfo:
    """What the encoded image ``data`` says besides its pixels; never raises, never warns.

    Parameters
    ----------
    data
        The whole encoded file.
    format_name
        Its format as `convkit.image_headers` names it (``"JPEG"``, ``"PNG"``, ``"TIFF"``,
        ``"BigTIFF"``, ``"WebP"``, ``"GIF"``); other formats give the defaults.

    Returns
    -------
    ImageInfo
        Each field its default where the file gives none or gives it unreadably.
    """
    reader = _INFO_READERS.get(format_name)
    if reader is None:
        return ImageInfo()
    return reader(memoryview(data))


_T = TypeVar("_T")
# What parsing hostile bytes may raise; any of them means "absent".
_PARSE_FAULTS = (UnreadableMetadata, struct.error, zlib.error, ValueError, IndexError)


def _or_default(read: Callable[[], _T], default: _T) -> _T:
    try:
        return read()
    except _PARSE_FAULTS:
        return default


class _ExifFacts(NamedTuple):
    orientation: int = 1
    dpi: tuple[float, float] | None = None


def read_exif(block: bytes | memoryview | None) -> tuple[int, tuple[float, float] | None]:
    """The orientation (1 when absent or out of range) and resolution of an EXIF block.

    ``block`` is the TIFF structure of an EXIF block, with or without the ``Exif\\0\\0``
    that precedes it in JPEG files. A corrupt block reads as (1, None).
    """
    if block is None:
        return _ExifFacts()
    block = memoryview(block)
    if bytes(block[:6]) == b"Exif\0\0":
        block = block[6:]
    directory = _or_default(lambda: TiffDirectory.first(block), None)
    if directory is None:
        return _ExifFacts()
    return _ExifFacts(_orientation(directory), _tiff_dpi(directory))


def _orientation(directory: TiffDirectory) -> int:
    value = _or_default(lambda: directory.number(ORIENTATION, 1), 1)
    return int(value) if value in range(1, 9) else 1


def _tiff_dpi(directory: TiffDirectory) -> tuple[float, float] | None:
    """XResolution and YResolution in the unit ResolutionUnit gives (2 inch, by default;
    3 centimetre; 1 none, an aspect ratio only)."""

    def read() -> tuple[float, float] | None:
        if not directory.has(X_RESOLUTION) or not directory.has(Y_RESOLUTION):
            return None
        unit = directory.number(RESOLUTION_UNIT, 2)
        scale = {2: 1.0, 3: CENTIMETRES_PER_INCH}.get(unit)
        if scale is None:
            return None
        x, y = directory.number(X_RESOLUTION), directory.number(Y_RESOLUTION)
        return _positive_pair(x * scale, y * scale)

    return _or_default(read, None)


def _positive_pair(x: float, y: float) -> tuple[float, float] | None:
    return (float(x), float(y)) if _positive(x) and _positive(y) else None


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


# JPEG: segments up to the scan


def _jpeg_info(data: memoryview) -> ImageInfo:
    jfif_dpi = exif = None
    icc_pieces: dict[int, tuple[int, memoryview]] = {}
    for marker, body in _jpeg_segments(data):
        if marker == 0xE0 and bytes(body[:5]) == b"JFIF\0" and jfif_dpi is None:
            jfif_dpi = _or_default(lambda body=body: _jfif_dpi(body), None)
        elif marker == 0xE1 and bytes(body[:6]) == b"Exif\0\0" and exif is None:
            exif = body[6:]
        elif marker == 0xE2 and bytes(body[:12]) == b"ICC_PROFILE\0" and len(body) >= 14:
            icc_pieces.setdefault(body[12], (body[13], body[14:]))
    orientation, exif_dpi = read_exif(exif)
    return ImageInfo(_joined_icc_pieces(icc_pieces), jfif_dpi or exif_dpi, orientation)


def _jpeg_segments(data: memoryview) -> Iterator[tuple[int, memoryview]]:
    """(marker, body) of each segment before the first scan; stops quietly at bad data."""
    at = 2
    for _ in range(MAX_JPEG_SEGMENTS):
        at = _after_junk_and_fill(data, at)
        if at is None or at + 3 > len(data):
            return
        marker = data[at]
        if marker in (0xD9, 0xDA):  # the end, or the scan: no metadata after it counts
            return
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length
            at += 1
            continue
        (length,) = struct.unpack_from(">H", data, at + 1)
        if length < 2 or at + 1 + length > len(data):
            return
        yield marker, data[at + 3 : at + 1 + length]
        at += 1 + length


def _after_junk_and_fill(data: memoryview, at: int) -> int | None:
    """Where the marker code after ``at`` is: past stray bytes (at most `MAX_JPEG_JUNK`) and
    0xFF fill bytes; None if there is none."""
    if at + 1 < len(data) and data[at] == 0xFF and data[at + 1] != 0xFF:
        return at + 1  # the usual case: a marker right here
    window = bytes(data[at : at + MAX_JPEG_JUNK])
    start = window.find(b"\xff")
    if start < 0:
        return None
    code = len(window) - len(window[start:].lstrip(b"\xff"))
    return at + code if code < len(window) else None


def _jfif_dpi(body: memoryview) -> tuple[float, float] | None:
    """JFIF density: units 1 dots per inch, 2 per centimetre, 0 an aspect ratio only."""
    unit, x, y = struct.unpack_from(">BHH", body, 7)
    scale = {1: 1.0, 2: CENTIMETRES_PER_INCH}.get(unit)
    return None if scale is None else _positive_pair(x * scale, y * scale)


def _joined_icc_pieces(pieces: dict[int, tuple[int, memoryview]]) -> bytes | None:
    """An ICC profile split over APP2 segments numbered 1..count; None if any is missing."""
    if not pieces:
        return None
    counts = {count for count, _ in pieces.values()}
    if len(counts) != 1 or sorted(pieces) != list(range(1, len(pieces) + 1)):
        return None
    if counts.pop() != len(pieces):
        return None
    return b"".join(bytes(pieces[number][1]) for number in sorted(pieces))


# PNG: chunks


def _png_info(data: memoryview) -> ImageInfo:
    icc = dpi = exif = None
    frames = 1
    for kind, body in _png_chunks(data):
        if kind == b"iCCP" and icc is None:
            icc = _or_default(lambda body=body: _inflate_icc(body), None)
        elif kind == b"pHYs" and dpi is None:
            dpi = _or_default(lambda body=body: _png_dpi(body), None)
        elif kind == b"eXIf" and exif is None:
            exif = body
        elif kind == b"acTL":
            frames = _or_default(lambda body=body: max(1, struct.unpack_from(">I", body)[0]), 1)
    orientation, exif_dpi = read_exif(exif)
    return ImageInfo(icc, dpi or exif_dpi, orientation, frames)


def _png_chunks(data: memoryview) -> Iterator[tuple[bytes, memoryview]]:
    """(type, body) of each whole chunk up to IEND; CRCs are OpenCV's business."""
    at = 8
    for _ in range(MAX_BLOCKS_WALKED):
        if at + 8 > len(data):
            return
        length, kind = struct.unpack_from(">I4s", data, at)
        end = at + 8 + length
        if end + 4 > len(data):
            return
        yield kind, data[at + 8 : end]
        if kind == b"IEND":
            return
        at = end + 4


def _inflate_icc(body: memoryview) -> bytes | None:
    """iCCP: a name of 1..79 bytes, a NUL, compression method 0, the deflated profile."""
    name_end = bytes(body[:80]).find(b"\0")
    if name_end < 1 or body[name_end + 1] != 0:
        return None
    inflater = zlib.decompressobj()
    profile = inflater.decompress(body[name_end + 2 :], MAX_ICC_BYTES)
    if inflater.unconsumed_tail or not inflater.eof:  # larger than the bound, or cut
        return None
    return profile


def _png_dpi(body: memoryview) -> tuple[float, float] | None:
    """pHYs: pixels per unit; unit 1 is the metre, 0 an aspect ratio only."""
    x, y, unit = struct.unpack_from(">IIB", body)
    return _positive_pair(x * METRES_PER_INCH, y * METRES_PER_INCH) if unit == 1 else None


# TIFF: the first directory, and the chain of them


def _tiff_info(data: memoryview) -> ImageInfo:
    first = _or_default(lambda: TiffDirectory.first(data), None)
    if first is None:
        return ImageInfo()
    icc = _or_default(lambda: first.raw(ICC_PROFILE) if first.has(ICC_PROFILE) else None, None)
    return ImageInfo(icc, _tiff_dpi(first), _orientation(first), _count_pages(first))


def _count_pages(first: TiffDirectory) -> int:
    """Directories in the chain from ``first``, each read only for its size and its link to
    the next; a loop or an offset out of range ends the count."""
    count_code, entry_size = ("Q", 20) if first.big else ("H", 12)
    pages, seen, at = 1, {first.at}, first.next_at
    while at and at not in seen and pages < MAX_TIFF_PAGES_COUNTED:
        seen.add(at)
        try:
            (entries,) = struct.unpack_from(first.order + count_code, first.data, at)
            link_at = at + struct.calcsize(count_code) + entries * entry_size
            (at,) = struct.unpack_from(first.order + first.offset_code, first.data, link_at)
        except struct.error:  # past the end
            break
        pages += 1
    return pages


# WebP: RIFF chunks


def _webp_info(data: memoryview) -> ImageInfo:
    icc = exif = None
    frames = 0
    for kind, body in _riff_chunks(data):
        if kind == b"ICCP" and icc is None:
            icc = bytes(body)
        elif kind == b"EXIF" and exif is None:
            exif = body
        elif kind == b"ANMF":
            frames += 1
    orientation, dpi = read_exif(exif)
    return ImageInfo(icc, dpi, orientation, max(frames, 1))


def _riff_chunks(data: memoryview) -> Iterator[tuple[bytes, memoryview]]:
    at = 12
    for _ in range(MAX_BLOCKS_WALKED):
        if at + 8 > len(data):
            return
        kind, size = struct.unpack_from("<4sI", data, at)
        end = at + 8 + size
        if end > len(data):
            return
        yield kind, data[at + 8 : end]
        at = end + (size & 1)  # chunks are padded to an even size


# GIF: blocks


def _gif_info(data: memoryview) -> ImageInfo:
    return ImageInfo(frames=max(1, _or_default(lambda: _count_gif_frames(data), 1)))


def _count_gif_frames(data: memoryview) -> int:
    """Image descriptors (0x2C) before the trailer, skipping extensions and image data by
    their sub-block lengths; a file cut short counts the frames it holds."""
    flags = data[10]
    at = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = steps = 0
    while at < len(data) and steps < MAX_BLOCKS_WALKED:
        introducer = data[at]
        if introducer == 0x2C:  # image descriptor: 9 bytes, perhaps a colour table
            frames += 1
            local = data[at + 9]
            at += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            at += 1  # the LZW code size; the image data follows in sub-blocks
        elif introducer == 0x21:  # extension: a label, then sub-blocks
            at += 2
        else:  # 0x3B, the trailer, or anything that is not a GIF block
            break
        while at < len(data) and data[at] != 0 and steps < MAX_BLOCKS_WALKED:
            at += data[at] + 1  # a sub-block: its length, then that many bytes
            steps += 1
        at += 1  # the terminating empty sub-block
        steps += 1
    return frames


_INFO_READERS: dict[str, Callable[[memoryview], ImageInfo]] = {
    "JPEG": _jpeg_info,
    "PNG": _png_info,
    "TIFF": _tiff_info,
    "BigTIFF": _tiff_info,
    "WebP": _webp_info,
    "GIF": _gif_info,
}


# --- a TIFF directory in memory ----------------------------------------------------------------


class TiffDirectory:
    """One image file directory (IFD) of a TIFF structure held in memory: a TIFF or BigTIFF
    file, or an EXIF block. Every offset is checked against the bytes; a fault raises
    `UnreadableMetadata`.

    `convkit.image_headers` reads a first directory from a stream within a byte budget; this
    one reads any directory, and every tag, of bytes already in memory.
    """

    # type -> (struct code, values per item): rationals are two numbers each
    TYPES = {
        1: ("B", 1),
        3: ("H", 1),
        4: ("I", 1),
        5: ("I", 2),
        6: ("b", 1),
        7: ("B", 1),
        8: ("h", 1),
        9: ("i", 1),
        10: ("i", 2),
        11: ("f", 1),
        12: ("d", 1),
        13: ("I", 1),
        16: ("Q", 1),
        17: ("q", 1),
        18: ("Q", 1),
    }

    def __init__(self, data: memoryview, at: int, order: str, big: bool):
        self.data, self.at, self.order, self.big = data, at, order, big
        self.offset_code = "Q" if big else "I"
        count_code, entry_size = ("Q", 20) if big else ("H", 12)
        (count,) = self._unpack(count_code, at)
        table_at = at + struct.calcsize(count_code)
        if count == 0 or table_at + count * entry_size + struct.calcsize(self.offset_code) > len(
            data
        ):
            raise UnreadableMetadata(f"a directory of {count} entries at {at}")
        layout = order + "HH" + self.offset_code
        field_at = struct.calcsize(layout)
        self.entries: dict[int, tuple[int, int, int]] = {}
        for start in range(table_at, table_at + count * entry_size, entry_size):
            tag, kind, number = struct.unpack_from(layout, data, start)
            self.entries.setdefault(tag, (kind, number, start + field_at))
        (self.next_at,) = self._unpack(self.offset_code, table_at + count * entry_size)

    @classmethod
    def first(cls, data: bytes | memoryview) -> TiffDirectory:
        """The first directory, after the TIFF (or BigTIFF) header at the start of ``data``."""
        data = memoryview(data)
        head = bytes(data[:4])
        order = {b"II": "<", b"MM": ">"}.get(head[:2])
        if order is None or head[2:4] not in (b"*\0", b"\0*", b"+\0", b"\0+"):
            raise UnreadableMetadata("no TIFF header")
        big = head[2:4] in (b"+\0", b"\0+")
        (at,) = struct.unpack_from(order + ("Q" if big else "I"), data, 8 if big else 4)
        return cls(data, at, order, big)

    def has(self, tag: int) -> bool:
        return tag in self.entries

    def numbers(self, tag: int) -> list[float]:
        """The tag's values as numbers; rationals as their quotients."""
        kind, count, field_at = self._entry(tag)
        code, per_item = self.TYPES[kind]
        values = struct.unpack_from(
            f"{self.order}{count * per_item}{code}",
            self.data,
            self._values_at(kind, count, field_at),
        )
        if per_item == 1:
            return list(values)
        pairs = zip(values[::2], values[1::2], strict=True)
        return [
            numerator / denominator if denominator else math.nan for numerator, denominator in pairs
        ]

    def number(self, tag: int, default: float | None = None) -> float:
        """The tag's first value; ``default`` if the tag is absent (None: it must be there)."""
        if tag not in self.entries and default is not None:
            return default
        kind, count, field_at = self._entry(tag)
        if count < 1:
            raise UnreadableMetadata(f"tag {tag} has no values")
        code, per_item = self.TYPES[kind]
        values = struct.unpack_from(
            f"{self.order}{per_item}{code}", self.data, self._values_at(kind, count, field_at)
        )
        if per_item == 1:
            return values[0]
        return values[0] / values[1] if values[1] else math.nan

    def raw(self, tag: int) -> bytes:
        """The tag's bytes as stored (for UNDEFINED and BYTE tags such as an ICC profile)."""
        kind, count, field_at = self._entry(tag)
        size = count * struct.calcsize(self.TYPES[kind][0]) * self.TYPES[kind][1]
        start = self._values_at(kind, count, field_at)
        return bytes(self.data[start : start + size])

    def _entry(self, tag: int) -> tuple[int, int, int]:
        if tag not in self.entries:
            raise UnreadableMetadata(f"no tag {tag}")
        kind, count, field_at = self.entries[tag]
        if kind not in self.TYPES:
            raise UnreadableMetadata(f"tag {tag} has type {kind}")
        return kind, count, field_at

    def _values_at(self, kind: int, count: int, field_at: int) -> int:
        """Where the values are: in the entry's own field when they fit, else at its offset."""
        code, per_item = self.TYPES[kind]
        size = count * struct.calcsize(code) * per_item
        if size <= struct.calcsize(self.offset_code):
            return field_at
        (start,) = self._unpack(self.offset_code, field_at)
        if start + size > len(self.data):
            raise UnreadableMetadata(f"values at {start} run past the end")
        return start

    def _unpack(self, code: str, at: int) -> tuple:
        if at < 0 or at + struct.calcsize(code) > len(self.data):
            raise UnreadableMetadata(f"offset {at} is past the end")
        return struct.unpack_from(self.order + code, self.data, at)


# --- writing ----------------------------------------------------------------------------------

ICC_COLOUR_SPACES = {1: b"GRAY", 3: b"RGB "}


def icc_profile_for(info: ImageInfo | None, colour_channels: int) -> bytes | None:
    """The input's ICC profile, if it describes an output with ``colour_channels`` (1 grey,
    3 colour; alpha not counted): an RGB profile fits colour outputs, a grey one grey outputs.

    A colour photo filtered in grey (``--gray``) gets no profile, rather than one that
    viewers would reject or misapply; nor does anything that is not an ICC profile.
    """
    if info is None or not info.icc_profile:
        return None
    profile = info.icc_profile
    if len(profile) < 128 or profile[36:40] != b"acsp":
        return None
    return profile if profile[16:20] == ICC_COLOUR_SPACES.get(colour_channels) else None


def dpi_for(info: ImageInfo | None) -> tuple[float, float] | None:
    """The input's resolution, if it is two finite, positive numbers."""
    if info is None or info.dpi is None:
        return None
    try:
        x, y = (float(value) for value in info.dpi)
    except (TypeError, ValueError):
        return None
    return _positive_pair(x, y)


def tiff_rational(value: float) -> tuple[int, int]:
    """``value`` as the nearest fraction whose numerator and denominator fit 32 bits."""
    largest = 0xFFFF_FFFF
    if value >= largest:
        return largest, 1
    fraction = Fraction(value).limit_denominator(min(1_000_000, int(largest // max(value, 1))))
    return max(fraction.numerator, 1), fraction.denominator


def resolution_entries(dpi: tuple[float, float]) -> list[tuple[int, int, Sequence[int]]]:
    """XResolution, YResolution and ResolutionUnit (inch) for `pack_tiff_directory`."""
    return [
        (X_RESOLUTION, TIFF_RATIONAL, tiff_rational(dpi[0])),
        (Y_RESOLUTION, TIFF_RATIONAL, tiff_rational(dpi[1])),
        (RESOLUTION_UNIT, TIFF_SHORT, [2]),
    ]


def exif_with_resolution(dpi: tuple[float, float]) -> bytes:
    """An EXIF block (its TIFF structure, little-endian) holding only the resolution: for
    formats that keep resolution nowhere else (WebP). No orientation tag."""
    return b"II*\0" + struct.pack("<I", 8) + pack_tiff_directory(resolution_entries(dpi), 8)


def pack_tiff_directory(
    entries: Sequence[tuple[int, int, Sequence[int] | bytes]], at: int
) -> bytes:
    """A little-endian classic TIFF directory that will sit at offset ``at``, followed by
    the values too long for their entries' own 4 bytes; its next-directory offset is 0.

    Parameters
    ----------
    entries
        (tag, type, values): `TIFF_SHORT` or `TIFF_LONG` numbers, `TIFF_RATIONAL`
        numerator, denominator pairs flattened, `TIFF_UNDEFINED` bytes.
    at
        The directory's offset in the file (even, and the file under 4 GiB).
    """
    entries = sorted(entries, key=lambda entry: entry[0])
    values_at = at + 2 + 12 * len(entries) + 4
    table, values = [], bytearray()
    for tag, kind, content in entries:
        packed, count = _packed_values(kind, content)
        if len(packed) <= 4:
            field = packed.ljust(4, b"\0")
        else:
            values += b"\0" * ((values_at + len(values)) & 1)  # values start on a word
            field = struct.pack("<I", values_at + len(values))
            values += packed
        table.append(struct.pack("<HHI", tag, kind, count) + field)
    return struct.pack("<H", len(entries)) + b"".join(table) + bytes(4) + bytes(values)


def _packed_values(kind: int, content: Sequence[int] | bytes) -> tuple[bytes, int]:
    if kind == TIFF_UNDEFINED:
        return bytes(content), len(content)
    code = {TIFF_SHORT: "H", TIFF_LONG: "I", TIFF_RATIONAL: "I"}[kind]
    count = len(content) // 2 if kind == TIFF_RATIONAL else len(content)
    return struct.pack(f"<{len(content)}{code}", *content), count
