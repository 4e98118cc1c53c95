"""The stage scripts in pipelines/ and the DVC pipeline that declares them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crmscore.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
MODULES = sorted(p.stem for p in (ROOT / "pipelines").glob("*.py") if not p.stem.startswith("_"))
ORDER = ["simulate", "validate", "train_churn", "train_clv", "train_segments", "score", "report"]


def _module(stage: dict) -> str:
    command = stage["cmd"].split()
    assert command[:3] == ["python", "-m", command[2]] and command[2].startswith("pipelines."), stage["cmd"]
    return command[2].removeprefix("pipelines.")


def test_every_stage_script_is_a_dvc_stage_in_the_order_of_the_main_job():
    assert list(DVC) == ORDER
    assert sorted(_module(stage) for stage in DVC.values()) == MODULES == sorted(ORDER)


def test_dvc_params_are_keys_of_params_yaml():
    for name, stage in DVC.items():
        for key in stage.get("params", []):
            node = PARAMS
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{name}: {key} is not a key of params.yaml"
                node = node[part]


def test_dvc_dependencies_exist_or_come_from_an_earlier_stage():
    produced: set[str] = set()
    for name, stage in DVC.items():
        for dep in stage.get("deps", []):
            assert (ROOT / dep).exists() or dep in produced, f"{name}: {dep} is neither in the repo nor made before"
        for out in stage.get("outs", []):
            produced.add(next(iter(out)) if isinstance(out, dict) else out)
    stamps = {"models/churn.done", "models/clv.done", "models/segments.done"}
    assert {"data/simulated", "reports/scores", "reports/review", *stamps} <= produced


def _run(module: str, params: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(
        [sys.executable, "-m", f"pipelines.{module}", "--params", str(params), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_each_stage_runs_alone_in_order_and_leaves_its_outputs(tmp_path):
    budget = {"trials": 1, "timeout_seconds": 300, "max_trees": 80}
    settings = Settings(
        paths={
            "models_dir": str(tmp_path / "models"),
            "reports_dir": str(tmp_path / "reports"),
            "simulated_dir": str(tmp_path / "sim"),
        },
        data={"max_date": "2026-11-23"},
        simulate={"customers": 1000, "seed": 5},
        churn={"train_cutoffs": 2, "tuning": budget},
        clv={"train_cutoffs": 2, "tuning": budget},
        scoring={"out_dir": str(tmp_path / "reports" / "scores")},
    )
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
    for module in ORDER:
        result = _run(module, params)
        assert result.returncode == 0, f"{module}: {result.stderr[-2000:]}"
    assert (tmp_path / "sim" / "transactions.parquet").exists()
    assert (tmp_path / "reports" / "validation" / "validation.json").exists()
    for name in ("churn", "clv", "segments"):
        stamp = json.loads((tmp_path / "models" / f"{name}.done").read_text())
        assert stamp["model"] == f"crmscore-{name}" and stamp["version"] >= 1 and stamp["run_id"]
        assert "promoted: no champion yet" in stamp["decision"]
    scorings = sorted((tmp_path / "reports" / "scores").glob("as_of=*"))
    assert [p.name for p in scorings] == ["as_of=2026-10-31"]  # the data's last day by default
    assert (scorings[0] / "scores.parquet").exists() and (scorings[0] / "manifest.json").exists()
    assert list((tmp_path / "reports" / "review").glob("model_review_2026-10-31.html"))

    # The one-line error contract holds for the scripts too.
    broken = tmp_path / "broken.yaml"
    broken.write_text("churn:\n  horizon_days: abc\n")
    result = _run("train_churn", broken)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "churn.horizon_days" in result.stderr and "Traceback" not in result.stderr
