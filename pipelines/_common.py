"""What every pipeline script shares: the --params argument and the one-line error contract."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from crmscore.config import Settings, load_settings
from crmscore.errors import CrmscoreError


def main(description: str, stage: Callable[[Settings, argparse.Namespace], object], add_arguments=None) -> None:
    """Parse ``--params`` (and stage options), run ``stage``, print CrmscoreError as one line, exit 2."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")  # plots go to files, never to a window
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        stage(load_settings(args.params), args)
    except CrmscoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


def stamped(name: str, train: Callable[[Settings], object]) -> Callable[[Settings, argparse.Namespace], object]:
    """Run a training stage and write ``<models_dir>/<name>.done`` (version, run id, decision) for DVC."""
    from pathlib import Path

    from crmscore.io import write_json

    def run(settings: Settings, args: argparse.Namespace) -> object:
        result = train(settings)
        write_json(
            {
                "model": result.model_name,
                "version": result.version,
                "run_id": result.run_id,
                "decision": result.decision,
            },
            Path(settings.paths.models_dir) / f"{name}.done",
        )
        return result

    return run
