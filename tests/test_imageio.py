import io
import os
import struct

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convkit.errors import ConvkitError, ImageReadError, ImageWriteError, UsageError
from convkit.imageio import (
    ENCODED_SLACK_BYTES,
    ImageSource,
    check_input_file,
    decode_image,
    encode_image,
    encode_npy,
    max_encoded_bytes,
    probe_image,
    read_header,
    read_image,
    read_stdin_image_bytes,
    refuse_overwriting_inputs,
    write_atomic,
)
from tests.conftest import SAMPLES


@pytest.fixture
def png_bytes():
    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    return encode_image(image)


def test_round_trip_keeps_depth_and_alpha(tmp_path):
    for image in (
        np.arange(12, dtype=np.uint8).reshape(3, 4),
        (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4),
        np.arange(48, dtype=np.uint8).reshape(3, 4, 4),
    ):
        path = write_atomic(tmp_path / "x.png", encode_image(image))
        back = read_image(path)
        assert back.dtype == image.dtype
        np.testing.assert_array_equal(back, image)


def test_missing_and_folder_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="image not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(UsageError, match="is a folder"):
        read_image(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"hello, not an image\n", "not an image, or truncated"),
        (bytes(range(256)) * 20, "not an image, or truncated"),
    ],
)
def test_undecodable_files_are_run_errors(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=f"cannot decode {path}: {message}"):
        read_image(path)


def test_truncated_png(tmp_path, png_bytes):
    photo = cv2.imread(str(SAMPLES / "chelsea.png"))
    data = encode_image(photo)
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=f"cannot decode {path}: truncated PNG file"):
        read_image(path)


def test_the_command_line_prints_nothing_but_its_error_for_a_truncated_png(tmp_path, capfd):
    """libpng's complaint goes to descriptor 2, which the command line silences; the
    run's own one line reaches standard error."""
    from convkit.cli import main

    path = tmp_path / "cut.png"
    path.write_bytes(encode_image(cv2.imread(str(SAMPLES / "chelsea.png")))[:5000])
    with pytest.raises(SystemExit) as exited:
        main.main(["apply", str(path), "-k", "sharpen", "-o", str(tmp_path / "out")])
    assert exited.value.code == 1
    captured = capfd.readouterr()
    assert captured.out == ""
    assert (
        captured.err
        == f"Error: cannot decode {path}: truncated PNG file (it ends before its IEND chunk)\n"
    )


def test_max_pixels_is_checked_before_decoding(tmp_path, png_bytes):
    path = tmp_path / "big.png"
    path.write_bytes(png_bytes)
    # a limit exceeded is a usage error (exit 2), as DESIGN §6 says
    with pytest.raises(UsageError, match=r"4x4 = 16 pixels, more than --max-pixels 15"):
        read_image(path, max_pixels=15)
    assert read_image(path, max_pixels=16).shape == (4, 4, 3)


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_atomic(tmp_path / "a.bin", b"12345")
    assert os.listdir(tmp_path) == ["a.bin"]
    assert (tmp_path / "a.bin").read_bytes() == b"12345"


def test_atomic_write_failure_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ImageWriteError, match="No space left on device"):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_output_folder_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ImageWriteError, match="cannot create output folder"):
        write_atomic(blocker / "sub" / "a.png", b"x")


def test_refuses_to_overwrite_an_input(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    with pytest.raises(UsageError, match="refusing to overwrite the input"):
        refuse_overwriting_inputs([tmp_path / "." / "a.png"], [image])
    refuse_overwriting_inputs([tmp_path / "b.png"], [image])


def test_npy_is_written_in_rgb_order():
    import io

    bgr = np.zeros((1, 1, 3))
    bgr[0, 0] = [1.0, 2.0, 3.0]
    rgb = np.load(io.BytesIO(encode_npy(bgr)))
    np.testing.assert_array_equal(rgb[0, 0], [3.0, 2.0, 1.0])


# --- check_input_file, read_header, probe_image, max_encoded_bytes ---------------------------


def test_check_input_file_accepts_a_regular_file_and_looks_only_at_metadata(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"anything")
    assert check_input_file(str(path)) == path
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(UsageError, match=f"^{tmp_path / 'pipe'} is a FIFO, not a regular file$"):
        check_input_file(tmp_path / "pipe")  # returns at once: nothing is opened
    with pytest.raises(UsageError, match="^/dev/null is a character device, not a regular file$"):
        check_input_file("/dev/null")
    with pytest.raises(UsageError, match=f"^image not found: {tmp_path / 'a.png' / 'b.png'}$"):
        check_input_file(tmp_path / "a.png" / "b.png")


@pytest.mark.parametrize(
    ("suffix", "image", "expected"),
    [
        (".png", np.zeros((3, 5, 4), np.uint8), ("PNG", 5, 3, 4, "unsigned", 8)),
        (".png", np.zeros((3, 5), np.uint16), ("PNG", 5, 3, 1, "unsigned", 16)),
        (".jpg", np.zeros((3, 5, 3), np.uint8), ("JPEG", 5, 3, None, None, None)),
        (".tif", np.zeros((3, 5, 3), np.uint16), ("TIFF", 5, 3, 3, "unsigned", 16)),
        (".bmp", np.zeros((3, 5, 3), np.uint8), ("BMP", 5, 3, None, None, None)),
        (".webp", np.zeros((3, 5, 3), np.uint8), ("WebP", 5, 3, None, None, None)),
        (".pgm", np.zeros((3, 5), np.uint16), ("PNM", 5, 3, 1, "unsigned", 16)),
        (".pbm", np.zeros((3, 5), np.uint8), ("PNM", 5, 3, 1, "unsigned", 1)),
        (".pam", np.zeros((3, 5, 3), np.uint8), ("PAM", 5, 3, 3, "unsigned", 8)),
        (".sr", np.zeros((3, 5, 3), np.uint8), ("Sun raster", 5, 3, None, None, None)),
        (".hdr", np.zeros((3, 5, 3), np.float32), ("Radiance HDR", 5, 3, 3, "float", 32)),
        (".jp2", np.zeros((33, 35, 3), np.uint8), ("JPEG 2000", 35, 33, 3, None, None)),
    ],
)
def test_read_header_reads_what_opencv_wrote(suffix, image, expected):
    ok, encoded = cv2.imencode(suffix, image)
    assert ok
    header = read_header(io.BytesIO(encoded.tobytes()), "x")
    assert header[:6] == expected


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".bmp", ".webp", ".gif", ".ppm"])
def test_read_header_agrees_with_pillow(suffix, tmp_path):
    """Sizes from convkit's own parsers match Pillow's for files that Pillow writes."""
    image_module = pytest.importorskip("PIL.Image")
    picture = image_module.new("RGB", (37, 23), (10, 20, 30))
    path = tmp_path / f"p{suffix}"
    picture.save(path)
    header = probe_image(path)
    assert (header.width, header.height) == (37, 23)
    assert read_image(path).shape[:2] == (23, 37)


def test_read_header_reads_only_the_header(tmp_path):
    """A TIFF's directory is found by seeking; the pixel data is never read."""
    image = np.zeros((300, 400, 3), np.uint8)
    ok, encoded = cv2.imencode(".tif", image)
    assert ok

    class Counting(io.BytesIO):
        taken = 0

        def read(self, size=-1):
            data = super().read(size)
            Counting.taken += len(data)
            return data

    assert read_header(Counting(encoded.tobytes()), "x")[:3] == ("TIFF", 400, 300)
    assert Counting.taken < 1000 < len(encoded)


def test_probe_image_checks_without_decoding(tmp_path, png_bytes):
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes)
    assert probe_image(path).pixels == 16
    with pytest.raises(UsageError, match="more than --max-pixels 15"):
        probe_image(path, max_pixels=15)


def test_max_encoded_bytes():
    assert max_encoded_bytes(None) is None
    assert max_encoded_bytes(1000) == 8000 + ENCODED_SLACK_BYTES
    assert max_encoded_bytes(1000, text_samples=True) == 24000 + ENCODED_SLACK_BYTES


def test_decode_image_checks_the_header_before_decoding():
    with pytest.raises(UsageError, match="x.png is 4x4 = 16 pixels"):
        decode_image(encode_image(np.zeros((4, 4), np.uint8)), "x.png", max_pixels=10)


def test_opencv_log_level_is_left_as_the_host_set_it(png_bytes):
    logging = cv2.utils.logging
    previous = logging.getLogLevel()
    try:
        logging.setLogLevel(logging.LOG_LEVEL_INFO)
        decode_image(png_bytes, "x.png")
        with pytest.raises(ImageReadError):
            decode_image(png_bytes[:40], "x.png")
        assert logging.getLogLevel() == logging.LOG_LEVEL_INFO
    finally:
        logging.setLogLevel(previous)


def test_stdin_bytes_are_read_whole_and_decoded(png_bytes):
    data = read_stdin_image_bytes(io.BytesIO(png_bytes), max_pixels=16)
    assert data == png_bytes
    assert ImageSource("standard input", data=data).read(16).shape == (4, 4, 3)


# --- upright, grey+alpha TIFFs, encode_image's refusals ---------------------------------------


def test_upright_turns_as_the_exif_specification_says():
    """Row 0 / column 0 of the stored image is where each orientation says, worked by hand
    on [[1, 2, 3], [4, 5, 6]]."""
    from convkit.imageio import upright

    stored = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    expected = {
        1: [[1, 2, 3], [4, 5, 6]],
        2: [[3, 2, 1], [6, 5, 4]],  # mirrored left-right
        3: [[6, 5, 4], [3, 2, 1]],  # turned 180
        4: [[4, 5, 6], [1, 2, 3]],  # mirrored top-bottom
        5: [[1, 4], [2, 5], [3, 6]],  # transposed
        6: [[4, 1], [5, 2], [6, 3]],  # turned 90 clockwise
        7: [[6, 3], [5, 2], [4, 1]],  # transverse
        8: [[3, 6], [2, 5], [1, 4]],  # turned 90 anticlockwise
    }
    for orientation, rows in expected.items():
        np.testing.assert_array_equal(upright(stored, orientation), rows)
    np.testing.assert_array_equal(upright(stored, 9), stored)


def test_read_image_keeps_the_stored_order_when_asked(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    stored = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    exif = image_module.Exif()
    exif[0x0112] = 6
    path = tmp_path / "turned.png"
    image_module.fromarray(stored[..., ::-1]).save(path, exif=exif)
    np.testing.assert_array_equal(read_image(path, auto_orient=False), stored)
    np.testing.assert_array_equal(read_image(path), np.rot90(stored, -1))
    source = ImageSource.from_path(path)
    assert source.read(None, False).shape == (2, 4, 3)
    assert decode_image(path.read_bytes(), "x.png", auto_orient=False).shape == (2, 4, 3)


def test_a_grey_alpha_tiff_cut_short_or_corrupt_is_one_line(tmp_path):
    image = (np.arange(64 * 64 * 2) % 251).astype(np.uint8).reshape(64, 64, 2)
    data = encode_image(image, ".tif")
    from convkit.metadata import TiffDirectory

    _, _, field_at = TiffDirectory.first(data).entries[273]  # the one strip's offset
    path = tmp_path / "la.tif"
    path.write_bytes(data[:field_at] + struct.pack("<I", len(data) - 10) + data[field_at + 4 :])
    with pytest.raises(ImageReadError, match=r"^cannot decode .*la.tif: truncated or corrupt"):
        read_image(path)
    start = data.index(b"\x78")  # the first strip's zlib header
    spoiled = data[:start] + b"\x00" * 16 + data[start + 16 :]
    path.write_bytes(spoiled)
    with pytest.raises(ImageReadError, match="truncated or corrupt TIFF strip 0"):
        read_image(path)


def test_encode_image_refuses_arrays_that_are_no_image():
    for array in (np.zeros((2, 2, 5), np.uint8), np.zeros((2, 2), np.float32)):
        with pytest.raises(ImageWriteError, match="cannot encode a"):
            encode_image(array, ".png")
    with pytest.raises(UsageError, match="--quality applies to jpg and webp, not to .bmp"):
        encode_image(np.zeros((2, 2), np.uint8), ".bmp", quality=90)
    assert encode_image(np.zeros((2, 2, 1), np.uint8), ".tif")  # one channel is grey


def test_formats_opencv_writes_stay_available_without_metadata():
    from convkit.imageio import ImageInfo

    data = encode_image(np.zeros((2, 3, 3), np.uint8), ".bmp", info=ImageInfo(dpi=(300, 300)))
    assert data[:2] == b"BM"
    assert decode_image(data, "x.bmp").shape == (2, 3, 3)


# --- fuzzing: the reader decodes an image or raises a ConvkitError, nothing else ----------


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=300), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM"])
)
def test_image_reader_accepts_or_raises_convkit_errors(data, header):
    try:
        image = decode_image(header + data, "fuzz")
    except ConvkitError:
        return
    assert image.dtype in (np.uint8, np.uint16) and image.ndim in (2, 3) and image.size
