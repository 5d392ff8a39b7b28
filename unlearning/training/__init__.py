"""The training loop, sequential passes, training progress, and the forget methods."""
