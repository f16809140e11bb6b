"""`convkit apply` on images beyond --max-memory: TIFF and Zarr in tiles, others refused."""

import numpy as np
import pytest
import scipy.ndimage as ndi
from click.testing import CliRunner

from convkit.cli import main

tifffile = pytest.importorskip("tifffile")


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def sharpened(image):
    weights = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], float)
    response = ndi.correlate(image.astype(float), weights, mode="nearest")
    return np.rint(np.clip(response, 0, 255)).astype(np.uint8)


def test_apply_filters_a_tiff_beyond_max_memory_in_tiles(tmp_path):
    image = np.random.default_rng(11).integers(0, 256, (600, 700), np.uint8)
    tifffile.imwrite(tmp_path / "big.tif", image, tile=(64, 64))
    out = tmp_path / "out"
    result = run("apply", tmp_path / "big.tif", "-k", "sharpen", "--max-memory", "8M",
                 "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "filtered in tiles" in result.output and "naive (256x256 crop)" in result.output
    with tifffile.TiffFile(out / "big_sharpen.tif") as tiff:
        assert tiff.pages.first.is_tiled
        np.testing.assert_array_equal(tiff.asarray(), sharpened(image))
    assert (out / "big_sharpen_compare.png").stat().st_size > 0
    assert sorted(p.name for p in out.iterdir()) == ["big_sharpen.tif", "big_sharpen_compare.png"]


def test_apply_refuses_other_formats_beyond_max_memory(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((600, 700), np.uint8))
    result = run("apply", tmp_path / "big.png", "-k", "sharpen", "--max-memory", "8M",
                 "--out", tmp_path / "out")  # fmt: skip
    assert result.exit_code == 2
    assert "only TIFF" in result.output and "--max-memory" in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_apply_tiles_a_zarr_store_and_refuses_png_format_for_it(tmp_path):
    zarr = pytest.importorskip("zarr")
    image = np.random.default_rng(12).integers(0, 256, (300, 280), np.uint8)
    store = zarr.open(str(tmp_path / "scene.zarr"), mode="w", shape=image.shape, chunks=(64, 64),
                      dtype="u1")  # fmt: skip
    store[:] = image
    out = tmp_path / "out"
    result = run("apply", tmp_path / "scene.zarr", "-k", "sharpen", "--out", out, "--no-compare",
                 "-b", "filter2d")  # fmt: skip
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(tifffile.imread(out / "scene_sharpen.tif"), sharpened(image))
    refused = run("apply", tmp_path / "scene.zarr", "-k", "sharpen", "--out", out,
                  "--format", "png")  # fmt: skip
    assert refused.exit_code == 2 and "--format" in refused.output
