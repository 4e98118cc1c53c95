"""Shared fixtures: small simulated data and the fixed "today" used for the future-date rule."""

from __future__ import annotations

import datetime as dt

import pytest

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
    and the future-date rule pinned; ``sections`` override whole sections (e.g. tiny tuning budgets)."""
    from crmscore.config import Settings

    return Settings(
        paths={
            "models_dir": str(folder / "models"),
            "reports_dir": str(folder / "reports"),
            "simulated_dir": str(folder / "sim"),
        },
        data={"max_date": str(MAX_DATE)},
        simulate={"customers": 1500, "seed": 3},
        **sections,
    )
