"""Stage: score every customer as of a date with the registered champions (default: the data's last day)."""

from pathlib import Path

import pandas as pd

from crmscore.data.stream import last_event_date
from crmscore.stages import score_stage
from pipelines._common import main


def _arguments(parser):
    parser.add_argument("--as-of", default=None, help="as-of date YYYY-MM-DD (default: the last day of the data)")


def _score(settings, args):
    source = Path(settings.data.input_dir or settings.paths.simulated_dir)
    as_of = pd.Timestamp(args.as_of) if args.as_of else last_event_date(source, settings.data)
    return score_stage(settings, as_of, input_dir=source, progress=False)


if __name__ == "__main__":
    main(__doc__, _score, add_arguments=_arguments)
