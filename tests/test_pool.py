"""convkit.pool: every task accounted for, no process left behind (real processes)."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from convkit import pool
from convkit.errors import Interrupted
from convkit.pool import Lost, WorkerStartError, run_pool
from tests.pool_tasks import Task, exiting_initializer, failing_initializer, perform, scaled

DRIVER = Path(__file__).with_name("pool_tasks.py")
PATIENCE = 15.0  # generous: a loaded 2-core machine may be slow to start processes


def run(tasks, jobs=2, **options) -> dict[int, object]:
    """`run_pool` into a dict, checking that no index is reported twice."""
    results: dict[int, object] = {}

    def on_result(index, result):
        assert index not in results
        results[index] = result

    run_pool(tasks, perform, jobs, on_result, **options)
    assert stray_children() == []
    return results


def stray_children() -> list[str]:
    """This process's children, zombies included, but for multiprocessing's own helpers
    (a forkserver and its resource tracker, shared by every pool of this process)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
            state, ppid = rest.rsplit(")", 1)[1].split()[:2]
            command = stat.with_name("cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue  # gone meanwhile
        helper = "multiprocessing.forkserver" in command or "resource_tracker" in command
        if int(ppid) == os.getpid() and not helper:
            found.append(f"{pid} {state} {command}")
    return found


def squares(count: int, **special: str) -> list[Task]:
    """Tasks squaring 0..count-1, but task ``int(k[1:])`` does ``special[k]``."""
    actions = {int(key[1:]): action for key, action in special.items()}
    return [Task(actions.get(i, "square"), i) for i in range(count)]


def alive(pid: int) -> bool:
    """Running, or stopped; a zombie that nobody reaps yet counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_until(predicate, timeout: float = PATIENCE) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def worker_pids(folder: Path) -> list[int]:
    return [int(p.name.split("-")[1]) for p in folder.glob("pid-*")]


def running_tasks(folder: Path) -> list[Path]:
    return list(folder.glob("task-*.tmp"))


# --- In this process ------------------------------------------------------------------------


@pytest.mark.parametrize("jobs", [1, 2, 3])
@pytest.mark.parametrize("chunk", [1, 2, 3, 4])
def test_every_task_gets_its_own_result(jobs, chunk):
    assert run(squares(11), jobs, chunk=chunk) == {i: i * i for i in range(11)}


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_every_start_method_works(monkeypatch, method):
    monkeypatch.setattr(pool, "start_method", lambda: method)
    results = run([Task("ppid", i) for i in range(4)], chunk=2)
    assert set(results) == {0, 1, 2, 3}
    # A forkserver's children have the forkserver for parent.
    assert (set(results.values()) == {os.getpid()}) == (method != "forkserver")


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_work_can_be_a_partial_that_gives_every_task_the_same_arguments(monkeypatch, method):
    monkeypatch.setattr(pool, "start_method", lambda: method)
    results: dict[int, object] = {}
    run_pool(squares(5), functools.partial(scaled, factor=10), 2, results.__setitem__)
    assert results == {i: 10 * i for i in range(5)}


@pytest.mark.slow
def test_a_result_comes_back_before_the_rest_of_its_chunk(tmp_path):
    tasks = [Task("square", 0), Task("mark", 1, str(tmp_path), seconds=2.0)]
    seen_early = []

    def on_result(index, result):
        if index == 0:
            seen_early.append(not (tmp_path / "done-1").exists())

    run_pool(tasks, perform, 1, on_result, chunk=2)
    assert seen_early == [True]


def test_no_tasks_no_calls():
    run_pool([], perform, 2, lambda index, result: pytest.fail("called"))


@pytest.mark.parametrize("jobs, chunk", [(0, 1), (1, 0)])
def test_jobs_and_chunk_must_be_positive(jobs, chunk):
    with pytest.raises(ValueError, match="at least 1"):
        run_pool([Task("square", 1)], perform, jobs, print, chunk=chunk)


@pytest.mark.parametrize("jobs, chunk", [(1, 1), (2, 3), (3, 4)])
def test_a_killed_worker_loses_only_the_task_it_was_running(jobs, chunk):
    results = run(squares(12, t5="kill"), jobs, chunk=chunk)
    assert results[5] == Lost("its worker process was killed by signal 9 (SIGKILL: out of memory?)")
    assert {i: r for i, r in results.items() if i != 5} == {i: i * i for i in range(12) if i != 5}


def test_two_deaths_in_a_row_lose_two_tasks():
    results = run(squares(8, t3="kill", t4="kill"), jobs=1, chunk=4)
    assert [i for i, r in sorted(results.items()) if isinstance(r, Lost)] == [3, 4]
    assert all(results[i] == i * i for i in (0, 1, 2, 5, 6, 7))


def test_a_worker_that_exits_names_its_exit_code():
    results = run([Task("exit", 3), Task("square", 2)], jobs=1, chunk=2)
    assert results == {0: Lost("its worker process exited with code 3"), 1: 4}


def test_a_task_that_raises_is_lost_with_its_exception():
    results = run(squares(5, t2="raise"), chunk=2)
    assert results[2] == Lost("the task raised ValueError: bad task 2")
    assert results[4] == 16


def test_tasks_or_results_that_cannot_be_pickled_are_lost_alone():
    tasks = squares(4, t1="unpicklable")
    tasks[2] = Task("square", lambda: 2)  # type: ignore[arg-type]
    results = run(tasks, chunk=4)
    assert results[1].reason.startswith("its result could not be pickled")
    assert results[2].reason.startswith("the task could not be pickled")
    assert (results[0], results[3]) == (0, 9)


@pytest.mark.slow
def test_a_worker_stopped_by_sighup_cleans_up_and_loses_only_its_task(tmp_path):
    tasks = [Task("hup", 0, str(tmp_path), seconds=10), Task("square", 1)]
    results = run(tasks, jobs=1, chunk=2)
    assert results == {0: Lost("its worker process was stopped by signal 1 (SIGHUP)"), 1: 1}
    assert running_tasks(tmp_path) == []


@pytest.mark.parametrize(
    "initializer, message",
    [
        (failing_initializer, "could not start: RuntimeError: no GPU here"),
        (exiting_initializer, "exited with code 3 before it was ready"),
    ],
)
def test_a_failing_initializer_stops_the_pool(initializer, message):
    with pytest.raises(WorkerStartError, match=message):
        run(squares(4), initializer=initializer)
    assert stray_children() == []


@pytest.mark.parametrize("exception", [RuntimeError("oops"), Interrupted(signal.SIGTERM)])
def test_an_exception_in_on_result_stops_every_worker(tmp_path, exception):
    tasks = [Task("linger", i, str(tmp_path), seconds=30) for i in range(1, 4)]
    tasks.insert(0, Task("square", 0))

    def on_result(index, result):
        wait_until(lambda: len(running_tasks(tmp_path)) >= 2)
        raise exception

    with pytest.raises(type(exception)) as raised:
        run_pool(tasks, perform, 3, on_result)
    assert raised.value is exception
    assert stray_children() == []
    assert not any(alive(pid) for pid in worker_pids(tmp_path))
    assert running_tasks(tmp_path) == []  # their `finally` ran


# --- In a parent process of their own, as the command line runs them ----------------------


@pytest.fixture
def start_driver(tmp_path):
    """Start ``pool_tasks.py ACTION COUNT JOBS tmp_path SECONDS`` in a session of its own."""
    started = []

    def start(action, count, jobs, seconds=30.0, import_cv2=False, ignore_sigint=False):
        argv = [sys.executable, str(DRIVER), action, str(count), str(jobs), str(tmp_path)]
        argv += [str(seconds)] + (["--import-cv2"] if import_cv2 else [])
        ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
        process = subprocess.Popen(  # noqa: PLW1509 - preexec_fn: tests only
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True, preexec_fn=ignore,
        )  # fmt: skip
        started.append(process)
        assert wait_until(lambda: len(running_tasks(tmp_path)) >= min(jobs, count)), (
            process.poll(),
            process.stderr.read() if process.poll() is not None else "",
        )
        return process

    yield start
    for process in started:  # after a failure: leave nothing behind
        if process.poll() is None:
            process.kill()
        process.wait()
    for pid in worker_pids(tmp_path):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=PATIENCE)
    return process.returncode, out, err


@pytest.mark.parametrize(
    "signum, import_cv2",
    [(signal.SIGTERM, False), (signal.SIGHUP, False), (signal.SIGTERM, True)],
    ids=["SIGTERM-fork", "SIGHUP-fork", "SIGTERM-forkserver"],
)
@pytest.mark.slow
def test_a_stopping_signal_to_the_parent_stops_and_cleans_up_every_worker(
    start_driver, tmp_path, signum, import_cv2
):
    process = start_driver("linger", 6, 2, import_cv2=import_cv2)
    process.send_signal(signum)
    code, out, err = finish(process)
    assert (code, err) == (128 + signum, "")
    assert json.loads(out) == {"results": 0}
    assert not any(alive(pid) for pid in worker_pids(tmp_path))
    assert running_tasks(tmp_path) == []


@pytest.mark.slow
def test_ctrl_c_stops_the_parent_and_every_worker(start_driver, tmp_path):
    process = start_driver("linger", 6, 2)
    os.killpg(process.pid, signal.SIGINT)
    code, out, err = finish(process)
    assert (code, err) == (130, "")
    assert not any(alive(pid) for pid in worker_pids(tmp_path))
    assert running_tasks(tmp_path) == []


@pytest.mark.slow
def test_workers_that_ignore_the_stop_are_killed(start_driver, tmp_path):
    process = start_driver("stubborn", 4, 2)
    process.terminate()
    code, out, err = finish(process)
    assert (code, err) == (143, "")
    assert not any(alive(pid) for pid in worker_pids(tmp_path))


@pytest.mark.parametrize("import_cv2", [False, True], ids=["fork", "forkserver"])
@pytest.mark.slow
def test_workers_of_a_killed_parent_clean_up_and_exit(start_driver, tmp_path, import_cv2):
    process = start_driver("linger", 6, 2, import_cv2=import_cv2)
    pids = worker_pids(tmp_path)
    process.kill()
    process.wait()
    assert wait_until(lambda: not any(alive(pid) for pid in pids), timeout=5.0)
    assert running_tasks(tmp_path) == []


@pytest.mark.slow
def test_workers_of_a_killed_parent_exit_even_if_their_task_does_not_stop(start_driver, tmp_path):
    process = start_driver("stubborn", 4, 2)
    pids = worker_pids(tmp_path)
    process.kill()
    process.wait()
    assert wait_until(lambda: not any(alive(pid) for pid in pids), timeout=5.0)


@pytest.mark.slow
def test_sigint_ignored_by_the_parent_is_ignored_by_the_workers(start_driver, tmp_path):
    process = start_driver("linger", 8, 2, seconds=0.3, ignore_sigint=True)
    for _ in range(3):
        os.killpg(process.pid, signal.SIGINT)
        time.sleep(0.1)
    code, out, err = finish(process)
    assert (code, err) == (0, "")
    assert json.loads(out) == {"results": 8, "lost": []}
