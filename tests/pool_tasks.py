"""Toy tasks for the worker processes of tests/test_pool.py, and a driver that runs a pool
in a process of its own, as the command line will:

    python tests/pool_tasks.py ACTION COUNT JOBS FOLDER SECONDS [--import-cv2]

runs ``COUNT`` tasks ``Task(ACTION, i, FOLDER, SECONDS)`` in ``JOBS`` workers, with SIGTERM and
SIGHUP raising `Interrupted`; it prints ``{"results": N, "lost": [...]}`` and exits 0, or
exits 128 + N when a signal stopped it. Tasks that linger leave ``task-I.tmp`` in FOLDER while
they run (removed in ``finally``) and ``pid-PID`` for each worker that ran one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import NamedTuple

from convkit.errors import Interrupted
from convkit.pool import Lost, run_pool


class Task(NamedTuple):
    action: str
    value: int
    folder: str = ""
    seconds: float = 0.0


def perform(task: Task) -> object:
    """Do what ``task.action`` says; most return ``value ** 2``."""
    if task.action == "square":
        return task.value**2
    if task.action == "ppid":
        return os.getppid()
    if task.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)
    if task.action == "exit":
        os._exit(task.value)
    if task.action == "raise":
        raise ValueError(f"bad task {task.value}")
    if task.action == "unpicklable":
        return lambda: task.value
    if task.action in ("linger", "hup"):
        return _linger(task)
    if task.action == "stubborn":
        _note_running(task)
        return _ignore_interrupts()
    if task.action == "mark":
        time.sleep(task.seconds)
        (Path(task.folder) / f"done-{task.value}").touch()
        return task.value**2
    raise AssertionError(f"unknown action {task.action}")


def scaled(task: Task, factor: int) -> int:
    return task.value * factor


def _linger(task: Task) -> int:
    temporary = Path(task.folder) / f"task-{task.value}.tmp"
    try:
        # Created inside the `try`: a signal just after it must not leave the file behind.
        _note_running(task)
        if task.action == "hup":
            os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(task.seconds)
        return task.value**2
    finally:
        temporary.unlink(missing_ok=True)


def _note_running(task: Task) -> None:
    (Path(task.folder) / f"pid-{os.getpid()}").touch()
    (Path(task.folder) / f"task-{task.value}.tmp").touch()


def _ignore_interrupts() -> None:
    while True:
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(60)


def failing_initializer() -> None:
    raise RuntimeError("no GPU here")


def exiting_initializer() -> None:
    os._exit(3)


def drive(argv: list[str]) -> None:
    action, count, jobs, folder, seconds = argv[:5]
    if "--import-cv2" in argv:
        import cv2  # noqa: F401 - makes the pool start its workers from a forkserver

    def stop(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    tasks = [Task(action, i, folder, float(seconds)) for i in range(int(count))]
    results: dict[int, object] = {}
    try:
        run_pool(tasks, perform, int(jobs), results.__setitem__)
    except KeyboardInterrupt as exc:
        print(json.dumps({"results": len(results)}))
        sys.exit(getattr(exc, "exit_code", 130))
    lost = sorted(i for i, result in results.items() if isinstance(result, Lost))
    print(json.dumps({"results": len(results), "lost": lost}))


if __name__ == "__main__":
    # Run through the module's importable name, so that the workers unpickle pool_tasks.perform.
    import pool_tasks

    pool_tasks.drive(sys.argv[1:])
