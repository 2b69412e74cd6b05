"""Training: the loop, its data, checkpoints and resume, schedules and run folders."""
