"""Worker processes that run one function over many tasks and hand the results back in task order.

Scoring uses it to score customer chunks on every core (``crmscore score --workers N``); the module
itself knows nothing of scoring. :func:`ordered_map` starts ``workers`` processes, gives each the same
*state* once (the models and the input, pickled here and unpickled there: a worker never loads them
again per task), keeps at most a few tasks per worker in flight so that memory stays bounded, and
yields the results in the order of the tasks whichever worker finished first.

Processes are *spawned*, never forked: a forked child of a process that already ran OpenMP (LightGBM)
or numba threads can hang, and notebooks that trained a model before scoring are such processes. Each
worker limits its own threads (OpenMP, and the TreeSHAP threads through :func:`thread_budget`) to its
share of the cores, set before the state is unpickled and LightGBM is loaded.

A worker that dies (killed, out of memory) stops the whole map with one line naming the task it was
running (:class:`WorkerDied`); an exception raised in a worker is raised again here as it was.
"""

from __future__ import annotations

import contextlib
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
    "WorkerDied",
    "WorkerPool",
    "available_cores",
    "ordered_map",
    "resolve_workers",
    "thread_budget",
    "worker_state",
]

#: Environment variable holding a worker's thread budget (see :func:`thread_budget`).
THREADS_ENV = "CRMSCORE_THREADS"
#: Tasks in flight per worker: enough to keep every worker busy while results are handed back in order.
TASKS_PER_WORKER = 2

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


def _start_worker(threads: int, state_file: str) -> None:
    """Initializer of each worker: limit threads, then unpickle the shared state (which loads LightGBM)."""
    global _STATE
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which stops the workers
    signal.signal(signal.SIGTERM, _stopped)
    for name in ("OMP_NUM_THREADS", THREADS_ENV):
        os.environ[name] = str(threads)
    with open(state_file, "rb") as file:
        _STATE = pickle.load(file)


class WorkerPool:
    """``workers`` spawned processes that each got ``state`` once; started at once, so that they load while the
    caller goes on with its own work, and stopped by :meth:`close` (or leaving the ``with`` block).

    The state goes through a file, not the pipe a worker is started through: the parent writes that pipe
    while it still holds its reading end, so a worker killed while starting would block a large write.
    """

    def __init__(self, state: Any, workers: int) -> None:
        self.workers = workers
        self._folder = tempfile.TemporaryDirectory(prefix="crmscore-workers-")
        self.folder = self._folder.name
        state_file = os.path.join(self.folder, "state.pickle")
        with open(state_file, "wb") as file:
            pickle.dump(state, file, protocol=pickle.HIGHEST_PROTOCOL)
        threads = max(1, available_cores() // workers)
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=get_context("spawn"),
            initializer=_start_worker,
            initargs=(threads, state_file),
        )
        self._pending: deque[tuple[int, str, Future]] = deque()
        for _ in range(workers):  # one process is spawned per task submitted while none is idle
            self._executor.submit(os.getpid)

    def map(self, function: Callable[[Any], Any], tasks: Iterable[Any], describe: Callable[[Any], str] = str):
        """``function(task)`` for every task, yielded in task order (see :func:`ordered_map`)."""
        # Per task in flight: its number and description (not the task itself: it may be large), its future.
        pending = self._pending
        numbered = enumerate(tasks)

        def submit(number: int, task: Any) -> None:
            try:
                future = self._executor.submit(_run, function, task, number, self.folder)
            except BrokenProcessPool:  # a worker died before it had a task (while starting, or idle)
                what = _task_of_dead_worker(self.folder, {n: w for n, w, _ in pending}, patience=0.5)
                message = f"while {what}" if what else f"before {describe(task)}"
                raise _died(message) from None
            pending.append((number, describe(task), future))

        for number, task in numbered:
            submit(number, task)
            if len(pending) >= self.workers * TASKS_PER_WORKER:
                break
        task = None
        while pending:
            number, what, future = pending[0]
            try:
                result = future.result()
            except BrokenProcessPool:
                what = _task_of_dead_worker(self.folder, {n: w for n, w, _ in pending}) or what
                raise _died(f"while {what}") from None
            pending.popleft()
            for following in numbered:  # top up before handing the result back: the workers keep going
                submit(*following)
                following = None
                break
            del future
            yield result

    def close(self) -> None:
        """Stop the workers now: cancel what has not started and end what runs (its result is not needed)."""
        pending = [future for _, _, future in self._pending]
        for future in pending:
            future.cancel()
        if any(not future.done() for future in pending):
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
