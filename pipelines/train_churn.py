"""Stage: train, track and register (and maybe promote) the churn model; stamp models/churn.done for DVC."""

from crmscore.stages import train_churn_stage
from pipelines._common import main, stamped

if __name__ == "__main__":
    main(__doc__, stamped("churn", train_churn_stage))
