"""Batches against signals and dying processes (DESIGN §7), through the real console script.

Each case starts ``python -m convkit apply`` over a folder in a child process, does
something unkind to it, and checks the exit code, the summary, that no temporary file and no
worker process is left, and that the inputs are byte-identical.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from convkit.imageio import encode_image

pytestmark = pytest.mark.slow

CONVKIT = [sys.executable, "-m", "convkit"]
IMAGES = 48


@pytest.fixture
def photos(tmp_path) -> Path:
    """48 small grey images: about 0.1 s each through the naive loop."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(IMAGES):
        image = rng.integers(0, 256, (128, 128), dtype=np.uint8)
        (folder / f"img{i:02d}.png").write_bytes(encode_image(image))
    return folder


def start_batch(photos: Path, out: Path, **popen) -> subprocess.Popen:
    command = [*CONVKIT, "apply", "-i", str(photos), "-k", "box:15", "-b", "naive"]
    command += ["-o", str(out), "--jobs", "2", "--no-compare"]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_for_workers(pid: int, count: int = 2, timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = children_of(pid)
        if len(workers) >= count:
            return workers
        time.sleep(0.05)
    raise AssertionError(f"the batch did not start {count} workers")


def wait_for_outputs(out: Path, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists() and len(list(out.glob("*.png"))) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} outputs in {timeout} s")


def assert_gone(pids: list[int], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.05)
    assert not alive, f"worker processes {alive} outlived the run"


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; its parent (init) reaps it


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                              (signal.SIGINT, 130)])  # fmt: skip
def test_a_stopping_signal_stops_the_workers_and_reports_how_far(photos, tmp_path, signum, code):
    before = snapshot(photos)
    out = tmp_path / "out"
    batch = start_batch(photos, out)
    workers = wait_for_workers(batch.pid)
    wait_for_outputs(out, 4)
    batch.send_signal(signum)
    stdout, stderr = batch.communicate(timeout=60)
    assert batch.returncode == code, stderr
    assert "interrupted: wrote" in stdout and "no partial files were left" in stdout
    assert_gone(workers)
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))
    written = len(list(out.glob("*.png")))
    assert 4 <= written < IMAGES
    assert f"wrote {written} of {IMAGES} images" in stdout
    assert snapshot(photos) == before


def test_workers_never_outlive_a_parent_killed_with_sigkill(photos, tmp_path):
    out = tmp_path / "out"
    batch = start_batch(photos, out)
    workers = wait_for_workers(batch.pid)
    wait_for_outputs(out, 2)
    batch.kill()
    batch.communicate(timeout=30)
    assert_gone(workers, within=4.0)
    time.sleep(0.5)  # anything a worker would still write
    assert not list(out.glob(".*.tmp"))


def test_a_killed_worker_fails_only_the_image_it_held(photos, tmp_path):
    before = snapshot(photos)
    out = tmp_path / "out"
    batch = start_batch(photos, out)
    victim = wait_for_workers(batch.pid)[0]
    wait_for_outputs(out, 4)
    os.kill(victim, signal.SIGKILL)  # as the out-of-memory killer would
    stdout, stderr = batch.communicate(timeout=120)
    assert batch.returncode == 1, stderr
    failures = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert len(failures) == 1 and "SIGKILL" in failures[0], stderr
    assert f"wrote {IMAGES - 1} of {IMAGES} images, 1 failed" in stdout
    assert len(list(out.glob("*.png"))) == IMAGES - 1
    assert not list(out.glob(".*"))  # its temporary file was swept
    assert snapshot(photos) == before


def test_sigint_ignored_by_the_shell_is_ignored_by_the_workers(photos, tmp_path):
    """`convkit apply ... &` in a script: SIGINT to the process group changes nothing."""
    out = tmp_path / "out"

    def ignore_sigint():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.setpgrp()

    batch = start_batch(photos, out, preexec_fn=ignore_sigint)
    wait_for_workers(batch.pid)
    wait_for_outputs(out, 2)
    os.killpg(batch.pid, signal.SIGINT)
    stdout, stderr = batch.communicate(timeout=120)
    assert batch.returncode == 0, stderr
    assert f"wrote {IMAGES} of {IMAGES} images" in stdout
    assert len(list(out.glob("*.png"))) == IMAGES
