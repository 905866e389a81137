"""Conclusiones en español sacadas de los números, comparados tal como se escriben.

Una frase que compara medidas («se solapan», «no pasa de», «tarda más») tiene que ser verdad con los números
que el alumno ve a su lado. Por eso aquí no se compara el valor en bruto, sino el escrito: cada valor pasa
por el mismo formato de :mod:`helpers.numbers` que lo muestra y se vuelve a leer (:func:`as_printed`). Así
nunca sale «1,0 s–1,0 s y 1,0 s–1,0 s no se solapan», ni «no pasa de un 3 %» junto a un intervalo hasta 3,1 %.

Un rango es un par ``(bajo, alto)``: un intervalo de confianza (:func:`accuracy_range`) o lo que va de la
medida más baja a la más alta de unas repeticiones (:func:`spread`). En el cuaderno::

    from helpers import conclusions, numbers
    times = {"adaptador": [1.02, 1.04, 1.01], "fusionado": [0.97, 0.99, 0.98]}
    conclusions.compare("adaptador", conclusions.spread(times["adaptador"]),
                        "fusionado", conclusions.spread(times["fusionado"]), numbers.seconds, more="tarda más")
    # «adaptador: 1,0 s; fusionado: 1,0 s: se solapan, así que la diferencia no se distingue del ruido»
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Sequence

from .numbers import SPACE, accuracy, percent, ratio, seconds, wilson_interval

Range = tuple[float, float]
Format = Callable[[float], str]

_UNITS = {"": 1.0, "B": 1.0, "KiB": 1024.0, "MiB": 1024.0**2, "GiB": 1024.0**3, "TiB": 1024.0**4,
          "s": 1.0, "ms": 1e-3, "%": 0.01, "×": 1.0}
_SUPERSCRIPT = str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789")
_NUMBER = re.compile(r"^\s*(-?[\d\u00a0 ]+(?:,\d+)?)(?:·10([⁻⁰¹²³⁴⁵⁶⁷⁸⁹]+))?\s*([^\d\s]*)\s*$")


def as_printed(value: float, fmt: Format) -> float:
    """El valor tal como lo escribe ``fmt``, leído de vuelta: ``as_printed(1.04, seconds)`` → ``1.0``.

    Entiende los formatos de :mod:`helpers.numbers` (``decimal``, ``integer``, ``percent``, ``ratio``,
    ``size``, ``seconds``, ``scientific``) y los que escriben un número con una de sus unidades (p. ej. «ms»).
    """
    text = fmt(value)
    match = _NUMBER.match(text)
    if match is None or match.group(3) not in _UNITS:
        raise ValueError(f"No sé leer «{text}» como un número con unidad.")
    number = float(match.group(1).replace(SPACE, "").replace(" ", "").replace(",", "."))
    if match.group(2):
        number *= 10.0 ** int(match.group(2).translate(_SUPERSCRIPT))
    return number * _UNITS[match.group(3)]


def spread(values: Sequence[float]) -> Range:
    """De la medida más baja a la más alta de unas repeticiones: ``spread([1.2, 1.0, 1.1])`` → ``(1.0, 1.2)``."""
    if not values:
        raise ValueError("Hace falta al menos una medida.")
    return min(values), max(values)


def accuracy_range(correct: int, total: int) -> Range:
    """El intervalo de confianza (Wilson, 95 %) de ``correct/total``, como fracciones (el que muestra ``accuracy``)."""
    return wilson_interval(correct, total)


def show_range(span: Range, fmt: Format) -> str:
    """«1,0 s–1,3 s»; si los dos extremos se escriben igual, uno solo («1,0 s»)."""
    low, high = (fmt(value) for value in span)
    return low if low == high else f"{low}–{high}"


def order(a: Range, b: Range, fmt: Format) -> int:
    """``1`` si ``a`` queda entero por encima de ``b`` tal como se escriben, ``-1`` si por debajo, ``0`` si se solapan.

    Dos rangos que se tocan («1,0 s» y «1,0 s») se solapan: lo escrito no los distingue.
    """
    a_low, a_high = (as_printed(value, fmt) for value in a)
    b_low, b_high = (as_printed(value, fmt) for value in b)
    if a_low > b_high:
        return 1
    if a_high < b_low:
        return -1
    return 0


def overlap(a: Range, b: Range, fmt: Format) -> bool:
    """¿Se solapan ``a`` y ``b`` tal como se escriben? Entonces la diferencia no se distingue del ruido."""
    return order(a, b, fmt) == 0


def compare(name_a: str, a: Range, name_b: str, b: Range, fmt: Format, more: str = "es mayor",
            noun: str = "se solapan") -> str:
    """Una frase que compara dos rangos y dice cuál queda por encima, si alguno lo hace.

    ``compare("LoRA", (0.34, 0.66), "OLoRA", (0.36, 0.69), percent)`` →
    «LoRA: 34,0 %–66,0 %; OLoRA: 36,0 %–69,0 %: se solapan, así que la diferencia no se distingue del ruido».
    ``more`` es lo que se dice del mayor («tarda más», «acierta más»); ``noun`` el verbo de solaparse.
    """
    shown = f"{name_a}: {show_range(a, fmt)}; {name_b}: {show_range(b, fmt)}"
    side = order(a, b, fmt)
    if side == 0:
        return f"{shown}: {noun}, así que la diferencia no se distingue del ruido"
    top = name_a if side > 0 else name_b
    return f"{shown}: no {noun}: {top} {more}, por encima del ruido de la medida"


def at_most(span: Range, fmt: Format) -> str:
    """«no pasa de un 3,1 %»: el extremo alto del rango, escrito con el mismo formato que el rango."""
    return f"no pasa de {fmt(span[1])}"


def between(span: Range, fmt: Format) -> str:
    """«está entre 28,2 % y 60,7 %» (o «es 1,0 s» si los extremos se escriben igual)."""
    low, high = (fmt(value) for value in span)
    return f"es {low}" if low == high else f"está entre {low} y {high}"


def sizes(name_a: str, bytes_a: float, name_b: str, bytes_b: float, fmt: Format) -> str:
    """«LoRA ocupa 55× menos que el completo (9,4 MiB frente a 513 MiB)», o «ocupan lo mismo» si se escriben igual.

    La razón se calcula con los valores escritos, así que cuadra con ellos.
    """
    shown_a, shown_b = as_printed(bytes_a, fmt), as_printed(bytes_b, fmt)
    if shown_a == shown_b:
        return f"{name_a} y {name_b} ocupan lo mismo ({fmt(bytes_a)})"
    times = max(shown_a, shown_b) / min(shown_a, shown_b) if min(shown_a, shown_b) > 0 else float("inf")
    word = "más" if shown_a > shown_b else "menos"
    return (f"{name_a} ocupa {ratio(times, 0 if times >= 10 else 1)} {word} que {name_b} "
            f"({fmt(bytes_a)} frente a {fmt(bytes_b)})")


def latency(values: Sequence[float], fmt: Format = seconds) -> str:
    """«1,0 s (mediana de 3; de 0,9 s a 1,1 s)»: la mediana de unas repeticiones con lo que van de una a otra."""
    low, high = spread(values)
    middle = fmt(statistics.median(values))
    if len(values) == 1:
        return f"{middle} (una sola medida)"
    if fmt(low) == fmt(high):
        return f"{middle} (mediana de {len(values)}, todas iguales al redondear)"
    return f"{middle} (mediana de {len(values)}; de {fmt(low)} a {fmt(high)})"


def accuracies(name_a: str, right_a: int, name_b: str, right_b: int, total: int, more: str = "acierta más") -> str:
    """Dos aciertos sobre las mismas ``total`` fechas, con sus intervalos, y si la diferencia pasa del ruido."""
    shown = f"{name_a}, {accuracy(right_a, total)}; {name_b}, {accuracy(right_b, total)}"
    side = order(accuracy_range(right_a, total), accuracy_range(right_b, total), percent)
    if side == 0:
        return f"{shown}: los intervalos se solapan, así que con estas {total} fechas no se distinguen"
    return f"{shown}: los intervalos no se solapan: {name_a if side > 0 else name_b} {more}, por encima del ruido"
