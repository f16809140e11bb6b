"""`convkit apply` and `convkit kernels` as a user runs them, through click's CliRunner."""

import csv
import json
import re

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
from click.testing import CliRunner

from convkit.cli import main
from convkit.imageio import encode_image
from tests.conftest import SAMPLES


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def photo(tmp_path):
    """A small colour crop of a real photo: naive runs in well under a second."""
    image = cv2.imread(str(SAMPLES / "chelsea.png"))[100:148, 150:214]
    path = tmp_path / "cat.png"
    path.write_bytes(encode_image(image))
    return path


def expected_clip(image: np.ndarray, weights, mode="nearest") -> np.ndarray:
    """The oracle: scipy's correlation per channel, clipped and rounded half to even."""
    planes = image[..., None] if image.ndim == 2 else image
    response = np.stack(
        [
            ndi.correlate(planes[..., c].astype(float), weights, mode=mode)
            for c in range(planes.shape[2])
        ],
        axis=-1,
    )
    out = np.rint(np.clip(response, 0, 255)).astype(np.uint8)
    return out[..., 0] if image.ndim == 2 else out


def test_apply_writes_the_filtered_image_the_comparison_and_the_table(photo, tmp_path):
    out = tmp_path / "out"
    result = run("apply", "--image", photo, "--kernel", "sobel_x", "--out", out)
    assert result.exit_code == 0, result.output
    filtered = cv2.imread(str(out / "cat_sobel_x.png"), cv2.IMREAD_UNCHANGED)
    source = cv2.imread(str(photo))
    sobel_x = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    np.testing.assert_array_equal(filtered, expected_clip(source, sobel_x))
    compare = cv2.imread(str(out / "cat_sobel_x_compare.png"))
    # original | naive | filter2d | |diff|: four panels of the crop, enlarged alike.
    assert compare.shape[1] > 4 * source.shape[1]
    for backend in ("naive", "filter2d"):
        assert backend in result.output
    assert "reference" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["cat_sobel_x.png", "cat_sobel_x_compare.png"]


def test_several_kernels_padding_flip_and_rescale(photo, tmp_path):
    out = tmp_path / "o"
    result = run(
        "apply", "--image", photo, "-k", "emboss", "-k", "0,1,0;1,-4,1;0,1,0", "--padding",
        "reflect101", "--flip", "--rescale", "abs", "--backend", "filter2d", "--no-compare",
        "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["cat_emboss.png", "cat_inline1.png"]
    source = cv2.imread(str(photo)).astype(float)
    emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    expected = np.stack(
        [ndi.convolve(source[..., c], emboss, mode="mirror") for c in range(3)], axis=-1
    )
    expected = np.rint(np.clip(np.abs(expected), 0, 255)).astype(np.uint8)
    np.testing.assert_array_equal(cv2.imread(str(out / "cat_emboss.png")), expected)


def test_rescale_none_writes_the_float_response_in_rgb_order(photo, tmp_path):
    result = run("apply", "--image", photo, "-k", "laplacian", "--rescale", "none",
                 "--backend", "filter2d", "--out", tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    response = np.load(tmp_path / "cat_laplacian.npy")
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB).astype(float)
    laplacian = [[0, 1, 0], [1, -4, 1], [0, 1, 0]]
    for c in range(3):
        np.testing.assert_allclose(
            response[..., c], ndi.correlate(rgb[..., c], laplacian, mode="nearest")
        )
    assert response.min() < 0  # negative responses survive


def test_gray_converts_with_opencvs_weights(photo, tmp_path):
    result = run("apply", "--image", photo, "-k", "identity", "--gray", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    gray = cv2.imread(str(tmp_path / "cat_identity.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(gray, cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2GRAY))


def test_sixteen_bit_and_alpha_are_kept(tmp_path):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 65536, size=(9, 11, 4)).astype(np.uint16)
    path = tmp_path / "deep.png"
    path.write_bytes(encode_image(image))
    result = run("apply", "--image", path, "-k", "small_blur", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    out = cv2.imread(str(tmp_path / "o" / "deep_small_blur.png"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == (9, 11, 4)
    np.testing.assert_array_equal(out[..., 3], image[..., 3])  # alpha carried through
    blurred = ndi.correlate(image[..., 0].astype(float), np.full((7, 7), 1 / 49), mode="nearest")
    np.testing.assert_array_equal(out[..., 0], np.rint(blurred).astype(np.uint16))


def test_valid_shrinks_the_output_and_crops_alpha_under_the_anchor(tmp_path):
    image = np.zeros((5, 6, 4), dtype=np.uint8)
    image[..., 3] = np.arange(30).reshape(5, 6)
    path = tmp_path / "a.png"
    path.write_bytes(encode_image(image))
    result = run(
        "apply", "-i", path, "-k", "horizontal_edge", "--padding", "valid", "-o", tmp_path / "o"
    )
    assert result.exit_code == 0, result.output
    out = cv2.imread(str(tmp_path / "o" / "a_horizontal_edge.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == (4, 5, 4)
    np.testing.assert_array_equal(out[..., 3], image[1:, 1:, 3])  # anchor (1, 1)


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_report_rows(photo, tmp_path, suffix):
    report = tmp_path / f"report{suffix}"
    result = run("apply", "-i", photo, "-k", "sharpen", "-k", "horizontal_edge", "--repeat", "2",
                 "--report", report, "-o", tmp_path / "o")  # fmt: skip
    assert result.exit_code == 0, result.output
    if suffix == ".json":
        data = json.loads(report.read_text())
        assert data["convkit"] == "0.1.0"
        rows = data["rows"]
        shapes = [row["kernel_shape"] for row in rows]
        assert shapes == [[3, 3], [3, 3], [2, 2], [2, 2]]
    else:
        rows = list(csv.DictReader(report.open()))
        assert [row["kernel_shape"] for row in rows] == ["3x3", "3x3", "2x2", "2x2"]
    assert [(r["kernel"], r["backend"]) for r in rows] == [
        ("sharpen", "naive"), ("sharpen", "filter2d"),
        ("horizontal_edge", "naive"), ("horizontal_edge", "filter2d"),
    ]  # fmt: skip
    assert set(rows[0]) == {
        "image", "kernel", "kernel_shape", "backend", "padding", "flip", "runs",
        "median_ms", "min_ms", "max_abs_diff", "output", "crop",
    }  # fmt: skip
    assert all(not r["crop"] for r in rows)  # a 64x48 crop of a photo: naive ran whole
    assert all(float(r["max_abs_diff"]) <= 1e-9 * 8 * 255 for r in rows)
    assert float(rows[0]["max_abs_diff"]) == 0.0  # naive is the reference
    assert all(int(r["runs"]) == 2 for r in rows)
    written = [r["output"] for r in rows if r["output"]]
    assert [p.rsplit("/", 1)[-1] for p in written] == ["cat_sharpen.png", "cat_horizontal_edge.png"]


def test_on_a_large_image_naive_runs_on_a_crop_by_default(tmp_path):
    """DESIGN §6: filter2d on the whole image, the naive reference on a 256x256 crop, its
    time extrapolated and marked; agreement measured on the crop."""
    rng = np.random.default_rng(4)
    big = rng.integers(0, 256, (1000, 1200), dtype=np.uint8)
    path = tmp_path / "big.png"
    path.write_bytes(encode_image(big))
    report = tmp_path / "r.json"
    result = run("apply", "-i", path, "-k", "sharpen", "--no-compare", "-o", tmp_path / "o",
                 "--report", report)  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.splitlines() if line.startswith(" sharpen")]
    assert lines[0][1:4] == ["naive", "(256x256", "crop)"] and lines[1][1] == "filter2d"
    assert lines[0][5].endswith("*")  # the extrapolated time is marked
    assert "* timed on the crop, extrapolated to the whole image" in result.stdout
    rows = json.loads(report.read_text())["rows"]
    width, height, x, y = (int(n) for n in re.split("[x+]", rows[0]["crop"]))
    assert (width, height) == (256, 256) and 0 <= x <= 1200 - 256 and 0 <= y <= 1000 - 256
    assert rows[1]["max_abs_diff"] == 0.0 and rows[1]["crop"] is None
    written = cv2.imread(str(tmp_path / "o" / "big_sharpen.png"), cv2.IMREAD_UNCHANGED)
    sharpen = [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]
    np.testing.assert_array_equal(written, expected_clip(big, sharpen))


def test_naive_is_left_out_when_even_its_crop_would_be_slow(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(encode_image(np.zeros((600, 600), dtype=np.uint8)))
    result = run("apply", "-i", path, "-k", "box:501", "--no-compare", "-o", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "naive backend left out: about 22 s for 1 kernel on a 256x256 crop" in result.output
    assert "--backend naive" in result.output
    assert "vs naive" not in result.stdout  # no naive column when it did not run


def test_quiet_prints_nothing(photo, tmp_path):
    result = run("apply", "-i", photo, "-k", "sharpen", "--quiet", "-o", tmp_path)
    assert result.exit_code == 0 and result.output == ""


def test_kernels_lists_the_bank_and_prints_matrices():
    listing = run("kernels")
    assert listing.exit_code == 0
    for name in ("small_blur", "sobel_x", "laplacian8", "horizontal_edge"):
        assert name in listing.output
    assert "7x7" in listing.output and "21x21" in listing.output
    matrix = run("kernels", "sobel_x", "1/4,1/2")
    assert matrix.exit_code == 0
    assert "-1   0   1\n-2   0   2\n-1   0   1" in matrix.output  # right-aligned columns
    assert "0.25   0.5" in matrix.output


def test_module_entry_point():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "convkit", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "convkit, version 0.1.0" in done.stdout


def _entry_point(*args, **kwargs):
    import subprocess
    import sys

    command = [sys.executable, "-m", "convkit", *map(str, args)]
    return subprocess.run(command, capture_output=True, **kwargs)


def test_entry_point_keeps_exit_codes_and_the_whole_output(photo, tmp_path):
    """The console script leaves through os._exit: nothing printed or written may be lost."""
    listing = _entry_point("kernels", text=True)
    assert listing.returncode == 0
    assert listing.stdout == run("kernels").output
    unknown = _entry_point("apply", "-i", photo, "-k", "nope", text=True)
    assert unknown.returncode == 2 and "unknown kernel 'nope'" in unknown.stderr
    missing = _entry_point("apply", "-i", tmp_path / "none.png", "-k", "sharpen", text=True)
    assert missing.returncode == 2 and "none.png" in missing.stderr
    piped = _entry_point(
        "apply", "-i", "-", "-k", "sharpen", "-b", "filter2d", "--out", "-",
        input=photo.read_bytes(),
    )  # fmt: skip
    assert piped.returncode == 0
    sharpen = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0.0]])
    expected = cv2.filter2D(cv2.imread(str(photo)), -1, sharpen, borderType=cv2.BORDER_REPLICATE)
    decoded = cv2.imdecode(np.frombuffer(piped.stdout, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(decoded, expected)


def test_entry_point_is_quiet_when_the_reader_goes_away():
    import subprocess
    import sys

    done = subprocess.run(
        f"{sys.executable} -m convkit kernels | head -c 10", shell=True, capture_output=True
    )
    assert done.returncode == 0 and len(done.stdout) == 10
    assert b"Error" not in done.stderr and b"Traceback" not in done.stderr


# --- bad input: one line, the documented exit code, nothing half-written -------------------


def _files(tmp_path):
    return {
        "empty.txt": "",
        "ragged.txt": "1 2 3\n4 5\n",
        "words.csv": "1,2\nx,4\n",
        "nan.txt": "1 nan\n",
        "wide.txt": " ".join(["1"] * 65),
    }


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["-k", "sobelx"], 2, "unknown kernel 'sobelx': did you mean sobel_x or sobel_y?"),
        (["-k", "1,nan"], 2, "'nan' is not a finite number"),
        (["-k", "1,2;3"], 2, "row 2: it has 1 entries but row 1 has 2"),
        (["-k", "sharpen", "--padding", "bounce"], 2, "unknown padding mode 'bounce'"),
        (
            ["-k", "sharpen", "--backend", "cuda"],
            2,
            "unknown backend 'cuda': use one of naive, filter2d",
        ),
        (["-k", "wide.txt", "--padding", "valid"], 2, "(1x65) is larger than the image (48x64)"),
        (["-k", "sharpen", "--report", "r.txt"], 2, "must end in .json or .csv"),
        (["-k", "nope.txt"], 2, "kernel file not found: nope.txt"),
        (["--kernel-file", "empty.txt"], 2, "empty.txt: no kernel rows found"),
        (["--kernel-file", "ragged.txt"], 2, "ragged.txt:2: row has 2 entries but line 1 has 3"),
        (["-k", "words.csv"], 2, "words.csv:2: 'x' is not a number"),
        (["-k", "nan.txt"], 2, "nan.txt:1: 'nan' is not a finite number"),
        ([], 2, "no kernel given: add --kernel NAME (one of small_blur"),
        (["-k", "sharpen", "--repeat", "0"], 2, "Invalid value for '--repeat'"),
        (["-k", "sharpen", "--rescale", "stretch"], 2, "Invalid value for '--rescale'"),
    ],
)
def test_bad_options_and_kernels(photo, tmp_path, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    for name, text in _files(tmp_path).items():
        (tmp_path / name).write_text(text)
    result = run("apply", "--image", photo, "--out", tmp_path / "out", *args)
    assert result.exit_code == code
    assert message in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1
    assert not (tmp_path / "out").exists()  # nothing written


def _bad_image(tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    good = encode_image(cv2.imread(str(SAMPLES / "chelsea.png")))
    content = {
        "zero-byte": b"",
        "truncated": good[: len(good) // 3],
        "random": np.random.default_rng(1).integers(0, 256, 4096).astype(np.uint8).tobytes(),
        "text": b"this is a text file\n",
    }[kind]
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("kind", ["zero-byte", "truncated", "random", "text"])
def test_images_that_cannot_be_decoded(tmp_path, kind):
    path = _bad_image(tmp_path, kind)
    result = run("apply", "-i", path, "-k", "sharpen", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert result.output.strip().startswith(f"Error: cannot decode {path}")
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_image_that_does_not_exist(tmp_path):
    result = run("apply", "-i", tmp_path / "nope.png", "-k", "sharpen")
    assert result.exit_code == 2
    assert f"Error: image not found: {tmp_path / 'nope.png'}" in result.output


def test_image_over_max_pixels_is_a_usage_error(photo, tmp_path):
    result = run(
        "apply", "-i", photo, "-k", "sharpen", "--max-pixels", "1000", "-o", tmp_path / "o"
    )
    assert result.exit_code == 2  # DESIGN §7: a limit exceeded, named with its flag
    assert "64x48 = 3,072 pixels, more than --max-pixels 1,000" in result.output


def test_output_folder_that_cannot_be_created(photo, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("apply", "-i", photo, "-k", "sharpen", "-o", blocker / "sub")
    assert result.exit_code == 1
    assert "cannot create output folder" in result.output
    assert blocker.read_text() == "x"


def test_kernels_unknown_name(tmp_path):
    result = run("kernels", "lapalcian")
    assert result.exit_code == 2
    assert "did you mean laplacian" in result.output


def test_debug_shows_the_traceback(photo, monkeypatch):
    monkeypatch.setenv("CONVKIT_DEBUG", "1")
    result = CliRunner().invoke(main, ["apply", "-i", str(photo), "-k", "sobelx"])
    assert result.exit_code != 0
    assert result.exception is not None and "sobelx" in str(result.exception)


def test_normalize_then_scale(tmp_path):
    image = np.full((4, 4), 100, dtype=np.uint8)
    path = tmp_path / "flat.png"
    path.write_bytes(encode_image(image))
    # Σ = 4: normalised it averages (100), scaled by 0.5 it gives 50.
    result = run("apply", "-i", path, "-k", "1,1;1,1", "--normalize", "--scale", "0.5",
                 "--rescale", "none", "-o", tmp_path / "o")  # fmt: skip
    assert result.exit_code == 0, result.output
    # From whichever backend was fastest: sepFilter2D's two passes round differently.
    np.testing.assert_allclose(
        np.load(tmp_path / "o" / "flat_inline1.npy"), np.full((4, 4), 50.0), rtol=1e-12
    )


def test_the_bundled_tutorial_images_give_the_worked_confidence_scores(tmp_path):
    image = str(SAMPLES / "tutorial/vertical_edge.png")
    result = run("apply", "-i", image, "-k", "horizontal_edge", "-k", "vertical_edge",
                 "--padding", "valid", "--rescale", "none", "-o", tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "vertical_edge_horizontal_edge.npy").item() == 0
    assert np.load(tmp_path / "vertical_edge_vertical_edge.npy").item() == 800


def test_parametric_imagemagick_and_anchor_options(tmp_path):
    image = np.zeros((5, 5), dtype=np.uint8)
    image[2, 2] = 200
    path = tmp_path / "dot.png"
    path.write_bytes(encode_image(image))
    kernels = ["-k", "gaussian:3", "-k", "3x1+0+0: 0 0 1", "-k", "box:2", "--anchor", "0,0"]
    result = run("apply", "-i", path, *kernels, "--rescale", "none", "-b", "filter2d",
                 "-o", tmp_path / "o")  # fmt: skip
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "o").glob("*.npy"))
    assert names == ["dot_box-2.npy", "dot_gaussian-3.npy", "dot_inline1.npy"]
    # --anchor 0,0 puts each kernel's top-left weight on the output pixel: it reads down-right.
    box = np.load(tmp_path / "o" / "dot_box-2.npy")
    assert box[1, 1] == box[2, 2] == 50 and box[1, 2] == box[2, 1] == 50 and box.sum() == 200


def test_imagemagick_nan_cells_are_a_note(tmp_path):
    path = tmp_path / "flat.png"
    path.write_bytes(encode_image(np.full((3, 3), 10, dtype=np.uint8)))
    result = run("apply", "-i", path, "-k", "3x1: 1 nan 1", "-o", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "note: kernel 'inline1': 1 nan/- cells read as 0: (row 0, col 1)" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-k", "box:0"], "box: the size N must be a whole number >= 1"),
        (["-k", "gaussian:4"], "odd whole number"),
        (["-k", "motion:5:abc"], "ANGLE must be a number"),
        (["-k", "sharpen", "--anchor", "3,0"], "anchor (3, 0) lies outside its 3x3 weights"),
        (["-k", "sharpen", "--anchor", "a,b"], "is not Y,X"),
    ],
)
def test_bad_parameters_are_usage_errors(photo, tmp_path, args, message):
    result = run("apply", "-i", photo, "-o", tmp_path / "o", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_kernels_lists_the_parametric_families_with_their_syntax():
    result = run("kernels")
    assert result.exit_code == 0
    for syntax in ("box:N", "gaussian:N[:SIGMA]", "log:N[:SIGMA]", "motion:N[:ANGLE]"):
        assert syntax in result.output


def test_shell_completion_offers_kernel_names(monkeypatch):
    env = {"_CONVKIT_COMPLETE": "bash_complete", "COMP_WORDS": "convkit apply -k sob",
           "COMP_CWORD": "3"}  # fmt: skip
    result = CliRunner(env=env).invoke(main, [], prog_name="convkit")
    assert result.output.split() == ["plain,sobel_x", "plain,sobel_y"]
    env["COMP_WORDS"] = "convkit apply -k gau"
    result = CliRunner(env=env).invoke(main, [], prog_name="convkit")
    assert result.output.split() == ["plain,gaussian:"]
    env["COMP_WORDS"] = "convkit apply -k sobel_x,lap"
    result = CliRunner(env=env).invoke(main, [], prog_name="convkit")
    assert result.output.split() == ["plain,sobel_x,laplacian", "plain,sobel_x,laplacian8"]


def test_bare_convkit_prints_the_help_and_exits_0():
    result = run()
    assert result.exit_code == 0
    assert result.output.startswith("Usage:") and "apply" in result.output
