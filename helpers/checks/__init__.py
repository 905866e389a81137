"""Comprobaciones de los ejercicios. En cada cuaderno: ``from helpers.checks import <cuaderno> as checks``."""

from .core import RESULT_MIME, STRICT_ENV, Exercise, Wrong, exercise, expect

__all__ = ["RESULT_MIME", "STRICT_ENV", "Exercise", "Wrong", "exercise", "expect"]
