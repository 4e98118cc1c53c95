"""crmscore: churn, customer-lifetime-value and segment models for CRM data, tracked in MLflow.

The public API for notebooks::

    import crmscore
    settings = crmscore.load_settings("params.yaml")      # or crmscore.Settings() for the defaults
    data = crmscore.simulate_crm(customers=5_000, seed=1)  # embedded synthetic data (+ truth)
    loaded = crmscore.load_tables("my_tables/", settings.data)  # your own tables, validated
    loaded.summary()                                       # rows in / kept / rejected by reason
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crmscore")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

from crmscore.config import Settings, load_settings
from crmscore.data.load import LoadedData, load_tables, validate_tables
from crmscore.data.simulate import SimulatedData, simulate_crm
from crmscore.errors import CrmscoreError, DataError, LockedError, SettingsError, TrackingError

__all__ = [
    "__version__",
    "Settings",
    "load_settings",
    "LoadedData",
    "load_tables",
    "validate_tables",
    "SimulatedData",
    "simulate_crm",
    "CrmscoreError",
    "DataError",
    "SettingsError",
    "TrackingError",
    "LockedError",
]
