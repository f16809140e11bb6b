"""Photos as people keep them (issue 10): read upright as viewers show them, written with
their colour profile and resolution, grey+alpha kept, multi-frame files counted, every output
format checked before any work -- and no metadata, however broken, fails a read or warns."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from convkit import imageio, png
from convkit.errors import UsageError
from convkit.imageio import (
    OUTPUT_FORMATS,
    ImageInfo,
    ImageSource,
    check_output_format,
    decode_image,
    encode_float_tiff,
    encode_image,
    read_image,
)
from convkit.metadata import TiffDirectory, read_image_info

# Any warning (Pillow's "Corrupt EXIF data", numpy's overflow) fails these tests.
pytestmark = pytest.mark.filterwarnings("error")

SUFFIXES = {"png": ".png", "jpg": ".jpg", "tif": ".tif", "webp": ".webp"}
ORIENTATION = 0x0112
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
# The same profile, claiming to describe grey images: for the rule that profiles go only
# into outputs of their colour model (nothing here interprets the profile's contents).
GREY_PROFILE = SRGB[:16] + b"GRAY" + SRGB[20:]


def photo(height: int = 40, width: int = 60, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A BGR(A) picture in which every pixel differs from its neighbours: any turn shows."""
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def pillow_image(bgr: np.ndarray) -> Image.Image:
    return Image.fromarray(bgr[..., ::-1] if bgr.ndim == 3 else bgr)


def exif_orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION] = value
    return exif


def saved(path: Path, picture: Image.Image, **options) -> Path:
    picture.save(path, **options)
    return path


def pillow_upright_bgr(path: Path) -> np.ndarray:
    """An independent reference: Pillow's decode, turned by Pillow's exif_transpose."""
    with Image.open(path) as picture:
        upright = np.asarray(ImageOps.exif_transpose(picture))
    return upright[..., ::-1]


def reopened(data: bytes) -> Image.Image:
    picture = Image.open(io.BytesIO(data))
    picture.load()
    return picture


# --- 1. upright photos -------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_an_exif_rotated_jpeg_reads_as_cv2_imread_turns_it(tmp_path, orientation):
    path = saved(tmp_path / "phone.jpg", pillow_image(photo()), exif=exif_orientation(orientation))
    image, info = ImageSource.from_path(path).read_with_info()
    expected = cv2.imread(str(path))  # default flags: EXIF orientation applied
    assert image.shape == expected.shape == ((60, 40, 3) if orientation >= 5 else (40, 60, 3))
    np.testing.assert_array_equal(image, expected)
    assert info.orientation == orientation
    np.testing.assert_array_equal(read_image(path), expected)


@pytest.mark.parametrize("orientation", range(2, 9))
@pytest.mark.parametrize(
    ("suffix", "options"),
    [(".png", {}), (".webp", {"lossless": True}), (".tif", {})],
    ids=["png-eXIf", "webp-EXIF", "tiff-tag-274"],
)
def test_orientation_tags_of_png_webp_and_tiff(tmp_path, suffix, options, orientation):
    stored = photo(7, 11)
    path = saved(
        tmp_path / f"turned{suffix}",
        pillow_image(stored),
        exif=exif_orientation(orientation),
        **options,
    )
    image, info = ImageSource.from_path(path).read_with_info()
    assert info.orientation == orientation
    np.testing.assert_array_equal(image, pillow_upright_bgr(path))
    if suffix != ".tif":  # OpenCV 5's imread fails on rotated TIFFs; it reads these two
        np.testing.assert_array_equal(image, cv2.imread(str(path)))
    kept, kept_info = ImageSource.from_path(path).read_with_info(auto_orient=False)
    np.testing.assert_array_equal(kept, stored)
    assert kept_info.orientation == orientation


def test_orientation_turns_grey_alpha_and_16_bit_images_too(tmp_path):
    grey_alpha = photo(3, 5, 2)
    data = png.insert_chunks(encode_image(grey_alpha), [_exif_chunk(8)])
    np.testing.assert_array_equal(decode_image(data, "x.png"), np.rot90(grey_alpha))
    deep = (photo(3, 5, 3).astype(np.uint16) * 257).astype(np.uint16)
    data = png.insert_chunks(encode_image(deep), [_exif_chunk(6)])
    np.testing.assert_array_equal(decode_image(data, "x.png"), np.rot90(deep, -1))


def _exif_chunk(orientation: int) -> bytes:
    entry = struct.pack(">HHIHH", ORIENTATION, 3, 1, orientation, 0)
    body = b"MM\x00*" + struct.pack(">IH", 8, 1) + entry + bytes(4)
    return (
        struct.pack(">I", len(body))
        + b"eXIf"
        + body
        + struct.pack(">I", zlib.crc32(b"eXIf" + body))
    )


def test_max_pixels_is_checked_from_the_stored_size(tmp_path):
    path = saved(tmp_path / "tall.jpg", pillow_image(photo(40, 60)), exif=exif_orientation(6))
    assert read_image(path, max_pixels=2400).shape == (60, 40, 3)
    with pytest.raises(UsageError, match=r"tall.jpg is 60x40 = 2,400 pixels, more than"):
        read_image(path, max_pixels=2399)


@pytest.mark.parametrize(
    "exif",
    [
        b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff",  # a directory of 65535 entries
        b"Exif\x00\x00II*\x00\xff\xff\xff\x7f",  # a directory far beyond the block
        b"Exif\x00\x00not a TIFF structure at all",
        b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01" + struct.pack(">HHII", 274, 3, 1, 9 << 16),
        b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01" + struct.pack(">HHII", 274, 99, 1, 0),
        b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00" + struct.pack("<HHII", 274, 3, 9, 1 << 20),
    ],
    ids=["endless", "far", "garbage", "orientation-9", "unknown-type", "values-past-the-end"],
)
def test_a_corrupt_exif_block_reads_as_orientation_1_without_warning(tmp_path, capfd, exif):
    upright = photo()
    jpeg = encode_image(upright, ".jpg")
    app1 = b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif
    path = tmp_path / "odd.jpg"
    path.write_bytes(jpeg[:2] + app1 + jpeg[2:])
    image, info = ImageSource.from_path(path).read_with_info()
    assert (info.orientation, info.frames) == (1, 1)
    np.testing.assert_array_equal(image, cv2.imdecode(np.frombuffer(jpeg, np.uint8), 1))
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("format", OUTPUT_FORMATS)
def test_outputs_carry_no_orientation_tag(tmp_path, format):
    path = saved(tmp_path / "phone.jpg", pillow_image(photo()), exif=exif_orientation(6))
    image, info = ImageSource.from_path(path).read_with_info()
    data = encode_image(image, SUFFIXES[format], info=info)
    assert ORIENTATION not in reopened(data).getexif()
    assert read_image_info(data, _format_name(data)).orientation == 1


def _format_name(data: bytes) -> str:
    from convkit.image_headers import parse_header_bytes

    return parse_header_bytes(data).format


def test_standard_input_is_turned_upright_too(tmp_path):
    path = saved(tmp_path / "phone.jpg", pillow_image(photo()), exif=exif_orientation(8))
    image, info = ImageSource("standard input", data=path.read_bytes()).read_with_info()
    np.testing.assert_array_equal(image, cv2.imread(str(path)))
    assert info.orientation == 8


# --- 2. colour profile and resolution ----------------------------------------------------------


@pytest.fixture(params=["png", "jpg"])
def photo_with_profile(request, tmp_path) -> Path:
    return saved(
        tmp_path / f"profiled.{request.param}",
        pillow_image(photo()),
        icc_profile=SRGB,
        dpi=(300, 300),
    )


def test_the_profile_and_resolution_are_read(photo_with_profile):
    _, info = ImageSource.from_path(photo_with_profile).read_with_info()
    assert info.icc_profile == SRGB
    # a PNG keeps whole pixels per metre: 300 dpi is stored as 11811, which is 299.9994 dpi
    expected = (11811 * 0.0254,) * 2 if photo_with_profile.suffix == ".png" else (300.0, 300.0)
    assert info.dpi == pytest.approx(expected, abs=1e-9)
    assert (info.orientation, info.frames) == (1, 1)


@pytest.mark.parametrize("format", OUTPUT_FORMATS)
def test_every_output_format_carries_profile_and_resolution(photo_with_profile, format):
    image, info = ImageSource.from_path(photo_with_profile).read_with_info()
    data = encode_image(image, SUFFIXES[format], info=info)
    written = reopened(data)
    assert written.info["icc_profile"] == SRGB
    if format == "webp":  # WebP keeps resolution only in EXIF: 296 unit (2 = inch), 282, 283
        exif = written.getexif()
        dpi = (float(exif[282]), float(exif[283]))
        assert exif[296] == 2
    else:
        dpi = tuple(float(value) for value in written.info["dpi"])
    assert dpi == pytest.approx((300, 300), abs=0.001)  # JPEG rounds to whole dpi
    # and convkit reads back what it wrote
    again = read_image_info(data, _format_name(data))
    assert again.icc_profile == SRGB
    assert again.dpi == pytest.approx((300, 300), abs=0.001)


def test_a_large_png_written_in_parallel_carries_them_too(monkeypatch):
    monkeypatch.setattr(imageio, "PARALLEL_PNG_BYTES", 1000)
    previous = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        data = encode_image(photo(100, 100), info=ImageInfo(SRGB, (200.0, 100.0)))
    finally:
        cv2.setNumThreads(previous)
    written = reopened(data)
    assert written.info["icc_profile"] == SRGB
    assert written.info["dpi"] == pytest.approx((7874 * 0.0254, 3937 * 0.0254))


@pytest.mark.parametrize("format", OUTPUT_FORMATS)
def test_a_profile_goes_only_into_outputs_of_its_colour_model(format):
    """A colour photo filtered in grey (--gray) gets no RGB profile; a grey profile goes
    into grey outputs. WebP has no grey: it writes grey as RGB, with an RGB profile."""
    suffix = SUFFIXES[format]
    grey = photo(5, 6, 1)
    with_rgb = reopened(encode_image(grey, suffix, info=ImageInfo(SRGB))).info
    assert with_rgb.get("icc_profile") == (SRGB if format == "webp" else None)
    with_grey = reopened(encode_image(grey, suffix, info=ImageInfo(GREY_PROFILE))).info
    assert with_grey.get("icc_profile") == (None if format == "webp" else GREY_PROFILE)
    colour = reopened(encode_image(photo(5, 6), suffix, info=ImageInfo(GREY_PROFILE))).info
    assert "icc_profile" not in colour
    not_a_profile = reopened(encode_image(photo(5, 6), suffix, info=ImageInfo(b"x" * 200))).info
    assert "icc_profile" not in not_a_profile


def test_jfif_density_in_dots_per_centimetre(tmp_path):
    """JFIF unit 2: 100 dots per centimetre is 254 dots per inch."""
    data = bytearray(encode_image(photo(), ".jpg", info=ImageInfo(dpi=(300, 300))))
    at = data.index(b"JFIF\x00") + 7
    assert struct.unpack(">BHH", data[at : at + 5]) == (1, 300, 300)
    data[at : at + 5] = struct.pack(">BHH", 2, 100, 50)
    assert read_image_info(bytes(data), "JPEG").dpi == (254.0, 127.0)
    data[at : at + 5] = struct.pack(">BHH", 0, 1, 1)  # an aspect ratio only
    assert read_image_info(bytes(data), "JPEG").dpi is None


def test_jpeg_resolution_from_exif_when_jfif_gives_none():
    exif = Image.Exif()
    exif[282], exif[283], exif[296] = 200, 100, 3  # dots per centimetre
    buffer = io.BytesIO()
    pillow_image(photo()).save(buffer, "JPEG", exif=exif)
    assert read_image_info(buffer.getvalue(), "JPEG").dpi == (508.0, 254.0)


def test_an_icc_profile_in_many_jpeg_segments(tmp_path):
    """Profiles beyond 64 KiB are split over APP2 segments; Pillow splits, convkit joins."""
    large = SRGB + bytes(150_000)
    path = saved(tmp_path / "big-profile.jpg", pillow_image(photo()), icc_profile=large)
    assert path.read_bytes().count(b"ICC_PROFILE\x00") == 3
    assert ImageSource.from_path(path).read_with_info()[1].icc_profile == large


def test_profiles_that_cannot_be_read_are_absent(tmp_path):
    """A segment missing, a PNG profile that inflates beyond 16 MiB, corrupt Deflate data."""
    jpeg = encode_image(photo(), ".jpg", info=ImageInfo(SRGB + bytes(70_000)))
    first = jpeg.index(b"ICC_PROFILE\x00") - 4
    (length,) = struct.unpack(">H", jpeg[first + 2 : first + 4])
    without_first = jpeg[:first] + jpeg[first + 2 + length :]
    assert read_image_info(without_first, "JPEG").icc_profile is None
    assert read_image_info(jpeg, "JPEG").icc_profile == SRGB + bytes(70_000)

    bomb = b"ICC profile\x00\x00" + zlib.compress(bytes(17 << 20), 9)
    corrupt = b"ICC profile\x00\x00" + b"\x78\x9c not deflate data"
    for body in (bomb, corrupt):
        chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", 0)
        data = png.insert_chunks(encode_image(photo(4, 4)), [chunk])
        image, info = decode_image(data, "x.png"), read_image_info(data, "PNG")
        assert info.icc_profile is None
        np.testing.assert_array_equal(image, photo(4, 4))


# --- 3. multi-frame files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "options"),
    [(".gif", {}), (".tif", {}), (".png", {}), (".webp", {"lossless": True})],
    ids=["animated-gif", "3-page-tiff", "apng", "animated-webp"],
)
def test_frames_are_counted_and_the_first_is_read(tmp_path, suffix, options):
    frames = [pillow_image(photo(6, 8, seed=seed)) for seed in range(3)]
    path = tmp_path / f"moving{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:], **options)
    image, info = ImageSource.from_path(path).read_with_info()
    assert info.frames == 3
    if suffix != ".gif":  # a palette: the first frame's colours are approximated
        np.testing.assert_array_equal(image[..., :3], photo(6, 8, seed=0))


@pytest.mark.parametrize("suffix", [".gif", ".tif", ".png", ".webp", ".jpg"])
def test_a_single_frame_is_one(tmp_path, suffix):
    path = saved(tmp_path / f"still{suffix}", pillow_image(photo(6, 8)))
    assert ImageSource.from_path(path).read_with_info()[1].frames == 1


def test_a_tiff_whose_pages_loop_is_counted_once_round():
    data = bytearray(encode_image(photo(4, 4), ".tif"))
    directory = TiffDirectory.first(bytes(data))
    next_field = directory.at + 2 + 12 * len(directory.entries)
    data[next_field : next_field + 4] = struct.pack("<I", directory.at)  # points at itself
    assert read_image_info(bytes(data), "TIFF").frames == 1
    np.testing.assert_array_equal(decode_image(bytes(data), "loop.tif"), photo(4, 4))


def test_a_gif_cut_short_counts_the_frames_it_holds(tmp_path):
    frames = [pillow_image(photo(6, 8, seed=seed)) for seed in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    data = buffer.getvalue()
    assert 1 <= read_image_info(data[: len(data) // 2], "GIF").frames <= 2
    assert read_image_info(data[:20], "GIF").frames == 1


# --- 4. output formats --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("format", ["png", "tif"])
def test_grey_and_alpha_stays_two_channels(tmp_path, format, dtype):
    image = photo(5, 7, 2).astype(dtype) * (257 if dtype == np.uint16 else 1)
    path = tmp_path / f"la{SUFFIXES[format]}"
    path.write_bytes(encode_image(image, SUFFIXES[format]))
    back = read_image(path)
    assert back.shape == (5, 7, 2) and back.dtype == dtype
    np.testing.assert_array_equal(back, image)
    if dtype == np.uint8:  # Pillow has no 16-bit grey+alpha mode
        with Image.open(path) as picture:
            assert picture.mode == "LA"
            np.testing.assert_array_equal(np.asarray(picture), image)


def test_grey_and_alpha_from_other_tools_is_read_as_two_channels(tmp_path):
    image = photo(5, 7, 2)
    path = saved(tmp_path / "pillow-la.tif", Image.fromarray(image, "LA"))
    np.testing.assert_array_equal(read_image(path), image)
    path = saved(tmp_path / "pillow-la.png", Image.fromarray(image, "LA"))
    np.testing.assert_array_equal(read_image(path), image)


def test_a_grey_and_alpha_tiff_convkit_cannot_decode_says_so(tmp_path):
    path = saved(
        tmp_path / "lzw-la.tif", Image.fromarray(photo(5, 7, 2), "LA"), compression="tiff_lzw"
    )
    with pytest.raises(Exception, match=r"lzw-la.tif: a grey\+alpha TIFF with compression 5"):
        read_image(path)


@pytest.mark.parametrize("compression", ["raw", "tiff_lzw", "tiff_adobe_deflate"])
def test_an_rgba_tiff_with_unassociated_alpha_is_not_premultiplied(tmp_path, compression):
    """Pillow, GIMP and convkit write unassociated alpha; OpenCV alone would multiply the
    colour by it (200 at alpha 128 read as 100)."""
    bgra = photo(5, 7, 4)
    bgra[0, 0] = (200, 100, 50, 128)
    picture = Image.fromarray(bgra[..., [2, 1, 0, 3]], "RGBA")
    path = saved(tmp_path / "rgba.tif", picture, compression=compression)
    before = path.read_bytes()
    np.testing.assert_array_equal(read_image(path), bgra)
    assert path.read_bytes() == before  # relabelled in a copy; the file is left alone


def test_grey_and_alpha_into_webp_and_jpg():
    """WebP has no grey: grey+alpha becomes RGBA; JPEG has no alpha: it is dropped."""
    image = photo(5, 7, 2)
    webp = decode_image(encode_image(image, ".webp", quality=100), "x.webp")
    np.testing.assert_array_equal(webp, image[..., [0, 0, 0, 1]])
    jpeg = encode_image(image, ".jpg")
    assert reopened(jpeg).mode == "L"
    assert jpeg == encode_image(image[..., 0], ".jpg")
    assert encode_image(photo(5, 7, 4), ".jpg") == encode_image(photo(5, 7, 4)[..., :3], ".jpg")


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_and_tiff_are_exact(channels, dtype):
    image = photo(9, 13, channels).astype(dtype) * (257 if dtype == np.uint16 else 1)
    for suffix in (".png", ".tif"):
        np.testing.assert_array_equal(decode_image(encode_image(image, suffix), "x"), image)


def test_webp_at_quality_100_is_lossless_and_keeps_colour_under_transparency():
    image = photo(9, 13, 4)
    image[0, :, 3] = 0
    np.testing.assert_array_equal(
        decode_image(encode_image(image, ".webp", quality=100), "x"), image
    )
    lossy = encode_image(photo(64, 64), ".webp")
    assert len(lossy) < len(encode_image(photo(64, 64), ".webp", quality=100))


def test_jpeg_quality_defaults_to_95():
    image = photo(64, 64)
    assert encode_image(image, ".jpg") == encode_image(image, ".jpg", quality=95)
    assert len(encode_image(image, ".jpg", quality=10)) < len(encode_image(image, ".jpg"))


def test_tiff_writes_what_the_specification_says():
    """Deflate strips, horizontal differencing, unassociated alpha, no orientation."""
    data = encode_image(photo(5, 7, 4), ".tif", info=ImageInfo(dpi=(72.0, 96.0)))
    directory = TiffDirectory.first(data)
    expected = {256: 7, 257: 5, 259: 8, 262: 2, 277: 4, 284: 1, 296: 2, 317: 2, 338: 2}
    assert {tag: directory.number(tag) for tag in expected} == expected
    assert directory.numbers(258) == [8] * 4
    assert (directory.number(282), directory.number(283)) == (72.0, 96.0)
    assert not directory.has(274)


@pytest.mark.parametrize("format", ["jpg", "webp"])
def test_16_bit_into_jpg_or_webp_is_refused(format):
    message = (
        f"^photo.png is 16-bit; {format} holds 8-bit samples: use --format png or tif, "
        "or convert it to 8-bit first$"
    )
    with pytest.raises(UsageError, match=message):
        check_output_format(format, np.uint16, None, source="photo.png")
    with pytest.raises(UsageError, match="is 16-bit"):
        encode_image(np.zeros((2, 2), np.uint16), SUFFIXES[format])
    check_output_format(format, np.uint8, 80)


@pytest.mark.parametrize(
    ("format", "dtype", "quality", "message"),
    [
        ("bmp", np.uint8, None, r"^unknown --format 'bmp': choose png, jpg, tif or webp$"),
        ("jpg", np.uint8, 0, r"^--quality 0 is outside 1..100$"),
        ("webp", np.uint8, 101, r"^--quality 101 is outside 1..100$"),
        ("jpg", np.uint8, 9.5, r"^--quality must be a whole number from 1 to 100, not 9.5$"),
        ("jpg", np.uint8, True, r"^--quality must be a whole number"),
        ("png", np.uint8, 90, r"^--quality applies to jpg and webp, not to png$"),
        ("tif", np.uint16, 90, r"^--quality applies to jpg and webp, not to tif$"),
        ("png", np.float64, None, r"^--format png holds whole-number samples, not the float"),
    ],
)
def test_check_output_format_refusals(format, dtype, quality, message):
    with pytest.raises(UsageError, match=message):
        check_output_format(format, dtype, quality)


def test_check_output_format_accepts_what_formats_hold():
    for format in OUTPUT_FORMATS:
        check_output_format(format, np.uint8, None, shape=(16_383, 16_383, 3))
    for format in ("png", "tif"):
        check_output_format(format, np.uint16, None)
    check_output_format("tif", np.float64, None)  # --rescale none --format tif
    check_output_format("jpg", np.uint8, 1)
    check_output_format("webp", np.uint8, 100)


def test_an_image_too_large_for_webp_is_refused_before_the_work():
    with pytest.raises(UsageError, match=r"^a.png is 20000x10; webp holds at most 16,383 pixels"):
        check_output_format("webp", np.uint8, None, shape=(10, 20_000, 3), source="a.png")


# --- the float TIFF of --rescale none --------------------------------------------------------


def test_a_grey_float_tiff_is_exact_float32_that_pillow_opens():
    rng = np.random.default_rng(5)
    response = rng.normal(0, 1000, (9, 13))
    response[0, :3] = (np.inf, -np.inf, -0.0)
    data = encode_float_tiff(response, ImageInfo(GREY_PROFILE, (300.0, 300.0)))
    picture = reopened(data)
    assert picture.mode == "F"
    np.testing.assert_array_equal(np.asarray(picture), response.astype(np.float32))
    assert picture.info["icc_profile"] == GREY_PROFILE
    assert picture.info["dpi"] == (300.0, 300.0)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_a_colour_float_tiff_is_in_rgb_order(channels):
    response = np.random.default_rng(6).normal(0, 100, (5, 7, channels))
    data = encode_float_tiff(response)
    directory = TiffDirectory.first(data)
    assert directory.numbers(339) == [3] * channels  # IEEE floating point
    assert directory.numbers(258) == [32] * channels
    assert directory.has(338) == (channels != 3)  # alpha, unassociated
    if channels != 3:
        assert directory.number(338) == 2
    in_file_order = response[..., [2, 1, 0, 3][:channels]] if channels > 2 else response
    np.testing.assert_array_equal(_float_samples(data), in_file_order.astype(np.float32))
    if channels > 2:  # OpenCV reads no float grey+alpha; these it reads back as BGR(A)
        stored = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(stored, response.astype(np.float32))


def _float_samples(data: bytes) -> np.ndarray:
    """The samples of a float TIFF's Deflate strips, read by hand."""
    directory = TiffDirectory.first(data)
    width, height = int(directory.number(256)), int(directory.number(257))
    channels = int(directory.number(277))
    strips = zip(directory.numbers(273), directory.numbers(279), strict=True)
    raw = b"".join(zlib.decompress(data[start : start + size]) for start, size in strips)
    return np.frombuffer(raw, "<f4").reshape(height, width, channels)


def test_encode_float_tiff_refuses_what_is_no_image():
    from convkit.errors import ImageWriteError

    for array in (np.zeros((2, 2, 5)), np.zeros((0, 3)), np.array([["a"]])):
        with pytest.raises(ImageWriteError):
            encode_float_tiff(array)


# --- bounded walks: hostile containers of tiny blocks -------------------------------------------


def _timed_info(data: bytes, format_name: str) -> ImageInfo:
    import time

    start = time.perf_counter()
    info = read_image_info(data, format_name)
    assert time.perf_counter() - start < 10, "a metadata walk that does not stop"
    return info


@pytest.mark.slow
def test_walks_over_millions_of_tiny_blocks_stop():
    from convkit.metadata import MAX_BLOCKS_WALKED, MAX_TIFF_PAGES_COUNTED

    gif = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0, 0, 0) + b"\x2c" + bytes(9) + b"\x02"
    gif += b"\x01\x00" * 3_000_000  # one frame whose data is 3 million one-byte sub-blocks
    assert _timed_info(gif, "GIF").frames == 1
    empty_chunk = struct.pack(">I4s", 0, b"tEXt") + bytes(4)
    assert _timed_info(b"\x89PNG\r\n\x1a\n" + empty_chunk * 1_500_000, "PNG") == ImageInfo()
    frames = (b"ANMF" + bytes(4)) * (MAX_BLOCKS_WALKED + 10)
    webp = b"RIFF" + bytes(4) + b"WEBP" + frames
    assert _timed_info(webp, "WebP").frames == MAX_BLOCKS_WALKED  # "at least" so many
    junk = b"\xff\xd8" + (b"\x00" * 60_000 + b"\xff\xe2\x00\x02") * 2_000
    assert _timed_info(junk, "JPEG") == ImageInfo()
    directories = (
        struct.pack("<HHHIII", 1, 256, 4, 1, 1, 8 + 18 * (index + 1))  # 1 entry, then a link
        for index in range(MAX_TIFF_PAGES_COUNTED + 10)
    )
    pages = b"II*\x00" + struct.pack("<I", 8) + b"".join(directories)
    assert _timed_info(pages, "TIFF").frames == MAX_TIFF_PAGES_COUNTED
