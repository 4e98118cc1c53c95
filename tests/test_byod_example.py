"""The README's "Bring your own data" worked example works as written.

``examples/byod/`` holds a shop's export with its own column names and day/month/year dates
(``customers.csv``, ``orders.csv``), the ``params.yaml`` that maps it onto the data contract, and
``make_shop.py``, which writes a full-size export in the same layout. The tests run the README's
``crmscore validate`` command on the example, compare its output and the README's copy of the mapping
with the real ones, and check that a generated shop passes validation whole.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from crmscore.cli import app
from crmscore.config import load_settings
from crmscore.data.load import load_tables

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "byod"
README = ROOT / "README.md"

runner = CliRunner()


def _worked_example() -> str:
    text = README.read_text()
    heading = "\n### Worked example\n"
    start = text.find(heading)
    assert start >= 0, "README.md has no '### Worked example' section"
    body = text[start + len(heading) :]
    end = re.search(r"^#{1,3} ", body, flags=re.MULTILINE)  # the next heading (code blocks hold none)
    return body[: end.start()] if end else body


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture(scope="module")
def validated(tmp_path_factory, request):
    """`crmscore validate` exactly as the README runs it, from the repository root."""
    out = tmp_path_factory.mktemp("byod") / "out"
    mp = pytest.MonkeyPatch()
    request.addfinalizer(mp.undo)
    mp.chdir(ROOT)
    result = runner.invoke(
        app, ["validate", "--input", "examples/byod", "--out", str(out), "--params", "examples/byod/params.yaml"]
    )
    assert result.exit_code == 0, result.output
    return result, out


def test_example_validates_with_the_documented_rejects(validated):
    result, out = validated
    lines = [line.rstrip() for line in result.output.splitlines()]
    assert re.split(r"\s+", lines[1]) == ["customers", "8", "8", "0", "0"]
    assert re.split(r"\s+", lines[2]) == ["transactions", "24", "22", "2", "0"]
    assert "  transactions: 1 × amount: negative" in lines
    assert "  transactions: 1 × customer_id: unknown customer" in lines

    rejects = pd.read_parquet(out / "rejects" / "transactions.parquet")
    # Rejected rows are kept as written in the file (the shop's own column names and dates).
    by_order = dict(zip(rejects["OrderNo"].astype(str), rejects["reason"], strict=True))
    assert set(by_order) == {"1013", "1024"}
    assert "amount: negative" in by_order["1013"]
    assert "customer_id: unknown customer" in by_order["1024"]
    assert len(pd.read_parquet(out / "rejects" / "customers.parquet")) == 0


def test_mapping_reads_the_shops_names_and_dates():
    settings = load_settings(EXAMPLE / "params.yaml")
    loaded = load_tables(EXAMPLE, settings.data)
    customers, orders = loaded.tables["customers"], loaded.tables["transactions"]
    assert {"customer_id", "signup_date", "Region", "Plan"} <= set(customers.columns)
    assert {"customer_id", "date", "amount", "product", "quantity"} <= set(orders.columns)
    first = customers.set_index("customer_id").loc[101]
    assert first["signup_date"] == pd.Timestamp("2024-01-15")  # 15/01/2024, day first
    assert orders["date"].min() == pd.Timestamp("2024-02-03") and orders["date"].max() == pd.Timestamp("2025-02-14")
    assert set(loaded.tables) == {"customers", "transactions"}  # payments and interactions are optional


def test_readme_shows_the_real_mapping_and_output(validated):
    section = _worked_example()
    snippets = [yaml.safe_load(block) for block in _blocks(section, "yaml")]
    assert yaml.safe_load((EXAMPLE / "params.yaml").read_text()) in snippets

    result, _ = validated
    shown = next(block for block in _blocks(section, "text") if block.startswith("$ crmscore validate"))
    command, *printed = shown.strip().splitlines()
    assert command == "$ crmscore validate --input examples/byod --out out/ --params examples/byod/params.yaml"
    actual = [line.rstrip() for line in result.output.strip().splitlines()]
    actual[-1] = actual[-1].rsplit(" ", 1)[0]  # "rejects written to <the test's folder>/rejects"
    printed[-1] = printed[-1].rsplit(" ", 1)[0]
    assert [line.rstrip() for line in printed] == actual

    # The sample rows the README quotes are rows of the example files.
    files = {name: (EXAMPLE / name).read_text().splitlines() for name in ("customers.csv", "orders.csv")}
    for block in _blocks(section, "text"):
        quoted = [line for line in block.splitlines() if line and line != "…" and not line.startswith("$")]
        if quoted and quoted[0] in (files["customers.csv"][0], files["orders.csv"][0]):
            source = files["customers.csv"] if quoted[0] == files["customers.csv"][0] else files["orders.csv"]
            assert set(quoted) <= set(source), set(quoted) - set(source)


def test_make_shop_writes_a_full_export_that_validates_whole(tmp_path):
    spec = importlib.util.spec_from_file_location("make_shop", EXAMPLE / "make_shop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    paths = module.make_shop(tmp_path / "shop", customers=300, seed=2)
    assert sorted(p.name for p in (tmp_path / "shop").iterdir()) == ["customers.csv", "orders.csv"]
    header = paths["transactions"].read_text().splitlines()[0]
    assert header == "OrderNo,CustID,OrderDate,Revenue,Category,Qty"

    settings = load_settings(EXAMPLE / "params.yaml", {"data": {"max_date": "2026-11-23"}})
    loaded = load_tables(tmp_path / "shop", settings.data)
    for table, rows_in in (("customers", 300), ("transactions", len(pd.read_csv(paths["transactions"])))):
        report = loaded.reports[table]
        assert (report.rows_in, report.rows_kept, report.rows_rejected) == (rows_in, rows_in, 0), table
    assert loaded.tables["customers"]["customer_id"].dtype == "int64"  # plain numbers become integer ids
