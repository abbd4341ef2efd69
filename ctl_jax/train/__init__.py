"""Training: jitted steps (stage 1 base, stage 2 tuner-only)."""
