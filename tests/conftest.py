"""Shared fixtures: small simulated data and the fixed "today" used for the future-date rule."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from crmscore.data.simulate import SimulatedData, simulate_crm

# Tables are checked for future dates against this day, so tests do not depend on the calendar.
MAX_DATE = dt.date(2026, 11, 23)


@pytest.fixture(scope="session")
def small_sim() -> SimulatedData:
    """1,500 simulated customers (about 30k transactions); treat as read-only."""
    return simulate_crm(customers=1_500, seed=7)


@pytest.fixture
def sim_tables(small_sim: SimulatedData) -> dict:
    """Fresh copies of the four simulated tables, safe to corrupt in a test."""
    return {name: df.copy() for name, df in small_sim.tables().items()}


def workspace_settings(folder, **sections):
    """Settings whose every generated path lies in ``folder``, with 1,500 simulated customers (seed 3)
    and the future-date rule pinned; ``sections`` override whole sections (e.g. tiny tuning budgets), except
    ``data``, whose keys are added to the pinned future-date rule."""
    from crmscore.config import Settings

    return Settings(
        paths={
            "models_dir": str(folder / "models"),
            "reports_dir": str(folder / "reports"),
            "simulated_dir": str(folder / "sim"),
        },
        data={"max_date": str(MAX_DATE), **sections.pop("data", {})},
        simulate={"customers": 1500, "seed": 3},
        **sections,
    )


@contextlib.contextmanager
def mlflow_workspace(root: Path) -> Iterator[pytest.MonkeyPatch]:
    """A module workspace's environment: no MLflow URIs from outside, ``root`` as the working folder.

    MLflow echoes the URIs it is given into the environment, so they are recorded first; on leaving,
    the environment, the working folder and MLflow's own URIs are as they were.
    """
    import mlflow

    with pytest.MonkeyPatch.context() as mp:
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            mp.setenv(name, "")
            mp.delenv(name)
        mp.chdir(root)
        try:
            yield mp
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)


@dataclasses.dataclass
class Champions:
    """A workspace with registered champions: its folder, settings, training results by role, params file, input."""

    root: Path
    settings: object
    trained: dict
    params: Path
    tables: dict


@contextlib.contextmanager
def champions(folder: Path, budget: dict, churn_cutoffs: int = 3, **sections) -> Iterator[Champions]:
    """Simulated input and churn, CLV and segments champions in ``folder``, inside :func:`mlflow_workspace`.

    Churn and CLV are tuned with ``budget``; the CLV model is pinned to the LightGBM one (``clv.model:
    ml``) so that both models give SHAP reasons. ``sections`` go to :func:`workspace_settings`; the
    settings are written to ``folder / "params.yaml"`` and the simulated tables read back.
    """
    import pandas as pd

    from crmscore.stages import simulate_stage, train_churn_stage, train_clv_stage, train_segments_stage

    with mlflow_workspace(folder):
        settings = workspace_settings(
            folder,
            churn={"train_cutoffs": churn_cutoffs, "tuning": budget},
            clv={"model": "ml", "train_cutoffs": 2, "tuning": budget},
            **sections,
        )
        simulate_stage(settings)
        trained = {
            "churn": train_churn_stage(settings),
            "clv": train_clv_stage(settings),
            "segments": train_segments_stage(settings),
        }
        assert all(t.promoted for t in trained.values())
        params = write_params(settings, folder / "params.yaml")
        names = ("customers", "transactions", "payments", "interactions")
        tables = {name: pd.read_parquet(folder / "sim" / f"{name}.parquet") for name in names}
        yield Champions(folder, settings, trained, params, tables)


def write_params(settings, path: Path) -> Path:
    """``settings`` as a ``params.yaml`` file at ``path``."""
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
    return path


def write_layout(tables: dict, folder: Path, layout: str, row_group_size: int = 1_500, seed: int = 3) -> None:
    """Write ``tables`` as ``"csv"``, as ``"sorted parquet"`` (rows in the given order, which for simulated
    tables is by customer) in row groups of ``row_group_size`` rows, or as ``"shuffled parquet"`` (the rows
    of every table but customers shuffled with ``seed``): the layouts a streamed input reads differently."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from crmscore.data.load import write_tables

    if layout == "csv":
        write_tables(tables, folder, "csv")
        return
    folder.mkdir(parents=True)
    for name, df in tables.items():
        if layout == "shuffled parquet" and name != "customers":
            df = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        table = pa.Table.from_pandas(df, preserve_index=False)
        pq.write_table(table, folder / f"{name}.parquet", row_group_size=row_group_size)


def visible(folder: Path) -> list[str]:
    """Names in ``folder``, hidden ones (temporary files) left out, sorted."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def hooked_crmscore(folder: Path, module: str, function: str, body: str) -> list[str]:
    """The argv of a ``crmscore`` process in which ``crmscore.<module>.<function>`` first runs ``body``.

    ``body`` is Python run with the call's ``args`` and ``kwargs`` in scope (e.g. ``os.kill(os.getpid(),
    signal.SIGKILL)`` to kill the process at that point, as ``kill -9`` would); then the real function
    runs. The process is otherwise the real command line, so a test can stop it at a chosen step.
    """
    import sys
    import textwrap

    script = folder / f"crmscore_hooked_{module}_{function}.py"
    script.write_text(
        "import os, signal, sys, time\n"
        "from pathlib import Path\n"
        f"from crmscore import {module} as target\n"
        f"real = target.{function}\n\n\n"
        "def hooked(*args, **kwargs):\n"
        f"{textwrap.indent(textwrap.dedent(body).strip(), '    ')}\n"
        "    return real(*args, **kwargs)\n\n\n"
        f"target.{function} = hooked\n"
        "from crmscore.cli import app\n\n"
        "app(sys.argv[1:], prog_name='crmscore')\n"
    )
    return [sys.executable, str(script)]
