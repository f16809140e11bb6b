"""Kernel files and inline kernel strings, parsed into `Kernel`.

Formats: text rows (``.txt``, ``.csv``; commas or whitespace; ``#`` comments; fractions such
as ``1/9``), ``.npy`` (2-D), ``.json`` (a list of rows, or ``{"name", "kernel", "scale"}``)
and libvips ``.mat`` (a ``width height [scale [offset]]`` header, then the rows). Text files
may start with a UTF-8 byte order mark. Every parse error names the source, the line and the
token. Only regular files of at most `MAX_KERNEL_FILE_BYTES` are read, and never in a way
that can block.
"""

from __future__ import annotations

import decimal
import io
import math
import os
import re
import stat
from pathlib import Path

import numpy as np

from convkit.errors import KernelError, KernelParseError, UsageError
from convkit.kernels import Kernel, is_kernel_name, quoted, split_kernel_list

KERNEL_FILE_SUFFIXES = (".txt", ".csv", ".npy", ".json", ".mat")

# A kernel file larger than this is refused before it is read: 16 MiB holds a 1000x1000
# kernel written out in full, far beyond what any filter needs.
MAX_KERNEL_FILE_BYTES = 16 * 2**20
# A JSON kernel is at most an object holding a list of rows (3 levels); a little room for
# extra keys, and no recursion into 100000 nested brackets.
MAX_JSON_DEPTH = 8
# Width and height of a .mat header or an ImageMagick kernel string: far beyond any kernel,
# small enough that int() never meets Python's limit on digits.
_MAX_SIZE_DIGITS = 9

_TOKENS = re.compile(r"[^,\s]+")
# A JSON string; the closing quote is optional so that an unterminated one matches to the end
# instead of being retried from every later quote (quadratic on '"\\"\\"...').
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.S)
# ImageMagick's kernel string: "WxH[+X+Y]: values", or "N: values" for N x N; X, Y the origin.
_MAGICK = re.compile(r"\s*(\d+)(?:x(\d+))?(?:([+-]\d+)([+-]\d+))?\s*:(.*)", re.S)


def parse_number(token: str, source: str, line: int | None, unit: str = "line") -> float:
    """A weight: an int, a float or a fraction ``a/b``, finite in float64."""
    try:
        value = _fraction(token) if "/" in token else float(token)
    except ZeroDivisionError:
        raise _error(
            source, line, unit, f"{quoted(token)} is not a number (division by 0)"
        ) from None
    except (ValueError, ArithmeticError):
        raise _error(source, line, unit, f"{quoted(token)} is not a number") from None
    if math.isinf(value) and "inf" not in token.lower():
        raise _error(source, line, unit, f"{quoted(token)} is too large: it overflows float64")
    if not math.isfinite(value):
        raise _error(source, line, unit, f"{quoted(token)} is not a finite number")
    return value


# Enough digits that rounding the quotient to float64 afterwards is exact in practice; the
# exponent range is decimal's own, so 1e400/1e399 is 10 and 1e400/1 overflows (to inf).
_FRACTIONS = decimal.Context(
    prec=40,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero],
)


def _fraction(token: str) -> float:
    """``a/b`` rounded once to float64, for any length of ``a`` and ``b``: decimal has no
    limit on digits (int() has) and no exponent blow-up (Fraction('1e999999999') has)."""
    numerator, _, denominator = token.partition("/")
    if not numerator or "/" in denominator:
        raise ValueError(token)
    try:
        quotient = _FRACTIONS.divide(decimal.Decimal(numerator), decimal.Decimal(denominator))
    except decimal.DivisionByZero:
        raise ZeroDivisionError(token) from None
    return float(quotient)


def _error(source: str, number: int | None, unit: str, message: str) -> KernelParseError:
    """``file:LINE: message`` for files; ``source: row N: message`` for inline strings."""
    if unit == "line" or number is None:
        return KernelParseError(source, number, message)
    return KernelParseError(source, None, f"{unit} {number}: {message}")


def parse_rows(lines: list[tuple[int, str]], source: str, unit: str = "line") -> np.ndarray:
    """Rows of numbers, one per ``(number, text)``, into a rectangular float64 matrix.

    ``unit`` says what the numbers count in error messages: ``line`` of a file, or ``row``
    of an inline string.
    """
    rows: list[np.ndarray] = []
    first = 0
    for number, text in lines:
        # Numbers go straight into an array: no list of millions of token strings.
        tokens = _TOKENS.finditer(text.split("#", 1)[0])
        row = np.fromiter(
            (parse_number(t.group(), source, number, unit) for t in tokens), dtype=np.float64
        )
        if not row.size:
            continue
        if rows and row.size != rows[0].size:
            raise _error(
                source,
                number,
                unit,
                f"{'row' if unit == 'line' else 'it'} has {row.size} entries but {unit} {first}"
                f" has {rows[0].size} (a kernel must be rectangular)",
            )
        if not rows:
            first = number
        rows.append(row)
    if not rows:
        raise KernelParseError(source, None, "no kernel rows found (the kernel is empty)")
    return np.vstack(rows)


def parse_magick(text: str, name: str, source: str) -> Kernel:
    """An ImageMagick kernel string: ``"3x3: 0,-1,0 -1,5,-1 0,-1,0"``, ``"3x3+0+0: ..."``.

    The values fill the rows in order; the origin (column X, row Y) becomes the anchor
    (row Y, column X). It is ``+X+Y`` when given, else ImageMagick's own default
    ``((W - 1) // 2, (H - 1) // 2)`` (`imagemagick_origin`): the centre of an odd size, the
    cell just above and left of the centre of an even one, so ``"2x2: ..."`` is anchored
    at (0, 0) where OpenCV's default would be (1, 1). A ``nan`` or ``-`` cell, which
    ImageMagick leaves out of the neighbourhood, becomes 0 with a warning.
    """
    match = _MAGICK.fullmatch(text)
    if match is None:
        raise KernelParseError(source, None, "not an ImageMagick kernel ('WxH[+X+Y]: values')")
    width = _size_field(match.group(1), source, None)
    height = _size_field(match.group(2), source, None) if match.group(2) else width
    if width < 1 or height < 1:
        raise KernelParseError(source, None, f"size {width}x{height} must be at least 1x1")
    holes: list[int] = []
    tokens = enumerate(t.group() for t in _TOKENS.finditer(match.group(5)))
    values = np.fromiter((_magick_value(i, t, holes, source) for i, t in tokens), np.float64)
    if values.size != width * height:
        raise KernelParseError(
            source, None, f"{width}x{height} needs {width * height} values, got {values.size}"
        )
    anchor = _magick_anchor(match, width, height, source)
    warnings = (_holes_warning(name, holes, width),) if holes else ()
    weights = values.reshape(height, width)
    description = f"ImageMagick kernel from {source}"
    return _kernel_from(
        weights, source, name, anchor=anchor, description=description, warnings=warnings
    )


def imagemagick_origin(width: int, height: int) -> tuple[int, int]:
    """ImageMagick's default origin of a ``width`` x ``height`` kernel, as an anchor (row,
    column): ``((height - 1) // 2, (width - 1) // 2)``.

    The centre for odd sizes (as OpenCV's ``(kH // 2, kW // 2)``); for even sizes the cell
    just above and left of the centre, where OpenCV takes the one below and right.

    Examples
    --------
    >>> imagemagick_origin(2, 2), imagemagick_origin(4, 4), imagemagick_origin(5, 3)
    ((0, 0), (1, 1), (1, 2))
    """
    # ImageMagick 7, MagickCore/morphology.c, ParseKernelArray(): for "WxH:" without +X+Y,
    #   kernel->x = ... : (ssize_t) (kernel->width-1)/2;
    #   kernel->y = ... : (ssize_t) (kernel->height-1)/2;
    # and for the old style of N*N bare numbers, kernel->x = kernel->y = (width-1)/2.
    # Its documentation (AcquireKernelInfo) says the same: "the pixel in the center, for odd
    # sizes, or to the immediate top or left of center for even sizes is automatically
    # selected". -morphology Correlate correlates about this origin; Convolve reflects the
    # kernel about it (MorphologyPrimitive's offset width - x - 1), as Kernel.flipped()
    # does. ImageMagick 6.9.11's -define morphology:showKernel=1 prints 2x2+0+0, 4x4+1+1,
    # 5x3+2+1 and 2x5+0+2; tests/test_kernel_syntax.py compares with it when installed.
    return (height - 1) // 2, (width - 1) // 2


def _magick_anchor(match: re.Match, width: int, height: int, source: str) -> tuple[int, int]:
    """The anchor of a parsed ImageMagick string: its ``+X+Y``, or ImageMagick's default."""
    if match.group(3) is None:
        return imagemagick_origin(width, height)
    column, row = (_origin_field(match.group(g), source) for g in (3, 4))
    if not (0 <= column < width and 0 <= row < height):
        raise KernelParseError(
            source, None, f"origin +{column}+{row} lies outside the {width}x{height} kernel"
        )
    return row, column


def _magick_value(index: int, token: str, holes: list[int], source: str) -> float:
    """One ImageMagick value; a ``nan`` or ``-`` cell is 0, its index added to ``holes``."""
    if token == "-" or token.lower() == "nan":
        holes.append(index)
        return 0.0
    return parse_number(token, source, None)


# Cells listed by position in the warning about nan/- cells; the rest are counted.
_LISTED_HOLES = 8


def _holes_warning(name: str, holes: list[int], width: int) -> str:
    cells = ", ".join(f"(row {i // width}, col {i % width})" for i in holes[:_LISTED_HOLES])
    more = f" and {len(holes) - _LISTED_HOLES} more" if len(holes) > _LISTED_HOLES else ""
    return f"kernel {name!r}: {len(holes)} nan/- cells read as 0: {cells}{more}"


def _size_field(token: str, source: str, line: int | None) -> int:
    """A width or height: a whole number with few enough digits for int()."""
    if len(token.lstrip("+0")) > _MAX_SIZE_DIGITS:
        raise KernelParseError(source, line, f"size {quoted(token)} is too large for a kernel")
    return int(token)


def _origin_field(token: str, source: str) -> int:
    if len(token.lstrip("+-0")) > _MAX_SIZE_DIGITS:
        raise KernelParseError(source, None, f"origin {quoted(token)} lies outside the kernel")
    return int(token)


def is_magick(text: str) -> bool:
    """True for text that starts like an ImageMagick kernel string (``3x3:``, ``5:``)."""
    return _MAGICK.match(text) is not None and ":" in text.split(",", 1)[0]


def parse_kernel(text: str, name: str = "inline") -> Kernel:
    """Parse an inline kernel string.

    Three forms are read:

    - rows separated by ``;`` (or line breaks), entries by ``,`` or spaces:
      ``"0,-1,0; -1,5,-1; 0,-1,0"``; the anchor is OpenCV's ``(kH // 2, kW // 2)``;
    - an ImageMagick kernel string ``"WxH[+X+Y]: values"`` (`parse_magick`), anchored at
      its origin: ``+X+Y``, else ImageMagick's default ``((H - 1) // 2, (W - 1) // 2)``;
    - ImageMagick's old style: numbers with no ``;``, no line break and no ``WxH:``. A
      count that is a perfect square N*N with N >= 2 (4, 9, 16, 25...) fills an N x N
      kernel row by row, as ImageMagick reads it, anchored at ImageMagick's default
      origin ``((N - 1) // 2, (N - 1) // 2)`` -- (0, 0) for 2x2, (1, 1) for 3x3 and 4x4 --
      with a note saying so. Any other count (1, 2, 3, 5, 8...) is one row, as one number
      is a 1x1 kernel. A trailing ``;`` (``"1,1,1,1;"``) keeps 4 or 9 numbers one row.

    Kernel files never take the old style: a line of a file is always one row.

    Raises
    ------
    KernelParseError
        For text that is none of these; the message quotes the text and names the row and
        the token.

    Examples
    --------
    >>> parse_kernel("0,-1,0; -1,5,-1; 0,-1,0").weights.sum()
    np.float64(1.0)
    >>> parse_kernel("2x1+0+0: 1 -1").anchor
    (0, 0)
    >>> parse_kernel("0 -1 0 -1 5 -1 0 -1 0").shape, parse_kernel("1 2 1").shape
    ((3, 3), (1, 3))
    """
    if not isinstance(text, str):
        raise KernelError(f"an inline kernel must be a string, got {quoted(text)}")
    source = f"inline kernel {quoted(text)}"
    if is_magick(text):
        return parse_magick(text, name, source)
    pieces = re.split(r"[;\n]", text)
    numbered = list(enumerate(pieces, start=1))
    weights = parse_rows(numbered, source, unit="row")
    side = _old_style_side(weights) if len(pieces) == 1 else None
    if side is not None:
        return _old_style_square(weights, side, source, name)
    return _kernel_from(weights, source, name, description="inline kernel")


def _old_style_side(row: np.ndarray) -> int | None:
    """N when a single row holds a perfect square N*N >= 4 of numbers, else None."""
    side = math.isqrt(row.size)
    return side if side >= 2 and side * side == row.size else None


def _old_style_square(row: np.ndarray, side: int, source: str, name: str) -> Kernel:
    """ImageMagick's old style: N*N bare numbers are an N x N kernel at ImageMagick's origin."""
    note = (
        f"kernel {name!r}: {row.size} numbers without ';' read as a {side}x{side} square, as "
        f"ImageMagick does (end with ';' for one row)"
    )
    return _kernel_from(
        row.reshape(side, side),
        source,
        name,
        anchor=imagemagick_origin(side, side),
        description=f"inline kernel, ImageMagick's old style ({row.size} numbers, {side}x{side})",
        warnings=(note,),
    )


def looks_inline(value: str) -> bool:
    """True for a ``--kernel`` value that is a matrix, not a name: ``"1,2,1"``, ``"1 2; 3 4"``,
    ``"3x3: ..."``, ``"0 -1 0 -1 5 -1 0 -1 0"``.

    A comma-separated value whose first item is a kernel name (``"sobel_x,sobel_y"``, or
    the mistaken ``"sobel_x,1"``) is a list of names, not a matrix.
    """
    if _starts_like_a_name_list(value):
        return False
    return (
        bool(re.search(r"[,;]", value))
        or bool(re.fullmatch(r"[\s\d.eE+\-/]+", value))
        or is_magick(value)
    )


def _starts_like_a_name_list(value: str) -> bool:
    """True for ``name,...``: a comma, and a kernel name before the first one."""
    first, comma, _ = value.partition(",")
    return bool(comma) and is_kernel_name(first)


def _refuse_a_broken_name_list(value: str) -> None:
    """A `KernelError` for ``name,...`` with an item that is not a kernel name
    (``"sobel_x,1"``, ``"sobel_x,edges.txt"``, ``"sobel_x,"``), naming that item."""
    if not _starts_like_a_name_list(value):
        return
    items = [item.strip() for item in value.split(",")]
    position, item = next(
        ((i, item) for i, item in enumerate(items, start=1) if not is_kernel_name(item)),
        (0, ""),
    )
    if not position:
        return
    what = f"item {position} is empty" if not item else f"{quoted(item)} is not a kernel name"
    no_file = (
        f", and there is no file {quoted(value)}"
        if Path(value).suffix.lower() in KERNEL_FILE_SUFFIXES
        else ""
    )
    raise KernelError(
        f"kernel list {quoted(value)}: {what}{no_file} (a list holds kernel names only, as in "
        "sobel_x,gaussian:5:1.4; a matrix or a file takes a --kernel of its own)"
    )


def load_kernel(path: str | Path) -> Kernel:
    """Read a kernel file; the format follows the suffix (anything unknown is read as text).

    Only a regular file is read, and only if it holds at most `MAX_KERNEL_FILE_BYTES`
    (16 MiB); it is opened without blocking, so a FIFO swapped in at the last moment is
    refused too. A text file may start with a UTF-8 byte order mark. The kernel's ``source``
    is ``path``.

    Raises
    ------
    UsageError
        If the file does not exist, is not a regular file (a folder, FIFO, device, socket),
        is larger than the limit or cannot be read; the message names the path.
    KernelParseError
        If its contents are not a kernel; the message names file, line and token.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise UsageError(f"a kernel file is a path, got {quoted(path)}")
    path = Path(path)
    source = str(path)
    data = _read_kernel_file(path, source)
    kernel = _parse_kernel_bytes(data, path, source)
    return kernel._replace(source=path)


def _parse_kernel_bytes(data: bytes, path: Path, source: str) -> Kernel:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _load_npy(data, source, path.stem)
    text = _decode(data, source)
    if suffix == ".json":
        return _parse_json(text, source, path.stem)
    if suffix == ".mat":
        return _parse_vips_mat(text, source, path.stem)
    uncommented = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    if is_magick(uncommented):
        return parse_magick(uncommented.strip(), path.stem, source)
    return _kernel_from(parse_rows(_numbered(text), source), source, path.stem)


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _read_kernel_file(path: Path, source: str) -> bytes:
    """The bytes of a regular file of at most `MAX_KERNEL_FILE_BYTES`; `UsageError` if not."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise UsageError(f"kernel file not found: {source}") from None
    except ValueError:  # a NUL byte in the name
        raise UsageError(f"kernel file not found: {quoted(source)}") from None
    except OSError as exc:
        raise UsageError(f"cannot read kernel file {source}: {exc.strerror}") from None
    _check_regular_file(info, source)
    # Not opened at all unless regular; opened non-blocking in case it was swapped for a FIFO
    # since, and checked again on the open descriptor.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        descriptor = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UsageError(f"cannot read kernel file {source}: {exc.strerror}") from None
    with os.fdopen(descriptor, "rb", buffering=0) as file:
        _check_regular_file(os.fstat(file.fileno()), source)
        try:
            data = _read_at_most(file, MAX_KERNEL_FILE_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"cannot read kernel file {source}: {exc.strerror}") from None
    if len(data) > MAX_KERNEL_FILE_BYTES:
        _refuse_size(source, f"more than {len(data) - 1} bytes")
    return data


def _check_regular_file(info: os.stat_result, source: str) -> None:
    if not stat.S_ISREG(info.st_mode):
        what = next((kind for test, kind in _FILE_KINDS if test(info.st_mode)), "special")
        raise UsageError(f"kernel file {source} is {what}, not a regular file")
    if info.st_size > MAX_KERNEL_FILE_BYTES:
        _refuse_size(source, f"{info.st_size} bytes")


def _refuse_size(source: str, size: str) -> None:
    raise UsageError(
        f"kernel file {source} is {size}, more than the limit of {MAX_KERNEL_FILE_BYTES} "
        f"bytes ({MAX_KERNEL_FILE_BYTES // 2**20} MiB) for a kernel file"
    )


def _read_at_most(file: io.RawIOBase, limit: int) -> bytes:
    """Up to ``limit`` bytes: a file that grew since it was measured is read no further."""
    chunks = []
    remaining = limit
    while remaining > 0:
        chunk = file.read(min(remaining, 2**20))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _decode(data: bytes, source: str) -> str:
    """UTF-8 text; a leading byte order mark (spreadsheets write one) is dropped."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        byte = data[exc.start : exc.start + 1].hex()
        raise KernelParseError(
            source, line, f"not UTF-8 text (byte 0x{byte} at offset {exc.start})"
        ) from None


def _numbered(text: str) -> list[tuple[int, str]]:
    return list(enumerate(text.splitlines(), start=1))


def _load_npy(data: bytes, source: str, stem: str) -> Kernel:
    """A 2-D array of real numbers; its header is checked against the data before reading."""
    shape, fortran, dtype, offset = _npy_header(data, source)
    if dtype.hasobject:
        raise KernelParseError(
            source, None, "holds Python objects (a pickle), which convkit does not load"
        )
    if dtype.kind not in "iuf":
        raise KernelParseError(source, None, f"needs real numbers, got dtype {dtype}")
    if len(shape) != 2 or math.prod(shape) == 0:
        raise KernelParseError(source, None, f"needs a non-empty 2-D array, got {shape}")
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - offset != expected:
        raise KernelParseError(
            source,
            None,
            f"its header says {shape[0]}x{shape[1]} {dtype} ({expected} bytes of data) but "
            f"the file holds {len(data) - offset}",
        )
    weights = np.frombuffer(data, dtype, math.prod(shape), offset)
    weights = weights.reshape(shape, order="F" if fortran else "C")
    return _kernel_from(weights, source, stem)


def _npy_header(data: bytes, source: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran order, dtype, offset of the data) from a .npy file's header."""
    from numpy.lib import format as npy

    stream = io.BytesIO(data)
    try:
        version = npy.read_magic(stream)
        read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran, dtype = read_header(stream)
    except (ValueError, EOFError, TypeError, SyntaxError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KernelParseError(source, None, f"not a readable .npy array ({message})") from None
    return shape, fortran, dtype, stream.tell()


def _kernel_from(weights: object, source: str, name: str, **fields) -> Kernel:
    """A `Kernel` (described as ``from SOURCE`` unless told otherwise); its `KernelError`
    (weights whose sum overflows...) becomes a parse error that names the source."""
    fields.setdefault("description", f"from {source}")
    try:
        return Kernel(name, weights, **fields)
    except KernelParseError:
        raise
    except KernelError as exc:
        raise KernelParseError(source, None, str(exc)) from None


def _parse_json(text: str, source: str, stem: str) -> Kernel:
    import json

    _check_json_depth(text, source)
    number = _json_number_parser(source)
    try:
        data = json.loads(
            text, parse_int=number, parse_float=number, parse_constant=_json_constant(source)
        )
    except json.JSONDecodeError as exc:
        raise KernelParseError(source, exc.lineno, f"invalid JSON: {exc.msg}") from None
    name, scale = stem, 1.0
    if isinstance(data, dict):
        if "kernel" not in data:
            raise KernelParseError(source, None, 'a JSON object needs a "kernel" key')
        name = str(data.get("name", stem))
        scale = _json_number(data.get("scale", 1.0), source, "scale")
        data = data["kernel"]
    if not isinstance(data, list) or not all(isinstance(row, list) for row in data):
        raise KernelParseError(source, None, "the kernel must be a list of rows (lists of numbers)")
    rows = [[_json_number(v, source, f"row {r + 1}") for v in row] for r, row in enumerate(data)]
    if not rows or not rows[0]:
        raise KernelParseError(source, None, "no kernel rows found (the kernel is empty)")
    for r, row in enumerate(rows):
        if len(row) != len(rows[0]):
            raise KernelParseError(
                source, None, f"row {r + 1} has {len(row)} entries but row 1 has {len(rows[0])}"
            )
    weights = np.array(rows)
    if scale != 1.0:
        weights = _scaled_weights(weights, scale, source)
    return _kernel_from(weights, source, name)


def _check_json_depth(text: str, source: str) -> None:
    """Refuse JSON nested deeper than `MAX_JSON_DEPTH` before parsing it (json recurses)."""
    brackets = _JSON_STRING.sub("", text)  # strings may hold any bracket
    codes = np.frombuffer(brackets.encode("utf-8"), dtype=np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64)
    steps -= np.isin(codes, (ord("]"), ord("}")))
    if steps.size and int(np.cumsum(steps).max()) > MAX_JSON_DEPTH:
        raise KernelParseError(
            source,
            None,
            f"JSON nested too deep (more than {MAX_JSON_DEPTH} levels): a kernel is a list of "
            "rows, or an object holding one",
        )


def _json_number_parser(source: str):
    """json's number hook: every number a float, refused at once if float64 cannot hold it
    (json would make a 400-digit integer an int that float() cannot convert)."""

    def number(token: str) -> float:
        value = float(token)
        if not math.isfinite(value):
            raise KernelParseError(
                source, None, f"{quoted(token)} is too large: it overflows float64"
            )
        return value

    return number


def _json_constant(source: str):
    def constant(token: str) -> float:
        raise KernelParseError(source, None, f"{token} is not a finite number")

    return constant


def _json_number(value: object, source: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise KernelParseError(source, None, f"{where}: {quoted(value)} is not a number")
    if isinstance(value, str):
        return parse_number(value, f"{source} ({where})", None)
    return float(value)  # finite: the number hook checked it


def _scaled_weights(weights: np.ndarray, scale: float, source: str) -> np.ndarray:
    """``weights * scale`` for a JSON ``scale``, refused when that overflows float64."""
    with np.errstate(all="ignore"):  # checked by value
        scaled = weights * scale
    return _refuse_overflow(scaled, source, f"scale {scale:g} makes the weights overflow")


def _refuse_overflow(weights: np.ndarray, source: str, what: str) -> np.ndarray:
    if not np.isfinite(weights).all():
        raise KernelParseError(source, None, f"{what} float64")
    return weights


def _parse_vips_mat(text: str, source: str, stem: str) -> Kernel:
    """libvips matrix: ``width height [scale [offset]]``; weights / scale, + offset."""
    lines = [(n, t) for n, t in _numbered(text) if t.split("#", 1)[0].strip()]
    if not lines:
        raise KernelParseError(source, None, "empty file: a .mat needs a 'width height' header")
    header_line, header = lines[0]
    fields = header.split("#", 1)[0].split()
    if not 2 <= len(fields) <= 4:
        raise KernelParseError(
            source,
            header_line,
            f"header {header.strip()!r} must be 'width height [scale [offset]]'",
        )
    width, height = (_positive_int(f, source, header_line) for f in fields[:2])
    scale = parse_number(fields[2], source, header_line) if len(fields) > 2 else 1.0
    offset = parse_number(fields[3], source, header_line) if len(fields) > 3 else 0.0
    if scale == 0:
        raise KernelParseError(source, header_line, "scale 0: the weights would be divided by 0")
    weights = parse_rows(lines[1:], source)
    if weights.shape != (height, width):
        raise KernelParseError(
            source,
            header_line,
            f"header says {width}x{height} (width x height) but the file has "
            f"{weights.shape[1]}x{weights.shape[0]}",
        )
    with np.errstate(all="ignore"):  # checked by value
        divided = weights / scale
    weights = _refuse_overflow(divided, source, f"dividing by scale {scale:g} overflows")
    return _kernel_from(weights, source, stem, offset=offset)


def _positive_int(token: str, source: str, line: int) -> int:
    if not re.fullmatch(r"\+?\d+", token):
        raise KernelParseError(source, line, f"{quoted(token)} is not a whole number")
    value = _size_field(token, source, line)
    if value < 1:
        raise KernelParseError(source, line, f"{quoted(token)} must be at least 1")
    return value


def resolve_kernel(value: str, inline_name: str) -> Kernel:
    """One kernel: an existing file (or ``@file``, as ImageMagick writes it), an inline
    matrix or ImageMagick string (`parse_kernel`), or a bank or parametric name.

    An existing file is read even when its name holds commas. A comma-separated list of
    kernel names (``"sobel_x,sobel_y"``) is several kernels: `resolve_kernels` reads it.

    Raises
    ------
    KernelError
        For a value that is none of these (the message suggests close names), or a list of
        kernel names.
    UsageError
        For a file that cannot be read (`load_kernel`).
    """
    from convkit.kernels import get_kernel

    if not isinstance(value, str):
        raise KernelError(f"a kernel is a name, a file or an inline matrix, got {quoted(value)}")
    if value.startswith("@"):
        if not value[1:]:
            raise UsageError("@ needs a kernel file name after it (@edges.txt)")
        return load_kernel(value[1:])
    if _names_a_file(value):
        return load_kernel(value)
    _refuse_a_name_list(value)
    if looks_inline(value):
        return parse_kernel(value, inline_name)
    if Path(value).suffix.lower() in KERNEL_FILE_SUFFIXES:
        raise UsageError(f"kernel file not found: {value}")
    return get_kernel(value)


def _refuse_a_name_list(value: str) -> None:
    """A `KernelError` for a list of kernel names where one kernel is wanted, or for a list
    that holds something other than names."""
    names = split_kernel_list(value)
    if names is not None:
        raise KernelError(
            f"{quoted(value)} is a list of {len(names)} kernels, where one kernel is wanted "
            "(give one name, or each kernel in a --kernel of its own)"
        )
    _refuse_a_broken_name_list(value)


def _names_a_file(value: str) -> bool:
    """True for an existing path: a regular file, or anything else but a folder (so that a
    FIFO or a device is refused by name, while a folder called like a kernel is not in the
    way of the kernel)."""
    return os.path.lexists(value) and (
        not os.path.isdir(value) or Path(value).suffix.lower() in KERNEL_FILE_SUFFIXES
    )


def resolve_kernels(values: list[str], files: list[str] | None = None) -> list[Kernel]:
    """Every ``--kernel`` value, then every ``--kernel-file``, with names unique.

    A value is several kernels when it is a comma-separated list in which every item is a
    kernel name -- a bank name, ``all`` or a parametric name (``"sobel_x,gaussian:5:1.4"``)
    -- and ``all`` is the tutorial's seven; an unknown name in such a list is an error
    that suggests close names. Any other value is one kernel (`resolve_kernel`): an
    existing file (whatever its name, commas included), an inline matrix such as ``"1,2,1"``
    or ``"0,-1,0; -1,5,-1; 0,-1,0"``, an ImageMagick string, or a name.

    Inline kernels are named ``inline1``, ``inline2``...; a name that repeats gets ``-2``,
    ``-3``... so that no output overwrites another.

    Raises
    ------
    KernelError
        For an unknown name, a malformed inline kernel, or a list of names with an item
        that is not one (``"sobel_x,1"``).
    UsageError
        For a file that cannot be read.
    """
    kernels: list[Kernel] = []
    inline_count = 0
    for value in values:
        for name in _kernel_values(value):
            if looks_inline(name) and not _names_a_file(name):
                inline_count += 1
            kernels.append(resolve_kernel(name, f"inline{inline_count}"))
    kernels += [load_kernel(path) for path in files or []]
    return _unique_names(kernels)


def _kernel_values(value: str) -> list[str]:
    """The values a ``--kernel`` value stands for: the names of a list of names (``all``
    expanded), else the value itself; an existing file is itself, commas or not."""
    from convkit.kernels import expand_kernel_names

    if "," in value and _names_a_file(value):
        return [value]
    return expand_kernel_names(value)


def _unique_names(kernels: list[Kernel]) -> list[Kernel]:
    seen: dict[str, int] = {}
    unique = []
    for kernel in kernels:
        count = seen.get(kernel.name, 0) + 1
        seen[kernel.name] = count
        unique.append(kernel if count == 1 else kernel.renamed(f"{kernel.name}-{count}"))
    return unique
