"""Worker processes (`crmscore.parallel`): results in task order, state given once per worker, thread budgets,
errors raised again as they were, and a worker that dies stops the map with one line naming its task.

The functions below run in spawned worker processes, which import this module to find them.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from crmscore import parallel
from crmscore.errors import CrmscoreError, DataError
from crmscore.parallel import WorkerDied, ordered_map, resolve_workers


class _Counter:
    """A worker's state: counts the tasks the worker ran, so a test sees the state was not sent per task."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.calls = 0


def _slow_square(task: int) -> tuple[int, int, int, int]:
    state = parallel.worker_state()
    state.calls += 1
    time.sleep(0.1 * ((7 * task) % 5) + 0.3)  # later tasks often finish first; every worker gets some
    return task, task * task + state.offset, os.getpid(), state.calls


def _budget(_: int) -> tuple[int, str]:
    return parallel.thread_budget(), os.environ.get("OMP_NUM_THREADS", "")


def _fails_on_three(task: int) -> int:
    if task == 3:
        raise DataError("transactions.csv: column amount: chunk 3 is bad")
    return task


def _dies_on_three(task: int) -> int:
    if task == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
    return task


def test_resolve_workers_defaults_to_the_cores_and_never_exceeds_the_tasks():
    cores = parallel.available_cores()
    assert resolve_workers(None, 1000) == cores
    assert resolve_workers(None, 1) == 1
    assert resolve_workers(5, 3) == 3
    assert resolve_workers(2, 10) == 2
    with pytest.raises(CrmscoreError, match="workers 0: expected a positive number"):
        resolve_workers(0, 10)


def test_results_come_in_task_order_with_the_state_given_once_per_worker():
    results = list(ordered_map(_slow_square, range(10), workers=3, state=_Counter(offset=100)))
    assert [r[0] for r in results] == list(range(10))
    assert [r[1] for r in results] == [t * t + 100 for t in range(10)]
    pids = {r[2] for r in results}
    assert os.getpid() not in pids and 1 < len(pids) <= 3
    for pid in pids:  # each worker counted its own tasks 1, 2, 3, …: one state per worker, kept between tasks
        calls = sorted(r[3] for r in results if r[2] == pid)
        assert calls == list(range(1, len(calls) + 1))


def test_each_worker_gets_its_share_of_the_cores_as_thread_budget():
    results = list(ordered_map(_budget, range(4), workers=2, state=None))
    share = max(1, parallel.available_cores() // 2)
    assert results == [(share, str(share))] * 4


def test_an_error_in_a_worker_is_raised_again_as_it_was():
    with pytest.raises(DataError, match="transactions.csv: column amount: chunk 3 is bad"):
        list(ordered_map(_fails_on_three, range(8), workers=2, state=None))


def test_a_worker_that_dies_stops_the_map_naming_its_task():
    got = []
    with pytest.raises(WorkerDied) as failure:
        for result in ordered_map(_dies_on_three, range(20), workers=2, state=None, describe=lambda t: f"task {t}"):
            got.append(result)
    message = str(failure.value)
    assert message == "a worker process died (killed, or out of memory) while task 3; nothing was written"
    assert "\n" not in message
    assert got == list(range(len(got))) and len(got) <= 3  # only results before the dead task, in order


def test_thread_budget_outside_a_worker_is_every_core(monkeypatch):
    monkeypatch.delenv(parallel.THREADS_ENV, raising=False)
    assert parallel.thread_budget() == parallel.available_cores()
    monkeypatch.setenv(parallel.THREADS_ENV, "1")
    assert parallel.thread_budget() == 1


def _square_where(task: int) -> tuple[int, int, int, int]:
    time.sleep(0.1 * ((7 * task) % 5) + 0.2)
    return task, task * task, os.getpid(), parallel.thread_budget()


def test_the_caller_works_too_first_task_here_results_in_order_within_its_thread_share():
    budget_before = os.environ.get(parallel.THREADS_ENV)
    with parallel.WorkerPool(None, 3, caller_works=True) as pool:
        assert pool.processes == 2
        results = list(pool.map(_square_where, range(12), here=_square_where))
    assert [r[0] for r in results] == list(range(12))
    assert [r[1] for r in results] == [t * t for t in range(12)]
    assert results[0][2] == os.getpid()  # the first task ran here while the workers started
    here = [r for r in results if r[2] == os.getpid()]
    elsewhere = {r[2] for r in results} - {os.getpid()}
    assert 1 <= len(here) < 12 and 1 <= len(elsewhere) <= 2  # both the caller and the workers scored
    share = max(1, parallel.available_cores() // 3)
    assert {r[3] for r in results} == {share}  # here too, only while a task runs
    assert os.environ.get(parallel.THREADS_ENV) == budget_before  # this process's budget is as it was


def test_a_pool_the_caller_works_in_needs_two_workers():
    with pytest.raises(ValueError, match="at least 2 workers"):
        parallel.WorkerPool(None, 1, caller_works=True)


def test_an_error_in_a_task_run_here_is_raised_as_it_was():
    with parallel.WorkerPool(None, 2, caller_works=True) as pool:
        with pytest.raises(DataError, match="chunk 3 is bad"):
            list(pool.map(_fails_on_three, range(8), here=_fails_on_three))


def _state_offset(task: int) -> int:
    return task + parallel.worker_state().offset


def test_a_pool_started_before_its_state_waits_for_it():
    with parallel.WorkerPool(parallel.LATER, 3, caller_works=True, preload=("json",)) as pool:
        time.sleep(0.5)  # the workers are up and waiting
        pool.share(_Counter(offset=1000))
        with pytest.raises(RuntimeError, match="given already"):
            pool.share(_Counter(offset=0))
        results = list(pool.map(_state_offset, range(8), here=lambda task: task + 1000))
    assert results == [t + 1000 for t in range(8)]


def test_a_pool_closed_before_its_state_was_given_stops_its_waiting_workers():
    started = time.monotonic()
    pool = parallel.WorkerPool(parallel.LATER, 3)
    processes = list(pool._executor._processes.values())
    assert processes
    pool.close()
    assert all(not process.is_alive() for process in processes) and time.monotonic() - started < 30
