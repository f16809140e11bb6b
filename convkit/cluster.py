"""Batches on a dask.distributed cluster: ``convkit apply ... --scheduler ADDRESS|local[:N]``.

Each image of a batch (a `convkit.batch.Task`: the image and its planned outputs) runs as one
dask task, `convkit.batch.process_image` on a worker, and its outcome (`ImageReport` or
`Failure`) comes back to ``on_result(index, outcome)`` as it finishes, as with the local
process pool (`convkit.pool`).

- **Files reach the workers as paths.** The workers read the inputs and write the outputs at
  the paths this machine planned: every worker must see the same files at the same paths (a
  shared filesystem: NFS, SMB, a cluster's parallel filesystem; on one machine, trivially).
  An image a worker cannot read, or an output it cannot write, fails that image with a
  message that names the path and the worker. Only an image read from standard input travels
  as bytes through the scheduler.
- **A tiled image's bands are tasks too.** An image that runs in tiles (a TIFF or Zarr
  beyond ``--max-memory`` or ``--max-pixels``, `convkit.tiled`) is not one task: this
  process plans it (its header), sends each band as a task (`ClusterBands`, `run_band`:
  the worker reads the band's rows and halo from the input at its path, filters them and
  returns the band's tiles) and writes the output TIFF and the comparison itself, at the
  planned paths. So the workers need to see the input (a shared filesystem, as for any
  image), and only this machine writes a tiled image's outputs; the bands' pixels travel
  through dask (about the output's size). As many bands at a time as the cluster has
  threads; a band whose worker dies runs again elsewhere (it writes nothing).
- **The kernels and settings are sent once**, pickled into a task of their own that every
  image's task depends on: a worker runs it or fetches its result from another, and the
  scheduler can run it again if every worker that held it has died (scattered data would be
  lost for good). Images go in chunks of up to `convkit.batch.MAX_CHUNK` per task (at least
  8 chunks per worker thread), as the local pool hands them out: dask's overhead is a few
  milliseconds a task. Each task checks that its worker runs the same
  convkit and OpenCV as this machine (outputs would differ otherwise) and fails the image
  with both versions named if not.
- **A worker that dies loses nothing**: the scheduler runs its task again on another worker
  (dask's ``distributed.scheduler.allowed-failures``, 3 by default: a task that has killed
  4 workers fails with `KilledWorker`, then reported like a `convkit.pool.Lost` task). The
  pipeline is deterministic, so a task run twice writes the same bytes, each file by an
  atomic rename: no file is ever half-written or mixed (a comparison PNG's time labels are
  measured, so they may differ, as between any two runs). The temporary files of a worker
  killed while writing are swept when the batch ends (`sweep_temporaries`).
- **Ctrl-C, SIGTERM, SIGHUP** (`KeyboardInterrupt`) cancel the futures, close the client,
  shut a local cluster down (its worker processes are stopped and reaped), sweep the
  temporary files and re-raise. Tasks already running on a remote worker cannot be stopped
  by dask: they finish and rename their files into place, whole.
- **Never hang**: an address where no scheduler answers within `CONNECT_TIMEOUT` seconds, or
  a scheduler without a worker for `WORKERS_TIMEOUT` seconds, is a `UsageError` (exit 2:
  nothing was written); a cluster left without any worker for `NO_WORKER_TIMEOUT` seconds
  mid-batch fails the images not yet run, and a lost scheduler fails those it had not
  finished (exit 1).

dask and distributed are imported inside the functions that need them: importing this module
costs nothing more than the standard library.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pickle
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from convkit.batch import Failure, Task, chunk_size, process_image
from convkit.errors import ConvkitError, UsageError
from convkit.imageio import temporary_prefix
from convkit.resources import keep_freed_buffers

if TYPE_CHECKING:
    from distributed import Client, Future, LocalCluster

    from convkit.kernels import Kernel
    from convkit.pipeline import ApplySettings, ImageReport

    Outcome = ImageReport | Failure

LOCAL = "local"
MAX_LOCAL_WORKERS = 1024  # local:N above this is a typo
CONNECT_TIMEOUT = 5.0  # s: an address where no scheduler answers
WORKERS_TIMEOUT = 10.0  # s: a scheduler without workers when the batch starts
NO_WORKER_TIMEOUT = 60.0  # s: a cluster left without workers mid-batch
CLOSE_TIMEOUT = 5.0  # s: closing the client, shutting a local cluster down
CHECK_INTERVAL = 2.0  # s: how often a waiting batch checks that the cluster still has workers
POLL = 0.1  # s: the longest a finished task waits to be noticed in a race

_SCHEDULER_HELP = "--scheduler takes tcp://HOST:PORT (a running dask scheduler), local or local:N"
# write_atomic's temporary files: ``.NAME.`` + 8 hex digits + ``.tmp``.
_TEMPORARY = re.compile(r"(?P<prefix>\..*\.)[0-9a-f]{8}\.tmp", re.DOTALL)


class Scheduler(NamedTuple):
    """Where a batch runs: a running dask scheduler, or a local cluster to start.

    Attributes
    ----------
    address
        ``tcp://HOST:PORT`` of a running scheduler, or None for a local cluster.
    workers
        The local cluster's number of worker processes (one thread each); None for a remote
        scheduler.
    """

    address: str | None
    workers: int | None = None

    @property
    def is_local(self) -> bool:
        return self.address is None

    def __str__(self) -> str:
        return self.address if self.address is not None else f"{LOCAL}:{self.workers}"


def parse_scheduler(text: str) -> Scheduler:
    """The ``--scheduler`` value: ``tcp://HOST:PORT``, ``local`` or ``local:N``.

    ``local`` starts a `distributed.LocalCluster` of as many worker processes as there are
    cores (``os.cpu_count()``, as ``--jobs`` counts them), ``local:N`` of N, one thread each.

    Raises
    ------
    UsageError
        Naming ``--scheduler``, for anything else.

    Examples
    --------
    >>> parse_scheduler("tcp://10.0.0.5:8786")
    Scheduler(address='tcp://10.0.0.5:8786', workers=None)
    >>> parse_scheduler("local:2")
    Scheduler(address=None, workers=2)
    """
    value = text.strip()
    if value == LOCAL:
        return Scheduler(None, os.cpu_count() or 1)
    if value.startswith(f"{LOCAL}:"):
        return Scheduler(None, _local_workers(text, value[len(LOCAL) + 1 :]))
    if "://" in value:
        return Scheduler(_tcp_address(text, value))
    raise UsageError(f"--scheduler {text!r}: not an address ({_SCHEDULER_HELP})")


def _local_workers(text: str, count: str) -> int:
    if not count.isdigit() or not 1 <= int(count) <= MAX_LOCAL_WORKERS:
        raise UsageError(
            f"--scheduler {text!r}: local:N takes a number of worker processes from 1 to "
            f"{MAX_LOCAL_WORKERS}"
        )
    return int(count)


def _tcp_address(text: str, value: str) -> str:
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "tcp" or not parts.hostname or port is None or port == 0:
        raise UsageError(f"--scheduler {text!r}: not a tcp://HOST:PORT address ({_SCHEDULER_HELP})")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise UsageError(f"--scheduler {text!r}: a scheduler's address is tcp://HOST:PORT alone")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"tcp://{host}:{port}"


# --- Running a batch ----------------------------------------------------------------------


class Job(NamedTuple):
    """What every task of a batch shares, sent once to each worker."""

    kernels: tuple[Kernel, ...]
    settings: ApplySettings
    image_count: int
    versions: tuple[str, str]  # convkit's and OpenCV's on the machine that planned the batch
    warning_filters: list | None  # the parent's, for the workers of a local cluster


def run_on_cluster(
    tasks: Sequence[Task],
    kernels: Sequence[Kernel],
    settings: ApplySettings,
    scheduler: Scheduler | str,
    on_result: Callable[[int, Outcome], None],
    *,
    image_count: int | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    workers_timeout: float = WORKERS_TIMEOUT,
    no_worker_timeout: float = NO_WORKER_TIMEOUT,
) -> None:
    """Run every task as a dask task, ``process_image(task, kernels, settings, image_count)``.

    Parameters
    ----------
    tasks
        The batch's images and their planned outputs, paths that every worker sees.
    kernels, settings
        As for `convkit.batch.run_batch`; sent once to every worker.
    scheduler
        A `Scheduler`, or the ``--scheduler`` text (`parse_scheduler`).
    on_result
        Called in this thread as ``on_result(index, outcome)`` for each task as it finishes
        (in the order they finish), ``outcome`` an `ImageReport` or a `Failure`. Exactly once
        per task when this function returns.
    image_count
        The size of the batch as the user sees it (default ``len(tasks)``).
    connect_timeout, workers_timeout, no_worker_timeout
        Seconds: see the module's notes.

    Raises
    ------
    UsageError
        When no scheduler answers at the address, or it has no worker.
    ConvkitError
        When a local cluster cannot start.
    KeyboardInterrupt
        The interrupt itself (Ctrl-C, or `convkit.errors.Interrupted`), after the futures
        were cancelled, a local cluster shut down and the temporary files swept. Tasks that
        had finished were passed to ``on_result`` first.
    """
    if isinstance(scheduler, str):
        scheduler = parse_scheduler(scheduler)
    if not tasks:
        return
    count = image_count or len(tasks)
    tiled = [i for i, task in enumerate(tasks) if _in_tiles(task, kernels, settings, count)]
    whole = [i for i in range(len(tasks)) if i not in set(tiled)]
    if scheduler.is_local and not tiled:  # no more workers than tasks, as the local pool
        scheduler = scheduler._replace(workers=min(scheduler.workers, len(tasks)))
    job = _job(kernels, settings, count, scheduler.is_local)
    try:
        with open_client(scheduler, connect_timeout, workers_timeout) as client:
            if whole:
                _Batch(client, [tasks[i] for i in whole],
                       lambda i, outcome: on_result(whole[i], outcome), no_worker_timeout,
                       ).run(job)  # fmt: skip
            for index in tiled:
                bands = ClusterBands(client, job, no_worker_timeout)
                on_result(index, run_tiled(tasks[index], kernels, settings, count, bands))
    finally:
        sweep_temporaries(tasks)  # a killed worker's; every writer is stopped or done by now


@contextlib.contextmanager
def open_client(
    scheduler: Scheduler | str,
    connect_timeout: float = CONNECT_TIMEOUT,
    workers_timeout: float = WORKERS_TIMEOUT,
) -> Iterator[Client]:
    """A `distributed.Client` of the scheduler, with at least one worker; on exit the client
    is closed and a local cluster shut down, its processes reaped.

    distributed's log lines are silenced meanwhile (failures come back as outcomes); a local
    cluster listens on 127.0.0.1 only, on free ports, without a dashboard.

    Raises
    ------
    UsageError
        When no scheduler answers at the address within ``connect_timeout`` seconds, or none
        of its workers within ``workers_timeout``.
    ConvkitError
        When a local cluster cannot start.
    """
    if isinstance(scheduler, str):
        scheduler = parse_scheduler(scheduler)
    with _quiet_distributed_logs():
        cluster = _start_local_cluster(scheduler.workers) if scheduler.is_local else None
        try:
            client = _connect(cluster or scheduler.address, connect_timeout)
            try:
                _wait_for_a_worker(client, scheduler, workers_timeout)
                yield client
            finally:
                _close(client)
        finally:
            if cluster is not None:
                _shut_down(cluster)


# --- A tiled image's bands ----------------------------------------------------------------


def _in_tiles(task: Task, kernels, settings: ApplySettings, count: int) -> bool:
    """Whether the task's image runs in tiles (`convkit.tiled.tiles_needed`, from its header,
    read here); one that cannot say goes to a worker, which reports what is wrong."""
    from convkit.tiled import tiles_needed

    planned = [output for output, _ in task.outputs if output is not None]
    if task.image.path is None or not any(o.suffix.lower() in (".tif", ".tiff") for o in planned):
        return False  # a tiled run writes TIFFs: a batch of PNGs reads no header here
    try:
        return tiles_needed(task.image.path, kernels, settings, count)
    except ConvkitError:
        return False


def run_tiled(
    task: Task, kernels: Sequence[Kernel], settings: ApplySettings, count: int, bands: ClusterBands
) -> Outcome:
    """A tiled image (`convkit.tiled.apply_tiled`) whose bands are filtered on the cluster:
    the workers read the input at its path and send the bands' pixels back; this process
    writes the output TIFF (and the comparison) at the planned paths. Its report, or its
    `Failure`, as `process_image` gives them."""
    from convkit.tiled import apply_tiled

    path = task.image.path
    try:
        report = apply_tiled(path, kernels, settings, task.outputs, None, count, bands=bands)
    except ConvkitError as exc:
        return Failure(task.name, str(exc))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - KilledWorker, a broken worker: this image only
        return Failure(task.name, _describe_error(exc))
    return as_planned(report, task)


class BandJob(NamedTuple):
    """What every band of one pass of a tiled image needs on a worker, sent once."""

    work: Any  # convkit.tiled's pass, without its reader, runner and buffers
    image: Any  # the `convkit.tiled.TiledImage`, its path absolute
    versions: tuple[str, str]
    warning_filters: list | None


class ClusterBands:
    """A tiled image's bands as tasks on a dask cluster (a `convkit.tiled.BandRunner`).

    Each pass (a kernel's; ``minmax`` takes two) is pickled once into a task of its own
    that its bands depend on, as a batch's `Job` is. A band's task (`run_band`) reads its
    rows and halo from the input at its (absolute) path, filters them and returns its
    tiles: dask runs it again on another worker if its worker dies. As many bands at a time
    as the cluster has threads.
    """

    def __init__(self, client: Client, job: Job, no_worker_timeout: float = NO_WORKER_TIMEOUT):
        self.client = client
        self.job = job
        self.threads = max(1, sum(client.nthreads().values()))
        self.name = f"convkit-band-{uuid.uuid4().hex[:16]}"
        self._watch = _Watch(client, no_worker_timeout)
        self._payload: bytes | None = None
        self._shared: Future | None = None
        self._passes = 0

    def submit(self, function: Callable, work: Any, position: int) -> _BandFuture:
        image = work.reader.image
        image = image._replace(path=_absolute(image.path))
        stripped = work._replace(reader=None, runner=None, buffers=None)
        job = BandJob(stripped, image, self.job.versions, self.job.warning_filters)
        payload = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        if payload != self._payload:
            self._payload, self._passes = payload, self._passes + 1
            key = f"convkit-bandjob-{self.name.rsplit('-', 1)[1]}-{self._passes}"
            self._shared = self.client.submit(load_job, payload, key=key)
        key = f"{self.name}-{self._passes}-{position}"
        return _BandFuture(self.client.submit(run_band, function, self._shared, position, key=key),
                           self._watch)  # fmt: skip


class _BandFuture:
    """A band's dask future whose `result` gives up when the cluster has had no worker for
    too long (`_Watch`) rather than wait for ever."""

    def __init__(self, future: Future, watch: _Watch) -> None:
        self.future = future
        self.watch = watch

    def result(self) -> Any:
        while True:
            try:
                return self.future.result(timeout=CHECK_INTERVAL)
            except TimeoutError:
                if self.watch.lost_every_worker():
                    raise ConvkitError(self.watch.reason) from None

    def cancel(self) -> None:
        with contextlib.suppress(Exception):
            self.future.cancel()


def _job(kernels: Sequence[Kernel], settings: ApplySettings, count: int, local: bool) -> Job:
    import warnings

    filters = list(warnings.filters) if local else None  # a remote worker's are its own
    settings = settings._replace(out_dir=_absolute(settings.out_dir))  # see `absolute`
    return Job(tuple(kernels), settings, count, _versions(), filters)


class Chunk:
    """A few consecutive tasks of a batch, run as one dask task: ``tasks[i]`` is the batch's
    task ``first + i``. (A plain class: dask looks for its own keys inside tuples.)"""

    __slots__ = ("first", "tasks")

    def __init__(self, first: int, tasks: Sequence[Task]) -> None:
        self.first = first
        self.tasks = tuple(tasks)

    def __reduce__(self) -> tuple:
        return (Chunk, (self.first, self.tasks))


class _Batch:
    """One `run_on_cluster` call: the futures, and the tasks not yet reported."""

    def __init__(
        self,
        client: Client,
        tasks: Sequence[Task],
        on_result: Callable[[int, Outcome], None],
        no_worker_timeout: float,
    ) -> None:
        self.client = client
        self.tasks = tasks
        self.on_result = on_result
        self.no_worker_timeout = no_worker_timeout
        self.pending: dict[Future, Chunk] = {}
        self.name = f"convkit-image-{uuid.uuid4().hex[:16]}"
        self.shared: Future | None = None

    def run(self, job: Job) -> None:
        from distributed import as_completed

        try:
            self.shared = self._send(job)
            size = chunk_size(len(self.tasks), max(1, sum(self.client.nthreads().values())))
            sent = [absolute(task) for task in self.tasks]
            chunks = [Chunk(i, sent[i : i + size]) for i in range(0, len(sent), size)]
            finished = as_completed(
                self._submit(chunks), loop=self.client.loop, with_results=True,
                raise_errors=False,
            )  # fmt: skip
            self._collect(finished)
        except BaseException:
            self._cancel()
            raise

    def _send(self, job: Job) -> Future:
        """The job, pickled once into a task of its own that every chunk depends on: the
        scheduler holds the bytes, so that the job can be recomputed if every worker that
        had it dies (data scattered to the workers would then be lost for good)."""
        payload = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        # A task group of its own ("convkit-job"), so that the images' group has one small
        # dependency and the scheduler queues its tasks rather than handing them all out
        # at once (a worker that dies would make every task it had been handed suspicious).
        key = f"convkit-job-{self.name.rsplit('-', 1)[1]}"
        return self.client.submit(load_job, payload, key=key)

    def _submit(self, chunks: list[Chunk]) -> list[Future]:
        keys = [f"{self.name}-{chunk.first}-{len(chunk.tasks)}" for chunk in chunks]
        futures = self.client.map(run_chunk, chunks, job=self.shared, key=keys)
        self.pending.update(zip(futures, chunks, strict=True))
        return futures

    def _collect(self, finished: Any) -> None:
        watch = _Watch(self.client, self.no_worker_timeout)
        while self.pending:
            arrived = finished.next_batch(block=False)
            for future, result in arrived:
                chunk = self.pending.pop(future)
                if _killed_its_workers(future.status, result) and len(chunk.tasks) > 1:
                    # Which image kills its workers (the OOM killer)? Each alone: only the
                    # culprit fails, the others are written.
                    finished.update(self._submit(_singles(chunk)))
                    continue
                for offset, outcome in enumerate(self._outcomes(chunk, future.status, result)):
                    index = chunk.first + offset
                    self.on_result(index, as_planned(outcome, self.tasks[index]))
            if not arrived:
                if watch.lost_every_worker():
                    self._fail_pending(watch.reason)
                    return
                _wait(finished, POLL)

    def _outcomes(self, chunk: Chunk, status: str, result: Any) -> list[Outcome]:
        if status == "finished":
            return result
        if status == "error":
            reason = _describe_error(result[1])
        else:
            reason = "its task was cancelled by the dask scheduler (was it restarted?)"
        return [Failure(task.name, reason) for task in chunk.tasks]

    def _fail_pending(self, reason: str) -> None:
        self._cancel()
        chunks = sorted(self.pending.values(), key=lambda chunk: chunk.first)
        self.pending.clear()
        for chunk in chunks:
            for offset, task in enumerate(chunk.tasks):
                self.on_result(chunk.first + offset, Failure(task.name, reason))

    def _cancel(self) -> None:
        """Queued tasks are dropped; a running one cannot be stopped (a local cluster's are,
        when it shuts down)."""
        if self.pending:
            with contextlib.suppress(Exception):
                self.client.sync(
                    self.client._cancel, list(self.pending), callback_timeout=CLOSE_TIMEOUT
                )


def absolute(task: Task) -> Task:
    """The task with absolute paths, as a worker with another working folder must see them
    (``os.path.abspath``: symbolic links kept, as the shared filesystem's mounts are)."""
    image = task.image
    if image.path is not None:
        image = image._replace(path=_absolute(image.path))
    outputs = tuple(tuple(_absolute(p) for p in pair) for pair in task.outputs)
    return Task(image, outputs)


def _absolute(path: Path | None) -> Path | None:
    if path is None or path.is_absolute():
        return path
    return Path(os.path.abspath(path))


def as_planned(outcome: Outcome, task: Task) -> Outcome:
    """A report whose outputs name the paths as they were planned (relative ones relative
    again), so that its rows are those of a --jobs run."""
    if isinstance(outcome, Failure):
        return outcome
    results = []
    for result, (output, compare) in zip(outcome.results, task.outputs, strict=True):
        written = str(result.output) if result.output is not None else None
        rows = tuple(
            row._replace(output=str(output)) if written and row.output == written else row
            for row in result.rows
        )
        results.append(result._replace(rows=rows, output=output, compare=compare))
    outcome.results[:] = results
    return outcome


def _singles(chunk: Chunk) -> list[Chunk]:
    return [Chunk(chunk.first + offset, [task]) for offset, task in enumerate(chunk.tasks)]


def _killed_its_workers(status: str, result: Any) -> bool:
    from distributed import KilledWorker

    return status == "error" and isinstance(result[1], KilledWorker)


class _Watch:
    """Tells a waiting batch when its cluster has had no worker, or no scheduler, for too
    long; asks the scheduler at most every `CHECK_INTERVAL` seconds."""

    def __init__(self, client: Client, limit: float) -> None:
        self.client = client
        self.limit = limit
        self.checked = self.last_seen = time.monotonic()
        self.reason = ""

    def lost_every_worker(self) -> bool:
        now = time.monotonic()
        if now - self.checked < min(CHECK_INTERVAL, self.limit):
            return False
        self.checked = now
        if self.client.status == "running" and self._workers() > 0:
            self.last_seen = now
            return False
        if now - self.last_seen < self.limit:
            return False
        self.reason = (
            f"not run: the dask cluster had no worker for {self.limit:.0f} s"
            if self.client.status == "running"
            else "not run: the connection to the dask scheduler was lost"
        )
        return True

    def _workers(self) -> int:
        try:
            return len(self.client.nthreads())
        except Exception:  # noqa: BLE001 - the scheduler is gone: counted as no worker
            return 0


def _wait(finished: Any, seconds: float) -> None:
    """Until a task finishes, or ``seconds`` pass (interruptible)."""
    condition = getattr(finished, "thread_condition", None)
    if condition is None:
        time.sleep(seconds)
        return
    with condition:
        if not finished.has_ready():
            condition.wait(seconds)


def _describe_error(exc: BaseException) -> str:
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        return (
            f"its dask worker died while running it, and so did every worker that tried it "
            f"again ({exc.allowed_failures + 1} attempts, the last on {exc.last_worker.address}:"
            " out of memory?)"
        )
    if isinstance(exc, ImportError):
        return f"the dask worker cannot run it: {_name(exc)} (install convkit on every worker)"
    return f"its task failed on the dask cluster: {_name(exc)}"


def _name(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# --- On the worker ------------------------------------------------------------------------

_worker_prepared = False


def load_job(payload: bytes) -> Job:
    """The batch's `Job`, on the worker that runs this task; the others fetch it from there."""
    return pickle.loads(payload)


def run_chunk(chunk: Chunk, job: Job) -> list[Outcome]:
    """`run_task` for each task of the chunk, in order: the dask task of a `Chunk`."""
    return [run_task(task, job) for task in chunk.tasks]


def run_task(task: Task, job: Job) -> Outcome:
    """`process_image` on a dask worker: the image's report, or its `Failure`.

    A failure names the worker; an input the worker cannot see says that the workers need
    the same files at the same paths. Nothing is run on a worker whose convkit or OpenCV
    differs from the planning machine's.
    """
    _prepare_worker(job.warning_filters)
    where = _worker_address()
    versions = _versions()
    if versions != job.versions:
        return Failure(
            task.name,
            f"dask worker {where} runs convkit {versions[0]} with {versions[1]}, this batch "
            f"convkit {job.versions[0]} with {job.versions[1]}: outputs would "
            "differ (install the same versions on every worker)",
        )
    path = task.image.path
    if path is not None and not os.path.lexists(path):
        return Failure(
            task.name,
            f"{path}: not found on dask worker {where} (the workers read the inputs and write "
            "the outputs at the same paths as this machine: a shared filesystem)",
        )
    outcome = process_image(task, job.kernels, job.settings, job.image_count)
    if isinstance(outcome, Failure):
        return Failure(outcome.image, f"{outcome.reason} (on dask worker {where})")
    return outcome


def run_band(function: Callable, job: BandJob, position: int) -> Any:
    """``function(work, position)`` on a dask worker (`convkit.tiled.filter_band` or
    `convkit.tiled.band_bounds`), reading the input at its path.

    Raises
    ------
    ConvkitError
        If the worker's convkit or OpenCV differ from the planning machine's, or it cannot
        read the input (the message names the worker and says the workers need the same
        files at the same paths).
    """
    from convkit.errors import ImageReadError
    from convkit.tiled import Buffers, TiledReader

    _prepare_worker(job.warning_filters)
    where = _worker_address()
    versions = _versions()
    if versions != job.versions:
        raise ConvkitError(
            f"dask worker {where} runs convkit {versions[0]} with {versions[1]}, this run "
            f"convkit {job.versions[0]} with {job.versions[1]}: outputs would differ "
            "(install the same versions on every worker)"
        )
    path = job.image.path
    if not os.path.lexists(path):
        raise ImageReadError(
            f"{path}: not found on dask worker {where} (the workers read the inputs at the "
            "same paths as this machine: a shared filesystem)"
        )
    work = job.work
    reader = TiledReader(job.image, work.plan.band_rows, work.settings.auto_orient)
    try:
        return function(work._replace(reader=reader, buffers=Buffers()), position)
    except ImageReadError as exc:
        raise ImageReadError(f"{exc} (on dask worker {where})") from None
    finally:
        reader.close()


def _prepare_worker(warning_filters: list | None) -> None:
    """Once per worker process: one OpenCV thread (dask's threads use the cores), as the
    local pool's workers; a local cluster's workers also take the parent's warning filters
    (they write to its terminal)."""
    global _worker_prepared
    if _worker_prepared:
        return
    _worker_prepared = True
    if warning_filters is not None:
        import warnings

        warnings.filters[:] = warning_filters
    with contextlib.suppress(ImportError):
        import cv2

        cv2.setNumThreads(1)


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "(not a dask worker)"


def _versions() -> tuple[str, str]:
    """convkit's version, and the installed OpenCV distribution's (read from its metadata:
    importing cv2 here would make the local pool and cluster spawn rather than fork)."""
    from convkit import __version__

    return __version__, _opencv_version()


# The wheels that install cv2 (opencv-python's four flavours).
_OPENCV_DISTRIBUTIONS = (
    "opencv-python-headless", "opencv-python", "opencv-contrib-python-headless",
    "opencv-contrib-python",
)  # fmt: skip


@functools.cache
def _opencv_version() -> str:
    from importlib import metadata

    found = []
    for name in _OPENCV_DISTRIBUTIONS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name} {metadata.version(name)}")
    return ", ".join(found) or "OpenCV of unknown origin"


# --- Temporary files ----------------------------------------------------------------------


def sweep_temporaries(tasks: Sequence[Task]) -> int:
    """Remove `write_atomic`'s temporary files (``.NAME.XXXXXXXX.tmp``) left beside the
    tasks' planned outputs by a worker that died while writing; return how many.

    One listing per output folder (`convkit.batch.remove_temporary_files` lists the folder
    once per output), so that a batch of 10^5 images sweeps in a moment.
    """
    prefixes: dict[Path, set[str]] = defaultdict(set)
    for task in tasks:
        for output in (p for pair in task.outputs for p in pair if p is not None):
            prefixes[output.parent].add(temporary_prefix(output.name))
    removed = 0
    for folder, wanted in prefixes.items():
        removed += _sweep_folder(folder, wanted)
    return removed


def _sweep_folder(folder: Path, prefixes: set[str]) -> int:
    try:
        names = os.listdir(folder)
    except OSError:
        return 0  # not created: nothing was written there
    removed = 0
    for name in names:
        match = _TEMPORARY.fullmatch(name)
        if match and match["prefix"] in prefixes:
            with contextlib.suppress(OSError):
                os.unlink(folder / name)
                removed += 1
    return removed


# --- Connecting, starting and stopping ----------------------------------------------------


_LOCAL_CONFIG = {
    # No statistical profiler: it samples every running task's stack 100 times a second.
    "distributed.worker.profile.enabled": False,
    # A worker holds only the task it runs, as a --jobs worker: when it dies, only that task
    # counts towards its allowed failures (not one merely queued behind it).
    "distributed.scheduler.worker-saturation": 1.0,
    # dask makes glibc return freed memory at once (a 64 KiB trim threshold): every
    # image-sized array is then mapped and faulted in afresh, a third more CPU per image.
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    # Fewer housekeeping wake-ups in the scheduler, nannies and workers (every 20 ms, 500 ms
    # and 100 ms by default): CPU time the images do not get. Work stealing has nothing to
    # balance when a worker holds only the task it runs.
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.scheduler.work-stealing": False,
}


def _start_local_cluster(workers: int) -> LocalCluster:
    """N worker processes of one thread on 127.0.0.1: free ports, no dashboard, no memory
    limit (``--max-memory`` is convkit's own check, as with ``--jobs``), SIGINT ignored in
    the workers (`dask_setup`), and `_LOCAL_CONFIG`.

    An interrupt while it starts shuts down what had started.
    """
    import dask
    from distributed import LocalCluster, SpecCluster

    before = set(SpecCluster._instances)
    method = _start_method()
    try:
        with (
            dask.config.set(_LOCAL_CONFIG),
            dask.config.set({"distributed.worker.multiprocessing-method": method}),
            _same_environment(),
        ):
            return LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                scheduler_port=0, dashboard_address=None, memory_limit=0,
                silence_logs=logging.CRITICAL, preload=[__name__],
                # No dashboard; the scheduler's health and metrics pages on a free port.
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            )  # fmt: skip
    except BaseException as exc:
        for cluster in set(SpecCluster._instances) - before:
            _shut_down(cluster)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ConvkitError(f"--scheduler local:{workers}: {_start_failure(exc)}") from None


def _start_method() -> str:
    """How a local cluster's worker processes start: forked, as the local pool's (they
    inherit the modules this process has imported: distributed, numpy, convkit's pipeline),
    unless OpenCV is loaded here (see `convkit.pool.start_method`); then spawned, dask's
    default."""
    from convkit.pool import start_method

    return "fork" if start_method() == "fork" else "spawn"


@contextlib.contextmanager
def _same_environment() -> Iterator[None]:
    """dask's nanny writes its workers' variables (OMP_NUM_THREADS=1, PYTHONHASHSEED...)
    into this process's environment before it starts them: put it back as it was."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        os.environ.update({k: v for k, v in saved.items() if os.environ.get(k) != v})


def dask_setup(worker: Any) -> None:
    """dask's preload hook, run in each worker process of a local cluster as it starts.

    SIGINT is ignored: a Ctrl-C in the terminal reaches the whole process group, and this
    process stops its workers itself, after the futures were cancelled. SIGTERM and SIGHUP
    get their default action back (a forked worker inherits the command line's handlers,
    which would turn the nanny's SIGTERM into a traceback). Freed image buffers are kept
    for the next image (`convkit.resources.keep_freed_buffers`).
    """
    import signal

    with contextlib.suppress(ValueError):  # not the main thread: nothing to do
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_DFL)
    keep_freed_buffers()


def _start_failure(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    detail = f" ({_name(cause)})" if cause is not None else ""
    return f"could not start a local dask cluster: {_name(exc)}{detail}"


def _connect(target: str | LocalCluster, timeout: float) -> Client:
    from distributed import Client

    try:
        return Client(target, timeout=timeout, set_as_default=False)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, a handshake refused...
        raise UsageError(
            f"--scheduler {target}: no dask scheduler answered within {timeout:g} s "
            f"({_one_line(_name(exc))}); start one with `dask scheduler`"
        ) from None


def _wait_for_a_worker(client: Client, scheduler: Scheduler, timeout: float) -> None:
    try:
        client.wait_for_workers(1, timeout=timeout)
    except KeyboardInterrupt:
        raise
    except Exception:  # noqa: BLE001 - TimeoutError, or the scheduler went away
        raise UsageError(
            f"--scheduler {scheduler}: the dask scheduler has no worker after {timeout:g} s; "
            f"start `dask worker {scheduler}` on each machine"
        ) from None


def _close(client: Client) -> None:
    """Close the client (which releases every future it holds); a second interrupt does not
    stop this."""
    for _ in range(3):
        try:
            client.close(timeout=CLOSE_TIMEOUT)
            return
        except KeyboardInterrupt:
            continue
        except Exception:  # noqa: BLE001 - the scheduler is gone already
            return


def _shut_down(cluster: LocalCluster) -> None:
    """Stop the local cluster's scheduler, nannies and worker processes; kill any worker
    process still alive after `CLOSE_TIMEOUT` and reap it."""
    processes = _worker_processes(cluster)
    for _ in range(3):
        try:
            cluster.close(timeout=CLOSE_TIMEOUT)
            break
        except KeyboardInterrupt:
            continue
        except Exception:  # noqa: BLE001 - the processes are killed below
            break
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(CLOSE_TIMEOUT)
            if process.exitcode is None:
                process.kill()
                process.join(CLOSE_TIMEOUT)


def _worker_processes(cluster: LocalCluster) -> list:
    """The `multiprocessing.Process` of each worker a local cluster's nannies started."""
    processes = []
    for nanny in list(getattr(cluster, "workers", {}).values()):
        worker = getattr(nanny, "process", None)  # distributed.nanny.WorkerProcess
        process = getattr(getattr(worker, "process", None), "_process", None)
        if process is not None:
            processes.append(process)
    return processes


@contextlib.contextmanager
def _quiet_distributed_logs() -> Iterator[None]:
    """distributed logs to this process's stderr (a nanny restarting a worker, a closed
    connection); a batch reports its failures itself. Restored afterwards."""
    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _one_line(text: str) -> str:
    return " ".join(text.split())
