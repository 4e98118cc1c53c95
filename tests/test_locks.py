"""One run at a time writes an output folder: the lock file, its note, its message, and two real `crmscore score`s.

The lock tests without models use a folder of their own; the command-line tests share one workspace (module
scope): 1,500 simulated customers and a churn champion trained with a tiny budget in a SQLite MLflow store.
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

import pandas as pd
import pytest
from tests.conftest import hooked_crmscore, mlflow_workspace, workspace_settings, write_params

from crmscore import locks
from crmscore.errors import LockedError
from crmscore.locks import folder_lock, lock_file, lock_holder
from crmscore.scoring import SCORE_COLUMNS, atomic_dir, scoring_dir
from crmscore.stages import score_stage, simulate_stage, train_churn_stage

pytestmark = pytest.mark.skipif(os.name != "posix", reason="locks are tested with fcntl and kill -9")

CRMSCORE = [sys.executable, "-m", "crmscore.cli"]
AS_OF = "2026-09-30"

# A process that holds a folder's lock until its standard input closes.
HOLD = (
    "import sys\n"
    "from crmscore.locks import folder_lock\n"
    "with folder_lock(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.read()\n"
)
# A process that tries to take a folder's lock and prints what happened.
TRY = (
    "import sys\n"
    "from crmscore.errors import LockedError\n"
    "from crmscore.locks import folder_lock\n"
    "try:\n"
    "    with folder_lock(sys.argv[1]):\n"
    "        print('took it')\n"
    "except LockedError as exc:\n"
    "    print(exc)\n"
)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in {"MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"}}


def _holder(target: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(target)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "held\n"
    return proc


def _let_go(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def _try(target: Path) -> str:
    return subprocess.run(
        [sys.executable, "-c", TRY, str(target)], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()


def _message(target: Path, note: dict) -> str:
    return (
        f"{target}: another crmscore run (pid {note['pid']} on {note['host']}, started {note['started']}) is "
        "writing this folder; wait for it to finish and run again, or write to another folder (--out)"
    )


# --- the lock itself --------------------------------------------------------------------------------------


def test_lock_file_beside_the_folder_names_this_run_and_goes_when_released(tmp_path):
    target = tmp_path / "out" / "as_of=2026-01-31"
    assert lock_file(target) == tmp_path / "out" / ".as_of=2026-01-31.lock"
    with folder_lock(target) as locked:
        assert locked
        note = lock_holder(target)
        assert note["pid"] == os.getpid() and note["host"] == socket.gethostname()
        started = pd.Timestamp(note["started"])
        assert abs((pd.Timestamp.now(tz=started.tz) - started).total_seconds()) < 60
        assert not target.exists()  # the lock creates the parent folder only
    assert not (tmp_path / "out").exists()  # the folder the lock created goes with it, left empty
    assert lock_holder(target) is None


def test_another_process_is_refused_with_one_line_naming_the_holder(tmp_path):
    target = tmp_path / "out" / "as_of=2026-01-31"
    with folder_lock(target):
        refused = _try(target)
        assert refused == _message(target, lock_holder(target))
        assert f"pid {os.getpid()} on " in refused and "\n" not in refused
    assert _try(target) == "took it"


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    target = tmp_path / "as_of=2026-01-31"
    with folder_lock(target), folder_lock(target) as again:
        assert again
        assert _try(target).startswith(f"{target}: another crmscore run (pid {os.getpid()} ")
    with folder_lock(target):  # held once more after the inner one let go
        assert _try(target).startswith(f"{target}: another crmscore run")
    assert _try(target) == "took it"


def test_a_holder_killed_with_sigkill_leaves_the_folder_free(tmp_path):
    target = tmp_path / "as_of=2026-01-31"
    proc = _holder(target)
    assert lock_holder(target)["pid"] == proc.pid
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert lock_holder(target)["pid"] == proc.pid  # its note stays, its lock does not
    with folder_lock(target) as locked:
        assert locked and lock_holder(target)["pid"] == os.getpid()
    assert not lock_file(target).exists()


def test_atomic_dir_refuses_a_folder_another_process_writes_and_leaves_it_whole(tmp_path):
    target = tmp_path / "out" / "as_of=2026-01-31"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    proc = _holder(target)
    try:
        with pytest.raises(LockedError) as raised, atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("second")
        assert str(raised.value) == _message(target, lock_holder(target))
    finally:
        _let_go(proc)
    assert (target / "a.txt").read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_atomic_dir_removes_what_a_killed_writer_left(tmp_path):
    target = tmp_path / "out" / "as_of=2026-01-31"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    dies = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from crmscore.scoring import atomic_dir\n"
        "with atomic_dir(sys.argv[1]) as tmp:\n"
        "    (tmp / 'a.txt').write_text('partial')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", dies, str(target)], timeout=60)
    assert killed.returncode == -signal.SIGKILL
    left = sorted(p.name for p in target.parent.iterdir() if p.name.endswith(".tmp"))
    assert len(left) == 1  # the killed run's temporary folder (and its lock file) stay behind
    assert (target / "a.txt").read_text() == "first"

    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("second")
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]
    assert (target / "a.txt").read_text() == "second"


def test_without_file_locks_the_folder_is_written_unlocked(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(locks, "fcntl", None)
    monkeypatch.setattr(locks, "msvcrt", None)
    target = tmp_path / "as_of=2026-01-31"
    with caplog.at_level("DEBUG", logger="crmscore"), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("unlocked")
        assert not lock_file(target).exists()
    assert (target / "a.txt").read_text() == "unlocked"
    assert f"no file locking on this system: {target} is written without a lock" in caplog.text


# --- `crmscore score` runs for the same folder -------------------------------------------------------------


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Simulated input and a registered churn champion; returns the params file."""
    root = tmp_path_factory.mktemp("locks")
    with mlflow_workspace(root):
        budget = {"trials": 2, "timeout_seconds": 600, "max_trees": 150}
        settings = workspace_settings(root, churn={"train_cutoffs": 2, "tuning": budget})
        simulate_stage(settings)
        assert train_churn_stage(settings).promoted
        yield settings, write_params(settings, root / "params.yaml")


def _score_argv(params: Path, out: Path) -> list[str]:
    return ["score", "--as-of", AS_OF, "--out", str(out), "--params", str(params)]


def _score(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)


def _check_complete(folder: Path, settings) -> None:
    """A whole scoring folder: every output, one row per known customer, a manifest that counts them."""
    assert sorted(p.name for p in folder.iterdir()) == [
        "explanations.parquet",
        "manifest.json",
        "rejects",
        "scores.parquet",
        "tier_migration.csv",
    ]
    scores = pd.read_parquet(folder / "scores.parquet")
    customers = pd.read_parquet(Path(settings.paths.simulated_dir) / "customers.parquet")
    known = customers.loc[customers["signup_date"] <= pd.Timestamp(AS_OF), "customer_id"]
    assert list(scores.columns) == SCORE_COLUMNS
    assert sorted(scores["customer_id"]) == sorted(known)
    assert scores["churn_probability"].between(0, 1).all()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["scored"] == len(known) and manifest["as_of"] == AS_OF
    assert len(pd.read_parquet(folder / "explanations.parquet")) == manifest["explanations"] > 0


@pytest.mark.slow
def test_score_while_another_run_holds_the_folder_exit_2_with_one_line(ws, tmp_path):
    settings, params = ws
    out = tmp_path / "out"
    target = scoring_dir(out, pd.Timestamp(AS_OF))
    with folder_lock(target):
        refused = _score(CRMSCORE + _score_argv(params, out), tmp_path)
        note = lock_holder(target)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.splitlines() == [f"error: {_message(target, note)}"]
    assert "Traceback" not in refused.stdout + refused.stderr and refused.stdout == ""
    assert not out.exists()  # nothing written, the lock file and its folder gone with their holder

    done = _score(CRMSCORE + _score_argv(params, out), tmp_path)  # free again
    assert done.returncode == 0, done.stderr
    _check_complete(target, settings)
    assert sorted(p.name for p in out.iterdir()) == [target.name]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "function"),
    [("stages", "load_scoring_models"), ("scoring", "score_chunk")],
    ids=["before-models-and-input", "while-scoring"],
)
def test_two_score_runs_at_once_one_writes_the_folder_the_other_exits_2(ws, tmp_path, module, function):
    """A real race: the first run is held at a step (before it loads the models and reads the input, or
    inside its scoring) while the second starts; the second exits 2 naming the first, and the first then
    finishes a whole folder."""
    settings, params = ws
    out = tmp_path / "out"
    target = scoring_dir(out, pd.Timestamp(AS_OF))
    ready, go = tmp_path / "first-is-scoring", tmp_path / "go"
    wait_for_go = f"""
    Path({str(ready)!r}).touch()
    deadline = time.monotonic() + 120
    while not Path({str(go)!r}).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    """
    first = subprocess.Popen(
        hooked_crmscore(tmp_path, module, function, wait_for_go) + _score_argv(params, out),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first run never reached its scoring"
            time.sleep(0.05)
        note = lock_holder(target)
        assert note["pid"] == first.pid

        second = _score(CRMSCORE + _score_argv(params, out), tmp_path)
        assert second.returncode == 2, second.stderr
        assert second.stderr.splitlines() == [f"error: {_message(target, note)}"]
        assert "Traceback" not in second.stdout + second.stderr
        assert first.poll() is None  # still scoring, undisturbed
    finally:
        go.touch()
        stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert "scored " in stdout
    _check_complete(target, settings)
    assert sorted(p.name for p in out.iterdir()) == [target.name]  # no lock file, no temporary folder


@pytest.mark.slow
def test_score_stage_refuses_a_locked_folder_for_python_callers_too(ws, tmp_path):
    """`crmscore run` and notebooks score through score_stage: the same error, nothing written."""
    settings, _ = ws
    out = tmp_path / "out"
    target = scoring_dir(out, pd.Timestamp(AS_OF))
    proc = _holder(target)
    try:
        with pytest.raises(LockedError) as raised:
            score_stage(settings, AS_OF, out_dir=out, progress=False)
        assert str(raised.value) == _message(target, lock_holder(target))
    finally:
        _let_go(proc)
    assert not out.exists()
