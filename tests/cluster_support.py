"""A real dask cluster on 127.0.0.1 for tests/test_cluster.py, and what its tests check.

`DaskCluster` starts ``dask scheduler`` (``python -m distributed.cli.dask_scheduler``) on a
free port, read back from its ``--scheduler-file``, and ``dask worker`` processes (one thread,
no nanny: a killed worker stays dead) attached to it; on exit every process is terminated,
killed if it lingers, and reaped. Their logs go to files, never to a pipe that could fill.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from convkit.imageio import ImageSource

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 40.0  # s: a loaded machine imports distributed slowly
STOP_TIMEOUT = 10.0


def python_env() -> dict[str, str]:
    """The environment of every child: this checkout first on the path, dask's logs short."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"] = "False"
    return env


class DaskCluster:
    """``with DaskCluster(folder, workers=2) as cluster:`` a scheduler and its workers.

    Attributes
    ----------
    address
        The scheduler's ``tcp://127.0.0.1:PORT``.
    workers
        The worker processes (`subprocess.Popen`), in start order.
    """

    def __init__(self, folder: Path, workers: int = 2) -> None:
        self.folder = folder
        self.count = workers
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.address = ""

    @property
    def processes(self) -> list[subprocess.Popen]:
        return [p for p in [self.scheduler, *self.workers] if p is not None]

    def __enter__(self) -> DaskCluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        scheduler_file = self.folder / "scheduler.json"
        self.scheduler = self._spawn(
            "dask_scheduler", "scheduler",
            ["--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file),
             "--idle-timeout", "300"],
        )  # fmt: skip
        self.address = _read_address(scheduler_file, self.scheduler)
        for number in range(self.count):
            self.add_worker(f"worker{number}")
        if self.count:
            wait_for_workers(self.address, self.count)

    def add_worker(self, name: str) -> subprocess.Popen:
        worker = self._spawn(
            "dask_worker", name,
            [self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host",
             "127.0.0.1", "--memory-limit", "0", "--death-timeout", "30", "--name", name],
        )  # fmt: skip
        self.workers.append(worker)
        return worker

    def _spawn(self, module: str, log: str, arguments: list[str]) -> subprocess.Popen:
        with open(self.folder / f"{log}.log", "wb") as stream:
            return subprocess.Popen(
                [sys.executable, "-m", f"distributed.cli.{module}", *arguments],
                stdin=subprocess.DEVNULL, stdout=stream, stderr=subprocess.STDOUT,
                cwd=ROOT, env=python_env(),
            )  # fmt: skip

    def stop(self) -> None:
        """Terminate the workers, then the scheduler (a worker told to stop while its
        scheduler goes away can hang in its own shutdown); kill what lingers; reap all."""
        _stop([p for p in self.workers if p is not None])
        _stop([self.scheduler] if self.scheduler is not None else [])

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _read_address(scheduler_file: Path, scheduler: subprocess.Popen) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if scheduler.poll() is not None:
            raise AssertionError(f"dask scheduler exited with code {scheduler.returncode}")
        try:
            return json.loads(scheduler_file.read_text())["address"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    raise AssertionError(f"dask scheduler wrote no {scheduler_file} in {START_TIMEOUT} s")


def wait_for_workers(address: str, count: int) -> None:
    from distributed import Client

    with Client(address, timeout=START_TIMEOUT, set_as_default=False) as client:
        client.wait_for_workers(count, timeout=START_TIMEOUT)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- Processes ----------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """True while the process exists and has not exited (a zombie has)."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (Linux /proc), but multiprocessing's resource
    tracker: a helper that spawn starts once and that ends with its parent."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, ValueError, IndexError):
                continue
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {p for p in found if alive(p) and not _is_resource_tracker(p)}


def _is_resource_tracker(pid: int) -> bool:
    try:
        command = (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False
    return b"resource_tracker" in command


def assert_gone(pids: set[int] | list[int], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    left = set(pids)
    while left and time.monotonic() < deadline:
        left = {p for p in left if alive(p)}
        time.sleep(0.05)
    assert not left, f"processes {sorted(left)} outlived the run"


# --- An image whose worker dies -----------------------------------------------------------


class DeadlyImage(ImageSource):
    """An image whose reading kills the process that reads it, as the out-of-memory killer
    would (pickled by reference: the workers import this module)."""

    def read_with_info(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)


def page_faults_of_freed_buffers(rounds: int = 20, size: int = 512 * 512 * 3 * 8) -> int:
    """Minor page faults of this thread while it allocates, fills and frees an image-sized
    float64 buffer (a 512x512 colour response) ``rounds`` times: hundreds when malloc
    hands freed buffers back to the system, a few when it keeps them. Run on a dask worker,
    in the thread that runs its tasks."""
    import resource

    import numpy as np

    np.ones(size // 8).sum()  # the first buffer is faulted in anyway
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(rounds):
        np.ones(size // 8).sum()
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
