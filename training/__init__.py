"""Training: turn a dataset version into a tracked, evaluated, exported model."""
