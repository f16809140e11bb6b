"""Batches on a dask cluster (issue 11, items 3-4): a real ``dask scheduler`` and ``dask
worker`` processes on 127.0.0.1, a worker killed mid-batch, ``local:N`` clusters, bad and
unreachable addresses, failing images, Ctrl-C and SIGTERM.

Every output is compared byte for byte with a ``convkit apply ... --jobs 2`` run of the same
inputs, the report rows (timings aside) in input order; no temporary file and no process may
be left. The tests that drive ``convkit apply --scheduler`` need the option wired into cli.py
and batch.py; the others call `convkit.cluster` directly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from convkit.batch import Failure, Task, expand_inputs
from convkit.cluster import (
    Scheduler,
    open_client,
    parse_scheduler,
    run_on_cluster,
    run_task,
    sweep_temporaries,
)
from convkit.errors import UsageError
from convkit.imageio import encode_image, temporary_prefix
from convkit.kernels import Kernel, get_kernel
from convkit.padding import make_padding
from convkit.pipeline import ApplySettings, ImageReport, plan_outputs
from tests.cluster_support import (
    ROOT,
    DaskCluster,
    DeadlyImage,
    assert_gone,
    descendants,
    free_port,
    page_faults_of_freed_buffers,
    python_env,
)

IMAGES = 20
KERNEL = "box:15"
# The naive loop: about 0.1 s an image, so that a worker is killed while it holds one.
OPTIONS = ["-k", KERNEL, "-b", "naive", "--no-compare"]
TIMING_KEYS = ("median_ms", "min_ms")


# --- Fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(11)
    for i in range(IMAGES):
        image = rng.integers(0, 256, (96, 128), dtype=np.uint8)
        (folder / f"img{i:02d}.png").write_bytes(encode_image(image))
    return folder


@pytest.fixture(scope="module")
def reference(photos, tmp_path_factory) -> tuple[Path, list[dict]]:
    """The ``--jobs 2`` run every cluster run must match: its outputs and report rows."""
    root = tmp_path_factory.mktemp("jobs")
    done = convkit("apply", "-i", photos, *OPTIONS, "-o", root / "out", "--jobs", "2",
                   "--report", root / "rows.json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return root / "out", json.loads((root / "rows.json").read_text())["rows"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and two workers shared by the tests that do not kill one."""
    with DaskCluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running
    assert_gone([p.pid for p in running.processes])


def convkit(*args, **popen) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "convkit", *map(str, args)]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=python_env(), timeout=120,
        **popen,
    )  # fmt: skip


def settings_for(out: Path) -> ApplySettings:
    """What ``OPTIONS -o out`` asks for."""
    return ApplySettings(backends=("naive",), compare=False, out_dir=out)


def plan(images: Path, out: Path) -> tuple[list[Task], list, ApplySettings]:
    settings = settings_for(out)
    inputs = expand_inputs([str(images)])
    kernels = [get_kernel(KERNEL)]
    outputs = plan_outputs(inputs.images, kernels, settings)[1]
    tasks = [Task(i, tuple(o)) for i, o in zip(inputs.images, outputs, strict=True)]
    return tasks, kernels, settings


def run(tasks, kernels, settings, scheduler, on_result=None, **options) -> dict[int, object]:
    outcomes: dict[int, object] = {}

    def collect(index, outcome):
        assert index not in outcomes, f"task {index} reported twice"
        outcomes[index] = outcome
        if on_result is not None:
            on_result(index, outcome)

    run_on_cluster(tasks, kernels, settings, scheduler, collect, **options)
    return outcomes


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def comparable(rows: list[dict]) -> list[dict]:
    """Rows without their measured times, outputs by file name."""
    return [
        {k: (Path(v).name if k == "output" and v else v) for k, v in row.items()
         if k not in TIMING_KEYS}
        for row in rows
    ]  # fmt: skip


def rows_of(outcomes: dict[int, object]) -> list[dict]:
    reports = [outcomes[i] for i in sorted(outcomes)]
    assert all(isinstance(r, ImageReport) for r in reports), reports
    return [row.as_dict() for report in reports for row in report.rows]


def assert_matches(reference, out: Path, rows: list[dict]) -> None:
    expected_out, expected_rows = reference
    assert files(out) == files(expected_out)  # byte for byte, and no temporary file
    assert comparable(rows) == comparable(expected_rows)


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp")) if folder.exists() else []


# --- parse_scheduler ----------------------------------------------------------------------


def test_scheduler_addresses_and_local_clusters():
    assert parse_scheduler("tcp://127.0.0.1:8786") == Scheduler("tcp://127.0.0.1:8786")
    assert parse_scheduler("tcp://node-1.example.org:9000").address == (
        "tcp://node-1.example.org:9000"
    )
    assert parse_scheduler("tcp://[::1]:8786").address == "tcp://[::1]:8786"
    assert parse_scheduler("local:3") == Scheduler(None, 3)
    assert parse_scheduler("local") == Scheduler(None, os.cpu_count())
    assert str(parse_scheduler("local:2")) == "local:2"


@pytest.mark.parametrize(
    "text",
    ["", "remote", "local:0", "local:-1", "local:two", "local:99999", "8786",
     "127.0.0.1:8786", "http://127.0.0.1:8786", "tcp://127.0.0.1", "tcp://:8786",
     "tcp://127.0.0.1:0", "tcp://127.0.0.1:70000", "tcp://127.0.0.1:8786/path"],
)  # fmt: skip
def test_a_bad_scheduler_is_a_usage_error_naming_the_option(text):
    with pytest.raises(UsageError, match="--scheduler"):
        parse_scheduler(text)


# --- Unit: temporaries and the worker's function --------------------------------------------


def test_the_sweep_removes_only_temporaries_of_planned_outputs(photos, tmp_path):
    out = tmp_path / "out"
    tasks, _, _ = plan(photos, out)
    out.mkdir()
    planned = tasks[3].outputs[0][0]
    leftover = out / f"{temporary_prefix(planned.name)}0123abcd.tmp"
    someone_elses = out / f"{temporary_prefix('other.png')}0123abcd.tmp"
    not_a_temporary = out / f"{temporary_prefix(planned.name)}keep.tmp"
    for path in (leftover, someone_elses, not_a_temporary, planned):
        path.write_bytes(b"x")
    assert sweep_temporaries(tasks) == 1
    assert not leftover.exists()
    assert someone_elses.exists() and not_a_temporary.exists() and planned.exists()
    assert sweep_temporaries([Task(tasks[0].image, ((tmp_path / "none" / "a.png", None),))]) == 0


def test_a_worker_with_other_versions_runs_nothing(photos, tmp_path):
    from convkit.cluster import Job

    tasks, kernels, settings = plan(photos, tmp_path / "out")
    job = Job(tuple(kernels), settings, 1, ("0.0.1", "1.0.0"), None)
    outcome = run_task(tasks[0], job)
    assert isinstance(outcome, Failure)
    assert "convkit 0.0.1" in outcome.reason and "same versions" in outcome.reason
    assert not (tmp_path / "out").exists()


def test_an_empty_batch_starts_nothing():
    run_on_cluster([], [], ApplySettings(), "tcp://127.0.0.1:1", lambda i, o: None)


# --- Addresses where nothing answers --------------------------------------------------------


def test_an_unreachable_address_fails_fast_with_one_line(photos, tmp_path):
    tasks, kernels, settings = plan(photos, tmp_path / "out")
    address = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(UsageError) as error:
        run(tasks, kernels, settings, address, connect_timeout=2)
    assert time.monotonic() - started < 10
    message = str(error.value)
    assert address in message and "no dask scheduler answered" in message
    assert "\n" not in message
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_scheduler_without_workers_is_refused(tmp_path):
    with DaskCluster(tmp_path / "empty", workers=0) as empty:
        started = time.monotonic()
        with (
            pytest.raises(UsageError, match="has no worker"),
            open_client(empty.address, workers_timeout=1),
        ):
            pass
        assert time.monotonic() - started < 10
    assert_gone([p.pid for p in empty.processes])


# --- A real cluster -----------------------------------------------------------------------


@pytest.mark.slow
def test_a_killed_worker_loses_nothing(photos, reference, tmp_path):
    """SIGKILL one of two workers mid-batch: its task runs again on the other; every output
    byte-identical to the --jobs run, rows in input order, no temporary file left (one that
    a dead worker left is planted beforehand), no process left."""
    out = tmp_path / "out"
    tasks, kernels, settings = plan(photos, out)
    out.mkdir()
    planted = out / f"{temporary_prefix(tasks[-1].outputs[0][0].name)}deadbeef.tmp"
    planted.write_bytes(b"half an image")
    with DaskCluster(tmp_path / "cluster") as running:
        victim = running.workers[0]

        finished = []

        def kill_after_three(index, outcome):
            finished.append(index)
            if len(finished) == 3:
                victim.send_signal(signal.SIGKILL)  # it is running an image: 0.1 s each

        outcomes = run(tasks, kernels, settings, running.address, kill_after_three)
        assert victim.wait(10) == -signal.SIGKILL
        assert running.workers[1].poll() is None
    assert_gone([p.pid for p in running.processes])
    assert sorted(outcomes) == list(range(IMAGES))
    assert_matches(reference, out, rows_of(outcomes))
    assert not temporaries(out)


@pytest.mark.slow
def test_images_that_fail_on_the_workers_are_reported_and_the_rest_written(
    photos, reference, cluster, tmp_path
):
    images = tmp_path / "in"
    images.mkdir()
    for photo in sorted(photos.iterdir())[:4]:
        (images / photo.name).write_bytes(photo.read_bytes())
    (images / "img01.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    tasks, kernels, settings = plan(images, out)
    gone = images / "img03.png"
    gone.unlink()  # planned, then gone: a worker that does not see the input
    outcomes = run(tasks, kernels, settings, cluster.address)
    bad, missing = outcomes[1], outcomes[3]
    assert isinstance(bad, Failure) and "img01.png" in bad.image
    assert "dask worker tcp://127.0.0.1:" in bad.reason
    assert isinstance(missing, Failure) and str(gone) in missing.reason
    assert "not found on dask worker tcp://127.0.0.1:" in missing.reason
    assert "shared filesystem" in missing.reason
    written = files(out)
    assert sorted(written) == ["img00_box-15.png", "img02_box-15.png"]
    assert all(data == files(reference[0])[name] for name, data in written.items())


@pytest.mark.slow
def test_relative_paths_reach_workers_that_run_elsewhere(
    photos, reference, cluster, tmp_path, monkeypatch
):
    """The workers run in another folder (the checkout): relative inputs and outputs reach
    them as absolute paths, and the rows name the outputs as planned, as --jobs does."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").symlink_to(photos)
    tasks, kernels, settings = plan(Path("in"), Path("out"))
    outcomes = run(tasks, kernels, settings, cluster.address)
    rows = rows_of(outcomes)
    assert all(row["output"].startswith("out/") for row in rows)
    assert files(tmp_path / "out") == files(reference[0])
    assert not (ROOT / "out").exists()


@pytest.mark.slow
def test_an_output_a_worker_cannot_write_names_the_path_and_the_worker(photos, cluster, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    tasks, kernels, settings = plan(photos, blocker / "out")  # a folder inside a file
    outcomes = run(tasks[:2], kernels, settings, cluster.address)
    for outcome in outcomes.values():
        assert isinstance(outcome, Failure)
        assert str(blocker / "out") in outcome.reason
        assert "dask worker tcp://127.0.0.1:" in outcome.reason


@pytest.mark.slow
def test_a_local_cluster_matches_jobs_and_leaves_no_process(photos, reference, tmp_path):
    out = tmp_path / "out"
    tasks, kernels, settings = plan(photos, out)
    before = descendants(os.getpid())
    outcomes = run(tasks, kernels, settings, "local:2")
    assert_matches(reference, out, rows_of(outcomes))
    assert_gone(descendants(os.getpid()) - before)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_local_clusters_workers_keep_freed_image_buffers():
    # A dask worker's task thread would otherwise map and fault in every image's arrays
    # afresh: 3x the page faults of a --jobs worker, a quarter more CPU time per image.
    rounds, size = 20, 512 * 512 * 3 * 8
    with open_client("local:1") as client:
        faults = client.submit(page_faults_of_freed_buffers, rounds, size, pure=False).result()
    assert faults <= rounds  # a buffer's 1536 pages a round mapped afresh, 500 in all, if not


@pytest.mark.slow
def test_an_interrupt_stops_a_local_cluster_and_sweeps(photos, reference, tmp_path):
    out = tmp_path / "out"
    tasks, kernels, settings = plan(photos, out)
    before = descendants(os.getpid())
    seen = []

    def interrupt(index, outcome):
        seen.append(index)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tasks, kernels, settings, "local:2", interrupt)
    assert_gone(descendants(os.getpid()) - before)
    assert not temporaries(out)
    written = files(out)
    assert 2 <= len(written) < IMAGES
    expected = files(reference[0])
    assert all(data == expected[name] for name, data in written.items())  # whole files


@pytest.mark.slow
def test_an_image_that_kills_its_workers_fails_alone(photos, reference, tmp_path):
    """A chunk whose worker dies every time is split: only the image that kills the workers
    fails (after dask's allowed failures), as with --jobs; the others are written."""
    count = 40  # enough that a worker is handed chunks of two images
    out = tmp_path / "out"
    tasks, kernels, _ = plan(photos, out)
    settings = ApplySettings(backends=("numpy",), compare=False, out_dir=out)
    tasks = [tasks[i % IMAGES] for i in range(count)]
    tasks = [t._replace(outputs=((out / f"{i:02d}.png", None),)) for i, t in enumerate(tasks)]
    deadly = 7
    image = tasks[deadly].image
    tasks[deadly] = tasks[deadly]._replace(image=DeadlyImage(*image))
    before = descendants(os.getpid())
    outcomes = run(tasks, kernels, settings, "local:2")
    assert_gone(descendants(os.getpid()) - before)
    failed = [i for i, o in outcomes.items() if isinstance(o, Failure)]
    assert failed == [deadly], {i: outcomes[i] for i in failed}
    assert "died" in outcomes[deadly].reason and "out of memory?" in outcomes[deadly].reason
    assert len(files(out)) == count - 1
    assert not temporaries(out)


# --- The command line (needs --scheduler wired into cli.py and batch.py) --------------------


@pytest.mark.slow
def test_cli_on_a_running_cluster_matches_jobs(photos, reference, cluster, tmp_path):
    done = convkit("apply", "-i", photos, *OPTIONS, "-o", tmp_path / "out",
                   "--scheduler", cluster.address, "--report", tmp_path / "rows.json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert_matches(reference, tmp_path / "out", rows)
    assert f"wrote {IMAGES} of {IMAGES} images" in done.stdout


@pytest.mark.slow
def test_cli_on_a_local_cluster_matches_jobs(photos, reference, tmp_path):
    done = convkit("apply", "-i", photos, *OPTIONS, "-o", tmp_path / "out",
                   "--scheduler", "local:2", "--report", tmp_path / "rows.json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert_matches(reference, tmp_path / "out", rows)


@pytest.mark.slow
def test_cli_a_failing_image_exits_1_and_the_rest_are_written(photos, cluster, tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    for photo in sorted(photos.iterdir())[:3]:
        (images / photo.name).write_bytes(photo.read_bytes())
    (images / "broken.png").write_bytes(b"not an image at all")
    done = convkit("apply", "-i", images, *OPTIONS, "-o", tmp_path / "out",
                   "--scheduler", cluster.address)  # fmt: skip
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "broken.png" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 3


@pytest.mark.parametrize("address", ["tcp://nowhere", "local:0", "ftp://127.0.0.1:21"])
def test_cli_a_bad_address_is_a_usage_error(photos, tmp_path, address):
    done = convkit("apply", "-i", photos, *OPTIONS, "-o", tmp_path / "out", "--scheduler", address)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Error: ") and "--scheduler" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_an_unreachable_scheduler_exits_2_within_seconds(photos, tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = convkit("apply", "-i", photos, *OPTIONS, "-o", tmp_path / "out", "--scheduler", address)
    assert time.monotonic() - started < 20
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and address in lines[0] and "no dask scheduler answered" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_cli_a_stopping_signal_shuts_a_local_cluster_down(photos, tmp_path, signum, code):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "convkit", "apply", "-i", str(photos), *OPTIONS,
               "-o", str(out), "--scheduler", "local:2"]  # fmt: skip
    batch = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env=python_env(), start_new_session=True,
    )  # fmt: skip
    try:
        helpers = _wait_for_outputs_and_helpers(batch, out, outputs=2, helpers=2)
        # Ctrl-C reaches the whole process group; SIGTERM the one process it is sent to.
        if signum == signal.SIGINT:
            os.killpg(batch.pid, signum)
        else:
            batch.send_signal(signum)
        stdout, stderr = batch.communicate(timeout=60)
    finally:
        if batch.poll() is None:
            os.killpg(batch.pid, signal.SIGKILL)
            batch.wait()
    assert batch.returncode == code, stderr
    assert "interrupted" in stdout and "Traceback" not in stderr, stderr
    assert_gone(helpers)
    assert not temporaries(out)
    assert len(list(out.glob("*.png"))) < IMAGES


def _wait_for_outputs_and_helpers(batch, out: Path, outputs: int, helpers: int) -> set[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert batch.poll() is None, batch.communicate()
        found = descendants(batch.pid)
        if len(found) >= helpers and out.exists() and len(list(out.glob("*.png"))) >= outputs:
            return found
        time.sleep(0.02)
    raise AssertionError("the batch did not start its workers and write")


# --- A tiled image's bands on the cluster ---------------------------------------------------

# Asymmetric, even-sized, off-centre: halos differ on every side and cross band borders.
ODD_KERNEL = Kernel("odd", np.arange(35, dtype=float).reshape(7, 5) % 5 - 2, anchor=(1, 3))


@pytest.fixture
def small_bands(monkeypatch):
    """Bands of one 256-row tile row and chunks of 256 columns (the plan is made here and
    sent to the workers): a 700 x 900 image is cut into 3 bands of 4 chunks."""
    from convkit import tiled

    monkeypatch.setattr(tiled, "BAND_ROWS", (256,))
    monkeypatch.setattr(tiled, "CHUNK_COLUMNS", (256,))


def big_tiff(folder: Path, channels: int = 1) -> Path:
    """A TIFF beyond the tests' --max-pixels (tiled 32 x 48, alpha as an extra sample)."""
    import tifffile

    rng = np.random.default_rng(700)
    shape = (700, 900) + ((channels,) if channels > 1 else ())
    options = {"photometric": "rgb"} if channels >= 3 else {}
    if channels in (2, 4):
        options["extrasamples"] = ["unassalpha"]
    path = folder / f"big{channels}.tif"
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, rng.integers(0, 256, shape, np.uint8), tile=(32, 48), metadata=None,
                     **options)  # fmt: skip
    return path


def tiled_tasks(source: Path, kernels, settings: ApplySettings) -> list[Task]:
    inputs = expand_inputs([str(source)])
    outputs = plan_outputs(inputs.images, kernels, settings)[1]
    return [Task(i, tuple(o)) for i, o in zip(inputs.images, outputs, strict=True)]


def band_keys(stream) -> list[str]:
    return [str(t["key"]) for t in stream.data if str(t["key"]).startswith("convkit-band-")]


@pytest.mark.slow
@pytest.mark.parametrize("channels", [1, 4])
def test_a_tiled_images_bands_run_on_the_cluster_as_in_a_local_run(
    cluster, tmp_path, small_bands, channels
):
    """A TIFF beyond --max-pixels runs in tiles whose bands are tasks on the workers (two
    passes a kernel under minmax); the outputs equal a local tiled run's byte for byte, the
    rows theirs."""
    from distributed import Client, get_task_stream

    from convkit.tiled import apply_tiled

    source = big_tiff(tmp_path / "in", channels)
    kernels = [get_kernel("sharpen"), ODD_KERNEL]
    settings = ApplySettings(backends=("filter2d",), compare=False, max_pixels=10_000,
                             rescale="minmax", padding=make_padding("wrap"))  # fmt: skip
    local = settings._replace(out_dir=tmp_path / "local")
    expected = apply_tiled(source, kernels, local, tiled_tasks(source, kernels, local)[0].outputs)
    remote = settings._replace(out_dir=tmp_path / "remote")
    tasks = tiled_tasks(source, kernels, remote)
    with (
        Client(cluster.address, set_as_default=False) as watcher,
        get_task_stream(client=watcher) as stream,
    ):
        outcomes = run(tasks, kernels, remote, cluster.address)
    assert len(band_keys(stream)) == 3 * 2 * len(kernels)  # 3 bands, 2 passes, 2 kernels
    assert files(tmp_path / "remote") == files(tmp_path / "local")
    assert len(files(tmp_path / "local")) == len(kernels)
    rows = [row.as_dict() for row in expected.rows]
    assert comparable(rows_of(outcomes)) == comparable(rows)


@pytest.mark.slow
def test_a_tiled_image_survives_a_killed_worker(tmp_path, small_bands, monkeypatch):
    """SIGKILL one of two workers once the first band is back: the bands it held run again
    on the other; the output equals a local run's, no temporary is left."""
    from convkit import cluster as cluster_module
    from convkit.tiled import apply_tiled

    source = big_tiff(tmp_path / "in")
    kernels = [ODD_KERNEL]
    # the naive loop: about a second a band, so that the victim holds one when it dies
    settings = ApplySettings(backends=("naive",), compare=False, max_pixels=10_000)
    local = settings._replace(out_dir=tmp_path / "local")
    apply_tiled(source, kernels, local, tiled_tasks(source, kernels, local)[0].outputs)
    remote = settings._replace(out_dir=tmp_path / "remote")
    tasks = tiled_tasks(source, kernels, remote)
    with DaskCluster(tmp_path / "cluster") as running:
        victim = running.workers[0]
        result = cluster_module._BandFuture.result

        def kill_after_the_first(self):
            band = result(self)
            if victim.poll() is None:
                victim.send_signal(signal.SIGKILL)
            return band

        monkeypatch.setattr(cluster_module._BandFuture, "result", kill_after_the_first)
        outcomes = run(tasks, kernels, remote, running.address)
        assert victim.wait(10) == -signal.SIGKILL
    assert_gone([p.pid for p in running.processes])
    assert isinstance(outcomes[0], ImageReport)
    assert files(tmp_path / "remote") == files(tmp_path / "local")
    assert not temporaries(tmp_path / "remote")


def test_a_band_whose_input_a_worker_cannot_see_names_the_path(tmp_path):
    from convkit import tiled
    from convkit.cluster import BandJob, _versions, run_band
    from convkit.errors import ImageReadError

    source = big_tiff(tmp_path)
    image = tiled.open_tiled(source)
    settings = ApplySettings(backends=("filter2d",), out_dir=tmp_path / "out")
    plan_ = tiled.plan_tiles(image.shape, 1, 1, [ODD_KERNEL], "filter2d", None)
    work = tiled._Pass(None, ODD_KERNEL, settings, "filter2d", plan_, image.shape, None, None)
    gone = image._replace(path=tmp_path / "elsewhere" / "big1.tif")
    with pytest.raises(ImageReadError) as error:
        run_band(tiled.filter_band, BandJob(work, gone, _versions(), None), 0)
    message = str(error.value)
    assert str(gone.path) in message and "not found on dask worker" in message
    assert "shared filesystem" in message
    band = run_band(tiled.filter_band, BandJob(work, image, _versions(), None), 0)
    assert band.rows[0].shape[1:] == (min(256, image.shape[0]), tiled.TILE)


@pytest.mark.slow
def test_cli_a_tiled_image_on_a_local_cluster_matches_the_local_run(tmp_path):
    """``convkit apply big.tif --scheduler local:2``: the output TIFF byte-identical to the
    run without a cluster, the comparison written, no process left."""
    source = big_tiff(tmp_path / "in", 4)
    options = ["-k", "sharpen", "--max-pixels", "10000"]
    alone = convkit("apply", source, *options, "-o", tmp_path / "alone")
    assert alone.returncode == 0, alone.stderr
    before = descendants(os.getpid())
    spread = convkit("apply", source, *options, "-o", tmp_path / "spread", "--scheduler",
                     "local:2")  # fmt: skip
    assert spread.returncode == 0, spread.stderr
    assert_gone(descendants(os.getpid()) - before)
    assert (
        files(tmp_path / "spread")["big4_sharpen.tif"]
        == (files(tmp_path / "alone")["big4_sharpen.tif"])
    )
    assert "big4_sharpen_compare.png" in files(tmp_path / "spread")
