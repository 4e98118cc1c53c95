"""Worker processes that run one function over many tasks and hand the results back in task order.

Scoring uses it to score customer chunks on every core (``crmscore score --workers N``); the module
itself knows nothing of scoring. :func:`ordered_map` starts ``workers`` processes, gives each the same
*state* once (the models and the input, pickled here and unpickled there: a worker never loads them
again per task), keeps at most a few tasks per worker in flight so that memory stays bounded, and
yields the results in the order of the tasks whichever worker finished first. The calling process can
be one of the workers (``WorkerPool(..., caller_works=True)``): it scores a first task it already holds
while the others start, then a task whenever the next result in order is not ready.

Processes are *spawned*, never forked: a forked child of a process that already ran OpenMP (LightGBM)
or numba threads can hang, and notebooks that trained a model before scoring are such processes. Each
worker limits its own threads (OpenMP, and the TreeSHAP threads through :func:`thread_budget`) to its
share of the cores, set before the state is unpickled and LightGBM is loaded.

A worker that dies (killed, out of memory) stops the whole map with one line naming the task it was
running (:class:`WorkerDied`); an exception raised in a worker is raised again here as it was.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import pickle
import signal
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any

from crmscore.errors import CrmscoreError

__all__ = [
    "LATER",
    "WorkerDied",
    "WorkerPool",
    "available_cores",
    "limited_threads",
    "ordered_map",
    "resolve_workers",
    "thread_budget",
    "worker_state",
]

#: Environment variable holding a worker's thread budget (see :func:`thread_budget`).
THREADS_ENV = "CRMSCORE_THREADS"
#: Tasks in flight per worker: enough to keep every worker busy while results are handed back in order.
TASKS_PER_WORKER = 2
#: Results the caller computed that may wait for an earlier task's (see :meth:`WorkerPool.map`).
HELD_HERE = 2

_STATE: Any = None
_FOLDER: str | None = None  # a worker's folder of running notes


class WorkerDied(CrmscoreError):
    """A worker process ended without a result (killed, or out of memory); nothing was written."""


def available_cores() -> int:
    """Cores this process may run on: its affinity mask where the OS has one, else the CPU count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_budget() -> int:
    """Threads one process should use: its share of the cores in a worker, else every core it may use."""
    cores = available_cores()
    budget = os.environ.get(THREADS_ENV, "")
    return max(1, min(cores, int(budget))) if budget.isdigit() else cores


def resolve_workers(workers: int | None, tasks: int) -> int:
    """Worker processes to use: ``workers`` (``None``: every core the process may use), at most one per task.

    One worker means no worker process at all: the tasks run in this process.
    """
    if workers is not None and workers < 1:
        raise CrmscoreError(f"workers {workers}: expected a positive number of worker processes")
    wanted = available_cores() if workers is None else workers
    return max(1, min(wanted, tasks))


def worker_state() -> Any:
    """The state :func:`ordered_map` gave this worker process (``None`` outside a worker)."""
    return _STATE


def _start_worker(threads: int, state_file: str, parent: int, preload: tuple[str, ...]) -> None:
    """Initializer of each worker: limit threads, import ``preload``, wait for the shared state (see
    :meth:`WorkerPool.share`), then unpickle it (which loads LightGBM)."""
    global _STATE
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which stops the workers
    signal.signal(signal.SIGTERM, _stopped)
    for name in ("OMP_NUM_THREADS", THREADS_ENV):
        os.environ[name] = str(threads)
    for module in preload:  # while the parent prepares the state
        importlib.import_module(module)
    while not os.path.exists(state_file):
        if os.getppid() != parent:  # the parent ended without sharing it
            os._exit(1)
        time.sleep(0.01)
    with open(state_file, "rb") as file:
        _STATE = pickle.load(file)
    # What is loaded now lives as long as the worker: out of the collector's sight, a full collection
    # after each task (see crmscore.io.release_memory) looks only at that task's objects.
    gc.freeze()


#: The state of a :class:`WorkerPool` started before its state exists: given later by :meth:`WorkerPool.share`.
LATER = object()


class WorkerPool:
    """``workers`` processes scoring side by side, started at once so that they load while the caller goes on
    with its own work, and stopped by :meth:`close` (or leaving the ``with`` block).

    Each spawned process gets ``state`` once: given here, or later through :meth:`share` when the pool is
    started with :data:`LATER` before the state exists (the processes start and import ``preload``
    meanwhile). With ``caller_works`` the calling process is one of the
    ``workers`` (``workers - 1`` are spawned): it runs tasks itself through :meth:`map`'s ``here``, so no
    process sits idle waiting for results, and a first task it already holds is not handed over.

    The state goes through a file, not the pipe a worker is started through: the parent writes that pipe
    while it still holds its reading end, so a worker killed while starting would block a large write.
    """

    def __init__(self, state: Any, workers: int, caller_works: bool = False, preload: tuple[str, ...] = ()) -> None:
        if caller_works and workers < 2:
            raise ValueError("a pool the caller works in needs at least 2 workers")
        self.workers = workers
        self.processes = workers - 1 if caller_works else workers
        #: Threads each process uses (the caller too, while it runs tasks): its share of the cores.
        self.threads = max(1, available_cores() // workers)
        self._folder = tempfile.TemporaryDirectory(prefix="crmscore-workers-")
        self.folder = self._folder.name
        self._state_file = os.path.join(self.folder, "state.pickle")
        self.shared = False
        self._closed = False
        if state is not LATER:
            self.share(state)
        self._executor = ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=get_context("spawn"),
            initializer=_start_worker,
            initargs=(self.threads, self._state_file, os.getpid(), tuple(preload)),
        )
        self._pending: deque[tuple[int, str, Future]] = deque()
        for _ in range(self.processes):  # one process is spawned per task submitted while none is idle
            self._executor.submit(os.getpid)

    def share(self, state: Any) -> None:
        """Give the workers their state (once; for a pool started with :data:`LATER`): they wait for it."""
        if self.shared:
            raise RuntimeError("the workers' state was given already")
        partial = self._state_file + ".partial"
        with open(partial, "wb") as file:
            pickle.dump(state, file, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(partial, self._state_file)  # a worker sees the whole file or none
        self.shared = True

    def map(
        self,
        function: Callable[[Any], Any],
        tasks: Iterable[Any],
        describe: Callable[[Any], str] = str,
        here: Callable[[Any], Any] | None = None,
    ) -> Iterator[Any]:
        """``function(task)`` for every task, yielded in task order (see :func:`ordered_map`).

        ``here`` (the same work, run in this process; for a pool the caller works in) runs the first task
        while the workers start, and then the next task whenever the next result in order is not ready;
        at most :data:`HELD_HERE` of its results wait for an earlier one.
        """
        tasks_out = _Dispatch(self, function, tasks, describe)
        held: dict[int, Any] = {}  # results computed here, by task number
        if here is not None and (first := tasks_out.take()) is not None:
            tasks_out.top_up()
            held[first[0]] = self._here(here, first[1])
        tasks_out.top_up()
        pending = self._pending
        number = 0
        while True:
            if number in held:
                result = held.pop(number)
            elif pending:  # the head of the workers' tasks is next in order
                waiting = not pending[0][2].done() and here is not None and len(held) < HELD_HERE
                if waiting and (following := tasks_out.take()) is not None:
                    held[following[0]] = self._here(here, following[1])
                    continue
                result = tasks_out.head_result()
            else:
                return
            tasks_out.top_up()  # before handing the result back: the workers keep going
            yield result
            number += 1

    def _here(self, function: Callable[[Any], Any], task: Any) -> Any:
        """``function(task)`` in this process, within its share of the cores."""
        with limited_threads(self.threads):
            return function(task)

    def close(self) -> None:
        """Stop the workers now: cancel what has not started and end what runs (its result is not needed)."""
        if self._closed:
            return
        self._closed = True
        pending = [future for _, _, future in self._pending]
        for future in pending:
            future.cancel()
        if not self.shared or any(not future.done() for future in pending):  # waiting for a state, or busy
            for process in list(getattr(self._executor, "_processes", {}).values()):
                with contextlib.suppress(Exception):
                    process.terminate()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()
        self._folder.cleanup()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Dispatch:
    """The tasks of one :meth:`WorkerPool.map`, taken in order: by the workers (a few each in flight, at
    most :data:`TASKS_PER_WORKER`) or by the caller."""

    def __init__(self, pool: WorkerPool, function: Callable[[Any], Any], tasks: Iterable[Any], describe) -> None:
        self.pool, self.function, self.describe = pool, function, describe
        self.numbered = enumerate(tasks)

    def take(self) -> tuple[int, Any] | None:
        """The next task and its number; None when every task is taken."""
        return next(self.numbered, None)

    def top_up(self) -> None:
        """Give the workers tasks until each has its share in flight."""
        while len(self.pool._pending) < self.pool.processes * TASKS_PER_WORKER:
            following = self.take()
            if following is None:
                return
            self.submit(*following)

    def submit(self, number: int, task: Any) -> None:
        pending = self.pool._pending
        try:
            future = self.pool._executor.submit(_run, self.function, task, number, self.pool.folder)
        except BrokenProcessPool:  # a worker died before it had a task (while starting, or idle)
            what = _task_of_dead_worker(self.pool.folder, {n: w for n, w, _ in pending}, patience=0.5)
            message = f"while {what}" if what else f"before {self.describe(task)}"
            raise _died(message) from None
        pending.append((number, self.describe(task), future))

    def head_result(self) -> Any:
        """The result of the workers' oldest task, once it is done."""
        pending = self.pool._pending
        _, what, future = pending[0]
        try:
            result = future.result()
        except BrokenProcessPool:
            what = _task_of_dead_worker(self.pool.folder, {n: w for n, w, _ in pending}) or what
            raise _died(f"while {what}") from None
        pending.popleft()
        return result


@contextlib.contextmanager
def limited_threads(threads: int) -> Iterator[None]:
    """This process's OpenMP threads (LightGBM) and thread budget (:func:`thread_budget`) at ``threads``
    for the block."""
    from threadpoolctl import threadpool_limits

    before = os.environ.get(THREADS_ENV)
    os.environ[THREADS_ENV] = str(threads)
    try:
        with threadpool_limits(limits=threads, user_api="openmp"):
            yield
    finally:
        if before is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = before


def ordered_map(
    function: Callable[[Any], Any],
    tasks: Iterable[Any],
    workers: int,
    state: Any,
    describe: Callable[[Any], str] = str,
) -> Iterator[Any]:
    """``function(task)`` for every task in ``workers`` spawned processes, yielded in task order.

    ``function`` must be importable (a module-level function); it reads the shared ``state`` through
    :func:`worker_state`. ``describe(task)`` names a task in the one-line error raised when a worker dies
    while running it. Closing the iterator early (or an error) stops the workers at once.
    """
    with WorkerPool(state, workers) as pool:
        yield from pool.map(function, tasks, describe)


def _died(when: str) -> WorkerDied:
    return WorkerDied(f"a worker process died (killed, or out of memory) {when}; nothing was written")


def _note(folder: str) -> str:
    return os.path.join(folder, f"running-{os.getpid()}")


def _run(function: Callable[[Any], Any], task: Any, number: int, folder: str) -> Any:
    """``function(task)`` in a worker, which notes the task it runs: a worker that dies without stopping (killed,
    out of memory) leaves its note, and the error names its task."""
    global _FOLDER
    _FOLDER = folder
    with open(_note(folder), "w") as note:
        note.write(str(number))
    return function(task)


def _stopped(signum: int, frame: Any) -> None:
    """A worker told to stop (the pool stops the others when one dies): leave no note, then end."""
    if _FOLDER is not None:
        with contextlib.suppress(OSError):
            os.remove(_note(_FOLDER))
    os._exit(128 + signum)


def _task_of_dead_worker(folder: str, pending: dict[int, str], patience: float = 2.0) -> str | None:
    """The description of the task a dead worker was running (None when it cannot be told).

    The pool learns of a death when the worker's pipe closes, a moment before the process shows as
    ended: look again for up to ``patience`` seconds.
    """
    deadline = time.monotonic() + patience
    while True:
        for name in os.listdir(folder):
            if not name.startswith("running-") or _alive(int(name.removeprefix("running-"))):
                continue
            with contextlib.suppress(OSError, ValueError), open(os.path.join(folder, name)) as note:
                number = int(note.read())
                if number in pending:
                    return pending[number]
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie, ended but not yet reaped, does not)."""
    if os.path.isdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
