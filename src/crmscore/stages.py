"""Each stage of the main job as one function: read inputs, call the pure code, write outputs.

Stages are what the CLI (``crmscore …``), the thin scripts in ``pipelines/`` and notebooks call.
They take a :class:`~crmscore.config.Settings` and explicit paths, do their file input/output here
(atomically), and return what they produced so callers can report it. The pure computations live in
the modules they call (``data.simulate``, ``data.load``, …).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

from crmscore.config import Settings
from crmscore.data.load import LoadedData, load_tables, write_rejects, write_tables
from crmscore.data.simulate import SimulatedData, simulate_crm
from crmscore.io import write_parquet

__all__ = ["SimulateResult", "simulate_stage", "validate_stage", "RunResult", "run_main_job"]

log = logging.getLogger("crmscore")


@dataclasses.dataclass
class SimulateResult:
    """Where the simulated tables went and how many rows each has."""

    out_dir: Path
    paths: dict[str, Path]
    rows: dict[str, int]
    seconds: float


def simulate_stage(
    settings: Settings,
    out_dir: str | os.PathLike | None = None,
    customers: int | None = None,
    seed: int | None = None,
) -> SimulateResult:
    """Simulate the embedded CRM data and write the four tables and ``truth.parquet``.

    ``customers`` and ``seed`` override ``simulate.customers`` / ``simulate.seed``; ``out_dir``
    defaults to ``paths.simulated_dir``. Truth is computed at ``simulate.truth_as_of`` for the churn
    and CLV horizons.
    """
    sim = settings.simulate
    out = Path(out_dir or settings.paths.simulated_dir)
    started = time.perf_counter()
    data: SimulatedData = simulate_crm(
        customers=customers or sim.customers,
        seed=sim.seed if seed is None else seed,
        start_date=sim.start_date,
        end_date=sim.end_date,
        truth_as_of=sim.truth_as_of,
        horizons_days=(settings.churn.horizon_days, settings.clv.horizon_days),
    )
    paths = write_tables(data.tables(), out, sim.format)
    paths["truth"] = write_parquet(data.truth, out / "truth.parquet")
    rows = {name: len(df) for name, df in data.tables().items()} | {"truth": len(data.truth)}
    seconds = time.perf_counter() - started
    log.info("simulated %s customers into %s in %.1f s", f"{rows['customers']:,}", out, seconds)
    return SimulateResult(out_dir=out, paths=paths, rows=rows, seconds=seconds)


def validate_stage(settings: Settings, input_dir: str | os.PathLike, out_dir: str | os.PathLike) -> LoadedData:
    """Load and validate the tables in ``input_dir``; write rejects and ``validation.json`` to ``out_dir``."""
    loaded = load_tables(input_dir, settings.data)
    write_rejects(loaded, out_dir)
    for report in loaded.reports.values():
        log.info(
            "%s: %s in, %s kept, %s rejected", report.table, report.rows_in, report.rows_kept, report.rows_rejected
        )
    return loaded


@dataclasses.dataclass
class RunResult:
    """What the main job produced."""

    input_dir: Path
    validation_dir: Path
    simulated: SimulateResult | None
    loaded: LoadedData


def run_main_job(settings: Settings, input_dir: str | os.PathLike | None = None) -> RunResult:
    """The main job: simulate when no input is given, then validate.

    ``input_dir`` (or ``data.input_dir``) points at the user's tables; without either, the embedded
    synthetic data is simulated into ``paths.simulated_dir`` first. Validation results go to
    ``<reports_dir>/validation``.
    """
    source = input_dir or settings.data.input_dir
    simulated = None
    if source is None:
        simulated = simulate_stage(settings)
        source = simulated.out_dir
    validation_dir = Path(settings.paths.reports_dir) / "validation"
    loaded = validate_stage(settings, source, validation_dir)
    return RunResult(input_dir=Path(source), validation_dir=validation_dir, simulated=simulated, loaded=loaded)
