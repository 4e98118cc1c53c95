"""Where crmscore keeps its MLflow runs and models, and how it connects to that store.

By default everything lives under one folder, ``models/``: an embedded SQLite database
(``models/mlflow.db``) for runs, experiments and the model registry, and a sibling folder
(``models/mlartifacts/``) for artifacts. Nothing is written to ``./mlruns`` or ``./mlartifacts``
of whatever directory the user happens to run from. Setting ``MLFLOW_TRACKING_URI`` points
crmscore at another store instead, typically a shared ``mlflow server`` over http(s).

The module is organised in sections that later work extends:

* store location: :func:`tracking_uri`, :func:`artifact_root`, :func:`ui_command`;
* connection: :func:`configure` (and the reachability probe for remote servers);
* helpers: :func:`quiet_mlflow`.

Logging runs, registering models, aliases (registry stages are deprecated in MLflow 3 and are
never used here) and loading champions will be added below these sections.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from crmscore.errors import DataError, TrackingError

__all__ = [
    "CHURN_MODEL_NAME",
    "CLV_MODEL_NAME",
    "SEGMENTS_MODEL_NAME",
    "registered_estimator",
    "ARTIFACTS_DIR_NAME",
    "DEFAULT_DB_NAME",
    "DEFAULT_EXPERIMENT",
    "DEFAULT_MODELS_DIR",
    "HEALTH_TIMEOUT_S",
    "REMOTE_HTTP_DEFAULTS",
    "artifact_root",
    "configure",
    "client",
    "close_abandoned_runs",
    "data_fingerprint",
    "flatten_params",
    "git_commit",
    "is_remote_uri",
    "load_model",
    "log_estimator",
    "log_track_record",
    "model_requirements",
    "promote",
    "quiet_mlflow",
    "set_alias",
    "start_run",
    "version_by_alias",
    "tracking_uri",
    "ui_command",
]

log = logging.getLogger("crmscore")

#: Names of the registered models.
CHURN_MODEL_NAME = "crmscore-churn"
CLV_MODEL_NAME = "crmscore-clv"
SEGMENTS_MODEL_NAME = "crmscore-segments"
UPLIFT_MODEL_NAME = "crmscore-uplift"

DEFAULT_DB_NAME = "mlflow.db"
ARTIFACTS_DIR_NAME = "mlartifacts"
DEFAULT_MODELS_DIR = "models"
DEFAULT_EXPERIMENT = "crmscore"

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"

# Total wall-clock budget for the reachability probe of a remote server. The probe runs in a
# daemon thread so that even a hanging DNS lookup (which requests' timeout does not cover)
# cannot stall the command line past this.
HEALTH_TIMEOUT_S = 8.0

# MLflow's own defaults (7 retries with exponential backoff, 120 s per request) turn a server
# that dies mid-session into minutes of silence. Names verified against mlflow 3.17
# (mlflow/environment_variables.py, read at request time by mlflow/utils/rest_utils.py and
# the http artifact repository). Applied only when the user has not set them.
REMOTE_HTTP_DEFAULTS: dict[str, str] = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}

# Loggers that announce routine work on every fresh SQLite store ("Creating initial MLflow
# database tables...", alembic migration steps); they are noise for a CLI user.
_NOISY_LOGGERS = (
    "alembic",
    "mlflow.store.db.utils",
    "mlflow.store.db",
    "mlflow.store.tracking",
    "mlflow.pyfunc",
    "mlflow.models",
    "mlflow.tracking._model_registry",
    "mlflow.tracking._model_registry.fluent",
)

# mlflow.set_tracking_uri() writes the URI into os.environ[MLFLOW_TRACKING_URI] so that
# subprocesses inherit it. Without remembering what we wrote, a second configure() for another
# models_dir in the same process would mistake our own echo for a user setting.
_echoed_default_uri: str | None = None


# --------------------------------------------------------------------------------------------
# Store location
# --------------------------------------------------------------------------------------------


def _models_path(models_dir: str | os.PathLike[str]) -> Path:
    return Path(models_dir).expanduser().absolute()


def _env_tracking_uri() -> str | None:
    value = os.environ.get(TRACKING_URI_ENV, "").strip()
    if not value or value == _echoed_default_uri:
        return None
    return value


def tracking_uri(models_dir: str | os.PathLike[str] = DEFAULT_MODELS_DIR) -> str:
    """Return the MLflow tracking URI crmscore uses, without creating anything.

    When the environment variable ``MLFLOW_TRACKING_URI`` is set to a non-empty value it wins,
    so a team can point every command at a shared ``mlflow server``; otherwise the URI is the
    embedded SQLite store ``sqlite:///<absolute models_dir>/mlflow.db``. The path is made
    absolute so that the same store is found whatever the working directory of a later
    process (the UI, a scoring job) turns out to be. Neither the folder nor the database is
    created here; :func:`configure` does that on first use.
    """
    env_uri = _env_tracking_uri()
    if env_uri is not None:
        return env_uri
    return f"sqlite:///{(_models_path(models_dir) / DEFAULT_DB_NAME).as_posix()}"


def artifact_root(models_dir: str | os.PathLike[str] = DEFAULT_MODELS_DIR) -> str:
    """Return the ``file://`` URI of ``<absolute models_dir>/mlartifacts``.

    This is where the embedded store keeps artifacts (model files, plots, reports), next to
    the SQLite database rather than in ``./mlruns`` of the working directory. It only has a
    meaning for the embedded store: a remote tracking server decides its own artifact
    location, so callers should not use this value when ``MLFLOW_TRACKING_URI`` is set.
    Nothing is created here.
    """
    return (_models_path(models_dir) / ARTIFACTS_DIR_NAME).as_uri()


def is_remote_uri(uri: str) -> bool:
    """Return True when ``uri`` names a tracking server reached over http or https.

    Remote servers get a reachability probe and short HTTP retries in :func:`configure`;
    every other scheme (``sqlite``, ``file``, ``postgresql`` ...) is opened in-process by
    MLflow and needs neither.
    """
    return urlsplit(uri).scheme.lower() in ("http", "https")


def ui_command(
    models_dir: str | os.PathLike[str] = DEFAULT_MODELS_DIR,
    host: str = "127.0.0.1",
    port: int = 5000,
) -> list[str]:
    """Return the argv that starts the MLflow UI against the same store crmscore writes to.

    The command runs ``python -m mlflow ui`` with the interpreter of the current environment
    (so the right MLflow version is used even when ``mlflow`` is not on ``PATH``), passing
    ``--backend-store-uri`` from :func:`tracking_uri` and, for the embedded store only,
    ``--default-artifact-root`` from :func:`artifact_root`, so that experiments created from
    the UI also keep their artifacts under ``models/``. When the URI comes from
    ``MLFLOW_TRACKING_URI`` the artifact root is left to that store. The caller runs the list
    with :mod:`subprocess`; nothing is started or created here.
    """
    uri = tracking_uri(models_dir)
    argv = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    if _env_tracking_uri() is None:
        argv += ["--default-artifact-root", artifact_root(models_dir)]
    argv += ["--host", str(host), "--port", str(int(port))]
    return argv


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_mlflow(level: int = logging.WARNING) -> Iterator[None]:
    """Silence MLflow's and alembic's routine chatter for the duration of a ``with`` block.

    Creating or migrating an SQLite store logs several INFO lines and MLflow emits
    deprecation and future warnings that a CLI user cannot act on. Inside the block the
    relevant loggers are raised to ``level`` and warnings are ignored; the previous logger
    levels and warning filters are restored on exit, even if the block raises, so tests and
    callers that want the output still get it elsewhere.
    """
    saved = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    try:
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(level)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, old_level in saved.items():
            logging.getLogger(name).setLevel(old_level)


# --------------------------------------------------------------------------------------------
# Connection
# --------------------------------------------------------------------------------------------


def _short_reason(exc: BaseException) -> str:
    # requests buries the useful part ("[Errno 111] Connection refused") inside a long repr of
    # the connection pool; the user only needs that part.
    import requests

    if isinstance(exc, requests.exceptions.Timeout):
        return "no answer before the timeout"
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if match:
        return match.group(1).strip().rstrip(".").lower()
    if isinstance(exc, requests.exceptions.SSLError):
        ssl_match = re.search(r"\[SSL: ([A-Z_]+)\]", text)
        return f"TLS error {ssl_match.group(1) if ssl_match else type(exc).__name__}"
    return text.splitlines()[0] if text else type(exc).__name__


def _tls_verify() -> bool | str:
    # Follow the same TLS settings MLflow's own client honours, so the probe does not reject
    # a server that MLflow itself would accept (self-signed certificate, private CA).
    insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").strip().lower()
    if insecure in ("1", "true", "yes"):
        return False
    cert_path = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH", "").strip()
    return cert_path or True


def _client_cert() -> str | None:
    # A server that requires a client certificate (mutual TLS) rejects a handshake without one;
    # present the same certificate MLflow's client presents, or the probe would call it unreachable.
    return os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH", "").strip() or None


def _check_reachable(uri: str, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
    import requests

    url = uri.rstrip("/") + "/health"
    outcome: dict[str, object] = {}

    def probe() -> None:
        try:
            per_phase = max(timeout_s / 2, 0.5)
            outcome["response"] = requests.get(
                url,
                timeout=(per_phase, per_phase),
                verify=_tls_verify(),
                cert=_client_cert(),
                allow_redirects=True,
            )
        except Exception as exc:  # noqa: BLE001 - any failure means "unreachable"
            outcome["error"] = exc

    worker = threading.Thread(target=probe, name="crmscore-mlflow-health", daemon=True)
    worker.start()
    worker.join(timeout_s)

    if worker.is_alive():
        reason = f"no answer within {timeout_s:g} s"
    elif "error" in outcome:
        reason = _short_reason(outcome["error"])  # type: ignore[arg-type]
    else:
        status = outcome["response"].status_code  # type: ignore[union-attr]
        # Any answer below 500 proves a server is listening (a 401 or 404 from an auth proxy
        # or a path prefix is MLflow's business to report); 5xx is what a proxy says when the
        # tracking server behind it is down.
        if status < 500:
            return
        reason = f"HTTP {status} from {url}"
    raise TrackingError(f"MLflow tracking server at {uri} is unreachable: {reason}")


def _apply_remote_http_defaults() -> None:
    for name, value in REMOTE_HTTP_DEFAULTS.items():
        if not os.environ.get(name, "").strip():
            os.environ[name] = value


def _initialise_embedded_store(uri: str, models_dir: Path) -> None:
    # MLflow's client would create the database with its default artifact root (./mlruns of
    # the working directory), which becomes the artifact location of the "Default" experiment
    # 0. Creating the store ourselves with our artifact root keeps even that one under models/.
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    models_dir.mkdir(parents=True, exist_ok=True)
    store = SqlAlchemyStore(uri, artifact_root(models_dir))
    # Release the engine's file handle now rather than at garbage collection.
    engine = getattr(store, "engine", None)
    if engine is not None:
        engine.dispose()


def _get_or_create_experiment(name: str, artifact_location: str | None) -> str:
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException:
            # Another process may have created it between our lookup and create.
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise TrackingError(
            f"MLflow experiment '{name}' is deleted in {mlflow.get_tracking_uri()}; restore it "
            f"with 'mlflow experiments restore --experiment-id {experiment.experiment_id}' "
            "or choose another experiment name"
        )
    return experiment.experiment_id


def configure(
    models_dir: str | os.PathLike[str] = DEFAULT_MODELS_DIR,
    experiment: str = DEFAULT_EXPERIMENT,
) -> str:
    """Make the tracking store ready, select ``experiment`` in it and return the experiment id.

    The URI comes from :func:`tracking_uri`. For the embedded default the ``models_dir``
    folder and the SQLite database are created on first use, and a new experiment gets the
    artifact location ``<artifact_root>/<experiment>`` so that its artifacts sit beside the
    database under ``models/``. For a remote http(s) server the server's ``/health`` endpoint
    is probed first, within a few seconds, and :class:`~crmscore.errors.TrackingError` is
    raised if it does not answer; MLflow's own HTTP retries and timeout are also shortened
    (unless the user has set them) so that later calls fail fast too. The tracking and the
    registry URI are both set to the store (the registry is used with aliases only), then the
    experiment is made active with ``mlflow.set_experiment``. Any failure the user can fix,
    such as an unwritable folder or a deleted experiment, is raised as ``TrackingError``.
    """
    global _echoed_default_uri

    uri = tracking_uri(models_dir)
    from_env = _env_tracking_uri() is not None
    remote = is_remote_uri(uri)

    # Probe before importing or calling MLflow so that an unreachable server fails in seconds,
    # not after MLflow's retries.
    if remote:
        _apply_remote_http_defaults()
        _check_reachable(uri)

    import mlflow
    from mlflow.exceptions import MlflowException

    models_path = _models_path(models_dir)
    artifact_location = None
    try:
        with quiet_mlflow():
            if not from_env:
                if not (models_path / DEFAULT_DB_NAME).exists():
                    _initialise_embedded_store(uri, models_path)
                artifact_location = (models_path / ARTIFACTS_DIR_NAME / experiment).as_uri()
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
            _echoed_default_uri = None if from_env else uri
            experiment_id = _get_or_create_experiment(experiment, artifact_location)
            mlflow.set_experiment(experiment_id=experiment_id)
    except TrackingError:
        raise
    except (MlflowException, OSError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrackingError(f"MLflow tracking store at {uri} cannot be used: {message}") from exc
    return experiment_id


# --------------------------------------------------------------------------------------------
# Run metadata
# --------------------------------------------------------------------------------------------

CHAMPION = "champion"
CHALLENGER = "challenger"


def flatten_params(tree: dict, prefix: str = "") -> dict[str, str]:
    """Nested settings as flat ``section.key`` → text pairs, the form MLflow params take."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_params(value, name + "."))
        else:
            flat[name] = str(value)[:6000]
    return flat


def git_commit(cwd: str | os.PathLike[str] | None = None) -> str:
    """The current git commit (with ``-dirty`` when the work tree has changes), or ``unknown``."""
    import subprocess

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def data_fingerprint(tables: dict) -> dict[str, str | int]:
    """Row counts per table and one content hash over all of them (order- and value-sensitive)."""
    import hashlib

    import pandas as pd

    digest = hashlib.sha256()
    out: dict[str, str | int] = {}
    for name in sorted(tables):
        df = tables[name]
        out[f"rows_{name}"] = len(df)
        digest.update(name.encode())
        digest.update(",".join(map(str, df.columns)).encode())
        digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    out["hash"] = digest.hexdigest()[:16]
    return out


# --------------------------------------------------------------------------------------------
# Runs: who started them, and runs whose process was killed
# --------------------------------------------------------------------------------------------

#: Tags naming the process that started a run, so a later run can tell a run still going from one whose
#: process was killed (``kill -9``, a lost machine) and that MLflow would otherwise show RUNNING forever.
PID_TAG = "crmscore.pid"
HOST_TAG = "crmscore.host"


def start_run(run_name: str):
    """``mlflow.start_run`` tagged with this process (:data:`PID_TAG`, :data:`HOST_TAG`), after
    :func:`close_abandoned_runs`; use it as ``with tracking.start_run(...) as run:``."""
    import socket

    import mlflow

    close_abandoned_runs()
    return mlflow.start_run(run_name=run_name, tags={PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()})


def close_abandoned_runs() -> list[str]:
    """Mark KILLED the runs left RUNNING by a crmscore process of this machine that no longer exists.

    Only runs tagged by :func:`start_run` on this host are judged, and only by whether their process is
    alive, so a run going on elsewhere (another machine, a live process) is never touched. A failure to
    look is logged, never raised: tidying must not stop the new run. Returns the ids of the runs closed.
    """
    import socket

    from mlflow.exceptions import MlflowException

    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return []
    host = socket.gethostname()
    closed = []
    try:
        store = client()
        experiments = [e.experiment_id for e in store.search_experiments()]
        running = store.search_runs(experiments, filter_string="attributes.status = 'RUNNING'", max_results=1000)
        for run in running:
            tags = run.data.tags
            if tags.get(HOST_TAG) != host or not tags.get(PID_TAG, "").isdigit():
                continue
            if _process_alive(int(tags[PID_TAG])):
                continue
            store.set_tag(run.info.run_id, "crmscore.abandoned", f"process {tags[PID_TAG]} ended without closing it")
            store.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
    except MlflowException as exc:
        log.warning("could not close runs left RUNNING by killed processes: %s", _short_reason(exc))
    if closed:
        log.info("marked %d run(s) KILLED whose process had ended: %s", len(closed), ", ".join(closed))
    return closed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: it exists
        return True
    return True


# --------------------------------------------------------------------------------------------
# Model registry: versions and aliases (never the deprecated stages)
# --------------------------------------------------------------------------------------------


def client():
    """An ``MlflowClient`` on the configured store (call :func:`configure` first)."""
    from mlflow import MlflowClient

    return MlflowClient()


def version_by_alias(name: str, alias: str):
    """The model version holding ``alias`` in registered model ``name``, or ``None``."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def set_alias(name: str, alias: str, version: int | str) -> None:
    """Point ``alias`` of registered model ``name`` at ``version``, which must be registered completely.

    A version is complete when its registration is ``READY`` (MLflow registers it after the model's
    files are logged; a store that registers asynchronously reports ``PENDING_REGISTRATION`` until
    then), so an alias never points at a version a killed or failed run left half-made.
    """
    from mlflow.exceptions import MlflowException

    try:
        status = client().get_model_version(name, str(version)).status
        if status != "READY":
            raise TrackingError(f"{name}: version {version} is not ready ({status}); alias {alias} is left as it was")
        client().set_registered_model_alias(name, alias, str(version))
    except MlflowException as exc:
        raise TrackingError(f"{name}: cannot set alias {alias} to version {version}: {_short_reason(exc)}") from exc


def promote(name: str, version: int | str) -> None:
    """Make ``version`` the champion of ``name`` by hand (it must exist)."""
    from mlflow.exceptions import MlflowException

    try:
        client().get_model_version(name, str(version))
    except MlflowException:
        raise TrackingError(f"{name}: version {version} does not exist in the model registry") from None
    set_alias(name, CHAMPION, version)


def load_model(name: str, alias: str | None = CHAMPION, version: int | str | None = None):
    """Load a registered pyfunc model by alias (default ``champion``) or by version number."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = f"models:/{name}/{version}" if version is not None else f"models:/{name}@{alias}"
    try:
        with quiet_mlflow():
            return mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        raise TrackingError(f"{uri}: cannot load model: {_short_reason(exc)}") from exc


def _pyfunc_class():
    import mlflow.pyfunc
    import pandas as pd

    class EstimatorModel(mlflow.pyfunc.PythonModel):
        """A fitted crmscore estimator served as an MLflow pyfunc model.

        ``predict`` returns a DataFrame with one column, ``output``: the positive-class probability
        for classifiers (``kind="proba"``) or the prediction for regressors. The estimator itself is
        reachable with ``loaded.unwrap_python_model().estimator`` (for SHAP reasons and reports).
        """

        def __init__(self, estimator, output: str, kind: str = "proba") -> None:
            self.estimator = estimator
            self.output = output
            self.kind = kind

        def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
            if self.kind == "proba":
                values = self.estimator.predict_proba(model_input)[:, 1]
            else:
                values = self.estimator.predict(model_input)
            return pd.DataFrame({self.output: values}, index=model_input.index)

        # The hints as objects, not the strings postponed annotations make of them: MLflow resolves them
        # in this module's globals, where pandas is not imported, and would warn that ``predict`` has none.
        # (A DataFrame hint asks MLflow for no validation of its own; the logged signature applies.)
        predict.__annotations__ = {"model_input": pd.DataFrame, "return": pd.DataFrame}

    return EstimatorModel


def log_estimator(
    estimator, registered_name: str, input_example, output: str, kind: str = "proba", name: str = "model"
) -> int:
    """Log ``estimator`` in the active run as a pyfunc model, register it, and return the version.

    The model holds only the fitted estimator (never training data); the signature is inferred from
    ``input_example`` (categories as text) and the prediction on it.
    """
    import mlflow
    from mlflow.models import infer_signature

    with quiet_mlflow(logging.ERROR), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapper = _pyfunc_class()(estimator, output=output, kind=kind)
        example = _plain_example(input_example)
        prediction = wrapper.predict(None, input_example)
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=wrapper,
            signature=infer_signature(example, prediction),
            input_example=example,
            registered_model_name=registered_name,
            pip_requirements=model_requirements(),
        )
    return int(info.registered_model_version)


def model_requirements() -> list[str]:
    """What a logged model needs to load elsewhere: crmscore and the libraries its estimators pickle, at
    the versions installed here. Given explicitly, so MLflow does not load every model in a subprocess
    to infer them."""
    from importlib.metadata import PackageNotFoundError, version

    requirements = []
    for package in ("crmscore", "mlflow", "lightgbm", "scikit-learn", "numpy", "scipy", "pandas", "pyarrow", "numba"):
        try:
            requirements.append(f"{package}=={version(package)}")
        except PackageNotFoundError:  # crmscore from a source tree without installation
            continue
    return requirements


def _plain_example(example):
    """Categorical columns as text, so MLflow can infer a schema from them."""
    import pandas as pd

    example = example.copy()
    for column in example.columns:
        if isinstance(example[column].dtype, pd.CategoricalDtype):
            example[column] = example[column].astype(object).where(example[column].notna(), None)
    return example


def registered_estimator(name: str, version: int | None = None):
    """The champion (or ``version``) of a registered model, its version and run id; a clear error without."""
    if version is None:
        found = version_by_alias(name, CHAMPION)
        if found is None:
            kind = name.removeprefix("crmscore-")
            raise DataError(
                f"no champion of {name} is registered: run `crmscore train {kind}` (or `crmscore run`), or "
                f"`crmscore promote {kind} --version N`"
            )
        version = int(found.version)
    model = load_model(name, version=version)
    info = client().get_model_version(name, str(version))
    return model.unwrap_python_model().estimator, int(version), info.run_id


#: Tag of the runs that hold a model's track record (value: the registered model's name).
TRACK_RECORD_TAG = "crmscore.track_record"


def log_track_record(name: str, performance, model: str) -> str | None:
    """Log ``model``'s rows of a track record (:func:`crmscore.monitoring.track_record`) as metrics of a run
    under the training run of ``name``'s champion, one step per scoring, timed at its as-of date, so the
    MLflow UI charts them; returns the run id, or ``None`` when ``name`` has no champion.

    Metric keys are ``<kind>_<metric>`` (``realized_roc_auc``, ``estimated_roc_auc``, ``realized_rate_high``).
    """
    import pandas as pd
    from mlflow.entities import Metric

    champion = version_by_alias(name, CHAMPION)
    if champion is None or champion.run_id is None:
        return None
    rows = performance.loc[(performance["model"] == model) & performance["value"].notna()]
    dates = sorted(rows["as_of"].unique())
    metrics = []
    for row in rows.itertuples():
        key = re.sub(r"[^0-9A-Za-z_]+", "_", f"{row.kind}_{row.metric}").strip("_")
        when = int(pd.Timestamp(row.as_of).timestamp() * 1000)
        metrics.append(Metric(key, float(row.value), when, dates.index(row.as_of)))
    with start_run(f"track record of {name} v{champion.version}") as run:
        client().set_tag(run.info.run_id, "mlflow.parentRunId", champion.run_id)
        client().set_tag(run.info.run_id, TRACK_RECORD_TAG, name)
        client().set_tag(run.info.run_id, "crmscore.stage", "monitor")
        for start in range(0, len(metrics), 1000):  # log_batch takes at most 1,000 metrics
            client().log_batch(run.info.run_id, metrics=metrics[start : start + 1000])
        return run.info.run_id
