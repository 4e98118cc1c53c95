"""Stage: fit, track and register the decision-tree segments on the champions' CLV and churn risk."""

from crmscore.stages import train_segments_stage
from pipelines._common import main

if __name__ == "__main__":
    main(__doc__, lambda settings, args: train_segments_stage(settings))
