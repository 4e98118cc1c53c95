"""Stage: train, track and register (and maybe promote) the segments model; stamp models/segments.done for DVC."""

from crmscore.stages import train_segments_stage
from pipelines._common import main, stamped

if __name__ == "__main__":
    main(__doc__, stamped("segments", train_segments_stage))
