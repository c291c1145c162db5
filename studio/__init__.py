"""Likeness Studio: make a personal image model end to end (dataset, training, generation, evaluation)."""

__version__ = "0.1.0"
