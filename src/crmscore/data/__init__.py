"""Input data: the contract's schemas, loading with rejects, the simulator, and public datasets."""

from crmscore.data.load import LoadedData, load_tables, validate_tables
from crmscore.data.schemas import CONTRACT
from crmscore.data.simulate import SimulatedData, simulate_crm

__all__ = ["CONTRACT", "LoadedData", "load_tables", "validate_tables", "SimulatedData", "simulate_crm"]
