"""Training: the one loop, supervised stages, run folders, checkpoints, jitted step helpers."""
