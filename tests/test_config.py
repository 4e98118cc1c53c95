"""Settings: params.yaml → typed settings, and one-line errors for every kind of mistake."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import yaml

from crmscore.config import Settings, load_settings, settings_from_dict
from crmscore.errors import SettingsError

REPO = Path(__file__).resolve().parents[1]


def test_shipped_params_equal_the_defaults():
    settings = load_settings(REPO / "params.yaml")
    assert settings == Settings()
    assert settings.churn.horizon_days == 90
    assert settings.simulate.truth_as_of == dt.date(2026, 7, 31)


def _keys(tree, prefix=""):
    for key, value in tree.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, dict) and value:
            yield from _keys(value, path + ".")


def test_every_key_of_params_yaml_is_commented():
    text = (REPO / "params.yaml").read_text()
    tree = yaml.safe_load(text)
    lines = text.splitlines()
    uncommented = []
    for path in _keys(tree):
        leaf = path.split(".")[-1]
        matches = [ln for ln in lines if re.match(rf"\s*{re.escape(leaf)}:", ln)]
        # Section headers may carry their comment on the line; leaves must.
        if not any("#" in ln for ln in matches):
            uncommented.append(path)
    # Table sections (customers:, transactions:, …) are documented by the `tables:` comment.
    # Entries of free-form maps (metric -> weight, tier -> action) are documented by their map's comment.
    free_maps = r"tiers\.(scorecard\.(metrics|weights|cutoffs)|pyramid_shares|risk_thresholds|actions)\..+"
    uncommented = [
        p
        for p in uncommented
        if not re.fullmatch(r"data\.tables\.\w+|paths|tracking|data|simulate|churn|clv", p)
        and not re.fullmatch(free_maps, p)
    ]
    assert uncommented == []


def test_every_settings_field_is_in_params_yaml():
    tree = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, model in Settings.model_fields.items():
        assert section in tree, section
        for field in model.annotation.model_fields:
            assert field in tree[section], f"{section}.{field} missing from params.yaml"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"churn": {"horizon_days": "abc"}}, "params.yaml: churn.horizon_days: expected a positive integer, got 'abc'"),
        ({"churn": {"horizon_days": 0}}, "params.yaml: churn.horizon_days: expected a positive integer, got 0"),
        ({"churn": {"horizon_days": True}}, "params.yaml: churn.horizon_days: expected a positive integer, got True"),
        ({"churn": {"horizon_dayz": 90}}, "params.yaml: churn.horizon_dayz: unknown key"),
        ({"chrun": {}}, "params.yaml: chrun: unknown key"),
        (
            {"simulate": {"start_date": "31/10/2026"}},
            "params.yaml: simulate.start_date: expected a date as YYYY-MM-DD, got '31/10/2026'",
        ),
        ({"simulate": {"seed": -1}}, "params.yaml: simulate.seed: expected an integer ≥ 0, got -1"),
        (
            {"data": {"format": "xlsx"}},
            "params.yaml: data.format: expected one of 'auto', 'csv' or 'parquet', got 'xlsx'",
        ),
        ({"data": {"tables": {"orders": {}}}}, "params.yaml: data: unknown table 'orders'"),
        ({"data": {"tables": {"customers": {"colums": {}}}}}, "params.yaml: data.tables.customers.colums: unknown key"),
        (
            {"simulate": {"truth_as_of": "2030-01-01"}},
            "params.yaml: simulate: expected start_date < truth_as_of <= end_date",
        ),
        ({"paths": 5}, "params.yaml: paths: expected a mapping of keys, got 5"),
        (
            {"tiers": {"scorecard": {"weights": {"sales": 0.9}}}},
            "params.yaml: tiers.scorecard: weights and metrics must name the same metrics",
        ),
        (
            {"tiers": {"scorecard": {"cutoffs": {"A": 80, "B": 90, "C": 70, "D": 60}}}},
            "params.yaml: tiers.scorecard: cutoffs must fall strictly from A to D",
        ),
        (
            {"tiers": {"risk_thresholds": {"medium": 0.6, "high": 0.5}}},
            "params.yaml: tiers: risk_thresholds must be 0 < medium < high < 1",
        ),
        (
            {"tiers": {"actions": {"A": {"low": "x"}}}},
            "params.yaml: tiers: the action matrix needs every tier × risk band, missing A.medium",
        ),
        ({"clv": {"time_unit": "M"}}, "params.yaml: clv.time_unit: expected one of 'D' or 'W', got 'M'"),
        (
            {"scoring": {"unseen_error_share": 1.5}},
            "params.yaml: scoring.unseen_error_share: expected a number between 0 and 1, got 1.5",
        ),
    ],
)
def test_bad_values_give_one_line_naming_the_key(raw, message):
    with pytest.raises(SettingsError) as err:
        settings_from_dict(raw)
    text = str(err.value)
    assert text.startswith(message)
    assert "\n" not in text


def test_load_settings_names_the_file(tmp_path):
    path = tmp_path / "custom.yaml"
    path.write_text("churn:\n  horizon_days: abc\n")
    with pytest.raises(SettingsError, match=r"custom\.yaml: churn\.horizon_days: expected a positive integer"):
        load_settings(path)


def test_missing_and_unparseable_files(tmp_path):
    with pytest.raises(SettingsError, match="file not found"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("churn: [unclosed\n")
    with pytest.raises(SettingsError, match=r"bad\.yaml: line \d+: not valid YAML"):
        load_settings(bad)


def test_overrides_are_validated_like_the_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("simulate:\n  customers: 100\n")
    settings = load_settings(path, {"simulate": {"seed": 5}})
    assert (settings.simulate.customers, settings.simulate.seed) == (100, 5)
    with pytest.raises(SettingsError, match="simulate.customers: expected a positive integer"):
        load_settings(path, {"simulate": {"customers": -3}})


def test_fingerprint_changes_with_any_setting():
    base = Settings()
    changed = Settings(churn={"horizon_days": 60})
    assert base.fingerprint() == Settings().fingerprint()
    assert base.fingerprint() != changed.fingerprint()
