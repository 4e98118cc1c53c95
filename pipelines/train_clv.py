"""Stage: train, track and register (and maybe promote) the clv model; stamp models/clv.done for DVC."""

from crmscore.stages import train_clv_stage
from pipelines._common import main, stamped

if __name__ == "__main__":
    main(__doc__, stamped("clv", train_clv_stage))
