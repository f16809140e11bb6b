"""`convkit explain` and `convkit animate` attacked as a hostile user would: cvals that the
image's type cannot hold, non-dyadic weights, 16-bit, grey+alpha and BGRA images, kernels
larger than the image, huge coordinates, names with newlines, outputs onto inputs or where
nothing can be written, closed standard output, signals. Every final value is compared with
the pixel that `convkit apply --no-compare -b filter2d` writes, read back as OpenCV reads it.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageSequence

from convkit import UsageError
from convkit.animate import (
    ANIMATE_MAX_GRID,
    _rgb,
    check_grid_size,
    encode_animation,
    gif_palette,
    slide_frames,
)
from convkit.cli import main
from convkit.explain import explain, printable

RNG = np.random.default_rng(13)
ODD = "1,-2,3; 0,4,-1; 2,1,-3"
THIRDS = "1/3,1/7,2/9; 0.1,-1/11,0.3"  # non-dyadic: the sum's last bit depends on its order


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _applied(image_path, out_dir, *options):
    """What `convkit apply --no-compare -b filter2d` writes, read back as OpenCV reads it."""
    result = _invoke("apply", image_path, *options, "--no-compare", "-b", "filter2d",
                     "--out", out_dir, "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    (written,) = out_dir.iterdir()
    if written.suffix == ".npy":
        return np.load(written), True
    return cv2.imread(str(written), cv2.IMREAD_UNCHANGED), False


def _explained(image_path, y, x, *options):
    result = _invoke("explain", image_path, *options, "--at", f"{y},{x}", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _as_written(record, pixel, npy):
    """The record's channel values in the order of the file apply wrote: .npy holds RGB(A),
    a PNG read back by OpenCV BGR(A), and grey+alpha comes back as BGRA."""
    values = [channel["value"] for channel in record["channels"]]
    pixel = [float(v) for v in np.atleast_1d(pixel)]
    if len(values) == 2 and len(pixel) == 4:  # grey+alpha PNG, read as BGRA
        pixel = [pixel[0], pixel[3]]
    elif npy and len(values) >= 3:
        pixel = pixel[2::-1] + pixel[3:]
    return values, pixel


def _write(path, image):
    if image.ndim == 3 and image.shape[2] == 2:
        Image.fromarray(image, "LA").save(path)
    else:
        assert cv2.imwrite(str(path), image)
    return path


IMAGES = {
    "grey 16-bit": lambda: RNG.integers(0, 65536, (5, 6), dtype=np.uint16),
    "grey+alpha": lambda: RNG.integers(0, 256, (5, 6, 2), dtype=np.uint8),
    "BGRA": lambda: RNG.integers(0, 256, (5, 6, 4), dtype=np.uint8),
    "BGRA 16-bit": lambda: RNG.integers(0, 65536, (4, 5, 4), dtype=np.uint16),
}


# --- the final value is apply's pixel --------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        ("--kernel", ODD, "--padding", "constant", "--cval", "12.5", "--anchor", "2,2"),
        ("--kernel", ODD, "--padding", "constant", "--cval", "-3.5", "--rescale", "none"),
        ("--kernel", THIRDS, "--padding", "constant", "--cval", "70000", "--rescale", "abs"),
        (
            "--kernel",
            THIRDS,
            "--padding",
            "reflect",
            "--rescale",
            "none",
            "--bias",
            "7.25",
            "--activation",
            "relu",
        ),  # fmt: skip
        (
            "--kernel",
            THIRDS,
            "--padding",
            "wrap",
            "--flip",
            "--rescale",
            "minmax",
            "--bias",
            "-30.5",
            "--activation",
            "relu",
        ),  # fmt: skip
        (
            "--kernel",
            "1,2; 3,-4",
            "--padding",
            "reflect101",
            "--anchor",
            "0,0",
            "--rescale",
            "clip",
            "--bias",
            "100.3",
        ),  # fmt: skip
        ("--kernel", "1,2; 3,-4", "--padding", "valid", "--flip"),
    ],
    ids=[
        "cval 12.5",
        "cval -3.5 none",
        "cval 70000",
        "thirds none",
        "thirds minmax",
        "even bias",
        "even valid",
    ],  # fmt: skip
)
@pytest.mark.parametrize("kind", list(IMAGES))
def test_the_final_value_is_the_pixel_apply_writes(kind, options, tmp_path):
    source = _write(tmp_path / "in.png", IMAGES[kind]())
    written, npy = _applied(source, tmp_path / "out", *options)
    height, width = written.shape[:2]
    # Under valid with --flip the 2x2 kernel's anchor is (0, 0): output pixel = image pixel.
    rows, columns = (0, height - 1, height // 2), (0, width - 1, width // 2)
    for y in rows:
        for x in columns:
            record = _explained(source, y, x, *options)
            oy, ox = record["output_at"]
            values, pixel = _as_written(record, written[oy, ox], npy)
            assert values == pixel, (y, x)
            for channel in record["channels"]:
                if channel["products"] is not None:  # the steps end on the value written
                    assert channel["steps"][-1]["value"] == channel["value"]


def test_a_cval_the_image_type_cannot_hold_is_used_as_given():
    image = np.full((3, 3), 100, np.uint8)
    for cval, total in [(-3.5, 4 * 100 - 5 * 3.5), (12.5, 462.5), (300, 1900)]:
        record = explain(image, np.ones((3, 3)), (0, 0), padding="constant", cval=cval,
                         rescale="none")  # fmt: skip
        assert record.channels[0].steps[0] == ("sum", total)
        assert record.value == total
        assert record.channels[0].neighbourhood[0, 0] == cval


def test_the_steps_of_non_dyadic_weights_end_on_apply_s_last_bit():
    image = RNG.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    from convkit.engine import convolve
    from convkit.kernel_files import parse_kernel

    kernel = parse_kernel("0.1,0.2,0.3,0.4,0.5; -0.6,0.7,-0.8,0.9,1.1")
    response = convolve(image, kernel, padding="reflect", backend="filter2d")
    for y, x in [(0, 0), (2, 3), (4, 5), (0, 5)]:
        record = explain(image, kernel, (y, x), padding="reflect", rescale="none")
        assert list(record.value) == list(response[y, x])
        assert [c.steps[-1][1] for c in record.channels] == list(response[y, x])


# --- refusals --------------------------------------------------------------------------------


def test_a_kernel_larger_than_the_image_under_valid_is_the_engine_s_error():
    with pytest.raises(UsageError, match=r"'box:9' \(9x9\) is larger than the image \(6x7\)"):
        explain(np.zeros((6, 7), np.uint8), "box:9", (3, 3), padding="valid")


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("6,0", r"pixel \(6, 0\) is outside the 7x6 image: rows 0..5 and columns 0..6"),
        ("-1,0", r"pixel \(-1, 0\) is outside"),
        ("99999999999999999999999,0", "is outside the 7x6 image"),
        ("1.5,0", "is not Y,X"),
        ("1,2,3", "is not Y,X"),
        ("", "is not Y,X"),
    ],
)
def test_bad_pixels_are_one_usage_error_line(at, message, tmp_path):
    source = _write(tmp_path / "in.png", np.zeros((6, 7), np.uint8))
    result = _invoke("explain", source, "-k", "sharpen", "--at", at)
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and "Traceback" not in result.output
    assert len(result.output.splitlines()) <= 2
    assert __import__("re").search(message, result.output)


def test_kernels_whose_padded_grid_is_too_large_to_animate_are_refused(tmp_path):
    image = np.zeros((16, 16), np.uint8)
    check_grid_size(image, "large_blur")  # the bank's largest fits a 16x16 image
    check_grid_size(image, "box:25", padding="valid")  # nothing is padded
    check_grid_size(np.zeros((3, 3)), "box:31")
    with pytest.raises(UsageError, match=rf"40x40 cells: animate draws up to {ANIMATE_MAX_GRID}"):
        check_grid_size(image, "box:25")
    source = _write(tmp_path / "in.png", image)
    result = _invoke("animate", source, "-k", "box:61", "--out", tmp_path / "slide.gif")
    assert result.exit_code == 2
    assert result.output.startswith("Error: kernel 'box:61' (61x61) over the 16x16 image")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


@pytest.mark.parametrize(
    ("options", "code"),
    [
        (("--crop", "0,0,99999999999999999999,3"), 2),
        (("--crop", "5,5,3,3"), 2),
        (("--crop", "0,0,0,3"), 2),
        (("--fps", "0"), 2),
        (("--fps", "nan"), 2),
        (("--fps", "1e999"), 2),
    ],
)
def test_bad_crops_and_speeds_write_nothing(options, code, tmp_path):
    source = _write(tmp_path / "in.png", np.zeros((6, 7), np.uint8))
    result = _invoke("animate", source, "-k", "sharpen", "--out", tmp_path / "s.gif", *options)
    assert result.exit_code == code
    assert result.output.startswith("Error: ") and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_outputs_onto_inputs_are_refused_and_nothing_is_written(tmp_path):
    image = np.arange(42, dtype=np.uint8).reshape(6, 7)
    source = _write(tmp_path / "in.png", image)
    kernel = tmp_path / "k.txt"
    kernel.write_text("1 2\n3 4\n")
    (tmp_path / "link.png").symlink_to(source)
    for target in (source, tmp_path / "link.png", kernel):
        result = _invoke("explain", source, "-k", kernel, "--at", "0,0", "--png", target)
        assert result.exit_code == 2 and "refusing to overwrite the input" in result.output
    np.testing.assert_array_equal(cv2.imread(str(source), cv2.IMREAD_UNCHANGED), image)
    assert kernel.read_text() == "1 2\n3 4\n"


def test_an_output_that_cannot_be_written_is_a_run_error(tmp_path):
    source = _write(tmp_path / "in.png", np.zeros((4, 4), np.uint8))
    under_a_file = tmp_path / "in.png" / "slide.gif"
    result = _invoke("animate", source, "-k", "sharpen", "--out", under_a_file)
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    assert "Traceback" not in result.output
    result = _invoke("explain", source, "-k", "sharpen", "--at", "0,0", "--png",
                     tmp_path / "in.png" / "x.png")  # fmt: skip
    assert result.exit_code == 1 and "Error: " in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_names_with_newlines_and_markup_stay_on_their_line(tmp_path):
    source = _write(tmp_path / "[bold]x\ny.png", np.zeros((3, 3), np.uint8))
    record = explain(np.zeros((3, 3), np.uint8), "sharpen", (1, 1), image_name=str(source))
    assert all("\n" not in line for line in record.lines())
    assert "[bold]x\\ny.png" in record.lines()[0]
    assert printable("tab\there\x1b") == "tab\\there\\x1b"
    result = _invoke("explain", source, "-k", "sharpen", "--at", "0,0", "--json")
    assert json.loads(result.stdout)["image"] == str(source)  # JSON keeps the name as it is


# --- the GIF ---------------------------------------------------------------------------------


def test_the_gif_shows_every_frame_exactly_as_drawn_on_its_palette():
    image = RNG.integers(0, 256, (4, 5), dtype=np.uint8)
    frames = slide_frames(image, "sobel_x", padding="valid", rescale="abs")
    palette = gif_palette()
    repeated = [frames[0], frames[0], *frames[1:]]  # an unchanged frame is still a frame
    with Image.open(io.BytesIO(encode_animation(repeated, fps=5))) as gif:
        assert gif.n_frames == len(repeated)
        for index, shown in enumerate(ImageSequence.Iterator(gif)):
            expected = _rgb(repeated[index]).quantize(palette=palette, dither=0).convert("RGB")
            np.testing.assert_array_equal(np.asarray(shown.convert("RGB")), np.asarray(expected))
            assert shown.info["duration"] == (200 if index < len(repeated) - 1 else 3000)


def test_the_gif_is_encoded_one_frame_at_a_time():
    class Frames:
        """Frames drawn when read; remembers the order in which they were read."""

        def __init__(self):
            self.read = []

        def __len__(self):
            return 5

        def __getitem__(self, index):
            index = range(5)[index]
            self.read.append(index)
            frame = np.full((6, 8, 3), 40 * index, np.uint8)
            frame[index, index] = 255
            return frame

    frames = Frames()
    with Image.open(io.BytesIO(encode_animation(frames, fps=2))) as gif:
        assert gif.n_frames == 5
    assert frames.read == [4, 0, 1, 2, 3, 4]  # the last one checked first, then in order


# --- streams and signals ---------------------------------------------------------------------


def _run(args, **kwargs):
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run([sys.executable, "-m", "convkit", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120, **kwargs)  # fmt: skip


@pytest.mark.slow
def test_closed_or_vanishing_standard_output(tmp_path):
    source = _write(tmp_path / "in.png", RNG.integers(0, 256, (5, 5, 4), dtype=np.uint8))
    explain_args = ["explain", source, "-k", "sharpen", "--at", "0,0"]
    closed = subprocess.run(
        [sys.executable, "-m", "convkit", *map(str, explain_args), "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
        preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    assert closed.returncode == 1
    assert closed.stderr.strip().splitlines() == [
        "Error: cannot write to standard output: the stream is closed"
    ]
    piped = subprocess.run(
        f"{sys.executable} -m convkit {' '.join(map(str, explain_args))} | head -1",
        shell=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert piped.stdout.startswith("pixel (row 0, column 0)") and piped.stderr == ""
    tool = subprocess.run(
        f"{sys.executable} -m convkit {' '.join(map(str, explain_args))} --json"
        f" | {sys.executable} -m json.tool",
        shell=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert tool.returncode == 0 and json.loads(tool.stdout)["dtype"] == "uint8"


@pytest.mark.slow
@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_a_signal_during_a_16x16_animation_leaves_no_file(sent, tmp_path):
    source = _write(tmp_path / "in.png", RNG.integers(0, 256, (16, 16), dtype=np.uint8))
    out = tmp_path / "slide.gif"
    process = subprocess.Popen(
        [sys.executable, "-m", "convkit", "animate", str(source), "-k", "large_blur",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.5)
    process.send_signal(sent)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + sent
    assert stderr.strip().startswith("Error: interrupted by")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]
