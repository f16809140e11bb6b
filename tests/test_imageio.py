import os

import cv2
import numpy as np
import pytest

from convkit.errors import ImageReadError, ImageWriteError, UsageError
from convkit.imageio import (
    encode_image,
    encode_npy,
    read_image,
    refuse_overwriting_inputs,
    write_atomic,
)


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
    photo = cv2.imread("sample_images/chelsea.png")
    data = encode_image(photo)
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="not an image, or truncated"):
        read_image(path)


def test_decoding_prints_nothing(tmp_path, capfd):
    path = tmp_path / "cut.png"
    path.write_bytes(encode_image(cv2.imread("sample_images/chelsea.png"))[:5000])
    with pytest.raises(ImageReadError):
        read_image(path)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_max_pixels_is_checked_before_decoding(tmp_path, png_bytes):
    path = tmp_path / "big.png"
    path.write_bytes(png_bytes)
    with pytest.raises(ImageReadError, match=r"4x4 = 16 pixels, more than --max-pixels 15"):
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
