"""Engine: the one fit loop, optimizers and schedules, checkpoints, run directories, device settings."""
