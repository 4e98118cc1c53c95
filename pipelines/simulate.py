"""Stage: simulate the embedded CRM data into ``paths.simulated_dir``."""

from crmscore.stages import simulate_stage
from pipelines._common import main

if __name__ == "__main__":
    main(__doc__, lambda settings, args: simulate_stage(settings))
