"""``rentan bench``: the seed cohort through the lifecycle, against the engine's floor, one run."""
