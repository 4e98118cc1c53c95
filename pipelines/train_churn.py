"""Stage: train, track, register (and maybe promote) the churn model on the input tables."""

from crmscore.stages import train_churn_stage
from pipelines._common import main

if __name__ == "__main__":
    main(__doc__, lambda settings, args: train_churn_stage(settings))
