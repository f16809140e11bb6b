"""convkit's parallel PNG writer: every file it writes decodes, in OpenCV and in Pillow, to the
exact array it was given."""

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from convkit import png
from convkit.imageio import PARALLEL_PNG_BYTES, encode_image
from tests.conftest import SAMPLES


def images():
    channels = st.sampled_from([None, 2, 3, 4])
    shapes = st.tuples(st.integers(1, 40), st.integers(1, 40), channels).map(
        lambda s: s[:2] if s[2] is None else s
    )
    return st.sampled_from([np.uint8, np.uint16]).flatmap(
        lambda dtype: arrays(dtype, shapes, elements=st.integers(0, np.iinfo(dtype).max))
    )


def decoded_by_opencv(data: bytes) -> np.ndarray:
    """What OpenCV reads; grey+alpha (which it spreads over BGRA) taken back to 2 channels."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    ihdr_colour_type = data[25]
    if ihdr_colour_type == 4:
        assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
        return image[..., [0, 3]]
    return image


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of 64 bytes and blocks of a row or two, so that small images exercise the joins."""
    monkeypatch.setattr(png, "PIECE_BYTES", 64)
    monkeypatch.setattr(png, "ROW_BLOCK_BYTES", 100)


@settings(max_examples=150, deadline=None)
@given(image=images(), threads=st.sampled_from([1, 2, 3]))
def test_opencv_reads_back_the_exact_image(image, threads):
    data = png.encode_png(image, threads)
    back = decoded_by_opencv(data)
    assert back.dtype == image.dtype
    np.testing.assert_array_equal(back, image)


# The fixture only sets a constant, the same for every example.
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(image=images())
def test_pieces_join_into_one_valid_stream(small_pieces, image):
    one, two = png.encode_png(image, 1), png.encode_png(image, 2)
    assert one == two  # the threads change nothing in the file
    np.testing.assert_array_equal(decoded_by_opencv(two), image)


def test_pillow_reads_it_too(small_pieces):
    """An independent decoder: Pillow's own PNG reader, in RGB order."""
    image_module = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    grey16 = rng.integers(0, 65536, (29, 31), dtype=np.uint16)
    with image_module.open(io.BytesIO(png.encode_png(bgr, 2))) as picture:
        np.testing.assert_array_equal(np.asarray(picture), bgr[..., ::-1])
    with image_module.open(io.BytesIO(png.encode_png(grey16, 2))) as picture:
        np.testing.assert_array_equal(np.asarray(picture).astype(np.uint16), grey16)


def test_the_file_is_laid_out_as_the_png_specification_says():
    """Hand-checked: a 2x1 grey image [[10, 250]] is one Sub-filtered row, 1 10 240."""
    data = png.encode_png(np.array([[10, 250]], np.uint8))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    assert struct.unpack(">IIBBBBB", data[16:29]) == (2, 1, 8, 0, 0, 0, 0)
    assert zlib.crc32(data[12:29]) == struct.unpack(">I", data[29:33])[0]
    idat_length, idat = struct.unpack(">I4s", data[33:41])
    assert idat == b"IDAT"
    assert zlib.decompress(data[41 : 41 + idat_length]) == bytes([1, 10, 240])
    assert data[-12:] == struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def test_as_small_as_opencvs_own_file():
    photo = cv2.imread(str(SAMPLES / "astronaut.png"))
    ours = png.encode_png(photo, 2)
    theirs = cv2.imencode(".png", photo)[1]
    assert len(ours) <= 1.02 * len(theirs)


def test_refuses_what_png_cannot_hold():
    for array in (
        np.zeros((4, 4), np.float32),
        np.zeros((4, 4, 5), np.uint8),
        np.zeros((0, 4), np.uint8),
    ):
        assert not png.can_encode(array)
        with pytest.raises(ValueError):
            png.encode_png(array)


def test_encode_image_takes_the_parallel_writer_for_large_images(monkeypatch):
    calls = []
    real = png.encode_png
    monkeypatch.setattr(
        png,
        "encode_png",
        lambda image, threads, chunks=(): calls.append(threads) or real(image, threads, chunks),
    )
    previous = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        large = np.random.default_rng(2).integers(0, 256, (1024, 1400, 3), dtype=np.uint8)
        assert large.nbytes >= PARALLEL_PNG_BYTES
        np.testing.assert_array_equal(decoded_by_opencv(encode_image(large)), large)
        small = large[:64, :64]
        np.testing.assert_array_equal(decoded_by_opencv(encode_image(small)), small)
    finally:
        cv2.setNumThreads(previous)
    assert calls == [2]  # the large image only


def test_grey_and_alpha_is_colour_type_4_and_pillow_reads_it_as_la():
    rng = np.random.default_rng(4)
    for dtype, top in ((np.uint8, 256), (np.uint16, 65536)):
        image = rng.integers(0, top, (7, 9, 2), dtype=dtype)
        data = png.encode_png(image, 2)
        assert data[24:26] == bytes([8 * image.itemsize, 4])  # bit depth, colour type
        if dtype == np.uint8:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as picture:
                assert picture.mode == "LA"
                np.testing.assert_array_equal(np.asarray(picture), image)


def test_metadata_chunks_go_between_ihdr_and_idat_and_pillow_reads_them():
    from PIL import Image, ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    chunks = [png.icc_chunk(profile), png.resolution_chunk((300, 150))]
    image = np.arange(60, dtype=np.uint8).reshape(4, 5, 3)
    for data in (
        png.encode_png(image, 1, chunks),
        png.insert_chunks(cv2.imencode(".png", image)[1].tobytes(), chunks),
    ):
        kinds = []
        at = 8
        while at < len(data):
            length, kind = struct.unpack(">I4s", data[at : at + 8])
            kinds.append(kind)
            at += 12 + length
        assert kinds[:3] == [b"IHDR", b"iCCP", b"pHYs"] and kinds[-1] == b"IEND"
        with Image.open(io.BytesIO(data)) as picture:
            assert picture.info["icc_profile"] == profile
            # 300 dpi is 11811 pixels a metre: 299.9994 dpi read back
            assert picture.info["dpi"] == pytest.approx((11811 * 0.0254, 5906 * 0.0254))
            np.testing.assert_array_equal(np.asarray(picture), image[..., ::-1])
        assert struct.unpack(">IIB", data[data.index(b"pHYs") + 4 :][:9]) == (11811, 5906, 1)


def test_insert_chunks_refuses_what_is_no_png():
    with pytest.raises(ValueError):
        png.insert_chunks(b"GIF89a" + bytes(40), [png.resolution_chunk((72, 72))])
    assert png.insert_chunks(b"anything", []) == b"anything"
