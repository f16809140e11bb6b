"""The command line against hostile and unlucky input: DESIGN §7, one case per attack.

Every case checks what a careful user of rsync or gzip expects: the documented exit code,
one ``Error:`` line naming the culprit, every input byte-identical afterwards, no temporary
file left behind, no process left running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from convkit.cli import main
from convkit.imageio import encode_image

CONVKIT = [sys.executable, "-m", "convkit"]


def run(*args, input=None):
    result = CliRunner().invoke(main, [str(a) for a in args], input=input)
    assert "Traceback" not in result.output
    return result


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def temporary_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.tmp")]


def assert_one_error(output: str, *culprits: str) -> None:
    """One ``Error:`` line (and at most one hint) that names every culprit."""
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, output
    assert len(lines) <= 2, output
    for culprit in culprits:
        assert culprit in errors[0], (culprit, output)


@pytest.fixture
def folder(tmp_path):
    """d/img.png, a small grey image."""
    d = tmp_path / "d"
    d.mkdir()
    image = np.random.default_rng(7).integers(0, 256, (24, 32), dtype=np.uint8)
    (d / "img.png").write_bytes(encode_image(image))
    return d


# -- 1. one output plan, checked before anything is written ---------------------------------


def test_an_output_that_would_replace_a_kernel_file_is_refused(folder):
    np.save(folder / "img_sharpen.npy", np.ones((3, 3)))
    before = snapshot(folder)
    args = ["apply", "--image", folder / "img.png", "--kernel", folder / "img_sharpen.npy"]
    result = run(*args, "--kernel", "sharpen", "--rescale", "none", "--out", folder, "--no-compare")
    assert result.exit_code == 2
    assert_one_error(result.output, "refusing to overwrite the input", "img_sharpen.npy")
    assert snapshot(folder) == before


def test_a_report_that_would_replace_a_kernel_file_is_refused(folder, tmp_path):
    (folder / "edge.json").write_text('{"name": "edge", "kernel": [[1, -1]]}')
    before = snapshot(folder)
    args = ["apply", "-i", folder / "img.png", "-k", folder / "edge.json"]
    result = run(*args, "--report", folder / "edge.json", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert_one_error(result.output, "edge.json", "report")
    assert snapshot(folder) == before
    assert not (tmp_path / "out").exists()


def test_a_report_that_would_replace_the_image_is_refused(folder, tmp_path):
    before = snapshot(folder)
    out = tmp_path / "out"
    result = run("apply", "-i", folder / "img.png", "-k", "sharpen", "--report", out / "r.json",
                 "-o", out, "--report", folder / "img.png")  # fmt: skip
    assert result.exit_code == 2
    assert snapshot(folder) == before


def test_a_kernel_picture_that_would_replace_its_kernel_file_is_refused(folder):
    (folder / "mine.png").write_text("1 2 1\n")  # a text kernel whose name ends in .png
    before = snapshot(folder)
    result = run("kernels", folder / "mine.png", "--png", folder)
    assert result.exit_code == 2
    assert_one_error(result.output, "refusing to overwrite the input", "mine.png")
    assert snapshot(folder) == before


def test_an_output_symlinked_to_the_input_is_refused(folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "img_sharpen.png").symlink_to(folder / "img.png")
    before = snapshot(folder)
    result = run("apply", "-i", folder / "img.png", "-k", "sharpen", "-o", out, "--no-compare")
    assert result.exit_code == 2
    assert_one_error(result.output, "refusing to overwrite the input")
    assert snapshot(folder) == before


def test_kernels_whose_names_meet_in_a_file_name_write_distinct_files(folder, tmp_path):
    """gaussian:5:1.4 and gaussian-5-1.4.txt are both "gaussian-5-1.4" in a file name."""
    (folder / "gaussian-5-1.4.txt").write_text("0 0 0\n0 1 0\n0 0 0\n")
    out = tmp_path / "out"
    result = run("apply", "-i", folder / "img.png", "-k", "gaussian:5:1.4",
                 "-k", folder / "gaussian-5-1.4.txt", "-b", "filter2d", "-o", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "img_gaussian-5-1.4-2.png", "img_gaussian-5-1.4-2_compare.png",
        "img_gaussian-5-1.4.png", "img_gaussian-5-1.4_compare.png",
    ]  # fmt: skip
    identity = cv2.imread(str(out / "img_gaussian-5-1.4-2.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(identity, cv2.imread(str(folder / "img.png"), -1))


def test_a_kernel_named_like_another_kernels_comparison_gets_its_own_name(folder, tmp_path):
    (folder / "sharpen_compare.txt").write_text("0 0 0\n0 1 0\n0 0 0\n")
    out = tmp_path / "out"
    result = run("apply", "-i", folder / "img.png", "-k", "sharpen",
                 "-k", folder / "sharpen_compare.txt", "-b", "filter2d", "-o", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "img_sharpen.png", "img_sharpen_compare-2.png", "img_sharpen_compare-2_compare.png",
        "img_sharpen_compare.png",
    ]  # fmt: skip
    # the comparison PNG of sharpen is a picture of panels, not the identity's output
    compare = cv2.imread(str(out / "img_sharpen_compare.png"))
    assert compare.shape[1] > 3 * 32


# -- 2. signals ---------------------------------------------------------------------------


def _slow_apply(folder: Path, out: Path, *extra: str) -> subprocess.Popen:
    """A single-image naive run that takes several seconds."""
    image = np.random.default_rng(3).integers(0, 256, (256, 256), dtype=np.uint8)
    (folder / "big.png").write_bytes(encode_image(image))
    command = [*CONVKIT, "apply", "-i", str(folder / "big.png"), "-k", "box:301"]
    command += ["-b", "naive", "-o", str(out), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                              (signal.SIGINT, 130)])  # fmt: skip
def test_a_stopping_signal_exits_128_plus_n_and_leaves_nothing(folder, tmp_path, signum, code):
    before = snapshot(folder)
    out = tmp_path / "out"
    process = _slow_apply(folder, out)
    time.sleep(2.0)  # past the start-up: inside the naive loop
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    assert process.returncode == code, err
    assert_one_error(err, f"interrupted by {'Ctrl-C' if code == 130 else signum.name}")
    before["big.png"] = (folder / "big.png").read_bytes()
    assert snapshot(folder) == before
    assert not out.exists() or (not temporary_files(out) and not list(out.iterdir()))


# -- 3. bounded resources -----------------------------------------------------------------


def test_a_kernel_that_would_exhaust_memory_is_refused_before_the_work(folder, tmp_path):
    (folder / "long.txt").write_text(" ".join(["1"] * 400_000) + "\n")
    before = snapshot(folder)
    result = run("apply", "-i", folder / "img.png", "-k", folder / "long.txt",
                 "--max-memory", "64M", "-o", tmp_path / "out")  # fmt: skip
    assert result.exit_code == 2
    assert_one_error(result.output, "long (1x400000)", "--max-memory 64 MB")
    assert snapshot(folder) == before
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", ["0", "-1", "12Q", "nan", "1e400G", ""])
def test_a_malformed_max_memory_is_a_usage_error(folder, size):
    result = run("apply", "-i", folder / "img.png", "-k", "sharpen", "--max-memory", size)
    assert result.exit_code == 2
    assert_one_error(result.output, "--max-memory")


def test_the_naive_estimate_counts_kernel_taps():
    """box:501 on 192x192: about 12 s of naive loop (it was 0.1 s by pixels alone)."""
    from convkit.kernels import get_kernel
    from convkit.pipeline import choose_backends

    backends, note = choose_backends(None, (192, 192), [get_kernel("box:501")], repeat=1)
    assert backends == ("filter2d",)
    assert note.startswith("naive backend left out: about 12 s for 1 kernel")
    assert choose_backends(None, (192, 192), [get_kernel("box:5")], repeat=1)[0] == (
        "naive", "filter2d",
    )  # fmt: skip


@pytest.mark.parametrize("where", ["--image", "--kernel"])
@pytest.mark.parametrize("device", ["fifo", "/dev/zero", "/dev/null"])
@pytest.mark.slow
def test_only_regular_files_are_read(tmp_path, folder, where, device):
    path = tmp_path / "pipe.png" if device == "fifo" else Path(device)
    if device == "fifo":
        os.mkfifo(path)
    args = ["-i", path, "-k", "sharpen"] if where == "--image" else ["-i", folder / "img.png"]
    args += ["-k", path] if where == "--kernel" else []
    # In a child process, so that a blocking open would fail the test instead of hanging it.
    command = [*CONVKIT, "apply", *map(str, args), "-o", str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert_one_error(done.stderr, str(path))
    assert not (tmp_path / "out").exists()


# -- 4. numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--cval", "nan"], "'nan'"),
        (["--cval", "inf"], "'inf'"),
        (["--cval", "-inf"], "'-inf'"),
        (["--bias", "nan"], "'nan'"),
        (["--scale", "inf"], "'inf'"),
        (["--scale", "1e308"], "1e+308"),
        (["--kernel", "log:9:1e-300"], "1e-300"),
        (["--kernel", "gaussian:5:nan"], "nan"),
        (["--kernel", "motion:9:inf"], "inf"),
        (["--kernel", "1e400, 1"], "1e400"),
    ],
)
def test_non_finite_or_overflowing_numbers_are_usage_errors(folder, tmp_path, args, culprit):
    kernel = [] if "--kernel" in args else ["-k", "sharpen"]
    result = run("apply", "-i", folder / "img.png", *kernel, *args, "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert_one_error(result.output, culprit)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_verify_refuses_a_non_finite_tolerance(value):
    result = run("verify", "--tolerance", value)
    assert result.exit_code == 2
    assert_one_error(result.output, "--tolerance", repr(value))


@pytest.mark.slow
def test_no_warning_reaches_the_user(folder, tmp_path):
    """A huge but finite response: numpy may warn while casting; the user sees nothing."""
    command = [*CONVKIT, "apply", "-i", str(folder / "img.png"), "-k", "1e300, 1e300"]
    command += ["--rescale", "minmax", "-o", str(tmp_path / "out"), "-q"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.stderr == ""
    assert done.returncode == 0


# -- 5. text shown literally ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["[/x]", "[bold]y", "[link=file:///etc]z", ":smile:"])
def test_paths_with_markup_are_shown_as_given(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir(parents=True)
    image = np.random.default_rng(1).integers(0, 256, (8, 8), dtype=np.uint8)
    stem = name.replace("/", "")
    (folder / f"{stem}.png").write_bytes(encode_image(image))
    (folder / "b.png").write_bytes(encode_image(image))
    report = tmp_path / "r.json"
    result = run("apply", "-i", folder, "-k", "sharpen", "-o", tmp_path / "out",
                 "--report", report)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert str(folder / f"{stem}.png") in {
        r["image"] for r in json.loads(report.read_text())["rows"]
    }
    single = run("apply", "-i", folder / f"{stem}.png", "-k", "sharpen", "-o", tmp_path / "o2")
    assert single.exit_code == 0, single.output
    assert str(folder / f"{stem}.png") in single.output


def test_a_kernel_named_with_markup_is_shown_as_given(folder, tmp_path):
    (folder / "k.json").write_text('{"name": "[/oops]", "kernel": [[0, 1, 0]]}')
    report = tmp_path / "r.json"
    result = run("apply", "-i", folder / "img.png", "-k", folder / "k.json",
                 "-o", tmp_path / "out", "--report", report)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "[/oops]" in result.output
    assert json.loads(report.read_text())["rows"][0]["kernel"] == "[/oops]"


def test_a_newline_in_a_file_name_keeps_the_error_on_one_line(tmp_path):
    path = tmp_path / "bad\nname.png"
    path.write_bytes(b"not an image")
    result = run("apply", "-i", path, "-k", "sharpen", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert_one_error(result.output, "bad\\nname.png")


def test_a_kernel_file_with_a_byte_order_mark_is_read(folder, tmp_path):
    (folder / "k.csv").write_bytes(b"\xef\xbb\xbf0,0,0\n0,1,0\n0,0,0\n")
    result = run("apply", "-i", folder / "img.png", "-k", folder / "k.csv", "-b", "filter2d",
                 "-o", tmp_path / "out", "--no-compare")  # fmt: skip
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(
        cv2.imread(str(tmp_path / "out" / "img_k.png"), -1),
        cv2.imread(str(folder / "img.png"), -1),
    )


# -- 6. streams -----------------------------------------------------------------------------


def _convkit(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CONVKIT, *map(str, args)], timeout=60, **kwargs)


@pytest.mark.slow
def test_a_closed_stdout_is_an_error_not_a_traceback(folder, tmp_path):
    out = tmp_path / "out"
    done = _convkit("apply", "-i", folder / "img.png", "-k", "sharpen", "-o", out,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                    preexec_fn=lambda: os.close(1))  # fmt: skip
    assert done.returncode == 1
    assert_one_error(done.stderr, "standard output")
    assert sorted(p.name for p in out.iterdir()) == ["img_sharpen.png", "img_sharpen_compare.png"]


@pytest.mark.slow
def test_a_closed_stderr_changes_nothing(folder, tmp_path):
    done = _convkit("apply", "-i", folder / "img.png", "-k", "nope", "-o", tmp_path / "out",
                    stdout=subprocess.PIPE, preexec_fn=lambda: os.close(2))  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == b""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.slow
def test_a_full_stdout_is_exit_1_and_the_files_stay(folder, tmp_path):
    out = tmp_path / "out"
    with open("/dev/full", "w") as full:
        done = _convkit("apply", "-i", folder / "img.png", "-k", "sharpen", "-o", out,
                        stdout=full, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert done.returncode == 1
    assert_one_error(done.stderr, "No space left on device")
    assert (out / "img_sharpen.png").exists()
    with open("/dev/full", "w") as full:
        image = _convkit("apply", "-i", folder / "img.png", "-k", "sharpen", "-o", "-",
                         stdout=full, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert image.returncode == 1
    assert_one_error(image.stderr, "cannot write the image to standard output")


@pytest.mark.slow
def test_a_closed_pipe_is_no_error():
    reader = subprocess.Popen([*CONVKIT, "kernels"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)  # fmt: skip
    reader.stdout.close()  # the reader goes away at once, as `| head -0` would
    _, err = reader.communicate(timeout=60)
    assert b"Traceback" not in err
    assert reader.returncode == 0


@pytest.mark.slow
def test_a_png_is_not_written_to_a_terminal(folder, tmp_path):
    import pty

    primary, secondary = pty.openpty()
    try:
        done = _convkit("apply", "-i", folder / "img.png", "-k", "sharpen", "-o", "-",
                        stdout=secondary, stderr=subprocess.PIPE, text=True)  # fmt: skip
    finally:
        os.close(secondary)
        os.close(primary)
    assert done.returncode == 2
    assert_one_error(done.stderr, "refusing to write a PNG to a terminal")


# -- 7. usage errors look like every other error --------------------------------------------


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["apply", "--bogus"], "--bogus"),
        (["apply", "-i", "x.png", "-k", "sharpen", "--anchor", "1"], "'1'"),
        (["apply", "-i", "x.png", "-k", "sharpen", "--anchor", "a,b"], "'a,b'"),
        (["nope"], "nope"),
        (["apply", "-i", "x.png", "-k", "sharpen", "--padding"], "--padding"),
        (["bench", "--repeat", "0"], "--repeat"),
    ],
)
def test_click_errors_are_one_error_line_and_one_hint(args, culprit):
    result = run(*args)
    assert result.exit_code == 2
    assert_one_error(result.output, culprit)
    assert result.output.splitlines()[-1].endswith(" --help' for help.")


def test_demo_out_that_is_a_file(folder):
    result = run("demo", "--out", folder / "img.png")
    assert result.exit_code == 2
    assert_one_error(result.output, "img.png")


def test_bench_plot_into_a_folder(tmp_path):
    result = run("bench", "--plot", tmp_path)
    assert result.exit_code == 2
    assert_one_error(result.output, str(tmp_path))


def test_anchor_with_a_stack_is_refused(folder, tmp_path):
    result = run("apply", "-i", folder / "img.png", "--stack", "sobel_x,relu", "--anchor", "0,0",
                 "-o", tmp_path / "out")  # fmt: skip
    assert result.exit_code == 2
    assert_one_error(result.output, "--anchor", "--stack")


# -- found by attacking the finished work -----------------------------------------------------


def test_a_long_row_kernel_is_refused_by_its_fourier_cost(folder, tmp_path):
    """A 1 x 100000 row on a 32-pixel-wide image: OpenCV's DFT path needs about an FFT of
    the whole padded row; the estimate must count it (it once said a third of the peak)."""
    from convkit.resources import run_peak_bytes

    peak = run_peak_bytes(("filter2d",), (24, 32), 1, (1, 100_000), False)["filter2d"]
    fft = run_peak_bytes(("fft",), (24, 32), 1, (1, 100_000), False)["fft"]
    assert peak >= fft
    np.save(folder / "row.npy", np.ones((1, 100_000)))
    result = run("apply", "-i", folder / "img.png", "-k", folder / "row.npy", "-b", "filter2d",
                 "--max-memory", "128M", "-o", tmp_path / "out")  # fmt: skip
    assert result.exit_code == 2
    assert_one_error(result.output, "row (1x100000)", "--max-memory")


def test_a_streamed_run_counts_the_encoders_copies_of_its_output(tmp_path):
    """A run streamed in strips (one backend, --no-compare) also holds what the PNG encoder
    makes of the output: filtered rows and compressed chunks, as large as the image for
    noise. An estimate without them once admitted such runs at 0.6x their peak."""
    from convkit import get_kernel
    from convkit.pipeline import ApplySettings, streamed_rows
    from convkit.resources import ENCODER_COPIES, run_peak_bytes

    shape = (600, 800, 3)
    noise = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "noise.png"), noise)
    settings = ApplySettings(backends=("filter2d",), compare=False)
    rows = streamed_rows(noise, get_kernel("sharpen"), ("filter2d",), settings)
    assert rows is not None  # streamed
    bare = run_peak_bytes(("filter2d",), shape, 1, (3, 3), False, 8, rows)["filter2d"]
    whole = run_peak_bytes(("filter2d",), shape, 1, (3, 3), False, 8, rows, encoded=True)
    assert whole["filter2d"] - bare == int(ENCODER_COPIES * 600 * 800 * 3)

    def apply_within(limit: int):
        return run("apply", "-i", tmp_path / "noise.png", "-k", "sharpen", "-b", "filter2d",
                   "--no-compare", "--max-memory", str(limit), "-o", tmp_path / "out")  # fmt: skip

    result = apply_within((bare + whole["filter2d"]) // 2)
    assert result.exit_code == 2
    assert_one_error(result.output, "noise.png", "--max-memory")
    assert not (tmp_path / "out").exists()
    assert apply_within(whole["filter2d"] + 2**20).exit_code == 0


def test_an_empty_image_path_is_not_the_current_folder(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(folder)
    result = run("apply", "-i", "", "-k", "sharpen", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert_one_error(result.output, "empty image path")
    assert not (tmp_path / "out").exists()


def test_a_name_that_fits_the_file_system_is_written_atomically(folder, tmp_path):
    """The temporary name adds 14 bytes: a 250-byte output name must still be writable."""
    long = folder / ("y" * 238 + ".png")
    long.write_bytes((folder / "img.png").read_bytes())
    out = tmp_path / "out"
    result = run("apply", long, "-k", "sharpen", "-b", "filter2d", "--no-compare", "-o", out)
    assert result.exit_code == 0, result.output
    assert [len(p.name) for p in out.iterdir()] == [238 + len("_sharpen.png")]


@pytest.mark.slow
def test_standard_input_is_bounded_by_its_header(tmp_path):
    """A 10x10 PNG header followed by endless bytes: refused after about 16 MB, not 1.4 GB."""
    small = encode_image(np.zeros((10, 10), np.uint8))
    command = [*CONVKIT, "apply", "-", "-k", "sharpen", "-o", str(tmp_path / "out")]
    feeder = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read());"
         "z = bytes(1 << 20)\nwhile True: sys.stdout.buffer.write(z)"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    feeder.stdin.write(small)
    feeder.stdin.close()
    done = subprocess.run(command, stdin=feeder.stdout, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    feeder.kill()
    feeder.wait()
    assert done.returncode == 2
    assert_one_error(done.stderr, "standard input", "10x10 PNG")


@pytest.mark.parametrize("kernel", ["1e-320, -1e-320", "1e-310, 0, -1e-310"])
@pytest.mark.slow
def test_subnormal_responses_neither_warn_nor_fail(folder, tmp_path, kernel):
    command = [*CONVKIT, "apply", str(folder / "img.png"), "-k", kernel, "-b", "naive",
               "-b", "fft", "--rescale", "minmax", "-o", str(tmp_path / "out"), "-q"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")


def test_demo_checks_every_figure_before_writing_one(tmp_path):
    (tmp_path / "demo_bank.png").mkdir()
    result = run("demo", "--out", tmp_path)
    assert result.exit_code == 2
    assert_one_error(result.output, "demo_bank.png", "is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo_bank.png"]


def test_bench_on_a_one_pixel_image(tmp_path):
    result = run("bench", "--sizes", "1", "--kernels", "sharpen", "--backends", "filter2d",
                 "--repeat", "1")  # fmt: skip
    assert result.exit_code == 0, result.output


def test_a_newline_in_a_name_is_escaped_in_every_line(tmp_path):
    path = tmp_path / "a\nb.png"
    path.write_bytes(encode_image(np.zeros((4, 4), np.uint8)))
    result = run("apply", path, "-k", "sharpen", "-b", "filter2d", "-o", tmp_path / "out",
                 "--no-compare")  # fmt: skip
    assert result.exit_code == 0, result.output
    wrote = [line for line in result.output.splitlines() if line.startswith("wrote")]
    assert len(wrote) == 1 and "a\\nb_sharpen.png" in wrote[0]


def test_an_absurd_repeat_is_a_usage_error(folder):
    result = run("apply", folder / "img.png", "-k", "sharpen", "--repeat", "99999999999999")
    assert result.exit_code == 2
    assert_one_error(result.output, "--repeat")
