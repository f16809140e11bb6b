"""`convkit apply` on photos as people keep them: EXIF orientation, colour profiles, formats,
alpha, animated files (DESIGN §6; the library side is in test_photos.py)."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms

from convkit.cli import main


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="module")
def srgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture
def rotated(tmp_path, srgb):
    """A 60x40 (stored) photo whose EXIF says: turn 90 degrees clockwise to view."""
    pixels = np.random.default_rng(2).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif, icc_profile=srgb, dpi=(300, 300), quality=95)
    return path


def test_a_rotated_photo_is_filtered_upright(rotated, tmp_path):
    out = tmp_path / "out"
    result = run("apply", rotated, "-k", "identity", "-b", "filter2d", "-o", out, "--no-compare")
    assert result.exit_code == 0, result.output
    assert "rotated.jpg  40x60, 3 channels" in result.output  # the upright width x height
    written = cv2.imread(str(out / "rotated_identity.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(written, cv2.imread(str(rotated)))  # upright, as cv2 reads
    assert 0x0112 not in Image.open(out / "rotated_identity.png").getexif()


def test_no_auto_orient_keeps_the_stored_order(rotated, tmp_path):
    out = tmp_path / "out"
    result = run("apply", rotated, "-k", "identity", "-b", "filter2d", "-o", out,
                 "--no-compare", "--no-auto-orient")  # fmt: skip
    assert result.exit_code == 0, result.output
    written = cv2.imread(str(out / "rotated_identity.png"), cv2.IMREAD_UNCHANGED)
    stored = cv2.imread(str(rotated), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    np.testing.assert_array_equal(written, stored)


@pytest.mark.parametrize("fmt", ["png", "jpg", "tif", "webp"])
def test_the_colour_profile_and_resolution_reach_every_output(rotated, tmp_path, srgb, fmt):
    out = tmp_path / "out"
    result = run("apply", rotated, "-k", "sharpen", "-b", "filter2d", "-o", out,
                 "--format", fmt)  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in (f"rotated_sharpen.{fmt}", "rotated_sharpen_compare.png"):
        with Image.open(out / name) as written:
            assert written.info.get("icc_profile") == srgb, name
            if fmt != "webp" or name.endswith(".png"):  # WebP keeps DPI in its EXIF
                assert tuple(round(v) for v in written.info["dpi"]) == (300, 300), name


def test_jpg_quality(rotated, tmp_path):
    sizes = {}
    for quality in (20, 95):
        out = tmp_path / f"q{quality}"
        result = run("apply", rotated, "-k", "sharpen", "-b", "filter2d", "-o", out,
                     "--format", "jpg", "--quality", quality, "--no-compare")  # fmt: skip
        assert result.exit_code == 0, result.output
        sizes[quality] = (out / "rotated_sharpen.jpg").stat().st_size
    assert sizes[20] < sizes[95]


def test_quality_without_a_lossy_format_is_refused(rotated):
    result = run("apply", rotated, "-k", "sharpen", "--quality", "50")
    assert result.exit_code == 2
    assert "--quality is for --format jpg or webp" in result.output


def test_sixteen_bits_into_an_eight_bit_format_is_refused(tmp_path):
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), np.full((8, 8), 40000, np.uint16))
    result = run("apply", path, "-k", "sharpen", "--format", "jpg", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "16-bit" in result.output and "--format png or tif" in result.output
    assert not (tmp_path / "out").exists()


def test_grey_and_alpha_stay_grey_and_alpha(tmp_path):
    grey = np.random.default_rng(3).integers(0, 256, (12, 10), dtype=np.uint8)
    alpha = np.linspace(0, 255, 120, dtype=np.uint8).reshape(12, 10)
    path = tmp_path / "la.png"
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(path)
    out = tmp_path / "out"
    result = run("apply", path, "-k", "identity", "-o", out, "--no-compare")
    assert result.exit_code == 0, result.output
    assert "1 channel + alpha" in result.output
    with Image.open(out / "la_identity.png") as written:
        assert written.mode == "LA"
        np.testing.assert_array_equal(np.asarray(written), np.dstack([grey, alpha]))


def test_a_float_response_as_a_32_bit_tiff(tmp_path):
    image = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    path = tmp_path / "ramp.png"
    cv2.imwrite(str(path), image)
    out = tmp_path / "out"
    result = run("apply", path, "-k", "0,0,0; -1,0,1; 0,0,0", "-b", "naive", "--rescale",
                 "none", "--format", "tif", "--padding", "constant", "-o", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    with Image.open(out / "ramp_inline1.tif") as written:
        assert written.mode == "F"
        response = np.asarray(written)
    # O[y, x] = I[y, x + 1] - I[y, x - 1], zero outside: exact in float32
    padded = np.pad(image.astype(float), 1)
    np.testing.assert_array_equal(response, padded[1:-1, 2:] - padded[1:-1, :-2])


def test_an_animated_gif_says_only_its_first_frame_was_filtered(tmp_path):
    frames = [Image.fromarray(np.full((6, 6), v, np.uint8)) for v in (10, 200, 90)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    result = run("apply", path, "-k", "identity", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "anim.gif holds 3 frames: only the first was filtered" in result.output


def test_the_image_goes_to_standard_output_in_its_format(rotated):
    result = CliRunner().invoke(
        main, ["apply", str(rotated), "-k", "sharpen", "-o", "-", "--format", "webp", "-q"]
    )
    assert result.exit_code == 0, result.output
    with Image.open(io.BytesIO(result.stdout_bytes)) as written:
        assert written.format == "WEBP" and written.size == (40, 60)
