"""Integration: crmscore against a real ``mlflow server`` over HTTP, and against servers that are not there.

One ``mlflow server`` (SQLite backend and proxied artifact store in a temporary folder, 127.0.0.1 on a
free port, one worker) runs for the whole module and is stopped by a finalizer, also when a test fails.
``crmscore run`` trains, registers and promotes the churn, CLV and segment models through it
(``MLFLOW_TRACKING_URI``, tiny tuning budgets on 1,000 simulated customers), and ``crmscore score``
loads the ``champion`` models back from it. Every command runs as a real process, so no MLflow state
leaks into the test process.

When the server cannot be reached (a closed port, a non-routable address, and for scoring a port that
accepts connections but never answers), ``crmscore train churn`` and ``crmscore score`` must stop
within 30 seconds with exit code 2 and one ``error:`` line naming the URI, and must not fall back to a
local ``models/mlflow.db``. ``crmscore train churn`` meets the server only after fitting, so its
failing cases train a deliberately tiny model. Last, the reachability probe must present the client
certificate that MLflow's client would (mutual TLS).
"""

from __future__ import annotations

import contextlib
import dataclasses
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
import requests
import yaml

from crmscore.config import Settings
from crmscore.stages import CHURN_MODEL_NAME, CLV_MODEL_NAME, SEGMENTS_MODEL_NAME, simulate_stage

pytestmark = pytest.mark.slow

CRMSCORE = [sys.executable, "-m", "crmscore.cli"]
MODEL_NAMES = (CHURN_MODEL_NAME, CLV_MODEL_NAME, SEGMENTS_MODEL_NAME)
MAX_DATE = "2026-11-23"  # the simulated history ends 2026-10-31; nothing is future-dated whatever the calendar
AS_OF = "2026-09-30"
SERVER_START_S = 120  # generous: a cold `mlflow server` takes about 10 s on an idle 2-core machine
FAIL_FAST_S = 30  # an unreachable server must be reported within this many seconds
# No host answers there, so connecting hangs until a timeout; a network with a transparent proxy may
# answer for it instead (then the first MLflow call fails). Both must end in one line, fast.
NON_ROUTABLE = "http://10.255.255.1:5000"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(tracking_uri: str | None) -> dict[str, str]:
    """This process's environment without any MLflow setting, plus the tracking URI under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    if tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def _crmscore(
    args: list[str], cwd: Path, tracking_uri: str | None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        CRMSCORE + args, cwd=cwd, env=_env(tracking_uri), capture_output=True, text=True, timeout=timeout
    )


# --- the server -----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Server:
    uri: str
    root: Path  # holds the server's mlflow.db and artifacts/
    process: subprocess.Popen


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and the uvicorn workers it started (its own process group)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
        except ProcessLookupError:
            pass
    # Workers left behind after the parent exited still belong to the group.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _server_env() -> dict[str, str]:
    env = _env(None)
    # The server's GenAI job runner starts a pool of worker processes that crmscore never uses; on a
    # small shared machine they only compete with the training for CPU.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory, request) -> Server:
    """Start the server (not yet waiting for it); the finalizer stops it whatever happens next."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{(root / 'mlflow.db').as_posix()}",
            "--serve-artifacts",
            "--artifacts-destination",
            (root / "artifacts").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=root,
        env=_server_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so the finalizer stops its workers too
    )

    def finalize() -> None:
        _stop(process)
        log.close()

    request.addfinalizer(finalize)
    return Server(f"http://127.0.0.1:{port}", root, process)


def _wait_until_healthy(server: Server) -> None:
    log = server.root / "server.log"
    deadline = time.monotonic() + SERVER_START_S
    while True:
        if server.process.poll() is not None:
            pytest.fail(f"mlflow server exited with {server.process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{server.uri}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"mlflow server not healthy after {SERVER_START_S} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


# --- input data and the workspace trained through the server ----------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """1,000 simulated customers in ``sim/`` and a ``params.yaml`` with tiny tuning budgets, paths relative."""
    root = tmp_path_factory.mktemp("inputs")
    budget = {"trials": 1, "timeout_seconds": 600, "max_trees": 100}
    settings = Settings(
        paths={"models_dir": "models", "reports_dir": "reports", "simulated_dir": "sim"},
        data={"max_date": MAX_DATE},
        simulate={"customers": 1000, "seed": 3},
        churn={"train_cutoffs": 2, "tuning": budget},
        clv={"model": "ml", "train_cutoffs": 2, "tuning": budget},
        scoring={"out_dir": "reports/scores"},
    )
    simulate_stage(settings, out_dir=root / "sim")
    (root / "params.yaml").write_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
    return root


def _workspace(inputs: Path, folder: Path) -> Path:
    """A fresh working folder with a copy of params.yaml; the input stays in ``inputs/sim``."""
    folder.mkdir(parents=True)
    (folder / "params.yaml").write_text((inputs / "params.yaml").read_text())
    return folder


def _local_store_files(folder: Path) -> list[str]:
    """What an embedded MLflow store would have written in the working folder (nothing, when all went
    to the server)."""
    candidates = ("models", "mlruns", "mlartifacts", "mlflow.db")
    return [name for name in candidates if (folder / name).exists()]


@dataclasses.dataclass
class Trained:
    folder: Path
    run: subprocess.CompletedProcess
    score: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def trained(server: Server, inputs: Path, tmp_path_factory) -> Trained:
    """`crmscore run` (train, register, promote, score) and then `crmscore score` through the server."""
    _wait_until_healthy(server)  # it started while the input was simulated
    folder = _workspace(inputs, tmp_path_factory.mktemp("served") / "ws")
    sim = str(inputs / "sim")
    run = _crmscore(["run", "--input", sim, "--params", "params.yaml"], folder, server.uri)
    assert run.returncode == 0, run.stdout + run.stderr
    score = _crmscore(
        ["score", "--as-of", AS_OF, "--input", sim, "--out", "scores", "--params", "params.yaml"], folder, server.uri
    )
    assert score.returncode == 0, score.stdout + score.stderr
    return Trained(folder, run, score)


def _client(server: Server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)


# --- through the server ---------------------------------------------------------------------------------------


def test_training_runs_are_on_the_server(server, trained):
    client = _client(server)
    experiment = client.get_experiment_by_name("crmscore")
    assert experiment is not None
    # Artifacts go through the server's proxy, not to a path of the client's machine.
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), experiment.artifact_location
    runs = client.search_runs([experiment.experiment_id])
    stages = [r.data.tags.get("crmscore.stage") for r in runs]
    # One run per training stage (the main job may log further runs, such as its report).
    for stage in ("train_churn", "train_clv", "train_segments"):
        assert stages.count(stage) == 1, stages
    assert all(r.info.status == "FINISHED" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    churn_run = next(r for r in runs if r.data.tags["crmscore.stage"] == "train_churn")
    assert "test_roc_auc" in churn_run.data.metrics
    assert churn_run.data.params["churn.tuning.trials"] == "1"
    plots = {a.path for a in client.list_artifacts(churn_run.info.run_id, "plots")}
    assert "plots/roc.png" in plots
    # The files themselves landed in the server's artifact destination.
    assert list((server.root / "artifacts").rglob("roc.png"))
    assert server.uri in trained.run.stdout  # `crmscore run` says where the runs went


def test_models_are_registered_with_aliases_on_the_server(server, trained):
    client = _client(server)
    run_ids = {r.info.run_id for r in client.search_runs([client.get_experiment_by_name("crmscore").experiment_id])}
    for name in MODEL_NAMES:
        versions = client.search_model_versions(f"name='{name}'")
        assert versions, name
        champion = client.get_model_version_by_alias(name, "champion")
        challenger = client.get_model_version_by_alias(name, "challenger")
        assert champion.run_id in run_ids, name
        # First training of each model: the newest version is both challenger and champion.
        assert champion.version == challenger.version == str(max(int(v.version) for v in versions)), name
    # The CLV run registers both candidates (BG/NBD × Gamma-Gamma and LightGBM); clv.model=ml picks LightGBM.
    assert len(client.search_model_versions(f"name='{CLV_MODEL_NAME}'")) == 2


def test_scoring_loads_the_champions_from_the_server(server, trained):
    client = _client(server)
    folder = trained.folder / "scores" / f"as_of={AS_OF}"
    manifest = json.loads((folder / "manifest.json").read_text())
    roles = {"churn": CHURN_MODEL_NAME, "clv": CLV_MODEL_NAME, "segments": SEGMENTS_MODEL_NAME}
    for role, name in roles.items():
        champion = client.get_model_version_by_alias(name, "champion")
        assert manifest["models"][role]["name"] == name
        assert str(manifest["models"][role]["version"]) == champion.version, role
        assert manifest["models"][role]["run_id"] == champion.run_id, role
    scores = pd.read_parquet(folder / "scores.parquet")
    assert len(scores) > 0
    assert scores["customer_id"].is_unique
    # `crmscore run` scored too (as of the data's last day), from the same server.
    assert list((trained.folder / "reports" / "scores").glob("as_of=*/scores.parquet"))


def test_no_local_store_was_created(trained):
    assert (trained.folder / "reports" / "scores").is_dir()  # the job did write its own outputs here
    assert _local_store_files(trained.folder) == []


# --- servers that are not there ---------------------------------------------------------------------------------


def _closed_port() -> str:
    return f"http://127.0.0.1:{_free_port()}"  # bound for a moment, then released: nothing listens


@contextlib.contextmanager
def _silent_server():
    """A port that accepts connections and never answers: what a black-holed address looks like."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.contextmanager
def _unreachable(where: str):
    if where == "closed port":
        yield _closed_port()
    elif where == "non-routable address":
        yield NON_ROUTABLE
    else:
        with _silent_server() as uri:
            yield uri


COMMANDS = {
    "train churn": ["train", "churn", "--input", "{sim}", "--params", "params.yaml"],
    "score": ["score", "--as-of", AS_OF, "--input", "{sim}", "--out", "scores", "--params", "params.yaml"],
}


@pytest.mark.parametrize(
    ("command", "where"),
    [
        ("train churn", "closed port"),
        ("train churn", "non-routable address"),
        ("score", "closed port"),
        ("score", "non-routable address"),
        ("score", "silent server"),
    ],
)
def test_unreachable_server_fails_fast_with_one_line(inputs, tmp_path, command, where):
    folder = _workspace(inputs, tmp_path / "ws")
    # Training reaches the tracking server only after fitting, so keep that fit as small as possible.
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["churn"]["train_cutoffs"] = 1
    params["churn"]["tuning"]["max_trees"] = 30
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    args = [a.replace("{sim}", str(inputs / "sim")) for a in COMMANDS[command]]

    with _unreachable(where) as uri:
        started = time.monotonic()
        result = _crmscore(args, folder, uri, timeout=120)
        elapsed = time.monotonic() - started

    assert result.returncode == 2, result.stdout + result.stderr
    assert elapsed < FAIL_FAST_S, f"{command} took {elapsed:.1f} s to report {uri}"
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert errors == result.stderr.strip().splitlines()[-1:]  # the last thing the user sees
    if where == "closed port":
        assert errors[0] == f"error: MLflow tracking server at {uri} is unreachable: connection refused"
    elif where == "silent server":
        assert errors[0].startswith(f"error: MLflow tracking server at {uri} is unreachable: ")
    else:
        # Where the address is truly non-routable the probe times out ("is unreachable"); behind a network
        # that answers for any address (a transparent proxy) the probe passes and the first MLflow call fails
        # ("cannot be used"). Either way: one line naming the URI, fast.
        assert errors[0].startswith(
            (
                f"error: MLflow tracking server at {uri} is unreachable: ",
                f"error: MLflow tracking store at {uri} cannot be used: ",
            )
        ), errors[0]
    # No silent fallback to an embedded store, and no scores written.
    assert _local_store_files(folder) == []
    assert not (folder / "scores").exists()


def test_probe_presents_the_client_certificate_mlflow_would(monkeypatch):
    """A mutual-TLS server rejects a handshake without the client certificate: the probe must send it."""
    from crmscore import tracking

    seen: list[dict] = []

    class Answer:
        status_code = 200

    def fake_get(url, **kwargs):
        seen.append({"url": url, **kwargs})
        return Answer()

    monkeypatch.setattr(requests, "get", fake_get)
    monkeypatch.delenv("MLFLOW_TRACKING_CLIENT_CERT_PATH", raising=False)
    tracking._check_reachable("https://mlflow.example:443/")
    monkeypatch.setenv("MLFLOW_TRACKING_CLIENT_CERT_PATH", "/etc/crm/client.pem")
    tracking._check_reachable("https://mlflow.example:443/")

    assert [call["url"] for call in seen] == ["https://mlflow.example:443/health"] * 2
    assert [call["cert"] for call in seen] == [None, "/etc/crm/client.pem"]
