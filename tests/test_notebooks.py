"""The notebooks in notebooks/: each runs top to bottom on small data, and every one is stored clean.

Each notebook runs in a fresh kernel of this interpreter (nbclient), from an empty working folder, with
the values of its ``parameters`` cell overridden by a cell injected right after it (the papermill
convention): 1,500 customers, one tuning trial, 150 trees, and ``WORKDIR`` in a temporary folder.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from tests.conftest import MAX_DATE

from crmscore.data import public

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXPECTED = ("01_explore_data", "02_churn", "03_clv", "04_segments_and_tiers", "05_scoring_review")
CELL_TIMEOUT_S = 600

# Small data and tiny tuning budgets for the tests; only names a notebook's parameters cell defines are set.
SMALL = {
    "PARAMS": str(ROOT / "params.yaml"),
    "CUSTOMERS": 1_500,
    "SEED": 3,
    "MAX_DATE": str(MAX_DATE),
    "CHURN_TRIALS": 1,
    "CLV_TRIALS": 1,
    "TUNING_TIMEOUT_SECONDS": 600,
    "MAX_TREES": 150,
}
# The tuning budgets each notebook must expose, so that the tests can keep them tiny.
BUDGETS = {
    "02_churn": {"CHURN_TRIALS", "TUNING_TIMEOUT_SECONDS", "MAX_TREES"},
    "03_clv": {"CLV_TRIALS", "TUNING_TIMEOUT_SECONDS", "MAX_TREES"},
    "04_segments_and_tiers": {"CHURN_TRIALS", "TUNING_TIMEOUT_SECONDS", "MAX_TREES"},
    "05_scoring_review": {"CHURN_TRIALS", "CLV_TRIALS", "TUNING_TIMEOUT_SECONDS", "MAX_TREES"},
}


# --- helpers ---------------------------------------------------------------------------------------


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def _parameters_index(nb: nbformat.NotebookNode) -> int:
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected exactly one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def _python(source: str) -> str:
    """The cell's Python, with IPython magics and shell lines (``%…``, ``!…``) left out."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _assigned_names(source: str) -> set[str]:
    tree = ast.parse(_python(source))
    return {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_names(source: str) -> list[str]:
    """Underscore (private) names a cell reaches: imported from crmscore, or read as an attribute anywhere."""
    found = []
    for node in ast.walk(ast.parse(_python(source))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "crmscore":
            if any(map(_is_private, node.module.split("."))):
                found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names if _is_private(alias.name)]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names if alias.name.split(".")[0] == "crmscore"]
            found += [name for name in modules if any(map(_is_private, name.split(".")))]
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            found.append(node.attr)
    return found


def run_notebook(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **values) -> tuple:
    """Execute notebook ``name`` with the small parameters (and ``values``); return (notebook, workdir, cwd)."""
    from nbclient import NotebookClient

    # The kernel inherits this environment: keep MLflow on the embedded store under WORKDIR, and let
    # the kernel pick its inline plot backend (the CLI, run in-process by other tests, sets MPLBACKEND).
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MPLBACKEND"):
        monkeypatch.delenv(variable, raising=False)
    cwd, workdir = tmp_path / "cwd", tmp_path / "work"
    cwd.mkdir()
    nb = _read(name)
    at = _parameters_index(nb)
    defined = _assigned_names(nb.cells[at].source)
    chosen = {"WORKDIR": str(workdir), **SMALL, **values}
    lines = [f"{key} = {value!r}" for key, value in chosen.items() if key in defined]
    injected = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(at + 1, injected)
    NotebookClient(
        nb, kernel_name="python3", timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(cwd)}}
    ).execute()
    errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"]
    assert not errors, errors
    return nb, workdir, cwd


def _text(nb: nbformat.NotebookNode) -> str:
    """Everything the notebook printed or displayed as text (streams, text/plain and text/html)."""
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                parts.append(output.text)
            for key in ("text/plain", "text/html"):
                parts.append(output.get("data", {}).get(key, ""))
    return "\n".join(parts)


def _images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for cell in nb.cells for o in cell.get("outputs", []))


def _public_data_dir() -> str:
    return str(public.data_dir().resolve())


# --- stored notebooks ------------------------------------------------------------------------------


def test_every_expected_notebook_is_there_and_described_in_the_readme():
    stored = sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb"))
    assert stored == sorted(EXPECTED)
    readme = (NOTEBOOKS / "README.md").read_text(encoding="utf-8")
    assert all(f"{name}.ipynb" in readme for name in EXPECTED)
    assert "injected-parameters" in readme and "parameters" in readme


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_is_stored_without_outputs(name):
    nb = _read(name)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.execution_count is not None or cell.outputs)
    ]
    assert not dirty, f"{name}: cells {dirty} hold outputs or execution counts"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_opens_with_its_purpose_then_parameters(name):
    nb = _read(name)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    assert _parameters_index(nb) == code[0], "the first code cell must be the parameters cell"
    needed = {"PARAMS", "WORKDIR", "CUSTOMERS", "SEED", "MAX_DATE", *BUDGETS.get(name, ())}
    assert needed <= _assigned_names(nb.cells[code[0]].source)


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_uses_only_public_names(name):
    nb = _read(name)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not private_names(cell.source), f"{name}: private names in\n{cell.source}"
            assert "crmscore.report" not in cell.source


def test_private_name_check_finds_them():
    assert private_names("from crmscore.churn import _frame") == ["crmscore.churn._frame"]
    assert private_names("from crmscore import churn\nchurn._stack([])") == ["_stack"]
    assert private_names("import crmscore.data._x") == ["crmscore.data._x"]
    assert private_names("from crmscore._x import y") == ["crmscore._x"]
    assert private_names("%matplotlib inline\nfrom crmscore import churn\nchurn.churn_datasets\nx.__class__") == []


# --- notebooks run top to bottom -------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_kernel_run(tmp_path_factory) -> nbformat.NotebookNode:
    """One short kernel run: which Python the kernel is, then notebook 03's CDNOW cell without the data."""
    from nbclient import NotebookClient

    folder = tmp_path_factory.mktemp("kernel")
    cdnow = next(c for c in _read("03_clv").cells if c.cell_type == "code" and "load_cdnow" in c.source)
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)"),
            nbformat.v4.new_code_cell(f"PUBLIC_DATA_DIR = {str(folder / 'no-data')!r}"),
            nbformat.v4.new_code_cell(cdnow.source),
        ]
    )
    NotebookClient(
        nb, kernel_name="python3", timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(folder)}}
    ).execute()
    return nb


@pytest.mark.slow
def test_kernel_runs_this_environment(small_kernel_run):
    assert small_kernel_run.cells[0].outputs[0].text.strip() == sys.prefix


@pytest.mark.slow
def test_03_clv_public_data_section_is_skipped_without_the_data(small_kernel_run):
    """The CDNOW cell stands alone; without the data it says so instead of failing."""
    outputs = small_kernel_run.cells[2].outputs
    assert [o.output_type for o in outputs] == ["stream"] and "section skipped" in outputs[0].text


@pytest.mark.slow
def test_01_explore_data(tmp_path, monkeypatch):
    nb, workdir, cwd = run_notebook("01_explore_data", tmp_path, monkeypatch)
    customers = pd.read_parquet(workdir / "data" / "simulated" / "customers.parquet")
    assert len(customers) == SMALL["CUSTOMERS"]
    text = _text(nb)
    assert "days since the last purchase" in text  # the feature registry's descriptions
    assert "amount" in text and "rows_rejected" in text  # the damaged rows went to rejects
    assert _images(nb) >= 4
    assert not any(cwd.iterdir()), "files were written outside WORKDIR"


@pytest.mark.slow
def test_02_churn(tmp_path, monkeypatch):
    nb, workdir, cwd = run_notebook("02_churn", tmp_path, monkeypatch)
    assert (workdir / "models" / "mlflow.db").is_file()
    text = _text(nb)
    assert "crmscore-churn version 1: promoted: no champion yet" in text
    assert "roc_auc" in text and "logistic baseline" in text
    assert "raises churn risk" in text  # SHAP reasons
    assert str(workdir / "models") in text  # the UI command points at the notebook's store
    assert _images(nb) >= 2  # the stage switches matplotlib to Agg; inline figures must still show
    assert not any(cwd.iterdir()), "files were written outside WORKDIR"


@pytest.mark.slow
def test_03_clv(tmp_path, monkeypatch):
    data_dir = _public_data_dir()
    nb, workdir, cwd = run_notebook("03_clv", tmp_path, monkeypatch, PUBLIC_DATA_DIR=data_dir)
    text = _text(nb)
    assert "std_error" in text and "Pareto/NBD" in text and "Gamma-Gamma" in text
    assert "decile_mape" in text and "gini" in text
    # Four figures on the simulated data; section 5 adds the CDNOW tracking plot when the data is there
    # (the notebook's own test: a cdnow/ folder in PUBLIC_DATA_DIR), and says it was skipped otherwise.
    if (Path(data_dir) / "cdnow").is_dir():
        assert "CDNOW sample: 2,357 customers" in text
        assert _images(nb) == 5
    else:
        assert "section skipped" in text and "CDNOW sample" not in text
        assert _images(nb) == 4
    assert not any(cwd.iterdir()), "files were written outside WORKDIR"


@pytest.mark.slow
def test_04_segments_and_tiers(tmp_path, monkeypatch):
    nb, workdir, cwd = run_notebook("04_segments_and_tiers", tmp_path, monkeypatch)
    text = _text(nb)
    assert re.search(r"CASE\s+WHEN .+ THEN 1", text) and 'END AS "segment_id"' in text
    assert "exported rules agree with the tree: True" in text
    assert "personal retention plan now" in text  # the action matrix
    assert _images(nb) >= 3
    assert not any(cwd.iterdir()), "files were written outside WORKDIR"


@pytest.mark.slow
def test_05_scoring_review(tmp_path, monkeypatch):
    nb, workdir, cwd = run_notebook("05_scoring_review", tmp_path, monkeypatch)
    simulated = workdir / "data" / "simulated"
    customers = pd.read_parquet(simulated / "customers.parquet")
    as_of = pd.read_parquet(simulated / "transactions.parquet")["date"].max().normalize()
    before = as_of - pd.Timedelta(days=91)
    folder = workdir / "reports" / "scores" / f"as_of={as_of.date()}"

    scores = pd.read_parquet(folder / "scores.parquet")
    known = customers.loc[customers["signup_date"] <= as_of, "customer_id"]
    assert len(scores) == len(known) and scores["customer_id"].is_unique
    assert set(scores["customer_id"]) == set(known)
    assert set(scores["tier"].astype(str)) <= set("ABCDE")
    explanations = pd.read_parquet(folder / "explanations.parquet")
    assert len(explanations) and set(explanations["customer_id"]) <= set(scores["customer_id"])

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["scored"] == len(scores)
    assert manifest["previous_scoring"] == f"as_of={before.date()}"
    migration = pd.read_csv(folder / "tier_migration.csv", index_col=0)
    earlier = pd.read_parquet(workdir / "reports" / "scores" / f"as_of={before.date()}" / "scores.parquet")
    assert migration.to_numpy().sum() == len(scores)
    assert migration.loc["new"].sum() == len(scores) - len(earlier)

    text = _text(nb)
    assert "value_at_risk" in text and "high_risk_customers" in text
    assert _images(nb) >= 1
    assert not any(cwd.iterdir()), "files were written outside WORKDIR"
