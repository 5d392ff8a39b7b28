"""The shared unlearning engine."""
