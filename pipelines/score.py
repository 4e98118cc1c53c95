"""Stage: score every customer as of a date with the registered champions (default: the data's last day)."""

from pathlib import Path

import pandas as pd

from crmscore.data.load import load_tables
from crmscore.stages import score_stage, scoring_as_of
from pipelines._common import main


def _arguments(parser):
    parser.add_argument("--as-of", default=None, help="as-of date YYYY-MM-DD (default: the last day of the data)")


def _score(settings, args):
    if args.as_of:
        return score_stage(settings, pd.Timestamp(args.as_of), progress=False)
    source = Path(settings.data.input_dir or settings.paths.simulated_dir)
    loaded = load_tables(source, settings.data)
    return score_stage(settings, scoring_as_of(loaded.tables), loaded=loaded, progress=False)


if __name__ == "__main__":
    main(__doc__, _score, add_arguments=_arguments)
