"""Worker processes that account for every task and never outlive the run.

`run_pool` runs tasks in worker processes and hands each result to a callback as soon as it is
done. Unlike `concurrent.futures.ProcessPoolExecutor`:

- a worker that dies (the OOM killer, a segfault, ``os._exit``) costs exactly the task it was
  running: that task's result is `Lost`, the tasks queued behind it go to other workers, and a
  fresh worker takes its place;
- a stopping signal in the parent (Ctrl-C, or SIGTERM/SIGHUP turned into
  `convkit.errors.Interrupted`) stops every worker in a way that lets the task's own
  ``finally`` clean up, then kills stragglers and reaps them all;
- a worker whose parent has vanished, even by SIGKILL, stops itself the same way within 2 s
  (it watches a pipe from the parent for end-of-file, and its parent pid);
- SIGINT ignored in the parent (``convkit apply ... &`` in a script) is ignored by the workers.

Importing this module is cheap: multiprocessing is imported when a pool starts.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from convkit.errors import ConvkitError, Interrupted

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import BaseContext
    from multiprocessing.process import BaseProcess

T = TypeVar("T")
R = TypeVar("R")

WATCH_INTERVAL = 0.25  # how often a worker also checks its parent pid (s)
ORPHAN_GRACE = 1.5  # an orphaned worker's time to clean up before it ends itself (s)
STOP_GRACE = 2.0  # the parent's wait for workers to exit before it kills them (s)

_READY, _RESULT, _INIT_FAILED = "ready", "result", "init-failed"
_NOT_RUNNING = -1
_SIGNAL_HINTS = {signal.SIGKILL: "out of memory?"} if hasattr(signal, "SIGKILL") else {}


class Lost(NamedTuple):
    """A task that gave no result, and why.

    Its worker process died while running it (``reason`` names the signal or exit code), the
    task raised, or the task or its result could not be pickled.
    """

    reason: str


class WorkerStartError(ConvkitError):
    """A worker process could not start: its initializer raised, or it died before it was
    ready. The pool cannot run at all, so `run_pool` raises this rather than losing every task.
    """


def run_pool(
    tasks: Sequence[T],
    work: Callable[[T], R],
    jobs: int,
    on_result: Callable[[int, R | Lost], None],
    *,
    chunk: int = 1,
    initializer: Callable[[], None] | None = None,
    preload: Sequence[str] = (),
) -> None:
    """Run ``work(task)`` for every task in up to ``jobs`` worker processes.

    Parameters
    ----------
    tasks
        The tasks; each is pickled to a worker.
    work
        A module-level function (pickled by reference), or a `functools.partial` of one: the
        way to give every task the same arguments, sent once per worker rather than once
        per task. It should catch its own errors; if it raises an `Exception` anyway, the
        task's result is ``Lost("the task raised ...")``.
    jobs
        How many worker processes run at a time (no more than there are tasks).
    on_result
        Called in this process as ``on_result(index, result)`` for each task, in the order
        they finish; ``result`` is `Lost` for a task whose worker died running it.
    chunk
        How many tasks an idle worker is handed at a time (fewer near the end, so that the
        workers finish together), to make the round trip between the processes cheap. Each
        result still comes back as soon as its task is done.
    initializer
        Called once in each worker before its first task. It must not change the handlers
        of SIGINT, SIGTERM or SIGHUP.
    preload
        Modules a forkserver imports once for all workers (besides those of ``work`` and
        ``initializer``); see `start_method`.

    Raises
    ------
    KeyboardInterrupt
        The same exception that interrupted the wait (Ctrl-C, or `Interrupted` from a
        SIGTERM/SIGHUP handler), after every worker was stopped and reaped. Results that had
        arrived are still passed to ``on_result`` first; unfinished tasks get no call.
    WorkerStartError
        When a worker's initializer raises or a worker dies before it is ready.
    Exception
        Whatever ``on_result`` raises, after the workers were stopped as for an interrupt.

    Notes
    -----
    When `run_pool` returns, ``on_result`` has been called exactly once for every task; when
    it raises, some tasks may have had no call, so a caller that counts its results knows how
    far the run got. In every case no worker process is left running, nor unreaped.

    Examples
    --------
    >>> import math
    >>> results = {}
    >>> run_pool([1.0, 4.0, 9.0], math.sqrt, 2, results.__setitem__)
    >>> sorted(results.items())
    [(0, 1.0), (1, 2.0), (2, 3.0)]
    """
    if jobs < 1 or chunk < 1:
        raise ValueError(f"jobs and chunk must be at least 1, not {jobs} and {chunk}")
    if not tasks:
        return
    modules = [_module_of(f) for f in (work, initializer) if f is not None] + list(preload)
    pool = _Pool(tasks, work, initializer, chunk, _context(modules))
    try:
        for _ in range(min(jobs, len(tasks))):
            pool.start_worker()
        while True:
            pool.dispatch()
            _deliver(pool.arrived, on_result)
            if not pool.remaining:
                break
            pool.collect()
    except KeyboardInterrupt:
        pool.stop()
        _deliver(pool.arrived, on_result)
        raise
    except BaseException:
        pool.stop()
        raise
    pool.close()


def start_method() -> str:
    """How worker processes start: ``fork`` (fastest) unless OpenCV is loaded.

    A child forked after OpenCV has started its thread pool can deadlock inside OpenCV; then
    the workers come from a fresh forkserver. Off POSIX, ``spawn``. The command line never
    touches OpenCV before a batch, so it forks.
    """
    if os.name != "posix":
        return "spawn"
    return "forkserver" if "cv2" in sys.modules else "fork"


def _context(preload: Sequence[str]) -> BaseContext:
    import multiprocessing

    method = start_method()
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(sorted({m for m in preload if m != "__main__"}))
    return context


def _module_of(function: Callable[..., Any]) -> str:
    return getattr(getattr(function, "func", function), "__module__", None) or "__main__"


def _deliver(arrived: deque[tuple[int, Any]], on_result: Callable[[int, Any], None]) -> None:
    while arrived:
        on_result(*arrived.popleft())


# --- The parent's side ---------------------------------------------------------------------


class _Worker:
    """A worker process, the parent's end of its pipe, and the tasks handed to it."""

    def __init__(self, process: BaseProcess, conn: Connection, running: Any) -> None:
        self.process = process
        self.conn = conn
        self.running = running  # shared: the index of the task it runs, or _NOT_RUNNING
        self.assigned: deque[int] = deque()  # handed to it, no result yet; in order
        self.ready = False


class _Pool:
    """The state of one `run_pool` call: the queue, the workers, the results not yet
    delivered to ``on_result``."""

    def __init__(
        self,
        tasks: Sequence[Any],
        work: Callable[[Any], Any],
        initializer: Callable[[], None] | None,
        chunk: int,
        context: BaseContext,
    ) -> None:
        self.tasks = tasks
        self.chunk = chunk
        self.context = context
        # The workers notice that this process is gone when the lifeline reads end-of-file.
        lifeline, self.lifeline_end = context.Pipe(duplex=False)
        forked = context.get_start_method() == "fork"
        self.setup = _Setup(
            work,
            initializer,
            sigint_ignored=signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
            lifeline=lifeline,
            inherited_lifeline_end=self.lifeline_end if forked else None,
            # A forkserver's child has the forkserver for parent, which outlives this one.
            parent_pid=None if context.get_start_method() == "forkserver" else os.getpid(),
        )
        self.queue = deque(range(len(tasks)))
        self.workers: list[_Worker] = []
        self.arrived: deque[tuple[int, Any]] = deque()
        self.remaining = len(tasks)

    def start_worker(self) -> None:
        parent_end, child_end = self.context.Pipe()
        running = self.context.RawValue("q", _NOT_RUNNING)
        process = self.context.Process(
            target=_worker_main, args=(child_end, running, self.setup), name="convkit-worker"
        )
        # Listed before it starts, so that an interrupt during start still stops it.
        self.workers.append(_Worker(process, parent_end, running))
        try:
            process.start()
        finally:
            child_end.close()

    def dispatch(self) -> None:
        """Hand a chunk of the queue to each worker that has nothing to do."""
        for worker in self.workers:
            while not worker.assigned and self.queue:
                self._send_chunk(worker)

    def _send_chunk(self, worker: _Worker) -> None:
        share = math.ceil(len(self.queue) / len(self.workers))
        indices = [self.queue.popleft() for _ in range(min(self.chunk, share))]
        payloads = []
        for index in indices:
            try:
                payloads.append((index, _dumps(self.tasks[index])))
            except Exception as exc:  # noqa: BLE001 - only this task is lost
                self._arrive(index, Lost(f"the task could not be pickled: {_describe(exc)}"))
        if payloads:
            worker.assigned.extend(index for index, _ in payloads)
            with contextlib.suppress(OSError):  # it has just died: collect() requeues them
                worker.conn.send(payloads)

    def collect(self) -> None:
        """Wait for results or deaths, and take them into account."""
        from multiprocessing.connection import wait

        ready = set(
            wait([w.conn for w in self.workers] + [w.process.sentinel for w in self.workers])
        )
        for worker in list(self.workers):
            if worker.conn in ready:
                self._read(worker)
            if worker.process.sentinel in ready or worker.conn.closed:
                self._bury(worker)

    def _read(self, worker: _Worker) -> None:
        try:
            while worker.conn.poll():
                self._take_message(worker, worker.conn.recv())
        except (EOFError, OSError):
            worker.conn.close()  # it is gone, or going: _bury() takes over

    def _take_message(self, worker: _Worker, message: tuple) -> None:
        kind, *details = message
        if kind == _READY:
            worker.ready = True
        elif kind == _RESULT:
            index, payload = details
            worker.assigned.remove(index)
            self._arrive(index, _loads_result(payload))
        elif kind == _INIT_FAILED:
            raise WorkerStartError(f"a worker process could not start: {details[0]}")

    def _arrive(self, index: int, result: Any) -> None:
        self.arrived.append((index, result))
        self.remaining -= 1

    def _bury(self, worker: _Worker) -> None:
        """A worker has died: its task is lost, its queue goes back, a new worker comes."""
        if not worker.conn.closed:
            self._read(worker)  # what it sent before it died still counts
        _reap(worker.process, STOP_GRACE)
        worker.conn.close()
        self.workers.remove(worker)
        how = _how_it_ended(worker.process.exitcode)
        if not worker.ready:
            raise WorkerStartError(f"a worker process {how} before it was ready")
        running = worker.running.value
        if running in worker.assigned:
            worker.assigned.remove(running)
            self._arrive(running, Lost(f"its worker process {how}"))
        self.queue.extendleft(reversed(worker.assigned))
        if self.queue:
            self.start_worker()

    def close(self) -> None:
        """All done: ask the workers to exit, and reap them."""
        try:
            _shut_down(self.workers, _ask_to_exit, reraise=True)
        finally:
            self._close_pipes()

    def stop(self) -> None:
        """Interrupted: stop the workers (their tasks clean up), kill stragglers, reap all."""
        _shut_down(self.workers, _ask_to_stop, reraise=False)
        for worker in self.workers:
            self._read_after_stop(worker)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for worker in self.workers:
            worker.conn.close()
        self.setup.lifeline.close()
        self.lifeline_end.close()

    def _read_after_stop(self, worker: _Worker) -> None:
        # Every worker has exited, so a read can only return what is buffered, or fail.
        try:
            while worker.conn.poll():
                kind, *details = worker.conn.recv()
                if kind == _RESULT and details[0] in worker.assigned:
                    self._arrive(details[0], _loads_result(details[1]))
        except Exception:  # noqa: BLE001 - a message cut short by the interrupt
            pass


def _ask_to_exit(worker: _Worker) -> None:
    with contextlib.suppress(OSError):  # already gone
        worker.conn.send(None)


def _ask_to_stop(worker: _Worker) -> None:
    if worker.process.pid is not None and worker.process.is_alive():
        worker.process.terminate()  # SIGTERM: Interrupted in the task, which cleans up


def _shut_down(workers: list[_Worker], ask: Callable[[_Worker], None], *, reraise: bool) -> None:
    """Ask each worker to end, give them `STOP_GRACE` seconds, kill the rest, reap all.

    A second interrupt while waiting skips the rest of the wait: the stragglers are killed at
    once. It is raised afterwards only with ``reraise`` (otherwise the caller is already
    raising the first one).
    """
    from multiprocessing.connection import wait

    interrupt = None
    try:
        for worker in workers:
            ask(worker)
        deadline = time.monotonic() + STOP_GRACE
        alive = [w.process.sentinel for w in workers if w.process.pid is not None]
        while alive and (left := deadline - time.monotonic()) > 0:
            done = wait(alive, timeout=left)
            alive = [s for s in alive if s not in done]
    except BaseException as exc:  # noqa: BLE001 - whatever happens, the workers are reaped
        # (Not only a second KeyboardInterrupt: a handler that sets SIG_IGN while another
        # signal is pending gets OSError "Signal N ignored due to race condition".)
        interrupt = exc
    for worker in workers:
        _reap(worker.process, 0)  # the grace is over
    if interrupt is not None and reraise:
        raise interrupt


def _reap(process: BaseProcess, grace: float) -> None:
    """Kill the process unless it exits within ``grace`` seconds, and wait for it; a signal
    cannot stop this."""
    if process.pid is None:
        return  # never started
    while True:
        try:
            process.join(grace)
            if process.exitcode is None:
                process.kill()
                process.join()
            return
        except (KeyboardInterrupt, OSError):
            continue  # already stopping it (for OSError, see _shut_down)


def _how_it_ended(exitcode: int | None) -> str:
    """``killed by signal 9 (SIGKILL: out of memory?)``, ``exited with code 3``..."""
    if exitcode is not None and exitcode < 0:
        signum = -exitcode
        hint = _SIGNAL_HINTS.get(signum)
        name = _signal_name(signum) + (f": {hint}" if hint else "")
        return f"was killed by signal {signum} ({name})"
    if exitcode is not None and exitcode - 128 in _stop_signals():
        signum = exitcode - 128  # a stop signal that its handler turned into this exit code
        return f"was stopped by signal {signum} ({_signal_name(signum)})"
    return f"exited with code {exitcode}"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


# --- The worker's side ---------------------------------------------------------------------


class _Setup(NamedTuple):
    """What every worker of a pool is started with."""

    work: Callable[[Any], Any]
    initializer: Callable[[], None] | None
    sigint_ignored: bool
    lifeline: Connection  # end-of-file when the parent is gone
    inherited_lifeline_end: Connection | None  # a forked child's copy of the parent's end
    parent_pid: int | None  # the parent, when it is also this process's parent


def _worker_main(conn: Connection, running: Any, setup: _Setup) -> None:
    """The body of a worker process: serve chunks until told to exit, or stopped."""
    _install_stop_handlers(setup.sigint_ignored)
    if setup.inherited_lifeline_end is not None:
        setup.inherited_lifeline_end.close()  # else this worker would keep the lifeline open
    _start_watchdog(setup.lifeline, setup.parent_pid)
    work, initializer = setup.work, setup.initializer
    # On every way out, interrupts are turned off first: a late one must not make
    # multiprocessing print a traceback.
    try:
        if initializer is not None and not _initialize(conn, initializer):
            _no_more_interrupts()
            raise SystemExit(1)
        conn.send((_READY,))
        _serve(conn, work, running)
        _no_more_interrupts()
    except KeyboardInterrupt as exc:
        # Stopped (the handler ignores further signals): the task's cleanup has run, and
        # nothing is reported for it.
        raise SystemExit(getattr(exc, "exit_code", 128 + signal.SIGINT)) from None
    except (EOFError, OSError):
        _no_more_interrupts()
        raise SystemExit(1) from None  # the parent's end is closed: nobody to serve


def _initialize(conn: Connection, initializer: Callable[[], None]) -> bool:
    try:
        initializer()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
        conn.send((_INIT_FAILED, _describe(exc)))
        return False
    return True


def _serve(conn: Connection, work: Callable[[Any], Any], running: Any) -> None:
    while (chunk := conn.recv()) is not None:
        for index, payload in chunk:
            running.value = index
            conn.send((_RESULT, index, _run_task(work, payload)))
            running.value = _NOT_RUNNING


def _run_task(work: Callable[[Any], Any], payload: bytes) -> bytes:
    """The pickled result of one task, or of the `Lost` that says why there is none."""
    try:
        task = _loads(payload)
    except Exception as exc:  # noqa: BLE001 - only this task is lost
        return _dumps(Lost(f"the task could not be unpickled in its worker: {_describe(exc)}"))
    try:
        result = work(task)
    except Exception as exc:  # noqa: BLE001 - only this task is lost
        return _dumps(Lost(f"the task raised {_describe(exc)}"))
    try:
        return _dumps(result)
    except Exception as exc:  # noqa: BLE001 - only this task is lost
        return _dumps(Lost(f"its result could not be pickled: {_describe(exc)}"))


def _stop_signals() -> tuple[int, ...]:
    names = ("SIGTERM", "SIGHUP", "SIGINT")
    return tuple(getattr(signal, name) for name in names if hasattr(signal, name))


def _install_stop_handlers(sigint_ignored: bool) -> None:
    for signum in _stop_signals():
        signal.signal(signum, _interrupt)
    if sigint_ignored:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


_stopping = False


def _interrupt(signum: int, frame: object) -> None:
    # Once: the cleanup this starts must not be interrupted in turn. (A flag rather than
    # SIG_IGN: a signal already pending when the handler changes raises OSError, "ignored
    # due to race condition", in the middle of that cleanup.)
    global _stopping
    if not _stopping:
        _stopping = True
        raise Interrupted(signum)


def _no_more_interrupts() -> None:
    global _stopping
    _stopping = True


def _start_watchdog(lifeline: Connection, parent_pid: int | None) -> None:
    thread = threading.Thread(
        target=_watch_parent, args=(lifeline, parent_pid), name="convkit-watchdog", daemon=True
    )
    thread.start()


def _watch_parent(lifeline: Connection, parent_pid: int | None) -> None:
    """When the parent is gone, stop the way a SIGTERM from it would, then end regardless."""
    from multiprocessing.connection import wait

    if hasattr(signal, "pthread_sigmask"):
        # Process-directed signals must go to the main thread, where they interrupt the task.
        signal.pthread_sigmask(signal.SIG_BLOCK, _stop_signals())
    # The lifeline alone could be held open by another child the parent forked meanwhile;
    # a changed parent pid then tells.
    while not wait([lifeline], timeout=WATCH_INTERVAL):
        if parent_pid is not None and os.getppid() != parent_pid:
            break
    main = threading.main_thread().ident
    if hasattr(signal, "pthread_kill") and main is not None:
        # Directed at the main thread, so that a blocking call there returns at once.
        signal.pthread_kill(main, signal.SIGTERM)
    time.sleep(ORPHAN_GRACE)
    os._exit(128 + signal.SIGTERM)


# --- Pickling, one task or result at a time, so that a bad one costs only itself ------------


def _dumps(obj: object) -> bytes:
    from multiprocessing.reduction import ForkingPickler

    return bytes(ForkingPickler.dumps(obj))


def _loads(payload: bytes) -> Any:
    from multiprocessing.reduction import ForkingPickler

    return ForkingPickler.loads(payload)


def _loads_result(payload: bytes) -> Any:
    try:
        return _loads(payload)
    except Exception as exc:  # noqa: BLE001 - only this task is lost
        return Lost(f"its result could not be unpickled: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
