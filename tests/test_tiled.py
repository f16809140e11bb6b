"""Images larger than memory: TIFF and Zarr images filtered in tiles equal the in-memory run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from convkit.engine import convolve
from convkit.errors import ImageReadError, Interrupted, UsageError
from convkit.kernels import Kernel, get_kernel
from convkit.padding import make_padding
from convkit.pipeline import ApplySettings
from convkit.postprocess import to_image

tifffile = pytest.importorskip("tifffile", reason="the [scale] extra brings tifffile")
pytest.importorskip("dask.array", reason="the [scale] extra brings dask")

from convkit import tiled  # noqa: E402

MODES = ["replicate", "constant", "reflect", "reflect101", "wrap", "valid"]
# Asymmetric, even-sized, off-centre: halos differ on every side and cross band borders.
KERNEL = Kernel("k", np.arange(35, dtype=float).reshape(7, 5) % 5 - 2, anchor=(1, 3))
FAST = ("filter2d",)


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch):
    """Bands of one tile row and chunks of one tile, whatever the memory: a 600 x 700
    image is cut into 3 bands of 3 chunks, so every halo crosses a border."""
    monkeypatch.setattr(tiled, "BAND_ROWS", (256,))
    monkeypatch.setattr(tiled, "CHUNK_COLUMNS", (256,))


def write_tiff(path: Path, image: np.ndarray, layout: str = "tiled", **options) -> Path:
    """A TIFF as tifffile writes one: tiled, striped or BigTIFF; alpha as an extra sample."""
    channels = image.shape[2] if image.ndim == 3 else 1
    options.setdefault("photometric", "rgb" if channels >= 3 else "minisblack")
    if channels in (2, 4):
        options["extrasamples"] = ["unassalpha"]
    if layout == "tiled":
        options["tile"] = (32, 48)
    elif layout == "striped":
        options["rowsperstrip"] = 13
    elif layout == "bigtiff":
        options.update(bigtiff=True, tile=(64, 64), compression="zlib")
    tifffile.imwrite(path, image, metadata=None, **options)
    return path


def in_memory(image: np.ndarray, kernel: Kernel, settings: ApplySettings) -> np.ndarray:
    """What the in-memory run writes: the colour filtered and post-processed, alpha as is."""
    alpha = None
    if image.ndim == 3 and image.shape[2] in (2, 4):
        image, alpha = (image[..., 0], image[..., 1]) if image.shape[2] == 2 else (
            image[..., :3], image[..., 3])  # fmt: skip
    # the numpy backend: exact for integer kernels, and not the one the tiles ran
    response = convolve(image, kernel, padding=settings.padding, backend="numpy",
                        flip=settings.flip)  # fmt: skip
    pixels = to_image(response, like=image.dtype, rescale=settings.rescale, bias=settings.bias,
                      activation=settings.activation)  # fmt: skip
    if alpha is None:
        return pixels
    if settings.padding.mode == "valid":
        kernel = kernel.flipped() if settings.flip else kernel
        (kh, kw), (ay, ax) = kernel.shape, kernel.anchor
        alpha = alpha[ay : ay + alpha.shape[0] - kh + 1, ax : ax + alpha.shape[1] - kw + 1]
    planes = pixels if pixels.ndim == 3 else pixels[..., np.newaxis]
    return np.concatenate([planes, alpha[..., np.newaxis].astype(pixels.dtype)], axis=-1)


def run(source, tmp_path: Path, kernels=(KERNEL,), compare: bool = False, **options):
    """apply_tiled into tmp_path/out; the report and the output paths."""
    out = tmp_path / "out"
    options.setdefault("backends", FAST)
    settings = ApplySettings(out_dir=out, compare=compare, **options)
    pairs = [
        (out / f"img_{k.name}.tif", out / f"img_{k.name}_compare.png" if compare else None)
        for k in kernels
    ]
    report = tiled.apply_tiled(source, list(kernels), settings, pairs)
    return report, pairs, settings


@pytest.fixture
def grey(rng):
    return rng.integers(0, 256, (600, 700), np.uint8)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", ["tiled", "striped", "bigtiff"])
def test_tiles_equal_the_in_memory_run(tmp_path, grey, layout, mode):
    source = write_tiff(tmp_path / "img.tif", grey, layout)
    report, [(output, _)], settings = run(source, tmp_path, padding=make_padding(mode, 77.0))
    written = tifffile.imread(output)
    np.testing.assert_array_equal(written, in_memory(grey, KERNEL, settings))
    assert report.rows[0].output == str(output) and report.rows[0].crop is None


@pytest.mark.parametrize("mode", ["wrap", "reflect101", "valid"])
def test_colour_and_alpha_are_kept_flipped_kernels_too(tmp_path, rng, mode):
    image = rng.integers(0, 256, (300, 520, 4), np.uint8)
    source = write_tiff(tmp_path / "img.tif", image, "striped")
    _, [(output, _)], settings = run(source, tmp_path, padding=make_padding(mode), flip=True)
    written = tifffile.imread(output)
    np.testing.assert_array_equal(written, in_memory(image, KERNEL, settings))
    with tifffile.TiffFile(output) as tiff:
        page = tiff.pages.first
        assert page.is_tiled and page.photometric == tifffile.PHOTOMETRIC.RGB
        assert page.extrasamples == (tifffile.EXTRASAMPLE.UNASSALPHA,)


def test_16_bit_grey_and_alpha_with_bias_and_relu(tmp_path, rng):
    image = rng.integers(0, 65536, (280, 300, 2), np.uint16)
    source = write_tiff(tmp_path / "img.tif", image)
    _, [(output, _)], settings = run(
        source, tmp_path, rescale="abs", bias=-3000.0, activation="relu",
        padding=make_padding("constant", 1234.0),
    )  # fmt: skip
    written = tifffile.imread(output)
    assert written.dtype == np.uint16 and written.shape == image.shape
    np.testing.assert_array_equal(written, in_memory(image, KERNEL, settings))


def test_minmax_stretches_the_whole_response_in_two_passes(tmp_path, grey):
    source = write_tiff(tmp_path / "img.tif", grey)
    report, [(output, _)], settings = run(source, tmp_path, rescale="minmax")
    np.testing.assert_array_equal(tifffile.imread(output), in_memory(grey, KERNEL, settings))
    assert any("first pass" in note for note in report.notes)


def test_rescale_none_writes_the_float_response_as_float32(tmp_path, grey):
    source = write_tiff(tmp_path / "img.tif", grey)
    _, [(output, _)], settings = run(source, tmp_path, rescale="none", bias=0.5)
    expected = convolve(grey, KERNEL, padding="replicate") + 0.5
    written = tifffile.imread(output)
    assert written.dtype == np.float32
    np.testing.assert_array_equal(written, expected.astype(np.float32))


def test_gray_converts_with_opencvs_weights(tmp_path, rng):
    import cv2

    rgb = rng.integers(0, 256, (300, 300, 3), np.uint8)
    source = write_tiff(tmp_path / "img.tif", rgb)
    _, [(output, _)], settings = run(source, tmp_path, gray=True)
    grey = cv2.cvtColor(rgb[..., ::-1].copy(), cv2.COLOR_BGR2GRAY)  # as read by OpenCV
    np.testing.assert_array_equal(tifffile.imread(output), in_memory(grey, KERNEL, settings))


def test_zarr_input(tmp_path, grey):
    zarr = pytest.importorskip("zarr")
    store = tmp_path / "img.zarr"
    array = zarr.open(str(store), mode="w", shape=grey.shape, chunks=(100, 128), dtype="u1")
    array[:] = grey
    assert tiled.can_tile(store) and tiled.is_zarr(store)
    _, [(output, _)], settings = run(store, tmp_path, padding=make_padding("wrap"))
    np.testing.assert_array_equal(tifffile.imread(output), in_memory(grey, KERNEL, settings))


def test_an_orientation_tag_flips_the_image_upright(tmp_path, grey):
    source = write_tiff(tmp_path / "img.tif", grey, extratags=[(274, 3, 1, 3, True)])
    _, [(output, _)], settings = run(source, tmp_path, padding=make_padding("wrap"))
    upright = grey[::-1, ::-1]
    np.testing.assert_array_equal(tifffile.imread(output), in_memory(upright, KERNEL, settings))
    turned = write_tiff(tmp_path / "turned.tif", grey, extratags=[(274, 3, 1, 6, True)])
    with pytest.raises(UsageError, match="no-auto-orient"):
        run(turned, tmp_path)


def test_the_output_is_a_tiled_tiff_of_the_inputs_type_with_its_resolution(tmp_path, grey):
    source = write_tiff(tmp_path / "img.tif", grey, "bigtiff", resolution=(300, 300),
                        resolutionunit=2)  # fmt: skip
    _, [(output, _)], _ = run(source, tmp_path)
    with tifffile.TiffFile(output) as tiff:
        page = tiff.pages.first
        assert tiff.is_bigtiff and page.is_tiled and (page.tilewidth, page.tilelength) == (
            256, 256)  # fmt: skip
        assert page.dtype == np.uint8 and page.shape == grey.shape
        assert page.tags["XResolution"].value == (300, 1)


def test_ctrl_c_leaves_neither_the_output_nor_a_temporary(tmp_path, grey):
    source = write_tiff(tmp_path / "img.tif", grey)
    out = tmp_path / "out"
    seen = []

    def progress(label, done, total):
        seen.append((done, total))
        if done == 4:
            raise KeyboardInterrupt

    settings = ApplySettings(out_dir=out, compare=True, backends=FAST)
    pairs = [(out / "img_k.tif", out / "img_k_compare.png")]
    with pytest.raises(KeyboardInterrupt):
        tiled.apply_tiled(source, [KERNEL], settings, pairs, progress=progress)
    assert seen[-1] == (4, 9) and sorted(os.listdir(out)) == []

    def signal(label, done, total):
        if done == 7:
            raise Interrupted(15)

    with pytest.raises(Interrupted):
        tiled.apply_tiled(source, [KERNEL], settings, pairs, progress=signal)
    assert sorted(os.listdir(out)) == []


def test_comparison_shows_every_backend_on_a_crop(tmp_path, rng):
    from convkit.console import timing_table

    image = np.zeros((600, 2100), np.uint8)  # overviews of 2 x 2 blocks
    image[420:440, 1800:1840] = rng.integers(0, 256, (20, 40))  # the detail is here
    source = write_tiff(tmp_path / "img.tif", image)
    backends = ("naive", "filter2d", "numpy")
    kernels = [get_kernel("sharpen")]
    report, [(output, compare)], _ = run(source, tmp_path, kernels, True, backends=backends)
    rows = {row.backend: row for row in report.rows}
    assert rows["filter2d"].crop is None and rows["filter2d"].output == str(output)
    y, x = (int(v) for v in rows["naive"].crop.split("+")[1:][::-1])
    assert rows["naive"].crop.startswith("256x256+") and rows["numpy"].crop == rows["naive"].crop
    assert y <= 420 and y + 256 >= 440 and x <= 1800 and x + 256 >= 1840
    assert all(row.max_abs_diff == 0.0 for row in report.rows)
    assert report.results[0].reference == "naive" and report.results[0].agrees
    height, width = _png_shape(compare)
    assert height > 256 + 160 and width > 4 * 256
    assert "img.tif" in str(timing_table(report, decorated=False).title)


def _png_shape(path: Path) -> tuple[int, int]:
    import cv2

    return cv2.imread(str(path)).shape[:2]


def test_default_backends_run_the_reference_on_the_crop(tmp_path, grey):
    source = write_tiff(tmp_path / "img.tif", grey)
    report, _, _ = run(source, tmp_path, backends=None, compare=True)
    crops = {row.backend: row.crop for row in report.rows}
    assert crops["naive"] is not None and crops["filter2d"] is None


def test_what_a_tiled_run_refuses(tmp_path, grey):
    source = write_tiff(tmp_path / "img.tif", grey)
    png = tmp_path / "img.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(UsageError, match="--max-memory"):
        tiled.check_tileable(png, "img.png", ApplySettings())
    with pytest.raises(UsageError, match="--format"):
        tiled.check_tileable(source, "img.tif", ApplySettings(format="png"))
    with pytest.raises(UsageError, match="--out"):
        tiled.check_tileable(source, "img.tif", ApplySettings(out_dir=None))
    out = tmp_path / "out"
    with pytest.raises(UsageError, match=r"must be a \.tif"):
        tiled.apply_tiled(source, [KERNEL], ApplySettings(out_dir=out), [(out / "a.png", None)])
    with pytest.raises(UsageError, match="raise --max-memory"):
        run(source, tmp_path, max_memory=2**16)


def test_needs_tiles_from_the_header_alone(tmp_path, grey):
    header = tiled.open_tiled(write_tiff(tmp_path / "img.tif", grey)).header()
    assert (header.width, header.height, header.channels, header.bits) == (700, 600, 1, 8)
    kernels = [get_kernel("large_blur")]
    assert not tiled.needs_tiles(header, kernels, ApplySettings(max_memory=2**30))
    assert tiled.needs_tiles(header, kernels, ApplySettings(max_memory=2**20))
    assert tiled.needs_tiles(header, kernels, ApplySettings(max_memory=None, max_pixels=1000))
    assert not tiled.needs_tiles(header, kernels, ApplySettings(max_memory=None))


def test_tiles_needed_decides_from_the_header(tmp_path, grey):
    import cv2

    source = write_tiff(tmp_path / "img.tif", grey)
    png = tmp_path / "img.png"
    cv2.imwrite(str(png), grey)
    kernels = [get_kernel("sharpen")]
    roomy, tight = ApplySettings(max_memory=2**30), ApplySettings(max_memory=2**20)
    assert not tiled.tiles_needed(source, kernels, roomy)
    assert tiled.tiles_needed(source, kernels, tight)
    assert tiled.tiles_needed(source, kernels, roomy._replace(max_pixels=1000))
    assert not tiled.tiles_needed(png, kernels, roomy)
    assert not tiled.tiles_needed(png, kernels, roomy._replace(max_pixels=1000))  # the reader's
    with pytest.raises(UsageError, match="only TIFF .* and Zarr images are read in tiles"):
        tiled.tiles_needed(png, kernels, tight)
    # a header claiming 100000^2 pixels over a few kilobytes: a bomb for the disk
    with pytest.raises(ImageReadError, match="too few for 100000x100000"):
        tiled._check_stored_bytes(source, (100_000, 100_000), np.dtype("u1"), 8, 40_000)
    tiled._check_stored_bytes(source, (100_000, 100_000), np.dtype("u1"), 8, 10**7)
    zarr = pytest.importorskip("zarr")
    store = tmp_path / "small.zarr"
    zarr.open(str(store), mode="w", shape=(10, 10), dtype="u1")[:] = 1
    assert tiled.tiles_needed(store, kernels, roomy)  # Zarr is read in tiles only
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\0" + b"\xff" * 20)
    assert not tiled.tiles_needed(broken, kernels, tight)  # the reader reports it


def test_plan_sizes_bands_from_the_memory_limit(monkeypatch):
    monkeypatch.setattr(tiled, "BAND_ROWS", (4096, 1024, 256))
    monkeypatch.setattr(tiled, "CHUNK_COLUMNS", (4096, 1024, 256))
    kernels = [get_kernel("sharpen")]
    small = tiled.plan_tiles((20000, 20000), 1, 1, kernels, "filter2d", 128 * 2**20)
    large = tiled.plan_tiles((20000, 20000), 1, 1, kernels, "filter2d", 8 * 2**30)
    assert small.peak_bytes <= 128 * 2**20 and small.band_rows * 20000 < 128 * 2**20 / 3
    assert large.band_rows == 4096 and large.chunk_columns == 4096
    assert small.overview_step == 32


@pytest.mark.parametrize("mode", MODES[:-1])
def test_window_indices_are_numpys_padding(mode):
    positions, mode = np.arange(5), make_padding(mode).spec.numpy_mode
    for start, stop in [(-7, 3), (2, 13), (-12, 14), (1, 4)]:
        before, after = max(0, -start), max(0, stop - 5)
        extra = {"constant_values": -1} if mode == "constant" else {}
        padded = np.pad(positions, (before, after), mode=mode, **extra)
        expected = padded[start + before : stop + before]
        np.testing.assert_array_equal(tiled.window_indices(start, stop, 5, mode), expected)


def test_block_means_and_the_densest_region(rng):
    image = rng.integers(0, 256, (70, 45)).astype(np.uint8)
    means = tiled.block_mean(image, 8)
    assert means.shape == (9, 6)
    assert means[2, 3] == pytest.approx(image[16:24, 24:32].mean())
    assert means[8, 5] == pytest.approx(image[64:, 40:].mean())
    assert tiled.block_mean(image, (7, 5)).shape == (10, 9)
    band = rng.integers(0, 256, (256, 1000, 3)).astype(np.uint8)
    assert tiled.detail_density(band, 32).shape == tiled.overview(band, 32).shape[:2] == (8, 32)
    density = np.zeros((40, 40), np.float32)
    density[30, 5] = 1.0
    y, x, h, w = tiled._densest_region(density, 16, (640, 640))
    assert (h, w) == (256, 256) and y <= 30 * 16 < y + h and x <= 5 * 16 < x + w


def test_convolve_lazy_to_image_equals_the_engine(rng):
    import dask.array as da

    from convkit.engine import convolve_to_image
    from convkit.tiles import convolve_lazy_to_image

    image = rng.integers(0, 256, (61, 47, 3), np.uint8)
    for mode in MODES:
        padding = make_padding(mode, 9.0)
        lazy = convolve_lazy_to_image(da.from_array(image, chunks=(16, 9, 3)), KERNEL, padding,
                                      rescale="abs", bias=-20.0)  # fmt: skip
        expected = convolve_to_image(image, KERNEL, padding=padding, rescale="abs", bias=-20.0)
        assert lazy.dtype == expected.dtype
        np.testing.assert_array_equal(lazy.compute(), expected)
    with pytest.raises(UsageError, match="whole response"):
        convolve_lazy_to_image(da.from_array(image), KERNEL, padding, rescale="minmax")


MEMORY_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from convkit.tiled import apply_tiled, limit_heap_retention
    from convkit.pipeline import ApplySettings
    from convkit.kernels import get_kernel
    source, tiny, limit, kernel = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    out = source.parent / "out"

    def run(path):
        settings = ApplySettings(out_dir=out, max_memory=limit, backends=("filter2d",))
        apply_tiled(path, [get_kernel(kernel)], settings, [(out / "o.tif", out / "o.png")])

    limit_heap_retention()  # as the command line does before a tiled run
    run(tiny)  # the interpreter's own: every module a run imports
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    run(source)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"before": before, "after": after}))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["sharpen", "large_blur"])
def test_peak_memory_stays_within_the_limit(tmp_path, kernel, monkeypatch):
    """A 10000 x 10000 grey image (100 MB) under a 64 MiB limit: the peak RSS grows by less
    than the limit over the interpreter's own. Bands are whole rows, so their memory grows
    with the width: half the width of the 20000^2 / 128M case of benchmarks/scale.py, half
    its limit."""
    monkeypatch.undo()  # the real band and chunk sizes
    rows = np.arange(10000, dtype=np.uint32)[:, None]
    columns = np.arange(10000, dtype=np.uint32)[None, :]
    image = ((rows * 7 + columns * 3 + rows * columns // 97) % 251).astype(np.uint8)
    source, tiny = tmp_path / "big.tif", tmp_path / "tiny.tif"
    tifffile.imwrite(source, image, tile=(256, 256), metadata=None)
    tifffile.imwrite(tiny, image[:300, :300], tile=(256, 256), metadata=None)
    del image, rows, columns
    limit = 64 * 2**20
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(source), str(tiny), str(limit), kernel],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    peaks = json.loads(result.stdout.strip().splitlines()[-1])
    grown = peaks["after"] - peaks["before"]
    assert grown <= limit, f"grew {grown / 2**20:.1f} MiB over a {limit / 2**20:.0f} MiB limit"


def test_band_memory_is_handed_out_again():
    buffers = tiled.Buffers(keep=2)
    first = buffers.take((4, 6), np.uint16)
    assert first.shape == (4, 6) and first.dtype == np.uint16
    buffers.give(first[1:])  # a view gives its whole array back
    again = buffers.take((6, 4), np.uint8)  # fits in it (48 bytes): the same memory
    assert np.shares_memory(again, first)
    assert not np.shares_memory(buffers.take((4, 6), np.uint16), first)  # in use: a new one
    buffers.give(np.zeros(5), None)  # not one of its arrays: ignored
    assert not np.shares_memory(buffers.take((5,), np.float64), first)


def test_chunks_are_those_dask_cuts():
    """A band's chunks, with their halos, are those `convkit.tiles` gives map_overlap."""
    import dask.array as da

    from convkit.tiles import merged_chunks

    for width, kernel_width, columns in [(1000, 5, 256), (260, 7, 256), (256, 3, 256)]:
        chunks = merged_chunks(da.ones((3, width), chunks=(3, columns)).chunks[1], kernel_width)
        expected = [size + kernel_width - 1 for size in chunks[:-1]] + [chunks[-1]]
        edges = tiled.chunk_edges(width, kernel_width, columns)
        assert [stop - start for start, stop in edges] == expected
        assert edges[-1][1] == width
