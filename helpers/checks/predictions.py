"""Predecir antes de medir: el alumno escribe qué espera y, al revelar el número, ve cuánto se acercó.

No da puntos ni entrega nada a la corrección: solo compara. En el cuaderno::

    my_guess = None  # tu predicción, ANTES de ejecutar la celda siguiente
    ...
    reveal("parámetros entrenables", my_guess, trainable, fmt=numbers.integer)
"""

from __future__ import annotations

import math

from ..numbers import decimal


def verdict(guess, measured: float, fmt=None) -> str:
    """El texto que compara ``guess`` con ``measured`` (en español)."""
    show = fmt or (lambda value: decimal(value, 3))
    if guess is None:
        return f"No escribiste ninguna predicción: el valor medido es **{show(measured)}**."
    if isinstance(guess, bool) or not isinstance(guess, (int, float)) or not math.isfinite(guess):
        return (f"Tu predicción ({guess!r}) no es un número; el valor medido es **{show(measured)}**. "
                "Escribe un número la próxima vez.")
    if guess == measured or show(guess) == show(measured):  # igual tal como se escribe: exacto, no «cerca»
        return f"Predijiste {show(guess)}; medido: **{show(measured)}**. ¡Exacto!"
    if measured == 0 or guess == 0:
        return f"Predijiste {show(guess)}; medido: **{show(measured)}**. Mira la explicación de abajo."
    ratio = guess / measured
    if ratio < 0:
        return f"Predijiste {show(guess)}; medido: **{show(measured)}** (el signo es el contrario)."
    if 0.8 <= ratio <= 1.25:
        return f"Predijiste {show(guess)}; medido: **{show(measured)}**. ¡Muy cerca!"
    direction = "te quedaste corto" if ratio < 1 else "te pasaste"
    factor = max(ratio, 1 / ratio)
    return (f"Predijiste {show(guess)}; medido: **{show(measured)}**: {direction} "
            f"({decimal(factor, 1)} veces). Mira la explicación de abajo.")


def reveal(what: str, guess, measured: float, fmt=None) -> None:
    """Muestra el valor medido de ``what`` junto a la predicción ``guess`` (sin puntos)."""
    from .core import _show

    text = verdict(guess, measured, fmt)
    _show({"text/plain": f"🔮 {what}: {text.replace('**', '')}", "text/markdown": f"🔮 **{what}:** {text}"})
