"""Batches from the shell: every input form, workers, bad files, overwrite refusal, Ctrl-C."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from convkit import batch
from convkit.batch import expand_inputs
from convkit.cli import main
from convkit.errors import UsageError
from convkit.imageio import encode_image
from tests.conftest import ROOT


def run(*args, input=None):
    result = CliRunner().invoke(main, [str(a) for a in args], input=input)
    assert "Traceback" not in result.output
    return result


def _image(seed: int, shape=(24, 32, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape).astype(np.uint8)


@pytest.fixture
def folder(tmp_path):
    """in/ holds b.png, a.JPG-less mix: three images, a note, and sub/c.tif."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "b.png").write_bytes(encode_image(_image(1)))
    (root / "a.PNG").write_bytes(encode_image(_image(2)))
    (root / "d.bmp").write_bytes(encode_image(_image(3), ".bmp"))
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "c.tif").write_bytes(encode_image(_image(4), ".tif"))
    return root


def _decodable(path: Path) -> bool:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None


# --- expanding inputs -----------------------------------------------------------------------


def test_a_folder_gives_its_images_sorted_and_counts_the_rest(folder):
    inputs = expand_inputs([str(folder)])
    assert [i.path.name for i in inputs.images] == ["a.PNG", "b.png", "d.bmp"]
    assert [p.name for p in inputs.skipped] == ["notes.txt"]


def test_recursive_descends_and_keeps_relative_folders(folder):
    inputs = expand_inputs([str(folder)], recursive=True)
    assert [(str(i.subfolder), i.path.name) for i in inputs.images] == [
        (".", "a.PNG"), (".", "b.png"), (".", "d.bmp"), ("sub", "c.tif"),
    ]  # fmt: skip


def test_globs_repeats_and_stdin(folder):
    inputs = expand_inputs(
        [str(folder / "*.png"), str(folder / "b.png"), "-"], read_stdin=lambda: b"bytes"
    )
    assert [i.name for i in inputs.images] == [str(folder / "b.png"), "standard input"]
    assert inputs.images[1].data == b"bytes" and inputs.images[1].stem == "stdin"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["nope.png"], "image not found: nope.png"),
        (["nothing/*.png"], "no files match 'nothing/*.png'"),
        (["-", "-"], "can be given only once"),
    ],
)
def test_bad_inputs_are_usage_errors(tmp_path, monkeypatch, values, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=re.escape(message)):
        expand_inputs(values, read_stdin=lambda: b"")


def test_a_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(UsageError, match=r"no images in folder .* \(1 other files\)"):
        expand_inputs([str(tmp_path)])


# --- the command line -----------------------------------------------------------------------


def test_folder_batch_writes_every_image_and_a_summary(folder, tmp_path):
    out = tmp_path / "out"
    result = run("apply", "-i", folder, "-k", "sharpen", "--no-compare", "-o", out, "-j", "2")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "a_sharpen.png",
        "b_sharpen.png",
        "d_sharpen.png",
    ]
    assert "wrote 3 of 3 images, 1 other file skipped" in result.output
    assert all(_decodable(p) for p in out.iterdir())


def test_recursive_outputs_mirror_the_folders(folder, tmp_path):
    out = tmp_path / "out"
    result = run("apply", "-i", folder, "-r", "-k", "sharpen", "--no-compare", "-o", out)
    assert result.exit_code == 0, result.output
    assert (out / "sub" / "c_sharpen.png").is_file()
    assert (out / "a_sharpen.png").is_file()


def test_glob_and_repeated_images(folder, tmp_path):
    out = tmp_path / "out"
    result = run("apply", "-i", folder / "*.png", "-i", folder / "d.bmp", "-i", folder / "a.PNG",
                 "-k", "emboss", "--no-compare", "-o", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a_emboss.png", "b_emboss.png", "d_emboss.png"]


def test_stdin_to_stdout_is_a_pipeline(folder, tmp_path):
    data = (folder / "b.png").read_bytes()
    piped = run("apply", "-i", "-", "-k", "sharpen", "-b", "filter2d", "-o", "-", input=data)
    assert piped.exit_code == 0, piped.stderr
    filed = run("apply", "-i", folder / "b.png", "-k", "sharpen", "-b", "filter2d", "-o", tmp_path)
    assert piped.stdout_bytes == (tmp_path / "b_sharpen.png").read_bytes()
    assert "sharpen" in piped.stderr  # the table went to standard error
    assert filed.exit_code == 0


@pytest.mark.parametrize(
    "args", [["-k", "sharpen", "-k", "emboss"], ["-k", "sharpen", "-i", "extra"]]
)
def test_stdout_takes_one_image_and_one_kernel(folder, args):
    args = [a if a != "extra" else str(folder / "d.bmp") for a in args]
    result = run("apply", "-i", folder / "b.png", *args, "-o", "-")
    assert result.exit_code == 2
    assert "--out - writes one image" in result.output


@pytest.mark.parametrize("chunk", [1, 3])
def test_results_do_not_depend_on_the_number_of_workers(folder, tmp_path, monkeypatch, chunk):
    """Also when the workers take the images a few at a time (4 images in chunks of 3)."""
    monkeypatch.setattr(batch, "chunk_size", lambda image_count, jobs: chunk)
    rows = {}
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        report = tmp_path / f"r{jobs}.json"
        result = run("apply", "-i", folder, "-r", "-k", "sharpen", "-k", "sobel_y", "-b", "naive",
                     "-b", "filter2d", "-o", out, "-j", jobs, "--report", report)  # fmt: skip
        assert result.exit_code == 0, result.output
        rows[jobs] = json.loads(report.read_text())["rows"]
    key = ("image", "kernel", "backend", "max_abs_diff")
    assert [tuple(r[k] for k in key) for r in rows[1]] == [
        tuple(r[k] for k in key) for r in rows[2]
    ]
    assert len(rows[1]) == 4 * 2 * 2
    filtered = [p for p in (tmp_path / "out1").rglob("*.png") if "_compare" not in p.name]
    assert len(filtered) == 8
    for path in filtered:  # the comparison PNGs differ only in their timing labels
        other = tmp_path / "out2" / path.relative_to(tmp_path / "out1")
        assert path.read_bytes() == other.read_bytes()


def _bad_files(folder: Path) -> dict[str, str]:
    good = encode_image(_image(9, (60, 80, 3)))
    bad = {
        "zero.png": b"",
        "truncated.png": good[: len(good) // 2],
        "random.png": np.random.default_rng(5).integers(0, 256, 3000).astype(np.uint8).tobytes(),
        "text.jpg": b"just some text\n",
    }
    for name, content in bad.items():
        (folder / name).write_bytes(content)
    (folder / "huge.png").write_bytes(encode_image(np.zeros((200, 300), dtype=np.uint8)))
    return {
        "zero.png": "the file is empty",
        "truncated.png": "truncated PNG file (it ends before its IEND chunk)",
        "random.png": "not an image, or truncated",
        "text.jpg": "not an image, or truncated",
        "huge.png": "more than --max-pixels 10,000",
    }


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_batch_with_bad_files_writes_every_good_image_and_exits_1(folder, tmp_path, jobs):
    expected = _bad_files(folder)
    out = tmp_path / "out"
    result = run(
        "apply", "-i", folder, "-k", "sharpen", "-o", out, "-j", jobs, "--max-pixels", 10000
    )
    assert result.exit_code == 1
    assert sorted(p.name for p in out.glob("*_sharpen.png")) == [
        "a_sharpen.png",
        "b_sharpen.png",
        "d_sharpen.png",
    ]
    assert all(_decodable(p) for p in out.iterdir())
    assert "wrote 3 of 8 images, 5 failed" in result.output
    for name, reason in expected.items():
        lines = [line for line in result.output.splitlines() if str(folder / name) in line]
        assert len(lines) == 1 and reason in lines[0], (name, result.output)


def test_quiet_batch_prints_failures_only(folder, tmp_path):
    (folder / "zero.png").write_bytes(b"")
    result = run("apply", "-i", folder, "-k", "sharpen", "-o", tmp_path / "o", "-q")
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: cannot decode {folder / 'zero.png'}: the file is empty"


def test_refuses_to_overwrite_an_input_before_writing_anything(folder):
    (folder / "b_sharpen.png").write_bytes((folder / "b.png").read_bytes())
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    result = run("apply", "-i", folder, "-k", "sharpen", "-o", folder)
    assert result.exit_code == 2
    assert "refusing to overwrite the input" in result.output and "b_sharpen.png" in result.output
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before


def test_two_inputs_with_one_stem_get_distinct_outputs(folder, tmp_path):
    """a.jpg and a.png: the later one keeps its suffix in its outputs' names."""
    (folder / "b.jpg").write_bytes(encode_image(_image(7), ".jpg"))
    out = tmp_path / "out"
    result = run("apply", "-i", folder, "-k", "identity", "-o", out, "--no-compare")
    assert result.exit_code == 0, result.output
    for name, output in (("b.jpg", "b_identity.png"), ("b.png", "b.png_identity.png")):
        original = cv2.imdecode(np.frombuffer((folder / name).read_bytes(), np.uint8), -1)
        written = cv2.imdecode(np.frombuffer((out / output).read_bytes(), np.uint8), -1)
        np.testing.assert_array_equal(written, original)


def test_ctrl_c_stops_the_batch_and_leaves_no_partial_files(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    for i in range(40):
        (source / f"img{i:02d}.png").write_bytes(encode_image(_image(i, (160, 160))))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "convkit", "apply", "-i", str(source), "-k", "sharpen",
               "-b", "naive", "-b", "filter2d", "-o", str(out), "-j", "2"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(out.glob("*_compare.png")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted: wrote" in stdout
    leftovers = [p.name for p in out.iterdir() if p.suffix != ".png"]
    assert leftovers == []
    written = list(out.glob("*.png"))
    assert 0 < len(written) < 80
    assert all(_decodable(p) for p in written)


# --- start-up: the light commands do not import the heavy libraries -------------------------


@pytest.mark.parametrize(
    "args", [["--help"], ["kernels"], ["kernels", "sobel_x"], ["apply", "--help"]]
)
def test_light_commands_do_not_import_cv2_or_scipy(args):
    code = (
        "import sys\n"
        "from convkit.cli import main\n"
        f"try:\n    main({args!r}, prog_name='convkit')\n"
        "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "heavy = ('cv2', 'scipy', 'skimage', 'rich.progress')\n"
        "print('HEAVY', sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_workers_start_safely_after_opencv_has_run(folder, tmp_path):
    """A child forked after OpenCV started its threads can deadlock: then use a forkserver."""
    code = (
        "import sys, cv2, numpy as np\n"
        "cv2.filter2D(np.zeros((1000, 1000), np.float32), -1, np.ones((3, 3), np.float32))\n"
        "from pathlib import Path\n"
        "from convkit.batch import expand_inputs, run_batch\n"
        "from convkit.kernels import get_kernel\n"
        "from convkit.pipeline import ApplySettings\n"
        "images = expand_inputs([sys.argv[1]]).images\n"
        "out = Path(sys.argv[2])\n"
        "settings = ApplySettings(backends=('filter2d',), compare=False, out_dir=out)\n"
        "report = run_batch(images, [get_kernel('sharpen')], settings, jobs=2)\n"
        "print(report.written, len(report.failures))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "0"]


def test_a_batch_runs_auto_by_default(folder, tmp_path):
    report = tmp_path / "r.json"
    result = run("apply", "-i", folder, "-k", "sharpen", "--no-compare", "-o", tmp_path / "o",
                 "--report", report)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert {row["backend"] for row in json.loads(report.read_text())["rows"]} == {"auto"}
    assert "note: batch of 3 images: backend auto, naive left out" in result.output


def test_chunks_keep_every_worker_busy_and_the_bar_moving():
    assert batch.chunk_size(3, 2) == 1
    assert batch.chunk_size(200, 2) == 8  # the most: round trips are already cheap
    assert batch.chunk_size(64, 2) == 4  # 16 chunks, 8 per worker


def test_images_as_arguments_as_the_shell_expands_a_glob(folder, tmp_path):
    """`convkit apply in/*.png -k sharpen`: the shell hands convkit the file names."""
    out = tmp_path / "out"
    names = [folder / "b.png", folder / "a.PNG"]
    result = run("apply", *names, "-k", "sharpen", "-o", out, "--no-compare")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a_sharpen.png", "b_sharpen.png"]
    mixed = run("apply", folder / "b.png", "-i", folder / "d.bmp", "-k", "sharpen", "-o", out)
    assert mixed.exit_code == 0, mixed.output
    assert "wrote 2 of 2 images" in mixed.output


def test_no_image_is_a_usage_error():
    result = run("apply", "-k", "sharpen")
    assert result.exit_code == 2
    assert result.output == (
        "Error: no image given: name images, folders or globs (or - for standard input)\n"
    )


def test_skip_existing_resumes_an_interrupted_batch(folder, tmp_path):
    out = tmp_path / "out"
    first = run("apply", "-i", folder, "-r", "-k", "sharpen", "-o", out, "--no-compare")
    assert first.exit_code == 0, first.output
    (out / "b_sharpen.png").unlink()  # as if the batch had been stopped before b.png
    os.utime(folder / "d.bmp")  # d.bmp changed since its output was written
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    again = run("apply", "-i", folder, "-r", "-k", "sharpen", "-o", out, "--no-compare",
                "--skip-existing")  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "wrote 2 of 4 images, 2 up to date (skipped)" in again.output
    rewritten = {p for p, t in before.items() if p.stat().st_mtime_ns != t}
    assert rewritten == {out / "d_sharpen.png"}
    assert (out / "b_sharpen.png").exists()
    done = run("apply", "-i", folder, "-r", "-k", "sharpen", "-o", out, "--no-compare",
               "--skip-existing")  # fmt: skip
    assert done.exit_code == 0
    assert "all 4 images up to date (--skip-existing)" in done.output


_FAULTS_IN_A_THREAD = """
import sys, threading
from tests.cluster_support import page_faults_of_freed_buffers
if sys.argv[1] == "worker":
    from convkit.batch import _init_worker
    from convkit.pipeline import ApplySettings
    _init_worker((), ApplySettings(), 1, [])
faults = []
thread = threading.Thread(target=lambda: faults.append(page_faults_of_freed_buffers(20)))
thread.start()
thread.join()
print(faults[0])
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_jobs_workers_keep_freed_image_buffers():
    """A --jobs worker reuses a freed image-sized buffer; a plain process maps it afresh
    (hundreds of page faults for 20 rounds of a 6 MB buffer) in a thread of its own."""

    def faults(role: str) -> int:
        done = subprocess.run([sys.executable, "-c", _FAULTS_IN_A_THREAD, role], cwd=ROOT,
                              capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
        return int(done.stdout)

    assert faults("plain") > 200
    assert faults("worker") <= 20
