"""Comprobaciones de los ejercicios. En cada cuaderno: ``from helpers.checks import <cuaderno> as checks``."""

from .core import STRICT_ENV, Exercise, Outcome, Wrong, exercise, expect

__all__ = ["STRICT_ENV", "Exercise", "Outcome", "Wrong", "exercise", "expect"]
