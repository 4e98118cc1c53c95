"""Tests for crmscore.tracking: where the MLflow store lives and how crmscore connects to it."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import mlflow
import pytest

from crmscore import tracking
from crmscore.errors import TrackingError

# Environment variables that configure() or mlflow.set_tracking_uri() may write into
# os.environ; they are restored after each test so no state leaks between tests.
_TOUCHED_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    *tracking.REMOTE_HTTP_DEFAULTS,
)


@pytest.fixture(autouse=True)
def isolated_mlflow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    saved_env = {name: os.environ.get(name) for name in _TOUCHED_ENV}
    for name in _TOUCHED_ENV:
        monkeypatch.delenv(name, raising=False)
    # Run from an empty folder so a stray ./mlruns or ./mlartifacts would be noticed.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tracking, "_echoed_default_uri", None)
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    for name, value in saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _file_uri_to_path(uri: str) -> Path:
    return Path(unquote(urlsplit(uri).path))


def test_default_uri_is_sqlite_under_models_dir_and_creates_nothing(tmp_path: Path) -> None:
    models = tmp_path / "models"
    uri = tracking.tracking_uri(models)
    root = tracking.artifact_root(models)
    tracking.ui_command(models)

    assert uri == f"sqlite:///{(models / tracking.DEFAULT_DB_NAME).as_posix()}"
    assert root.startswith("file://")
    assert _file_uri_to_path(root) == models / tracking.ARTIFACTS_DIR_NAME
    assert not models.exists()
    assert list((tmp_path / "cwd").iterdir()) == []


def test_relative_models_dir_is_made_absolute(tmp_path: Path) -> None:
    uri = tracking.tracking_uri("models")
    expected = (tmp_path / "cwd" / "models" / "mlflow.db").as_posix()
    assert uri == f"sqlite:///{expected}"


def test_configure_creates_db_and_experiment_under_models_dir(tmp_path: Path) -> None:
    models = tmp_path / "models"
    experiment_id = tracking.configure(models, experiment="churn")

    assert (models / tracking.DEFAULT_DB_NAME).is_file()
    assert mlflow.get_tracking_uri() == tracking.tracking_uri(models)
    assert mlflow.get_registry_uri() == tracking.tracking_uri(models)
    experiment = mlflow.MlflowClient().get_experiment(experiment_id)
    assert experiment.name == "churn"
    assert _file_uri_to_path(experiment.artifact_location) == models / "mlartifacts" / "churn"
    # Even the built-in "Default" experiment points under models/, not ./mlruns.
    default = mlflow.MlflowClient().get_experiment("0")
    assert _file_uri_to_path(default.artifact_location).is_relative_to(models / "mlartifacts")
    # A second call reuses the same experiment instead of failing or duplicating it.
    assert tracking.configure(models, experiment="churn") == experiment_id


def test_logged_run_reads_back_with_artifact_under_models_dir(tmp_path: Path) -> None:
    models = tmp_path / "models"
    experiment_id = tracking.configure(models, experiment="crmscore")

    with mlflow.start_run() as run:
        mlflow.log_params({"learning_rate": 0.05, "num_leaves": 31})
        mlflow.log_metric("auc", 0.8125)
        mlflow.log_text("hello crmscore\n", "notes/readme.txt")

    client = mlflow.MlflowClient(tracking_uri=tracking.tracking_uri(models))
    stored = client.get_run(run.info.run_id)
    assert stored.info.experiment_id == experiment_id
    assert stored.data.params == {"learning_rate": "0.05", "num_leaves": "31"}
    assert stored.data.metrics == {"auc": 0.8125}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "notes")] == ["notes/readme.txt"]

    artifact_file = _file_uri_to_path(stored.info.artifact_uri) / "notes" / "readme.txt"
    assert artifact_file.is_file()
    assert artifact_file.is_relative_to(models / tracking.ARTIFACTS_DIR_NAME)
    assert artifact_file.read_text() == "hello crmscore\n"
    downloaded = client.download_artifacts(run.info.run_id, "notes/readme.txt", str(tmp_path))
    assert Path(downloaded).read_text() == "hello crmscore\n"
    # Nothing leaked into the working directory (no ./mlruns, ./mlartifacts, ./mlflow.db).
    assert list((tmp_path / "cwd").iterdir()) == []


def test_env_tracking_uri_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    elsewhere = tmp_path / "shared" / "team.db"
    elsewhere.parent.mkdir()
    env_uri = f"sqlite:///{elsewhere.as_posix()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env_uri)

    assert tracking.tracking_uri(models) == env_uri
    argv = tracking.ui_command(models)
    assert env_uri in argv and "--default-artifact-root" not in argv

    tracking.configure(models, experiment="crmscore")
    assert mlflow.get_tracking_uri() == env_uri
    assert elsewhere.is_file()
    assert not models.exists()


def test_empty_env_tracking_uri_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "  ")
    assert tracking.tracking_uri(tmp_path / "models").startswith("sqlite:///")


def test_second_models_dir_is_not_shadowed_by_mlflow_env_echo(tmp_path: Path) -> None:
    # mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI; that must not be mistaken for a
    # user setting when another models folder is configured in the same process.
    first, second = tmp_path / "a", tmp_path / "b"
    tracking.configure(first)
    assert os.environ.get("MLFLOW_TRACKING_URI") == tracking.tracking_uri(first)
    assert tracking.tracking_uri(second).endswith("/b/mlflow.db")

    tracking.configure(second)
    assert mlflow.get_tracking_uri() == tracking.tracking_uri(second)
    assert (second / "mlflow.db").is_file()


def test_unreachable_http_server_raises_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    start = time.monotonic()
    with pytest.raises(TrackingError) as excinfo:
        tracking.configure()
    elapsed = time.monotonic() - start

    assert elapsed < 30
    message = str(excinfo.value)
    assert f"MLflow tracking server at {uri} is unreachable" in message
    assert "\n" not in message
    # MLflow's own retries are shortened for later calls, but only where the user left them.
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "30"


def test_user_http_settings_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    with pytest.raises(TrackingError):
        tracking.configure()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"


def test_silent_http_server_times_out() -> None:
    # A socket that accepts connections but never answers: the probe must give up on its own.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        uri = f"http://127.0.0.1:{server.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(TrackingError, match="is unreachable"):
            tracking._check_reachable(uri, timeout_s=1.0)
        assert time.monotonic() - start < 5


def test_ui_command_targets_the_same_store(tmp_path: Path) -> None:
    models = tmp_path / "models"
    argv = tracking.ui_command(models, host="0.0.0.0", port=5123)

    assert argv[:4] == [sys.executable, "-m", "mlflow", "ui"]
    assert argv[argv.index("--backend-store-uri") + 1] == tracking.tracking_uri(models)
    assert argv[argv.index("--default-artifact-root") + 1] == tracking.artifact_root(models)
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert argv[argv.index("--port") + 1] == "5123"
    assert all(isinstance(part, str) for part in argv)


def test_quiet_mlflow_restores_logger_levels() -> None:
    import logging

    logger = logging.getLogger("alembic")
    before = logger.level
    with tracking.quiet_mlflow():
        assert logger.level == logging.WARNING
    assert logger.level == before


@pytest.mark.skipif(os.name != "posix", reason="process liveness is checked on POSIX only")
def test_runs_left_running_by_a_dead_process_of_this_host_are_closed_others_kept(tmp_path: Path) -> None:
    import subprocess

    experiment_id = tracking.configure(tmp_path / "models", experiment="crmscore")
    client = tracking.client()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid names no process now
    host = socket.gethostname()

    def running(tags: dict[str, str]) -> str:
        return client.create_run(experiment_id, tags=tags).info.run_id  # left RUNNING, as by kill -9

    dead = running({tracking.PID_TAG: str(gone.pid), tracking.HOST_TAG: host})
    alive = running({tracking.PID_TAG: str(os.getpid()), tracking.HOST_TAG: host})
    elsewhere = running({tracking.PID_TAG: str(gone.pid), tracking.HOST_TAG: host + "-other"})
    untagged = running({})

    with tracking.start_run("next") as run:
        assert run.data.tags[tracking.PID_TAG] == str(os.getpid()) and run.data.tags[tracking.HOST_TAG] == host
    status = {run_id: client.get_run(run_id).info.status for run_id in (dead, alive, elsewhere, untagged)}
    assert status == {dead: "KILLED", alive: "RUNNING", elsewhere: "RUNNING", untagged: "RUNNING"}
    assert client.get_run(dead).data.tags["crmscore.abandoned"] == f"process {gone.pid} ended without closing it"
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert tracking.close_abandoned_runs() == []  # nothing more to close


def test_alias_is_never_set_on_a_version_that_is_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class Version:
        status = "PENDING_REGISTRATION"

    class Client:
        def get_model_version(self, name, version):
            return Version()

        def set_registered_model_alias(self, name, alias, version):
            calls.append((name, alias, version))

    monkeypatch.setattr(tracking, "client", Client)
    with pytest.raises(TrackingError) as raised:
        tracking.set_alias("crmscore-churn", tracking.CHAMPION, 3)
    assert str(raised.value) == (
        "crmscore-churn: version 3 is not ready (PENDING_REGISTRATION); alias champion is left as it was"
    )
    assert calls == []
    Version.status = "READY"
    tracking.set_alias("crmscore-churn", tracking.CHAMPION, 3)
    assert calls == [("crmscore-churn", "champion", "3")]
