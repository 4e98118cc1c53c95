"""Stage: validate the input tables (``data.input_dir`` or the simulated data); write rejects."""

from pathlib import Path

from crmscore.stages import validate_stage
from pipelines._common import main


def _validate(settings, args):
    source = settings.data.input_dir or settings.paths.simulated_dir
    return validate_stage(settings, source, Path(settings.paths.reports_dir) / "validation")


if __name__ == "__main__":
    main(__doc__, _validate)
