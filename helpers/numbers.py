"""Números para personas, en español: «9 216», «0,34 %», «1,6×», «513 MiB», «2,1 s», «9,1·10⁻⁴».

Miles separados por un espacio que no parte línea (``SPACE``, U+00A0) y decimales con coma. El
mismo espacio separa el número de su unidad («93,3 %»), salvo en «×». Una exactitud va con su
intervalo de confianza de Wilson: con 32 ejemplos, ±9 puntos son ruido, no una mejora.
"""

from __future__ import annotations

import math
from statistics import NormalDist

SPACE = "\u00a0"  # espacio de no separación: «134 515 008» no se parte al final de una línea


def decimal(value: float, digits: int = 1) -> str:
    """``1234.5`` → «1 234,5»: miles con espacio, coma decimal."""
    text = f"{value:,.{digits}f}"
    return text.replace(",", SPACE).replace(".", ",")


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def scientific(value: float, digits: int = 1) -> str:
    """``0.00091`` → «9,1·10⁻⁴»: para lo muy pequeño o muy grande (diferencias de logits, errores).

    Sin la «e» de los lenguajes de programación, que en una frase en español se lee mal. El 0 es «0».
    """
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    exponent = math.floor(math.log10(abs(value)))
    mantissa = value / 10**exponent
    if round(abs(mantissa), digits) >= 10:  # 9,96·10⁻⁴ redondeado a 1 decimal es 1,0·10⁻³
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{decimal(mantissa, digits)}·10{str(exponent).translate(_SUPERSCRIPT)}"


def integer(value: float) -> str:
    """``134515008`` → «134 515 008» (redondea si le llega un float, como ``2.0`` → «2»)."""
    return decimal(round(value), 0)


def percent(fraction: float, digits: int = 1) -> str:
    """``0.9333`` → «93,3 %». Recibe una fracción (0–1), no un porcentaje."""
    return f"{decimal(100 * fraction, digits)}{SPACE}%"


def ratio(value: float, digits: int = 1) -> str:
    """``1.58`` → «1,6×» (cuántas veces más)."""
    return f"{decimal(value, digits)}×"


def _auto_digits(value: float) -> int:
    return 0 if abs(value) >= 100 else 1


def size(n_bytes: float) -> str:
    """``537_919_488`` → «513 MiB»: unidades binarias (KiB = 1024 B), sin decimales desde 100."""
    value, unit = float(n_bytes), "B"
    for next_unit in ("KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024:
            break
        value, unit = value / 1024, next_unit
    digits = 0 if unit == "B" else _auto_digits(value)
    return f"{decimal(value, digits)}{SPACE}{unit}"


def seconds(value: float) -> str:
    """``2.13`` → «2,1 s»; ``337.4`` → «337 s» (sin decimales desde 100 s)."""
    return f"{decimal(value, _auto_digits(value))}{SPACE}s"


def wilson_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Intervalo de Wilson (sin corrección de continuidad) para la proporción ``correct / total``.

    A diferencia de ``p ± z·√(p(1−p)/n)``, no sale de [0, 1] ni se hace de ancho cero con 0/n o n/n.
    """
    if total <= 0 or not 0 <= correct <= total:
        raise ValueError(f"Hace falta 0 ≤ correct ≤ total y total > 0 (hay {correct}/{total}).")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = correct / total
    center = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max(0.0, center - half), min(1.0, center + half)


def accuracy(correct: int, total: int, confidence: float = 0.95) -> str:
    """``accuracy(112, 120)`` → «112/120 (93,3 %; IC 95 %: 87,4–96,6 %)»."""
    low, high = wilson_interval(correct, total, confidence)
    level = percent(confidence, 0)
    interval = f"{decimal(100 * low)}–{percent(high)}"
    return f"{integer(correct)}/{integer(total)} ({percent(correct / total)}; IC{SPACE}{level}: {interval})"


def table(frame, **formats):
    """Copia de un DataFrame con cada columna en texto para personas.

    ``formats`` da la función de cada columna (``table(df, params=integer, disk=size)``); las columnas
    enteras sin función van con ``integer`` y las demás se quedan como están.
    """
    shown = frame.copy()
    for column in shown.columns:
        fmt = formats.get(column)
        if fmt is None and shown[column].dtype.kind in "iu":
            fmt = integer
        if fmt is not None:
            shown[column] = shown[column].map(fmt)
    unknown = set(formats) - set(shown.columns)
    if unknown:
        raise KeyError(f"Estas columnas no están en la tabla: {sorted(unknown)}")
    return shown
