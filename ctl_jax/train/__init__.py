"""Two-stage training: jitted steps, the training loop, orbax checkpoints."""
