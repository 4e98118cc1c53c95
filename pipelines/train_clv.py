"""Stage: train, compare, track and register (and maybe promote) the CLV models on the input tables."""

from crmscore.stages import train_clv_stage
from pipelines._common import main

if __name__ == "__main__":
    main(__doc__, lambda settings, args: train_clv_stage(settings))
